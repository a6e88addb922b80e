"""Install the whole lab system into the namespace k8s-assignment, with Helm or with kubectl.

Two ways to the same objects (tests/unit/test_chart.py checks that they are the same):

* ``helm``: ``helm upgrade --install k8s-lab chart/ --namespace k8s-assignment --wait``.
* ``manifests``: ``kubectl apply`` of each layer in ``manifests/`` (``00-namespace``,
  ``01-storage``, ...) in order, then a wait for every workload to be ready.

The manifests and the chart name the offline images (what CI uses); in online mode the images
that differ (the database, the watcher's base) are substituted: in the manifests' text before
they are applied, for Helm with ``--set``.

``undeploy()`` removes the system: the namespace with everything in it and the PersistentVolume.
The files on the host (the database's data directory and the backups under the lab data
directory) are kept.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from lab import config, runner, timing, yamldoc
from lab.system import credentials
from lab.system import hostdirs
from lab.cluster import kube
from lab.errors import LabError
from lab.host import tools
from lab.progress import info, step
from lab.target import Target

RELEASE = "k8s-lab"
CHART_DIR = config.REPO_ROOT / "chart"
MANIFESTS_DIR = config.REPO_ROOT / "manifests"
# The database's PersistentVolume in the lab's namespace; another namespace gets DEFAULT_PV-<namespace>.
DEFAULT_PV = "k8s-lab-database-data"
_CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "StorageClass",
                   "PriorityClass", "CustomResourceDefinition"}
METHODS = ("helm", "manifests")
DEFAULT_TIMEOUT_S = 600
HELM_HISTORY_MAX = 5
PERSISTENT_VOLUMES = (DEFAULT_PV, "k8s-lab-backups")
_LAYER_PATTERN = re.compile(r"^\d{2}-[a-z0-9-]+$")

# Where each image role goes in the chart's values.
HELM_IMAGE_VALUES = {
    "database": "database.image",
    "web": "web.image",
    "watcher": "watcher.daemonset.image",
    "probe": "tests.image",
}
_WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


@dataclass
class DeployResult:
    method: str
    mode: str
    images: dict[str, str]
    seconds: float
    waited: bool
    objects: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# What gets deployed


def layers(manifests_dir: Path = MANIFESTS_DIR) -> list[Path]:
    """The manifest layers in the order they are applied (``NN-name`` folders; not ``kind/``)."""
    found = sorted(p for p in Path(manifests_dir).iterdir() if p.is_dir() and _LAYER_PATTERN.match(p.name))
    if not found:
        raise LabError(f"no manifest layers (NN-name folders) in {manifests_dir}",
                       hint="is this a complete checkout?")
    return found


def layer_files(layer: Path) -> list[Path]:
    """The YAML files `kubectl apply -f LAYER` applies: directly in the folder, not in subfolders."""
    return sorted(p for p in layer.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))


def image_substitutions(mode: str = "auto") -> dict[str, str]:
    """Offline image reference -> the one ``mode`` uses, for every image that differs."""
    from lab.build.images import image_names

    offline, wanted = image_names("offline"), image_names(mode)
    return {offline[role]: wanted[role] for role in offline if offline[role] != wanted[role]}


def _pod_specs(document: dict) -> list[dict]:
    """The Pod specs inside one object: a Pod's own, a workload's template, a CronJob's job's."""
    spec = document.get("spec") or {}
    found = [spec] if document.get("kind") == "Pod" else []
    for path in (("template",), ("jobTemplate", "spec", "template")):
        node = spec
        for key in path:
            node = (node or {}).get(key) or {}
        if node.get("spec"):
            found.append(node["spec"])
    return found


def substitute_images(text: str, substitutions: dict[str, str]) -> str:
    """YAML text with every container's whole image reference replaced per `substitutions`
    (parsed and written again as YAML; unchanged text when there is nothing to replace)."""
    documents = [d for d in yamldoc.load_all(text) if d]
    changed = False
    for document in documents:
        for pod in _pod_specs(document):
            for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
                if container.get("image") in substitutions:
                    container["image"] = substitutions[container["image"]]
                    changed = True
    return yaml.safe_dump_all(documents, sort_keys=False) if changed else text


def render_layer(layer: Path, mode: str = "auto") -> str:
    """One layer's YAML, as applied: its files joined, images substituted for ``mode``."""
    substitutions = image_substitutions(mode)
    parts = [substitute_images(path.read_text(), substitutions).strip("\n") for path in layer_files(layer)]
    return "\n---\n".join(parts) + "\n"


def helm_image_args(mode: str = "auto") -> list[str]:
    from lab.build.images import image_names

    names = image_names(mode)
    args: list[str] = []
    for role, key in HELM_IMAGE_VALUES.items():
        args += ["--set", f"{key}={names[role]}"]
    return args


def _secret_values(documents: Iterable[dict]) -> set[str]:
    """Every value in the Secrets among ``documents`` (to keep them out of printed output)."""
    import base64

    values: set[str] = set()
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") != "Secret":
            continue
        for key, value in (doc.get("stringData") or {}).items():
            if not key.endswith("username"):  # account names are not secret
                values.add(str(value))
        for key, value in (doc.get("data") or {}).items():
            try:
                if not key.endswith("username"):
                    values.add(base64.b64decode(str(value)).decode())
            except (ValueError, UnicodeDecodeError):
                pass
    return {v for v in values if len(v) >= 4}


def _known_secrets(target: Target) -> set[str]:
    """Credential values the repository's manifests and chart defaults carry, and the ones
    generated for the lab's namespace."""
    files = (*(path for layer in layers() for path in layer_files(layer)), CHART_DIR / "values.yaml")
    return _committed_secrets(tuple((str(p), *_stamp(p)) for p in files)) | set(credentials.existing(target).values())


def _stamp(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


# Every command a notebook prints is redacted: parsing four dozen YAML files for each one took a
# third of a second. The files are parsed again only when one of them changes.
@lru_cache(maxsize=4)
def _committed_secrets(files: tuple[tuple[str, int, int], ...]) -> frozenset[str]:
    *manifests, (chart_values_path, *_) = files
    docs: list[dict] = []
    for path, *_ in manifests:
        docs += [d for d in yamldoc.load_all(Path(path).read_text()) if d]
    values = _secret_values(docs)
    chart_values = yamldoc.load(Path(chart_values_path).read_text()) or {}
    auth = ((chart_values.get("database") or {}).get("auth") or {})
    values |= {str(auth[k]) for k in ("rootPassword", "password") if auth.get(k)}
    return frozenset(values)


redact = runner.redact


def rewrite_namespace(text: str, namespace: str) -> str:
    """The manifests' YAML for ``namespace``: unchanged for the lab's own namespace; otherwise
    every namespaced object moves there, the Namespace is renamed, each PersistentVolume (the
    database's, the backups') gets a name and host directory of its own (reserved for the claim in
    the new namespace: one namespace's Pods never see another's files) and the web Service lets
    Kubernetes pick its node port (30080 is taken by the lab's own namespace, and node ports are
    cluster-wide)."""
    if namespace == config.NAMESPACE:
        return text
    documents = [d for d in yamldoc.load_all(text) if d]
    for doc in documents:
        kind = doc.get("kind")
        meta = doc.setdefault("metadata", {})
        if kind == "Namespace":
            meta["name"] = namespace
        elif kind == "PersistentVolume":
            spec = doc.get("spec", {})
            if meta.get("name") in PERSISTENT_VOLUMES or spec.get("claimRef", {}).get("namespace") == config.NAMESPACE:
                meta["name"] = f"{meta['name']}-{namespace}"
                if "hostPath" in spec:
                    spec["hostPath"]["path"] = f"{spec['hostPath']['path'].rstrip('/')}-{namespace}"
            if spec.get("claimRef", {}).get("namespace") == config.NAMESPACE:
                spec["claimRef"]["namespace"] = namespace
        elif kind not in _CLUSTER_SCOPED:
            meta["namespace"] = namespace
        for subject in doc.get("subjects") or []:
            if subject.get("namespace") == config.NAMESPACE:
                subject["namespace"] = namespace
        if kind == "Service":
            for port in (doc.get("spec") or {}).get("ports") or []:
                if port.get("nodePort") == config.WEB_NODEPORT:
                    del port["nodePort"]
    return yaml.safe_dump_all(documents, sort_keys=False)


def pv_name(namespace: str) -> str:
    """The database's PersistentVolume for `namespace`, as rewrite_namespace names it."""
    return DEFAULT_PV if namespace == config.NAMESPACE else f"{DEFAULT_PV}-{namespace}"


# --------------------------------------------------------------------------------------------
# Running kubectl and helm


def _tool(name: str) -> Path:
    path = tools.find(name)
    if path is None:
        version = config.HELM_VERSION if name == "helm" else config.KUBERNETES_VERSION
        raise LabError(f"{name} is not available",
                       hint=f"`lab cluster up` provides it, or put {name} {version} on PATH")
    return path


def kubectl_cmd(target: Target, *args: str) -> list[str]:
    return [str(_tool("kubectl")), *target.kubectl_flags(), *args]


def helm_cmd(target: Target, *args: str) -> list[str]:
    return [str(_tool("helm")), *target.helm_flags(), *args]


def _run(target: Target, cmd: Sequence[str], what: str, stdin: str | None = None, check: bool = True,
         timeout: float | None = None) -> runner.Result:
    result = runner.run(cmd, what=what, input=stdin, timeout=timeout, env=tools.env_with_tools(),
                        check=False, hint=_cluster_hint(target))
    if check and result.returncode != 0:
        raise runner.failure(result, what, hint=_cluster_hint(target), secrets=_known_secrets(target))
    return result


def _cluster_hint(target: Target) -> str:
    return (f"is the cluster up (`lab cluster status`)? look with "
            f"`kubectl --context {target.kube_context} -n {target.namespace} get all,pvc,events`")


def _print_output(text: str, secrets: Iterable[str]) -> None:
    for line in redact(text, secrets).splitlines():
        if line.strip():
            info(line)


# --------------------------------------------------------------------------------------------
# Readiness


@dataclass
class Problem:
    """An object that is not ready, what is wrong with it and how to look."""

    ref: str  # kind/name, as kubectl spells it
    detail: str
    pod: str | None = None  # the Pod that shows the trouble, and its failing container
    container: str | None = None

    def hint(self, target: Target) -> str:
        base = f"kubectl --context {target.kube_context} -n {target.namespace}"
        looks = [f"`{base} describe {self.ref}`"]
        if self.pod:
            looks.append(f"`{base} describe pod/{self.pod}`")
            if self.container:
                looks.append(f"`{base} logs {self.pod} -c {self.container}` (add --previous after a restart)")
        looks.append(f"`{base} get events --sort-by=.lastTimestamp`")
        return ", ".join(looks)


def _pod_trouble(pod) -> tuple[str, str | None] | None:
    """Why a Pod is not running, when the kubelet or the scheduler says so: (text, container)."""
    for cond in pod.status.conditions or []:
        if cond.type == "PodScheduled" and cond.status == "False":
            return f"pod {pod.metadata.name} cannot be scheduled: {cond.message or cond.reason}", None
    statuses = [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]
    for status in statuses:
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason not in (None, "PodInitializing", "ContainerCreating"):
            message = f": {waiting.message}" if waiting.message else ""
            return (f"pod {pod.metadata.name}, container {status.name}: {waiting.reason}{message}"[:400],
                    status.name)
        terminated = status.state.terminated if status.state else None
        if terminated and terminated.exit_code not in (0, None) and status.restart_count == 0:
            return (f"pod {pod.metadata.name}, container {status.name} exited with {terminated.exit_code}",
                    status.name)
    return None


def problems(target: Target) -> list[Problem]:
    """Workloads and claims in the namespace that are not ready (empty when all are)."""
    apps, core = kube.apps(target), kube.core(target)
    found: list[Problem] = []
    pods = core.list_namespaced_pod(target.namespace).items

    def pods_of(selector: dict[str, str]) -> list:
        return [p for p in pods if selector.items() <= (p.metadata.labels or {}).items()]

    def add(ref: str, detail: str, selector: dict[str, str] | None) -> None:
        for pod in pods_of(selector or {}) if selector else []:
            trouble = _pod_trouble(pod)
            if trouble:
                found.append(Problem(ref, f"{detail}; {trouble[0]}", pod.metadata.name, trouble[1]))
                return
        found.append(Problem(ref, detail))

    for d in apps.list_namespaced_deployment(target.namespace).items:
        want = d.spec.replicas if d.spec.replicas is not None else 1
        ready, updated = d.status.ready_replicas or 0, d.status.updated_replicas or 0
        if ready < want or updated < want or (d.status.replicas or 0) > want:
            detail = f"{ready} of {want} replicas ready, {updated} updated"
            for cond in d.status.conditions or []:
                if cond.status == "False" or cond.type == "ReplicaFailure":
                    detail += f"; {cond.type}: {cond.message}"
            add(f"deployment/{d.metadata.name}", detail, d.spec.selector.match_labels)
    for s in apps.list_namespaced_stateful_set(target.namespace).items:
        want = s.spec.replicas if s.spec.replicas is not None else 1
        ready = s.status.ready_replicas or 0
        stale = s.status.update_revision and s.status.current_revision != s.status.update_revision
        if ready < want or stale:
            detail = f"{ready} of {want} replicas ready" + (", rolling out" if stale else "")
            add(f"statefulset/{s.metadata.name}", detail, s.spec.selector.match_labels)
    for ds in apps.list_namespaced_daemon_set(target.namespace).items:
        want, ready = ds.status.desired_number_scheduled or 0, ds.status.number_ready or 0
        if ready < want or (ds.status.updated_number_scheduled or 0) < want:
            add(f"daemonset/{ds.metadata.name}", f"{ready} of {want} Pods ready",
                ds.spec.selector.match_labels)
    for pvc in core.list_namespaced_persistent_volume_claim(target.namespace).items:
        if pvc.status.phase != "Bound":
            found.append(Problem(f"persistentvolumeclaim/{pvc.metadata.name}",
                                 f"{pvc.status.phase}, not Bound (is its PersistentVolume there and Available?)"))
    return found


def summary(target: Target) -> str:
    """One line: ready/wanted per workload, e.g. ``web 3/3, database 0/1``."""
    apps = kube.apps(target)
    parts = []
    for d in apps.list_namespaced_deployment(target.namespace).items:
        updated = d.status.updated_replicas or 0
        rolling = f" ({updated} updated)" if updated < (d.spec.replicas or 0) else ""
        parts.append(f"{d.metadata.name} {d.status.ready_replicas or 0}/{d.spec.replicas}{rolling}")
    for s in apps.list_namespaced_stateful_set(target.namespace).items:
        parts.append(f"{s.metadata.name} {s.status.ready_replicas or 0}/{s.spec.replicas}")
    for ds in apps.list_namespaced_daemon_set(target.namespace).items:
        parts.append(f"{ds.metadata.name} {ds.status.number_ready or 0}/{ds.status.desired_number_scheduled or 0}")
    return ", ".join(sorted(parts)) or "no workloads yet"


def _safe_summary(target: Target) -> str | None:
    try:
        return summary(target)
    except Exception:  # noqa: BLE001 - progress output must never break a deploy
        return None


def _not_ready_error(target: Target, what: str, timeout: float) -> LabError:
    try:
        found = problems(target)
    except Exception as error:  # noqa: BLE001 - the API may be what failed
        return LabError(f"{what}: could not inspect the namespace ({type(error).__name__}: {error})",
                        hint=_cluster_hint(target))
    if not found:
        return LabError(f"{what} did not finish within {timeout:.0f}s", hint=_cluster_hint(target))
    first = found[0]
    others = "".join(f"\n  {p.ref}: {p.detail}" for p in found[1:])
    return LabError(f"{what}: {first.ref} did not become ready: {first.detail}"
                    + (f"\n  also not ready:{others}" if others else ""),
                    hint=f"look with {first.hint(target)}")


def wait_ready(target: Target, timeout: float = DEFAULT_TIMEOUT_S, what: str = "deploy") -> None:
    """Wait until every workload and claim in the namespace is ready; LabError names the laggard.

    The progress line shows ready/desired per workload while it waits."""
    deadline = time.monotonic() + timeout
    with timing.measure(timing.WAIT), step(f"waiting for the workloads in {target.namespace}") as progress:
        time.sleep(1)  # give controllers a moment to notice freshly applied objects
        while True:
            try:
                pending = problems(target)
            except Exception:  # noqa: BLE001 - a transient API error: try again until the deadline
                pending = [Problem("namespace", "the API server did not answer")]
            progress.update(_safe_summary(target) or "")
            if not pending:
                info(progress.detail)
                return
            if time.monotonic() > deadline:
                raise _not_ready_error(target, what, timeout)
            time.sleep(2)


# --------------------------------------------------------------------------------------------
# Images in the cluster


def _normalise(ref: str) -> str:
    name = ref.split("@", 1)[0]
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return name


def missing_images(target: Target, refs: Iterable[str]) -> dict[str, list[str]]:
    """Image -> nodes that do not have it (from the nodes' status)."""
    nodes = kube.core(target).list_node().items
    missing: dict[str, list[str]] = {}
    for ref in refs:
        wanted = _normalise(ref)
        for node in nodes:
            have = {n for image in node.status.images or [] for n in image.names or []}
            if wanted not in have and ref not in have:
                missing.setdefault(ref, []).append(node.metadata.name)
    return missing


def check_images(target: Target, mode: str, wait_s: float = 30) -> None:
    """The lab's own images (k8s-lab/...) must be loaded into the nodes: nothing pulls them."""
    from lab.build.images import image_names

    local = sorted({ref for ref in image_names(mode).values() if ref.startswith("k8s-lab/")})
    deadline = time.monotonic() + wait_s
    with timing.measure(timing.WAIT):  # polling is waiting on the cluster
        while True:
            missing = missing_images(target, local)
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(5)  # a node reports newly loaded images with its next status update
    if missing:
        listing = "; ".join(f"{ref} (missing on {', '.join(nodes)})" for ref, nodes in missing.items())
        raise LabError(f"the cluster's nodes lack the lab's images: {listing}",
                       hint="build and load them with `lab images build`")


# --------------------------------------------------------------------------------------------
# Which method deployed what


def installed_method(target: Target) -> str | None:
    """"helm" when a Helm release of the lab exists, "manifests" when lab objects exist without
    one, None when nothing of the lab is in the namespace."""
    from kubernetes.client.exceptions import ApiException

    core = kube.core(target)
    try:
        core.read_namespace(target.namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    if kube.list_metadata(core.list_namespaced_secret, target.namespace, f"owner=helm,name={RELEASE}"):
        return "helm"
    selector = "app.kubernetes.io/part-of=k8s-lab"
    apps = kube.apps(target)
    if (apps.list_namespaced_deployment(target.namespace, label_selector=selector).items
            or apps.list_namespaced_stateful_set(target.namespace, label_selector=selector).items
            or core.list_namespaced_config_map(target.namespace, label_selector=selector).items):
        return "manifests"
    return None


def _require_cluster(target: Target) -> None:
    try:
        kube.core(target).list_namespace(limit=1, _request_timeout=10)
    except LabError:
        raise
    except Exception as error:  # noqa: BLE001 - refused, timed out, TLS, auth: all mean "not up"
        raise LabError(f"the cluster {target.cluster!r} does not answer "
                       f"({type(error).__name__}: {str(error)[:200]})",
                       hint="start it with `lab cluster up`; `lab cluster status` shows its state") from error


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise LabError(f"unknown deploy method {method!r}", hint=f"use one of: {', '.join(METHODS)}")


# --------------------------------------------------------------------------------------------
# Deploy and undeploy


def deploy(target: Target, method: str = "helm", mode: str = "auto", wait: bool = True,
           timeout: float = DEFAULT_TIMEOUT_S, helm_args: Sequence[str] = ()) -> DeployResult:
    """Install (or update) the whole system in the namespace k8s-assignment.

    ``helm_args`` are extra arguments for ``helm upgrade`` (e.g. ``["--set", "web.replicas=2"]``).
    """
    from lab.build.images import image_names, resolve_mode

    _check_method(method)
    mode = resolve_mode(mode)
    names = image_names(mode)
    _require_cluster(target)
    if method == "manifests" and target.namespace != config.NAMESPACE:
        raise LabError(f"manifests/ names its namespace ({config.NAMESPACE}) in every object",
                       hint=f"deploy into {target.namespace} with --helm, which installs the chart there")
    other = installed_method(target)
    if other is not None and other != method:
        raise LabError(f"the lab is already deployed in {target.namespace} with {other}; "
                       f"{method} would fight over the same objects",
                       hint=f"remove it first with `lab deploy --delete --{other}`, "
                            f"or deploy with --{other}")
    check_images(target, mode)
    start = time.monotonic()
    if method == "helm":
        objects = _deploy_helm(target, mode, wait, timeout, helm_args)
    else:
        if helm_args:
            raise LabError("helm_args only apply to the helm method")
        objects = _deploy_manifests(target, mode, wait, timeout)
    seconds = time.monotonic() - start
    info(f"the lab system is {'ready' if wait else 'applied'} in {target.namespace} "
         f"({method}, {mode} images, {seconds:.0f}s); web: NodePort {config.WEB_NODEPORT}")
    return DeployResult(method, mode, names, seconds, wait, objects)


def _deploy_manifests(target: Target, mode: str, wait: bool, timeout: float) -> list[str]:
    secrets = _known_secrets(target)
    applied: list[str] = []
    for layer in layers():
        text = credentials.fill(render_layer(layer, mode), target)
        documents = list(yamldoc.load_all(text))
        secrets |= _secret_values(documents)
        hostdirs.prepare(documents, target.cluster)
        with step(f"kubectl apply -f manifests/{layer.name}"):
            result = _run(target, kubectl_cmd(target, "apply", "-f", "-"), f"kubectl apply of manifests/{layer.name}",
                          stdin=text, timeout=120)
            _print_output(result.stdout, secrets)
            applied += [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    if wait:
        wait_ready(target, timeout, what="kubectl apply of manifests/")
    return applied


def _deploy_helm(target: Target, mode: str, wait: bool, timeout: float, helm_args: Sequence[str]) -> list[str]:
    prepare_for_helm(target, [*helm_image_args(mode), *helm_args])
    cmd = helm_cmd(target, "upgrade", "--install", RELEASE, str(CHART_DIR), "--namespace", target.namespace,
                   "--create-namespace", "--history-max", str(HELM_HISTORY_MAX),
                   "--values", str(credentials.helm_values_file(target)),
                   *helm_image_args(mode), *helm_args)
    if wait:
        cmd += ["--wait", "--timeout", f"{int(timeout)}s"]
    secrets = _known_secrets(target) | _values_in_args(helm_args)
    what = f"helm upgrade --install {RELEASE}"
    with step(what + (" --wait" if wait else "")) as progress:
        # helm prints nothing while it waits: the progress line polls the workloads instead.
        with progress.following(lambda: _safe_summary(target)):
            result = runner.run(cmd, what=what, env=tools.env_with_tools(), timeout=timeout + 120,
                                check=False, hint=_cluster_hint(target))
        if result.returncode != 0:
            text = redact((result.stderr or result.stdout or "").strip(), secrets)
            if wait and ("timed out" in text or "context deadline exceeded" in text):
                raise _not_ready_error(target, what, timeout)
            raise LabError(f"{what} failed (exit {result.returncode}):\n{text[-3000:]}",
                           hint=_cluster_hint(target))
        _print_output(result.stdout.split("NOTES:", 1)[0], secrets)
    return [f"release/{RELEASE}"]


def prepare_for_helm(target: Target, args: Sequence[str]) -> None:
    """What the release cannot do for itself: the namespace with the chart's Pod Security labels
    (Helm keeps its records there, so the release must not own it) and the host directories of
    its PersistentVolumes, owned by the uid that uses them (no Pod may run as root to chown)."""
    rendered = _run(target, helm_cmd(target, "template", RELEASE, str(CHART_DIR), "--namespace", target.namespace,
                                     "--set", "namespace.create=true", *args), "helm template", timeout=120).stdout
    documents = [d for d in yamldoc.load_all(rendered) if d]
    [namespace] = [d for d in documents if d.get("kind") == "Namespace"]
    labels = [f"{k}={v}" for k, v in namespace["metadata"]["labels"].items() if k.startswith("pod-security.")]
    namespace = target.namespace
    exists = _run(target, kubectl_cmd(target, "get", "namespace", namespace), "kubectl get namespace", check=False,
                  timeout=60)
    if exists.returncode != 0:
        _run(target, kubectl_cmd(target, "create", "namespace", namespace), "kubectl create namespace", timeout=60)
    _run(target, kubectl_cmd(target, "label", "namespace", namespace, "--overwrite", *labels),
         "kubectl label namespace", timeout=60)
    hostdirs.prepare(documents, target.cluster)


def _values_in_args(args: Sequence[str]) -> set[str]:
    """Values passed with --set for keys that look like credentials (kept out of output)."""
    found = set()
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and re.search(r"password|secret|token", key, re.IGNORECASE) and len(value) >= 4:
            found.add(value)
    return found


def helm_values(target: Target, revision: int | None = None) -> dict:
    """The user-supplied values of the release (of one revision)."""
    args = ["get", "values", RELEASE, "--namespace", target.namespace, "--output", "yaml"]
    if revision is not None:
        args += ["--revision", str(revision)]
    return yamldoc.load(_run(target, helm_cmd(target, *args), "helm get values", timeout=60).stdout) or {}


def helm_rollback(target: Target, revision: int | None = None, wait: bool = True,
                  timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Roll the release back (to the previous revision unless one is named)."""
    args = ["rollback", RELEASE, *([str(revision)] if revision is not None else []),
            "--namespace", target.namespace, "--history-max", str(HELM_HISTORY_MAX)]
    if wait:
        args += ["--wait", "--timeout", f"{int(timeout)}s"]
    with step(f"helm rollback {RELEASE}" + (f" {revision}" if revision is not None else "")):
        _run(target, helm_cmd(target, *args), "helm rollback", timeout=timeout + 60)
        if wait:
            wait_ready(target, timeout, what="helm rollback")


def undeploy(target: Target, method: str | None = None, wait: bool = True, timeout: float = 300) -> str | None:
    """Remove the system: the Helm release or the manifests' objects, then the namespace (with
    the database's claim) and the PersistentVolume. Files on the host stay. Returns the method
    that had deployed it (None when nothing was there)."""
    if method is not None:
        _check_method(method)
    _require_cluster(target)
    found = installed_method(target)
    method = method or found
    if method is None:
        info(f"no lab release or workloads in {target.namespace}; removing whatever is left")
        method = "manifests"  # still remove a leftover PersistentVolume or empty namespace
    _check_method(method)
    if method == "helm" and found == "helm":
        # No --wait: the PersistentVolume stays (pv-protection) until the claim, which is not
        # the release's, goes with the namespace below; that wait comes after.
        with step(f"helm uninstall {RELEASE}"):
            result = _run(target, helm_cmd(target, "uninstall", RELEASE, "--namespace", target.namespace),
                          "helm uninstall", check=False, timeout=timeout + 60)
            if result.returncode != 0 and "not found" not in (result.stderr or ""):
                raise LabError(f"helm uninstall failed: {(result.stderr or '').strip()[-2000:]}",
                               hint=_cluster_hint(target))
            _print_output(result.stdout, ())
    elif method == "manifests":
        for layer in reversed(layers()):
            with step(f"kubectl delete -f manifests/{layer.name}"):
                result = _run(target, kubectl_cmd(target, "delete", "--ignore-not-found", "--wait=false", "-f", "-"),
                              f"kubectl delete of manifests/{layer.name}",
                              stdin=render_layer(layer, "offline"), timeout=120)
                _print_output(result.stdout, ())
    with step(f"deleting namespace {target.namespace} and the lab's PersistentVolumes"):
        _run(target, kubectl_cmd(target, "delete", "namespace", target.namespace, "--ignore-not-found", "--wait=false"),
             "kubectl delete namespace", timeout=60)
        _run(target, kubectl_cmd(target, "delete", "persistentvolume", *PERSISTENT_VOLUMES, "--ignore-not-found",
                         "--wait=false"), "kubectl delete persistentvolume", timeout=60)
        if wait:
            _wait_gone(target, timeout)
    info(f"files on the host stay: {target.data_dir} (pv/database, backups)")
    return found


def _wait_gone(target: Target, timeout: float) -> None:
    core = kube.core(target)
    reads = {f"namespace/{target.namespace}": (core.read_namespace, target.namespace),
             **{f"persistentvolume/{pv}": (core.read_persistent_volume, pv) for pv in PERSISTENT_VOLUMES}}
    remaining = list(reads)

    def gone() -> bool:
        remaining[:] = [ref for ref in remaining if not kube.not_found(*reads[ref])]
        return not remaining

    try:
        kube.wait_until(gone, timeout, interval=2)
    except LabError:
        # What is left, and where to see what holds it, says more than wait_until's timeout.
        raise LabError(f"{', '.join(remaining)} still there after {timeout:.0f}s",
                       hint=f"`kubectl --context {target.kube_context} describe {remaining[0]}` "
                            "shows what holds it (finalizers)") from None
