"""Shared pytest setup.

Tests marked ``cluster`` need the real kind cluster (context ``kind-k8s-lab``). When it cannot
be reached they FAIL with a pointer to ``lab cluster up``; they are never skipped, so a missing
cluster can never pass as a green run.
"""
from __future__ import annotations

import os

import pytest

# lab.config.KUBE_CONTEXT, spelled out so this file stands alone: LAB_CLUSTER names a second cluster.
CLUSTER_CONTEXT = f"kind-{os.environ.get('LAB_CLUSTER', 'k8s-lab')}"
PROBE_TIMEOUT_S = 10

_probe_result: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs the real kind cluster (kind-k8s-lab)")
    config.addinivalue_line("markers", "unit: fast tests that need neither Docker nor a cluster")


def cluster_problem() -> str | None:
    """None when the cluster's API server answers, else why not (probed once per session)."""
    if "problem" not in _probe_result:
        _probe_result["problem"] = _probe()
    return _probe_result["problem"]


def _probe() -> str | None:
    try:
        from kubernetes import client, config
    except ImportError as exc:
        return f"the kubernetes package is not installed ({exc})"
    try:
        api = config.new_client_from_config(context=CLUSTER_CONTEXT)
    except Exception as exc:  # noqa: BLE001 - no kubeconfig, no such context, bad file
        return f"no usable kubeconfig context {CLUSTER_CONTEXT}: {exc}"
    try:
        client.VersionApi(api).get_code(_request_timeout=PROBE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - refused, timed out, TLS, auth
        return f"the API server of {CLUSTER_CONTEXT} does not answer: {type(exc).__name__}: {exc}"
    finally:
        api.close()
    return None


def _fail_without_cluster() -> None:
    problem = cluster_problem()
    if problem:
        pytest.fail(
            f"cluster {CLUSTER_CONTEXT} is unreachable ({problem}); run `lab cluster up` first",
            pytrace=False,
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cluster") is not None:
        _fail_without_cluster()


@pytest.fixture(scope="session")
def kube_api():
    """A kubernetes ApiClient for the lab cluster; fails the test when the cluster is unreachable."""
    _fail_without_cluster()
    from kubernetes import config

    api = config.new_client_from_config(context=CLUSTER_CONTEXT)
    yield api
    api.close()
