"""The two watcher programs without a cluster: the Go watcher's own tests (`go test`, the real
informer against a scripted API), and the Python watcher's health endpoint and its error line
when RBAC forbids listing Pods.

`go test` needs Go (the offline kit does too); without it the test FAILS, it never skips.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from lab import config

GO_DIR = config.REPO_ROOT / "images" / "watcher-go"
WATCHER_PATH = config.REPO_ROOT / "images" / "watcher" / "k8s_lab_watcher.py"


def load_python_watcher():
    spec = importlib.util.spec_from_file_location("k8s_lab_watcher_programs", WATCHER_PATH)
    module = importlib.util.module_from_spec(spec)
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # keep __pycache__ out of the image directory
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    return module


W = load_python_watcher()


def test_go_watcher_unit_tests_pass():
    go = shutil.which("go")
    if go is None:
        pytest.fail("`go` is not on PATH: the Go watcher's tests need it (as the offline kit does)", pytrace=False)
    env = dict(os.environ, GOWORK="off", GOFLAGS="-mod=mod", CGO_ENABLED="0")
    result = subprocess.run([go, "test", "-count=1", "./..."], cwd=GO_DIR, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def get(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_python_health_endpoint_turns_503_when_the_loop_is_stuck():
    watcher = W.Watcher(None, "lab", node="node-a", out=io.StringIO(), timeout_s=5, backoff_max_s=2)
    server = W.serve_health(watcher, 0)
    try:
        port = server.server_address[1]
        status, body = get(port)
        assert status == 200 and body["status"] == "ok" and body["session"] == watcher.session
        # Longer in one call than a quiet watch (5 s + grace), a list and the longest pause take.
        watcher.progress_at -= watcher.stall_limit_s() + 1
        status, body = get(port)
        assert status == 503 and body["status"] == "stuck" and body["stuck_s"] > watcher.stall_limit_s()
        watcher._blocking(lambda: None)  # any progress makes it healthy again
        assert get(port)[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_python_forbidden_list_logs_the_api_message_with_a_hint_and_backs_off():
    from kubernetes.client.exceptions import ApiException

    message = ('pods is forbidden: User "system:serviceaccount:lab:watcher" cannot list resource "pods" '
               'in API group "" in the namespace "lab"')

    class Forbidden:
        calls = 0

        def list_namespaced_pod(self, namespace, **kwargs):
            self.calls += 1
            error = ApiException(status=403, reason="Forbidden")
            # Bytes: with _preload_content=False the client hands over the raw response body.
            error.body = json.dumps({"kind": "Status", "status": "Failure", "message": message,
                                     "reason": "Forbidden", "code": 403}).encode()
            raise error

    out, sleeps = io.StringIO(), []
    watcher = W.Watcher(Forbidden(), "lab", node="node-a", out=out, backoff_max_s=30, sleep=sleeps.append)

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 6:
            watcher.request_stop(15)
    watcher._sleep = sleep
    assert watcher.run() == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    errors = [r for r in lines if r.get("status") == "error"]
    assert len(errors) == 6 == watcher.api.calls
    assert errors[0]["detail"] == f"ApiException: Forbidden: {message}"
    assert "watcher-pod-reader" in errors[0]["hint"]
    # Exponential backoff with jitter: the i-th wait is within [d/2, d] for d = 0.5 s * 2**i.
    assert all(0.25 * 2**i <= delay <= 0.5 * 2**i for i, delay in enumerate(sleeps)), sleeps
    assert lines[-1]["status"] == "stopped" and lines[-1]["reason"] == "SIGTERM"
