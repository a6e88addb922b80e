"""Kubernetes API access for the lab, through the official Python client."""
from __future__ import annotations

import subprocess
import time
from functools import lru_cache
from typing import Callable, Sequence, TypeVar

from kubernetes import client, config as kubeconfig
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from lab import config
from lab.errors import LabError

T = TypeVar("T")


@lru_cache(maxsize=None)
def api_client(context: str = config.KUBE_CONTEXT) -> client.ApiClient:
    try:
        return kubeconfig.new_client_from_config(context=context)
    except (ConfigException, FileNotFoundError) as error:
        raise LabError(f"no kubeconfig context {context!r}: {error}",
                       hint="create the cluster with `lab cluster up`") from error


def core(context: str = config.KUBE_CONTEXT) -> client.CoreV1Api:
    return client.CoreV1Api(api_client(context))


def apps(context: str = config.KUBE_CONTEXT) -> client.AppsV1Api:
    return client.AppsV1Api(api_client(context))


def forget() -> None:
    """Drop cached clients, e.g. after the cluster was recreated with new credentials."""
    api_client.cache_clear()


def node_ready(node: client.V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def run(argv: Sequence[object], *, what: str, stdin: str | None = None, timeout: float | None = None,
        hint: str | None = None) -> subprocess.CompletedProcess:
    """Run one of the lab's tools with all of them first on PATH (kind calls kubectl and docker).

    The exit code is left to the caller: each words, and redacts, its own errors. A command still
    running after `timeout` seconds is a LabError about `what`.
    """
    from lab.host import tools

    try:
        return subprocess.run([str(arg) for arg in argv], input=stdin, capture_output=True, text=True,
                              timeout=timeout, env=tools.env_with_tools())
    except subprocess.TimeoutExpired as error:
        raise LabError(f"{what} did not finish within {timeout:.0f}s", hint=hint) from error


def kubectl(*args: str, stdin: str | None = None, timeout: float = 180, check: bool = True,
            context: str = config.KUBE_CONTEXT) -> subprocess.CompletedProcess:
    """Run the lab's own kubectl (never whatever is on PATH) against the lab's context."""
    from lab.host import tools

    what = f"kubectl {' '.join(args[:4])}"
    hint = "is the cluster up? `lab cluster status`"
    result = run([tools.ensure("kubectl"), "--context", context, *args], what=what, stdin=stdin,
                 timeout=timeout, hint=hint)
    if check and result.returncode != 0:
        # The first words name the operation; stderr of get/apply/delete never holds Secret data.
        raise LabError(f"{what} failed: {result.stderr.strip()[-1500:]}", hint=hint)
    return result


def wait_until(condition: Callable[[], T], timeout: float = 120, interval: float = 1,
               what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    last = None
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


def delete_namespace(name: str, *, context: str = config.KUBE_CONTEXT, timeout: float = 120) -> None:
    """Delete a namespace (if it is there) and wait until it is gone."""
    api = core(context)
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
