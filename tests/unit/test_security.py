"""Secure by default (issue 14), checked without a cluster: every Pod of the manifests and of the
rendered chart meets Pod Security "restricted", no password is committed, generated passwords
are per installation and kept, and host directories are prepared for the uid that uses them.
(tests/cluster/test_security.py checks the same against a real cluster.)
"""
from __future__ import annotations

import base64
import stat
import subprocess

import pytest
import yaml

from lab import config
from lab.system import credentials
from lab.system import deploy
from lab.system import hostdirs
from lab.target import Target

CHART = config.REPO_ROOT / "chart"
NS = config.NAMESPACE
# LAB_DATA_DIR (which these tests set) names the data directory of the lab's own cluster.
TARGET = Target.of(namespace=NS)


def manifest_documents() -> list[dict]:
    docs = []
    for path in sorted((config.REPO_ROOT / "manifests").rglob("*.yaml")):
        if "kind" not in path.parts:  # kind/cluster.yaml is not a Kubernetes object
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def chart_documents(helm, *args: str) -> list[dict]:
    out = subprocess.run([str(helm), "template", "k8s-lab", str(CHART), "--namespace", NS,
                          "--set", "namespace.create=true", *args],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pod_specs(documents: list[dict]) -> dict[str, dict]:
    """kind/name -> Pod spec of every workload, Job, CronJob and Pod."""
    specs = {}
    for doc in documents:
        kind, name = doc["kind"], doc["metadata"].get("name") or doc["metadata"].get("generateName")
        if kind == "Pod":
            specs[f"{kind}/{name}"] = doc["spec"]
        elif kind == "CronJob":
            specs[f"{kind}/{name}"] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs[f"{kind}/{name}"] = doc["spec"]["template"]["spec"]
    return specs


def restricted_violations(spec: dict) -> list[str]:
    """What Pod Security "restricted" (v1.34) refuses in a Pod spec, as a list of reasons."""
    found = []
    pod = spec.get("securityContext") or {}
    if (pod.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        found.append("pod: seccompProfile must be RuntimeDefault")
    for volume in spec.get("volumes") or []:
        allowed = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                   "projected", "secret"}
        if not set(volume) - {"name"} <= allowed:
            found.append(f"volume {volume['name']}: {sorted(set(volume) - {'name'})} is not allowed")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            found.append(f"pod: {flag}")
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        sc = c.get("securityContext") or {}
        non_root = sc.get("runAsNonRoot", pod.get("runAsNonRoot"))
        uid = sc.get("runAsUser", pod.get("runAsUser"))
        if non_root is not True or uid == 0:
            found.append(f"{c['name']}: must run as non-root")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{c['name']}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{c['name']}: must drop ALL capabilities")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{c['name']}: adds capabilities {caps['add']}")
        if sc.get("privileged"):
            found.append(f"{c['name']}: privileged")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            found.append(f"{c['name']}: hostPort")
    return found


def test_the_restricted_check_catches_what_the_old_pods_did():
    """The checker itself: the web and database Pods as they were before issue 14 fail it."""
    old_web = {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
               "containers": [{"name": "nginx", "securityContext": {"allowPrivilegeEscalation": False}}]}
    old_backup = {"securityContext": {"runAsNonRoot": True, "runAsUser": 999,
                                      "seccompProfile": {"type": "RuntimeDefault"}},
                  "initContainers": [{"name": "owner", "securityContext": {
                      "runAsNonRoot": False, "runAsUser": 0, "allowPrivilegeEscalation": False,
                      "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}}],
                  "containers": [{"name": "dump", "securityContext": {
                      "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
                  "volumes": [{"name": "backups", "hostPath": {"path": "/x"}}]}
    assert restricted_violations(old_web) == ["nginx: must run as non-root", "nginx: must drop ALL capabilities"]
    assert restricted_violations(old_backup) == [
        "volume backups: ['hostPath'] is not allowed", "owner: must run as non-root",
        "owner: adds capabilities ['CHOWN']"]


@pytest.mark.parametrize("source", ["manifests", "chart", "chart-online"])
def test_every_pod_meets_restricted(helm, source):
    if source == "manifests":
        documents = manifest_documents()
    else:
        documents = chart_documents(helm, "--set", "backup.beforeUpgrade=true",
                                    *(deploy.helm_image_args("online") if source == "chart-online" else []))
    specs = pod_specs(documents)
    assert {"Deployment/web", "StatefulSet/database", "DaemonSet/watcher", "CronJob/database-backup"} <= set(specs)
    if source != "manifests":
        assert {"Pod/web-and-database-test", "Job/database-backup-pre-upgrade"} <= set(specs)
    problems = {name: restricted_violations(spec) for name, spec in specs.items()}
    assert {k: v for k, v in problems.items() if v} == {}


@pytest.mark.parametrize("source", ["manifests", "chart"])
def test_the_namespace_enforces_restricted(helm, source):
    documents = manifest_documents() if source == "manifests" else chart_documents(helm)
    [namespace] = [d for d in documents if d["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_containers_have_read_only_root_filesystems(helm):
    for name, spec in pod_specs(chart_documents(helm, "--set", "backup.beforeUpgrade=true")).items():
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is True, f"{name}/{c['name']}"


def test_web_listens_unprivileged_behind_service_port_80(helm):
    objects = {(d["kind"], d["metadata"]["name"]): d for d in chart_documents(helm)}
    [nginx] = objects[("Deployment", "web")]["spec"]["template"]["spec"]["containers"]
    assert nginx["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    [port] = objects[("Service", "web")]["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["nodePort"]) == (80, "http", config.WEB_NODEPORT)
    assert (config.REPO_ROOT / "images" / "web" / "default.conf").read_text().count("listen 8080;") == 1


def test_web_rollouts_drain_before_the_pod_goes(helm):
    """Zero-downtime: a new Pod serves before an old one goes, an old one keeps serving until the
    Service has forgotten it, and a drain takes one Pod at a time."""
    objects = {(d["kind"], d["metadata"]["name"]): d for d in chart_documents(helm)}
    web = objects[("Deployment", "web")]
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spec = web["spec"]["template"]["spec"]
    [nginx] = spec["containers"]
    pause = nginx["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 3 <= pause < spec["terminationGracePeriodSeconds"]
    assert nginx["readinessProbe"]["httpGet"]["path"] == "/"
    pdb = objects[("PodDisruptionBudget", "web")]["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"] == web["spec"]["selector"]["matchLabels"]
    # nginx's graceful quit is SIGQUIT: the image's STOPSIGNAL.
    assert "STOPSIGNAL SIGQUIT" in (config.REPO_ROOT / "images" / "web" / "Dockerfile").read_text()


# ------------------------------------------------------------------------------ credentials


def test_no_password_is_committed():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    auth = values["database"]["auth"]
    assert not {"rootPassword", "password", "backupPassword"} & set(auth)
    [secret] = [d for d in manifest_documents() if d["kind"] == "Secret"]
    generated = credentials.generated_keys(secret)
    assert set(generated) == {"root-password", "password", "backup-password"}
    assert all(secret["stringData"][k] == "" for k in generated)
    assert set(secret["stringData"]) - set(generated) == {"username", "backup-username"}


def test_two_installations_get_different_passwords_and_each_keeps_its_own(tmp_path, monkeypatch):
    text = (config.REPO_ROOT / "manifests" / "02-database" / "secret.yaml").read_text()
    installed = []
    for machine in ("one", "two"):
        monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path / machine))
        first = yaml.safe_load(credentials.fill(text, TARGET))["stringData"]
        again = yaml.safe_load(credentials.fill(text, TARGET))["stringData"]
        assert first == again  # re-applied (a namespace drill, a redeploy): the same passwords
        assert all(len(first[k]) >= 32 for k in ("root-password", "password", "backup-password"))
        assert len({first["root-password"], first["password"], first["backup-password"]}) == 3
        path = credentials.credentials_file(TARGET)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        installed.append(first)
    assert installed[0]["root-password"] != installed[1]["root-password"]


def test_each_namespace_has_its_own_passwords(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path))
    assert credentials.passwords(Target.of(namespace="grade-alice")) != credentials.passwords(Target.of(namespace="grade-bob"))


def test_text_without_generated_secrets_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path))
    text = (config.REPO_ROOT / "manifests" / "03-web" / "service.yaml").read_text()
    assert credentials.fill(text, TARGET) is text
    assert not (tmp_path / "credentials").exists()


def test_a_broken_credentials_file_is_a_clear_error(tmp_path, monkeypatch):
    from lab.errors import LabError

    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path))
    path = credentials.credentials_file(TARGET)
    path.parent.mkdir(parents=True)
    for content in ("{not json", "5", '{"root-password": ""}'):
        path.write_text(content)
        with pytest.raises(LabError) as error:
            credentials.passwords(TARGET)
        assert str(path) in error.value.message


def test_helm_values_file_is_private_and_matches_the_manifests(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path))
    values = yaml.safe_load(credentials.helm_values_file(TARGET).read_text())["database"]["auth"]
    saved = credentials.passwords(TARGET)
    assert values == {"rootPassword": saved["root-password"], "password": saved["password"],
                      "backupPassword": saved["backup-password"]}
    assert stat.S_IMODE(credentials.helm_values_file(TARGET).stat().st_mode) == 0o600


def _chart_secret(helm, *args: str) -> dict[str, str]:
    [secret] = [d for d in chart_documents(helm, *args) if d["kind"] == "Secret"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_chart_generates_passwords_per_render_and_takes_given_ones(helm, tmp_path):
    first, second = _chart_secret(helm), _chart_secret(helm)
    assert first["root-password"] != second["root-password"]
    assert len(first["root-password"]) == 32 and first["username"] == "lab" and first["backup-username"] == "backup"
    given = tmp_path / "values.yaml"
    given.write_text(yaml.safe_dump({"database": {"auth": {"rootPassword": "a-long-root-password"}}}))
    assert _chart_secret(helm, "--values", str(given))["root-password"] == "a-long-root-password"


@pytest.mark.parametrize("value", ["", "short"])
def test_schema_rejects_empty_or_short_passwords(helm, value):
    for key in ("rootPassword", "password", "backupPassword"):
        result = subprocess.run([str(helm), "template", "k8s-lab", str(CHART), "--set-string",
                                 f"database.auth.{key}={value}"], capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and f"/database/auth/{key}" in result.stderr, result.stderr


def test_accounts_script_limits_the_application_and_backup_users():
    script = (CHART / "files" / "accounts.sh").read_text()
    sql = script.split("<<SQL\n", 1)[1].split("\nSQL\n", 1)[0]
    sql = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).replace("\\`", "`")
    statements = [s.split() for s in sql.split(";") if s.strip()]

    def grant(user: str) -> tuple[list[str], str]:
        [words] = [w for w in statements if w[0] == "GRANT" and w[-1].startswith(user)]
        text = " ".join(words[1:])
        privileges, scope = text.split(" ON ")[0], text.split(" ON ")[1].split(" TO ")[0]
        return sorted(p.strip() for p in privileges.split(",")), scope

    assert ["REVOKE", "ALL", "PRIVILEGES", "ON", "`${MYSQL_DATABASE}`.*", "FROM", "${app_user}@'%'"] in statements
    privileges, scope = grant("${app_user}")
    assert scope == "`${MYSQL_DATABASE}`.*" and "DROP" not in privileges and "GRANT OPTION" not in privileges
    privileges, scope = grant("${backup_user}")
    assert (privileges, scope) == (["EVENT", "LOCK TABLES", "SELECT", "SHOW VIEW", "TRIGGER"], "*.*")


# ------------------------------------------------------------------------------ host dirs


def test_host_directories_of_the_volumes_are_prepared_for_their_uid(helm):
    for documents in (manifest_documents(), chart_documents(helm)):
        wanted = sorted(hostdirs.wanted(documents))
        assert wanted == [("/var/local/k8s-lab/backups", "999:999", "0755"),
                          ("/var/local/k8s-lab/pv/database", "999:999", "0750")]
    script = hostdirs.script([("/var/local/k8s-lab/pv/database", "999:999", "0750")])
    assert script == ("mkdir -p /var/local/k8s-lab/pv/database && chown 999:999 /var/local/k8s-lab/pv/database"
                      " && chmod 0750 /var/local/k8s-lab/pv/database")


@pytest.mark.parametrize("annotations, path, message", [
    ({"k8s-lab/host-owner": "mysql"}, "/var/local/k8s-lab/x", "is not uid:gid"),
    ({"k8s-lab/host-owner": "1:1", "k8s-lab/host-mode": "rwx"}, "/var/local/k8s-lab/x", "not an octal mode"),
    ({"k8s-lab/host-owner": "1:1"}, "/etc", "outside /var/local/k8s-lab"),
    ({"k8s-lab/host-owner": "1:1"}, "/var/local/k8s-lab/../../etc", "outside /var/local/k8s-lab"),
])
def test_host_directory_annotations_are_checked(annotations, path, message):
    from lab.errors import LabError

    pv = {"kind": "PersistentVolume", "metadata": {"name": "pv", "annotations": annotations},
          "spec": {"hostPath": {"path": path}}}
    with pytest.raises(LabError, match=message):
        hostdirs.wanted([pv])
