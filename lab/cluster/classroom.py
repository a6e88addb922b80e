"""A classroom on one shared cluster: a namespace per student that the student can use and nothing else.

``lab classroom up ROSTER.csv --out DIR`` reads a roster (CSV with a ``student`` column of ids made
of lower-case letters, digits and ``-``; optional ``name`` and ``email``) and creates, per student,
in any cluster the instructor's kubeconfig context reaches (the multi-tenancy recipe of the
Kubernetes docs):

- namespace ``student-<id>`` with Pod Security Admission labels (enforce ``baseline``: no hostPath,
  no privileged Pods, no host network; warn and audit ``restricted``);
- ServiceAccount ``student``, a Role limited to the namespace and its RoleBinding (quotas, limit
  ranges and the classroom's NetworkPolicy can be read but not lifted);
- a ClusterRole + ClusterRoleBinding that only reads what the lab's checks look at outside the
  namespace: the nodes, the storage classes, the ``kube-system`` namespace (the cluster's
  identity), the student's own namespace and PersistentVolumes;
- a ResourceQuota and a LimitRange (in place of the lab's own, which notebook 02 then leaves out);
- NetworkPolicy ``classroom-isolation``, which admits traffic only from namespaces that are not
  classroom namespaces (the cluster's DNS, the grader) and from outside the Pod network (the
  nodes: a node port reached from this machine), never from another student's Pods, and which the
  student cannot change; and ``classroom-same-namespace``, which admits the namespace's own Pods,
  as a namespace without policies would. Policies only ever add what they allow, so the lab's own
  policies (notebook 05) can only restrict traffic inside the namespace once that second one is
  gone: the student may delete it, and ``up`` run again does not bring it back;
- the database's and the backups' PersistentVolumes and their host directories, made by the
  instructor side (a directory of backups per student: another student's dumps hold their data);
- ``DIR/<id>/kubeconfig``: a ServiceAccount token for that namespace and nothing else. Its
  context is named like the lab's (``kind-<cluster>``), so the notebooks work unchanged.

Everything is applied server-side, so ``up`` run again updates and renews tokens. ``status``
shows what each namespace holds and how many of the grader's checks pass; ``down`` deletes it all
(the host directories stay, like the lab's Retain volumes).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from lab import config, yamldoc
from lab.errors import LabError
from lab.system import hostdirs
from lab.target import Target

PREFIX = "student-"
LABEL = "k8s-lab/classroom"
STUDENT_LABEL = "k8s-lab/student"
SERVICE_ACCOUNT = "student"
FIELD_MANAGER = "k8s-lab-classroom"
STUDENT_ID = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MAX_ID = 63 - len(PREFIX)
TOKEN_HOURS = 24 * 14
QUOTA_NAME, LIMITS_NAME = "classroom-quota", "classroom-limits"
ISOLATION_POLICY = "classroom-isolation"
OPEN_POLICY = "classroom-same-namespace"
# The lab's own names a student may change or delete (kubectl apply of the lab's manifests, helm
# upgrade of its chart); the classroom's own objects of the same kinds are not among them, except
# the policy that stands in for an open namespace.
LAB_QUOTA_NAMES = ["lab-quota", "lab-limits"]
LAB_POLICY_NAMES = ["default-deny-ingress", "web-allow-http", "database-allow-clients", "web-egress",
                    "backup-egress", "watcher-egress"]

QUOTA = {"pods": "30", "requests.cpu": "2", "requests.memory": "3Gi", "limits.cpu": "6", "limits.memory": "6Gi",
         "persistentvolumeclaims": "4", "requests.storage": "5Gi", "services.loadbalancers": "0",
         "services.nodeports": "3"}
LIMITS = {"default": {"cpu": "500m", "memory": "512Mi"}, "defaultRequest": {"cpu": "25m", "memory": "64Mi"},
          "max": {"cpu": "2", "memory": "2Gi"}}


@dataclass(frozen=True)
class Student:
    id: str
    name: str = ""
    email: str = ""

    def namespace(self, prefix: str = PREFIX) -> str:
        return f"{prefix}{self.id}"


# ============================================================================================
# Roster
# ============================================================================================


def read_roster(path: str | os.PathLike) -> list[Student]:
    """The students of a roster CSV; every bad row is named in one LabError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise LabError(f"cannot read the roster {path}: {error}", "a CSV file with a header line: student,name,email")
    rows = list(csv.DictReader(text.splitlines()))
    header = [h.strip().lower() for h in (csv.DictReader(text.splitlines()).fieldnames or [])]
    if "student" not in header:
        raise LabError(f"the roster {path} has no `student` column (columns: {', '.join(header) or 'none'})",
                       "the first line names the columns, e.g. student,name,email")
    students, problems, seen = [], [], set()
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
        sid = row.get("student", "")
        if not sid:
            problems.append(f"line {line}: empty student id")
        elif not STUDENT_ID.match(sid) or len(sid) > MAX_ID:
            problems.append(f"line {line}: {sid!r} is not an id (lower-case letters, digits and '-', "
                            f"at most {MAX_ID} characters)")
        elif sid in seen:
            problems.append(f"line {line}: {sid!r} appears twice")
        else:
            seen.add(sid)
            students.append(Student(sid, row.get("name", ""), row.get("email", "")))
    if problems:
        raise LabError(f"the roster {path} has {len(problems)} bad row(s): " + "; ".join(problems[:10]),
                       "fix those lines; ids become namespace names student-<id>")
    if not students:
        raise LabError(f"the roster {path} lists no students", "one line per student after the header")
    return students


def ids_for(names: Sequence[str], roster: Sequence[Student] | None = None) -> dict[str, str]:
    """An id per submission name, unique: the roster's id when the name matches a student, else a slug."""
    from lab.grading import intake

    matched = intake.match_roster(names, roster) if roster else {}
    ids: dict[str, str] = {}
    for name in names:
        student = matched.get(name)
        stem = Path(name).stem if Path(name).suffix.lower() in intake.ARCHIVE_SUFFIXES else name
        base = student.id if student else (intake.slug(stem)[:MAX_ID].strip("-") or "student")
        candidate, n = base, 1
        while candidate in ids.values():
            n += 1
            candidate = f"{base[:MAX_ID - 4]}-{n}"
        ids[name] = candidate
    return ids


# ============================================================================================
# What the classroom creates
# ============================================================================================


def _labels(student: Student, classroom: str) -> dict:
    return {LABEL: classroom, STUDENT_LABEL: student.id, "app.kubernetes.io/managed-by": FIELD_MANAGER}


def _pvs(namespace: str, labels: dict) -> list[dict]:
    """The lab's PersistentVolumes (the database's, the backups'), renamed for the namespace as the
    notebooks name them, each on a host directory of its own."""
    from lab.system import deploy

    pvs = []
    for name in ("database-pv.yaml", "backups-pv.yaml"):
        text = (deploy.MANIFESTS_DIR / "01-storage" / name).read_text()
        pv = next(d for d in yamldoc.load_all(deploy.rewrite_namespace(text, namespace)) if d)
        pv["metadata"].setdefault("labels", {}).update(labels)
        pvs.append(pv)
    return pvs


def kind_pod_network() -> str:
    """The Pod network of the lab's kind clusters (manifests/kind/cluster.yaml)."""
    document = yamldoc.load((config.REPO_ROOT / "manifests" / "kind" / "cluster.yaml").read_text())
    return document["networking"]["podSubnet"]


def pod_networks(target: Target) -> list[str]:
    """The cluster's Pod networks: kubeadm's podSubnet (kind's and kubeadm's clusters), else the
    nodes' Pod ranges (a node added later brings a range of its own: run `up` again)."""
    from lab.cluster import kube

    core = kube.core(target)
    try:
        found = core.read_namespaced_config_map("kubeadm-config", "kube-system", _request_timeout=30)
        subnet = yamldoc.load((found.data or {}).get("ClusterConfiguration") or "{}").get("networking", {}).get("podSubnet")
    except Exception:  # noqa: BLE001 - not a kubeadm cluster: the nodes say
        subnet = None
    if subnet:
        return [c.strip() for c in str(subnet).split(",") if c.strip()]
    ranges = sorted({c for n in core.list_node(_request_timeout=30).items for c in (n.spec.pod_cid_rs or [])})
    if not ranges:
        raise LabError(f"cannot tell the Pod network of {target.kube_context}: no kubeadm-config, no node has a podCIDR",
                       hint="classroom-isolation needs it to admit the nodes but no other student's Pods")
    return ranges


def _from_outside(networks: Sequence[str]) -> list[dict]:
    """Peers for every address outside the Pod networks (per IP family they cover)."""
    import ipaddress

    peers = []
    for family, everything in ((4, "0.0.0.0/0"), (6, "::/0")):
        mine = [n for n in networks if ipaddress.ip_network(n, strict=False).version == family]
        if mine:
            peers.append({"ipBlock": {"cidr": everything, "except": mine}})
    return peers


def objects(student: Student, *, prefix: str = PREFIX, classroom: str = "student",
            networks: Sequence[str] | None = None) -> list[dict]:
    """The Kubernetes objects of one student's place in the classroom; ``networks``: the
    cluster's Pod networks (default: the lab's kind cluster's)."""
    ns = student.namespace(prefix)
    labels = _labels(student, classroom)
    meta = {"namespace": ns, "labels": labels}
    pvs = _pvs(ns, labels)
    everything = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
    read = ["get", "list", "watch"]
    rules = [
        {"apiGroups": [""], "resources": ["pods", "pods/log", "pods/exec", "pods/portforward", "pods/eviction",
                                          "services", "endpoints", "configmaps", "secrets",
                                          "persistentvolumeclaims", "serviceaccounts", "events"],
         "verbs": everything},
        {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale", "statefulsets",
                                              "statefulsets/scale", "daemonsets", "replicasets",
                                              "controllerrevisions"], "verbs": everything},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": everything},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": everything},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": everything},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": read},
        # Roles and bindings of their own: the API server refuses any that grants more than the student has.
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": everything},
        # The lab's own quota and policies may be applied and changed; the classroom's may only be read.
        {"apiGroups": [""], "resources": ["resourcequotas", "limitranges"], "verbs": [*read, "create"]},
        {"apiGroups": [""], "resources": ["resourcequotas", "limitranges"], "resourceNames": LAB_QUOTA_NAMES,
         "verbs": ["update", "patch", "delete"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": [*read, "create"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
         "resourceNames": [*LAB_POLICY_NAMES, OPEN_POLICY, *config.CANARY_POLICIES], "verbs": ["update", "patch", "delete"]},
        # What a ServiceAccount of the namespace may do (notebook 06 asks it of its watcher).
        {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
    ]
    cluster_role = f"k8s-lab-{ns}"
    subject = [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}]
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ns, "labels": {**labels,
                                             "pod-security.kubernetes.io/enforce": "baseline",
                                             "pod-security.kubernetes.io/warn": "restricted",
                                             "pod-security.kubernetes.io/audit": "restricted"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT, **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "student", **meta},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "student", **meta},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "student"}, "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": cluster_role, "labels": labels},
         "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": read},
                   {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": read},
                   {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system", ns],
                    "verbs": ["get"]},
                   {"apiGroups": [""], "resources": ["persistentvolumes"],
                    "resourceNames": [pv["metadata"]["name"] for pv in pvs], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": cluster_role, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
         "subjects": subject},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": QUOTA_NAME, **meta},
         "spec": {"hard": QUOTA}},
        {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": LIMITS_NAME, **meta},
         "spec": {"limits": [{"type": "Container", **LIMITS}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": ISOLATION_POLICY, **meta},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                      {"key": LABEL, "operator": "DoesNotExist"}]}},
                      *_from_outside(networks or [kind_pod_network()])]}]}},
        open_policy(ns, labels),
        *pvs,
    ]


def open_policy(namespace: str, labels: dict) -> dict:
    """The policy that admits the namespace's own Pods, as a namespace without policies would;
    ``labels``: the namespace's (the classroom's keys are kept)."""
    kept = {k: v for k, v in labels.items() if k in (LABEL, STUDENT_LABEL, "app.kubernetes.io/managed-by")}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": OPEN_POLICY, "namespace": namespace, "labels": kept},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}}


def made_by_classroom(obj) -> bool:
    """Whether a Kubernetes object (client model) is one the classroom made, not the student: checks
    of the student's work must not count it."""
    return ((obj.metadata.labels or {}).get("app.kubernetes.io/managed-by") == FIELD_MANAGER)


# ============================================================================================
# up / status / down
# ============================================================================================


def _apply(documents: Sequence[dict], context: str) -> None:
    from lab.cluster import kube

    stream = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(documents)})
    kube.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager", FIELD_MANAGER, "-f", "-",
                 stdin=stream, target=Target.for_context(context), timeout=600)


def _cluster_entry(context: str) -> tuple[str, dict]:
    """(cluster name, cluster entry: server and CA) of the instructor's context."""
    from lab.cluster import kube

    view = json.loads(kube.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json",
                                   target=Target.for_context(context)).stdout)
    cluster = view["clusters"][0]
    return cluster["name"], cluster["cluster"]


def _token(namespace: str, context: str, hours: float) -> str:
    from kubernetes import client

    from lab.cluster import kube

    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=int(hours * 3600)))
    answer = kube.core(Target.for_context(context)).create_namespaced_service_account_token(SERVICE_ACCOUNT, namespace, request)
    return answer.status.token


def kubeconfig(student: Student, token: str, cluster: dict, *, prefix: str = PREFIX) -> dict:
    """A kubeconfig with one context, named like the lab's, that acts as the student's ServiceAccount."""
    ns = student.namespace(prefix)
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": config.KUBE_CONTEXT, "cluster": cluster}],
            "users": [{"name": ns, "user": {"token": token}}],
            "contexts": [{"name": config.KUBE_CONTEXT,
                          "context": {"cluster": config.KUBE_CONTEXT, "user": ns, "namespace": ns}}],
            "current-context": config.KUBE_CONTEXT}


def host_directory(pv: dict, target: Target) -> Path:
    """Where a hostPath PersistentVolume's files are on this machine (the nodes mount the cluster's data directory)."""
    return target.data_dir / Path(pv["spec"]["hostPath"]["path"]).relative_to(config.NODE_DATA_PATH)


def _existing_volumes(target: Target) -> set[str]:
    from lab.cluster import kube

    return {pv.metadata.name for pv in kube.core(target).list_persistent_volume(label_selector=LABEL).items}


def up(students: Iterable[Student], out_dir: str | os.PathLike, *, context: str,
       prefix: str = PREFIX, token_hours: float = TOKEN_HOURS) -> dict[str, Path]:
    """Create (or update) every student's place and write ``out_dir/<id>/kubeconfig``; the paths."""
    from concurrent.futures import ThreadPoolExecutor

    from lab.cluster import kube

    students = list(students)
    classroom = prefix.rstrip("-") or "student"
    target = Target.for_context(context)
    existing = _existing_volumes(target)
    present = {n.metadata.name for n in kube.core(target).list_namespace(
        label_selector=f"{LABEL}={classroom}", _request_timeout=30).items}
    # A student may have deleted the open-namespace policy (notebook 05): renewing tokens must not restore it.
    networks = pod_networks(target)
    documents = [doc for s in students for doc in objects(s, prefix=prefix, classroom=classroom, networks=networks)
                 if not (doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] == OPEN_POLICY
                         and s.namespace(prefix) in present)]
    for pv in (d for d in documents if d["kind"] == "PersistentVolume"):
        # The instructor side makes the volumes' directories, so no student Pod needs hostPath rights.
        directory = host_directory(pv, target)
        if pv["metadata"]["name"] not in existing and directory.exists():
            # A new volume starts empty: the files of an earlier classroom's student with the same
            # id would hand the new database another database's accounts and passwords.
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for _, owner, mode in hostdirs.wanted([pv]):  # the database runs as its own uid, never root
            os.chown(directory, *map(int, owner.split(":")))
            if mode:
                os.chmod(directory, int(mode, 8))
    _apply(documents, context)
    _, cluster = _cluster_entry(context)
    out = Path(out_dir)

    def write(student: Student) -> Path:
        token = _wait(lambda: _token(student.namespace(prefix), context, token_hours),
                      f"a token for {student.namespace(prefix)}")
        folder = out / student.id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "kubeconfig"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(kubeconfig(student, token, cluster, prefix=prefix), sort_keys=False))
        os.chmod(path, 0o600)
        return path

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip((s.id for s in students), pool.map(write, students)))


def _wait(fn, what: str, timeout: float = 60):
    """The ServiceAccount exists a moment after apply returns; retry until it answers."""
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise LabError(f"could not get {what}: API error {error.status} {error.reason}") from error
            time.sleep(0.5)


def down(*, context: str, prefix: str = PREFIX, wait: bool = True) -> list[str]:
    """Delete the classroom's namespaces, PersistentVolumes, ClusterRoles and bindings; the
    namespaces it deleted."""
    from lab.cluster import kube

    selector = f"{LABEL}={prefix.rstrip('-') or 'student'}"
    names = kube.kubectl("get", "namespaces", "-l", selector, "-o", "name", target=Target.for_context(context)).stdout.split()
    kube.kubectl("delete", "namespaces,clusterrolebindings,clusterroles", "-l", selector, "--ignore-not-found",
                 f"--wait={'true' if wait else 'false'}", target=Target.for_context(context), timeout=900)
    kube.kubectl("delete", "persistentvolumes", "-l", selector, "--ignore-not-found",
                 f"--wait={'true' if wait else 'false'}", target=Target.for_context(context), timeout=300)
    return [n.split("/", 1)[-1] for n in names]


# ============================================================================================
# Classroom mode, seen from a notebook
# ============================================================================================


def context_namespace(documents: Iterable[dict], context: str) -> str | None:
    """The default namespace that ``context`` names in these kubeconfig documents (None: none)."""
    for document in documents:
        for entry in (document or {}).get("contexts") or []:
            if isinstance(entry, dict) and entry.get("name") == context:
                return (entry.get("context") or {}).get("namespace") or None
    return None


def classroom_namespace(namespace: str | None, may_create_namespaces: bool) -> str | None:
    """The student's namespace when a kubeconfig is a classroom's: it names a default namespace
    and may not create namespaces (an instructor's or a kind admin's may). Else None."""
    return namespace if namespace and not may_create_namespaces else None


@lru_cache(maxsize=None)
def detect(context: str, kubeconfig: str | None = None) -> str | None:
    """The student's namespace when ``context`` (in ``kubeconfig``, default $KUBECONFIG) is a
    classroom kubeconfig, else None. Notebooks then skip what acts on the cluster itself (creating
    kind, nodes, PersistentVolumes, namespaces) and do the namespaced part."""
    from kubernetes import client

    from lab.cluster import kube
    from lab.target import kubeconfig_paths

    documents = []
    for path in kubeconfig_paths(Path(kubeconfig) if kubeconfig else None):
        try:
            documents.append(yamldoc.load(path.read_text()) or {})
        except (OSError, yaml.YAMLError):
            continue
    namespace = context_namespace(documents, context)
    if namespace is None:
        return None
    target = replace(Target.for_context(context), kubeconfig=Path(kubeconfig) if kubeconfig else None)
    review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
        resource_attributes=client.V1ResourceAttributes(verb="create", resource="namespaces")))
    try:
        allowed = client.AuthorizationV1Api(kube.api_client(target)).create_self_subject_access_review(
            review, _request_timeout=10).status.allowed
    except Exception:  # noqa: BLE001 - no cluster: the notebook's own prerequisites say so
        return None
    return classroom_namespace(namespace, bool(allowed))
