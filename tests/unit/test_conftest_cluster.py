"""tests/conftest.py makes `cluster` tests fail, never skip, when the cluster is unreachable."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: kind-k8s-lab
  cluster: {server: "https://127.0.0.1:1"}
contexts:
- name: kind-k8s-lab
  context: {cluster: kind-k8s-lab, user: kind-k8s-lab}
current-context: kind-k8s-lab
users:
- name: kind-k8s-lab
  user: {token: not-a-real-token}
"""

TESTS = """\
import pytest

@pytest.mark.cluster
def test_needs_cluster():
    pass

def test_uses_fixture(kube_api):
    pass

def test_plain():
    pass
"""


def run_pytest(tmp_path: Path, kubeconfig: str | None) -> subprocess.CompletedProcess:
    shutil.copy(ROOT_CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers -p no:cacheprovider\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    if kubeconfig is not None:
        (tmp_path / "kubeconfig").write_text(kubeconfig)
        env["KUBECONFIG"] = str(tmp_path / "kubeconfig")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


def check_failed_not_skipped(proc: subprocess.CompletedProcess) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "skipped" not in out
    assert "1 passed, 2 errors" in out, out
    assert "run `lab cluster up` first" in out


def test_unreachable_api_server_fails_cluster_tests(tmp_path):
    proc = run_pytest(tmp_path, KUBECONFIG)
    check_failed_not_skipped(proc)
    assert "does not answer" in proc.stdout


def test_missing_kubeconfig_fails_cluster_tests(tmp_path):
    proc = run_pytest(tmp_path, None)
    check_failed_not_skipped(proc)
    assert "no usable kubeconfig context kind-k8s-lab" in proc.stdout
