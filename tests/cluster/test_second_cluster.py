"""One way to the cluster: every command and notebook pointed at a second kind cluster acts there
and only there. The lab's own cluster is compared before and after: the same objects (UIDs and
generations), no container restarted, no new Job, no new backup file.

The second cluster is small (one node) and deleted at the end.
"""
from __future__ import annotations

import json
import shutil

import pytest
from kubernetes import client

from lab.cluster import kube
from lab.ops import backup
from lab.target import Target
from tests.support import TARGET, lab_cli, say

pytestmark = pytest.mark.cluster

SECOND = Target("k8s-lab-b")
NOTEBOOK_NAMESPACE = "second-nb"


def ok(result, what: str):
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def state_of(target: Target) -> dict:
    """What a command aimed elsewhere must not change: workloads, Services, ConfigMaps, Secrets
    and PersistentVolumes by UID and generation; every container's restart count; every Job;
    the backup files in the cluster's data directory."""
    core, apps = kube.core(target), kube.apps(target)
    batch = client.BatchV1Api(kube.api_client(target))
    objects = {}
    for kind, items in (("Deployment", apps.list_deployment_for_all_namespaces().items),
                        ("StatefulSet", apps.list_stateful_set_for_all_namespaces().items),
                        ("DaemonSet", apps.list_daemon_set_for_all_namespaces().items),
                        ("Service", core.list_service_for_all_namespaces().items),
                        ("ConfigMap", core.list_config_map_for_all_namespaces().items),
                        ("Secret", core.list_secret_for_all_namespaces().items),
                        ("PersistentVolume", core.list_persistent_volume().items),
                        ("Namespace", core.list_namespace().items)):
        for obj in items:
            objects[(kind, obj.metadata.namespace, obj.metadata.name)] = (obj.metadata.uid, obj.metadata.generation)
    restarts = {(p.metadata.namespace, p.metadata.name, c.name): c.restart_count
                for p in core.list_pod_for_all_namespaces().items
                for c in (p.status.container_statuses or [])}
    jobs = sorted((j.metadata.namespace, j.metadata.name) for j in batch.list_job_for_all_namespaces().items)
    backups = sorted(p.name for p in backup.backup_dir(target).glob("*"))
    return {"objects": objects, "restarts": restarts, "jobs": jobs, "backups": backups}


@pytest.fixture(scope="module")
def second_cluster():
    # The lab's system runs on its own cluster, so that there is something to leave alone (installed
    # afresh: an earlier module may have left objects that another method applied).
    ok(lab_cli("deploy", "--delete", "--cluster", TARGET.cluster, timeout=900), "lab deploy --delete on the lab's cluster")
    ok(lab_cli("deploy", "--cluster", TARGET.cluster, timeout=900), "lab deploy on the lab's cluster")
    before = state_of(TARGET)
    say("creating the second cluster k8s-lab-b (one node)")
    # The second cluster's own data directory (volumes, backups, credentials) starts empty.
    shutil.rmtree(SECOND.data_dir, ignore_errors=True)
    try:
        ok(lab_cli("cluster", "up", env={"LAB_CLUSTER": SECOND.cluster}, timeout=900), "LAB_CLUSTER=k8s-lab-b lab cluster up")
        ok(lab_cli("images", "build", "--cluster", SECOND.cluster, timeout=1800), "lab images build --cluster k8s-lab-b")
        yield before
    finally:
        say("deleting k8s-lab-b")
        lab_cli("cluster", "down", "--cluster", SECOND.cluster, timeout=300)


def test_a_missing_cluster_is_named_in_one_line():
    result = lab_cli("probe", "--cluster", "no-such-cluster")
    assert result.returncode == 1
    assert "no kubeconfig context 'kind-no-such-cluster'" in result.stderr
    assert "LAB_CLUSTER=no-such-cluster lab cluster up" in result.stderr
    assert "Traceback" not in result.stderr


def test_commands_and_notebooks_act_on_the_second_cluster_only(second_cluster, tmp_path):
    before = second_cluster
    at = ("--cluster", SECOND.cluster)
    ok(lab_cli("deploy", *at, timeout=1200), "lab deploy --cluster k8s-lab-b")
    assert kube.apps(SECOND).read_namespaced_deployment("web", SECOND.namespace).status.ready_replicas == 3

    matrix = json.loads(ok(lab_cli("probe", *at, "-o", "json", timeout=600), "lab probe --cluster").stdout)
    assert matrix and all(cell["correct"] for cell in matrix)
    second_web = {p.metadata.name for p in kube.core(SECOND).list_namespaced_pod(
        SECOND.namespace, label_selector="app.kubernetes.io/component=web").items}
    assert {cell["source"] for cell in matrix} & second_web  # probed from the second cluster's Pods

    events = json.loads(ok(lab_cli("events", *at, "-o", "json"), "lab events --cluster").stdout)
    assert second_web <= {row["pod"] for row in events}

    ok(lab_cli("backup", "create", *at, timeout=600), "lab backup create --cluster")
    ok(lab_cli("backup", "verify", "latest", *at, timeout=600), "lab backup verify --cluster")
    listed = json.loads(ok(lab_cli("backup", "list", *at, "-o", "json"), "lab backup list --cluster").stdout)
    assert len(listed) == 1 and backup.backup_dir(SECOND) != backup.backup_dir(TARGET)

    # The reference notebooks (with their solutions), with the cluster and another namespace as parameters.
    ok(lab_cli("run", "03", "--notebooks-dir", "reference", "--out", str(tmp_path / "run"),
               "-p", f"cluster={SECOND.cluster}",
               "-p", f"namespace={NOTEBOOK_NAMESPACE}", timeout=1800), "lab run 00..03 on k8s-lab-b")
    assert kube.core(SECOND).read_namespace(NOTEBOOK_NAMESPACE).status.phase == "Active"
    assert NOTEBOOK_NAMESPACE not in {ns.metadata.name for ns in kube.core(TARGET).list_namespace().items}
    records = [json.dumps(output) for nb in (tmp_path / "run").glob("0[0-3]-*.ipynb")
               for cell in json.loads(nb.read_text())["cells"] for output in cell.get("outputs", [])
               if "application/vnd.k8s-lab.checkpoint+json" in output.get("data", {})]
    assert records and all(SECOND.kube_context in r for r in records)  # every checkpoint looked at k8s-lab-b

    after = state_of(TARGET)
    assert after["objects"] == before["objects"]
    assert after["restarts"] == before["restarts"]
    assert after["jobs"] == before["jobs"]
    assert after["backups"] == before["backups"]
