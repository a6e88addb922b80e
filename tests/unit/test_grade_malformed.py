"""`lab grade` on a class of 200 where one submission is malformed in each way we could think of:
every student gets a row, the malformed ones status `error` with the reason, the rest their points."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from click.testing import CliRunner

from lab import checks
from lab.grading import grade
from lab.grading import intake
from lab.cli import cli

NOTEBOOKS = {"01-one.ipynb": [("one.a", 1), ("one.b", 2)], "02-two.ipynb": [("two.a", 3)]}
FULL = 6
STUDENTS = 200
SETUP = "from lab import checks"


def cell_source(check_id: str, points: int) -> str:
    return f'checks.checkpoint("{check_id}", points={points}, verify=lambda: checks.ok("fine"))'


def executed(name: str, steps, student: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('namespace = "x"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(SETUP)]
    session = checks.Session()
    for i, (cid, points) in enumerate(steps):
        cell = nbformat.v4.new_code_cell(cell_source(cid, points))
        record = checks.make_record(cid, points, checks.ok("fine", {f"Obj/{cid}": f"uid-{student}-{cid}"}),
                                    notebook=name, namespace=f"student-{student}", cell_source=cell.source,
                                    cluster={"kube_system_uid": f"cluster-{student}"}, session=session,
                                    started=f"2026-11-03T09:{i:02d}:{len(student) % 60:02d}.{sum(map(ord, student)) % 1000:03d}+00:00")
        cell.outputs = [checks.evidence_output(record)]
        nb.cells.append(cell)
    return nb


def write_student(root: Path, student: str) -> Path:
    folder = root / student
    folder.mkdir(parents=True)
    for name, steps in NOTEBOOKS.items():
        nbformat.write(executed(name, steps, student), str(folder / name))
    return folder


def edit_record(folder: Path, change) -> None:
    path = folder / "01-one.ipynb"
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            if checks.MIME_TYPE in output.get("data", {}):
                change(output["data"])
                path.write_text(json.dumps(nb))
                return


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def rewrite(folder: Path, fn) -> None:
    path = folder / "01-one.ipynb"
    path.write_text(json.dumps(fn(json.loads(path.read_text()))))


# student -> (how to break a fresh submission, words the error must contain)
MALFORMED = {
    "m-check-id-list": (lambda f: edit_record(f, lambda d: d[checks.MIME_TYPE].update(check_id=["x"])),
                        'check_id is ["x"], not an id string'),
    "m-points-text": (lambda f: edit_record(f, lambda d: d[checks.MIME_TYPE].update(points="lots")), "points is"),
    "m-passed-text": (lambda f: edit_record(f, lambda d: d[checks.MIME_TYPE].update(passed="yes")), "passed is"),
    "m-seq-negative": (lambda f: edit_record(f, lambda d: d[checks.MIME_TYPE].update(seq=-1)), "seq is"),
    "m-hash-missing": (lambda f: edit_record(f, lambda d: d[checks.MIME_TYPE].pop("hash")), "hash is missing"),
    "m-record-string": (lambda f: edit_record(f, lambda d: d.update({checks.MIME_TYPE: "[1, 2"})), "not a JSON object"),
    "m-record-list": (lambda f: edit_record(f, lambda d: d.update({checks.MIME_TYPE: [1, 2]})), "not a JSON object"),
    "m-objects-nested": (lambda f: edit_record(f, lambda d: d[checks.MIME_TYPE].update(objects={"a": {"b": 1}})),
                         "objects is"),
    "m-truncated-json": (lambda f: (f / "01-one.ipynb").write_text((f / "01-one.ipynb").read_text()[:300]),
                         "not a readable notebook"),
    "m-not-a-notebook": (lambda f: (f / "01-one.ipynb").write_text(json.dumps([1, 2, 3])), "not a notebook"),
    "m-plain-text": (lambda f: (f / "01-one.ipynb").write_text("my homework, see attached"), "not a readable notebook"),
    "m-binary-junk": (lambda f: (f / "01-one.ipynb").write_bytes(bytes(range(256)) * 40), "not a readable notebook"),
    "m-deep-nesting": (lambda f: (f / "01-one.ipynb").write_text("[" * 100_000 + "]" * 100_000), "not a readable notebook"),
    "m-huge-file": (lambda f: (f / "01-one.ipynb").write_text(" " * (3 * 1024 * 1024) + "{}"), "MiB"),
    "m-nbformat-3": (lambda f: rewrite(f, lambda nb: {**nb, "nbformat": 3}), "nbformat 3"),
    "m-nbformat-99": (lambda f: rewrite(f, lambda nb: {**nb, "nbformat": 99}), "nbformat 99"),
    "m-no-metadata": (lambda f: rewrite(f, lambda nb: {k: v for k, v in nb.items() if k != "metadata"}), "metadata"),
    "m-cells-not-list": (lambda f: rewrite(f, lambda nb: {**nb, "cells": {"0": 1}}), "no list of cells"),
    "m-cell-null": (lambda f: rewrite(f, lambda nb: {**nb, "cells": [None, *nb["cells"]]}), "not a readable notebook"),
    "m-outputs-not-list": (lambda f: rewrite(f, lambda nb: {**nb, "cells": [{**c, "outputs": 7} if "outputs" in c else c
                                                                        for c in nb["cells"]]}),
                           "not a readable notebook"),
    "m-latin1": (lambda f: (f / "01-one.ipynb").write_bytes((f / "01-one.ipynb").read_bytes().replace(b'fine', b'f\xe9ne')),
                 "not a readable notebook"),
    "m-bad-report": (lambda f: (f / "report.json").write_text("{ nope"), "report.json is not a valid run report"),
}
EMPTY_DIR = "m-empty-dir"
ARCHIVES = {  # student.zip -> (bytes, words of the error)
    "z-not-a-zip": (b"PK\x03\x04 this is not really a zip", "unreadable archive"),
    "z-zip-slip": (zip_bytes({"../../escape.ipynb": b"{}"}), "unsafe path"),
    "z-empty-zip": (zip_bytes({"readme.txt": b"hello"}), "no notebooks"),
}


@pytest.fixture
def classroom(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(grade, "MAX_NOTEBOOK_BYTES", 2 * 1024 * 1024)
    root = tmp_path / "submissions"
    honest = STUDENTS - len(MALFORMED) - 1 - len(ARCHIVES) - 1
    for i in range(honest):
        write_student(root, f"s{i:03d}")
    for student, (breaker, _) in MALFORMED.items():
        breaker(write_student(root, student))
    (root / EMPTY_DIR).mkdir()
    for student, (data, _) in ARCHIVES.items():
        (root / f"{student}.zip").write_bytes(data)
    reference = write_student(tmp_path, "reference")
    for path in reference.iterdir():
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
        nbformat.write(nb, str(path))
    good = write_student(tmp_path / "zipped", "z-good")
    (root / "z-good.zip").write_bytes(zip_bytes({f"z-good/{p.name}": p.read_bytes() for p in good.iterdir()}))
    return root


def test_two_hundred_submissions_with_every_kind_of_malformed_one(classroom, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["grade", str(classroom), "--out", str(out), "--jobs", "2",
                                      "--reference", str(tmp_path / "reference")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "gradebook.csv", index_col="student")
    assert len(table) == STUDENTS
    for student, (_, words) in [*MALFORMED.items(), *ARCHIVES.items()]:
        assert table.loc[student, "status"] == "error", student
        assert words in table.loc[student, "errors"], (student, table.loc[student, "errors"])
    assert table.loc[EMPTY_DIR, "status"] == "error" and "no notebooks" in table.loc[EMPTY_DIR, "errors"]
    others = table.drop(index=[*MALFORMED, *ARCHIVES, EMPTY_DIR])
    assert len(others) == STUDENTS - len(MALFORMED) - len(ARCHIVES) - 1
    assert set(others.status) == {"graded"} and set(others.earned) == {FULL}  # z-good.zip among them
    assert table.loc["m-bad-report", "earned"] == FULL  # the notebooks still count
    assert table.loc["m-check-id-list", "earned"] == FULL - 1  # the other records still count
    lms = pd.read_csv(out / "lms.csv")
    assert len(lms) == STUDENTS and len(list((out / "feedback").iterdir())) == STUDENTS
    assert not (tmp_path / "escape.ipynb").exists() and not (classroom.parent / "escape.ipynb").exists()


def test_unpack_refuses_links_and_oversized_archives(tmp_path, monkeypatch):
    link = zipfile.ZipInfo("01-a.ipynb")
    link.external_attr = 0o120777 << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(link, "/etc/passwd")
    (tmp_path / "link.zip").write_bytes(buffer.getvalue())
    folder = intake.unpack(tmp_path / "link.zip", tmp_path / "a")
    assert "symbolic link" in (folder / intake.INTAKE_ERROR).read_text() and not (folder / "01-a.ipynb").exists()
    monkeypatch.setattr(intake, "MAX_UNPACKED_BYTES", 1000)
    (tmp_path / "big.zip").write_bytes(zip_bytes({"01-a.ipynb": b" " * 5000}))
    folder = intake.unpack(tmp_path / "big.zip", tmp_path / "b")
    assert "more than" in (folder / intake.INTAKE_ERROR).read_text()


def test_a_roster_names_submissions_by_id_and_lists_who_submitted_nothing(tmp_path):
    from lab.cluster import classroom

    root = tmp_path / "subs"
    write_student(root, "Ann_Lee_12345_attempt1")
    write_student(root, "stranger")
    (tmp_path / "roster.csv").write_text("student,name,email\nann-lee,Ann Lee,ann@example.org\nbo,Bo,bo@example.org\n")
    roster = classroom.read_roster(tmp_path / "roster.csv")
    book = {s.student: s for s in grade.grade([root], reference_dir=tmp_path / "no-reference", roster=roster).submissions}
    assert set(book) == {"ann-lee", "stranger", "bo"}
    assert (book["ann-lee"].name, book["ann-lee"].earned, book["ann-lee"].status) == ("Ann Lee", FULL, "graded")
    assert [f.kind for f in book["stranger"].flags] == ["not-in-roster"]
    assert book["bo"].status == "error" and book["bo"].errors == ["no submission"]
