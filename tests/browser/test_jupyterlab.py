"""The student's path in a real browser: open a notebook in JupyterLab, write a build task's answer
into its cell, run the cells, and read the checkpoint's rendered PASS, or its FAIL with the hint.

A :class:`BuildTask` names a notebook, the cell the student writes, a right and a wrong answer,
and the checkpoint that judges them. :data:`TASKS` holds a small notebook written here whose
checkpoint needs no cluster (a policy prediction judged by ``checks.probe_matrix_clean``); a
handout's build task is one more entry, e.g. (the cell's text, answers and check id are the
handout's)::

    BuildTask("03-database", notebook="03-database.ipynb", cell="%%writefile work/database-service.yaml",
              right=..., wrong=..., check_id="db.service", wrong_says="port", hint="3306",
              needs_cluster=True, timeout_s=600)

``needs_cluster`` passes the kubeconfig on to the kernel (otherwise it gets none, so no cell can
reach a cluster) and expects the notebooks before it to have run on that cluster.
"""
from __future__ import annotations

import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.browser.jupyterlab import JupyterLab, Student

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
SHIPPED_SETTINGS = ROOT / "jupyter" / "lab" / "settings" / "overrides.d" / "k8s-lab.json"
# JupyterLab asks about news once the app is restored and its settings are loaded: well within this.
NEWS_PROMPT_WAIT_MS = 3000


@dataclass(frozen=True)
class BuildTask:
    name: str
    notebook: str  # path in the temporary copy of notebooks/
    cell: str  # text that only the student's cell contains, in the notebook as it ships
    right: str  # the whole source of that cell, answered right
    wrong: str  # ... and answered wrong
    check_id: str
    wrong_says: str  # part of the FAIL message for the wrong answer: it names the problem
    hint: str  # part of the checkpoint's hint
    write: Callable[[Path], None] | None = None  # writes the notebook into the copy (None: it ships)
    needs_cluster: bool = False
    timeout_s: float = 90


# ------------------------------------------------------------------ a notebook that needs no cluster

PREDICTION_CELL = "%%writefile prediction.yaml"
PREDICTION_HINT = "the database takes connections from web and backup only; every Pod may reach web on port 80"


def _prediction(other_to_database: str) -> str:
    return textwrap.dedent(f"""\
        {PREDICTION_CELL}
        # Under notebook 05's policies, how does each connect end: connected or timeout?
        - {{source: web, destination: database, port: 3306, expected: connected}}
        - {{source: other, destination: database, port: 3306, expected: {other_to_database}}}
        - {{source: other, destination: web, port: 80, expected: connected}}
        """)


def write_prediction_notebook(directory: Path) -> None:
    """A build task in the handouts' shape: the student fills a %%writefile cell, a checkpoint
    cell judges it. The checkpoint compares the prediction with a matrix `lab probe` measured
    under notebook 05's policies, through the lab's own check, so it needs no cluster."""
    import nbformat

    cells = [
        nbformat.v4.new_markdown_cell("# Predict the probe matrix\n\nFill in `expected` for every row, "
                                      "then run the checkpoint."),
        nbformat.v4.new_code_cell(textwrap.dedent("""\
            from lab import checks

            # No cluster here: the evidence names a fixed identity instead of reading one.
            checks.configure(identity={"context": "none", "purpose": "browser test"})""")),
        nbformat.v4.new_code_cell(_prediction("___")),
        nbformat.v4.new_code_cell(textwrap.dedent(f"""\
            import pandas as pd
            import yaml

            # What `lab probe` measured once notebook 05's policies were applied.
            measured = pd.DataFrame([
                {{"source": "web", "destination": "database", "port": 3306, "observed": "connected"}},
                {{"source": "other", "destination": "database", "port": 3306, "observed": "timeout"}},
                {{"source": "other", "destination": "web", "port": 80, "observed": "connected"}},
            ])


            def prediction_matches():
                with open("prediction.yaml") as f:
                    predicted = pd.DataFrame(yaml.safe_load(f))
                matrix = measured.merge(predicted, on=["source", "destination", "port"], how="left")
                matrix["correct"] = matrix["expected"] == matrix["observed"]
                return checks.probe_matrix_clean(matrix)


            checks.checkpoint("browser.policy-prediction", points=1, verify=prediction_matches,
                              hint={PREDICTION_HINT!r})""")),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, str(directory / "browser-prediction.ipynb"))


TASKS = [
    BuildTask("policy-prediction", notebook="browser-prediction.ipynb", cell=PREDICTION_CELL,
              right=_prediction("timeout"), wrong=_prediction("connected"),
              check_id="browser.policy-prediction",
              wrong_says="source=other; destination=database; port=3306; expected=connected; observed=timeout",
              hint=PREDICTION_HINT, write=write_prediction_notebook),
]

# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=TASKS, ids=lambda t: t.name)
def task(request) -> BuildTask:
    return request.param


def _place(task: BuildTask, root: Path) -> None:
    """Put the task's notebook into ``root`` as it ships (again: JupyterLab may have autosaved a
    previous test's answer into it)."""
    if task.write is not None:
        task.write(root)
    else:
        shutil.copyfile(NOTEBOOKS / task.notebook, root / task.notebook)


def _serve(tmp: Path, task: BuildTask | None = None, **options) -> JupyterLab:
    """A temporary copy of notebooks/ (plus the task's own notebook), served by JupyterLab."""
    root = tmp / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns("src", "__pycache__", ".ipynb_checkpoints"))
    if task is not None:
        _place(task, root)
    # Without a kubeconfig no cell can reach a cluster; LAB_CLUSTER etc. pass through for tasks that need one.
    env = {} if task is not None and task.needs_cluster else {"KUBECONFIG": str(tmp / "no-kubeconfig")}
    return JupyterLab(root, tmp / "profile", env=env, **options).start()


@pytest.fixture(scope="module")
def jupyterlab(task, tmp_path_factory):
    lab = _serve(tmp_path_factory.mktemp(f"jupyterlab-{task.name}"), task)
    yield lab
    lab.stop()


@pytest.fixture
def student(jupyterlab, task, new_page) -> Student:
    """A student in a new tab, with the task's notebook open as it ships."""
    _place(task, jupyterlab.root)
    student = Student(new_page(), jupyterlab)
    student.open(task.notebook)
    return student


def _checkpoint(student: Student, task: BuildTask):
    from playwright.sync_api import expect

    rendered = student.page.locator(".k8s-lab-checkpoint").filter(
        has=student.page.locator("b", has_text=re.compile(rf"^{re.escape(task.check_id)}$")))
    expect(rendered, f"one rendered checkpoint {task.check_id}").to_have_count(1)
    rendered.evaluate("e => e.scrollIntoView({block: 'center'})")  # in the screenshot, with its cell
    return rendered


def _verdict_colour(rendered) -> str:
    return rendered.locator("b").first.evaluate("b => getComputedStyle(b).color")


# ----------------------------------------------------------------------------------------- tests


def test_right_answer_shows_the_checkpoint_pass(student, task, artifacts):
    student.write(task.cell, task.right)
    student.run_all(task.timeout_s)
    rendered = _checkpoint(student, task)
    student.page.screenshot(path=artifacts / f"{task.name}-pass.png")
    text = rendered.inner_text()
    assert text.startswith(f"PASS {task.check_id}"), text
    assert "hint" not in text, text
    assert _verdict_colour(rendered) == "rgb(26, 127, 55)"  # rendered HTML (green), not the plain-text line
    assert student.errors() == []
    assert student.popups() == []


def test_wrong_answer_shows_the_fail_with_its_hint(student, task, artifacts):
    student.write(task.cell, task.wrong)
    student.run_all(task.timeout_s)
    rendered = _checkpoint(student, task)
    student.page.screenshot(path=artifacts / f"{task.name}-fail.png")
    text = " ".join(rendered.inner_text().split())
    assert text.startswith(f"FAIL {task.check_id}"), text
    assert task.wrong_says in text, text
    assert f"hint: {task.hint}" in text, text
    assert _verdict_colour(rendered) == "rgb(207, 34, 46)"  # red
    assert student.errors() == []
    assert student.popups() == []


def test_the_untouched_notebook_fails_and_runs_to_the_end(student, task):
    """The handout as it ships: every cell runs, the checkpoint FAILs instead of raising."""
    student.run_all(task.timeout_s)
    text = _checkpoint(student, task).inner_text()
    assert text.startswith(f"FAIL {task.check_id}"), text
    assert student.errors() == []


def test_shipped_settings_leave_no_first_run_popup(student, jupyterlab, artifacts):
    """A first visit with the lab's JupyterLab settings: nothing asks for the student's attention
    (the tests above also look again once the cells have run)."""
    schema = jupyterlab.get_json("lab/api/settings/@jupyterlab/apputils-extension:notification")["schema"]
    defaults = {key: spec.get("default") for key, spec in schema["properties"].items()}
    # Overrides change a plugin's defaults, so a student's own choice still wins.
    assert (defaults["fetchNews"], defaults["checkForUpdates"]) == ("false", False), (
        f"the server does not serve {SHIPPED_SETTINGS.relative_to(ROOT)}: `make venv-notebook` installs it")
    student.page.wait_for_timeout(NEWS_PROMPT_WAIT_MS)
    assert student.popups() == []


def test_without_the_shipped_settings_the_news_prompt_appears(tmp_path, new_page):
    """The pop-up check can fail: the same first visit without the lab's settings folder gets
    JupyterLab's news prompt."""
    empty = tmp_path / "no-settings"
    empty.mkdir()
    lab = _serve(tmp_path, app_settings_dir=empty)
    try:
        page = new_page()
        page.goto(lab.url())
        page.locator(".Toastify__toast").first.wait_for(timeout=30_000)
        popups = Student(page, lab).popups()
        assert any("Jupyter news" in p for p in popups), popups
        assert any("behind the status bar's bell" in p for p in popups), popups
    finally:
        lab.stop()
