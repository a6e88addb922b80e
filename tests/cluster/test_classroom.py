"""A classroom of three students on the real cluster (issue 13).

One module-scoped classroom (`lab classroom up` for ann, bob and cyd; removed at the end). Each
student acts with their own kubeconfig, as in class. Proves that ann cannot get, list or delete
anything in bob's namespace (Secrets included), cannot create cluster-scoped objects or lift her
quota or isolation, and cannot reach bob's database port over the network while bob can; that
`lab grade --execute` runs a submission with the student's limited kubeconfig and grades it from
the grader's own checks (a check monkeypatched inside the kernel earns nothing); and that
`lab grade --live --roster` grades all three after two of them installed the lab system in
parallel with their own kubeconfigs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
import pandas as pd
import pytest

from lab import config
from lab.cluster import classroom
from lab.cluster import kube
from lab.host import tools
from tests.support import TARGET, lab_cli, say

pytestmark = pytest.mark.cluster

IDS = ("ann", "bob", "cyd")
PROBE = "k8s-lab/probe:1"


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    root = tmp_path_factory.mktemp("classroom")
    (root / "roster.csv").write_text("student,name,email\n" + "".join(f"{i},{i.title()},{i}@example.org\n" for i in IDS))
    assert lab_cli("classroom", "down", "--yes").returncode == 0  # a crashed earlier run's classroom
    # An earlier classroom's ann left her database files (and so her passwords) on the host.
    leftover = ann_volume_directory() / "ibdata1"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_text("an earlier database")
    say("lab classroom up for ann, bob, cyd")
    result = lab_cli("classroom", "up", str(root / "roster.csv"), "--out", str(root / "out"))
    assert result.returncode == 0, result.stderr + result.stdout
    yield root
    say("lab classroom down")
    result = lab_cli("classroom", "down", "--yes", "--no-wait")  # the namespaces go away while other tests run
    assert result.returncode == 0, result.stderr + result.stdout


def ann_volume_directory():
    pv = next(d for d in classroom.objects(classroom.Student("ann")) if d["kind"] == "PersistentVolume")
    return classroom.host_directory(pv, TARGET)


def test_a_new_student_volume_starts_empty(room):
    """Otherwise ann's new database would find an old one's files and refuse her new password."""
    assert list(ann_volume_directory().iterdir()) == []


def as_student(room, student: str, *args: str, stdin: str | None = None, timeout: float = 120):
    """kubectl with nothing but the student's kubeconfig."""
    return subprocess.run([str(tools.ensure("kubectl")), "--kubeconfig", str(room / "out" / student / "kubeconfig"),
                           *args], input=stdin, capture_output=True, text=True, timeout=timeout)


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def forbidden(result) -> bool:
    return result.returncode != 0 and ("Forbidden" in result.stderr or "forbidden" in result.stderr)


DATABASE = """
apiVersion: v1
kind: Secret
metadata: {{name: db-credentials}}
stringData: {{password: bobs-secret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: database, labels: {{app: database}}}}
spec:
  containers:
    - name: db
      image: {image}
      imagePullPolicy: IfNotPresent
      command: ["nc", "-lk", "3306"]
      ports: [{{containerPort: 3306}}]
---
apiVersion: v1
kind: Service
metadata: {{name: database}}
spec:
  selector: {{app: database}}
  ports: [{{port: 3306}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  containers: [{{name: probe, image: {image}, imagePullPolicy: IfNotPresent}}]
"""


@pytest.fixture(scope="module")
def bobs_database(room):
    """bob's database (a TCP listener on 3306 behind a Service) and a client Pod in each namespace."""
    for student in IDS[:2]:
        manifest = DATABASE.format(image=PROBE) if student == "bob" else DATABASE.format(image=PROBE).split("---")[-1]
        ok(as_student(room, student, "apply", "-f", "-", stdin=manifest))
    for student in IDS[:2]:
        ok(as_student(room, student, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=180s", timeout=200))
    return room


def test_a_student_cannot_read_list_or_delete_anything_of_another(room):
    for verb in (("get", "secret", "db-credentials"), ("get", "secrets"), ("get", "pods"), ("get", "configmaps"),
                 ("get", "services"), ("get", "resourcequota"), ("delete", "secret", "db-credentials"),
                 ("delete", "pods", "--all"), ("create", "configmap", "x", "--from-literal=a=b")):
        result = as_student(room, "ann", "-n", "student-bob", *verb)
        assert forbidden(result), (verb, result.stdout, result.stderr)
    can = as_student(room, "ann", "auth", "can-i", "--list", "-n", "student-bob")
    assert "secrets" not in can.stdout and "pods" not in can.stdout
    assert "secrets" in as_student(room, "bob", "auth", "can-i", "--list", "-n", "student-bob").stdout


def test_a_student_cannot_create_cluster_scoped_objects_or_lift_the_classroom_limits(room):
    for args in (("create", "namespace", "ann-extra"),
                 ("create", "clusterrole", "ann-admin", "--verb=*", "--resource=*"),
                 ("create", "clusterrolebinding", "ann-admin", "--clusterrole=cluster-admin", "--serviceaccount=student-ann:student"),
                 ("label", "node", "--all", "owned=ann"),
                 ("delete", "persistentvolume", "k8s-lab-database-data-student-bob"),
                 ("-n", "student-ann", "delete", "resourcequota", "classroom-quota"),
                 ("-n", "student-ann", "delete", "networkpolicy", "classroom-isolation"),
                 ("-n", "student-ann", "create", "rolebinding", "ann-admin", "--clusterrole=admin",
                  "--serviceaccount=student-ann:student")):
        result = as_student(room, "ann", *args)
        assert forbidden(result), (args, result.stdout, result.stderr)
    # what the lab's checks read outside the namespace is readable, and nothing more
    assert as_student(room, "ann", "get", "nodes").returncode == 0
    assert as_student(room, "ann", "get", "namespace", "kube-system").returncode == 0
    assert forbidden(as_student(room, "ann", "get", "namespace", "student-bob"))
    assert forbidden(as_student(room, "ann", "get", "persistentvolume", "k8s-lab-database-data-student-bob"))
    assert as_student(room, "ann", "get", "persistentvolume", "k8s-lab-database-data-student-ann").returncode == 0


def test_a_privileged_or_hostpath_pod_is_refused_by_pod_security(room):
    pod = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "escape"},
                      "spec": {"containers": [{"name": "c", "image": PROBE, "securityContext": {"privileged": True}}],
                               "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}})
    result = as_student(room, "ann", "apply", "-f", "-", stdin=pod)
    assert result.returncode != 0 and "violates PodSecurity" in result.stderr


def test_a_student_cannot_reach_another_students_database(bobs_database):
    room = bobs_database
    target = "database.student-bob.svc.cluster.local"
    bob = as_student(room, "bob", "exec", "client", "--", "probe-tcp", target, "3306", "3")
    assert bob.stdout.strip() == "connected", bob.stderr
    ann = as_student(room, "ann", "exec", "client", "--", "probe-tcp", target, "3306", "3")
    assert ann.stdout.strip() == "timeout", ann.stdout + ann.stderr
    pod_ip = kube.core(TARGET).read_namespaced_pod("database", "student-bob").status.pod_ip
    direct = as_student(room, "ann", "exec", "client", "--", "probe-tcp", pod_ip, "3306", "3")
    assert direct.stdout.strip() == "timeout", direct.stdout + direct.stderr


def test_notebooks_detect_classroom_mode(room):
    code = ("from lab import config; from lab.cluster import classroom; import sys; "
            "print(classroom.detect(config.KUBE_CONTEXT))")
    student = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, KUBECONFIG=str(room / "out" / "cyd" / "kubeconfig")))
    assert student.stdout.strip() == "student-cyd", student.stderr
    assert classroom.detect(config.KUBE_CONTEXT) is None  # the instructor's kubeconfig


# ------------------------------------------------------------------------- grading with the cluster


def submission(folder, cells: list[str]):
    """A one-notebook submission named like the lab's 03 (so the grader's 03 checks run after it)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('cluster = "k8s-lab"\nnamespace = "k8s-assignment"\nsolutions = True')
    params.metadata["tags"] = ["parameters"]
    setup = nbformat.v4.new_code_cell("from lab import checks\nfrom lab.cluster import kube\nfrom lab.target import Target\n"
                                      "context = f'kind-{cluster}'\ntarget = Target(cluster, namespace)\n"
                                      "checks.configure(namespace=namespace, context=context)")
    nb.cells = [params, setup, *map(nbformat.v4.new_code_cell, cells)]
    folder.mkdir(parents=True)
    nbformat.write(nb, str(folder / "03-database.ipynb"))


HONEST = ("from kubernetes import client\n"
          "kube.core(target).create_namespaced_config_map(namespace, client.V1ConfigMap(\n"
          "    metadata=client.V1ObjectMeta(name='database-config'), data={'my.cnf': '[mysqld]\\n'}))")
ESCAPE = ("from kubernetes import client\n"
          "try:\n"
          "    kube.core(target).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name='escaped')))\n"
          "    print('ESCAPED')\n"
          "except client.exceptions.ApiException as error:\n"
          "    print('REFUSED', error.status)")
ATTACK = "checks.statefulset_ready = lambda *a, **k: checks.ok('StatefulSet database: 1/1 replicas ready')"
CHECKPOINTS = ['checks.checkpoint("db.config", points=1, verify=lambda: checks.configmap_has_key("database-config", "my.cnf"))',
               'checks.checkpoint("db.statefulset-ready", points=2, verify=lambda: checks.statefulset_ready("database", replicas=1))']


def test_execute_sandboxes_each_submission_and_grades_from_the_graders_checks(tmp_path):
    subs = tmp_path / "subs"
    submission(subs / "honest", [HONEST, ESCAPE, *CHECKPOINTS])
    submission(subs / "mallory", [ESCAPE, ATTACK, *CHECKPOINTS])
    out = tmp_path / "grades"
    say("lab grade --execute --jobs 2 on two one-notebook submissions")
    result = lab_cli("grade", "--execute", str(subs), "--out", str(out), "--jobs", "2", "--namespace-prefix", "gt-",
                     "--reference", str(subs / "honest"))
    try:
        assert result.returncode == 0, result.stderr + result.stdout
        for student in ("honest", "mallory"):
            nb = nbformat.read(str(out / "executed" / student / "03-database.ipynb"), as_version=4)
            printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream")
            assert "REFUSED 403" in printed and "ESCAPED" not in printed  # the kernel had the student's kubeconfig
            params = json.loads((out / "executed" / student / "report.json").read_text())["results"][0]["parameters"]
            assert params == {"namespace": f"gt-{student}", "solutions": False, "cluster": config.CLUSTER_NAME}
        details = pd.read_csv(out / "details.csv").set_index(["student", "check_id"])
        assert details.loc[("honest", "db.config"), "status"] == "passed"
        assert details.loc[("honest", "db.statefulset-ready"), "status"] == "failed"
        assert details.loc[("mallory", "db.statefulset-ready"), "status"] == "failed"  # forged in the kernel
        flags = pd.read_csv(out / "flags.csv")
        forged = flags[(flags.student == "mallory") & (flags.kind == "forged-evidence")]
        assert list(forged.check_id) == ["db.statefulset-ready"]
        book = pd.read_csv(out / "gradebook.csv", index_col="student")
        assert set(book.grading) == {"verified"} and set(book.solutions) == {"no"}
    finally:
        lab_cli("classroom", "down", "--prefix", "gt-", "--yes")


def install_system(room, student: str, node_port: int) -> subprocess.Popen:
    """The whole lab system as a student installs it with their own kubeconfig (Helm; the
    PersistentVolume is the classroom's, backups to a hostPath are not allowed)."""
    from lab.system import deploy

    return subprocess.Popen(
        [str(tools.ensure("helm")), "--kubeconfig", str(room / "out" / student / "kubeconfig"),
         "--kube-context", config.KUBE_CONTEXT, "-n", f"student-{student}", "upgrade", "--install", "k8s-lab",
         str(config.REPO_ROOT / "chart"), *deploy.helm_image_args("offline"), "--set", "storage.enabled=false",
         "--set", "backup.enabled=false", "--set", f"web.nodePort={node_port}",
         "--set", f"storage.persistentVolumeName=k8s-lab-database-data-student-{student}", "--wait", "--timeout", "8m"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_live_grades_the_whole_classroom(room, tmp_path):
    say("ann and cyd install the lab system at once, each with their own kubeconfig")
    installs = {s: install_system(room, s, port) for s, port in (("ann", 30481), ("cyd", 30482))}
    for student, process in installs.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{student}: {output}"
    out = tmp_path / "live"
    result = lab_cli("grade", "--live", "--roster", str(room / "roster.csv"), "--out", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    book = pd.read_csv(out / "gradebook.csv", index_col="student")
    assert sorted(book.index) == list(IDS) and set(book.grading) == {"verified"}
    details = pd.read_csv(out / "details.csv").set_index(["student", "check_id"])
    for student in ("ann", "cyd"):
        for check in ("db.statefulset-ready", "db.claim-bound", "web.deployment-ready", "web.nodeport",
                      "web.endpoints", "netpol.applied", "watcher.daemonset", "helm.system-ready"):
            assert details.loc[(student, check), "status"] == "passed", (student, check)
    assert details.loc[("bob", "storage.namespace"), "status"] == "passed"
    assert details.loc[("bob", "storage.persistent-volume"), "status"] == "passed"  # the instructor's PV
    assert details.loc[("bob", "db.statefulset-ready"), "status"] == "failed"
    assert book.loc["ann", "earned"] > book.loc["bob", "earned"]
    status = lab_cli("classroom", "status", str(room / "roster.csv"))
    assert status.returncode == 0, status.stderr + status.stdout
    # A plain table when piped: each row starts with the student's id (never folded across lines).
    rows = {line.split()[0]: line for line in status.stdout.splitlines() if line.split()[:1] and line.split()[0] in IDS}
    assert "Active" in rows["bob"] and f"{book.loc['ann', 'earned']:g}/{book.loc['ann', 'possible']:g}" in rows["ann"]
    assert details.loc[("bob", "storage.quota-and-limits"), "status"] == "failed"  # the classroom's quota is not his
    assert (out / "feedback" / "cyd.html").exists()
