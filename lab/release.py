"""``lab release DIR``: the student bundle, with nothing in it that reveals a solution.

The bundle is the repository's tracked files minus what only instructors and CI use (the notebook
sources with their solutions, the reference notebooks with their stored outputs, the tests,
benchmarks and the manifests students write themselves in the build tasks), with every file that
carries solution markers (:mod:`lab.solutions`) blanked as in the handouts. Before it returns,
the bundle is scanned: a solution marker, checkpoint evidence, a notebook with stored outputs or a
path of this machine in it is an error, and the half-written bundle is removed.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from lab import checks, config, runner, solutions
from lab.errors import LabError

# Instructor and CI material, and the reference answers of the build tasks (the manifests the
# notebooks' %%writefile cells ask students to write).
EXCLUDED = (
    "notebooks/src/", "reference/", "tests/", "bench/", ".ci/", "docs/instructor-guide.md",
    "manifests/01-storage/database-pv.yaml", "manifests/02-database/services.yaml",
    "manifests/02-database/statefulset.yaml", "manifests/03-web/deployment.yaml", "manifests/03-web/service.yaml",
    "manifests/04-network-policy/database.yaml", "manifests/05-watcher/rbac.yaml",
)


def tracked_files(root: Path = config.REPO_ROOT) -> list[str]:
    """The files git tracks in ``root`` (a release holds nothing that is not committed)."""
    out = runner.run(["git", "-C", root, "ls-files", "-z"], timeout=60,
                     hint="lab release works in a git checkout of the lab").stdout
    return sorted(name for name in out.split("\0") if name)


def _included(name: str) -> bool:
    return not any(name == e or (e.endswith("/") and name.startswith(e)) for e in EXCLUDED)


def _student_text(name: str, text: str) -> str:
    if name.endswith(".md") or not solutions.has_markers(text):  # prose may show the markers
        return text
    try:
        return solutions.split_solutions(text, solutions.HANDOUT, yaml=not name.endswith(".py")) + "\n"
    except solutions.MarkerError as error:
        raise LabError(f"{name}: {error}", hint="fix the solution markers in that file") from None


def leaks(directory: Path, root: Path = config.REPO_ROOT) -> list[str]:
    """What in ``directory`` reveals a solution: "file: reason" for each."""
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory)
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if solutions.has_markers(text):
            found.append(f"{rel}: solution markers")
        if str(root) in text:
            found.append(f"{rel}: contains the path {root}")
        if path.suffix == ".ipynb":
            nb = nbformat.reads(text, as_version=4)
            if checks.MIME_TYPE in text:
                found.append(f"{rel}: checkpoint evidence")
            if any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
                found.append(f"{rel}: stored outputs")
    return found


def release(directory: Path, root: Path = config.REPO_ROOT) -> list[str]:
    """Write the student bundle into ``directory`` (new or empty); returns the files written."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise LabError(f"{directory} is not empty", hint="name a new directory; a release never overwrites one")
    handouts = sorted((root / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    if not handouts:
        raise LabError(f"no handouts in {root / 'notebooks'}", hint="python notebooks/src/build.py writes them")
    written = []
    try:
        for name in filter(_included, tracked_files(root)):
            source, target = root / name, directory / name
            if not source.is_file():
                continue  # deleted in the work tree, not yet committed
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                target.write_text(_student_text(name, source.read_text()))
            except UnicodeDecodeError:
                shutil.copyfile(source, target)
            shutil.copymode(source, target)
            written.append(name)
        found = leaks(directory, root)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    if found:
        shutil.rmtree(directory, ignore_errors=True)
        raise LabError("the bundle would reveal solutions:\n  " + "\n  ".join(found[:20]),
                       hint="rebuild the handouts (python notebooks/src/build.py) and mark the answers "
                            "with # BEGIN SOLUTION / # END SOLUTION")
    return written
