"""The three ways a student got full marks without the work (issue 13), kept as tests.

1. Copy the reference notebooks, which carry the evidence of a real run.
2. Edit the notebook JSON: flip failed records to passed, give every UID a fresh value, recompute
   the hashes with the public record_hash and the text with render_text.
3. Inside the kernel: replace a verification (``checks.statefulset_ready = lambda ...``) before the
   untouched checkpoint cell runs.

Self-reported grading must flag 1 (and 2 when the run it came from is in the class); grading from
the grader's own checks (--execute, --live) must give no points for any forged check. The cluster
is replaced by a fake Kubernetes API in the grader's process, so the grader's checks find nothing.
"""
from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import types
import uuid
from pathlib import Path

import nbformat
import pytest
from kubernetes.client.exceptions import ApiException

from lab import checks
from lab.grading import grade

NOTEBOOK = "01-database.ipynb"
STEPS = [  # (check id, points, verification the notebook runs)
    ("db.secret", 1, 'checks.secret_has_keys("database-credentials", ["password"])'),
    ("db.config", 1, 'checks.configmap_has_key("database-config", "my.cnf")'),
    ("db.services", 1, 'checks.service_has_port("database", 3306)'),
    ("db.statefulset-ready", 2, 'checks.statefulset_ready("database", replicas=1)'),
    ("db.claim-bound", 1, 'checks.pvc_bound("data-database-0")'),
]
FULL = sum(points for _, points, _ in STEPS)
SETUP = "from lab import checks\nchecks.configure(namespace=namespace, identity={'kube_system_uid': 'cluster-' + namespace})"


def checkpoint_cell(check_id: str, points: int, verify: str) -> str:
    return f'checks.checkpoint("{check_id}", points={points}, hint="look", verify=lambda: {verify})'


@pytest.fixture
def reference(tmp_path, notebook_writer) -> Path:
    """The reference notebook as the repository ships it: executed, with a real run's evidence."""
    directory = tmp_path / "reference"
    notebook_writer(directory, NOTEBOOK, [SETUP, *(checkpoint_cell(*s) for s in STEPS)], 'namespace = "k8s-assignment"')
    store_run(directory / NOTEBOOK, "k8s-assignment", seed=0)
    return directory


def store_run(path: Path, namespace: str, *, seed: int, failing: set[str] = frozenset()) -> Path:
    """Give ``path``'s checkpoint cells the outputs an honest run would leave: each record made by
    lab.checks, with its own UIDs and the irregular timings of a person working through it."""
    rng = random.Random(seed)
    nb = nbformat.read(str(path), as_version=4)
    session = checks.Session()
    clock = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=seed)
    for cell in nb.cells:
        found = grade.scan_source(cell.source) if cell.cell_type == "code" else []
        if not found:
            continue
        cid, points = found[0]["check_id"], found[0]["points"]
        clock += dt.timedelta(milliseconds=rng.randint(5_000, 90_000))
        finished = clock + dt.timedelta(milliseconds=rng.randint(8, 400))
        uids = {f"Obj/{namespace}/{cid}": str(uuid.UUID(int=rng.getrandbits(128)))}
        result = checks.fail(f"{cid} is wrong", uids) if cid in failing else checks.ok(f"{cid} is fine", uids)
        record = checks.make_record(cid, points, result, hint="look", notebook=path.name, namespace=namespace,
                                    started=clock.isoformat(timespec="milliseconds"),
                                    finished=finished.isoformat(timespec="milliseconds"),
                                    cluster={"kube_system_uid": f"cluster-{seed}"}, cell_source=cell.source,
                                    session=session)
        cell.outputs = [checks.evidence_output(record)]
        clock = finished
    nbformat.write(nb, str(path))
    return path


def honest(reference: Path, root: Path, student: str, seed: int, failing: set[str] = frozenset()) -> Path:
    folder = root / student
    folder.mkdir(parents=True)
    shutil.copy(reference / NOTEBOOK, folder / NOTEBOOK)
    store_run(folder / NOTEBOOK, f"student-{student}", seed=seed, failing=failing)
    return folder


def forge(path: Path) -> None:
    """Attack 2: every record passed, fresh UIDs, hashes and chain recomputed, text re-rendered."""
    nb = json.loads(path.read_text())
    previous = checks.GENESIS_HASH
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if checks.MIME_TYPE not in data:
                continue
            record = data[checks.MIME_TYPE]
            record.update(passed=True, earned=record["points"], message="fine",
                          objects={k: str(uuid.uuid4()) for k in record["objects"]}, prev_hash=previous)
            record["hash"] = checks.record_hash(record)
            previous = record["hash"]
            data["text/plain"] = checks.render_text(record)
            data["text/html"] = checks.render_html(record)
    path.write_text(json.dumps(nb))


def by_student(book) -> dict:
    return {s.student: s for s in book.submissions}


def flags(sub, kind: str) -> list:
    return [f for f in sub.flags if f.kind == kind]


# ----------------------------------------------------------------------------- self-reported


def test_a_copy_of_the_reference_notebooks_is_flagged(reference, tmp_path):
    subs = tmp_path / "subs"
    shutil.copytree(reference, subs / "mallory")
    honest(reference, subs, "alice", seed=1)
    book = by_student(grade.grade([subs], reference_dir=reference))
    copied = flags(book["mallory"], "copied-run")
    assert copied and grade.REFERENCE_OWNER in copied[0].detail and "identical record" in copied[0].detail
    assert book["mallory"].status == "flagged" and book["mallory"].mode == "self-reported"
    assert book["alice"].flags == [] and book["alice"].earned == FULL


def test_a_renamed_and_rehashed_copy_of_the_reference_is_still_flagged_by_its_timings(reference, tmp_path):
    subs = tmp_path / "subs"
    shutil.copytree(reference, subs / "mallory")
    forge(subs / "mallory" / NOTEBOOK)
    honest(reference, subs, "alice", seed=1)
    book = by_student(grade.grade([subs], reference_dir=reference))
    mallory = book["mallory"]
    assert not {"edited-output", "broken-chain"} & {f.kind for f in mallory.flags}  # the forgery is consistent
    copied = flags(mallory, "copied-run")
    assert copied and grade.REFERENCE_OWNER in copied[0].detail
    assert "object UID" not in copied[0].detail and "identical record" not in copied[0].detail
    assert "same start and finish times" in copied[0].detail and "same checks, verdicts and timings" in copied[0].detail
    assert mallory.status == "flagged"
    assert book["alice"].flags == []


def test_flipped_records_beside_the_honest_run_they_came_from_are_flagged(reference, tmp_path):
    subs = tmp_path / "subs"
    original = honest(reference, subs, "bob", seed=2, failing={"db.statefulset-ready", "db.claim-bound"})
    shutil.copytree(original, subs / "mallory")
    forge(subs / "mallory" / NOTEBOOK)
    book = by_student(grade.grade([subs], reference_dir=reference))
    assert book["bob"].earned == FULL - 3
    assert book["mallory"].earned == FULL  # self-reported: the points cannot be told from genuine ones...
    assert flags(book["mallory"], "copied-run") and book["mallory"].status == "flagged"  # ...the copy can
    assert "mallory" in flags(book["bob"], "copied-run")[0].detail


def test_honest_runs_of_the_same_notebook_are_not_flagged(reference, tmp_path):
    subs = tmp_path / "subs"
    for seed, student in enumerate(["ann", "ben", "cid", "dee"], start=10):
        honest(reference, subs, student, seed=seed)
    book = grade.grade([subs], reference_dir=reference)
    assert [(s.student, s.flags, s.earned) for s in book.submissions] == [(n, [], FULL) for n in ["ann", "ben", "cid", "dee"]]


def test_build_tasks_run_with_the_solutions_earn_nothing(reference, tmp_path, monkeypatch):
    monkeypatch.setattr(checks, "_REGISTRY", {})
    checks.register("db.statefulset-ready", points=2, build_task=True)(lambda namespace, context: True)
    subs = tmp_path / "subs"
    for student, solutions in (("sol", "True"), ("own", "False")):
        folder = honest(reference, subs, student, seed=len(student) + (solutions == "True"))
        nb = nbformat.read(str(folder / NOTEBOOK), as_version=4)
        injected = nbformat.v4.new_code_cell(f"solutions = {solutions}")
        injected.metadata["tags"] = ["injected-parameters"]
        nb.cells.insert(1, injected)
        nbformat.write(nb, str(folder / NOTEBOOK))
    book = by_student(grade.grade([subs], reference_dir=reference))
    ran = next(o for o in book["sol"].outcomes if o.check_id == "db.statefulset-ready")
    assert (ran.status, ran.earned, book["sol"].earned) == ("solutions-run", 0, FULL - 2)
    assert book["own"].earned == FULL
    table = grade.Gradebook(list(book.values()), {}, None).table()
    assert table.loc["sol", "solutions"] == "yes" and table.loc["own", "solutions"] == "no"
    assert set(table.grading) == {"self-reported"}


# ----------------------------------------------------------- the grader's own checks (verified)


@pytest.fixture
def empty_cluster(monkeypatch):
    """The grader's view in this process: a cluster where the student built nothing; the grader's
    own checks of the STEPS (lab.grading.grader_checks) registered for the test notebook."""
    def not_found(*args, **kwargs):
        raise ApiException(status=404, reason="Not Found")

    group = types.SimpleNamespace(**{name: not_found for name in (
        "read_namespaced_secret", "read_namespaced_config_map", "read_namespaced_service",
        "read_namespaced_stateful_set", "read_namespaced_persistent_volume_claim")})
    monkeypatch.setattr(checks, "_apis", lambda context=None: types.SimpleNamespace(core=group, apps=group))
    monkeypatch.setattr(checks, "settings", checks.Settings(identity={"kube_system_uid": "grader-view"}))
    real = {c.check_id: c for c in checks.registry()}  # lab.grading.grader_checks, as `lab grade` runs them
    monkeypatch.setattr(checks, "_REGISTRY", {})
    for cid, points, _ in STEPS:
        assert real[cid].points == points
        checks.register(cid, points=points, notebook=NOTEBOOK)(real[cid].verify)


def test_forged_records_earn_nothing_when_the_grader_checks_itself(reference, tmp_path, empty_cluster):
    executed = tmp_path / "executed"
    for student, attack in (("copier", None), ("forger", forge)):
        folder = executed / student
        shutil.copytree(reference, folder)
        if attack:
            attack(folder / NOTEBOOK)
        records = checks.run_registered(namespace=f"student-{student}", which=grade.checks_after(NOTEBOOK))
        (folder / grade.GRADER_JSON).write_text(json.dumps(records))
    book = by_student(grade.grade([executed], reference_dir=reference, verified=True))
    for student in ("copier", "forger"):
        sub = book[student]
        assert sub.mode == "verified" and (sub.earned, sub.possible) == (0, FULL)
        assert {o.status for o in sub.outcomes} == {"failed"}
        forged = flags(sub, "forged-evidence")
        assert {f.check_id for f in forged} == {cid for cid, _, _ in STEPS} and sub.status == "flagged"
        assert "the notebook says PASS, the grader's own check says FAIL" in forged[0].detail


def test_a_check_monkeypatched_inside_the_kernel_earns_nothing_under_execute(reference, tmp_path, empty_cluster,
                                                                             notebook_writer):
    attack = ("checks.statefulset_ready = lambda *a, **k: checks.ok('StatefulSet database: 1/1 replicas ready')\n"
              "checks.configmap_has_key = lambda *a, **k: checks.ok('fine')")
    cells = [SETUP, attack, *(checkpoint_cell(*s) for s in STEPS[1:4])]
    notebook_writer(tmp_path / "subs" / "mallory", NOTEBOOK, cells, 'namespace = "k8s-assignment"')
    kept: dict = {}
    runs = grade.execute_all([tmp_path / "subs"], tmp_path / "executed", timeout=300, collect=kept)
    kernel = json.loads((runs[0] / "report.json").read_text())
    assert kernel["results"][0]["status"] == "passed"
    # Student code runs as the grader's user: it could also rewrite the grader's file afterwards.
    forged = [dict(r, passed=True, earned=r["points"]) for r in json.loads((runs[0] / grade.GRADER_JSON).read_text())]
    (runs[0] / grade.GRADER_JSON).write_text(json.dumps([dict(r, hash=checks.record_hash(r)) for r in forged]))
    book = by_student(grade.grade([tmp_path / "executed"], reference_dir=reference, verified=True, grader_records=kept))
    mallory = book["mallory"]
    said = {ev.record["check_id"]: ev.record["passed"] for ev in mallory.evidence}
    assert said["db.statefulset-ready"] is True and said["db.config"] is True  # the kernel was fooled
    assert mallory.earned == 0 and {f.check_id for f in flags(mallory, "forged-evidence")} == {
        "db.statefulset-ready", "db.config"}
    ready = next(o for o in mallory.outcomes if o.check_id == "db.statefulset-ready")
    assert (ready.status, ready.message) == ("failed", "StatefulSet database not found in namespace grade-mallory")


def test_live_grading_ignores_the_notebooks_entirely(reference, empty_cluster):
    book = grade.live_gradebook({"ann": "student-ann", "ben": "student-ben"}, reference_dir=reference, jobs=2)
    assert [(s.student, s.mode, s.earned, s.possible) for s in book.submissions] == [
        ("ann", "verified", 0, FULL), ("ben", "verified", 0, FULL)]
    assert all(o.message.endswith("student-ann") for o in book.submissions[0].outcomes if o.status == "failed")


def test_a_copy_of_the_shipped_reference_run_is_flagged_with_the_default_options(tmp_path):
    """The attack as a student would try it on the real repository: copy reference/ and submit it,
    graded with no --reference (an instructor's everyday command)."""
    shutil.copytree(grade.default_reference_dir(), tmp_path / "subs" / "mallory")
    mallory = grade.grade([tmp_path / "subs"]).submissions[0]
    assert grade.default_reference_dir().name == "reference"
    assert flags(mallory, "copied-run") and mallory.status == "flagged" and mallory.mode == "self-reported"
