"""Zero-downtime rollouts (issue 14): a client that requests the web page without pause, each time
on a new connection as a browser after a reload would, sees no failed request while the web Pods
are replaced, by `kubectl rollout restart` and by a `helm upgrade` that changes the Pod template.

Why it used to fail: a deleted Pod left the Service's endpoints while nginx was already gone, and
kube-proxy, a moment behind, still sent new connections to it. Now a preStop pause keeps each old
Pod serving until it is out of every node's rules, nginx then quits gracefully (SIGQUIT), new
Pods count as ready only when they serve the page, and maxUnavailable is 0.

The client talks to the host port of LAB_CLUSTER's kind port mapping only (loopback), for a
bounded time. The module installs the system with Helm and removes it at the end.
"""
from __future__ import annotations

import functools
import os
import threading
import time
import urllib.request
from dataclasses import dataclass, field

import pytest

from lab import config
from lab.system import deploy
from lab.cluster import kube
from lab.cluster import kind
from tests.support import TARGET, deployed, kubectl, say

pytestmark = pytest.mark.cluster

NS = TARGET.namespace  # the lab's namespace: this module installs the system itself
MODE = os.environ.get("LAB_IMAGE_MODE") or "auto"
MAX_SECONDS = 300


@functools.cache
def url() -> str:
    """The web NodePort where this host reaches it (the kind port mapping of LAB_CLUSTER's cluster)."""
    return f"http://127.0.0.1:{kind.web_host_port(TARGET)}/"


@dataclass
class Client:
    """Requests URL in a loop on its own thread until stopped (or MAX_SECONDS)."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    served_by: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        while not self._stop.is_set() and time.monotonic() < deadline:
            request = urllib.request.Request(url(), headers={"Connection": "close"})
            try:
                with urllib.request.urlopen(request, timeout=3) as response:
                    body = response.read()
                    if response.status != 200 or b'name="pod-name"' not in body:
                        raise ValueError(f"HTTP {response.status}, {len(body)} bytes, not the rendered page")
                    self.served_by.add(response.headers.get("X-Served-By", "?"))
                self.ok += 1
            except Exception as error:  # noqa: BLE001 - every kind of failure counts
                self.failures.append(f"{time.monotonic():.1f} {type(error).__name__}: {error}")

    def __enter__(self) -> "Client":
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def web_pod_names() -> set[str]:
    pods = kube.core(TARGET).list_namespaced_pod(NS, label_selector="app.kubernetes.io/component=web,"
                                                               "app.kubernetes.io/instance=k8s-lab").items
    return {p.metadata.name for p in pods}


def wait_replaced(before: set[str], replicas: int = 3) -> None:
    def done():
        d = kube.apps(TARGET).read_namespaced_deployment("web", NS)
        names = web_pod_names()
        return (d.status.observed_generation >= d.metadata.generation
                and (d.status.updated_replicas or 0) == (d.status.ready_replicas or 0) == replicas
                and (d.status.replicas or 0) == replicas and len(names) == replicas and not names & before)

    kube.wait_until(done, 240, interval=1, what="every web Pod replaced (old ones gone)")


@pytest.fixture(scope="module")
def system():
    with deployed("helm", MODE):
        yield


def check(client: Client, what: str, seconds: float) -> None:
    say(f"{what}: {client.ok} requests ok, {len(client.failures)} failed in {seconds:.0f}s, "
        f"served by {len(client.served_by)} Pods")
    assert client.ok > 50, "the client hardly ran"
    assert not client.failures, "\n".join(client.failures[:10])


def test_no_failed_request_during_rollout_restart(system):
    before = web_pod_names()
    started = time.monotonic()
    with Client() as client:
        time.sleep(2)
        kubectl("rollout", "restart", "deployment/web", "-n", NS)
        wait_replaced(before)
        time.sleep(5)  # the last old Pod's endpoints are gone from every node by now
    check(client, "kubectl rollout restart", time.monotonic() - started)
    assert len(client.served_by) >= 6  # old and new Pods answered


def test_no_failed_request_during_a_helm_upgrade_that_rolls_the_pods(system, tmp_path):
    original = (config.REPO_ROOT / "chart" / "files" / "default.conf").read_text()
    changed = tmp_path / "default.conf"
    changed.write_text(original.replace("add_header X-Served-By $hostname always;",
                                        "add_header X-Served-By $hostname always;\n"
                                        "    add_header X-Lab-Rollout test always;"))
    before = web_pod_names()
    started = time.monotonic()
    with Client() as client:
        time.sleep(2)
        deploy.deploy(TARGET, "helm", mode=MODE, helm_args=["--set-file", f"web.nginxConfig={changed}"])
        wait_replaced(before)
        time.sleep(5)
    check(client, "helm upgrade (new nginx config)", time.monotonic() - started)
    with urllib.request.urlopen(url(), timeout=3) as response:
        assert response.headers.get("X-Lab-Rollout") == "test"
