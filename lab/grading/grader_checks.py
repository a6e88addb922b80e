"""Checks the grader runs itself, outside the student's kernel.

A checkpoint in a notebook runs inside the student's kernel, where any earlier cell can replace
``checks.statefulset_ready`` or edit the saved record; its evidence is feedback, not proof. The
checks below are registered with :func:`lab.checks.register` and the notebook after which they
hold: ``lab grade --execute`` runs them in the grader's own process right after that notebook ran,
against the student's namespace, and ``lab grade --live`` runs them against a running namespace.
Their ids are those of the notebook checkpoints they re-verify, so a notebook that says PASS where
the grader sees FAIL is flagged. What only the kernel can know (a student's answer in a variable,
a measurement) has no check here and earns no points when grades must be trusted.

Checks with ``instructor_only=True`` appear in no notebook. An instructor can add more, kept out
of the repository, with ``lab grade --checks FILE.py`` (a file that calls ``checks.register``).
"""
from __future__ import annotations

import base64
import gzip
import json

from lab import checks
from lab.checks import Result, fail, ok
from lab.system import deploy

RELEASE = "k8s-lab"


def _recheck(check_id: str, library_check, *args, points: float, notebook: str, hint: str, **kwargs) -> None:
    """Register a grader check that runs one check of the library with fixed arguments."""
    checks.register(check_id, points=points, notebook=notebook, hint=hint,
                    description=(library_check.__doc__ or "").strip().split("\n")[0])(
        lambda namespace, context: library_check(*args, namespace=namespace, context=context, **kwargs))


def _first_failure(*results: Result) -> Result:
    uids: dict[str, str] = {}
    for result in results:
        uids.update(result.uids)
        if not result.passed:
            return fail(result.message, uids)
    return ok("; ".join(r.message for r in results), uids)


# ------------------------------------------------------------------------------ 02-storage


@checks.register("storage.namespace", points=1, notebook="02-storage.ipynb",
                 hint="kubectl get namespace <your namespace>")
def _storage_namespace(namespace: str, context: str) -> Result:
    return checks.namespace_created(namespace, context=context)


@checks.register("storage.quota-and-limits", points=1, notebook="02-storage.ipynb",
                 hint="kubectl get resourcequota,limitrange in your namespace")
def _storage_quota(namespace: str, context: str) -> Result:
    if checks.in_classroom(namespace, context):
        return checks.not_applicable(f"classroom: your instructor set the quota and limits of {namespace}")
    core = checks._apis(context).core
    quotas = core.list_namespaced_resource_quota(namespace, _request_timeout=checks.REQUEST_TIMEOUT_S).items
    limits = core.list_namespaced_limit_range(namespace, _request_timeout=checks.REQUEST_TIMEOUT_S).items
    if not quotas or not limits:
        return fail(f"namespace {namespace} has {len(quotas)} ResourceQuota(s) and {len(limits)} LimitRange(s)")
    if not any("pods" in (q.spec.hard or {}) for q in quotas):
        return fail("no ResourceQuota limits the number of Pods")
    return ok("a ResourceQuota limits Pods and a LimitRange sets defaults",
              {f"ResourceQuota/{namespace}/{q.metadata.name}": q.metadata.uid for q in quotas})


@checks.register("storage.persistent-volume", points=2, notebook="02-storage.ipynb",
                 hint="kubectl get pv -o wide: class manual, reclaim policy Retain, reserved for data-database-0")
def _storage_pv(namespace: str, context: str) -> Result:
    name = deploy.pv_name(namespace)
    pv = checks._read(checks._apis(context).core.read_persistent_volume, name)
    if pv is None:
        return fail(f"PersistentVolume {name} does not exist")
    uids = {f"PersistentVolume/{name}": pv.metadata.uid}
    if checks.classroom_made(pv):
        return checks.not_applicable(f"classroom: your instructor made the PersistentVolume {name}", uids)
    claim = pv.spec.claim_ref
    problems = []
    if pv.spec.storage_class_name != "manual":
        problems.append(f"class {pv.spec.storage_class_name}, not manual")
    if pv.spec.persistent_volume_reclaim_policy != "Retain":
        problems.append(f"reclaim policy {pv.spec.persistent_volume_reclaim_policy}, not Retain")
    if claim is None or (claim.namespace, claim.name) != (namespace, "data-database-0"):
        problems.append(f"not reserved for {namespace}/data-database-0")
    if problems:
        return fail(f"PersistentVolume {name}: " + "; ".join(problems), uids)
    return ok(f"PersistentVolume {name} is Retain, class manual, for {namespace}/data-database-0", uids)


# ------------------------------------------------------------------------------ 03-database


_recheck("db.secret", checks.secret_has_keys, "database-credentials", ["root-password", "username", "password"],
         points=1, notebook="03-database.ipynb", hint="kubectl describe secret database-credentials")


_recheck("db.config", checks.configmap_has_key, "database-config", "my.cnf", contains="[mysqld]",
         points=1, notebook="03-database.ipynb", hint="kubectl get configmap database-config -o yaml")


@checks.register("db.services", points=1, notebook="03-database.ipynb",
                 hint="kubectl get service database database-headless")
def _db_services(namespace: str, context: str) -> Result:
    service = checks.service_has_port("database", 3306, namespace=namespace, context=context)
    headless = checks.service_has_port("database-headless", 3306, namespace=namespace, context=context)
    both = _first_failure(service, headless)
    if not both.passed:
        return both
    svc = checks._read(checks._apis(context).core.read_namespaced_service, "database-headless", namespace)
    if svc.spec.cluster_ip not in (None, "None"):
        return fail("Service database-headless has a cluster IP: set clusterIP: None", both.uids)
    return ok("Services database and database-headless listen on 3306", both.uids)


_recheck("db.statefulset-ready", checks.statefulset_ready, "database", replicas=1,
         points=2, notebook="03-database.ipynb", hint="kubectl describe statefulset database")


@checks.register("db.claim-bound", points=1, notebook="03-database.ipynb",
                 hint="kubectl get pvc data-database-0; kubectl get pv")
def _db_claim(namespace: str, context: str) -> Result:
    result = checks.pvc_bound("data-database-0", namespace=namespace, context=context)
    want = deploy.pv_name(namespace)
    if result.passed and f"PersistentVolume/{want}" not in result.uids:
        return fail(f"{result.message}, not to {want}", result.uids)
    return result


# ------------------------------------------------------------------------------ 04-web-server


_recheck("web.config", checks.configmap_has_key, "web-nginx", "default.conf", contains="location = /healthz",
         points=1, notebook="04-web-server.ipynb", hint="kubectl get configmap web-nginx -o yaml")


_recheck("web.deployment-ready", checks.deployment_ready, "web", replicas=3,
         points=2, notebook="04-web-server.ipynb", hint="kubectl describe deployment web")


_recheck("web.nodeport", checks.web_nodeport,
         points=1, notebook="04-web-server.ipynb", hint="kubectl get service web -o yaml: type NodePort, port 80")


_recheck("web.endpoints", checks.service_has_endpoints, "web", minimum=3,
         points=2, notebook="04-web-server.ipynb", hint="kubectl get endpointslices -l kubernetes.io/service-name=web")


# ------------------------------------------------------------------------------ 05-network-policy


@checks.register("netpol.applied", points=1, notebook="05-network-policy.ipynb",
                 hint="kubectl get networkpolicies")
def _netpol_applied(namespace: str, context: str) -> Result:
    return _first_failure(*(checks.networkpolicy_exists(name, policy_types=types, namespace=namespace, context=context)
                            for name, types in (("default-deny-ingress", ["Ingress"]), ("web-allow-http", ["Ingress"]),
                                                ("database-allow-clients", ["Ingress", "Egress"]))))


# ------------------------------------------------------------------------------ 06-pod-watcher


@checks.register("watcher.daemonset", points=2, notebook="06-pod-watcher.ipynb",
                 hint="kubectl describe daemonset watcher")
def _watcher_daemonset(namespace: str, context: str) -> Result:
    from lab.ops import eventlog

    return checks.pods_on_every_node(eventlog.SELECTOR, namespace=namespace, context=context)


# ------------------------------------------------------------------------------ 07-helm


def helm_revisions(namespace: str, context: str, release: str = RELEASE) -> list[dict]:
    """The release's revisions as Helm stores them (Secrets of type helm.sh/release.v1), oldest first:
    revision, status and description, read without the helm binary."""
    items = checks._apis(context).core.list_namespaced_secret(
        namespace, label_selector=f"owner=helm,name={release}", _request_timeout=checks.REQUEST_TIMEOUT_S).items
    revisions = []
    for secret in items:
        payload = json.loads(gzip.decompress(base64.b64decode(base64.b64decode((secret.data or {})["release"]))))
        info = payload.get("info") or {}
        revisions.append({"revision": int(payload.get("version", 0)), "status": info.get("status", ""),
                          "description": info.get("description", ""), "uid": secret.metadata.uid})
    return sorted(revisions, key=lambda r: r["revision"])


@checks.register("helm.history", points=1, notebook="07-helm.ipynb", hint="helm history k8s-lab")
def _helm_history(namespace: str, context: str) -> Result:
    entries = helm_revisions(namespace, context)
    if len(entries) < 2:
        return fail(f"the release has {len(entries)} revision(s); an upgrade makes a second")
    if entries[-1]["status"] != "deployed":
        return fail(f"the latest revision {entries[-1]['revision']} is {entries[-1]['status']}")
    return ok(f"{len(entries)} revisions, the latest deployed")


@checks.register("helm.rollback", points=2, notebook="07-helm.ipynb", hint="helm history k8s-lab; helm rollback")
def _helm_rollback(namespace: str, context: str) -> Result:
    # Any kept revision, not only the latest: --live sees the finished lab, and 08 upgrades again.
    rollbacks = [e for e in helm_revisions(namespace, context) if e["description"].startswith("Rollback to")]
    if not rollbacks:
        return fail("no revision of the release is a rollback")
    web = checks.deployment_ready("web", replicas=3, namespace=namespace, context=context)
    return checks.Result(web.passed, f"revision {rollbacks[-1]['revision']}: {rollbacks[-1]['description']}; "
                         f"{web.message}", web.uids)


_recheck("helm.system-ready", checks.system_ready, RELEASE,
         points=2, notebook="07-helm.ipynb", hint="helm status k8s-lab; kubectl get pods")


# ------------------------------------------------------------------------------ 08-backup


_recheck("backup.system-back", checks.system_ready, RELEASE,
         points=2, notebook="08-backup.ipynb", hint="helm status k8s-lab; kubectl get pods")


@checks.register("instructor.backup-job-succeeded", points=1, instructor_only=True, notebook="08-backup.ipynb",
                 hint="kubectl get jobs: a Job of the database-backup CronJob succeeded")
def _backup_job(namespace: str, context: str) -> Result:
    from kubernetes import client

    from lab.cluster import kube

    jobs = client.BatchV1Api(kube.api_client(checks.target_for(context))).list_namespaced_job(
        namespace, _request_timeout=checks.REQUEST_TIMEOUT_S).items
    done = [j for j in jobs if (j.status.succeeded or 0) > 0]
    if not done:
        return fail(f"no succeeded Job among {len(jobs)} in {namespace}")
    return ok(f"{len(done)} Job(s) succeeded", {f"Job/{namespace}/{j.metadata.name}": j.metadata.uid for j in done})
