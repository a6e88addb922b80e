"""Kubernetes API access for the lab, through the official Python client."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence, TypeVar

from kubernetes import client, config as kubeconfig_loader
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from lab import runner, timing
from lab.errors import LabError
from lab.host import tools
from lab.target import Target, kubeconfig_paths

T = TypeVar("T")


class _TimedApiClient(client.ApiClient):
    """Every API call is the lab's own work in the notebook's time split (lab.timing)."""

    def call_api(self, method, *args, **kwargs):
        with timing.tally(f"API {method}"):
            return super().call_api(method, *args, **kwargs)


@lru_cache(maxsize=16)
def _client(kubeconfig: str | None, context: str, stamp: tuple) -> client.ApiClient:
    configuration = client.Configuration()
    try:
        kubeconfig_loader.load_kube_config(config_file=kubeconfig, context=context,
                                           client_configuration=configuration, persist_config=False)
        return _TimedApiClient(configuration)
    except (ConfigException, FileNotFoundError) as error:
        raise LabError(f"no kubeconfig context {context!r}: {error}",
                       hint="create the cluster with `lab cluster up` (LAB_CLUSTER=NAME for another one)") from error


def _kubeconfig_stamp(target: Target) -> tuple:
    """When the kubeconfig files last changed: a cluster recreated by any process (kind writes a new
    API port and certificates) invalidates every client made before, in every process."""
    stamps = []
    for path in kubeconfig_paths(target.kubeconfig):
        try:
            stat = path.stat()
            stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
        except OSError:
            stamps.append((str(path), None, None))
    return tuple(stamps)


def api_client(target: Target) -> client.ApiClient:
    try:
        return _client(str(target.kubeconfig) if target.kubeconfig else None, target.kube_context,
                       _kubeconfig_stamp(target))
    except LabError:
        target.require()  # names the missing context and how to make it, in one line
        raise


def core(target: Target) -> client.CoreV1Api:
    return client.CoreV1Api(api_client(target))


def apps(target: Target) -> client.AppsV1Api:
    return client.AppsV1Api(api_client(target))


# Helm's release records carry the whole release, gzipped (the chart, its values, the manifest):
# listing five revisions moves about a megabyte, and the client parses all of it. When the labels
# and names are all a caller needs, the API server sends only the metadata.
_METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}


def list_metadata(list_call: Callable, namespace: str, selector: str, timeout: float = 60) -> list[dict]:
    """The metadata (name, uid, labels, ...) of what a ``list_namespaced_*`` call finds, as dicts."""
    response = list_call(namespace, label_selector=selector, _headers=_METADATA_ONLY, _preload_content=False,
                         _request_timeout=timeout)
    return [item["metadata"] for item in json.loads(response.data).get("items") or []]


@dataclass(frozen=True)
class Exec:
    """A command run in a container: its output, and ``problem`` when it did not run to its end
    (no such Pod or executable, the exec broke or timed out). A non-zero exit is no problem: the
    command ran, and says what it found in ``exit_code`` and its output."""

    stdout: str
    stderr: str
    exit_code: int | None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def exec_in_pod(target: Target, pod: str, command: Sequence[str], *, container: str | None = None,
                namespace: str | None = None, timeout: float = 30) -> Exec:
    """Run ``command`` in a container with the API server's exec (websocket), in-process: no
    kubectl to start, which is most of the time a short command takes."""
    from kubernetes.stream import stream

    # stream() swaps the ApiClient's transport while it connects, so every exec gets its own.
    api = client.ApiClient(api_client(target).configuration)
    ws = None
    out, err, status = [], [], ""
    try:
        with timing.tally("API exec"):
            ws = stream(client.CoreV1Api(api).connect_get_namespaced_pod_exec, pod, namespace or target.namespace,
                        container=container, command=list(command), stdout=True, stderr=True, stdin=False,
                        tty=False, _preload_content=False)
            deadline = time.monotonic() + timeout
            while ws.is_open() and time.monotonic() < deadline:
                ws.update(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
                out.append(ws.read_channel(1))
                err.append(ws.read_channel(2))
                status += ws.read_channel(3)
            out.append(ws.read_channel(1))
            err.append(ws.read_channel(2))
            status += ws.read_channel(3)
            finished = not ws.is_open()
    except Exception as error:  # noqa: BLE001 - no such Pod, the Pod went away, the API server hiccuped
        return Exec("", "", None, f"exec failed: {_refusal(error)}")
    finally:
        if ws is not None:
            ws.close()
        api.close()
    stdout, stderr = "".join(out), "".join(err)
    if not finished:
        return Exec(stdout, stderr, None, f"the exec did not finish within {timeout:g}s")
    code, problem = exec_status(status)
    return Exec(stdout, stderr, code, problem)


def pod_http_get(target: Target, pod: str, port: int | str, path: str, *, namespace: str | None = None,
                 timeout: float = 5) -> str | None:
    """The body a Pod's HTTP server answers for ``path`` on ``port`` (a number or a port's name),
    through the API server's Pod proxy: a few milliseconds where an exec takes a tenth of a second.
    None when it does not answer 200."""
    try:
        response = core(target).connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:{port}", namespace or target.namespace, path.lstrip("/"), _preload_content=False,
            _request_timeout=timeout)
    except Exception:  # noqa: BLE001 - refused, not found, timed out: no answer either way
        return None
    return response.data.decode(errors="replace") if response.status == 200 else None


def _refusal(error: Exception) -> str:
    """Why the API server refused an exec: the message of the Status it sent with the refused
    websocket handshake ("pods "x" not found"), or the error itself."""
    text = str(error)
    start = text.find('{"kind":"Status"')
    if start >= 0:
        try:
            return json.loads(text[start:])["message"]
        except (ValueError, KeyError):
            pass
    return f"{type(error).__name__}: {text[:300]}"


def exec_status(status: str) -> tuple[int | None, str]:
    """(exit code, problem) from an exec's status channel: the API server reports success, a
    command's non-zero exit (with its code), or why the command never ran."""
    if not status.strip():
        return 0, ""
    try:
        parsed = json.loads(status)
    except ValueError:
        return None, status.strip()[:300]
    if parsed.get("status") == "Success":
        return 0, ""
    if parsed.get("reason") == "NonZeroExitCode":
        causes = (parsed.get("details") or {}).get("causes") or []
        code = next((c.get("message") for c in causes if c.get("reason") == "ExitCode"), None)
        try:
            return int(code), ""
        except (TypeError, ValueError):
            return 1, ""
    # The runtime's reason comes last, after the API server's and the kubelet's wrappers.
    message = str(parsed.get("message") or status)
    return None, message if len(message) <= 300 else "…" + message[-299:]


@lru_cache(maxsize=16)
def _dynamic(api: client.ApiClient):
    """A DynamicClient over ``api``: any kind by its apiVersion and kind, no typed API group to
    import. Its discovery cache lives in the lab cache, one file per API server address."""
    import hashlib

    from kubernetes.dynamic import DynamicClient

    from lab import config

    cache = config.cache_dir() / "discovery" / f"{hashlib.sha256(api.configuration.host.encode()).hexdigest()[:16]}.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    return DynamicClient(api, cache_file=str(cache))


_METADATA_LIST = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}


def metadata_by_name(target: Target, kind: str, namespace: str | None,
                     api_version: str | None = None) -> dict[str, dict]:
    """The metadata (name, uid, labels, annotations, ...) of every object of one kind of any API
    group in ``namespace`` (None: a cluster-scoped kind), by name: one list call, metadata only,
    however many of them a caller asks about."""
    dynamic = _dynamic(api_client(target))
    resource = dynamic.resources.get(kind=kind, **({"api_version": api_version} if api_version else {}))
    found = resource.get(namespace=namespace, header_params=dict(_METADATA_LIST), _request_timeout=30)
    items = [item.get("metadata") or {} for item in found.to_dict().get("items") or []]
    return {meta.get("name"): meta for meta in items}


def dry_run_apply(target: Target, body: dict) -> str | None:
    """Why the API server would refuse to apply ``body`` (server-side apply, dry run: admission,
    quotas and strict field validation run, nothing is stored), or None when it would accept it.
    What ``kubectl apply --dry-run=server`` tells, without starting kubectl."""
    from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

    kind, api_version = body.get("kind"), body.get("apiVersion")
    try:
        resource = _dynamic(api_client(target)).resources.get(api_version=api_version, kind=kind)
    except ResourceNotFoundError:
        return f'no matches for kind "{kind}" in version "{api_version}"'
    namespace = ((body.get("metadata") or {}).get("namespace") or target.namespace) if resource.namespaced else None
    try:
        resource.server_side_apply(body=body, namespace=namespace, field_manager="k8s-lab-check", dry_run="All",
                                   force_conflicts=True, query_params=[("fieldValidation", "Strict")],
                                   _request_timeout=30)
    except DynamicApiError as error:
        try:
            return json.loads(error.body).get("message") or str(error.summary())
        except (TypeError, ValueError):
            return error.summary()
    return None


def node_ready(node: client.V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def kubectl(*args: str, target: Target, stdin: str | None = None, timeout: float = 180,
            check: bool = True) -> runner.Result:
    """Run the lab's own kubectl (never whatever is on PATH) against `target`'s context.

    Namespaced commands name their namespace themselves (`-n`): the target's is not implied, so a
    cluster-wide `get nodes` and a namespaced `get pods` read the same way here as in a shell."""
    hint = f"is the cluster up? `lab cluster status --cluster {target.cluster}`"
    # stderr of get/apply/delete never holds Secret data; stdin (which may) is never echoed.
    return tools.run("kubectl", *target.kubectl_flags(), *args, input=stdin, timeout=timeout,
                     check=check, hint=hint, what=f"kubectl {' '.join(args[:4])}")


def wait_until(condition: Callable[[], T], timeout: float = 120, interval: float = 1,
               what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    last = None
    with timing.measure(timing.WAIT):
        while time.monotonic() < deadline:
            last = condition()
            if last:
                return last
            time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def not_found(read: Callable[..., object], *args: object) -> bool:
    """True when the API server answers `read(*args)` (a read_* call) with 404."""
    try:
        read(*args)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def delete_namespace(name: str, *, target: Target, timeout: float = 120) -> None:
    """Delete a namespace (if it is there) and wait until it is gone."""
    api = core(target)
    try:
        api.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise
    wait_deleted(api.read_namespace, name, what=f"namespace {name}", timeout=timeout)


def wait_deleted(read: Callable[..., object], *args: object, what: str, timeout: float = 120,
                 interval: float = 1) -> None:
    """Wait until `read(*args)` answers 404."""
    wait_until(lambda: not_found(read, *args), timeout, interval, what=f"{what} to be deleted")
