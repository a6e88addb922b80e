"""Build tasks: the objects students write themselves, applied without a traceback and checked live.

A build task is a ``%%writefile work/NAME.yaml`` cell (the student's object, with blanks in the
handout) followed by ``tasks.apply(nb, "work/NAME.yaml", "Kind")``, which reads the file, says
what is wrong with it (not YAML: the line; the wrong kind or namespace; kubectl's refusal, which
names the field) and never raises, so the notebook goes on to the next step. The checkpoint after it
is a registered check (``checks.check("build.pv")``): it reads the object from the cluster and
says what is wrong in it without printing the answer; ``lab grade --live`` runs the same checks.

Later steps that need a student's object ask :func:`missing` (inside a checkpoint) or :func:`have`
(in a cell) first, and fail with "finish step N of 03 first" instead of a traceback or a wait
that cannot end.
"""
from __future__ import annotations

import functools
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import yaml

from lab import checks, config, notebook, yamldoc
from lab.cluster import classroom
from lab.errors import LabError

MISSING = object()


# ============================================================================================
# The student's file
# ============================================================================================


def read_objects(path: str | Path) -> tuple[list[dict], list[str]]:
    """The objects in a YAML file and what is wrong with the file itself (missing, not YAML,
    a document that is not an object)."""
    path = Path(path)
    if not path.exists():
        return [], [f"{path} does not exist: run the %%writefile cell above first"]
    try:
        documents = [d for d in yamldoc.load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        return [], [f"{path} is not valid YAML ({where}): {problem}"]
    if not documents:
        return [], [f"{path} is empty"]
    problems = [f"{path}: document {i} is a {type(d).__name__}, not an object with kind and metadata"
                for i, d in enumerate(documents, 1) if not isinstance(d, dict)]
    return [d for d in documents if isinstance(d, dict)], problems


def _named(doc: dict) -> str:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return f"{doc.get('kind') or '(no kind)'} {meta.get('name') or '(no metadata.name)'}"


def file_problems(path: str | Path, kinds: tuple[str, ...], namespace: str | None) -> list[str]:
    """What is wrong with the student's file before the API sees it."""
    documents, problems = read_objects(path)
    for doc in documents:
        kind = doc.get("kind")
        if kind not in kinds:
            problems.append(f"{path}: {_named(doc)}: this step wants {' and '.join(kinds)}, "
                            f"{'not ' + repr(kind) if kind else 'kind is missing'}")
        meta = doc.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            problems.append(f"{path}: {_named(doc)}: metadata.name is missing")
            continue
        wrong_ns = meta.get("namespace")
        # The handouts write the lab's namespace; in another one (a classroom's) tasks.apply moves it there.
        if (namespace and wrong_ns and wrong_ns not in (namespace, config.NAMESPACE)
                and kind not in ("PersistentVolume", "Namespace")):
            problems.append(f"{path}: {_named(doc)}: metadata.namespace is {wrong_ns!r}, the lab works in {namespace!r}")
    found = {d.get("kind") for d in documents}
    problems += [f"{path}: there is no {kind} in it" for kind in kinds if kind not in found and documents]
    return problems


def _as_applied(lab, path: Path) -> str:
    """The file as kubectl gets it: images for the lab's mode, another namespace rewritten."""
    from lab.system import deploy

    text = deploy.substitute_images(path.read_text(), deploy.image_substitutions(lab.image_mode))
    return deploy.rewrite_namespace(text, lab.namespace)


def apply(lab, path: str | Path, *kinds: str, dry_run: bool = False) -> bool:
    """``kubectl apply -f PATH`` of the student's file: prints what is wrong (file or API) and
    returns whether it was applied. Never raises for a bad file; the checkpoint after it grades."""
    path = Path(path)
    shown = f"kubectl --context {lab.context} -n {lab.namespace} apply -f {path}" + (" --dry-run=server" if dry_run else "")
    problems = file_problems(path, kinds, lab.namespace)
    if problems:
        print("not applied:\n  " + "\n  ".join(problems))
        print(f"fix {path} (the %%writefile cell), then run it and this cell again")
        return False
    print(f"$ {shown}")
    extra = ["--dry-run=server"] if dry_run else []
    text = _as_applied(lab, path)
    if not dry_run:
        # A PersistentVolume's host directory goes to the uid its annotation names (no Pod may
        # run as root to chown it), as `lab deploy` does for the manifests.
        from lab.system import hostdirs

        hostdirs.prepare([d for d in yamldoc.load_all(text) if isinstance(d, dict)], lab.cluster)
    result = lab.kubectl("apply", "-f", "-", *extra, stdin=text, check=False, show=False)
    if result.output.strip():
        print(result.output.rstrip())
    if not result.ok:
        print(f"kubectl refused {path}: its message names the field; fix the %%writefile cell and run both cells again")
    return result.ok


def api_refusal(lab, path: str | Path) -> str | None:
    """Why the API refuses the student's file (a server-side dry run of each object in it), or
    None when it accepts them all."""
    from lab.cluster import kube

    path = Path(path)
    if not path.exists():
        return None
    for document in yamldoc.load_all(_as_applied(lab, path)):
        refusal = kube.dry_run_apply(lab.target, document) if isinstance(document, dict) else None
        if refusal:
            return " ".join(refusal.split())[-400:]
    return None


# ============================================================================================
# Reading the live object
# ============================================================================================


def as_dict(obj: Any) -> dict:
    """A client object as the API's JSON (camelCase field names, as in the student's YAML)."""
    from kubernetes import client

    return client.ApiClient().sanitize_for_serialization(obj) or {}


def field(obj: dict, dotted: str) -> Any:
    """``spec.capacity.storage`` of ``obj``; MISSING when a part is absent."""
    value: Any = obj
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity ("1Gi", "500Mi", "2") in bytes or cores; None when it is not one."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3, "": 1}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|m)?", str(value).strip())
    return float(match.group(1)) * units[match.group(2) or ""] if match else None


def _lab(namespace: str, context: str):
    """A lab.notebook.Lab for a registered check, which gets only (namespace, context); the
    kubeconfig is the one checks were configured with (a classroom's, in a student's kernel)."""
    cluster = context[len("kind-"):] if context.startswith("kind-") else context
    return notebook.Lab("(check)", notebook.Parameters(cluster, namespace, "auto", False,
                                                       checks.settings.kubeconfig or ""))


def _file_hint(lab, path: str, kinds: tuple[str, ...]) -> str:
    """Why the student's object is not in the cluster, as far as the file tells (for the FAIL)."""
    full = Path.cwd() / path
    if not full.exists():
        return f"{path} was not written yet"
    problems = file_problems(full, kinds, lab.namespace)
    if problems:
        return problems[0]
    refusal = api_refusal(lab, full)
    return f"the API refuses {path}: {refusal}" if refusal else f"{path} is fine: run the cell that applies it"


# ============================================================================================
# Objects later steps need: "finish step N of NN first"
# ============================================================================================


@dataclass(frozen=True)
class Built:
    notebook: str
    step: int
    what: str
    kind: str | None  # None: nothing lab.notebook.Lab.read reads; verify says whether it exists
    name: str | None  # None: the lab's PersistentVolume, whose name depends on the namespace
    verify: Callable[[Any], checks.Result]  # verify(lab): ready to be used

    def exists(self, lab) -> bool:
        if self.kind is None:  # no object to look for (permissions, a DaemonSet's Pods): is it working?
            return checks._as_result(self.verify(lab)).passed
        return lab.read(self.kind, self.name or lab.pv_name) is not None


# Each verify names the lab's namespace: the grader (`lab grade --live`) runs these for many
# students' namespaces, and the checks' default is the one namespace its own process was set up for.
BUILT: dict[str, Built] = {
    "pv": Built("02", 3, "the database's PersistentVolume", "PersistentVolume", None,
                lambda lab: checks.ok("found") if BUILT["pv"].exists(lab) else checks.fail(f"{lab.pv_name} does not exist")),
    "database": Built("03", 4, "the StatefulSet database", "StatefulSet", "database",
                      lambda lab: checks.statefulset_ready("database", replicas=1, namespace=lab.namespace)),
    "database-service": Built("03", 3, "the Service database", "Service", "database",
                              lambda lab: checks.service_has_endpoints("database", namespace=lab.namespace)),
    "web": Built("04", 2, "the Deployment web", "Deployment", "web", lambda lab: checks.deployment_ready("web", namespace=lab.namespace)),
    "web-service": Built("04", 4, "the Service web", "Service", "web", lambda lab: _reachable_from_host(lab)),
    "watcher-rbac": Built("06", 1, "the watcher's permissions", None, None,
                          lambda lab: watcher_permissions(lab, ("list", "pods"), ("watch", "pods"))),
    "watcher": Built("06", 2, "the watcher DaemonSet", None, None,
                     lambda lab: checks.pods_on_every_node("app.kubernetes.io/component=watcher", namespace=lab.namespace)),
}


def _reachable_from_host(lab) -> checks.Result:
    """The web Service has a node port (this machine reaches it) and ready endpoints."""
    svc = lab.read("Service", "web")
    if svc is None or not any(p.node_port for p in svc.spec.ports or []):
        return checks.fail("Service web has no node port")
    return checks.service_has_endpoints("web", namespace=lab.namespace)


def can(lab, verb: str, resource: str) -> bool:
    """Whether the watcher's ServiceAccount may VERB RESOURCE in the namespace, as
    ``kubectl auth can-i VERB RESOURCE --as=system:serviceaccount:NS:watcher`` answers; asked with
    a LocalSubjectAccessReview, which needs no right to impersonate (a classroom's student has none)."""
    from kubernetes import client

    from lab.cluster import kube

    review = client.V1LocalSubjectAccessReview(
        metadata=client.V1ObjectMeta(namespace=lab.namespace),
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{lab.namespace}:watcher",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{lab.namespace}", "system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(namespace=lab.namespace, verb=verb, resource=resource)))
    answer = client.AuthorizationV1Api(kube.api_client(lab.target)).create_namespaced_local_subject_access_review(
        lab.namespace, review, _request_timeout=10)
    return bool(answer.status.allowed)


def watcher_permissions(lab, *wanted: tuple[str, str]) -> checks.Result:
    """The watcher may do each (verb, resource) of ``wanted``."""
    allowed = checks.answers_at_once([lambda v=verb, r=resource: can(lab, v, r) for verb, resource in wanted])
    lacking = [f"{verb} {resource}" for (verb, resource), yes in zip(wanted, allowed) if not yes]
    if lacking:
        return checks.fail(f"the watcher's ServiceAccount may not {', '.join(lacking)}")
    return checks.ok("the watcher may " + ", ".join(f"{v} {r}" for v, r in wanted))


def missing(lab, *names: str) -> checks.Result | None:
    """None when the student's objects ``names`` are there and ready; else a FAIL saying which step
    of which notebook builds them (for a checkpoint: ``return tasks.missing(nb, "database") or ...``)."""
    def verify(built: Built) -> checks.Result:
        try:
            return checks._as_result(built.verify(lab))
        except Exception as error:  # noqa: BLE001 - an API error is "not there yet", not a crash
            return checks.fail(f"{type(error).__name__}: {error}"[:200])

    wanted = [BUILT[name] for name in names]
    for built, result in zip(wanted, checks.answers_at_once([lambda b=b: verify(b) for b in wanted])):
        if not result.passed:
            return checks.fail(f"{built.what} is not ready ({result.message}): finish step {built.step} of "
                               f"{built.notebook} first")
    return None


def have(lab, *names: str) -> bool:
    """In a cell: True when ``names`` are ready; otherwise print which step to finish and return False."""
    problem = missing(lab, *names)
    if problem is not None:
        print(f"skipped: {problem.message}")
    return problem is None


def wait_built(lab, name: str, verify: Callable[[], Any], what: str, timeout: float = 300) -> bool:
    """Wait for a student's object to become ready, but only when it exists: a missing or refused
    object is reported at once, a wait that times out is printed, never raised."""
    built = BUILT[name]
    if not built.exists(lab):
        print(f"skipped: {built.what} does not exist: finish step {built.step} of {built.notebook} first")
        return False
    return wait(lab, verify, what, timeout)


def wait(lab, verify: Callable[[], Any], what: str, timeout: float = 300, hint: str | None = None) -> bool:
    """lab.wait_for for a student's object: a wait that times out is printed (with the last state
    and the hint), not raised, so the notebook goes on."""
    try:
        lab.wait_for(verify, what, timeout=timeout, hint=hint)
    except LabError as error:
        print(f"{error.message}\nhint: {error.hint}")
        return False
    return True


# ============================================================================================
# The build tasks' checks
# ============================================================================================


def described(value: Any) -> str:
    """A student's answer as a message shows it: "still `...`" for the handout's blank."""
    return "still `...`" if value is Ellipsis else f"{type(value).__name__} {value!r}"


def _on_student_object(kind: str, name: str | None, file: str):
    """Run the decorated check as ``fn(lab, obj, uids)`` on the student's object, or FAIL saying why
    it is not in the cluster; the registered check keeps the ``(namespace, context)`` signature."""
    def wrap(fn):
        @functools.wraps(fn)
        def check(namespace: str, context: str) -> checks.Result:
            lab, obj, uids = _student_object(namespace, context, kind, name, file)
            return uids if obj is None else fn(lab, obj, uids)
        return check
    return wrap


def _student_object(namespace: str, context: str, kind: str, name: str | None, file: str):
    """(lab, the student's object as the API's JSON, its uids), or (lab, None, a FAIL that says
    why it is not in the cluster, as far as ``work/FILE`` tells). ``name`` None: the lab's PV."""
    lab = _lab(namespace, context)
    name = name or lab.pv_name
    found = lab.read(kind, name)
    if found is None:
        return lab, None, checks.fail(f"{kind} {name} does not exist: " + _file_hint(lab, f"{notebook.WORK_DIR}/{file}", (kind,)))
    key = f"{kind}/{name}" if kind == "PersistentVolume" else f"{kind}/{namespace}/{name}"
    return lab, as_dict(found), {key: found.metadata.uid}


def unwritten(lab, file: str, kind: str, name: str, wanted: Callable[[dict], list[str]]) -> list[str]:
    """What the student's own file (``work/FILE``, next to the notebook) leaves out of the fields a
    build task asks for: ``wanted(object)`` names them. The live object alone is not enough: after
    notebook 07 the chart's objects are in the cluster whatever the file says. Without the file
    (``lab grade --live``) only the live object counts."""
    path = Path.cwd() / notebook.WORK_DIR / file
    if not path.exists():
        return []
    documents, problems = read_objects(path)
    written = next((d for d in documents if d.get("kind") == kind
                    and isinstance(d.get("metadata"), dict) and d["metadata"].get("name") == name), None)
    if problems or written is None:
        return [f"{notebook.WORK_DIR}/{file}: " + (problems[0] if problems else f"there is no {kind} {name} in it")]
    return [f"{notebook.WORK_DIR}/{file} leaves {blank} empty" for blank in wanted(written)]


def _empty(obj: dict, *paths: str) -> list[str]:
    return [path for path in paths if field(obj, path) in (MISSING, None, "", [], {})]


def _problems_result(subject: str, problems: list[str], uids: dict, passed: str) -> checks.Result:
    if problems:
        return checks.fail(f"{subject}: " + "; ".join(problems), uids)
    return checks.ok(passed, uids)


@checks.register("build.pv", points=3, hint="read the task's list again; `kubectl get pv -o yaml` shows what you made")
@_on_student_object("PersistentVolume", None, "pv.yaml")
def check_pv(lab, obj, uids) -> checks.Result:
    """02: the database's PersistentVolume, written by the student (in a classroom, the instructor's)."""
    if ((obj.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/managed-by") == classroom.FIELD_MANAGER:
        return checks.not_applicable(f"classroom: your instructor made the PersistentVolume {lab.pv_name}", uids)
    problems = []
    policy = field(obj, "spec.persistentVolumeReclaimPolicy")
    if policy != "Retain":
        problems.append(f"spec.persistentVolumeReclaimPolicy is {policy}: the data would go with the claim")
    size = quantity(field(obj, "spec.capacity.storage"))
    if size is None or size < 2**30:
        problems.append(f"spec.capacity.storage is {field(obj, 'spec.capacity.storage')}: "
                        "smaller than the database's claim asks for, which would never bind")
    klass = field(obj, "spec.storageClassName")
    if klass != "manual":
        problems.append(f"spec.storageClassName is {klass if klass is not MISSING else 'missing'}: "
                        "not the class without a provisioner that the task names")
    claim = field(obj, "spec.claimRef")
    if not isinstance(claim, dict) or (claim.get("namespace"), claim.get("name")) != (lab.namespace, "data-database-0"):
        problems.append("spec.claimRef does not reserve the volume for the database's claim in this namespace")
    if field(obj, "spec.hostPath.path") != lab.pv_node_path:
        problems.append(f"spec.hostPath.path is {field(obj, 'spec.hostPath.path')}: not the lab's data directory "
                        "in the node (see step 4)")
    problems = problems or unwritten(lab, "pv.yaml", "PersistentVolume", "k8s-lab-database-data", lambda o: _empty(
        o, "spec.persistentVolumeReclaimPolicy", "spec.capacity.storage", "spec.storageClassName"))
    return _problems_result(f"PersistentVolume {lab.pv_name}", problems, uids,
                            f"PersistentVolume {lab.pv_name}: your volume is retained, big enough, of the right class")


@checks.register("build.db-service", points=2,
                 hint="kubectl -n k8s-assignment get service database -o yaml; kubectl explain service.spec.ports")
@_on_student_object("Service", "database", "database-service.yaml")
def check_db_service(lab, obj, uids) -> checks.Result:
    """03: the database's ClusterIP Service on 3306, written by the student."""
    problems = []
    kind = field(obj, "spec.type")
    if kind != "ClusterIP" or field(obj, "spec.clusterIP") in (None, "None", MISSING):
        problems.append(f"spec.type is {kind} with clusterIP {field(obj, 'spec.clusterIP')}: clients need a virtual IP "
                        "inside the cluster and nothing outside it")
    ports = field(obj, "spec.ports") or []
    if not any(p.get("port") == 3306 for p in ports):
        problems.append(f"spec.ports has {[p.get('port') for p in ports]}: clients connect to MySQL's usual port")
    selector = field(obj, "spec.selector") or {}
    if selector.get("app.kubernetes.io/component") != "database":
        problems.append("spec.selector does not select the database Pods (compare with the StatefulSet's labels)")
    problems = problems or unwritten(lab, "database-service.yaml", "Service", "database", lambda o: _empty(o, "spec.ports"))
    return _problems_result("Service database", problems, uids,
                            "Service database: a cluster IP on the database's port, selecting the database Pods")


_CLAIMS_HINT = ("kubectl -n k8s-assignment get statefulset database -o yaml; "
                "kubectl explain statefulset.spec.volumeClaimTemplates")


@checks.register("build.db-claims", points=3, hint=_CLAIMS_HINT)
@_on_student_object("StatefulSet", "database", "database.yaml")
def check_db_claims(lab, obj, uids) -> checks.Result:
    """03: the StatefulSet's volumeClaimTemplates, written by the student."""
    problems = []
    templates = field(obj, "spec.volumeClaimTemplates")
    if not isinstance(templates, list) or not templates:
        return checks.fail("StatefulSet database: spec.volumeClaimTemplates is missing")
    data = next((t for t in templates if field(t, "metadata.name") == "data"), None)
    mounts = {m.get("name") for c in field(obj, "spec.template.spec.containers") or [] for m in c.get("volumeMounts") or []}
    if data is None:
        problems.append(f"spec.volumeClaimTemplates has {[field(t, 'metadata.name') for t in templates]}: "
                        f"none is named like the volume the containers mount ({', '.join(sorted(mounts))})")
    else:
        if field(data, "spec.storageClassName") != "manual":
            problems.append(f"the claim's spec.storageClassName is {field(data, 'spec.storageClassName')}: "
                            "it would not bind to the volume of notebook 02")
        if "ReadWriteOnce" not in (field(data, "spec.accessModes") or []):
            problems.append(f"the claim's spec.accessModes is {field(data, 'spec.accessModes')}: not one the volume offers")
        size = quantity(field(data, "spec.resources.requests.storage"))
        if size is None or size > 2**30:
            problems.append(f"the claim's spec.resources.requests.storage is "
                            f"{field(data, 'spec.resources.requests.storage')}: not what the volume offers")
    problems = problems or unwritten(lab, "database.yaml", "StatefulSet", "database", lambda o: _empty(o, "spec.volumeClaimTemplates"))
    return _problems_result("StatefulSet database", problems, uids,
                            "StatefulSet database: its claim template matches the volume of notebook 02")


# render-page's environment from the downward API: variable -> (fieldPath, what it is of the Pod).
DOWNWARD = {"POD_NAME": ("metadata.name", "name"), "POD_IP": ("status.podIP", "IP"),
            "NODE_NAME": ("spec.nodeName", "node")}
# Written by the init container from the downward API too; judged by the page it wrote (below).
SERVING_HOST = "SERVING_HOST"
WEB_PAGE = "/usr/share/nginx/html/whoami.json"


def _node_port_unwritten(service: dict) -> list[str]:
    ports = [p for p in field(service, "spec.ports") or [] if isinstance(p, dict)]
    return _empty(service, "spec.type") + ([] if any(p.get("nodePort") for p in ports) else ["spec.ports[].nodePort"])


def _downward_env_unwritten(deployment: dict) -> list[str]:
    inits = field(deployment, "spec.template.spec.initContainers") or []
    init = next((c for c in inits if isinstance(c, dict) and c.get("name") == "render-page"), {})
    names = {e.get("name") for e in init.get("env") or [] if isinstance(e, dict) and e.get("valueFrom")}
    return [f"render-page's env {name}" for name in (*DOWNWARD, SERVING_HOST) if name not in names]


def _page(lab, pod) -> str:
    """whoami.json as nginx serves it, through the API server's Pod proxy (milliseconds); when nginx
    does not serve it, as render-page wrote it into the container (an exec, a tenth of a second),
    so that a page nginx cannot find is still judged by what the init container wrote."""
    from lab.cluster import kube

    nginx = next((c for c in pod.spec.containers if c.name == "nginx"), None)
    ports = [p.container_port for p in (nginx.ports or [])] if nginx else []
    served = kube.pod_http_get(lab.target, pod.metadata.name, ports[0], PurePosixPath(WEB_PAGE).name) if ports else None
    if served is not None:
        return served
    run = kube.exec_in_pod(lab.target, pod.metadata.name, ["cat", WEB_PAGE], container="nginx", timeout=10)
    return run.stdout if run.ok else ""


def _serving_host_problems(lab, deployment: dict) -> tuple[list[str], dict]:
    """What the pages render-page wrote say about the serving host: each web Pod's own page must
    name that Pod (it is the one that serves it). Reads whoami.json from the running Pods."""
    from lab.cluster import kube

    labels = field(deployment, "spec.selector.matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    pods = [p for p in kube.core(lab.target).list_namespaced_pod(lab.namespace, label_selector=selector,
                                                                 _request_timeout=10).items
            if p.metadata.deletion_timestamp is None and p.status.phase == "Running"]
    wrong: dict[str, list[tuple[str, str]]] = {}
    read = {}
    with ThreadPoolExecutor(max_workers=max(1, len(pods))) as pool:
        pages = list(pool.map(lambda pod: _page(lab, pod), pods))
    for pod, page in zip(pods, pages):
        name = pod.metadata.name
        try:
            host = json.loads(page).get("serving_host")
        except (ValueError, AttributeError):  # no page, or not a JSON object
            host = None
        if host is None:
            continue  # not serving yet (or no page at all): the Deployment's readiness says so
        read[f"Pod/{lab.namespace}/{name}"] = pod.metadata.uid
        if host == "unknown":
            wrong.setdefault("the init container has no value for it", []).append((name, host))
        elif host != name:
            wrong.setdefault("that is not the Pod that serves the page", []).append((name, host))
    if not read:
        return ["no running web Pod has a page to read serving-host from (kubectl -n "
                f"{lab.namespace} get pods)"], read
    problems = []
    for why, found in wrong.items():
        (name, host), more = found[0], len(found) - 1
        problems.append(f"serving-host is {host!r} on {name}" + (f" (and {more} more Pod{'s' * (more > 1)})" if more else "")
                        + f": {why}")
    return problems, read


@checks.register("build.web-init", points=3,
                 hint="kubectl -n k8s-assignment get deployment web -o yaml; kubectl explain pod.spec.containers.env.valueFrom.fieldRef")
@_on_student_object("Deployment", "web", "web.yaml")
def check_web_init(lab, obj, uids) -> checks.Result:
    """04: the web Deployment's init container, fed by the downward API, written by the student;
    the page it wrote in every web Pod names that Pod as the serving host."""
    problems = []
    inits = field(obj, "spec.template.spec.initContainers") or []
    init = next((c for c in inits if c.get("name") == "render-page"), None)
    if init is None:
        return checks.fail(f"Deployment web: spec.template.spec.initContainers has no container render-page "
                           f"({[c.get('name') for c in inits] or 'none'})")
    env = {e.get("name"): e for e in init.get("env") or []}
    for name, (path, what) in DOWNWARD.items():
        got = field(env.get(name, {}), "valueFrom.fieldRef.fieldPath")
        if got is MISSING:
            problems.append(f"env {name} does not come from the downward API (valueFrom.fieldRef)" if name in env
                            else f"env {name} is missing")
        elif got != path:
            problems.append(f"env {name} comes from {got}, which is not the Pod's {what}")
    mounts = {m.get("mountPath") for m in init.get("volumeMounts") or []}
    nginx_mounts = {m.get("mountPath") for c in field(obj, "spec.template.spec.containers") or []
                    for m in c.get("volumeMounts") or []}
    if not mounts & nginx_mounts:
        problems.append("render-page writes into no volume that nginx mounts")
    pages, pods = _serving_host_problems(lab, obj)
    problems += pages
    problems = problems or unwritten(lab, "web.yaml", "Deployment", "web", _downward_env_unwritten)
    return _problems_result("Deployment web, init container render-page", problems, {**uids, **pods},
                            "Deployment web: render-page gets the Pod's name, IP and node from the downward API, "
                            "and every web Pod's page names that Pod as the serving host")


@checks.register("build.web-service", points=2,
                 hint="kubectl -n k8s-assignment get service web -o yaml; kubectl explain service.spec.ports.nodePort")
@_on_student_object("Service", "web", "web-service.yaml")
def check_web_service(lab, obj, uids) -> checks.Result:
    """04: the web NodePort Service, written by the student."""
    kind = field(obj, "spec.type")
    problems = [] if kind == "NodePort" else [f"spec.type is {kind}: nothing outside the cluster reaches it"]
    ports = field(obj, "spec.ports") or []
    http = next((p for p in ports if p.get("port") == 80), None)
    if http is None:
        problems.append(f"spec.ports has {[p.get('port') for p in ports]}: inside the cluster it should answer on HTTP's port")
    elif lab.namespace == config.NAMESPACE and http.get("nodePort") != config.WEB_NODEPORT:
        problems.append(f"spec.ports[].nodePort is {http.get('nodePort')}: the kind config maps another port to this machine")
    if (field(obj, "spec.selector") or {}).get("app.kubernetes.io/component") != "web":
        problems.append("spec.selector does not select the web Pods")
    problems = problems or unwritten(lab, "web-service.yaml", "Service", "web", _node_port_unwritten)
    return _problems_result("Service web", problems, uids,
                            "Service web: a node port this machine reaches, port 80 inside, selecting the web Pods")


def quota_rejection(lab, path: str | Path, why: Any) -> checks.Result:
    """02: the student's Pod is refused by the ResourceQuota (not the LimitRange), and ``why``
    (their sentence) names the quota and a resource it caps."""
    problems = file_problems(path, ("Pod",), lab.namespace)
    if problems:
        return checks.fail(problems[0])
    refusal = api_refusal(lab, path)
    if refusal is None:
        return checks.fail(f"the API server accepts {path}: together its containers stay within the quota")
    if "exceeded quota" not in refusal:
        return checks.fail(f"the API server refuses {path}, but not because of the quota: {refusal[-200:]}")
    if not isinstance(why, str) or not why.strip():
        return checks.fail(f"why_rejected is {described(why)}: write your explanation as text")
    exceeded = set(re.findall(r"([a-z.]+)=", refusal.split("limited:")[-1]))
    words = why.lower()
    if "quota" not in words or not any(r.split(".")[-1] in words for r in exceeded):
        return checks.fail("why_rejected does not say which object refused the Pod and which resource it caps")
    return checks.ok(f"the quota refuses {path}, and you said why")


def helm_upgrade(lab, values: str | Path | None = None, *, chart: str | Path | None = None) -> bool:
    """``helm upgrade`` of the lab's release with the student's values file, or from the student's
    copy of the chart (``chart``, default chart/): a values file that is not a YAML mapping, a
    folder that is no chart, values the chart's schema refuses or a template helm cannot render are
    printed, not raised."""
    options = []
    if values is not None:
        values = Path(values)
        try:
            document = yamldoc.load(values.read_text()) if values.exists() else None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            print(f"not upgraded: {values} is not valid YAML" + (f" (line {mark.line + 1})" if mark else ""))
            return False
        if not isinstance(document, dict):
            print(f"not upgraded: {values} {'does not exist' if not values.exists() else 'is not a mapping of values'}")
            return False
        options = ["-f", str(values)]
    if chart is not None and not (Path(chart) / "Chart.yaml").exists():
        print(f"not upgraded: {chart} is not a chart (it has no Chart.yaml): run the cell that copies chart/ first")
        return False
    for attempt in range(2):
        result = lab.helm_upgrade(*options, check=False, chart=chart or notebook.CHART_DIR)
        # A write racing the quota controller's update of the ResourceQuota: the next try passes.
        if result.ok or "the object has been modified" not in result.output:
            break
        print("helm lost a race with the quota controller; once more")
    if not result.ok:
        print("not upgraded: helm's message above names the value, the file or the template's line")
    return result.ok


def _nested(values: Any, expected: dict, prefix: str = "") -> list[str]:
    """The dotted keys of ``expected`` whose value in ``values`` differs."""
    wrong = []
    for key, want in expected.items():
        got = values.get(key, MISSING) if isinstance(values, dict) else MISSING
        if isinstance(want, dict):
            wrong += _nested(got, want, f"{prefix}{key}.")
        elif got != want:
            wrong.append(f"{prefix}{key} is {'not set' if got is MISSING else repr(got)}")
    return wrong


def helm_values_applied(lab, expected: dict, verify: Callable[[], Any], release: str = "k8s-lab") -> checks.Result:
    """The latest revision's user-supplied values (what ``helm get values`` prints, read from
    Helm's record) hold ``expected``, and ``verify`` passes (the cluster followed)."""
    from lab.system import helm_records

    stored = helm_records.record(lab.target, release)
    if stored is None:
        return checks.fail(f"there is no Helm release {release} in {lab.namespace}")
    wrong = _nested(stored.get("config") or {}, expected)
    if wrong:
        return checks.fail("in the release's values, " + "; ".join(wrong))
    return checks._as_result(verify())


# 07: the student's one change to a template of the chart, in a copy of it (work/chart).
REVISION_ANNOTATION = "k8s-lab/revision"


@checks.register("helm.template-change", points=2, notebook="07-helm.ipynb",
                 hint="kubectl -n k8s-assignment get service web -o yaml; `helm -n k8s-assignment get manifest k8s-lab` "
                      "shows what the templates rendered")
def check_helm_template(namespace: str, context: str) -> checks.Result:
    """07: the release renders the student's change to the web Service's template: an annotation
    that holds the revision of the release that rendered it."""
    lab = _lab(namespace, context)
    answers = checks.answers_at_once([lambda: missing(lab, "web-service"), lambda: notebook.release_revisions(lab),
                                      lambda: lab.read("Service", "web")])
    if blocked := next(answers):
        return blocked
    deployed = [e for e in next(answers) if e["status"] == "deployed"]
    if not deployed:
        return checks.fail(f"the release {notebook.RELEASE} has no deployed revision: install it (step 4 of 07)")
    revision = deployed[-1]["revision"]
    service = next(answers)
    uids = {f"Service/{namespace}/web": service.metadata.uid}
    value = (service.metadata.annotations or {}).get(REVISION_ANNOTATION)
    if value is None:
        return checks.fail(f"Service web has no annotation {REVISION_ANNOTATION}: revision {revision} of the release "
                           "was rendered from a Service template that does not write it", uids)
    if value != str(revision):
        return checks.fail(f"Service web's annotation {REVISION_ANNOTATION} is {value!r}, but the release's deployed "
                           f"revision is {revision}: the template does not write the revision that renders it", uids)
    return checks.ok(f"Service web carries {REVISION_ANNOTATION}, rendered by the deployed revision from your template",
                     uids)


def command_line(command: Any, program: str, subcommand: str) -> list[str] | None:
    """The words of the student's ``PROGRAM SUBCOMMAND ...`` command line; None (and what is wrong,
    printed) when it is not text, not a command line or another command."""
    import shlex

    if not isinstance(command, str):
        print(f"not run: the command is {described(command)}; write it as text, e.g. \"{program} {subcommand} ...\"")
        return None
    try:
        argv = shlex.split(command)
    except ValueError as error:
        print(f"not run: {command!r} is not a shell command line: {error}")
        return None
    if argv[:1 + len(subcommand.split())] != [program, *subcommand.split()]:
        print(f"not run: {command!r} is not a `{program} {subcommand} ...` command")
        return None
    return argv


@dataclass(frozen=True)
class CommandRun:
    ok: bool
    output: str
    made: Path | None = None  # the newest backup file the command wrote


def run_lab(lab, command: Any, subcommand: str, timeout: float = 900) -> CommandRun:
    """Run the student's ``lab SUBCOMMAND ...`` shell command against the notebook's cluster and
    namespace, print it and its output; a command that is not text, not a ``lab SUBCOMMAND``
    command or that fails is printed, never raised."""
    import os
    import shlex
    import sys

    from lab import runner
    from lab.ops import backup

    argv = command_line(command, "lab", subcommand)
    if argv is None:
        return CommandRun(False, "")
    if not {"-n", "--namespace"} & set(argv):
        argv += ["--namespace", lab.namespace]
    if lab.params.kubeconfig and "--kubeconfig" not in argv:
        argv += ["--kubeconfig", lab.params.kubeconfig]
    before = set(backup.list_backups(backup.backup_dir(lab.target))["file"])
    print("$ " + shlex.join(argv))
    try:
        proc = runner.run([sys.executable, "-m", "lab.cli", *argv[1:]], timeout=timeout, check=False,
                          env={**os.environ, "LAB_CLUSTER": lab.cluster})
    except LabError as error:
        print(error.message)
        return CommandRun(False, "")
    output = lab.redact((proc.stdout or "") + (proc.stderr or "")).rstrip()
    if output:
        print(output)
    new = sorted(set(backup.list_backups(backup.backup_dir(lab.target))["file"]) - before)
    return CommandRun(proc.returncode == 0, output, backup.backup_dir(lab.target) / new[-1] if new else None)


def run_kubectl(lab, command: Any, subcommand: str) -> bool:
    """Run the student's ``kubectl SUBCOMMAND ...`` command line against the notebook's cluster
    (the lab's kubectl, its context); anything else is printed, not run, not raised."""
    argv = command_line(command, "kubectl", subcommand)
    if argv is None:
        return False
    if "--context" in argv:
        print(f"not run: {command!r} names a --context; the cell adds the notebook's")
        return False
    return lab.kubectl(*argv[1:], namespaced=False, check=False).ok


def node_affinity(lab, pod_name: str, key: str, value: str) -> checks.Result:
    """09: one node labelled ``key=value``; the Pod requires the label and runs on that node."""
    from lab.cluster import kube

    labelled = [n.metadata.name for n in kube.core(lab.target).list_node(_request_timeout=10).items
                if (n.metadata.labels or {}).get(key) == value]
    if len(labelled) != 1:
        return checks.fail(f"{len(labelled)} nodes are labelled {key}={value}; the task wants one")
    pod = lab.read("Pod", pod_name)
    if pod is None:
        return checks.fail(f"Pod {pod_name} does not exist: " + _file_hint(lab, f"{notebook.WORK_DIR}/{pod_name}.yaml", ("Pod",)))
    obj = as_dict(pod)
    terms = field(obj, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms")
    if terms is MISSING:
        return checks.fail("spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution is missing: "
                           "the scheduler may put the Pod anywhere")
    wanted = any(e.get("key") == key and e.get("operator") == "In" and value in (e.get("values") or [])
                 for t in terms or [] for e in t.get("matchExpressions") or [])
    if not wanted:
        return checks.fail(f"the Pod's required node affinity does not ask for the label {key}")
    if pod.spec.node_name != labelled[0]:
        return checks.fail(f"Pod {pod_name} runs on {pod.spec.node_name or 'no node yet'}, not on the labelled node")
    return checks.ok(f"{pod_name} requires {key}={value} and runs on the one node that has it",
                     {f"Pod/{lab.namespace}/{pod_name}": pod.metadata.uid})


def _published_node_port(lab) -> str | None:
    """What the running cluster's control plane publishes for the web node port (``""``: nothing),
    or None when no such cluster runs on this machine (no node container, or no Docker to ask)."""
    from lab.host import docker

    node = f"{lab.cluster}-control-plane"
    try:
        running = docker.run(["inspect", "--format", "{{.State.Running}}", node], check=False)
    except LabError:  # no docker on PATH
        return None
    if running.returncode != 0 or running.stdout.decode().strip() != "true":
        return None
    live = docker.run(["port", node, f"{config.WEB_NODEPORT}/tcp"], check=False)
    return live.stdout.decode().strip() if live.returncode == 0 else ""


def kind_config(lab, path: str | Path, workers: int) -> checks.Result:
    """01: the student's kind configuration gives the lab what it relies on (the node port
    published on this machine only, as the running cluster publishes it, the data mount on every
    node, the database label on the first worker) for a control plane and ``workers`` workers.
    Without a running cluster (it failed to start, or the file is written first) the file is
    judged alone, so the student still gets feedback on it."""
    documents, problems = read_objects(path)
    if problems:
        return checks.fail(problems[0])
    doc = documents[0]
    if (doc.get("kind"), doc.get("apiVersion")) != ("Cluster", "kind.x-k8s.io/v1alpha4"):
        return checks.fail(f"{path}: kind {doc.get('kind')!r} and apiVersion {doc.get('apiVersion')!r} are not kind's cluster configuration")
    nodes = doc.get("nodes")
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        return checks.fail(f"{path}: nodes is {type(nodes).__name__}, not a list of nodes")
    roles = [n.get("role") for n in nodes]
    if roles != ["control-plane"] + ["worker"] * workers:
        return checks.fail(f"{path}: nodes has the roles {roles}; the task asks for a control plane and {workers} workers")
    problems = []
    published = [m for m in nodes[0].get("extraPortMappings") or [] if isinstance(m, dict)
                 and m.get("containerPort") == config.WEB_NODEPORT]
    live = _published_node_port(lab) if published else None
    if not published:
        problems.append("nodes[0].extraPortMappings does not publish the web Service's node port")
    elif published[0].get("listenAddress") != "127.0.0.1":
        problems.append(f"nodes[0].extraPortMappings listens on {published[0].get('listenAddress') or 'every address'}, "
                        "not on this machine only")
    elif live == "":
        problems.append("the running cluster does not publish that port: compare with `docker port` of its control plane")
    for i, node in enumerate(nodes):
        mounts = [m for m in node.get("extraMounts") or [] if isinstance(m, dict)
                  and m.get("containerPath") == notebook.NODE_DATA_PATH]
        if not mounts or mounts[0].get("hostPath") not in ("LAB_DATA_DIR", str(lab.target.data_dir)):
            problems.append(f"nodes[{i}].extraMounts does not mount the lab data directory where the node expects it")
    labelled = [i for i, n in enumerate(nodes) if str((n.get("labels") or {}).get("k8s-lab/database")) == "true"]
    if labelled != [1]:
        problems.append(f"the database label is on nodes {labelled or 'none'}, not on the first worker alone")
    compared = "" if live else " (no cluster runs here to compare the port with)"
    return _problems_result(str(path), problems, {},
                            f"{path}: the port, the data mount and the database label are right{compared}")
