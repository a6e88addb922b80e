"""The student's path in a real browser: open a handout in JupyterLab, write a build task's answer
into its cell, run the cells, and read the checkpoint's rendered PASS, or its FAIL with the hint.

A :class:`BuildTask` names a handout, the cell the student writes, a right and a wrong answer, the
cells the student runs and the checkpoint that judges them. :data:`TASKS` holds notebook 01's kind
configuration: its checkpoint reads the student's file and compares it with a running cluster only
when one runs, so it needs none. Another handout's build task is one more entry, e.g. (the cell's
text, answers and check id are the handout's)::

    BuildTask("03-database", notebook="03-database.ipynb", cell="%%writefile work/database-service.yaml",
              right=..., wrong=..., runs=(...), check_id="build.db-service", wrong_says="3306", hint="...",
              needs_cluster=True, timeout_s=600)

``needs_cluster`` passes the kubeconfig and Docker on to the kernel (otherwise it gets neither, so
no cell can reach a cluster) and expects the notebooks before it to have run on that cluster.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from tests.browser.jupyterlab import JupyterLab, Student

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
REFERENCE = ROOT / "reference"
SHIPPED_SETTINGS = ROOT / "jupyter" / "lab" / "settings" / "overrides.d" / "k8s-lab.json"
# JupyterLab asks about news once the app is restored and its settings are loaded: well within this.
NEWS_PROMPT_WAIT_MS = 3000


@dataclass(frozen=True)
class BuildTask:
    name: str
    notebook: str  # a handout in notebooks/
    cell: str  # text that only the student's cell contains, in the handout as it ships
    right: str  # the whole source of that cell, answered right
    wrong: str  # ... and answered wrong
    runs: tuple[str, ...]  # the cells the student runs, in order, each by text only it contains
    check_id: str
    wrong_says: str  # part of the FAIL message for the wrong answer: it names the problem
    hint: str  # part of the checkpoint's hint
    needs_cluster: bool = False
    timeout_s: float = 90


def reference_cell(notebook: str, starts: str) -> str:
    """The reference's source of the cell that starts with ``starts``: the right answer."""
    cells = nbformat.read(str(REFERENCE / notebook), as_version=4).cells
    [source] = [c.source for c in cells if c.cell_type == "code" and c.source.startswith(starts)]
    return source


# ---------------------------------------------------------------- 01: the kind configuration

KIND_CONFIG_CELL = "%%writefile work/kind-cluster.yaml"
KIND_CONFIG = reference_cell("01-kind-cluster.ipynb", KIND_CONFIG_CELL)

TASKS = [
    BuildTask("kind-config", notebook="01-kind-cluster.ipynb", cell=KIND_CONFIG_CELL,
              right=KIND_CONFIG, wrong=KIND_CONFIG.replace("listenAddress: 127.0.0.1", "listenAddress: 0.0.0.0"),
              # the parameters, the notebook's start, the student's file and its checkpoint: the
              # steps between them bring a cluster up and look at it
              runs=('cluster = "k8s-lab"', "nb = notebook.start(", KIND_CONFIG_CELL, 'checks.checkpoint("build.kind-config"'),
              check_id="build.kind-config",
              wrong_says="nodes[0].extraPortMappings listens on 0.0.0.0, not on this machine only",
              hint="kind's configuration reference"),
]

# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=TASKS, ids=lambda t: t.name)
def task(request) -> BuildTask:
    return request.param


def _place(task: BuildTask, root: Path) -> None:
    """Put the task's handout into ``root`` as it ships (again: JupyterLab may have autosaved a
    previous test's answer into it), without the work folder of a previous test."""
    shutil.copyfile(NOTEBOOKS / task.notebook, root / task.notebook)
    shutil.rmtree(root / "work", ignore_errors=True)


def _serve(tmp: Path, task: BuildTask | None = None, **options) -> JupyterLab:
    """A temporary copy of notebooks/ (the handouts as they ship), served by JupyterLab."""
    root = tmp / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns("src", "work", "__pycache__", ".ipynb_checkpoints"))
    # Without a kubeconfig no cell can reach a cluster, and without a Docker engine no kind cluster
    # of this machine is seen either; LAB_CLUSTER etc. pass through for tasks that need one.
    env = {} if task is not None and task.needs_cluster else {
        "KUBECONFIG": str(tmp / "no-kubeconfig"), "DOCKER_HOST": f"unix://{tmp / 'no-docker.sock'}"}
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
    student.run_cells(*task.runs, timeout_s=task.timeout_s)
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
    student.run_cells(*task.runs, timeout_s=task.timeout_s)
    rendered = _checkpoint(student, task)
    student.page.screenshot(path=artifacts / f"{task.name}-fail.png")
    text = " ".join(rendered.inner_text().split())
    assert text.startswith(f"FAIL {task.check_id}"), text
    assert task.wrong_says in text, text
    assert f"hint: {task.hint}" in text, text
    assert _verdict_colour(rendered) == "rgb(207, 34, 46)"  # red
    assert student.errors() == []
    assert student.popups() == []


def test_the_untouched_handout_fails_with_a_message(student, task, artifacts):
    """The handout as it ships: its cells run, and the checkpoint FAILs instead of raising."""
    student.run_cells(*task.runs, timeout_s=task.timeout_s)
    rendered = _checkpoint(student, task)
    student.page.screenshot(path=artifacts / f"{task.name}-untouched.png")
    text = rendered.inner_text()
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
