"""The checkpoint verifications against the real kind cluster (issue 7).

The module creates its own namespace, k8s-lab-checks-test, with small objects (pause-image
workloads, a claim on the default storage class, a Service, a ConfigMap, a Secret, a
NetworkPolicy, a DaemonSet and a tiny Helm release), checks that every verification passes on
them and fails on wrong expectations, and deletes the namespace at the end.
"""
from __future__ import annotations

import json
import textwrap
import time
from dataclasses import replace

import pytest

from lab import checks, config
from lab.cluster import kube
from lab.system import deploy, helm_records
from tests.support import TARGET, helm, kubectl, run, say

pytestmark = pytest.mark.cluster

NS = "k8s-lab-checks-test"
IMAGE = "registry.k8s.io/pause:3.10.1"  # in every kind node: the sandbox image
SECRET_VALUE = "s3cret-value-never-recorded"
RELEASE = "checks-test"

MANIFEST = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: pause, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: pause}}}}
  template:
    metadata: {{labels: {{app: pause}}}}
    spec:
      containers:
        - {{name: pause, image: {IMAGE}, imagePullPolicy: IfNotPresent,
            resources: {{requests: {{cpu: 5m, memory: 8Mi}}, limits: {{cpu: 20m, memory: 16Mi}}}}}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: store, namespace: {NS}}}
spec:
  replicas: 1
  serviceName: store
  selector: {{matchLabels: {{app: store}}}}
  template:
    metadata: {{labels: {{app: store}}}}
    spec:
      containers:
        - name: pause
          image: {IMAGE}
          imagePullPolicy: IfNotPresent
          resources: {{requests: {{cpu: 5m, memory: 8Mi}}, limits: {{cpu: 20m, memory: 16Mi}}}}
          volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
    - metadata: {{name: data}}
      spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 16Mi}}}}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: everywhere, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: everywhere}}}}
  template:
    metadata: {{labels: {{app: everywhere}}}}
    spec:
      tolerations: [{{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}}]
      containers:
        - {{name: pause, image: {IMAGE}, imagePullPolicy: IfNotPresent,
            resources: {{requests: {{cpu: 5m, memory: 8Mi}}, limits: {{cpu: 20m, memory: 16Mi}}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: pause, namespace: {NS}}}
spec:
  type: NodePort
  selector: {{app: pause}}
  ports: [{{port: 80, targetPort: 8080, protocol: TCP}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {NS}}}
data: {{app.conf: "listen 80;"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: {NS}}}
stringData: {{username: lab, password: {SECRET_VALUE}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: deny-ingress, namespace: {NS}}}
spec: {{podSelector: {{}}, policyTypes: [Ingress]}}
"""


def uid(kind: str, name: str, namespace: str | None = NS) -> str:
    args = ["get", kind, name, "-o", "jsonpath={.metadata.uid}"] + (["-n", namespace] if namespace else [])
    return kubectl(*args).stdout.strip()


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    if kubectl("get", "namespace", NS, check=False).returncode == 0:
        say(f"removing {NS} left from an earlier run")
        kubectl("delete", "namespace", NS, "--wait=true", timeout=300)
    say(f"creating the test objects in {NS}")
    kubectl("apply", "-f", "-", stdin=MANIFEST)
    chart = tmp_path_factory.mktemp("chart")
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: checks-test\nversion: 0.1.0\n")
    (chart / "templates").mkdir()
    (chart / "templates" / "configmap.yaml").write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: from-helm}
        data: {release: "{{ .Release.Name }}"}
        """))
    try:
        run(deploy.helm_cmd(TARGET, "install", RELEASE, str(chart), "-n", NS, "--wait", "--timeout", "120s"))
        for kind, name in (("deployment", "pause"), ("statefulset", "store"), ("daemonset", "everywhere")):
            kubectl("rollout", "status", f"{kind}/{name}", "-n", NS, "--timeout=240s", timeout=300)
        kubectl("wait", "-n", NS, "--for=jsonpath={.status.phase}=Bound", "pvc/data-store-0", "--timeout=120s",
                timeout=180)
        yield chart
    finally:
        say(f"deleting {NS}")
        kubectl("delete", "namespace", NS, "--wait=false", check=False)


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch):
    monkeypatch.setattr(checks, "settings", checks.Settings(namespace=NS, context=TARGET.kube_context))
    monkeypatch.setattr(checks, "_session", checks.Session())


# ------------------------------------------------------------------------------ identity


def test_cluster_identity_is_read_from_the_cluster():
    checks._identity_cache.clear()
    identity = checks.cluster_identity()
    assert "error" not in identity, identity
    assert identity["context"] == TARGET.kube_context
    assert identity["kube_system_uid"] == uid("namespace", "kube-system", None)
    version = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert identity["server_version"] == version
    nodes = kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    assert [n["name"] for n in identity["nodes"]] == sorted(nodes)
    for n in identity["nodes"]:
        assert n["uid"] == uid("node", n["name"], None) and n["kubelet"] == version
        assert n["node_image"] in (None, config.OFFLINE_NODE_IMAGE) or n["node_image"].startswith("kindest/node")
    assert identity["tools"]["kubectl"] and identity["tools"]["helm"] == config.HELM_VERSION
    # a second call reads only the UID and reuses the rest
    assert checks.cluster_identity() == identity


def test_an_unknown_context_is_an_identity_error_not_a_crash():
    identity = checks.cluster_identity("no-such-context")
    assert identity["context"] == "no-such-context" and "no-such-context" in identity["error"]


# ------------------------------------------------------------------------- passing checks


def test_every_verification_passes_on_the_objects(objects, tmp_path):
    (tmp_path / "backup.sql.gz").write_bytes(b"dump")
    node_port = int(kubectl("get", "service", "pause", "-n", NS, "-o", "jsonpath={.spec.ports[0].nodePort}").stdout)
    results = {
        "namespace": checks.namespace_exists(NS),
        "deployment": checks.deployment_ready("pause", replicas=1),
        "statefulset": checks.statefulset_ready("store", replicas=1),
        "service": checks.service_has_port("pause", 80, node_port=node_port, target_port=8080),
        "endpoints": checks.service_has_endpoints("pause"),
        "configmap": checks.configmap_has_key("settings", "app.conf", contains="listen"),
        "secret": checks.secret_has_keys("creds", ["username", "password"]),
        "pvc": checks.pvc_bound("data-store-0"),
        "policy": checks.networkpolicy_exists("deny-ingress", policy_types=["Ingress"]),
        "daemonset": checks.pods_on_every_node("app=everywhere"),
        "helm": checks.helm_release_deployed(RELEASE),
        "file": checks.file_exists_on_host(tmp_path / "*.sql.gz"),
    }
    failed = {k: r.message for k, r in results.items() if not r.passed}
    assert not failed
    assert results["deployment"].uids[f"Deployment/{NS}/pause"] == uid("deployment", "pause")
    assert results["statefulset"].uids[f"StatefulSet/{NS}/store"] == uid("statefulset", "store")
    assert results["statefulset"].uids[f"Pod/{NS}/store-0"] == uid("pod", "store-0")
    assert results["pvc"].uids[f"PersistentVolumeClaim/{NS}/data-store-0"] == uid("pvc", "data-store-0")
    assert results["secret"].uids == {f"Secret/{NS}/creds": uid("secret", "creds")}
    assert results["namespace"].uids == {f"Namespace/{NS}": uid("namespace", NS, None)}


def test_a_checkpoint_records_cluster_and_object_uids_but_no_secret(objects, capsys):
    rec = checks.checkpoint("test.secret", points=2, hint="kubectl describe secret creds",
                            verify=lambda: checks.secret_has_keys("creds", ["password"]))
    assert rec.passed and "PASS test.secret (2/2 points)" in capsys.readouterr().out
    data = rec.data
    assert data["cluster"]["kube_system_uid"] == uid("namespace", "kube-system", None)
    assert data["objects"] == {f"Secret/{NS}/creds": uid("secret", "creds")}
    assert data["namespace"] == NS and data["hash"] == checks.record_hash(data)
    assert SECRET_VALUE not in json.dumps(data)


def test_helm_revisions_and_object_metadata_are_what_helm_and_kubectl_see(objects):
    """Checkpoints read Helm's records and the chart's objects through the API, not by starting
    helm and kubectl: they must see what those tools see."""
    helm("upgrade", RELEASE, str(objects), "-n", NS, "--set", "greeting=hello", "--wait", "--timeout", "120s")
    history = json.loads(helm("history", RELEASE, "-n", NS, "-o", "json").stdout)
    revisions = checks.helm_revisions(RELEASE)
    assert len(history) >= 2
    assert [(r["revision"], r["status"]) for r in revisions] == [(e["revision"], e["status"]) for e in history]
    assert checks.helm_revisions("absent-release") == []
    target = replace(TARGET, namespace=NS)
    latest = helm_records.record(target, RELEASE)
    assert latest["config"] == json.loads(helm("get", "values", RELEASE, "-n", NS, "-o", "json").stdout)
    assert latest["config"] == {"greeting": "hello"}
    assert latest["info"]["description"] == history[-1]["description"]
    assert helm_records.record(target, RELEASE, revision=1)["info"]["status"] == "superseded"
    assert helm_records.record(target, "absent-release") is None
    config_maps = kube.metadata_by_name(TARGET, "ConfigMap", NS, "v1")
    made_by_helm = config_maps["from-helm"]
    assert made_by_helm["uid"] == uid("configmap", "from-helm")
    assert made_by_helm["annotations"]["meta.helm.sh/release-name"] == RELEASE
    assert made_by_helm["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    policy = kube.metadata_by_name(TARGET, "NetworkPolicy", NS, "networking.k8s.io/v1")["deny-ingress"]
    assert policy["uid"] == uid("networkpolicy", "deny-ingress")
    assert kube.metadata_by_name(TARGET, "Namespace", None)[NS]["uid"] == uid("namespace", NS, None)
    assert "absent" not in config_maps


def test_a_server_side_dry_run_refuses_what_the_api_would_and_stores_nothing(objects):
    """tasks.api_refusal asks the API server, not kubectl, whether a student's file would apply."""
    target = replace(TARGET, namespace=NS)
    fine = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry-run-only"}, "data": {"a": "b"}}
    assert kube.dry_run_apply(target, fine) is None
    assert "dry-run-only" not in kube.metadata_by_name(TARGET, "ConfigMap", NS), "a dry run stores nothing"
    misspelt = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry-run-only"}, "dta": {"a": "b"}}
    assert "dta" in kube.dry_run_apply(target, misspelt)
    negative = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pause"}, "spec": {"replicas": -1}}
    assert "spec.replicas" in kube.dry_run_apply(target, negative)
    unknown = {"apiVersion": "v1", "kind": "NoSuchKind", "metadata": {"name": "x"}}
    assert kube.dry_run_apply(target, unknown) == 'no matches for kind "NoSuchKind" in version "v1"'


# ------------------------------------------------------------------------- failing checks


def test_verifications_fail_on_wrong_expectations(objects, tmp_path):
    results = {
        "namespace": checks.namespace_exists(f"{NS}-absent"),
        "replicas": checks.deployment_ready("pause", replicas=2),
        "deployment": checks.deployment_ready("absent"),
        "statefulset": checks.statefulset_ready("store", replicas=3),
        "port": checks.service_has_port("pause", 443),
        "node-port": checks.service_has_port("pause", 80, node_port=config.WEB_NODEPORT - 1),
        "configmap": checks.configmap_has_key("settings", "other.conf"),
        "secret": checks.secret_has_keys("creds", ["root-password"]),
        "pvc": checks.pvc_bound("data-absent"),
        "policy": checks.networkpolicy_exists("deny-ingress", policy_types=["Egress"]),
        "pods": checks.pods_on_every_node("app=nothing-has-this-label"),
        "helm": checks.helm_release_deployed("absent-release"),
        "file": checks.file_exists_on_host(tmp_path / "absent.sql.gz"),
    }
    passed = [k for k, r in results.items() if r.passed]
    assert not passed
    assert results["replicas"].message == "Deployment pause asks for 1 replicas, expected 2"
    assert results["deployment"].message == f"Deployment absent not found in namespace {NS}"
    assert "expected port 443/TCP" in results["port"].message
    assert "root-password" in results["secret"].message and SECRET_VALUE not in results["secret"].message
    assert "0/" in results["pods"].message and "nodes covered" in results["pods"].message
    assert results["helm"].message == f"no Helm release absent-release in namespace {NS}"


def test_a_workload_that_cannot_start_says_why(objects):
    kubectl("apply", "-f", "-", stdin=f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: broken, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: broken}}}}
  template:
    metadata: {{labels: {{app: broken}}}}
    spec:
      containers:
        - {{name: app, image: "k8s-lab/does-not-exist:1", imagePullPolicy: Never,
            resources: {{requests: {{cpu: 5m, memory: 8Mi}}, limits: {{cpu: 20m, memory: 16Mi}}}}}}
""")
    deadline, result = time.monotonic() + 90, None
    while time.monotonic() < deadline:
        result = checks.deployment_ready("broken", replicas=1)
        if "ErrImageNeverPull" in result.message:
            break
        time.sleep(3)
    assert not result.passed and "0/1 replicas ready" in result.message
    assert "container app: ErrImageNeverPull" in result.message
    kubectl("delete", "deployment", "broken", "-n", NS, "--wait=false")


def test_registered_checks_run_live_against_a_namespace_without_the_system(objects):
    records = checks.run_registered(namespace=NS)
    by_id = {r["check_id"]: r for r in records}
    assert by_id["system.namespace"]["passed"]
    assert not by_id["system.web-ready"]["passed"]
    assert by_id["system.web-ready"]["message"] == f"Deployment web not found in namespace {NS}"
    assert any(r["kind"] == "instructor" for r in records)
    assert not [r["message"] for r in records if r["message"].startswith("could not verify")]
