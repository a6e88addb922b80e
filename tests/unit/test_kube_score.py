"""kube-score finds nothing CRITICAL and nothing WARNING in manifests/ and in the rendered chart.

kube-score is built from the Go module proxy into the lab cache on first use (about a minute;
`lab.host.kubescore.ensure()`); without Go these tests FAIL, they never skip.
"""
from __future__ import annotations

import subprocess

import pytest

from lab import config
from lab.system import deploy
from lab.host import kubescore

# Checks switched off, each for a reason:
IGNORED = {
    # The lab's images are loaded into the kind nodes (`kind load`); there is no registry to pull from.
    "container-image-pull-policy": "images exist only in the nodes, loaded by kind",
    # emptyDirs carry sizeLimit; the quota and LimitRange budget cpu and memory, not ephemeral storage.
    "container-ephemeral-storage-request-and-limit": "emptyDirs are bounded by sizeLimit instead",
    # The official images' users (mysql 999, nginx 101) own their files; a uid > 10000 would not.
    "container-security-context-user-group-id": "the images' own non-root uids 999, 101 and 65534",
    # One node in the default cluster: a required anti-affinity would leave replicas Pending;
    # topologySpreadConstraints spread them when there are nodes.
    "deployment-has-host-podantiaffinity": "spread by topologySpreadConstraints instead",
    # The assignment asks for the web on NodePort 30080.
    "service-type": "the assignment's NodePort 30080",
}

BAD_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad, namespace: x}
spec:
  replicas: 2
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec:
      containers:
        - name: c
          image: nginx:1.27
          resources: {requests: {cpu: 10m, memory: 8Mi}, limits: {cpu: 10m, memory: 8Mi}}
"""


@pytest.fixture(scope="module")
def kube_score():
    try:
        return kubescore.ensure()
    except Exception as error:  # noqa: BLE001 - no Go, no proxy: a failure with its reason
        pytest.fail(f"cannot build kube-score {kubescore.VERSION}: {error}", pytrace=False)


def manifests_text() -> str:
    parts = []
    for layer in deploy.layers():
        parts.append(deploy.render_layer(layer, "offline"))
    on_demand = config.REPO_ROOT / "manifests" / "06-backup" / "on-demand"
    parts += [p.read_text() for p in sorted(on_demand.glob("*.yaml"))]
    return "\n---\n".join(parts)


def chart_text(helm) -> str:
    return subprocess.run([str(helm), "template", "k8s-lab", str(config.REPO_ROOT / "chart"), "--namespace",
                           config.NAMESPACE, "--set", "namespace.create=true", "--set", "backup.beforeUpgrade=true"],
                          capture_output=True, text=True, check=True, timeout=120).stdout


def test_kube_score_reports_what_is_wrong(kube_score):
    """The check can fail: a bare Deployment gets the findings the lab's objects used to get."""
    found = {f.message for f in kubescore.findings(BAD_DEPLOYMENT, ignore=IGNORED, binary=kube_score)}
    assert any("no configured security context" in m for m in found), found
    assert any("PodDisruptionBudget" in m for m in found), found
    assert any("NetworkPolicy" in m for m in found), found


def test_manifests_are_clean(kube_score):
    findings = kubescore.findings(manifests_text(), ignore=IGNORED, binary=kube_score)
    assert not findings, "\n".join(map(str, findings))


def test_rendered_chart_is_clean(kube_score, helm):
    findings = kubescore.findings(chart_text(helm), ignore=IGNORED, binary=kube_score)
    assert not findings, "\n".join(map(str, findings))


def test_parse_reads_ci_output():
    out = ("[OK] web/ns apps/v1/Deployment\n"
           "[CRITICAL] web/ns apps/v1/Deployment: (nginx) The pod has a container with a writable root filesystem\n"
           "[WARNING] web/ns v1/Service: The service is of type NodePort\n"
           "[SKIPPED] x/ns v1/Service: skipped\n")
    assert [str(f) for f in kubescore.parse(out)] == out.splitlines()[1:3]
