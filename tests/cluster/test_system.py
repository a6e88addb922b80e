"""The deployed lab system on the real kind cluster (issue 4).

The module installs the system itself with lab.system.deploy (Helm first, then the plain manifests) and
removes it at the end; the host's data directory (database files, backups) is kept. The tests
run in file order and share the deployment: run with -x.

Set LAB_IMAGE_MODE=offline|online to choose the images (default: auto).
"""
from __future__ import annotations

import base64
import collections
import functools
import gzip
import json
import os
import re
import time
import urllib.request
import uuid

import pytest

from lab import config
from lab.cluster import kind, kube
from lab.system import deploy
from tests.support import TARGET, deployed, helm, kubectl, lab_cli, say

pytestmark = pytest.mark.cluster

NS = TARGET.namespace  # the lab's namespace: this module installs the system itself
MODE = os.environ.get("LAB_IMAGE_MODE") or "auto"
CREDENTIALS = "/etc/k8s-lab/database-credentials"
_META = re.compile(r'<meta name="([a-z-]+)" content="([^"]*)">')


def restricted_overrides(container: str) -> str:
    """For `kubectl run` in the namespace, which enforces Pod Security "restricted"."""
    return json.dumps({"spec": {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": container, "securityContext": {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}})


# ------------------------------------------------------------------------------------ helpers


@functools.cache
def web_url() -> str:
    """The web NodePort where this host reaches it (kind's port mapping of the cluster under test)."""
    return f"http://127.0.0.1:{kind.web_host_port(TARGET)}/"


def credentials() -> dict[str, str]:
    secret = kube.core(TARGET).read_namespaced_secret("database-credentials", NS)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def sql(query: str, database: str = "lab") -> str:
    """Run SQL as root inside database-0 (password from the mounted Secret, never on a command line)."""
    script = (f'MYSQL_PWD="$(cat {CREDENTIALS}/root-password)" exec mysql -uroot --batch '
              '--skip-column-names -D "$1" -e "$2"')
    return kubectl("exec", "-n", NS, "database-0", "-c", "database", "--", "sh", "-c", script, "sql",
                   database, query).stdout


def web_pods() -> dict[str, dict]:
    """Ready web Pods: name -> {ip, node}."""
    pods = kube.core(TARGET).list_namespaced_pod(
        NS, label_selector="app.kubernetes.io/component=web,app.kubernetes.io/instance=k8s-lab").items
    return {p.metadata.name: {"ip": p.status.pod_ip, "node": p.spec.node_name} for p in pods
            if p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])}


def fetch(url: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """One fresh connection: (the page's <meta> fields, response headers)."""
    request = urllib.request.Request(url or web_url(), headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read().decode()
        headers = {k.lower(): v for k, v in response.headers.items()}
    return dict(_META.findall(body)), headers


def spread(n: int = 30) -> tuple[collections.Counter, list[dict[str, str]]]:
    """n requests to the NodePort, once it routes to every ready web Pod: EndpointSlices and
    kube-proxy follow a rollout by a moment, and `lab deploy` returns when the Pods are Ready."""
    ready = {p["ip"] for p in web_pods().values()}

    def sample():
        pages = [fetch()[0] for _ in range(n)]
        counts = collections.Counter(p["pod-ip"] for p in pages)
        return (counts, pages) if set(counts) == ready else None

    return kube.wait_until(sample, 30, interval=1,
                           what=f"{n} requests to reach all of {sorted(ready)}")


# ------------------------------------------------------------------------------------ the system


@pytest.fixture(scope="module")
def system():
    """The system installed with Helm; removed (host files kept) when the module is done."""
    with deployed("helm", MODE) as result:
        yield {"install_seconds": result.seconds, "result": result}


def assert_a_watcher_on_every_node():
    watchers = kube.apps(TARGET).read_namespaced_daemon_set("watcher", NS).status
    nodes = len(kube.core(TARGET).list_node().items)
    assert watchers.desired_number_scheduled == watchers.number_ready == nodes, \
        f"watcher DaemonSet: {watchers.number_ready} of {watchers.desired_number_scheduled} Pods ready on {nodes} nodes"


def test_helm_install_makes_everything_ready(system):
    assert deploy.problems(TARGET) == []
    core, apps = kube.core(TARGET), kube.apps(TARGET)
    assert apps.read_namespaced_deployment("web", NS).status.ready_replicas == 3
    assert apps.read_namespaced_stateful_set("database", NS).status.ready_replicas == 1
    pvc = core.read_namespaced_persistent_volume_claim("data-database-0", NS)
    assert pvc.status.phase == "Bound" and pvc.spec.volume_name == "k8s-lab-database-data"
    pods = core.list_namespaced_pod(NS).items
    running = [p for p in pods if p.status.phase == "Running"]
    assert running and all(any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)
                            for p in running)
    database = core.read_namespaced_pod("database-0", NS)
    node = core.read_node(database.spec.node_name)
    assert node.metadata.labels.get("k8s-lab/database") == "true"
    assert_a_watcher_on_every_node()
    release = helm("status", deploy.RELEASE, "--namespace", NS, "--output", "json").stdout
    assert '"status":"deployed"' in release.replace(" ", "")
    say(f"ready: {deploy.summary(TARGET)}; install took {system['install_seconds']:.1f}s")


def test_helm_test_hook_passes(system):
    result = helm("test", deploy.RELEASE, "--namespace", NS, "--logs", "--timeout", "180s")
    assert "all checks passed" in result.stdout, result.stdout
    assert "Phase:          Succeeded" in result.stdout or "Succeeded" in result.stdout


def test_thirty_requests_reach_all_three_pods(system):
    pods = web_pods()
    assert len(pods) == 3
    counts, pages = spread(30)
    say("30 requests to " + web_url() + ": "
        + ", ".join(f"{ip}={n}" for ip, n in sorted(counts.items())))
    assert set(counts) == {p["ip"] for p in pods.values()}
    for page in pages:  # every page describes the Pod that served it
        pod = pods[page["pod-name"]]
        assert page["pod-ip"] == pod["ip"] and page["node-name"] == pod["node"]
        assert page["serving-host"] == page["pod-name"]
        assert page["pod-namespace"] == NS
    _, headers = fetch()
    assert "no-store" in headers["cache-control"]


def test_a_row_survives_the_deletion_of_its_pod(system):
    token = uuid.uuid4().hex
    system["token"] = token
    sql("CREATE TABLE IF NOT EXISTS survival (id INT AUTO_INCREMENT PRIMARY KEY, token CHAR(32) NOT NULL)")
    sql(f"INSERT INTO survival (token) VALUES ('{token}')")
    assert token in sql("SELECT token FROM survival")
    core = kube.core(TARGET)
    old_uid = core.read_namespaced_pod("database-0", NS).metadata.uid
    start = time.monotonic()
    core.delete_namespaced_pod("database-0", NS)

    def replaced_and_ready():
        try:
            pod = core.read_namespaced_pod("database-0", NS)
        except Exception:  # noqa: BLE001 - not recreated yet
            return False
        return pod.metadata.uid != old_uid and any(
            c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])

    kube.wait_until(replaced_and_ready, 300, what="database-0 to come back Ready")
    say(f"database-0 deleted and back Ready in {time.monotonic() - start:.1f}s")
    assert token in sql("SELECT token FROM survival")
    datadir = TARGET.data_dir / "pv" / "database"
    assert (datadir / "lab").is_dir(), f"the schema's files should be on the host in {datadir}"


def test_backup_job_writes_a_dump_to_the_host(system):
    backups = TARGET.data_dir / "backups"
    before = set(backups.glob("k8s-lab-*.sql.gz")) if backups.is_dir() else set()
    name = f"backup-test-{uuid.uuid4().hex[:6]}"
    kubectl("create", "job", "-n", NS, "--from=cronjob/database-backup", name)
    result = kubectl("wait", "-n", NS, "--for=condition=Complete", f"job/{name}", "--timeout=240s",
                     check=False, timeout=260)
    if result.returncode != 0:
        logs = kubectl("logs", "-n", NS, f"job/{name}", "--all-containers", check=False)
        pytest.fail(f"backup job {name} did not complete:\n{result.stderr}\n{logs.stdout}{logs.stderr}")
    new = sorted(set(backups.glob("k8s-lab-*.sql.gz")) - before)
    assert new, f"no new dump in {backups}"
    dump = gzip.decompress(new[-1].read_bytes()).decode(errors="replace")
    assert system.get("token", "survival") in dump
    say(f"backup {new[-1].name}: {new[-1].stat().st_size} bytes")
    kubectl("delete", "job", "-n", NS, name, "--wait=false")


def _web_rollout_done(replicas: int, exclude: set[str] = frozenset()):
    def check():
        d = kube.apps(TARGET).read_namespaced_deployment("web", NS)
        pods = web_pods()
        return (d.status.observed_generation >= d.metadata.generation
                and (d.status.updated_replicas or 0) == replicas and (d.status.ready_replicas or 0) == replicas
                and (d.status.replicas or 0) == replicas and len(pods) == replicas
                and not (set(pods) & exclude)) and pods
    return check


def test_helm_upgrade_rolls_out_replicas_and_nginx_config(system, tmp_path):
    start = time.monotonic()
    deploy.deploy(TARGET, "helm", mode=MODE, helm_args=["--set", "web.replicas=2"])
    kube.wait_until(_web_rollout_done(2), 120, what="2 web replicas")
    say(f"upgrade to 2 replicas: {time.monotonic() - start:.1f}s")

    before = set(web_pods())
    config_file = tmp_path / "default.conf"
    original = (config.REPO_ROOT / "chart" / "files" / "default.conf").read_text()
    config_file.write_text(original.replace("add_header X-Served-By $hostname always;",
                                            "add_header X-Served-By $hostname always;\n"
                                            "    add_header X-Lab-Config v2 always;"))
    start = time.monotonic()
    deploy.deploy(TARGET, "helm", mode=MODE, helm_args=["--set-file", f"web.nginxConfig={config_file}"])
    pods = kube.wait_until(_web_rollout_done(3, exclude=before), 180,
                           what="web Pods replaced with the new config")
    say(f"upgrade of nginx config (and back to 3 replicas): {time.monotonic() - start:.1f}s, "
        f"new pods {sorted(pods)}")
    # The old Pods serve on through their graceful shutdown until every node's kube-proxy has
    # dropped them (about a second, more on a busy 3-node cluster): then only the new config answers.
    kube.wait_until(lambda: all(fetch()[1].get("x-lab-config") == "v2" for _ in range(6)), 30,
                    what="six requests in a row answered with the new nginx config")
    system["upgraded_pods"] = set(pods)


def test_helm_rollback_restores(system):
    history = json.loads(helm("history", deploy.RELEASE, "--namespace", NS, "--output", "json").stdout)
    say("helm history before rollback: " + ", ".join(f"{h['revision']} {h['status']}" for h in history))
    assert [h["revision"] for h in history][:3] == [1, 2, 3]
    start = time.monotonic()
    deploy.helm_rollback(TARGET, 1)
    kube.wait_until(_web_rollout_done(3, exclude=system.get("upgraded_pods", set())), 180,
                    what="web Pods back on the original config")
    say(f"helm rollback to revision 1: {time.monotonic() - start:.1f}s")
    for _ in range(6):
        _, headers = fetch()
        assert "x-lab-config" not in headers
    configmap = kube.core(TARGET).read_namespaced_config_map("web-nginx", NS)
    assert configmap.data["default.conf"] == (config.REPO_ROOT / "chart/files/default.conf").read_text()
    counts, _ = spread(30)
    assert len(counts) == 3


def test_a_failed_rollout_names_the_object_and_how_to_look(system):
    """An nginx config that nginx rejects: lab deploy says which object and Pod, and how to look."""
    from lab.errors import LabError

    with pytest.raises(LabError) as caught:
        deploy.deploy(TARGET, "helm", mode=MODE, timeout=40,
                      helm_args=["--set-string", "web.nginxConfig=this is not an nginx config"])
    error = caught.value
    say(f"failed rollout reported as: {error.message.splitlines()[0][:300]}")
    assert "deployment/web did not become ready" in error.message
    assert "container nginx" in error.message
    assert "describe deployment/web" in error.hint and "logs web-" in error.hint
    assert len(web_pods()) == 3  # maxUnavailable 0: the old Pods keep serving
    fetch()


def test_watcher_service_account_can_read_pods_but_not_secrets(system):
    who = f"system:serviceaccount:{NS}:watcher"

    def can(verb: str, resource: str, namespace: str = NS) -> str:
        return kubectl("auth", "can-i", verb, resource, "-n", namespace, "--as", who, check=False).stdout.strip()

    answers = {(v, r): can(v, r) for v, r in (("get", "secrets"), ("list", "secrets"), ("watch", "secrets"),
                                              ("get", "pods"), ("list", "pods"), ("watch", "pods"),
                                              ("delete", "pods"), ("create", "pods"), ("get", "configmaps"))}
    answers[("list", "pods in kube-system")] = can("list", "pods", "kube-system")
    say(f"can-i as {who}: {answers}")
    assert answers == {("get", "secrets"): "no", ("list", "secrets"): "no", ("watch", "secrets"): "no",
                       ("get", "pods"): "yes", ("list", "pods"): "yes", ("watch", "pods"): "yes",
                       ("delete", "pods"): "no", ("create", "pods"): "no", ("get", "configmaps"): "no",
                       ("list", "pods in kube-system"): "no"}


def test_no_credential_in_config_maps_or_in_lab_deploy_output(system):
    secrets = {v for k, v in credentials().items() if not k.endswith("username")}
    assert len(secrets) == 3 and all(len(v) >= 12 for v in secrets)
    for cm in kube.core(TARGET).list_namespaced_config_map(NS).items:
        text = "\n".join([*(cm.data or {}).values(), *(str(v) for v in (cm.metadata.annotations or {}).values())])
        assert not any(s in text for s in secrets), f"a credential is in ConfigMap {cm.metadata.name}"
    result = lab_cli("deploy", "--helm", *mode_flag())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "lab system deployed" in output
    assert not any(s in output for s in secrets), "lab deploy printed a credential"


def mode_flag() -> list[str]:
    return {"online": ["--online"], "offline": ["--offline"]}.get(MODE, [])


# ------------------------------------------------------------------------------------ manifests


def test_manifests_pass_a_server_side_dry_run(system):
    """With the namespace there but empty, every layer is accepted by the API server as is."""
    deploy.undeploy(TARGET, "helm")
    kubectl("apply", "-f", "-", stdin=deploy.render_layer(deploy.layers()[0], MODE))
    problems = []
    for layer in deploy.layers():
        result = kubectl("apply", "--dry-run=server", "-f", "-", stdin=deploy.render_layer(layer, MODE),
                         check=False)
        if result.returncode != 0 or result.stderr.strip():
            problems.append(f"{layer.name}: exit {result.returncode}\n{result.stderr}")
        else:
            assert "(server dry run)" in result.stdout
    assert not problems, "\n".join(problems)
    on_demand = config.REPO_ROOT / "manifests/06-backup/on-demand/backup-job.yaml"
    result = kubectl("create", "--dry-run=server", "-f", str(on_demand), check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_lab_deploy_with_manifests_is_ready_and_keeps_the_data(system):
    start = time.monotonic()
    result = lab_cli("deploy", "--manifests", *mode_flag())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    say(f"lab deploy --manifests (kubectl apply per layer + wait): {time.monotonic() - start:.1f}s")
    for layer in deploy.layers():
        assert f"manifests/{layer.name}" in output
    secrets = {v for k, v in credentials().items() if not k.endswith("username")}
    assert not any(s in output for s in secrets), "lab deploy printed a credential"
    assert deploy.installed_method(TARGET) == "manifests"
    assert deploy.problems(TARGET) == []
    counts, _ = spread(30)
    say("30 requests (manifests): " + ", ".join(f"{ip}={n}" for ip, n in sorted(counts.items())))
    assert len(counts) == 3
    if "token" in system:  # the database files on the host outlived the Helm release
        assert system["token"] in sql("SELECT token FROM survival")
    rerun = lab_cli("deploy", "--manifests", *mode_flag())  # idempotent
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "created" not in rerun.stderr.replace("database-backup", "")


def test_deploy_refuses_to_mix_methods(system):
    from lab.errors import LabError

    with pytest.raises(LabError, match="already deployed .* with manifests"):
        deploy.deploy(TARGET, "helm", mode=MODE)


def test_network_policy_admits_web_pods_only(system):
    """A Pod without the web labels cannot open the database's port; a web-labelled one can.

    (Runs late, against the manifests deployment: it needs the CNI to enforce NetworkPolicy.)
    """
    from lab.build import images

    probe = images.image_names(MODE)["probe"]
    outcomes = {}
    for name, labels in (("probe-outsider", "app.kubernetes.io/component=outsider"),
                         ("probe-web-peer", "app.kubernetes.io/name=k8s-lab,app.kubernetes.io/component=web")):
        kubectl("delete", "pod", name, "-n", NS, "--ignore-not-found", "--wait=true")
        kubectl("run", name, "-n", NS, f"--image={probe}", "--image-pull-policy=IfNotPresent",
                f"--labels={labels}", "--restart=Never", "--override-type=strategic",
                f"--overrides={restricted_overrides(name)}",
                "--command", "--", "sleep", "300")
        kubectl("wait", "-n", NS, "--for=condition=Ready", f"pod/{name}", "--timeout=120s", timeout=150)
        result = kubectl("exec", "-n", NS, name, "--", "probe-tcp", "database", str(config.DB_PORT), "4",
                         check=False)
        outcomes[name] = result.stdout.strip()
        kubectl("delete", "pod", name, "-n", NS, "--wait=false")
    say(f"database:3306 from {outcomes}")
    assert outcomes == {"probe-outsider": "timeout", "probe-web-peer": "connected"}


def test_lab_deploy_delete_removes_everything_but_host_files(system):
    result = lab_cli("deploy", "--delete")
    assert result.returncode == 0, result.stdout + result.stderr
    assert deploy.installed_method(TARGET) is None
    pvs = [pv.metadata.name for pv in kube.core(TARGET).list_persistent_volume().items]
    assert "k8s-lab-database-data" not in pvs
    assert (TARGET.data_dir / "pv" / "database").is_dir()
