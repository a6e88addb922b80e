"""Grading: tiny executed notebooks whose checkpoint outputs come from lab.checks' own evidence
functions (fake verification results, no cluster), then the gradebook and its flags."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from lab import checks
from lab.grading import grade
from lab.cli import cli

SETUP = 'from lab import checks\nchecks.configure(namespace=namespace, identity={"kube_system_uid": "cluster-" + namespace})'
REFERENCE = {
    "01-database.ipynb": [
        'checks.checkpoint("db.statefulset-ready", points=2, hint="kubectl -n k8s-assignment describe sts database",\n'
        '                  verify=lambda: checks.ok("StatefulSet database: 1/1 replicas ready",\n'
        '                                           {"StatefulSet/ns/database": "uid-sts-" + namespace}))',
        '!echo checking the claim\n'
        'checks.checkpoint("db.pvc-bound", points=1, hint="kubectl -n k8s-assignment get pvc",\n'
        '                  verify=lambda: checks.ok("bound", {"PersistentVolumeClaim/ns/data": "uid-pvc-" + namespace}))',
    ],
    "02-network.ipynb": [
        "x = 1  # a step of the lab",
        'checks.checkpoint("net.default-deny", points=2, hint="kubectl -n k8s-assignment get networkpolicy",\n'
        '                  verify=lambda: checks.ok("NetworkPolicy default-deny-ingress exists",\n'
        '                                           {"NetworkPolicy/ns/default-deny": "uid-np-" + namespace}))',
        '@checks.checkpoint("net.probe-matrix", points=3, hint="look at the probe matrix: which rows are wrong?")\n'
        'def probe_matrix():\n'
        '    return checks.ok("all 6 probes match the expected reachability")',
    ],
}
FULL = 8
NET = {"net.default-deny", "net.probe-matrix"}


@pytest.fixture
def write_nb(notebook_writer):
    """write_nb(path, cells) -> path: a notebook for k8s-assignment that sets up lab.checks first."""
    def write(path: Path, cells: list[str]) -> Path:
        return notebook_writer(path.parent, path.name, [SETUP, *cells], 'namespace = "k8s-assignment"')

    return write


@pytest.fixture
def reference(tmp_path, write_nb) -> Path:
    directory = tmp_path / "reference"
    for name, cells in REFERENCE.items():
        write_nb(directory / name, cells)
    return directory


def student_run(reference: Path, root: Path, student: str, *, failing=(), cluster: str | None = None,
                drop=(), stop_at: str | None = None, edit_source: dict | None = None, not_applicable=()) -> Path:
    """What `lab run` leaves for a student: the reference notebooks with evidence outputs made by
    lab.checks from fake results. ``drop`` deletes checkpoint cells; ``stop_at`` leaves that
    checkpoint and everything after it in its notebook unexecuted; ``edit_source`` changes a
    checkpoint cell's source before it "runs"; ``not_applicable`` checks say so (a classroom's)."""
    out = root / student
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(reference.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        session = checks.Session()
        kept, stopped = [], False
        for cell in nb.cells:
            found = grade.scan_source(cell.source) if cell.cell_type == "code" else []
            if any(f["check_id"] in drop for f in found):
                continue
            if any(f["check_id"] == stop_at for f in found):
                stopped = True
            for f in found:
                if stopped:
                    break
                cid = f["check_id"]
                if edit_source and cid in edit_source:
                    cell.source = edit_source[cid]
                result = (checks.fail(f"{cid} is wrong in {student}", {f"Obj/{cid}": f"uid-{student}-{cid}"})
                          if cid in failing else checks.ok(f"{cid} fine", {f"Obj/{cid}": f"uid-{student}-{cid}"}))
                if cid in not_applicable:
                    result = checks.not_applicable(f"classroom: {cid} is the instructor's")
                record = checks.make_record(cid, f["points"], result, hint=f["hint"], notebook=path.name,
                                            namespace=student, cluster={"kube_system_uid": cluster or f"cluster-{student}"},
                                            cell_source=cell.source, session=session)
                cell.outputs = [checks.evidence_output(record)]
            kept.append(cell)
        nb.cells = kept
        nbformat.write(nb, str(out / path.name))
    return out


def by_student(book) -> dict:
    return {s.student: s for s in book.submissions}


def kinds(sub) -> set[str]:
    return {f.kind for f in sub.flags}


def outcome(sub, check_id):
    return next(o for o in sub.outcomes if o.check_id == check_id)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def save(path: Path, nb: dict) -> None:
    path.write_text(json.dumps(nb, indent=1))


def record_cells(nb: dict):
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            if checks.MIME_TYPE in output.get("data", {}):
                yield cell, output


# --------------------------------------------------------------------------- expected checks


def test_expected_checks_come_from_the_reference_sources(reference):
    expected = grade.expected_checks(reference)
    assert [(e.check_id, e.points, e.notebook) for e in expected.values()] == [
        ("db.statefulset-ready", 2, "01-database.ipynb"), ("db.pvc-bound", 1, "01-database.ipynb"),
        ("net.default-deny", 2, "02-network.ipynb"), ("net.probe-matrix", 3, "02-network.ipynb")]
    assert expected["net.probe-matrix"].hint.startswith("look at the probe matrix")


def test_scan_source_reads_registered_checks_and_survives_magics(tmp_path, write_nb):
    found = grade.scan_source('%%time\nchecks.check("system.web-ready")\nchecks.checkpoint("a.b", 4, lambda: True)')
    assert [(f["check_id"], f["via"], f["points"]) for f in found] == [
        ("system.web-ready", "check", None), ("a.b", "checkpoint", 4)]
    write_nb(tmp_path / "ref" / "01-x.ipynb", ['checks.check("system.web-ready")', 'checks.checkpoint("x.default")'])
    write_nb(tmp_path / "ref" / "02-y.ipynb", ['for name in ("a", "b"):\n    checks.checkpoint(f"y.{name}", points=1)'])
    warnings = []
    expected = grade.expected_checks(tmp_path / "ref", warnings)
    assert expected["system.web-ready"].points == 2 and expected["system.web-ready"].hint
    assert expected["x.default"].points == 1
    assert warnings == ["02-y.ipynb: a checkpoint() call without a literal check id (the grader cannot expect it; "
                        "write the id as a string literal)"]


# ------------------------------------------------------------------------------------ scores


def test_a_reference_run_scores_full_marks(reference, tmp_path):
    student_run(reference, tmp_path / "subs", "alice")
    book = grade.grade([tmp_path / "subs"], reference_dir=reference)
    alice = by_student(book)["alice"]
    assert (alice.earned, alice.possible, alice.status) == (FULL, FULL, "graded")
    assert alice.flags == [] and alice.errors == []
    assert all(o.status == "passed" for o in alice.outcomes)


def test_a_check_that_did_not_apply_counts_neither_as_earned_nor_as_possible(reference, tmp_path):
    student_run(reference, tmp_path / "subs", "alice", not_applicable={"db.pvc-bound"})
    alice = by_student(grade.grade([tmp_path / "subs"], reference_dir=reference))["alice"]
    assert (alice.earned, alice.possible, alice.status, alice.flags) == (FULL - 1, FULL - 1, "graded", [])
    pvc = outcome(alice, "db.pvc-bound")
    assert (pvc.status, pvc.earned, pvc.possible, pvc.message) == (
        "not-applicable", 0, 0, "classroom: db.pvc-bound is the instructor's")


def test_verified_grades_follow_the_graders_not_applicable_and_flag_a_notebook_that_disagrees(reference, tmp_path):
    student_run(reference, tmp_path / "subs", "alice")  # the notebook says PASS everywhere
    sub = grade.inspect_submission("alice", tmp_path / "subs" / "alice")
    session = checks.Session()
    sub.grader_records = [checks.make_record(cid, points, result, session=session, kind="grader") for cid, points, result in (
        ("db.statefulset-ready", 2, checks.ok("ready")), ("db.pvc-bound", 1, checks.not_applicable("the instructor's")),
        ("net.default-deny", 2, checks.ok("there")), ("net.probe-matrix", 3, checks.fail("2 cells wrong")))]
    grade.score(sub, grade.expected_checks(reference))
    assert (sub.earned, sub.possible) == (4, 7)
    assert outcome(sub, "db.pvc-bound").status == "not-applicable"
    flagged = {f.check_id: f.kind for f in sub.flags}
    assert flagged == {"db.pvc-bound": "evidence-disagrees", "net.probe-matrix": "forged-evidence"}


def test_failed_networkpolicy_checks_lose_exactly_their_points_with_the_reason(reference, tmp_path):
    student_run(reference, tmp_path / "subs", "alice")
    student_run(reference, tmp_path / "subs", "bob", failing=NET)
    book = grade.grade([tmp_path / "subs"], reference_dir=reference)
    bob = by_student(book)["bob"]
    assert (bob.earned, bob.possible, bob.status) == (FULL - 5, FULL, "graded")
    lost = {o.check_id: o for o in bob.outcomes if o.status != "passed"}
    assert set(lost) == NET
    assert lost["net.default-deny"].message == "net.default-deny is wrong in bob"
    assert lost["net.default-deny"].hint == "kubectl -n k8s-assignment get networkpolicy"
    assert not [f for f in bob.flags if f.severity != "info"]
    table = book.table()
    assert table.loc["bob", "net.probe-matrix"] == 0 and table.loc["bob", "db.statefulset-ready"] == 2
    assert table.loc["alice", "percent"] == 100.0 and table.loc["bob", "percent"] == 37.5


# ------------------------------------------------------------------------------------- flags


def test_an_output_edited_after_execution_is_flagged_and_not_counted(reference, tmp_path):
    run = student_run(reference, tmp_path / "subs", "carol", failing={"net.default-deny"})
    path = run / "02-network.ipynb"
    nb = load(path)
    cell, output = next(record_cells(nb))
    output["data"][checks.MIME_TYPE].update(passed=True, earned=2)  # the student turns FAIL into PASS
    save(path, nb)
    carol = by_student(grade.grade([tmp_path / "subs"], reference_dir=reference))["carol"]
    assert "edited-output" in kinds(carol) and carol.status == "flagged"
    assert outcome(carol, "net.default-deny").status == "invalid" and carol.earned == FULL - 2


def test_a_rehashed_edit_breaks_the_chain(reference, tmp_path):
    run = student_run(reference, tmp_path / "subs", "carol", failing={"net.default-deny"})
    path = run / "02-network.ipynb"
    nb = load(path)
    cell, output = next(record_cells(nb))
    record = output["data"][checks.MIME_TYPE]
    record.update(passed=True, earned=2)
    record["hash"] = checks.record_hash(record)  # a careful forger recomputes the record's own hash...
    output["data"]["text/plain"] = checks.render_text(record)
    save(path, nb)
    carol = by_student(grade.grade([tmp_path / "subs"], reference_dir=reference))["carol"]
    # ...but the next record still points at the original one
    assert kinds(carol) == {"broken-chain"} and carol.status == "flagged"
    assert [f.check_id for f in carol.flags] == ["net.probe-matrix"]


def test_edited_pass_fail_text_and_edited_cells_are_flagged(reference, tmp_path):
    run = student_run(reference, tmp_path / "subs", "dan", failing={"db.pvc-bound"})
    path = run / "01-database.ipynb"
    nb = load(path)
    cells = list(record_cells(nb))
    cells[1][1]["data"]["text/plain"] = "✔ PASS db.pvc-bound (1/1 points): bound"
    cells[0][0]["source"] = "".join(cells[0][0]["source"]).replace("replicas ready", "replicas ready!")
    save(path, nb)
    dan = by_student(grade.grade([tmp_path / "subs"], reference_dir=reference))["dan"]
    flags = {(f.kind, f.check_id) for f in dan.flags}
    assert ("edited-output", "db.pvc-bound") in flags
    assert ("edited-cell", "db.statefulset-ready") in flags
    assert outcome(dan, "db.pvc-bound").status == "failed"  # the evidence says failed: no point


def test_a_checkpoint_cell_changed_before_running_needs_review(reference, tmp_path):
    cheat = 'checks.checkpoint("db.pvc-bound", points=1, verify=lambda: True)'
    student_run(reference, tmp_path / "subs", "eve", edit_source={"db.pvc-bound": cheat})
    eve = by_student(grade.grade([tmp_path / "subs"], reference_dir=reference))["eve"]
    assert {(f.kind, f.check_id) for f in eve.flags} == {("modified-checkpoint", "db.pvc-bound")}
    assert eve.flags[0].severity == "review"


def test_a_copied_run_is_flagged_for_both_students(reference, tmp_path):
    original = student_run(reference, tmp_path / "subs", "alice")
    shutil.copytree(original, tmp_path / "subs" / "mallory")
    student_run(reference, tmp_path / "subs", "bob")
    subs = by_student(grade.grade([tmp_path / "subs"], reference_dir=reference))
    for me, other in (("alice", "mallory"), ("mallory", "alice")):
        copied = [f for f in subs[me].flags if f.kind == "copied-run"]
        assert len(copied) == 1 and other in copied[0].detail and "4 object UID(s)" in copied[0].detail
        assert subs[me].status == "flagged" and "shared-cluster" in kinds(subs[me])
    assert subs["bob"].flags == []


def test_a_deleted_checkpoint_is_flagged_but_an_unexecuted_one_is_not(reference, tmp_path):
    student_run(reference, tmp_path / "subs", "frank", drop={"net.probe-matrix"})
    stopped = student_run(reference, tmp_path / "subs", "grace", stop_at="net.default-deny")
    (stopped / "report.json").write_text(json.dumps({"results": [
        {"notebook": "01-database.ipynb", "status": "passed"},
        {"notebook": "02-network.ipynb", "status": "failed",
         "error": {"cell_index": 2, "execution_count": 3, "ename": "NameError", "evalue": "name 'y' is not defined"}}]}))
    subs = by_student(grade.grade([tmp_path / "subs"], reference_dir=reference))
    frank, grace = subs["frank"], subs["grace"]
    assert outcome(frank, "net.probe-matrix").status == "deleted"
    assert {(f.kind, f.check_id) for f in frank.flags} == {("deleted-checkpoint", "net.probe-matrix")}
    assert frank.earned == FULL - 3 and frank.status == "flagged"
    not_run = outcome(grace, "net.default-deny")
    assert not_run.status == "not-executed" and "NameError: name 'y' is not defined" in not_run.message
    assert grace.flags == [] and grace.earned == 3


def test_evidence_from_two_clusters_in_one_run_is_flagged(reference, tmp_path):
    run = student_run(reference, tmp_path / "subs", "heidi")
    other = student_run(reference, tmp_path / "other", "heidi", cluster="another-cluster")
    shutil.copy(other / "02-network.ipynb", run / "02-network.ipynb")
    heidi = by_student(grade.grade([tmp_path / "subs"], reference_dir=reference))["heidi"]
    assert kinds(heidi) == {"multiple-clusters"} and "2 clusters" in heidi.flags[0].detail
    assert heidi.earned == FULL  # a judgement for the instructor, not an automatic zero


# ---------------------------------------------------------------------------------- bad input


def test_bad_input_is_reported_per_submission_and_the_others_are_graded(reference, tmp_path):
    subs = tmp_path / "subs"
    student_run(reference, subs, "alice")
    (subs / "empty").mkdir()
    broken = student_run(reference, subs, "ivan")
    (broken / "01-database.ipynb").write_text("{ this is not json")
    old = student_run(reference, subs, "judy")
    for path in old.glob("*.ipynb"):
        nb = load(path)
        for _, output in record_cells(nb):
            record = output["data"][checks.MIME_TYPE]
            record["schema"] = "k8s-lab.checkpoint/0"
            record["hash"] = checks.record_hash(record)
        save(path, nb)
    shutil.copytree(reference, subs / "unexecuted")
    book = grade.grade([subs, tmp_path / "does-not-exist"], reference_dir=reference)
    s = by_student(book)
    assert s["unexecuted"].status == "error" and "no checkpoint evidence" in s["unexecuted"].errors[0]
    assert {o.status for o in s["unexecuted"].outcomes} == {"not-executed"} and s["unexecuted"].flags == []
    assert s["alice"].earned == FULL and s["alice"].status == "graded"
    assert s["empty"].status == "error" and "no notebooks" in s["empty"].errors[0]
    assert s["does-not-exist"].status == "error" and "no such directory" in s["does-not-exist"].errors[0]
    assert s["ivan"].status == "error" and s["ivan"].earned == 5  # the readable notebook still counts
    assert "01-database.ipynb: not a readable notebook" in s["ivan"].errors[0]
    assert outcome(s["ivan"], "db.pvc-bound").status == "unreadable"
    assert s["judy"].status == "error" and s["judy"].earned == 0
    assert "run of another lab version" in s["judy"].errors[0]
    table = book.table()
    assert table.loc["judy", "status"] == "error" and "another lab version" in table.loc["judy", "errors"]


def test_find_submissions_accepts_runs_dirs_and_students_with_several_runs(reference, tmp_path):
    runs = tmp_path / "runs"
    student_run(reference, runs, "20250101T000000Z")
    student_run(reference, runs, "20250102T000000Z")
    assert [n for n, _ in grade.find_submissions([runs])] == ["20250101T000000Z", "20250102T000000Z"]
    student_run(reference, tmp_path / "class" / "kim", "20250101T000000Z", failing=NET)
    student_run(reference, tmp_path / "class" / "kim", "20250103T000000Z")
    book = grade.grade([tmp_path / "class"], reference_dir=reference)
    kim = by_student(book)["kim"]
    assert kim.run_dir.endswith("20250103T000000Z") and kim.earned == FULL


def test_without_reference_notebooks_the_checks_come_from_the_submissions(reference, tmp_path):
    student_run(reference, tmp_path / "subs", "alice")
    student_run(reference, tmp_path / "subs", "frank", drop={"net.probe-matrix"})
    book = grade.grade([tmp_path / "subs"], reference_dir=tmp_path / "nowhere")
    assert book.reference is None and len(book.expected) == 4
    frank = by_student(book)["frank"]
    assert outcome(frank, "net.probe-matrix").status == "missing" and frank.flags == []


# ------------------------------------------------------------------------------ the outputs


def test_gradebook_files_and_self_contained_report(reference, tmp_path):
    student_run(reference, tmp_path / "subs", "alice")
    student_run(reference, tmp_path / "subs", "bob", failing=NET)
    book = grade.grade([tmp_path / "subs"], reference_dir=reference)
    written = book.write(tmp_path / "out")
    import pandas as pd

    table = pd.read_csv(written["gradebook"], index_col="student")
    assert list(table.index) == ["alice", "bob"] and list(table.earned) == [8, 3]
    details = pd.read_csv(written["details"])
    assert len(details) == 8 and set(details[details.status == "failed"].check_id) == NET
    report = written["report"].read_text()
    assert "data:image/png;base64," in report and "<script" not in report and "http" not in report.split("<body>")[1]
    assert "kubectl -n k8s-assignment get networkpolicy" in report and "net.default-deny is wrong in bob" in report
    rates = book.pass_rates().set_index("check_id")
    assert rates.loc["net.default-deny", "pass_rate"] == 50.0 and rates.loc["db.pvc-bound", "pass_rate"] == 100.0


def test_parallel_grading_gives_the_same_gradebook(reference, tmp_path):
    for i, student in enumerate(["a", "b", "c", "d"]):
        student_run(reference, tmp_path / "subs", student, failing=NET if i % 2 else ())
    shutil.copytree(tmp_path / "subs" / "a", tmp_path / "subs" / "e")
    seen = []
    serial = grade.grade([tmp_path / "subs"], reference_dir=reference, jobs=1)
    parallel = grade.grade([tmp_path / "subs"], reference_dir=reference, jobs=2,
                           progress=lambda done, total, student: seen.append((done, total)))
    assert serial.table().equals(parallel.table())
    assert serial.flags().equals(parallel.flags())
    assert seen[-1] == (5, 5)


def test_cli_grade_writes_the_gradebook(reference, tmp_path):
    student_run(reference, tmp_path / "subs", "alice")
    student_run(reference, tmp_path / "subs", "bob", failing=NET)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["grade", str(tmp_path / "subs"), "--reference", str(reference),
                                      "--out", str(out), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    assert "alice" in result.output and "8/8" in result.output and "3/8" in result.output
    assert {p.name for p in out.iterdir()} == {"gradebook.csv", "details.csv", "flags.csv", "report.html", "lms.csv",
                                           "feedback"}
    assert {p.name for p in (out / "feedback").iterdir()} == {"alice.html", "bob.html"}


@pytest.mark.parametrize("args, message", [
    ([], "name at least one submission directory"),
    (["somewhere", "--live"], "--live checks a cluster, not submissions"),
])
def test_cli_grade_input_errors_are_short(args, message):
    result = CliRunner().invoke(cli, ["grade", *args])
    assert result.exit_code == 1 and message in result.output


# ---------------------------------------------------------------- --execute (real papermill)


def test_execute_runs_each_submission_in_its_own_namespace_then_grades(reference, tmp_path):
    subs = tmp_path / "submissions"
    shutil.copytree(reference, subs / "Alice Smith")
    (subs / "nobody").mkdir()
    runs = grade.execute_all([subs], tmp_path / "executed", timeout=300, verify=False)
    assert [r.name for r in runs] == ["Alice Smith", "nobody"]
    report = json.loads((runs[0] / "report.json").read_text())
    assert report["status"] == "passed"
    assert [r["parameters"] for r in report["results"]] == [{"namespace": "grade-alice-smith"}] * 2
    book = grade.grade([tmp_path / "executed"], reference_dir=reference)
    s = by_student(book)
    alice = s["Alice Smith"]
    assert (alice.earned, alice.status, alice.flags) == (FULL, "graded", [])
    assert {r["namespace"] for r in alice.records()} == {"grade-alice-smith"}
    assert all(r["cell_sha256"] for r in alice.records())
    assert s["nobody"].status == "error"


def test_a_notebook_over_its_timeout_is_stopped(tmp_path, write_nb):
    nb = write_nb(tmp_path / "slow" / "01-slow.ipynb", ["import time\ntime.sleep(120)"])
    status, error = grade.execute_notebook(nb, tmp_path / "out.ipynb", {}, nb.parent, timeout=6, cell_timeout=None)
    assert status == "failed" and error.ename == "NotebookTimeout" and "6 s" in error.evalue


def test_execute_gives_the_kernel_the_sandbox_kubeconfig_and_never_the_solutions(tmp_path, notebook_writer):
    params = 'namespace = "k8s-assignment"\nsolutions = True'
    notebook_writer(tmp_path / "subs" / "ann", "01-a.ipynb",
                    ['import os\nprint("KUBECONFIG", os.environ.get("KUBECONFIG"), "solutions", solutions)',
                     'raise RuntimeError("broken")'], params)
    notebook_writer(tmp_path / "subs" / "ann", "02-b.ipynb", ['print("ran 02")'], params)
    sandbox = grade.Sandbox("student-ann", str(tmp_path / "ann.kubeconfig"))
    for keep_going, second in ((True, "passed"), (False, "not run")):
        out = tmp_path / f"out-{keep_going}"
        grade.execute_all([tmp_path / "subs"], out, sandboxes={"ann": sandbox}, keep_going=keep_going, verify=False)
        report = json.loads((out / "ann" / "report.json").read_text())
        assert [r["status"] for r in report["results"]] == ["failed", second]
        assert report["results"][0]["parameters"] == {"namespace": "student-ann", "solutions": False}
        printed = "".join(o.get("text", "") for c in nbformat.read(str(out / "ann" / "01-a.ipynb"), as_version=4).cells
                          for o in c.get("outputs", []))
        assert f"KUBECONFIG {tmp_path / 'ann.kubeconfig'} solutions False" in printed


def test_the_report_and_feedback_pages_label_the_mode_and_escape_what_students_wrote(reference, tmp_path):
    from lab.grading import feedback

    student_run(reference, tmp_path / "subs", "alice", failing={"db.pvc-bound"})
    book = grade.grade([tmp_path / "subs"], reference_dir=reference)
    book.submissions[0].outcomes[1].message = "<script>alert(1)</script>"
    for page in (grade.render_html(book), feedback.render(book.submissions[0])):
        assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "self-reported" in page
