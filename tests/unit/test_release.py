"""`lab release DIR`: the student bundle holds the handouts and what they need, and no solution."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import nbformat
import pytest

from lab import checks, config, release
from lab.errors import LabError


def _git_repo(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    return root


def _handout(cells: list[str], outputs: list | None = None) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    if outputs:
        nb.cells[0].outputs = outputs
    return nbformat.writes(nb)


def test_the_lab_bundle_reveals_no_solution(tmp_path):
    out = tmp_path / "bundle"
    written = release.release(out)
    assert {p.name for p in (out / "notebooks").glob("[0-9][0-9]-*.ipynb")} == \
        {p.name for p in (config.REPO_ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")}
    assert "lab/cli.py" in written and "chart/Chart.yaml" in written
    for gone in ("notebooks/src", "reference", "tests", "manifests/01-storage/database-pv.yaml",
                 "manifests/02-database/statefulset.yaml", "manifests/03-web/deployment.yaml"):
        assert not (out / gone).exists(), gone
    # the acceptance's grep, over every file of the bundle
    marker = re.compile(r"^\s*# (BEGIN|END) (SOLUTION|PROMPT)\s*$|# SOLUTION\s*$", re.MULTILINE)
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".py", ".yaml", ".md", ".tpl", ".txt"):
            text = path.read_text()
            assert not marker.search(text), path
            if path.suffix == ".ipynb":
                assert checks.MIME_TYPE not in text and '"outputs": []' in text, path
                assert str(config.REPO_ROOT) not in text, path


def test_marked_files_are_blanked_and_leaks_refused(tmp_path):
    root = _git_repo(tmp_path / "repo", {
        "notebooks/01-x.ipynb": _handout(["x = ..."]),
        "chart/values.yaml": "web:\n  replicas: 3  # SOLUTION\n  # BEGIN SOLUTION\n  port: 80\n  # END SOLUTION\n",
        "notebooks/src/01-x.py": "x = 42  # SOLUTION\n",
    })
    out = tmp_path / "out"
    assert release.release(out, root) == ["chart/values.yaml", "notebooks/01-x.ipynb"]
    assert (out / "chart/values.yaml").read_text() == "web:\n  replicas:\n"

    with pytest.raises(LabError, match="not empty"):
        release.release(out, root)

    evidence = nbformat.v4.new_output("display_data", data={checks.MIME_TYPE: {"passed": True}, "text/plain": "PASS"})
    (root / "notebooks/01-x.ipynb").write_text(_handout(["x = 42"], [evidence]))
    with pytest.raises(LabError) as caught:
        release.release(tmp_path / "leaky", root)
    assert "notebooks/01-x.ipynb: checkpoint evidence" in caught.value.message
    assert "notebooks/01-x.ipynb: stored outputs" in caught.value.message
    assert not (tmp_path / "leaky").exists(), "a refused bundle is removed"


def test_a_broken_marker_names_the_file(tmp_path):
    root = _git_repo(tmp_path / "repo", {"notebooks/01-x.ipynb": _handout(["x = ..."]),
                                         "chart/values.yaml": "# BEGIN SOLUTION\na: 1\n"})
    with pytest.raises(LabError, match="chart/values.yaml: line 1: the block is not closed"):
        release.release(tmp_path / "out", root)
