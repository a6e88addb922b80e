"""Who can talk to whom: a connectivity matrix measured from inside the cluster.

A matrix is sources x destinations x ports:

* **sources** are Pods chosen by a label selector (``Source.pods``), or long-lived probe Pods the
  engine creates with the labels of the role they stand for and reuses across runs
  (``Source.probe``). Connections always start from long-lived Pods: under kind's policy engine a
  brand-new Pod can be unrestricted for a moment, and established connections survive policy
  changes, so a fresh ``kubectl run`` per test would measure the wrong thing.
* **destinations** are Services (their ClusterIP, or their DNS name) and the IPs of Pods chosen
  by a label selector, each on one or more TCP ports. A Service is only probed on the ports it
  declares: other ports of a ClusterIP are not the cluster's, and are skipped.

Each cell is one TCP connect with a short timeout (1.5 s) and ends in one of :data:`OUTCOMES`:
``connected`` (allowed, something listens), ``refused`` (allowed, nothing listens: reset),
``timeout`` (no answer: a NetworkPolicy dropped the packets), ``unreachable`` or ``error``.

One exec per source Pod runs a shell script that probes all of that Pod's cells in parallel
(bash's ``/dev/tcp`` under coreutils' ``timeout``, so any Pod with bash can be a source); sources
run in parallel, a few at a time. Cells whose outcome differs from the expected one are probed
again, batched per source, for about 10 s (policies take a moment to apply), then once more.

    from lab.ops import probe
    df = probe.matrix("k8s-assignment",
                      [probe.Source.pods("web", "app.kubernetes.io/component=web"),
                       probe.Source.probe("other", {"role": "other"})],
                      [probe.Destination.service("database")],
                      expected={("web", "*", "*"): "connected", ("*", "*", "*"): "timeout"})
    probe.heatmap(df); probe.report(df)

``lab_matrix()`` is the lab's own matrix for the deployed system (``lab probe``), ``canary()``
proves that the cluster enforces NetworkPolicy at all.
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from lab import config, timing
from lab.cluster import kube
from lab.errors import LabError
from lab.target import Target

OUTCOMES = ("connected", "refused", "timeout", "unreachable", "error")
DEFAULT_TIMEOUT_S = 1.5
DEFAULT_RETRY_S = 10.0
DEFAULT_WORKERS = 4
TRANSPORTS = ("stream", "kubectl")
# At most this many connects run at once inside one source Pod.
IN_POD_PARALLEL = 16
READY_TIMEOUT_S = 120

MANAGED_LABEL = "k8s-lab.probe/managed"
SOURCE_LABEL = "k8s-lab.probe/source"
SPEC_ANNOTATION = "k8s-lab.probe/spec"
PROBE_POD_PREFIX = "probe-"
CANARY_NAMESPACE = "k8s-lab-canary"
CANARY_PORT = 8080

COLUMNS = ("source", "destination", "port", "expected", "observed", "correct", "attempts",
           "reproduce", "source_group", "destination_group", "target", "namespace", "detail")

# The lab's system (manifests/, chart/): labels and names the standard matrix probes.
LAB_WEB_SELECTOR = ("app.kubernetes.io/name=k8s-lab,app.kubernetes.io/instance=k8s-lab,"
                    "app.kubernetes.io/component=web")
LAB_OTHER_LABELS = {"app.kubernetes.io/name": "k8s-lab-probe", "k8s-lab.probe/role": "other"}
LAB_DATABASE_SERVICE = "database"
LAB_WEB_SERVICE = "web"
LAB_PORTS = (config.DB_PORT, 80)

# One connect: bash's /dev/tcp under timeout, one word out. Exit 124 (or 137 after -k) from
# timeout means no answer in time; otherwise bash's message tells refused from the rest. The
# function has no single quotes, so a whole script fits in `bash -c '...'`.
_PROBE_FUNCTION = (
    'p(){ m=$(LC_ALL=C timeout -k 1 "$T" bash -c "exec 3<>/dev/tcp/$2/$3" 2>&1); r=$?; '
    'case $r in 0) o=connected;; 124|137) o=timeout;; *) case $m in '
    '*refused*) o=refused;; *"timed out"*) o=timeout;; '
    '*unreachable*|*"No route"*) o=unreachable;; *) o=error;; esac;; esac; '
    'd=; case $o in error|unreachable) d=$m;; esac; echo "$1 $o" $d; }'
)
_SAFE_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]*$")
_RESULT_LINE = re.compile(r"^(\S+) (" + "|".join(OUTCOMES) + r")(?: (.*))?$")


# --------------------------------------------------------------------------------------------
# What to probe


@dataclass(frozen=True)
class Source:
    """A group of source Pods. ``name`` is the group's name in expectations and plots.

    Either ``selector`` picks existing Pods, or ``labels`` makes the engine keep ``replicas``
    long-lived probe Pods (probe image, ``sleep infinity``) carrying those labels.
    """

    name: str
    selector: str | None = None
    labels: Mapping[str, str] | None = None
    replicas: int = 1
    container: str | None = None
    namespace: str | None = None

    @classmethod
    def pods(cls, name: str, selector: str, *, container: str | None = None,
             namespace: str | None = None) -> "Source":
        """Existing Pods matching a label selector (e.g. the web Deployment's Pods)."""
        return cls(name=name, selector=selector, container=container, namespace=namespace)

    @classmethod
    def probe(cls, name: str, labels: Mapping[str, str], *, replicas: int = 1,
              namespace: str | None = None) -> "Source":
        """Long-lived probe Pods with these labels, created when missing and then reused."""
        return cls(name=name, labels=dict(labels), replicas=replicas, namespace=namespace)


@dataclass(frozen=True)
class Destination:
    """A group of destinations: a Service, or the IPs of the Pods a selector picks.

    ``ports`` overrides the matrix's ports for this destination. A Service without ports on
    either level is probed on every TCP port it declares.
    """

    name: str
    service_name: str | None = None
    selector: str | None = None
    ports: tuple[int, ...] | None = None
    dns: bool = False
    namespace: str | None = None

    @classmethod
    def service(cls, service: str, *, name: str | None = None,
                ports: Iterable[int] | None = None, dns: bool = False,
                namespace: str | None = None) -> "Destination":
        """A Service: its ClusterIP (or, with ``dns``, its DNS name; always for headless ones)."""
        return cls(name=name or service, service_name=service,
                   ports=tuple(ports) if ports is not None else None, dns=dns,
                   namespace=namespace)

    @classmethod
    def pods(cls, name: str, selector: str, *, ports: Iterable[int] | None = None,
             namespace: str | None = None) -> "Destination":
        """One destination per Pod IP of the Pods matching the selector."""
        return cls(name=name, selector=selector,
                   ports=tuple(ports) if ports is not None else None, namespace=namespace)


Expected = Union[None, str, Callable[[str, str, int], str], Mapping[tuple, str]]


@dataclass
class _Cell:
    source: str
    source_group: str
    namespace: str
    container: str
    destination: str
    destination_group: str
    target: str
    port: int
    expected: str | None = None
    observed: str | None = None
    detail: str = ""
    attempts: int = 0

    @property
    def correct(self) -> bool:
        return self.expected is None or self.observed == self.expected


@dataclass(frozen=True)
class _SourcePod:
    group: str
    name: str
    namespace: str
    container: str


# --------------------------------------------------------------------------------------------
# The probe script and its output


def _check_word(word: str, what: str) -> str:
    if not _SAFE_WORD.match(str(word)):
        raise LabError(f"{what} {word!r} is not a plain host name, IP address or token")
    return str(word)


def probe_script(targets: Sequence[tuple[str, str, int]], timeout: float = DEFAULT_TIMEOUT_S,
                 parallel: int = IN_POD_PARALLEL) -> str:
    """The bash script that probes ``targets`` (token, host, port) and prints ``token outcome``
    per line. Up to ``parallel`` connects run at once."""
    if timeout <= 0:
        raise LabError(f"the probe timeout must be positive, not {timeout}")
    calls = []
    for token, host, port in targets:
        _check_word(token, "token")
        _check_word(host, "host")
        if not 0 < int(port) < 65536:
            raise LabError(f"port {port} is not a TCP port")
        calls.append(f"p {token} {host} {int(port)}")
    if len(calls) == 1:
        body = calls[0]
    else:
        chunks = [calls[i:i + parallel] for i in range(0, len(calls), parallel)]
        body = "; ".join(" & ".join(chunk) + " & wait" for chunk in chunks)
    return f"set -f; T={timeout:g}; {_PROBE_FUNCTION}; {body}"


def parse_output(text: str, tokens: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``{token: (outcome, detail)}`` from a probe script's output; a token without a result
    line is an ``error``."""
    found: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        match = _RESULT_LINE.match(line.strip())
        if match:
            found[match.group(1)] = (match.group(2), (match.group(3) or "").strip())
    return {t: found.get(t, ("error", "no result from the probe script")) for t in tokens}


def kubectl_exec_args(namespace: str, pod: str, container: str, script: str,
                      target: Target) -> list[str]:
    return [*target.kubectl_flags(), "-n", namespace, "exec", pod, "-c", container, "--",
            "bash", "-c", script]


def reproduce_command(namespace: str, pod: str, container: str, host: str, port: int,
                      timeout: float = DEFAULT_TIMEOUT_S, *, target: Target) -> str:
    """The kubectl command that probes one cell exactly as the engine does; it prints
    ``HOST:PORT OUTCOME``."""
    script = probe_script([(f"{host}:{int(port)}", host, port)], timeout)
    args = kubectl_exec_args(namespace, pod, container, script, target)
    return "kubectl " + " ".join(shlex.quote(a) for a in args)


# --------------------------------------------------------------------------------------------
# Expectations


def expectation(expected: Expected) -> Callable[[_Cell], str | None]:
    """Turn the ways of stating expectations into one function of a cell.

    * ``None``: no expectation (every cell counts as correct, nothing is retried);
    * an outcome such as ``"connected"``: the same for every cell;
    * a function ``f(source_group, destination_group, port) -> outcome``;
    * a mapping ``{(source, destination, port): outcome}`` where source is a Pod name or group
      name, destination a destination name or group name, and any of the three may be ``"*"``.
      The most specific key wins (source before destination before port).
    """
    if expected is None:
        return lambda cell: None
    if isinstance(expected, str):
        outcome = _check_outcome(expected, "expected")
        return lambda cell: outcome
    if callable(expected):
        def call(cell: _Cell) -> str:
            return _check_outcome(expected(cell.source_group, cell.destination_group, cell.port),
                                  f"expected({cell.source_group!r}, {cell.destination_group!r}, "
                                  f"{cell.port})")
        return call
    if isinstance(expected, Mapping):
        table: dict[tuple[str, str, str], str] = {}
        for key, value in expected.items():
            if not (isinstance(key, tuple) and len(key) == 3):
                raise LabError(f"expectation key {key!r} is not (source, destination, port)",
                               hint="use e.g. ('web', 'database', 3306) or ('*', '*', '*')")
            table[tuple(str(k) for k in key)] = _check_outcome(value, f"expected[{key!r}]")

        def look_up(cell: _Cell) -> str:
            for s in dict.fromkeys((cell.source, cell.source_group, "*")):
                for d in dict.fromkeys((cell.destination, cell.destination_group, "*")):
                    for p in (str(cell.port), "*"):
                        if (s, d, p) in table:
                            return table[(s, d, p)]
            raise LabError(f"no expectation for {cell.source} ({cell.source_group}) -> "
                           f"{cell.destination}:{cell.port}",
                           hint="add a key for it, or a default ('*', '*', '*')")
        return look_up
    raise LabError(f"cannot read expectations from a {type(expected).__name__}",
                   hint="give an outcome, a function (source, destination, port) or a dict")


def _check_outcome(value: Any, what: str) -> str:
    if value not in OUTCOMES:
        raise LabError(f"{what} is {value!r}, not an outcome",
                       hint=f"outcomes: {', '.join(OUTCOMES)}")
    return value


# --------------------------------------------------------------------------------------------
# Kubernetes


def _exec_stream(source: _SourcePod, script: str, timeout: float, target: Target) -> tuple[str, str]:
    """Run the script with the API server's exec, in-process. Returns (stdout, problem); problem
    is empty when the script ran (its own exit code says nothing: results are in its output)."""
    run = kube.exec_in_pod(target, source.name, ["bash", "-c", script], container=source.container,
                           namespace=source.namespace, timeout=timeout)
    return run.stdout, run.problem


def _exec_kubectl(source: _SourcePod, script: str, timeout: float, target: Target) -> tuple[str, str]:
    from lab.host import tools

    try:
        result = tools.run("kubectl", *kubectl_exec_args(source.namespace, source.name, source.container,
                                                        script, target), timeout=timeout, check=False)
    except LabError as error:
        return "", error.message
    problem = "" if result.stdout.strip() else result.stderr.strip()[-300:]
    return result.stdout, problem


def _probe_source(source: _SourcePod, cells: list[_Cell], timeout: float, transport: str,
                  target: Target) -> None:
    """One exec that probes all of one source Pod's cells; records outcomes on the cells."""
    targets = [(f"c{i}", cell.target, cell.port) for i, cell in enumerate(cells)]
    script = probe_script(targets, timeout)
    chunks = -(-len(targets) // IN_POD_PARALLEL)
    exec_timeout = 15 + chunks * (timeout + 2)
    run = _exec_stream if transport == "stream" else _exec_kubectl
    out, problem = run(source, script, exec_timeout, target)
    results = parse_output(out, [t[0] for t in targets])
    for (token, _, _), cell in zip(targets, cells):
        outcome, detail = results[token]
        if outcome == "error" and problem and detail.startswith("no result"):
            detail = problem
        cell.observed, cell.detail = outcome, detail
        cell.attempts += 1


def _pod_ready(pod, container: str | None = None) -> bool:
    if pod.metadata.deletion_timestamp is not None or pod.status.phase != "Running":
        return False
    statuses = pod.status.container_statuses or []
    if container is not None:
        statuses = [s for s in statuses if s.name == container]
    return bool(statuses) and all(s.ready for s in statuses)


def _namespace_exists(core, namespace: str) -> bool:
    return not kube.not_found(core.read_namespace, namespace)


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return slug[:40].strip("-") or "source"


def probe_pod_labels(source: Source) -> dict[str, str]:
    return {**dict(source.labels or {}), MANAGED_LABEL: "true", SOURCE_LABEL: _slug(source.name)}


def probe_pod_manifest(source: Source, index: int, image: str | None = None):
    """The long-lived probe Pod that stands for ``source``: probe image, sleep infinity, the
    source's labels, small resources (the lab namespace's quota wants them), no privileges."""
    from kubernetes import client

    from lab.build import images

    image = image or images.PROBE_IMAGE
    labels = probe_pod_labels(source)
    digest = hashlib.sha256(json.dumps([labels, image], sort_keys=True).encode()).hexdigest()[:16]
    container = client.V1Container(
        name="probe", image=image, image_pull_policy="IfNotPresent",
        command=["sleep", "infinity"],
        resources=client.V1ResourceRequirements(requests={"cpu": "10m", "memory": "16Mi"},
                                                limits={"cpu": "200m", "memory": "64Mi"}),
        security_context=client.V1SecurityContext(
            run_as_non_root=True, run_as_user=65534, run_as_group=65534,
            allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"])))
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=f"{PROBE_POD_PREFIX}{_slug(source.name)}-{index}", labels=labels,
            annotations={SPEC_ANNOTATION: digest}),
        spec=client.V1PodSpec(
            containers=[container], termination_grace_period_seconds=1,
            automount_service_account_token=False, enable_service_links=False,
            security_context=client.V1PodSecurityContext(
                seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"))))


def _selector_matches(selector, labels: Mapping[str, str]) -> bool:
    """Does a V1LabelSelector (or a Service's plain dict selector) select these labels?"""
    if selector is None:
        return False
    if isinstance(selector, Mapping):
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
    match_labels = selector.match_labels or {}
    expressions = selector.match_expressions or []
    if not match_labels and not expressions:
        return False  # an empty controller selector selects nothing we would be adopted by
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in expressions:
        value, values = labels.get(expr.key), expr.values or []
        ok = {"In": value in values, "NotIn": value not in values,
              "Exists": expr.key in labels, "DoesNotExist": expr.key not in labels}
        if not ok.get(expr.operator, False):
            return False
    return True


def _check_labels_safe(namespace: str, labels: Mapping[str, str], target: Target) -> None:
    """A probe Pod must not be adopted by a controller (which could then delete Pods to keep its
    replica count) nor receive a Service's traffic (it listens on nothing)."""
    from kubernetes import client

    core = kube.core(target)
    for svc in core.list_namespaced_service(namespace).items:
        if _selector_matches(svc.spec.selector, labels):
            raise LabError(f"probe Pods with labels {dict(labels)} would be endpoints of the "
                           f"Service {svc.metadata.name} in {namespace}",
                           hint="change a label the Service selects (e.g. "
                                "app.kubernetes.io/instance) while keeping those the "
                                "NetworkPolicy selects")
    apps = client.AppsV1Api(kube.api_client(target))
    batch = client.BatchV1Api(kube.api_client(target))
    controllers = [*apps.list_namespaced_replica_set(namespace).items,
                   *apps.list_namespaced_stateful_set(namespace).items,
                   *apps.list_namespaced_daemon_set(namespace).items,
                   *batch.list_namespaced_job(namespace).items]
    for controller in controllers:
        if _selector_matches(controller.spec.selector, labels):
            raise LabError(f"probe Pods with labels {dict(labels)} would be adopted by "
                           f"{controller.kind or type(controller).__name__} "
                           f"{controller.metadata.name} in {namespace}",
                           hint="change a label its selector uses (e.g. "
                                "app.kubernetes.io/instance) while keeping those the "
                                "NetworkPolicy selects")


def ensure_probe_pods(source: Source, namespace: str, target: Target,
                      timeout: float = READY_TIMEOUT_S) -> list[str]:
    """Create the source's long-lived probe Pods where missing (or changed) and wait until they
    are ready. Returns their names."""
    from kubernetes.client.exceptions import ApiException

    from lab.progress import step

    core = kube.core(target)
    wanted = [probe_pod_manifest(source, i) for i in range(max(1, source.replicas))]
    to_create = []
    for pod in wanted:
        try:
            current = core.read_namespaced_pod(pod.metadata.name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            to_create.append(pod)
            continue
        same = ((current.metadata.annotations or {}).get(SPEC_ANNOTATION)
                == pod.metadata.annotations[SPEC_ANNOTATION])
        alive = (current.metadata.deletion_timestamp is None
                 and current.status.phase in ("Pending", "Running"))
        if not (same and alive):
            core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
            kube.wait_deleted(core.read_namespaced_pod, pod.metadata.name, namespace,
                              what=f"pod {namespace}/{pod.metadata.name}", timeout=timeout, interval=0.5)
            to_create.append(pod)
    if to_create:
        _check_labels_safe(namespace, probe_pod_labels(source), target)
        names = ", ".join(p.metadata.name for p in to_create)
        with step(f"start probe Pod{'s' if len(to_create) > 1 else ''} {names} in {namespace}"):
            for pod in to_create:
                core.create_namespaced_pod(namespace, pod)
            _wait_ready(core, namespace, [p.metadata.name for p in to_create], timeout)
    return [p.metadata.name for p in wanted]


def _wait_ready(core, namespace: str, names: Sequence[str], timeout: float) -> None:
    with timing.measure(timing.WAIT):  # polling is waiting on the cluster
        _poll_ready(core, namespace, names, timeout)


def _poll_ready(core, namespace: str, names: Sequence[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        pods = {p.metadata.name: p for p in core.list_namespaced_pod(namespace).items}
        pending = [n for n in pending if not (n in pods and _pod_ready(pods[n]))]
        if not pending:
            return
        if time.monotonic() > deadline:
            pod = pods.get(pending[0])
            raise LabError(f"pod {namespace}/{pending[0]} did not become ready within "
                           f"{timeout:.0f}s: {_pod_trouble(pod)}",
                           hint="are the lab's images in the cluster? `lab images build`")
        time.sleep(0.5)


def _pod_trouble(pod) -> str:
    if pod is None:
        return "it does not exist"
    for status in (pod.status.container_statuses or []):
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason:
            return f"{waiting.reason}: {waiting.message or ''}".strip(": ")
    return f"phase {pod.status.phase}"


def delete_probe_pods(namespace: str, source: str | None = None, *, target: Target) -> int:
    """Delete the probe Pods the engine created in a namespace (of one source group, or all).
    Returns how many."""
    selector = f"{MANAGED_LABEL}=true"
    if source is not None:
        selector += f",{SOURCE_LABEL}={_slug(source)}"
    core = kube.core(target)
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    for pod in pods:
        core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
    return len(pods)


def _source_pods(source: Source, namespace: str, target: Target) -> list[_SourcePod]:
    ns = source.namespace or namespace
    core = kube.core(target)
    if source.labels is not None:
        names = set(ensure_probe_pods(source, ns, target))
        pods = [core.read_namespaced_pod(n, ns) for n in sorted(names)]
    elif source.selector:
        pods = core.list_namespaced_pod(ns, label_selector=source.selector).items
    else:
        raise LabError(f"source {source.name!r} has neither a selector nor labels")
    found = []
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        container = source.container or pod.spec.containers[0].name
        if _pod_ready(pod, container):
            found.append(_SourcePod(source.name, pod.metadata.name, ns, container))
    if not found:
        raise LabError(f"no ready Pod for source {source.name!r} "
                       f"(selector {source.selector or probe_pod_labels(source)}) in {ns}",
                       hint="check the selector with `kubectl get pods -l ... -n " + ns + "`")
    return found


def _destination_targets(dest: Destination, namespace: str, ports: Sequence[int] | None,
                         target: Target) -> tuple[list[tuple[str, str, int]], list[str]]:
    """[(destination name, host, port)] and the skipped 'name:port' of undeclared Service ports."""
    from kubernetes.client.exceptions import ApiException

    ns = dest.namespace or namespace
    core = kube.core(target)
    wanted = list(dest.ports if dest.ports is not None else (ports or []))
    if dest.service_name:
        try:
            svc = core.read_namespaced_service(dest.service_name, ns)
        except ApiException as error:
            if error.status == 404:
                raise LabError(f"there is no Service {dest.service_name!r} in {ns}",
                               hint=f"`kubectl get services -n {ns}`") from error
            raise
        declared = [p.port for p in svc.spec.ports or [] if (p.protocol or "TCP") == "TCP"]
        headless = svc.spec.cluster_ip in (None, "", "None")
        host = (f"{dest.service_name}.{ns}.svc.cluster.local" if dest.dns or headless
                else svc.spec.cluster_ip)
        if not wanted:
            wanted = declared
        skipped = [f"{dest.name}:{p}" for p in wanted if p not in declared]
        return [(dest.name, host, p) for p in wanted if p in declared], skipped
    if dest.selector:
        if not wanted:
            raise LabError(f"destination {dest.name!r} has no ports",
                           hint="give ports to matrix() or to the destination")
        pods = core.list_namespaced_pod(ns, label_selector=dest.selector).items
        pods = [p for p in pods if p.status.pod_ip and p.metadata.deletion_timestamp is None
                and p.status.phase == "Running"]
        if not pods:
            raise LabError(f"no running Pod for destination {dest.name!r} "
                           f"(selector {dest.selector}) in {ns}")
        return [(p.metadata.name, p.status.pod_ip, port)
                for p in sorted(pods, key=lambda p: p.metadata.name) for port in wanted], []
    raise LabError(f"destination {dest.name!r} has neither a Service nor a selector")


def _as_destination(item: Destination | str) -> Destination:
    return item if isinstance(item, Destination) else Destination.service(item)


# --------------------------------------------------------------------------------------------
# The engine


def probe_cells(cells: list[_Cell], *, timeout: float = DEFAULT_TIMEOUT_S,
                workers: int = DEFAULT_WORKERS, transport: str = "stream",
                target: Target) -> int:
    """Probe the cells: one exec per source Pod, ``workers`` sources at a time. Returns the
    number of execs."""
    if transport not in TRANSPORTS:
        raise LabError(f"unknown transport {transport!r}", hint=f"use one of {TRANSPORTS}")
    by_source: dict[_SourcePod, list[_Cell]] = {}
    for cell in cells:
        key = _SourcePod(cell.source_group, cell.source, cell.namespace, cell.container)
        by_source.setdefault(key, []).append(cell)
    # The execs run in threads (lab.timing books only the main thread, which waits for them here).
    # Their time is the cluster's: Pods connecting, and each dropped cell its full connect timeout.
    with timing.measure(timing.WAIT), ThreadPoolExecutor(max_workers=max(1, min(workers, len(by_source)))) as pool:
        list(pool.map(lambda item: _probe_source(item[0], item[1], timeout, transport, target),
                      by_source.items()))
    return len(by_source)


def matrix(namespace: str, sources: Sequence[Source], destinations: Sequence[Destination | str],
           ports: Sequence[int] | None = None, expected: Expected = None, *,
           timeout: float = DEFAULT_TIMEOUT_S, retry_s: float = DEFAULT_RETRY_S,
           workers: int = DEFAULT_WORKERS, transport: str = "stream",
           target: Target):
    """Probe every source Pod x destination x port and return a pandas DataFrame.

    Columns: source (Pod), destination, port, expected, observed, correct, attempts, reproduce
    (the kubectl command that probes that one cell), source_group, destination_group, target
    (the address probed), namespace (of the source Pod), detail. ``df.attrs`` holds seconds,
    passes, execs and the skipped Service ports.

    Cells that differ from ``expected`` are probed again (only they, one exec per source) until
    they match or ``retry_s`` has passed, then once more.
    """
    import pandas as pd

    start = time.monotonic()
    core = kube.core(target)
    if not _namespace_exists(core, namespace):
        raise LabError(f"the namespace {namespace!r} does not exist")
    expect = expectation(expected)
    source_pods = [sp for s in sources for sp in _source_pods(s, namespace, target)]
    targets, skipped = [], []
    for dest in map(_as_destination, destinations):
        found, skip = _destination_targets(dest, namespace, ports, target)
        targets += [(dest.name, *t) for t in found]
        skipped += skip
    cells = [_Cell(source=sp.name, source_group=sp.group, namespace=sp.namespace,
                   container=sp.container, destination=name, destination_group=group,
                   target=host, port=port)
             for sp in source_pods for group, name, host, port in targets]
    for cell in cells:
        cell.expected = expect(cell)
    if not cells:
        raise LabError("the matrix has no cells", hint="check the destinations and ports")

    kwargs = dict(timeout=timeout, workers=workers, transport=transport, target=target)
    execs = probe_cells(cells, **kwargs)
    passes = 1
    deadline = time.monotonic() + retry_s
    wrong = [c for c in cells if not c.correct]
    while wrong and time.monotonic() < deadline:
        with timing.measure(timing.WAIT):  # for the data plane to catch up with the policies
            time.sleep(0.5)
        execs += probe_cells(wrong, **kwargs)
        passes += 1
        wrong = [c for c in wrong if not c.correct]
    if wrong:  # a last look, after the retries, at what is still wrong
        execs += probe_cells(wrong, **kwargs)
        passes += 1

    rows = [{
        "source": c.source, "destination": c.destination, "port": c.port,
        "expected": c.expected, "observed": c.observed, "correct": c.correct,
        "attempts": c.attempts,
        "reproduce": reproduce_command(c.namespace, c.source, c.container, c.target, c.port,
                                       timeout, target=target),
        "source_group": c.source_group, "destination_group": c.destination_group,
        "target": c.target, "namespace": c.namespace, "detail": c.detail,
    } for c in cells]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df.attrs.update(seconds=round(time.monotonic() - start, 2), passes=passes, execs=execs,
                    skipped=skipped, timeout=timeout, transport=transport)
    return df


def wrong(df):
    """The rows whose observed outcome differs from the expected one."""
    return df[~df["correct"].astype(bool)]


# --------------------------------------------------------------------------------------------
# Showing results

OUTCOME_COLOURS = {
    "connected": "#2e9e44",
    "refused": "#f0a030",
    "timeout": "#c8323c",
    "unreachable": "#7a4fa8",
    "error": "#7f7f7f",
}


def _column_label(row) -> str:
    """``destination:port``; a Pod destination is prefixed with its group (``db/database-0:3306``)
    so it never collides with a Service of the same name."""
    name = row["destination"]
    if name != row["destination_group"]:
        name = f"{row['destination_group']}/{name}"
    return f"{name}:{row['port']}"


def heatmap(df, title: str | None = None):
    """A matplotlib Figure: source Pods (rows) x destination:port (columns), coloured by the
    observed outcome; cells that differ from the expectation are crossed out and say what was
    expected."""
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    if df.empty:
        raise LabError("the probe result is empty: nothing to draw")
    rows = list(dict.fromkeys(df["source"]))
    columns = list(dict.fromkeys(_column_label(r) for _, r in df.iterrows()))
    codes = np.full((len(rows), len(columns)), np.nan)
    index = {o: i for i, o in enumerate(OUTCOMES)}
    cells = {}
    for _, r in df.iterrows():
        y, x = rows.index(r["source"]), columns.index(_column_label(r))
        codes[y, x] = index.get(r["observed"], index["error"])
        cells[(y, x)] = r

    from matplotlib.colors import ListedColormap
    cmap = ListedColormap([OUTCOME_COLOURS[o] for o in OUTCOMES]).with_extremes(bad="white")
    width = min(24.0, 2.5 + 1.3 * len(columns))
    height = min(24.0, 1.8 + 0.5 * len(rows))
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(np.ma.masked_invalid(codes), cmap=cmap, vmin=-0.5, vmax=len(OUTCOMES) - 0.5,
              aspect="auto")
    for (y, x), r in cells.items():
        ok = bool(r["correct"])
        text = r["observed"] if ok else f"✗ {r['observed']}\n(want {r['expected']})"
        ax.text(x, y, text, ha="center", va="center", color="white", zorder=3,
                fontsize=7 if ok else 6.5, fontweight="normal" if ok else "bold")
        if not ok:
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="black",
                                   linewidth=2.5, hatch="//"))
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=8)
    groups = df.drop_duplicates("source").set_index("source")["source_group"]
    ax.set_yticks(range(len(rows)), [f"{s} ({groups[s]})" for s in rows], fontsize=8)
    ax.set_xlabel("destination:port")
    ax.set_ylabel("source Pod (group)")
    n_wrong = int((~df["correct"].astype(bool)).sum())
    ax.set_title(title or f"{len(df)} cells, {n_wrong} differ from the expectation")
    present = [o for o in OUTCOMES if o in set(df["observed"])]
    handles = [Patch(color=OUTCOME_COLOURS[o], label=o) for o in present]
    if n_wrong:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//",
                             label="differs from expected"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8,
              frameon=False)
    return fig


def report(df, file=None) -> int:
    """Print every cell that differs from its expectation with the command that reproduces it.
    Returns the number of such cells."""
    import sys

    out = file or sys.stdout
    bad = wrong(df)
    if bad.empty:
        print(f"all {len(df)} cells as expected", file=out)
        return 0
    print(f"{len(bad)} of {len(df)} cells differ from the expectation:", file=out)
    for _, r in bad.iterrows():
        print(f"\n{r['source']} ({r['source_group']}) -> {r['destination']}:{r['port']} "
              f"[{r['target']}]: expected {r['expected']}, observed {r['observed']} "
              f"after {r['attempts']} attempt{'s' if r['attempts'] != 1 else ''}"
              + (f" ({r['detail']})" if r["detail"] else ""), file=out)
        print(f"  {r['reproduce']}", file=out)
    return len(bad)


# --------------------------------------------------------------------------------------------
# The lab's own matrix


def lab_expected(source: str, destination: str, port: int) -> str:
    """What the lab's policy (manifests/04-network-policy) allows: only web reaches the database
    (on 3306), everyone reaches web on 80, the rest is dropped. The sources of
    :func:`lab_outside_sources` are not "web": a Pod in another namespace never reaches the
    database, not even with the web labels (the policy's podSelector matches its own namespace)."""
    if destination == LAB_WEB_SERVICE:
        return "connected" if port == 80 else "timeout"
    if destination == LAB_DATABASE_SERVICE:
        return "connected" if source == "web" and port == config.DB_PORT else "timeout"
    return "timeout"


def lab_sources() -> list[Source]:
    return [Source.pods("web", LAB_WEB_SELECTOR),
            Source.probe("other", LAB_OTHER_LABELS)]


# Probe Pods outside the lab's namespace: one plain, one that borrows the web Pods' labels.
LAB_OUTSIDE_NAMESPACE = "k8s-lab-probe-outside"
LAB_BORROWED_LABELS = {"app.kubernetes.io/name": "k8s-lab", "app.kubernetes.io/component": "web"}


def lab_outside_sources(namespace: str = LAB_OUTSIDE_NAMESPACE) -> list[Source]:
    """Sources in another namespace (which must exist) for the lab's matrix: expected as "other"."""
    return [Source.probe("elsewhere", LAB_OTHER_LABELS, namespace=namespace),
            Source.probe("borrowed", LAB_BORROWED_LABELS, namespace=namespace)]


def lab_destinations() -> list[Destination]:
    return [Destination.service(LAB_DATABASE_SERVICE), Destination.service(LAB_WEB_SERVICE)]


def lab_matrix(target: Target, **kwargs):
    """The lab's standard matrix for the deployed system in `target`'s namespace: the web Pods and
    a non-web probe Pod against the database and web Services on 3306 and 80, expected per the
    lab's policy."""
    from kubernetes.client.exceptions import ApiException

    namespace = target.namespace
    core = kube.core(target)
    hint = "deploy it with `lab deploy`"
    if not _namespace_exists(core, namespace):
        raise LabError(f"the lab system is not deployed: there is no namespace {namespace!r}",
                       hint=hint)
    for name in (LAB_DATABASE_SERVICE, LAB_WEB_SERVICE):
        try:
            core.read_namespaced_service(name, namespace)
        except ApiException as error:
            if error.status == 404:
                raise LabError(f"the lab system is not deployed in {namespace}: "
                               f"the Service {name!r} is missing", hint=hint) from error
            raise
    web = core.list_namespaced_pod(namespace, label_selector=LAB_WEB_SELECTOR).items
    if not any(_pod_ready(p) for p in web):
        raise LabError(f"the lab system in {namespace} has no ready web Pod",
                       hint=f"{hint}, or wait for it: `kubectl -n {namespace} get pods`")
    return matrix(namespace, lab_sources(), lab_destinations(), ports=LAB_PORTS,
                  expected=lab_expected, target=target, **kwargs)


# --------------------------------------------------------------------------------------------
# The canary


@dataclass(frozen=True)
class CanaryResult:
    """What the canary saw: before any policy, under a deny-all policy, after removing it."""

    enforced: bool
    before: str
    blocked: str
    restored: str
    namespace: str
    seconds: float
    message: str = field(default="")

    def __str__(self) -> str:
        return self.message


def cni_note(target: Target) -> str:
    """A word on the CNI daemon's Pods when they are not ready or have restarted (kindnet
    enforces the policies on kind; while it restarts, nothing is enforced). Empty when fine."""
    try:
        pods = kube.core(target).list_namespaced_pod("kube-system", label_selector="app=kindnet",
                                                  _request_timeout=5).items
    except Exception:  # noqa: BLE001 - only a hint
        return ""
    notes = []
    for pod in pods:
        for status in pod.status.container_statuses or []:
            if not status.ready or status.restart_count:
                notes.append(f"{pod.metadata.name}: ready={status.ready}, "
                             f"restarts={status.restart_count}")
    return ("; kindnet Pods: " + ", ".join(notes)) if notes else ""


def canary(namespace: str = CANARY_NAMESPACE, *, target: Target,
           timeout: float = DEFAULT_TIMEOUT_S, retry_s: float = 15.0, deny: str = "ingress") -> CanaryResult:
    """Prove that the cluster enforces NetworkPolicy: a server Pod and a long-lived client
    connect; a deny-all policy must make the connect time out; without it they connect again.
    Everything is removed afterwards (the namespace too, when the canary created it). Raises
    LabError when the policy is not enforced.

    ``deny="ingress"`` denies the server's ingress: the test for a namespace of its own.
    ``deny="egress"`` denies the client's egress instead, for a namespace the canary shares (a
    classroom student's, who may not create one): policies only ever add what they allow, so a
    policy there admitting the namespace's Pods would hide a deny on the server; and a policy of
    the canary's own admits the client to the server, whatever else the namespace holds."""
    from kubernetes import client

    from lab.build import images
    from lab.progress import step

    if deny not in ("ingress", "egress"):
        raise LabError(f"unknown canary deny {deny!r}", hint='"ingress" (the server\'s) or "egress" (the client\'s)')
    start = time.monotonic()
    core = kube.core(target)
    net = client.NetworkingV1Api(kube.api_client(target))
    created_namespace = False
    if not _namespace_exists(core, namespace):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        created_namespace = True
    token = uuid.uuid4().hex[:6]
    server_labels = {"k8s-lab.probe/canary": token, "k8s-lab.probe/role": "server"}
    client_labels = {"k8s-lab.probe/canary": token, "k8s-lab.probe/role": "client"}
    client_source = Source.probe(f"canary-{token}", client_labels)
    server_name = f"canary-server-{token}"
    # In a namespace it shares, the policies' names are fixed: a classroom's Role may delete only
    # NetworkPolicies it names.
    policy_name, allow_name = ((f"canary-deny-{token}", f"canary-allow-{token}") if deny == "ingress"
                               else config.CANARY_POLICIES)
    server = probe_pod_manifest(Source.probe(f"canary-server-{token}", server_labels), 0,
                                images.PROBE_IMAGE)
    server.metadata.name = server_name
    server.spec.containers[0].command = ["nc", "-lk", "-p", str(CANARY_PORT)]
    server.spec.containers[0].ports = [client.V1ContainerPort(container_port=CANARY_PORT)]
    dest = Destination.pods("server", f"k8s-lab.probe/canary={token},k8s-lab.probe/role=server",
                            ports=[CANARY_PORT])

    def look(expected: str) -> str:
        df = matrix(namespace, [client_source], [dest], expected=expected, timeout=timeout,
                    retry_s=retry_s, workers=1, target=target)
        return str(df["observed"].iloc[0])

    def policy(name: str, labels: dict, kind: str, ingress: list | None = None):
        return client.V1NetworkPolicy(metadata=client.V1ObjectMeta(name=name), spec=client.V1NetworkPolicySpec(
            pod_selector=client.V1LabelSelector(match_labels=labels), policy_types=[kind], ingress=ingress))

    try:
        with step(f"canary: start a server and a client in {namespace}"):
            if deny == "egress":
                net.create_namespaced_network_policy(namespace, policy(allow_name, server_labels, "Ingress", [
                    client.V1NetworkPolicyIngressRule(_from=[client.V1NetworkPolicyPeer(
                        pod_selector=client.V1LabelSelector(match_labels=client_labels))])]))
            core.create_namespaced_pod(namespace, server)
            ensure_probe_pods(client_source, namespace, target)
            _wait_ready(core, namespace, [server_name], READY_TIMEOUT_S)
        before = look("connected")
        if before != "connected":
            raise LabError(f"canary: the client cannot reach the server even without a policy "
                           f"({before})",
                           hint=f"does a NetworkPolicy in {namespace} select the canary's Pods? "
                                f"Use a namespace of its own (the default {CANARY_NAMESPACE})"
                                + cni_note(target))
        denied = (policy(policy_name, server_labels, "Ingress") if deny == "ingress"
                  else policy(policy_name, client_labels, "Egress"))
        net.create_namespaced_network_policy(namespace, denied)
        blocked = look("timeout")
        if blocked == "timeout":
            blocked = look("timeout")  # twice: an engine that restarts lets packets through
        if blocked != "timeout":
            raise LabError(
                f"this cluster does not enforce NetworkPolicy: with a deny-all {deny} policy "
                f"on the {'server' if deny == 'ingress' else 'client'} the client still got '{blocked}'",
                hint="kind enforces policies with its CNI daemon kindnetd (kind >= v0.24); check "
                     "`kubectl -n kube-system get pods -l app=kindnet` and recreate the cluster "
                     "with `lab cluster up --recreate` if it is old or crashing"
                     + cni_note(target))
        net.delete_namespaced_network_policy(policy_name, namespace)
        restored = look("connected")
        seconds = time.monotonic() - start
        message = (f"NetworkPolicy is enforced: connected before, {blocked} under a deny-all {deny} "
                   f"policy, {restored} after removing it ({seconds:.1f} s)")
        return CanaryResult(True, before, blocked, restored, namespace, round(seconds, 2),
                            message)
    finally:
        _cleanup_canary(core, net, namespace, token, (policy_name, allow_name), created_namespace)


def _cleanup_canary(core, net, namespace: str, token: str, policy_names: Sequence[str],
                    created_namespace: bool) -> None:
    from kubernetes.client.exceptions import ApiException

    def quietly(fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except ApiException as error:
            if error.status != 404:
                raise

    if created_namespace:
        quietly(core.delete_namespace, namespace)
        return
    # The Pods first: a policy the caller may not delete must not leave them running.
    for pod in core.list_namespaced_pod(namespace,
                                        label_selector=f"k8s-lab.probe/canary={token}").items:
        quietly(core.delete_namespaced_pod, pod.metadata.name, namespace, grace_period_seconds=0)
    for name in policy_names:
        quietly(net.delete_namespaced_network_policy, name, namespace)
