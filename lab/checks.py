"""Checkpoints: verify one step of the lab against the live cluster and record the evidence.

A notebook calls a checkpoint after every step::

    from lab import checks
    checks.configure(namespace=namespace)          # once, after the `parameters` cell

    checks.checkpoint(
        "db.statefulset-ready", points=2,
        hint="kubectl -n k8s-assignment describe sts database",
        verify=lambda: checks.statefulset_ready("database", replicas=1),
    )

The verification runs at once. The cell shows one PASS/FAIL line (with what is wrong and the hint)
and carries a machine-readable record as a display output of MIME type :data:`MIME_TYPE`, which
papermill and Jupyter save in the notebook. ``lab grade`` reads those records.

A record holds the check's id, points, verdict, message and hint, its start and finish times, the
cluster's identity (kube-system namespace UID, server version, nodes, node image, tool versions),
the UIDs of the objects it looked at, the notebook, the SHA-256 of the cell that produced it, and a
hash chain: every record carries the hash of the previous record of the same kernel session and
its own SHA-256 over canonical JSON, so outputs edited after execution are detectable.

A failing checkpoint does not raise (the notebook goes on; the grade gives partial credit) unless
``strict=True``. Verifications return :class:`Result` ``(passed, message, uids)``; the library below
covers the lab's objects, and :func:`register` adds named checks (some instructor-only) that
``lab grade --live`` re-runs against a cluster.

A check can also be *not applicable* (:func:`not_applicable`): in a classroom namespace the
instructor made the namespace, its quota and the PersistentVolume, so checks of the student making
them neither pass nor fail. Their records say so, they show ``N/A`` and a grade counts them neither
as earned nor as possible points.
"""
from __future__ import annotations

import glob as _glob
import json
import os
import shutil
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple

from lab import config, evidence, memo, runner, timing
from lab.errors import LabError
from lab.target import Target

# The record format and hash chain live in lab.evidence (the grader reads records with it too).
from lab.evidence import (CHECK_ID, GENESIS_HASH, MAX_MESSAGE, MIME_TYPE, SCHEMA, Session, _jsonable,  # noqa: E402,F401
                          _now, _number, _short, bundle, canonical, evidence_output, normalize_source,
                          record_hash, render_html, render_text, source_hash)

REQUEST_TIMEOUT_S = 10

__all__ = [
    "MIME_TYPE", "SCHEMA", "Result", "Record", "CheckpointFailed", "Session", "configure", "settings", "target_for",
    "NotApplicable", "ok", "fail", "not_applicable",
    "checkpoint", "check", "evaluate", "summary", "register", "registry", "cluster_identity",
    "namespace_exists", "namespace_created", "in_classroom", "classroom_made", "deployment_ready",
    "statefulset_ready", "service_has_port", "service_has_endpoints", "configmap_has_key", "secret_has_keys", "pvc_bound",
    "networkpolicy_exists", "probe_matrix_clean", "pods_on_every_node", "helm_release_deployed",
    "file_exists_on_host",
]


# ============================================================================================
# Results, records, hashing
# ============================================================================================


class Result(NamedTuple):
    """What a verification found: the verdict, one line saying why, and the UIDs of the objects it
    examined (``"Kind/namespace/name" -> uid``; evidence that ties the run to one cluster)."""

    passed: bool
    message: str
    uids: Mapping[str, str] = {}

    @property
    def applicable(self) -> bool:
        return True


class NotApplicable(Result):
    """A :class:`Result` of a check that did not apply: there was nothing for the student to do."""

    __slots__ = ()

    @property
    def applicable(self) -> bool:
        return False


def ok(message: str, uids: Mapping[str, str] | None = None) -> Result:
    return Result(True, message, dict(uids or {}))


def fail(message: str, uids: Mapping[str, str] | None = None) -> Result:
    return Result(False, message, dict(uids or {}))


def not_applicable(message: str, uids: Mapping[str, str] | None = None) -> Result:
    """Neither PASS nor FAIL: what the check looks for is not the student's to make here (a
    classroom's namespace, quota or volume, made by the instructor). Earns nothing and costs nothing."""
    return NotApplicable(False, message, dict(uids or {}))


class CheckpointFailed(LabError):
    """Raised by a ``strict=True`` checkpoint that did not pass."""

    def __init__(self, record: Mapping[str, Any]):
        super().__init__(f"checkpoint {record['check_id']} failed: {record['message']}", record.get("hint") or None)
        self.record = dict(record)


def make_record(check_id: str, points: float, result: Result, *, session: Session | None = None,
                **fields: Any) -> dict:
    """Build the evidence record of one verification and seal it into ``session``'s chain (this
    kernel's by default); the fields are :func:`lab.evidence.make_record`'s.

    ``checkpoint`` uses this with the live result; tests and benchmarks call it with made-up
    results to produce exactly the records a real run would.
    """
    return evidence.make_record(check_id, points, result, session=session or _session, **fields)


class Record:
    """What :func:`checkpoint` returns: truthy when the check passed; ``.data`` is the record."""

    def __init__(self, data: Mapping[str, Any], shown: bool = False):
        self.data = dict(data)
        self._shown = shown
        self._cell = _execution_count()

    passed = property(lambda self: self.data["passed"])
    check_id = property(lambda self: self.data["check_id"])
    message = property(lambda self: self.data["message"])
    hint = property(lambda self: self.data["hint"])
    points = property(lambda self: self.data["points"])
    earned = property(lambda self: self.data["earned"])
    uids = property(lambda self: dict(self.data["objects"]))
    applicable = property(lambda self: evidence.applies(self.data))

    def __bool__(self) -> bool:
        return bool(self.passed)

    def __repr__(self) -> str:
        verdict = "not applicable" if not self.applicable else "passed" if self.passed else "failed"
        return f"<checkpoint {self.check_id}: {verdict} {self.earned}/{self.points}>"

    def _ipython_display_(self) -> None:
        # The evidence was displayed when the check ran. As the value of that same cell, show
        # nothing (a second copy would be a duplicate record); later, only the PASS/FAIL line.
        if not self._shown or _execution_count() != self._cell:
            print(render_text(self.data))


# ============================================================================================
# Settings and the kernel session
# ============================================================================================


@dataclass
class Settings:
    """Where checks look, for this kernel. Set with :func:`configure`."""

    namespace: str = field(default_factory=lambda: os.environ.get("LAB_NAMESPACE") or config.NAMESPACE)
    context: str = field(default_factory=lambda: os.environ.get("LAB_CONTEXT") or config.KUBE_CONTEXT)
    # The kubeconfig file the context is in (None: $KUBECONFIG or ~/.kube/config), e.g. a classroom's.
    kubeconfig: str | None = None
    notebook: str | None = None
    # A fixed cluster identity instead of reading the cluster (tests, benchmarks, demos).
    identity: dict | None = None
    # Display records (False: only return them, e.g. for `lab grade --live`).
    display: bool = True


settings = Settings()
_session = Session()
_identity_cache: dict[tuple[str, str], dict] = {}


def configure(**changes: Any) -> None:
    """Change where checks look: ``namespace``, ``context``, ``notebook`` (its file name, when
    the kernel cannot tell), ``identity`` (a fixed cluster identity) or ``display``.
    ``checks.settings`` shows the current values."""
    global settings
    unknown = set(changes) - set(Settings.__dataclass_fields__)
    if unknown:
        raise LabError(f"unknown checks setting{'s' if len(unknown) > 1 else ''}: {', '.join(sorted(unknown))}",
                       f"settings: {', '.join(Settings.__dataclass_fields__)}")
    settings = replace(settings, **changes)


def new_session() -> Session:
    """Start a new hash chain (a fresh kernel does this implicitly)."""
    global _session
    _session = Session()
    return _session


def session() -> Session:
    return _session


def _ns(namespace: str | None) -> str:
    return namespace or settings.namespace


def _ctx(context: str | None) -> str:
    return context or settings.context


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _execution_count() -> int | None:
    ip = _ipython()
    return getattr(ip, "execution_count", None) if ip is not None else None


def _current_cell_source() -> str | None:
    """The raw source of the cell being executed (None outside IPython)."""
    ip = _ipython()
    try:
        return ip.history_manager.input_hist_raw[-1] if ip is not None else None
    except (AttributeError, IndexError):
        return None


def _notebook_name(explicit: str | None) -> str:
    if explicit or settings.notebook:
        return Path(explicit or settings.notebook).name
    # Jupyter Server tells the kernel its notebook; papermill does not (the grader then uses the file).
    ip = _ipython()
    name = os.environ.get("JPY_SESSION_NAME") or (ip.user_ns.get("__session__") if ip is not None else None)
    return Path(str(name)).name if name else ""


# ============================================================================================
# Cluster identity
# ============================================================================================


def target_for(context: str | None = None, namespace: str | None = None) -> Target:
    """Where checks look: the context (this kernel's by default) in the configured kubeconfig."""
    target = Target.for_context(_ctx(context), _ns(namespace))
    return replace(target, kubeconfig=Path(settings.kubeconfig)) if settings.kubeconfig else target


class _Apis:
    """Kubernetes API groups over one client, each made when first used: the client library
    imports an API group's module (hundreds of model classes) on first access, and a check
    that reads a Namespace should not pay for the apps, networking and discovery groups."""

    _GROUPS = {"core": "CoreV1Api", "apps": "AppsV1Api", "networking": "NetworkingV1Api",
               "discovery": "DiscoveryV1Api", "version": "VersionApi"}
    # The kube-system namespace's UID, read once: see cluster_identity.
    kube_system_uid: str | None = None

    def __init__(self, api) -> None:
        self._api = api

    def __getattr__(self, group: str):
        if group not in self._GROUPS:
            raise AttributeError(group)
        from kubernetes import client

        made = getattr(client, self._GROUPS[group])(self._api)
        setattr(self, group, made)
        return made


_apis_by_client: "weakref.WeakKeyDictionary[Any, _Apis]" = weakref.WeakKeyDictionary()


def _apis(context: str | None = None) -> _Apis:
    """Kubernetes API groups for the context, one set per client (lab.cluster.kube keeps a client
    per context until its kubeconfig changes)."""
    from lab.cluster import kube

    api = kube.api_client(target_for(context))
    apis = _apis_by_client.get(api)
    if apis is None:
        apis = _apis_by_client[api] = _Apis(api)
    return apis


def _describe_error(error: BaseException) -> str:
    status = getattr(error, "status", None)
    if status is not None and hasattr(error, "reason"):
        return f"API error {status} {error.reason}"
    if isinstance(error, LabError):
        return error.message
    return _short(f"{type(error).__name__}: {error}", 300)


def _tool_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    try:
        from lab.host import tools
    except Exception:  # noqa: BLE001 - tool versions are a courtesy
        return versions
    for name in ("kubectl", "helm", "kind"):
        try:
            versions[name] = tools.version(name)
        except Exception:  # noqa: BLE001
            versions[name] = None
    return versions


def _node_images_by_uid(nodes: list[dict]) -> dict[str, str]:
    """Node UID -> the kind node's image, remembered: a node keeps its image for life, and every
    notebook kernel's first checkpoint asked Docker again (a process start-up)."""
    names = {n["uid"]: n["name"] for n in nodes}

    def ask(uids: list[str]) -> dict[str, str | None]:
        images = _node_images([names[uid] for uid in uids])
        return {uid: images.get(names[uid]) for uid in uids}

    return memo.recall("node-images", names, ask)


def _node_images(names: list[str]) -> dict[str, str]:
    """The container image of each kind node (kind runs nodes as Docker containers)."""
    docker = shutil.which("docker")
    if not docker or not names:
        return {}
    try:
        out = runner.run([docker, "inspect", "--format", "{{.Name}} {{.Config.Image}}", *names],
                         timeout=5, check=False)
    except LabError:
        return {}
    images = {}
    for line in out.stdout.splitlines():
        name, _, image = line.strip().lstrip("/").partition(" ")
        if name in names and image:
            images[name] = image
    return images


def cluster_identity(context: str | None = None) -> dict:
    """Who the cluster is: the kube-system namespace UID (unique per cluster), server version,
    nodes (name, UID, OS image, kubelet, runtime, kind node image) and kubectl/helm/kind versions.

    The UID is read once per API client: a recreated cluster has a new one, and comes with a new
    kubeconfig entry (its address and certificates), hence a new client. The rest is cached per
    UID. Never raises: an unreachable cluster gives ``{"context": ..., "error": ...}``.
    """
    if settings.identity is not None:
        return dict(settings.identity)
    ctx = _ctx(context)
    try:
        apis = _apis(ctx)
        uid = apis.kube_system_uid or apis.core.read_namespace(
            "kube-system", _request_timeout=REQUEST_TIMEOUT_S).metadata.uid
        apis.kube_system_uid = uid
    except Exception as error:  # noqa: BLE001 - no kubeconfig, refused, timed out
        return {"context": ctx, "error": _describe_error(error)}
    cached = _identity_cache.get((ctx, uid))
    if cached is not None:
        return dict(cached)
    identity: dict[str, Any] = {"context": ctx, "kube_system_uid": uid}
    try:
        identity["server_version"] = apis.version.get_code(_request_timeout=REQUEST_TIMEOUT_S).git_version
    except Exception as error:  # noqa: BLE001
        identity["server_version"] = None
        identity["server_version_error"] = _describe_error(error)
    nodes = []
    try:
        for node in apis.core.list_node(_request_timeout=REQUEST_TIMEOUT_S).items:
            info = node.status.node_info
            nodes.append({
                "name": node.metadata.name,
                "uid": node.metadata.uid,
                "os_image": info.os_image if info else None,
                "kubelet": info.kubelet_version if info else None,
                "runtime": info.container_runtime_version if info else None,
            })
    except Exception as error:  # noqa: BLE001
        identity["nodes_error"] = _describe_error(error)
    images = _node_images_by_uid(nodes)
    for n in nodes:
        n["node_image"] = images.get(n["uid"])
    identity["nodes"] = sorted(nodes, key=lambda n: n["name"])
    identity["tools"] = _tool_versions()
    _identity_cache[(ctx, uid)] = identity
    return dict(identity)


# ============================================================================================
# Checkpoints
# ============================================================================================

Verify = Callable[[], Any]


def _as_result(value: Any) -> Result:
    if isinstance(value, Result):
        return value
    if isinstance(value, bool):
        return Result(value, "passed" if value else "failed", {})
    if isinstance(value, tuple) and len(value) in (2, 3):
        uids = value[2] if len(value) == 3 else {}
        return Result(bool(value[0]), str(value[1]), dict(uids or {}))
    try:  # numpy.bool_ and friends
        import numpy

        if isinstance(value, numpy.bool_):
            return _as_result(bool(value))
    except ImportError:  # pragma: no cover
        pass
    return Result(False, f"the verification returned {type(value).__name__}, not (passed, message, uids)", {})


def evaluate(check_id: str, points: float, verify: Verify, *, namespace: str | None = None,
             context: str | None = None, notebook: str | None = None, **record: Any) -> dict:
    """Run ``verify`` and return its record sealed into ``session`` (this kernel's by default),
    without displaying anything. ``record`` passes the rest of :func:`lab.evidence.make_record`'s
    fields through (hint, description, kind, session).

    An exception inside ``verify`` is a failed check whose message says what went wrong.
    """
    started = _now()
    try:
        result = _as_result(verify())
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # noqa: BLE001 - a crashing verification is a failed check, not a crash
        text = _describe_error(error)
        if isinstance(error, LabError) and error.hint:
            text += f" ({error.hint})"
        result = Result(False, f"could not verify: {text}", {})
    finished = _now()
    return make_record(
        check_id, points, result, started=started, finished=finished, notebook=_notebook_name(notebook),
        namespace=_ns(namespace), context=_ctx(context), cluster=cluster_identity(context),
        cell_source=_current_cell_source(), **record,
    )


def _show(record: Mapping[str, Any]) -> bool:
    if not settings.display:
        return False
    if _ipython() is not None:
        from IPython.display import display

        display(bundle(record), raw=True)
    else:
        print(render_text(record))
    return True


def checkpoint(
    check_id: str,
    points: float = 1,
    verify: Verify | None = None,
    *,
    hint: str = "",
    description: str = "",
    strict: bool = False,
    namespace: str | None = None,
    context: str | None = None,
    notebook: str | None = None,
):
    """Verify one step now, show PASS/FAIL and record the evidence in the notebook.

    ``verify`` takes no arguments and returns a :class:`Result` (or ``(passed, message[, uids])``,
    or a bool). Without ``verify``, ``checkpoint(...)`` is a decorator that runs the decorated
    function at once (the name is then bound to the returned record)::

        @checks.checkpoint("web.replicas", points=1, hint="kubectl -n k8s-assignment get deploy web")
        def web_replicas():
            return checks.deployment_ready("web", replicas=3)

    Returns a :class:`Record` (truthy when passed). With ``strict=True`` a failed check raises
    :class:`CheckpointFailed` after its evidence is recorded.
    """
    if verify is None:
        def decorator(fn: Verify) -> Record:
            return checkpoint(check_id, points, fn, hint=hint, description=description, strict=strict,
                              namespace=namespace, context=context, notebook=notebook)

        return decorator
    if not callable(verify):
        raise TypeError("verify must be a function of no arguments, e.g. verify=lambda: checks.pvc_bound('data')")
    with timing.checkpoint():
        record = evaluate(check_id, points, verify, hint=hint, description=description,
                          namespace=namespace, context=context, notebook=notebook)
        shown = _show(record)
    if strict and not record["passed"] and evidence.applies(record):
        raise CheckpointFailed(record)
    return Record(record, shown=shown)


def summary() -> None:
    """Show the points of this kernel session's checkpoints so far (not itself evidence)."""
    records = {r["check_id"]: r for r in _session.records}
    applicable = [r for r in records.values() if evidence.applies(r)]
    earned = sum(r["earned"] for r in applicable)
    possible = sum(r["points"] for r in applicable)
    lines = [f"{'PASS' if r['passed'] else 'FAIL'}  {r['check_id']}  {r['earned']}/{r['points']}"
             if evidence.applies(r) else f"N/A   {r['check_id']}  (not applicable)" for r in records.values()]
    skipped = len(records) - len(applicable)
    lines.append(f"total: {earned}/{possible} points from {len(applicable)} checkpoint(s)"
                 + (f"; {skipped} not applicable" if skipped else ""))
    print("\n".join(lines))


# ============================================================================================
# Registered checks (`lab grade --live`)
# ============================================================================================


@dataclass(frozen=True)
class RegisteredCheck:
    check_id: str
    points: float
    hint: str
    description: str
    verify: Callable[..., Any]  # verify(namespace=..., context=...) -> Result
    instructor_only: bool = False
    # The notebook after which `lab grade --execute` runs it (None: after the last one, and in --live).
    notebook: str | None = None
    # A build task: the student writes the object; no points when the run had the solutions.
    build_task: bool = False


_REGISTRY: dict[str, RegisteredCheck] = {}


def register(check_id: str, *, points: float, hint: str = "", description: str = "", instructor_only: bool = False,
             notebook: str | None = None, build_task: bool = False):
    """Decorator: register ``fn(namespace, context) -> Result`` as a named check.

    Notebooks run a registered check with :func:`check`; the grader runs them itself, outside the
    student's kernel: ``lab grade --execute`` after ``notebook`` (a file name such as
    ``"03-database.ipynb"``), ``lab grade --live`` against a running namespace, including the
    ``instructor_only`` ones students never see. ``build_task``: the student builds the object, so
    a run with the reference solutions earns nothing for it.
    """
    if not CHECK_ID.match(check_id):
        raise ValueError(f"bad check id {check_id!r}")

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[check_id] = RegisteredCheck(check_id, _number(points), hint, description or (fn.__doc__ or "").strip(),
                                              fn, instructor_only, notebook, build_task)
        return fn

    return decorator


def registry(include_instructor_only: bool = True) -> list[RegisteredCheck]:
    return [c for c in _REGISTRY.values() if include_instructor_only or not c.instructor_only]


def _registered(check_id: str) -> RegisteredCheck:
    try:
        return _REGISTRY[check_id]
    except KeyError:
        raise LabError(f"no registered check {check_id!r}",
                       f"registered: {', '.join(sorted(_REGISTRY)) or '(none)'}") from None


def check(check_id: str, *, strict: bool = False, namespace: str | None = None, context: str | None = None,
          notebook: str | None = None) -> Record:
    """Run a registered check as a checkpoint (its points and hint come from the registry)."""
    reg = _registered(check_id)
    return checkpoint(check_id, reg.points, lambda: reg.verify(namespace=_ns(namespace), context=_ctx(context)),
                      hint=reg.hint, description=reg.description, strict=strict, namespace=namespace,
                      context=context, notebook=notebook)


def run_registered(context: str | None = None, namespace: str | None = None,
                   include_instructor_only: bool = True,
                   which: Iterable[RegisteredCheck] | None = None) -> list[dict]:
    """Evaluate registered checks (``which``, default all) against a cluster in a chain of their
    own; the records, nothing displayed. Safe to call from several threads at once."""
    session = Session()
    chosen = registry(include_instructor_only) if which is None else list(which)
    return [evaluate(reg.check_id, reg.points,
                     lambda reg=reg: reg.verify(namespace=_ns(namespace), context=_ctx(context)),
                     hint=reg.hint, description=reg.description, namespace=namespace, context=context,
                     notebook="(grader)", kind="instructor" if reg.instructor_only else "grader", session=session)
            for reg in chosen]


# ============================================================================================
# The verification library: each returns Result(passed, message, uids)
# ============================================================================================


def _read(fn: Callable[..., Any], *args: Any) -> Any:
    """Read one object; None when it does not exist."""
    from kubernetes.client.exceptions import ApiException

    try:
        return fn(*args, _request_timeout=REQUEST_TIMEOUT_S)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _key(kind: str, namespace: str | None, name: str) -> str:
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def _selector(labels: Mapping[str, str] | str | None) -> str:
    if labels is None:
        return ""
    if isinstance(labels, str):
        return labels
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# Pods come as the API server's JSON: a namespace's Pods are the largest lists checks read, and
# the client's models cost about a millisecond per Pod to build, more than the request itself.


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _pod_trouble(pod: Mapping[str, Any]) -> str | None:
    name, status = pod["metadata"]["name"], pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"pod {name} is not scheduled: {cond.get('message') or cond.get('reason')}"
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason") not in (None, "PodInitializing", "ContainerCreating"):
            return f"pod {name} container {container.get('name')}: {waiting['reason']}"
        if terminated and terminated.get("exitCode") not in (0, None):
            return f"pod {name} container {container.get('name')} exited with {terminated['exitCode']}"
    return None


def _pods(namespace: str, selector: str, context: str | None) -> list[dict]:
    response = _apis(context).core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False,
                                                       _request_timeout=REQUEST_TIMEOUT_S)
    return json.loads(response.data).get("items") or []


def _workload_pods(namespace: str, spec_selector, pods: Iterable[Mapping[str, Any]]) -> tuple[dict[str, str], str | None]:
    """UIDs of the workload's ready Pods among ``pods``, and what is wrong with the first troubled one."""
    labels = (spec_selector.match_labels if spec_selector else None) or {}
    if not labels:
        return {}, None
    uids, trouble = {}, None
    for pod in pods:
        if not labels.items() <= (pod["metadata"].get("labels") or {}).items():
            continue
        if _pod_ready(pod):
            uids[_key("Pod", namespace, pod["metadata"]["name"])] = pod["metadata"]["uid"]
        elif trouble is None:
            trouble = _pod_trouble(pod)
    return uids, trouble


def classroom_made(obj) -> bool:
    """Whether a Namespace, PersistentVolume, quota... (client model) was made by `lab classroom up`,
    i.e. by the instructor: a check of the student making it does not apply."""
    from lab.cluster.classroom import made_by_classroom

    return obj is not None and made_by_classroom(obj)


def in_classroom(namespace: str | None = None, context: str | None = None) -> bool:
    """Whether the namespace is a classroom's (its quota, limits and volumes are the instructor's)."""
    return classroom_made(_read(_apis(context).core.read_namespace, _ns(namespace)))


def namespace_exists(name: str | None = None, context: str | None = None) -> Result:
    """The namespace exists and is Active."""
    name = _ns(name)
    ns = _read(_apis(context).core.read_namespace, name)
    if ns is None:
        return fail(f"namespace {name} does not exist")
    uids = {_key("Namespace", None, name): ns.metadata.uid}
    phase = ns.status.phase if ns.status else None
    if phase != "Active":
        return fail(f"namespace {name} is {phase}", uids)
    return ok(f"namespace {name} exists", uids)


def namespace_created(name: str | None = None, context: str | None = None) -> Result:
    """The namespace the student made exists and is Active; not applicable in a classroom's
    namespace, which the instructor made."""
    name = _ns(name)
    if in_classroom(name, context):
        return not_applicable(f"classroom: your instructor made namespace {name}")
    return namespace_exists(name, context=context)


def _lookup(kind: str, read: Callable[..., Any], name: str, namespace: str) -> tuple[Any, Any]:
    """(the object, its uids), or (None, the FAIL that says it is missing)."""
    obj = _read(read, name, namespace)
    if obj is None:
        return None, fail(f"{kind} {name} not found in namespace {namespace}")
    return obj, {_key(kind, namespace, name): obj.metadata.uid}


def _rollout(kind: str, read: Callable[..., Any], name: str, namespace: str | None, replicas: int | None,
             context: str | None) -> Result:
    """Whether the workload `read` finds is rolled out: all wanted replicas ready and current."""
    namespace = _ns(namespace)
    # The namespace's Pods are listed while the workload is read, and picked by its selector here.
    answers = answers_at_once([lambda: _lookup(kind, read, name, namespace), lambda: _pods(namespace, "", context)])
    obj, uids = next(answers)
    if obj is None:
        return uids
    want = obj.spec.replicas if obj.spec.replicas is not None else 1
    if replicas is not None and want != replicas:
        return fail(f"{kind} {name} asks for {want} replicas, expected {replicas}", uids)
    status = obj.status
    ready = status.ready_replicas or 0
    # A StatefulSet whose Pods all run the current revision may leave updatedReplicas unset.
    updated = status.updated_replicas
    if updated is None:
        same_revision = getattr(status, "current_revision", None) == getattr(status, "update_revision", 0)
        updated = (status.current_replicas or 0) if same_revision else 0
    pods, trouble = _workload_pods(namespace, obj.spec.selector, next(answers))
    uids.update(pods)
    if (status.observed_generation or 0) < (obj.metadata.generation or 0):
        return fail(f"{kind} {name}: the controller has not yet seen the latest change", uids)
    if ready < want or updated < want:
        why = f"; {trouble}" if trouble else ""
        return fail(f"{kind} {name}: {ready}/{want} replicas ready, {updated} up to date{why}", uids)
    return ok(f"{kind} {name}: {ready}/{want} replicas ready", uids)


def deployment_ready(name: str, replicas: int | None = None, namespace: str | None = None,
                     context: str | None = None) -> Result:
    """The Deployment exists, asks for ``replicas`` (when given) and all of them are ready and current."""
    return _rollout("Deployment", _apis(context).apps.read_namespaced_deployment, name, namespace, replicas, context)


def statefulset_ready(name: str, replicas: int | None = None, namespace: str | None = None,
                      context: str | None = None) -> Result:
    """The StatefulSet exists, asks for ``replicas`` (when given) and all of them are ready and current."""
    return _rollout("StatefulSet", _apis(context).apps.read_namespaced_stateful_set, name, namespace, replicas,
                    context)


def service_has_port(name: str, port: int, node_port: int | None = None, protocol: str = "TCP",
                     target_port: int | str | None = None, namespace: str | None = None,
                     context: str | None = None) -> Result:
    """The Service exposes ``port`` (and ``node_port`` / ``target_port`` when given)."""
    namespace = _ns(namespace)
    svc, uids = _lookup("Service", _apis(context).core.read_namespaced_service, name, namespace)
    if svc is None:
        return uids
    ports = svc.spec.ports or []
    listed = ", ".join(f"{p.port}/{p.protocol}" + (f" (nodePort {p.node_port})" if p.node_port else "")
                       for p in ports) or "no ports"
    match = next((p for p in ports if p.port == port and (p.protocol or "TCP") == protocol), None)
    if match is None:
        return fail(f"Service {name} has {listed}; expected port {port}/{protocol}", uids)
    if target_port is not None and str(match.target_port) != str(target_port):
        return fail(f"Service {name} port {port} targets {match.target_port}, expected {target_port}", uids)
    if node_port is not None:
        if svc.spec.type not in ("NodePort", "LoadBalancer"):
            return fail(f"Service {name} is of type {svc.spec.type}; a node port needs type NodePort", uids)
        if match.node_port != node_port:
            return fail(f"Service {name} port {port} has nodePort {match.node_port}, expected {node_port}", uids)
        return ok(f"Service {name} exposes {port}/{protocol} on node port {node_port}", uids)
    return ok(f"Service {name} exposes {port}/{protocol}", uids)


def service_has_endpoints(name: str, minimum: int = 1, namespace: str | None = None,
                          context: str | None = None) -> Result:
    """At least ``minimum`` ready endpoints back the Service (its selector matches ready Pods)."""
    namespace = _ns(namespace)
    apis = _apis(context)
    answers = answers_at_once([
        lambda: _lookup("Service", apis.core.read_namespaced_service, name, namespace),
        lambda: apis.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={name}", _request_timeout=REQUEST_TIMEOUT_S)])
    svc, uids = next(answers)
    if svc is None:
        return uids
    slices = next(answers).items
    ready = 0
    for s in slices:
        for ep in s.endpoints or []:
            if ep.conditions is None or ep.conditions.ready is not False:
                ready += 1
                if ep.target_ref is not None and ep.target_ref.kind == "Pod":
                    uids[_key("Pod", namespace, ep.target_ref.name)] = ep.target_ref.uid
    if ready < minimum:
        return fail(f"Service {name} has {ready} ready endpoint(s), expected at least {minimum}: "
                    "does its selector match ready Pods?", uids)
    return ok(f"Service {name} has {ready} ready endpoint(s)", uids)


def configmap_has_key(name: str, key: str, contains: str | None = None, namespace: str | None = None,
                      context: str | None = None) -> Result:
    """The ConfigMap has ``key`` (whose text contains ``contains``, when given)."""
    namespace = _ns(namespace)
    cm, uids = _lookup("ConfigMap", _apis(context).core.read_namespaced_config_map, name, namespace)
    if cm is None:
        return uids
    data, binary = cm.data or {}, cm.binary_data or {}
    if key not in data and key not in binary:
        keys = ", ".join(sorted([*data, *binary])) or "none"
        return fail(f"ConfigMap {name} has no key {key!r} (keys: {keys})", uids)
    if contains is not None and contains not in data.get(key, ""):
        return fail(f"ConfigMap {name} key {key!r} does not contain {contains!r}", uids)
    return ok(f"ConfigMap {name} has key {key!r}", uids)


def secret_has_keys(name: str, keys: Iterable[str] | str, namespace: str | None = None,
                    context: str | None = None) -> Result:
    """The Secret has every key, each non-empty. Values are never read into the record."""
    namespace = _ns(namespace)
    wanted = [keys] if isinstance(keys, str) else list(keys)
    secret, uids = _lookup("Secret", _apis(context).core.read_namespaced_secret, name, namespace)
    if secret is None:
        return uids
    present = {k: bool(v) for k, v in {**(secret.data or {}), **(secret.string_data or {})}.items()}
    del secret  # only key names and emptiness are kept
    missing = [k for k in wanted if k not in present]
    empty = [k for k in wanted if k in present and not present[k]]
    if missing:
        return fail(f"Secret {name} lacks key(s) {', '.join(missing)} (has: {', '.join(sorted(present)) or 'none'})", uids)
    if empty:
        return fail(f"Secret {name} has empty key(s) {', '.join(empty)}", uids)
    return ok(f"Secret {name} has key(s) {', '.join(wanted)}", uids)


def pvc_bound(name: str, namespace: str | None = None, context: str | None = None) -> Result:
    """The PersistentVolumeClaim is Bound to a volume."""
    namespace = _ns(namespace)
    apis = _apis(context)
    pvc, uids = _lookup("PersistentVolumeClaim", apis.core.read_namespaced_persistent_volume_claim, name, namespace)
    if pvc is None:
        return uids
    phase = pvc.status.phase if pvc.status else None
    if phase != "Bound":
        return fail(f"PersistentVolumeClaim {name} is {phase or 'not bound'}"
                    f" (storage class {pvc.spec.storage_class_name or 'default'})", uids)
    volume = pvc.spec.volume_name
    try:
        pv = _read(apis.core.read_persistent_volume, volume) if volume else None
    except Exception:  # noqa: BLE001 - reading PVs may be forbidden; the claim is what counts
        pv = None
    if pv is not None:
        uids[_key("PersistentVolume", None, volume)] = pv.metadata.uid
    return ok(f"PersistentVolumeClaim {name} is bound to {volume}", uids)


def networkpolicy_exists(name: str, policy_types: Iterable[str] | None = None, namespace: str | None = None,
                         context: str | None = None) -> Result:
    """The NetworkPolicy exists (and covers ``policy_types``, e.g. ["Ingress"], when given)."""
    namespace = _ns(namespace)
    policy, uids = _lookup("NetworkPolicy", _apis(context).networking.read_namespaced_network_policy, name, namespace)
    if policy is None:
        return uids
    if policy_types is not None:
        have = set(policy.spec.policy_types or [])
        lacking = [t for t in policy_types if t not in have]
        if lacking:
            return fail(f"NetworkPolicy {name} has policyTypes {sorted(have) or 'none'}; missing {', '.join(lacking)}", uids)
    return ok(f"NetworkPolicy {name} exists", uids)


def probe_matrix_clean(matrix: Any, column: str = "correct", show: int = 5) -> Result:
    """Every row of a probe matrix (a pandas DataFrame from lab.ops.probe, or a list of dicts) has
    ``correct`` true: each observed reachability matches the expected one."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and not isinstance(matrix, pd.DataFrame):
        matrix = pd.DataFrame(list(matrix))
    if column not in matrix.columns:
        return fail(f"the probe matrix has no {column!r} column (columns: {', '.join(map(str, matrix.columns))})")
    if len(matrix) == 0:
        return fail("the probe matrix is empty: did the probes run?")
    wrong = matrix[~matrix[column].fillna(False).astype(bool)]
    if len(wrong) == 0:
        return ok(f"all {len(matrix)} probes match the expected reachability")
    # lab.ops.probe's columns say what was probed; any other frame shows its first columns
    others = [c for c in ("source", "destination", "port", "expected", "observed") if c in matrix.columns]
    others = others or [c for c in matrix.columns if c != column][:6]
    rows = ["; ".join(f"{c}={row[c]}" for c in others) for _, row in wrong.head(show).iterrows()]
    more = f" (+{len(wrong) - show} more)" if len(wrong) > show else ""
    return fail(f"{len(wrong)} of {len(matrix)} probes differ from the expected reachability: "
                + " | ".join(rows) + more)


def pods_on_every_node(label: Mapping[str, str] | str, namespace: str | None = None,
                       context: str | None = None) -> Result:
    """A ready Pod matching ``label`` (e.g. "app=watcher") runs on every node of the cluster."""
    namespace = _ns(namespace)
    selector = _selector(label)
    listed_nodes, pods = answers_at_once([lambda: _apis(context).core.list_node(_request_timeout=REQUEST_TIMEOUT_S),
                                          lambda: _pods(namespace, selector, context)])
    nodes = sorted(n.metadata.name for n in listed_nodes.items)
    covered, uids, trouble = set(), {}, None
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if _pod_ready(pod) and node_name:
            covered.add(node_name)
            uids[_key("Pod", namespace, pod["metadata"]["name"])] = pod["metadata"]["uid"]
        elif trouble is None:
            trouble = _pod_trouble(pod)
    missing = [n for n in nodes if n not in covered]
    if missing:
        why = f"; {trouble}" if trouble else ""
        return fail(f"no ready Pod with {selector} on node(s) {', '.join(missing)} "
                    f"({len(covered)}/{len(nodes)} nodes covered){why}", uids)
    return ok(f"a ready Pod with {selector} runs on each of the {len(nodes)} node(s)", uids)


def helm_revisions(name: str, namespace: str | None = None, context: str | None = None) -> list[dict]:
    """The Helm release's revisions, oldest first: [{"revision", "status", "kind", "name", "uid"}]
    (lab.system.helm_records: Helm's own records, no helm binary needed)."""
    from lab.system import helm_records

    return helm_records.revisions(target_for(context, namespace), name, timeout=REQUEST_TIMEOUT_S)


def helm_release_deployed(name: str, namespace: str | None = None, context: str | None = None) -> Result:
    """The Helm release's latest revision has status ``deployed``."""
    namespace = _ns(namespace)
    revisions = helm_revisions(name, namespace, context)
    if not revisions:
        return fail(f"no Helm release {name} in namespace {namespace}")
    latest = revisions[-1]
    uids = {_key(latest["kind"], namespace, latest["name"]): latest["uid"]}
    if latest["status"] != "deployed":
        return fail(f"Helm release {name} revision {latest['revision']} is {latest['status']}", uids)
    return ok(f"Helm release {name} revision {latest['revision']} is deployed", uids)


def answers_at_once(questions: Iterable[Callable[[], Any]]) -> Iterator[Any]:
    """Each question's answer, in order, the questions asked at once in threads: checks that ask
    the API server independent questions take as long as the slowest instead of the sum. A caller
    that stops at the first failure never sees a later question's error, as if they had been
    asked one after the other."""
    questions = list(questions)
    if len(questions) == 1:
        yield questions[0]()
        return
    with ThreadPoolExecutor(max_workers=max(1, len(questions))) as pool:
        for future in [pool.submit(question) for question in questions]:
            yield future.result()


def system_ready(release: str = "k8s-lab", namespace: str | None = None, context: str | None = None) -> Result:
    """The lab's Helm release is deployed, the database runs its 1 replica and the web server its 3."""
    uids: dict[str, str] = {}
    for result in answers_at_once([
            lambda: helm_release_deployed(release, namespace, context),
            lambda: statefulset_ready("database", replicas=1, namespace=namespace, context=context),
            lambda: deployment_ready("web", replicas=3, namespace=namespace, context=context)]):
        if not result.passed:
            return fail(result.message, {**uids, **result.uids})
        uids.update(result.uids)
    return ok("release deployed; database 1/1 and web 3/3 ready", uids)


def file_exists_on_host(path: str | os.PathLike, nonempty: bool = True) -> Result:
    """A file (or, with wildcards, at least one file) exists on the host. A relative path is taken
    inside the lab's data directory ($LAB_DATA_DIR), which the kind nodes mount at /var/local/k8s-lab."""
    raw = os.fspath(path)
    full = raw if os.path.isabs(raw) else os.path.join(config.data_dir(), raw)
    matches = sorted(_glob.glob(full)) if _glob.has_magic(full) else ([full] if os.path.exists(full) else [])
    files = [m for m in matches if os.path.isfile(m)]
    if not files:
        return fail(f"no file at {full}")
    uids = {}
    for f in files[:20]:
        st = os.stat(f)
        uids[f"File/{f}"] = f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"
    if nonempty and not any(os.path.getsize(f) > 0 for f in files):
        return fail(f"{full}: {len(files)} file(s), all empty", uids)
    newest = max(files, key=os.path.getmtime)
    return ok(f"{len(files)} file(s) at {full} (newest {os.path.basename(newest)})", uids)


# ============================================================================================
# Registered checks of the deployed system
# ============================================================================================

_NETWORK_POLICIES = ("default-deny-ingress", "web-allow-http", "database-allow-clients")


def _all_of(results: Iterable[Result]) -> Result:
    results = list(results)
    uids: dict[str, str] = {}
    for r in results:
        uids.update(r.uids)
    failed = [r.message for r in results if not r.passed]
    if failed:
        return fail("; ".join(failed), uids)
    return ok("; ".join(r.message for r in results), uids)


@register("system.namespace", points=1, hint="kubectl get namespace k8s-assignment")
def _system_namespace(namespace: str, context: str) -> Result:
    """The lab namespace exists."""
    return namespace_created(namespace, context=context)


@register("system.database-ready", points=2, hint="kubectl -n k8s-assignment describe statefulset database")
def _system_database(namespace: str, context: str) -> Result:
    """The database StatefulSet runs its one replica."""
    return statefulset_ready("database", replicas=1, namespace=namespace, context=context)


@register("system.database-storage", points=1, hint="kubectl -n k8s-assignment get pvc,pv")
def _system_database_storage(namespace: str, context: str) -> Result:
    """The database's claim is bound."""
    return pvc_bound("data-database-0", namespace=namespace, context=context)


@register("system.database-secret", points=1, hint="kubectl -n k8s-assignment describe secret database-credentials")
def _system_database_secret(namespace: str, context: str) -> Result:
    """The database credentials Secret has its keys."""
    return secret_has_keys("database-credentials", ["root-password", "username", "password"],
                           namespace=namespace, context=context)


@register("system.web-ready", points=2, hint="kubectl -n k8s-assignment describe deployment web")
def _system_web(namespace: str, context: str) -> Result:
    """The web Deployment runs 3 ready replicas."""
    return deployment_ready("web", replicas=3, namespace=namespace, context=context)


def web_nodeport(namespace: str, context: str) -> Result:
    """The web Service is a NodePort on port 80 (on 30080 in the lab's own namespace)."""
    if namespace == config.NAMESPACE:
        return service_has_port("web", 80, node_port=config.WEB_NODEPORT, namespace=namespace,
                                       context=context)
    # In any other namespace Kubernetes picks the node port (30080 belongs to the lab's namespace).
    result = service_has_port("web", 80, namespace=namespace, context=context)
    svc = _read(_apis(context).core.read_namespaced_service, "web", namespace) if result.passed else None
    if svc is not None and svc.spec.type != "NodePort":
        return fail(f"Service web is of type {svc.spec.type}, not NodePort", result.uids)
    return result


@register("system.web-nodeport", points=1, hint="kubectl -n k8s-assignment get service web -o yaml")
def _system_web_service(namespace: str, context: str) -> Result:
    """The web Service exposes port 80 on node port 30080 (in another namespace, on the node port it got)."""
    return web_nodeport(namespace, context)


@register("system.web-config", points=1, hint="kubectl -n k8s-assignment get configmap web-nginx -o yaml")
def _system_web_config(namespace: str, context: str) -> Result:
    """The nginx configuration ConfigMap has default.conf."""
    return configmap_has_key("web-nginx", "default.conf", namespace=namespace, context=context)


@register("system.network-policies", points=2, hint="kubectl -n k8s-assignment get networkpolicy")
def _system_policies(namespace: str, context: str) -> Result:
    """The three NetworkPolicies of the lab exist."""
    return _all_of(networkpolicy_exists(n, namespace=namespace, context=context) for n in _NETWORK_POLICIES)


@register("instructor.web-endpoints", points=1, instructor_only=True,
          hint="kubectl -n k8s-assignment get endpointslices -l kubernetes.io/service-name=web")
def _instructor_web_endpoints(namespace: str, context: str) -> Result:
    """The web Service has 3 ready endpoints (its selector matches the Pods)."""
    return service_has_endpoints("web", minimum=3, namespace=namespace, context=context)


@register("instructor.database-endpoints", points=1, instructor_only=True,
          hint="kubectl -n k8s-assignment get endpointslices -l kubernetes.io/service-name=database")
def _instructor_database_endpoints(namespace: str, context: str) -> Result:
    """The database Service has a ready endpoint."""
    return service_has_endpoints("database", minimum=1, namespace=namespace, context=context)


@register("instructor.no-crashing-pods", points=1, instructor_only=True,
          hint="kubectl -n k8s-assignment get pods; kubectl -n k8s-assignment describe pod NAME")
def _instructor_no_crashes(namespace: str, context: str) -> Result:
    """No Pod of the namespace is crash-looping, failing to pull, or restarting a lot."""
    bad, uids = [], {}
    for pod in _pods(namespace, "", context):
        status, name = pod.get("status") or {}, pod["metadata"]["name"]
        if status.get("phase") == "Succeeded":
            continue
        uids[_key("Pod", namespace, name)] = pod["metadata"]["uid"]
        trouble = _pod_trouble(pod)
        restarts = sum(c.get("restartCount") or 0 for c in status.get("containerStatuses") or [])
        if trouble:
            bad.append(trouble)
        elif restarts > 3:
            bad.append(f"pod {name} restarted {restarts} times")
    if bad:
        return fail("; ".join(bad[:5]), uids)
    if not uids:
        return fail(f"no Pods run in namespace {namespace}", uids)
    return ok(f"{len(uids)} pod(s), none crashing", uids)


@register("instructor.quota-and-limits", points=1, instructor_only=True,
          hint="kubectl -n k8s-assignment get resourcequota,limitrange")
def _instructor_quota(namespace: str, context: str) -> Result:
    """The namespace keeps its ResourceQuota and LimitRange (in a classroom, the instructor's own)."""
    if in_classroom(namespace, context):
        return not_applicable(f"classroom: your instructor set the quota and limits of {namespace}")
    core = _apis(context).core
    quotas = core.list_namespaced_resource_quota(namespace, _request_timeout=REQUEST_TIMEOUT_S).items
    limits = core.list_namespaced_limit_range(namespace, _request_timeout=REQUEST_TIMEOUT_S).items
    uids = {_key(kind, namespace, o.metadata.name): o.metadata.uid
            for kind, items in (("ResourceQuota", quotas), ("LimitRange", limits)) for o in items}
    if not quotas or not limits:
        return fail(f"namespace {namespace} has {len(quotas)} ResourceQuota(s) and {len(limits)} LimitRange(s)", uids)
    return ok(f"namespace {namespace} has a ResourceQuota and a LimitRange", uids)


@register("instructor.database-volume-retained", points=1, instructor_only=True,
          hint="kubectl get pv k8s-lab-database-data -o jsonpath='{.spec.persistentVolumeReclaimPolicy}'")
def _instructor_pv_retain(namespace: str, context: str) -> Result:
    """The database's volume is kept when its claim goes (reclaim policy Retain)."""
    pvc = _read(_apis(context).core.read_namespaced_persistent_volume_claim, "data-database-0", namespace)
    if pvc is None or not pvc.spec.volume_name:
        return fail(f"PersistentVolumeClaim data-database-0 in {namespace} is missing or unbound")
    pv = _read(_apis(context).core.read_persistent_volume, pvc.spec.volume_name)
    if pv is None:
        return fail(f"PersistentVolume {pvc.spec.volume_name} not found")
    uids = {_key("PersistentVolume", None, pv.metadata.name): pv.metadata.uid}
    if classroom_made(pv):
        return not_applicable(f"classroom: your instructor made the PersistentVolume {pv.metadata.name}", uids)
    policy = pv.spec.persistent_volume_reclaim_policy
    if policy != "Retain":
        return fail(f"PersistentVolume {pv.metadata.name} has reclaim policy {policy}", uids)
    return ok(f"PersistentVolume {pv.metadata.name} is retained", uids)


@register("instructor.backup-on-host", points=1, instructor_only=True,
          hint="kubectl -n k8s-assignment create job --from=cronjob/database-backup backup-now; ls $LAB_DATA_DIR/backups")
def _instructor_backup(namespace: str, context: str) -> Result:
    """At least one non-empty database backup of the namespace exists in the host's data directory."""
    from lab.ops import backup

    return file_exists_on_host(backup.backup_dir(target_for(context, namespace)) / "*")

