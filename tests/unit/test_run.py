"""The notebook runner: selection, parameters, and real papermill runs on tiny notebooks."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from click.testing import CliRunner

from lab import execute
from lab.cli import cli
from lab.errors import LabError


@pytest.fixture
def three(make_notebook):
    """01-first, 02-second, 10-tenth plus files the runner must ignore."""
    paths = [
        make_notebook("02-second.ipynb", ["y = 2"]),
        make_notebook("01-first.ipynb", ["x = 1"], parameters="count = 1"),
        make_notebook("10-tenth.ipynb", ["z = 10"]),
    ]
    make_notebook("scratch.ipynb", ["pass"])
    make_notebook("1-too-short.ipynb", ["pass"])
    (make_notebook.dir / "03-not-a-notebook.txt").write_text("")
    return make_notebook.dir, sorted(paths)


@pytest.fixture
def no_execution(monkeypatch):
    """Fail loudly if anything reaches the engine."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("execute_one must not be called")

    monkeypatch.setattr(execute, "execute_one", refuse)
    return calls


# ------------------------------------------------------------------------------- discovery


def test_discover_finds_numbered_notebooks_in_name_order(three):
    directory, paths = three
    assert [p.name for p in execute.discover(directory)] == ["01-first.ipynb", "02-second.ipynb", "10-tenth.ipynb"]


def test_discover_of_missing_directory_is_empty(tmp_path):
    assert execute.discover(tmp_path / "nope") == []


@pytest.mark.parametrize("name", ["02-second.ipynb", "02-second", "02", "2", "notebooks/02-second.ipynb"])
def test_resolve_accepts_file_name_stem_and_number(three, name):
    _, paths = three
    assert execute.resolve(name, paths).name == "02-second.ipynb"


def test_resolve_unknown_name_lists_the_choices(three):
    _, paths = three
    with pytest.raises(LabError) as err:
        execute.resolve("07", paths)
    assert "unknown notebook '07'" in err.value.message
    assert "01-first.ipynb, 02-second.ipynb, 10-tenth.ipynb" in err.value.hint


def test_select_defaults_to_everything(three):
    _, paths = three
    assert execute.select(paths) == paths


def test_select_named_runs_prerequisites_up_to_the_last_named(three):
    _, paths = three
    assert [p.name[:2] for p in execute.select(paths, ["02"])] == ["01", "02"]


def test_select_only_runs_exactly_the_named(three):
    _, paths = three
    assert [p.name[:2] for p in execute.select(paths, ["10", "01"], only=True)] == ["01", "10"]


def test_select_from_drops_earlier_notebooks(three):
    _, paths = three
    assert [p.name[:2] for p in execute.select(paths, start="02")] == ["02", "10"]
    assert [p.name[:2] for p in execute.select(paths, ["10"], start="02")] == ["02", "10"]


def test_select_rejects_only_without_names_and_from_past_the_end(three):
    _, paths = three
    with pytest.raises(LabError, match="--only"):
        execute.select(paths, only=True)
    with pytest.raises(LabError, match="nothing to run"):
        execute.select(paths, ["01"], start="10")


# ------------------------------------------------------------------------------ parameters


def test_parameters_are_read_as_yaml_scalars():
    params = execute.parse_parameters(
        ["n=3", "flag=true", "ratio=1.5", "name=web", "quoted='3'", "empty=", "url=http://x:30080/a=b"]
    )
    assert params == {
        "n": 3, "flag": True, "ratio": 1.5, "name": "web", "quoted": "3", "empty": "",
        "url": "http://x:30080/a=b",
    }
    assert type(params["n"]) is int and type(params["flag"]) is bool


@pytest.mark.parametrize("item", ["novalue", "=3", "1x=2", "a-b=1", "x=[1, 2]", "x={a: 1}", "x=a: b: c"])
def test_malformed_parameters_are_rejected(item):
    with pytest.raises(LabError):
        execute.parse_parameters([item])


def test_bad_parameter_executes_nothing(three, tmp_path, no_execution):
    directory, _ = three
    out = tmp_path / "out"
    with pytest.raises(LabError, match="malformed parameter 'count'"):
        execute.run(parameters=["count"], notebooks_dir=directory, out_dir=out)
    assert not out.exists()
    assert no_execution == []


def test_unknown_parameter_names_what_each_notebook_accepts(three, tmp_path, no_execution):
    directory, _ = three
    out = tmp_path / "out"
    with pytest.raises(LabError) as err:
        execute.run(["02"], parameters=["cuont=3"], notebooks_dir=directory, out_dir=out)
    assert "unknown parameter cuont" in err.value.message
    assert "01-first.ipynb: count" in err.value.hint
    assert "02-second.ipynb: (no parameters cell)" in err.value.hint
    assert not out.exists()
    assert no_execution == []


def test_parameter_declared_only_outside_the_selection_is_unknown(three, tmp_path, no_execution):
    directory, _ = three
    with pytest.raises(LabError, match="unknown parameter count"):
        execute.run(["02"], parameters=["count=3"], only=True, notebooks_dir=directory, out_dir=tmp_path / "o")


def test_unknown_notebook_executes_nothing(three, tmp_path, no_execution):
    directory, _ = three
    out = tmp_path / "out"
    with pytest.raises(LabError, match="unknown notebook 'nope'"):
        execute.run(["nope"], notebooks_dir=directory, out_dir=out)
    assert not out.exists()


def test_no_notebooks_is_an_error(tmp_path, no_execution):
    with pytest.raises(LabError, match="no notebooks found"):
        execute.run(notebooks_dir=tmp_path)


def test_parameters_go_only_to_notebooks_that_declare_them(three, tmp_path, monkeypatch):
    directory, _ = three
    seen = {}
    monkeypatch.setattr(execute, "execute_one", lambda nb, out, params, cwd, cell_timeout: seen.__setitem__(nb.name, params))
    report = execute.run(["02"], parameters=["count=4"], notebooks_dir=directory, out_dir=tmp_path / "o")
    assert report.ok
    assert seen == {"01-first.ipynb": {"count": 4}, "02-second.ipynb": {}}


# ------------------------------------------------------------------------ real executions


def test_successful_run_executes_in_order_with_parameters(make_notebook, tmp_path):
    make_notebook(
        "01-write.ipynb",
        ["from pathlib import Path\nPath('seen.txt').write_text(f'{type(count).__name__}:{count}')"],
        parameters="count = 1",
    )
    make_notebook("02-read.ipynb", ["from pathlib import Path\nassert Path('seen.txt').read_text() == 'int:3'"])
    out = tmp_path / "runs" / "mine"

    report = execute.run(parameters=["count=3"], notebooks_dir=make_notebook.dir, out_dir=out)

    assert report.ok, report.results
    # cwd is the notebooks directory, and the injected value was an int
    assert (make_notebook.dir / "seen.txt").read_text() == "int:3"
    data = json.loads((out / "report.json").read_text())
    assert data["status"] == "passed"
    assert [(r["notebook"], r["status"]) for r in data["results"]] == [
        ("01-write.ipynb", "passed"), ("02-read.ipynb", "passed"),
    ]
    assert all(r["duration_s"] > 0 for r in data["results"])
    executed = nbformat.read(str(out / "01-write.ipynb"), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "count = 3" in injected[0].source
    md = (out / "report.md").read_text()
    assert "| 01-write.ipynb | passed |" in md and "| 02-read.ipynb | passed |" in md


def test_failure_stops_the_run_and_the_report_names_the_cell(make_notebook, tmp_path):
    make_notebook(
        "01-broken.ipynb",
        ["a = 1", "raise ValueError(f'bad value {level}')", "from pathlib import Path\nPath('after-error.txt').touch()"],
        parameters="level = 'low'",
    )
    make_notebook("02-later.ipynb", ["from pathlib import Path\nPath('later.txt').touch()"])
    out = tmp_path / "out"

    result = CliRunner().invoke(
        cli, ["run", "--notebooks-dir", str(make_notebook.dir), "--out", str(out), "-p", "level=high"]
    )

    assert result.exit_code == 1, result.output
    assert "failed 01-broken.ipynb in cell 2" in result.output
    assert "01-broken.ipynb failed" in result.stderr
    assert "not run: 02-later.ipynb" in result.output
    assert "Traceback" not in result.output
    assert not (make_notebook.dir / "after-error.txt").exists()
    assert not (make_notebook.dir / "later.txt").exists()
    data = json.loads((out / "report.json").read_text())
    assert data["status"] == "failed"
    first, second = data["results"]
    assert first["status"] == "failed"
    # cell 0 is the parameters cell, 1 is `a = 1`, 2 raises (papermill's injected cell not counted)
    assert first["error"]["cell_index"] == 2
    assert first["error"]["ename"] == "ValueError"
    assert first["error"]["evalue"] == "bad value high"
    assert second["status"] == "not run" and second["output"] is None
    assert not (out / "02-later.ipynb").exists()
    md = (out / "report.md").read_text()
    assert "| 01-broken.ipynb | failed |" in md and "ValueError: bad value high" in md
    assert "| 02-later.ipynb | not run |" in md


# ------------------------------------------------------------------------------------- CLI


def test_cli_unknown_notebook_is_a_short_error(three, tmp_path):
    directory, _ = three
    result = CliRunner().invoke(cli, ["run", "--notebooks-dir", str(directory), "--out", str(tmp_path / "o"), "99"])
    assert result.exit_code == 1
    assert "error: unknown notebook '99'" in result.output
    assert "hint: valid notebooks: 01-first.ipynb" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_cli_default_out_dir_is_a_utc_timestamp_under_runs(three, tmp_path, monkeypatch):
    directory, _ = three
    monkeypatch.setattr(execute, "execute_one", lambda nb, out, params, cwd, cell_timeout: out.write_text("{}"))
    monkeypatch.setattr(execute, "default_runs_dir", lambda: tmp_path / "runs")
    result = CliRunner().invoke(cli, ["run", "--notebooks-dir", str(directory), "01", "--only"])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.endswith("Z") and len(run_dir.name) == len("20250101T000000Z")
    assert sorted(p.name for p in run_dir.iterdir()) == ["01-first.ipynb", "report.json", "report.md"]


def test_a_killed_run_leaves_no_kernel_sockets_beside_the_notebooks(make_notebook, tmp_path):
    """`lab run` killed mid-cell (a closed terminal, a CI timeout) cannot clean up after its kernel:
    whatever the kernel's transport leaves must not land in the student's notebooks folder."""
    make_notebook("01-slow.ipynb", ["from pathlib import Path\nPath('started').touch()",
                                    "import time\ntime.sleep(60)"])
    before = set(make_notebook.dir.iterdir())
    run = subprocess.Popen([sys.executable, "-m", "lab.cli", "run", "--notebooks-dir", str(make_notebook.dir),
                            "--out", str(tmp_path / "out")], start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (make_notebook.dir / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (make_notebook.dir / "started").exists(), "the notebook never started"
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert set(make_notebook.dir.iterdir()) - before == {make_notebook.dir / "started"}
