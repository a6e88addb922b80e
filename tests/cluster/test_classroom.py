"""A classroom of three students on the real cluster (issue 13).

One module-scoped classroom (`lab classroom up` for ann, bob and cyd; removed at the end). Each
student acts with their own kubeconfig, as in class. Proves that ann cannot get, list or delete
anything in bob's namespace (Secrets included), cannot create cluster-scoped objects or lift her
quota or isolation, and cannot reach bob's database port over the network while bob can; that
`lab grade --execute` runs a submission with the student's limited kubeconfig and grades it from
the grader's own checks (a check monkeypatched inside the kernel earns nothing); and that
`lab grade --live --roster` grades all three after two of them installed the lab system in
parallel with their own kubeconfigs.

Three more students of the same classroom (dee, eve, fay) work through the reference notebooks
at once, each with their own kubeconfig and their own copy of the notebooks: every notebook runs
to the end, every checkpoint passes or says it does not apply (what the instructor made), `lab
grade --live` gives each the points that apply, and eve cannot read dee's Secrets or reach dee's
real database. On two shared cores three parallel runs of 02-08 take 14 minutes, so CI runs 02-04
(under 3 minutes; LAB_CLASSROOM_LAST=08 runs them all here; bench/bench_classroom.py --notebooks
times 02-08).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import nbformat
import pandas as pd
import pytest

from lab import checks, config
from lab.cluster import classroom
from lab.cluster import kube
from lab.host import tools
from tests.support import TARGET, graded_notebook, lab_cli, say

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
    folder.mkdir(parents=True)
    nbformat.write(graded_notebook(cells), str(folder / "03-database.ipynb"))


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


@pytest.fixture
def installed(room):
    """ann and cyd with the whole system, uninstalled afterwards: one node has CPU for few classes."""
    say("ann and cyd install the lab system at once, each with their own kubeconfig")
    installs = {s: install_system(room, s, port) for s, port in (("ann", 30481), ("cyd", 30482))}
    try:
        for student, process in installs.items():
            output, _ = process.communicate(timeout=600)
            assert process.returncode == 0, f"{student}: {output}"
        yield
    finally:
        for student in installs:
            subprocess.run([str(tools.ensure("helm")), "--kubeconfig", str(room / "out" / student / "kubeconfig"),
                            "--kube-context", config.KUBE_CONTEXT, "-n", f"student-{student}", "uninstall", "k8s-lab",
                            "--wait"], capture_output=True, timeout=300)


def test_live_grades_the_whole_classroom(room, installed, tmp_path):
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
    # what the instructor made earns nothing and costs nothing
    for check in ("storage.namespace", "storage.persistent-volume", "storage.quota-and-limits", "build.pv"):
        assert details.loc[("bob", check), ["status", "earned", "possible"]].tolist() == ["not-applicable", 0, 0], check
    assert details.loc[("bob", "db.statefulset-ready"), "status"] == "failed"
    assert book.loc["ann", "earned"] > book.loc["bob", "earned"]
    status = lab_cli("classroom", "status", str(room / "roster.csv"))
    assert status.returncode == 0, status.stderr + status.stdout
    # A plain table when piped: each row starts with the student's id (never folded across lines).
    rows = {line.split()[0]: line for line in status.stdout.splitlines() if line.split()[:1] and line.split()[0] in IDS}
    assert "Active" in rows["bob"] and f"{book.loc['ann', 'earned']:g}/{book.loc['ann', 'possible']:g}" in rows["ann"]
    assert (out / "feedback" / "cyd.html").exists()


# ------------------------------------------------------------------- the notebooks in a classroom


CLASS = ("dee", "eve", "fay")
LAST = os.environ.get("LAB_CLASSROOM_LAST", "04")
# The grader's checks tied to no notebook, by the notebook after which they hold.
HOLDS_AFTER = {"build.pv": "02", "system.namespace": "02", "instructor.quota-and-limits": "02",
               "build.db-service": "03", "build.db-claims": "03", "system.database-ready": "03",
               "system.database-storage": "03", "system.database-secret": "03", "instructor.database-endpoints": "03",
               "instructor.no-crashing-pods": "03", "instructor.database-volume-retained": "03",
               "build.web-init": "04", "build.web-service": "04", "system.web-ready": "04", "system.web-nodeport": "04",
               "system.web-config": "04", "instructor.web-endpoints": "04", "system.network-policies": "05",
               "instructor.backup-on-host": "08"}
# What the instructor made in a classroom: checks of the student making it do not apply.
NOT_APPLICABLE = {
    "notebook": {"storage.namespace": "02", "storage.quota-and-limits": "02", "build.pv": "02",
                 "storage.host-directory": "02", "backup.drill-namespace": "08"},
    "grader": {"storage.namespace": "02", "storage.quota-and-limits": "02", "storage.persistent-volume": "02",
               "build.pv": "02", "system.namespace": "02", "instructor.quota-and-limits": "02",
               "instructor.database-volume-retained": "03"},
}


def ran(notebook_number: str) -> bool:
    return notebook_number <= LAST


@pytest.fixture(scope="module")
def notebook_class(room):
    """dee, eve and fay in the same classroom as ann, bob and cyd (removed with it)."""
    roster = room / "notebook-roster.csv"
    roster.write_text("student\n" + "".join(f"{i}\n" for i in CLASS))
    result = lab_cli("classroom", "up", str(roster), "--out", str(room / "out"))
    assert result.returncode == 0, result.stderr + result.stdout
    return roster


def run_notebooks(room, student: str, work) -> dict:
    """`lab run` of the reference notebooks 02..LAST as the student runs them: their own copy of the
    notebooks (the build tasks write work/ next to them) and their kubeconfig."""
    folder = work / student / "notebooks"
    folder.mkdir(parents=True)
    for path in (config.REPO_ROOT / "reference").glob("[0-9][0-9]-*.ipynb"):
        shutil.copy(path, folder)
    result = lab_cli("run", LAST, "--from", "02", "--notebooks-dir", str(folder), "--out", str(work / student / "run"),
                     "-p", f"cluster={config.CLUSTER_NAME}", "-p", f"namespace=student-{student}", "-p", "mode=offline",
                     "-p", f"kubeconfig={room / 'out' / student / 'kubeconfig'}", timeout=3600)
    report = json.loads((work / student / "run" / "report.json").read_text())
    return {"returncode": result.returncode, "output": result.stdout + result.stderr, "report": report}


def verdicts(run_dir) -> dict[str, str]:
    """check id -> PASS/FAIL/N/A of the checkpoint records in a run's executed notebooks."""
    import nbformat

    found = {}
    for path in sorted(run_dir.glob("[0-9][0-9]-*.ipynb")):
        for cell in nbformat.read(str(path), as_version=4).cells:
            for output in cell.get("outputs", []):
                record = output.get("data", {}).get(checks.MIME_TYPE)
                if record:
                    found[record["check_id"]] = ("N/A" if record.get("applicable") is False
                                                 else "PASS" if record["passed"] else f"FAIL: {record['message']}")
    return found


@pytest.fixture(scope="module")
def class_runs(room, notebook_class, tmp_path_factory):
    """The three students' runs of the notebooks, made at once: student -> run (see run_notebooks)."""
    work = tmp_path_factory.mktemp("notebooks")
    say(f"dee, eve and fay run the reference notebooks 02-{LAST} at once, each with their own kubeconfig")
    began = time.monotonic()
    with ThreadPoolExecutor(len(CLASS)) as pool:
        runs = dict(zip(CLASS, pool.map(lambda s: run_notebooks(room, s, work), CLASS)))
    say(f"3 students, notebooks 02-{LAST} in parallel: {time.monotonic() - began:.0f} s")
    return {student: {**run, "dir": work / student / "run"} for student, run in runs.items()}


def test_three_students_run_the_notebooks_at_once_and_are_graded_on_what_applies(notebook_class, class_runs, tmp_path):
    for student, run in class_runs.items():
        assert run["returncode"] == 0, f"{student}: {run['output'][-3000:]}"
        assert [r["status"] for r in run["report"]["results"]] == ["passed"] * (int(LAST) - 1), student
        found = verdicts(run["dir"])
        wanted_na = {c for c, n in NOT_APPLICABLE["notebook"].items() if ran(n)}
        assert {c for c, v in found.items() if v == "N/A"} == wanted_na, student
        assert {c: v for c, v in found.items() if v not in ("PASS", "N/A")} == {}, student

    began = time.monotonic()
    out = tmp_path / "live"
    result = lab_cli("grade", "--live", "--roster", str(notebook_class), "--out", str(out))
    say(f"lab grade --live of 3 namespaces: {time.monotonic() - began:.1f} s")
    assert result.returncode == 0, result.stderr + result.stdout
    details = pd.read_csv(out / "details.csv")
    details["after"] = [HOLDS_AFTER[c] if n == "(finished lab)" else n[:2] for c, n in zip(details.check_id, details.notebook)]
    applies = details[details.after.map(ran)]
    for student in CLASS:
        mine = applies[applies.student == student].set_index("check_id")
        wanted_na = {c for c, n in NOT_APPLICABLE["grader"].items() if ran(n)}
        assert set(mine.index[mine.status == "not-applicable"]) == wanted_na, student
        wrong = mine[~mine.status.isin(["passed", "not-applicable"])]
        assert wrong.empty, f"{student}: {wrong[['status', 'message']].to_dict('index')}"
        assert mine.earned.sum() == mine.possible.sum() > 0 and (mine.possible[mine.status == "not-applicable"] == 0).all()
    book = pd.read_csv(out / "gradebook.csv", index_col="student")
    assert sorted(book.index) == list(CLASS) and set(book.grading) == {"verified"}
    if LAST == "08":
        assert (book.earned == book.possible).all(), book[["earned", "possible"]]


def test_after_the_notebooks_a_student_still_cannot_touch_another_students_database(room, class_runs):
    """eve's Pod cannot connect to dee's real database, by its Service or its Pod's address, while a
    Pod of dee's that her policies admit can; eve's kubeconfig cannot read dee's credentials."""
    assert class_runs["dee"]["returncode"] == 0 and ran("03"), "dee's run of the notebooks up to 03 (the database)"
    assert forbidden(as_student(room, "eve", "-n", "student-dee", "get", "secret", "database-credentials"))
    assert forbidden(as_student(room, "eve", "-n", "student-dee", "exec", "database-0", "--", "true"))
    clients = {"dee": "app.kubernetes.io/name=k8s-lab,app.kubernetes.io/component=backup,app.kubernetes.io/instance=probe",
               "eve": "k8s-lab.test/role=client"}
    for student, labels in clients.items():
        ok(as_student(room, student, "run", "client", f"--image={PROBE}", "--image-pull-policy=IfNotPresent",
                      f"--labels={labels}", "--", "sleep", "infinity"))
    for student in clients:
        ok(as_student(room, student, "wait", "--for=condition=Ready", "pod/client", "--timeout=120s", timeout=150))
    service = "database.student-dee.svc.cluster.local"
    dee = as_student(room, "dee", "exec", "client", "--", "probe-tcp", service, "3306", "3")
    assert dee.stdout.strip() == "connected", dee.stdout + dee.stderr
    pod_ip = kube.core(TARGET).read_namespaced_pod("database-0", "student-dee").status.pod_ip
    for where in (service, pod_ip):
        eve = as_student(room, "eve", "exec", "client", "--", "probe-tcp", where, "3306", "3")
        assert eve.stdout.strip() == "timeout", (where, eve.stdout + eve.stderr)
