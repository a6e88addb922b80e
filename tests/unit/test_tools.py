"""The pinned tools: how the offline helm build is set up, and what that helm renders offline.

The tests that run helm need the helm binary (no cluster) and FAIL, never skip, without it, as in
test_chart.py.
"""
from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from lab import config
from lab.host import gobuild
from lab.host import tools
from lab.errors import LabError

CHART = config.REPO_ROOT / "chart"
HELM_K8S_VARIABLES = ("helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor",
                      "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor",
                      "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor",
                      "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor")


def ldflag_values(ldflags: str) -> dict[str, str]:
    return dict(re.findall(r"-X (\S+?)=(\S+)", ldflags))


@pytest.fixture
def helm_go_mod(monkeypatch, tmp_path):
    """Point the helm build at a fake module whose go.mod is the given text."""

    def write(text: str) -> None:
        (tmp_path / "go.mod").write_text(text)
        monkeypatch.setattr(gobuild, "module_dir", lambda module, version: tmp_path)

    return write


# ------------------------------------------------------------------------- the helm go build


def test_helm_build_sets_kubernetes_version_from_client_go(helm_go_mod):
    helm_go_mod("module helm.sh/helm/v3\n\ngo 1.24.0\n\nrequire (\n"
                "\tk8s.io/api v0.33.1\n\tk8s.io/client-go v0.31.7\n)\n")
    spec = tools._tool("helm").go()
    flags = ldflag_values(spec.ldflags)
    assert {v: flags.get(v) for v in HELM_K8S_VARIABLES} == {
        "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor": "1",
        "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor": "31",
        "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor": "1",
        "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor": "31",
    }
    assert flags["helm.sh/helm/v3/internal/version.version"] == config.HELM_VERSION
    assert spec.requires == (("helm.sh/helm/v3", config.HELM_VERSION),)


def test_helm_build_is_keyed_by_its_kubernetes_version(helm_go_mod, monkeypatch):
    monkeypatch.setattr(gobuild, "go_version", lambda: "go1.24.0")
    helm_go_mod("require k8s.io/client-go v0.34.2\n")
    current = tools._tool("helm").go()
    helm_go_mod("require k8s.io/client-go v0.33.0\n")
    assert tools._tool("helm").go().key() != current.key()
    # A build without the Kubernetes ldflags (as the lab made before) is not reused.
    old = re.sub(r" -X \S+k8sVersionM(?:aj|in)or=\S+", "", current.ldflags)
    assert old != current.ldflags
    assert dataclasses.replace(current, ldflags=old).key() != current.key()


def test_helm_build_without_client_go_is_an_error(helm_go_mod):
    helm_go_mod("module helm.sh/helm/v3\n\nrequire k8s.io/apimachinery v0.34.2\n")
    with pytest.raises(LabError, match="client-go"):
        tools._tool("helm").go()


# ------------------------------------------------------------------- what helm renders offline


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)


def chart_floor() -> tuple[int, int]:
    constraint = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=\s*v?(\d+)\.(\d+)\.\d+(?:-0)?", constraint)
    assert match, f"kubeVersion {constraint!r} is not a plain lower bound"
    return int(match.group(1)), int(match.group(2))


def test_chart_floor_admits_the_labs_kubernetes():
    want = tools._semver(config.KUBERNETES_VERSION)
    assert want is not None and want[:2] >= chart_floor()


def test_helm_reports_a_current_kubernetes_without_a_cluster(helm, tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (tmp_path / "templates" / "probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n"
        "data:\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n")
    result = run_helm(helm, "template", "probe", str(tmp_path))
    assert result.returncode == 0, result.stderr
    kube = yaml.safe_load(result.stdout)["data"]["kube"]
    reported = tools._semver(kube)
    assert reported is not None and reported[:2] >= chart_floor(), \
        f"{helm} renders for Kubernetes {kube}: built without helm's k8sVersion ldflags?"


def test_helm_template_honours_the_charts_kube_version(helm):
    assert run_helm(helm, "template", "k8s-lab", str(CHART)).returncode == 0
    lab = run_helm(helm, "template", "k8s-lab", str(CHART), "--kube-version", config.KUBERNETES_VERSION)
    assert lab.returncode == 0, lab.stderr
    old = run_helm(helm, "template", "k8s-lab", str(CHART), "--kube-version", "1.20.0")
    assert old.returncode != 0
    assert "chart requires kubeVersion" in old.stderr, old.stderr


def test_make_test_unit_gets_the_tools_first():
    # The chart tests above render with helm and fail without it; `make test` on a fresh machine
    # reaches them before anything else has built helm.
    makefile = (config.REPO_ROOT / "Makefile").read_text()
    prerequisites = re.search(r"^test-unit:(.*)$", makefile, re.MULTILINE).group(1).split()
    assert "tools" in prerequisites
    assert re.search(r"^tools:.*\n\t\$\(LAB\) tools\b", makefile, re.MULTILINE)



# ------------------------------------------------------------------------- reported versions


def test_a_tools_version_is_asked_once_per_binary_and_again_when_it_changes(tmp_path, monkeypatch):
    """Every kernel's first checkpoint and every `lab` command ask kubectl, helm and kind for their
    versions: a binary answers once; a replaced one (another size or time) is asked again."""
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    calls = tmp_path / "calls"
    binary = tmp_path / "kubectl"
    binary.write_text(f'#!/bin/sh\necho run >> {calls}\necho "Client Version: v1.34.4"\n')
    binary.chmod(0o755)
    kubectl = tools._tool("kubectl")
    # 00-preflight passes the path `shutil.which` found, a string
    assert [tools._reported_version(where, kubectl) for where in (binary, str(binary), binary)] == ["v1.34.4"] * 3
    assert calls.read_text().count("run") == 1
    binary.write_text(f'#!/bin/sh\necho run >> {calls}\necho "Client Version: v1.35.0" # a newer one\n')
    assert tools._reported_version(binary, kubectl) == "v1.35.0"
    assert calls.read_text().count("run") == 2
