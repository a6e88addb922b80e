"""The Helm chart in chart/ and the manifests in manifests/ describe the same system.

Needs the helm binary (no cluster): when `lab.host.tools.find("helm")` finds none these tests FAIL,
they never skip.
"""
from __future__ import annotations

import base64
import copy
import os
import difflib
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lab import config
from lab.system import credentials
from lab.system import deploy
from lab.target import Target

CHART = config.REPO_ROOT / "chart"
RELEASE = "k8s-lab"
NS = config.NAMESPACE
# Labels only Helm sets; everything else must match the manifests exactly.
HELM_ONLY_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}
SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}


# ------------------------------------------------------------------------------------ helpers


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stderr}", pytrace=False)
    return result


def template(helm: Path, *args: str, chart: Path = CHART) -> list[dict]:
    out = run_helm(helm, "template", RELEASE, str(chart), "--namespace", NS, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def is_hook(obj: dict) -> bool:
    return "helm.sh/hook" in (obj.get("metadata", {}).get("annotations") or {})


def manifest_objects() -> list[dict]:
    objects = []
    for layer in deploy.layers():
        for path in deploy.layer_files(layer):
            objects += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return objects


def key(obj: dict) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta.get("name") or meta.get("generateName")


def by_key(objects: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {key(o): o for o in objects}


def blank_generated(obj: dict) -> dict:
    """A Secret as the manifests write it: stringData, the generated keys (annotation
    k8s-lab/generated) empty, no Helm annotation. The chart fills them with random values."""
    if obj.get("kind") != "Secret":
        return obj
    values = {**{k: base64.b64decode(v).decode() for k, v in (obj.pop("data", None) or {}).items()},
              **(obj.get("stringData") or {})}
    annotations = obj["metadata"].get("annotations") or {}
    annotations.pop("helm.sh/resource-policy", None)
    for k in credentials.generated_keys(obj):
        values[k] = ""
    obj["stringData"] = values
    return obj


def normalise(obj: dict) -> dict:
    """A copy without the labels only Helm adds (at every level: Pod templates, job templates),
    and with generated passwords blanked."""
    obj = blank_generated(copy.deepcopy(obj))

    def walk(node):
        if isinstance(node, dict):
            meta = node.get("metadata")
            if isinstance(meta, dict) and isinstance(meta.get("labels"), dict):
                for label in HELM_ONLY_LABELS:
                    meta["labels"].pop(label, None)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(obj)
    return obj


def pod_spec(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


def chart_objects(helm: Path, *args: str) -> dict:
    """Non-hook objects of a render with the Namespace included (as manifests/00-namespace has)."""
    return by_key([o for o in template(helm, "--set", "namespace.create=true", *args) if not is_hook(o)])


@pytest.fixture(scope="module")
def rendered(helm) -> dict:
    return chart_objects(helm)


@pytest.fixture(scope="module")
def manifests() -> dict:
    return by_key(manifest_objects())


# ------------------------------------------------------------------------------------ parity


def test_chart_and_manifests_have_the_same_objects(rendered, manifests):
    only_chart = sorted(set(rendered) - set(manifests))
    only_manifests = sorted(set(manifests) - set(rendered))
    assert not only_chart and not only_manifests, (
        f"only in the chart: {only_chart}\nonly in manifests/: {only_manifests}")
    kinds = {k[0] for k in manifests}
    assert {"Namespace", "ResourceQuota", "LimitRange", "PersistentVolume", "Secret", "ConfigMap",
            "Service", "StatefulSet", "Deployment", "NetworkPolicy", "ServiceAccount", "Role",
            "RoleBinding", "CronJob"} <= kinds


def test_every_object_is_identical_apart_from_helm_labels(rendered, manifests):
    differences = []
    for k in sorted(manifests):
        want, got = normalise(manifests[k]), normalise(rendered[k])
        if want != got:
            diff = difflib.unified_diff(
                yaml.safe_dump(want, sort_keys=True).splitlines(),
                yaml.safe_dump(got, sort_keys=True).splitlines(),
                "manifests/", "helm template", lineterm="", n=2)
            differences.append(f"{'/'.join(k)}:\n" + "\n".join(diff))
    assert not differences, "\n\n".join(differences)


def test_applying_the_layers_in_order_creates_the_namespace_first():
    # kubectl applies a folder's files in name order; a namespaced object before its Namespace
    # fails on a fresh cluster.
    objects = manifest_objects()
    assert objects[0]["kind"] == "Namespace" and objects[0]["metadata"]["name"] == NS
    assert all(o["metadata"].get("namespace") in (None, NS) for o in objects)


def test_default_render_leaves_the_namespace_to_helm(helm):
    kinds = {o["kind"] for o in template(helm)}
    assert "Namespace" not in kinds  # helm --create-namespace makes it
    assert {"ResourceQuota", "LimitRange"} <= kinds


def test_the_fields_that_matter(rendered, manifests):
    for objects in (rendered, manifests):
        web = objects[("Deployment", NS, "web")]
        db = objects[("StatefulSet", NS, "database")]
        assert web["spec"]["replicas"] == 3
        assert db["spec"]["replicas"] == 1
        assert {c["image"] for c in containers(web)} == {"k8s-lab/web:1"}
        assert {c["image"] for c in containers(db)} == {"k8s-lab/mariadb:lab"}
        assert all(c["imagePullPolicy"] == "IfNotPresent"
                   for o in objects.values() if o["kind"] in ("Deployment", "StatefulSet", "CronJob")
                   for c in containers(o))
        service = objects[("Service", NS, "web")]
        assert service["spec"]["type"] == "NodePort"
        assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http",
                                             "nodePort": config.WEB_NODEPORT, "protocol": "TCP"}]
        for name in ("database", "database-headless"):
            assert objects[("Service", NS, name)]["spec"]["ports"][0]["port"] == config.DB_PORT
        assert objects[("Service", NS, "database-headless")]["spec"]["clusterIP"] == "None"
        assert db["spec"]["serviceName"] == "database-headless"
        assert db["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == config.DB_PORT
        pv = objects[("PersistentVolume", "", "k8s-lab-database-data")]
        assert pv["spec"]["storageClassName"] == "manual"
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert pv["spec"]["hostPath"]["path"].startswith("/var/local/k8s-lab/pv/")
        assert pv["spec"]["claimRef"] == {"namespace": NS, "name": "data-database-0"}
        vct = db["spec"]["volumeClaimTemplates"][0]
        assert vct["metadata"]["name"] == "data" and vct["spec"]["storageClassName"] == "manual"


def test_selectors_select_their_pods_and_use_only_stable_labels(rendered):
    for k, obj in rendered.items():
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            selector = obj["spec"]["selector"]["matchLabels"]
            assert set(selector) == SELECTOR_KEYS, k
            assert selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items(), k
        if obj["kind"] == "Service":
            assert set(obj["spec"]["selector"]) == SELECTOR_KEYS, k
            workloads = [o for o in rendered.values() if o["kind"] in ("Deployment", "StatefulSet")
                         and obj["spec"]["selector"].items() <= o["spec"]["template"]["metadata"]["labels"].items()]
            assert len(workloads) == 1, f"{k} selects {len(workloads)} workloads"


def test_selectors_survive_a_new_chart_version_and_new_values(helm, tmp_path, rendered):
    """Workload selectors and claim templates are immutable: an upgrade must not change them."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"], meta["appVersion"] = "9.9.9", "99"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    upgraded = by_key([o for o in template(helm, "--set", "web.replicas=5", "--set", "web.nginxConfig=x",
                                           chart=chart) if not is_hook(o)])
    for k, obj in rendered.items():
        if obj["kind"] in ("Deployment", "StatefulSet"):
            assert upgraded[k]["spec"]["selector"] == obj["spec"]["selector"], k
        if obj["kind"] == "StatefulSet":
            assert upgraded[k]["spec"]["volumeClaimTemplates"] == obj["spec"]["volumeClaimTemplates"], k
        if obj["kind"] == "Service":
            assert upgraded[k]["spec"]["selector"] == obj["spec"]["selector"], k


def test_network_policies(rendered, manifests):
    dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
           "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    for objects in (rendered, manifests):
        policies = {k[2]: o["spec"] for k, o in objects.items() if k[0] == "NetworkPolicy"}
        assert set(policies) == {"default-deny-ingress", "web-allow-http", "database-allow-clients",
                                 "web-egress", "backup-egress", "watcher-egress"}
        for name, spec in policies.items():
            assert spec.get("policyTypes"), f"{name} must say its policyTypes"
        assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
        web = policies["web-allow-http"]
        assert web["ingress"] == [{"ports": [{"protocol": "TCP", "port": "http"}]}]  # from anywhere
        db = policies["database-allow-clients"]
        assert db["policyTypes"] == ["Ingress", "Egress"]
        assert db["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "database"
        [rule] = db["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": config.DB_PORT}]
        peers = [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in rule["from"]]
        assert peers == ["web", "backup"]
        assert all(set(p) == {"podSelector"} for p in rule["from"])  # no namespaces, no IP blocks
        [egress] = db["egress"]
        assert egress["to"] == [dns]
        assert {(p["protocol"], p["port"]) for p in egress["ports"]} == {("UDP", 53), ("TCP", 53)}
        # The web Pods and the backup Pods really carry the peer labels.
        web_labels = objects[("Deployment", NS, "web")]["spec"]["template"]["metadata"]["labels"]
        assert rule["from"][0]["podSelector"]["matchLabels"].items() <= web_labels.items()
        backup = objects[("CronJob", NS, "database-backup")]["spec"]["jobTemplate"]["spec"]["template"]
        assert rule["from"][1]["podSelector"]["matchLabels"].items() <= backup["metadata"]["labels"].items()
        # Default-deny egress per part: each names exactly what it may reach.
        reach = {}
        for name in ("web-egress", "backup-egress", "watcher-egress"):
            assert policies[name]["policyTypes"] == ["Egress"], name
            reach[name] = [(r.get("to", [{}])[0].get("podSelector", {}).get("matchLabels", {})
                            .get("app.kubernetes.io/component", "dns" if r.get("to") == [dns] else "any"),
                            sorted(p["port"] for p in r["ports"])) for r in policies[name]["egress"]]
        assert reach["web-egress"] == [("dns", [53, 53]), ("database", [3306]), ("web", [8080])]
        assert reach["backup-egress"] == [("dns", [53, 53]), ("database", [3306])]
        assert reach["watcher-egress"] == [("any", [443, 6443])]  # the API server only
        assert policies["web-egress"]["podSelector"] == db["ingress"][0]["from"][0]["podSelector"]
        assert policies["backup-egress"]["podSelector"] == db["ingress"][0]["from"][1]["podSelector"]
        watcher = objects[("DaemonSet", NS, "watcher")]["spec"]["template"]["metadata"]["labels"]
        assert policies["watcher-egress"]["podSelector"]["matchLabels"].items() <= watcher.items()


def test_helm_test_pod_is_a_web_peer_but_gets_no_web_traffic(helm, rendered):
    [pod] = [o for o in template(helm) if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    labels = pod["metadata"]["labels"]
    db_policy = rendered[("NetworkPolicy", NS, "database-allow-clients")]["spec"]
    assert db_policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"].items() <= labels.items()
    web_selector = rendered[("Service", NS, "web")]["spec"]["selector"]
    assert not web_selector.items() <= labels.items()
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "http://web:80" in script and "probe-tcp database 3306" in script


def test_config_maps_match_the_chart_files_and_carry_no_credentials(rendered, manifests):
    for objects in (rendered, manifests):
        web = objects[("ConfigMap", NS, "web-nginx")]["data"]["default.conf"]
        db = objects[("ConfigMap", NS, "database-config")]["data"]
        assert web == (CHART / "files" / "default.conf").read_text()
        assert db["my.cnf"] == (CHART / "files" / "my.cnf").read_text()
        assert db["10-accounts.sh"] == (CHART / "files" / "accounts.sh").read_text()
        assert "no-store" in web and "listen 8080;" in web
        assert not re.search(r"^\s*ssi", web, re.M)  # nginx serves the files as the init container wrote them
    secret = rendered[("Secret", NS, "database-credentials")]["data"]
    assert set(secret) == {"root-password", "username", "password", "backup-username", "backup-password"}
    for k, obj in rendered.items():
        if k[0] == "ConfigMap":
            text = yaml.safe_dump(obj)
            for name in ("root-password", "password", "backup-password"):
                assert base64.b64decode(secret[name]).decode() not in text, f"a credential is in {k}"


def test_checksum_annotations_are_the_config_hashes(rendered, manifests):
    for objects in (rendered, manifests):
        for workload, configmap, data_key in (
            (("Deployment", NS, "web"), ("ConfigMap", NS, "web-nginx"), "default.conf"),
            (("StatefulSet", NS, "database"), ("ConfigMap", NS, "database-config"), "my.cnf"),
        ):
            text = objects[configmap]["data"][data_key]
            annotation = objects[workload]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            assert annotation == hashlib.sha256(text.encode()).hexdigest(), workload


def test_a_config_change_changes_the_pod_template(helm, rendered):
    changed = chart_objects(helm, "--set-string", "web.nginxConfig=server { listen 80; }")
    before = rendered[("Deployment", NS, "web")]["spec"]["template"]["metadata"]["annotations"]
    after = changed[("Deployment", NS, "web")]["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/config"] != after["checksum/config"]
    assert changed[("ConfigMap", NS, "web-nginx")]["data"]["default.conf"] == "server { listen 80; }\n"


def test_database_security_and_placement(rendered):
    db = rendered[("StatefulSet", NS, "database")]
    spec = pod_spec(db)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 999 and spec["securityContext"]["fsGroup"] == 999
    [term] = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "k8s-lab/database", "operator": "In", "values": ["true"]}]
    [main] = spec["containers"]
    assert "initContainers" not in spec  # nothing runs as root; the lab prepares the directory
    assert {"startupProbe", "readinessProbe", "livenessProbe", "resources"} <= set(main)
    assert main["readinessProbe"]["exec"] != main["livenessProbe"]["exec"]
    assert "runAsUser" not in main.get("securityContext", {})  # the server runs as the Pod's uid 999
    env = {e["name"]: e for e in main["env"]}
    assert all("value" in env[n] and n.endswith("_FILE") for n in env if "PASSWORD" in n)
    assert env["MYSQL_ROOT_HOST"]["value"] == "localhost"  # no root@'%'
    pv = rendered[("PersistentVolume", "", "k8s-lab-database-data")]
    assert pv["metadata"]["annotations"]["k8s-lab/host-owner"] == "999:999"


def test_web_spreads_and_renders_from_the_downward_api(rendered):
    spec = pod_spec(rendered[("Deployment", NS, "web")])
    [spread] = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    [init] = spec["initContainers"]
    assert init["command"] == ["render-page"]
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in init["env"] if "valueFrom" in e}
    # The serving host too: the init container writes it, the Pod that serves the page is this one.
    assert fields == {"POD_NAME": "metadata.name", "POD_IP": "status.podIP", "NODE_NAME": "spec.nodeName",
                      "SERVING_HOST": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    nginx = spec["containers"][0]
    assert nginx["readinessProbe"]["httpGet"]["path"] == "/"  # the rendered page, not just nginx
    assert nginx["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_watcher_rbac_reads_pods_only(rendered):
    role = rendered[("Role", NS, "watcher-pod-reader")]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = rendered[("RoleBinding", NS, "watcher-pod-reader")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "watcher", "namespace": NS}]


def test_watcher_daemonset_runs_everywhere_as_nobody(rendered):
    spec = pod_spec(rendered[("DaemonSet", NS, "watcher")])
    assert spec["serviceAccountName"] == "watcher"
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
            "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    container = spec["containers"][0]
    assert container["image"] == "k8s-lab/watcher:1"
    assert container["command"] == ["k8s-lab-watcher"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert fields["NODE_NAME"] == "spec.nodeName"


def test_watcher_daemonset_needs_a_command_and_can_be_left_out(helm):
    result = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NS,
                      "--set-json", "watcher.daemonset.command=[]", check=False)
    assert result.returncode != 0 and "watcher.daemonset.command is required" in result.stderr
    objects = by_key(template(helm, "--set", "watcher.daemonset.command={python3,-m,watcher}"))
    assert pod_spec(objects[("DaemonSet", NS, "watcher")])["containers"][0]["command"] == ["python3", "-m", "watcher"]
    rbac_only = by_key(template(helm, "--set", "watcher.daemonset.enabled=false"))
    assert ("DaemonSet", NS, "watcher") not in rbac_only
    assert ("Role", NS, "watcher-pod-reader") in rbac_only


def test_each_layer_can_be_switched_off(helm):
    everything = by_key(template(helm))
    for layer, kinds in (("database", {"StatefulSet", "Secret"}), ("web", {"Deployment"}),
                         ("networkPolicy", {"NetworkPolicy"}), ("storage", {"PersistentVolume"}),
                         ("watcher", {"Role", "RoleBinding", "ServiceAccount", "DaemonSet"})):
        extra = ["--set", "backup.enabled=false"] if layer == "database" else []
        without = by_key(template(helm, "--set", f"{layer}.enabled=false", *extra))
        gone = {k[0] for k in set(everything) - set(without)}
        assert kinds <= gone, f"{layer}.enabled=false left {kinds - gone}"
    without_backup = by_key(template(helm, "--set", "backup.enabled=false"))
    assert not any(k[0] == "CronJob" for k in without_backup)


def test_backup_job_and_cronjob_run_the_same_pod():
    cronjob = yaml.safe_load((config.REPO_ROOT / "manifests/06-backup/cronjob.yaml").read_text())
    job = yaml.safe_load((config.REPO_ROOT / "manifests/06-backup/on-demand/backup-job.yaml").read_text())
    assert job["kind"] == "Job" and job["metadata"]["generateName"]
    assert job["spec"]["template"] == cronjob["spec"]["jobTemplate"]["spec"]["template"]
    spec = job["spec"]["template"]["spec"]
    assert spec["volumes"][0] == {"name": "backups", "persistentVolumeClaim": {"claimName": "database-backups"}}
    assert not any("hostPath" in v for v in spec["volumes"])
    script = spec["containers"][0]["command"][-1]
    assert script == (CHART / "files" / "backup.sh").read_text()
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["MYSQL_PWD"]["valueFrom"]["secretKeyRef"] == {"name": "database-credentials", "key": "backup-password"}
    assert env["DATABASE_USER"]["valueFrom"]["secretKeyRef"]["key"] == "backup-username"


def test_online_images_are_substituted(helm):
    subs = deploy.image_substitutions("online")
    assert subs["k8s-lab/mariadb:lab"] == "mysql:8.4"
    text = deploy.render_layer(config.REPO_ROOT / "manifests" / "02-database", "online")
    db = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "StatefulSet"][0]
    assert {c["image"] for c in containers(db)} == {"mysql:8.4"}
    assert deploy.render_layer(config.REPO_ROOT / "manifests" / "03-web", "online") == \
        deploy.render_layer(config.REPO_ROOT / "manifests" / "03-web", "offline")
    online = by_key(template(helm, *deploy.helm_image_args("online")))
    assert {c["image"] for c in containers(online[("StatefulSet", NS, "database")])} == {"mysql:8.4"}
    assert {c["image"] for c in containers(online[("CronJob", NS, "database-backup")])} == {"mysql:8.4"}


def test_substitute_images_touches_only_whole_container_image_references():
    text = """apiVersion: apps/v1
kind: Deployment
metadata: {name: a/b:1}
spec:
  template:
    spec:
      initContainers: [{name: init, image: a/b:1}]
      containers: [{name: c, image: a/b:10, env: [{name: image, value: a/b:1}]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: job}
spec: {jobTemplate: {spec: {template: {spec: {containers: [{name: c, image: a/b:1}]}}}}}
"""
    out = list(yaml.safe_load_all(deploy.substitute_images(text, {"a/b:1": "c:2"})))
    pod = out[0]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["image"] == "c:2"
    assert pod["containers"][0]["image"] == "a/b:10"  # a longer tag is another image
    assert pod["containers"][0]["env"][0]["value"] == "a/b:1" and out[0]["metadata"]["name"] == "a/b:1"
    assert out[1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] == "c:2"
    assert deploy.substitute_images(text, {"x:1": "y:2"}) is text


def test_redact():
    # deploy redacts through the one runner, whose marker is runner.REDACTED
    from lab import runner

    assert deploy.redact("pw=s3cret-value ok", {"s3cret-value"}) == f"pw={runner.REDACTED} ok"


# ------------------------------------------------------------------------------------ schema


@pytest.mark.parametrize("args, expected", [
    (["--set", "web.replicas=-1"], ["/web/replicas", "minimum"]),
    (["--set", "web.nodePort=abc"], ["/web/nodePort", "integer"]),
    (["--set-string", "web.nodePort=30080"], ["/web/nodePort", "integer"]),
    (["--set", "database.servicePort=db"], ["/database/servicePort", "integer"]),
    (["--set", "web.replica=3"], ["additional properties", "replica"]),
    (["--set", "colour=blue"], ["additional properties", "colour"]),
    (["--set", "web.image=k8s-lab/web"], ["/web/image", "does not match pattern"]),
    (["--set", "database.image=mysql"], ["/database/image", "does not match pattern"]),
    (["--set", "web.nodePort=80"], ["/web/nodePort", "minimum"]),
], ids=["negative-replicas", "non-numeric-nodeport", "string-nodeport", "non-numeric-db-port",
        "unknown-key", "unknown-top-level-key", "web-image-without-tag", "db-image-without-tag",
        "nodeport-out-of-range"])
def test_schema_rejects_bad_values(helm, args, expected):
    result = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NS, *args, check=False)
    assert result.returncode != 0, f"helm accepted {args}"
    message = result.stderr
    assert "values don't meet the specifications of the schema" in message, message
    for word in expected:
        assert word in message, f"{word!r} not in:\n{message}"


@pytest.mark.parametrize("image", ["localhost:5000/k8s-lab/web:2", "mysql:8.4", "k8s-lab/web:1@sha256:" + "a" * 64])
def test_schema_accepts_tagged_images(helm, image):
    run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NS, "--set", f"web.image={image}")


def test_helm_lint_strict_is_clean(helm):
    for extra in ([], ["--set", "namespace.create=true"]):
        result = run_helm(helm, "lint", "--strict", str(CHART), "--namespace", NS, *extra, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_notes_name_the_url_and_no_credentials(helm, tmp_path):
    # `helm template` leaves NOTES.txt out; render it through a ConfigMap in a copy of the chart.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "files" / "notes.tpl").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "notes-probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-probe\ndata:\n  notes: |\n"
        '    {{- tpl (.Files.Get "files/notes.tpl") . | nindent 4 }}\n')
    [probe] = [o for o in template(helm, "--show-only", "templates/notes-probe.yaml", chart=chart)]
    notes = probe["data"]["notes"]
    assert f"http://127.0.0.1:{config.WEB_NODEPORT}/" in notes
    assert "database-credentials" in notes
    for value in deploy._known_secrets(Target.of()):
        assert value not in notes


def test_backup_retention_prunes_only_the_cronjobs_own_dumps(tmp_path):
    """The backup directory is shared (lab backup writes k8s-lab-<db>-<stamp> files there too)."""
    script = (CHART / "files" / "backup.sh").read_text()
    prune = script[script.index("ls -1t /backups/"):]
    names = [f"k8s-lab-2026010{d}T020000Z.sql.gz" for d in range(1, 6)]
    metas = [n.replace(".sql.gz", ".meta.json") for n in names]
    others = ["k8s-lab-lab-20260101T020000Z.sql.gz", "k8s-lab-lab-20260101T020000Z.meta.json", "notes.txt"]
    for age, name in enumerate([*metas, *names, *others]):
        path = tmp_path / name
        path.write_text(name)
        os.utime(path, (1_700_000_000 + age * 60, 1_700_000_000 + age * 60))
    subprocess.run(["bash", "-c", "set -euo pipefail\n" + prune.replace("/backups/", f"{tmp_path}/")],
                   env={"BACKUP_KEEP": "2", "PATH": os.environ["PATH"]}, check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names[-2:], *metas[-2:], *others])


def test_without_storage_the_chart_claims_volumes_an_administrator_made(helm):
    """A classroom's student may not create PersistentVolumes: with storage.enabled=false the chart
    renders none, and still claims the database's (its StatefulSet) and the backups' volume."""
    objects = template(helm, "--set", "storage.enabled=false")
    assert not [o for o in objects if o["kind"] == "PersistentVolume"]
    claims = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    assert claims["database-backups"]["storageClassName"] == "manual"
    [database] = [o for o in objects if o["kind"] == "StatefulSet"]
    assert database["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "manual"


def test_a_classroom_student_may_change_every_policy_of_the_chart(helm):
    """helm upgrade patches the chart's NetworkPolicies: a classroom's Role names each one."""
    from lab.cluster import classroom

    names = {o["metadata"]["name"] for o in template(helm) if o["kind"] == "NetworkPolicy"}
    assert names == set(classroom.LAB_POLICY_NAMES)
