#!/usr/bin/env python3
"""Build the lab notebooks from their sources: the student handouts and the reference notebooks.

The notebooks are written as Python files in the "percent" format (``notebooks/src/NN-name.py``)::

    # %% [markdown]
    # # A heading
    # Some prose.

    # %% tags=["parameters"]
    namespace = "k8s-assignment"

    # %%
    print("a code cell")

One source, two products; solutions are marked with Otter Assign's markers (see lab.solutions):

- ``notebooks/NN-name.ipynb``, the **handouts** students open: no solution, ``solutions = False``,
  no outputs (so no checkpoint evidence and no paths of the machine that built them);
- ``reference/NN-name.ipynb``, the **reference**: the solutions, ``solutions = True``,
  stored with the outputs of a real run (nbval compares them; instructors read them).

A cell's first line ``# NBVAL_CHECK_OUTPUT`` / ``# NBVAL_IGNORE_OUTPUT`` becomes the cell tag
``nbval-check-output`` / ``nbval-ignore-output`` (nbval reads either), so students do not see it.

Usage (from the repository root)::

    python notebooks/src/build.py [NN ...]         # write the handouts and reference notebooks
    python notebooks/src/build.py --check          # exit 1 when a product is out of step with its source
    python notebooks/src/build.py --store DIR      # take executed reference notebooks from DIR (a
                                                   # `lab run --out` directory), minus papermill's additions

Building keeps the stored outputs of every reference code cell whose source did not change, so
editing the prose does not throw away an execution. ``--store`` refuses a notebook whose cells
differ from its reference source (rebuild and run again) or that did not execute cleanly.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

from lab.solutions import HANDOUT, REFERENCE, MarkerError, split_solutions  # noqa: F401 - MarkerError for callers

SRC_DIR = Path(__file__).resolve().parent
NOTEBOOKS_DIR = SRC_DIR.parent
REPO_ROOT = NOTEBOOKS_DIR.parent
# Outside notebooks/: `git grep` over the handouts (notebooks/*.ipynb) must find no solution code.
REFERENCE_DIR = REPO_ROOT / "reference"
NBVAL_MARK = re.compile(r"^# NBVAL_(?P<mode>CHECK|IGNORE)_OUTPUT\s*$")
SOLUTIONS_PARAMETER = re.compile(r"^solutions = True\b", re.MULTILINE)
SOURCE_PATTERN = re.compile(r"^\d{2}-[a-z0-9-]+\.py$")
MARKER = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?:\s+tags=(?P<tags>\[.*\]))?\s*$")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
# What papermill and nbclient add that is not part of the notebook.
INJECTED_TAG = "injected-parameters"
ERROR_TAG = "papermill-error-cell-tag"
CELL_METADATA_NOISE = ("papermill", "execution", "collapsed", "scrolled")


def sources(directory: Path | None = None) -> list[Path]:
    return sorted(p for p in (directory or SRC_DIR).iterdir() if SOURCE_PATTERN.match(p.name))


def parse(text: str) -> list[dict]:
    """Cells of a percent-format source: [{"type": "code"|"markdown", "source": str, "tags": [...]}]."""
    cells: list[dict] = []
    current: dict | None = None
    for line in text.splitlines():
        match = MARKER.match(line)
        if match:
            current = {"type": "markdown" if match.group("markdown") else "code", "lines": [],
                       "tags": json.loads(match.group("tags")) if match.group("tags") else []}
            cells.append(current)
            continue
        if current is None:
            continue  # a header before the first cell
        if current["type"] == "markdown":
            if line.startswith("# "):
                line = line[2:]
            elif line.strip() == "#":
                line = ""
            elif line.strip():
                raise ValueError(f"markdown line not written as a comment: {line!r}")
        current["lines"].append(line)
    out = []
    for cell in cells:
        lines = cell.pop("lines")
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        out.append({**cell, "source": "\n".join(lines)})
    return out


def product_cell(spec: dict, product: str) -> dict:
    """One parsed source cell as ``product`` has it: solutions resolved, the nbval mark as a tag,
    and in the handout ``solutions = False``."""
    if spec["type"] != "code":
        return spec
    source, tags = spec["source"], list(spec["tags"])
    first, _, rest = source.partition("\n")
    mark = NBVAL_MARK.match(first)
    if mark:  # first, so that a cell magic such as %%writefile is the first line again
        source = rest
        tags.append(f"nbval-{mark.group('mode').lower()}-output")
    source = split_solutions(source, product)
    if product == HANDOUT and "parameters" in tags:
        source = SOLUTIONS_PARAMETER.sub("solutions = False", source)
    return {**spec, "source": source, "tags": tags}


def build_notebook(source: Path, previous: nbformat.NotebookNode | None = None,
                   product: str = REFERENCE) -> nbformat.NotebookNode:
    """The ``product`` notebook of ``source``. Reference code cells whose source is unchanged keep
    ``previous``'s outputs and execution count; handouts carry no outputs."""
    kept: dict[str, list] = {}
    for cell in (previous.cells if previous is not None else []):
        kept.setdefault(cell.cell_type + "\0" + cell.source, []).append(cell)
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for number, raw in enumerate(parse(source.read_text()), 1):
        try:
            spec = product_cell(raw, product)
        except MarkerError as error:
            raise SystemExit(f"{source.name}, cell {number}: {error}") from None
        old = (kept.get(spec["type"] + "\0" + spec["source"]) or [None]).pop(0)
        if spec["type"] == "markdown":
            cell = nbformat.v4.new_markdown_cell(spec["source"])
        else:
            cell = nbformat.v4.new_code_cell(spec["source"])
            if old is not None and product == REFERENCE:
                cell.outputs = old.outputs
                cell.execution_count = old.execution_count
        if old is not None and "id" in old:
            cell.id = old.id
        if spec["tags"]:
            cell.metadata["tags"] = list(spec["tags"])
        nb.cells.append(cell)
    return nb


def target(source: Path, product: str = REFERENCE) -> Path:
    return (REFERENCE_DIR if product == REFERENCE else NOTEBOOKS_DIR) / (source.stem + ".ipynb")


def _read(path: Path) -> nbformat.NotebookNode | None:
    return nbformat.read(str(path), as_version=4) if path.exists() else None


def cell_sources(nb: nbformat.NotebookNode) -> list[tuple[str, str, list]]:
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def _stored_state(nb: nbformat.NotebookNode) -> list:
    """What a handout must not carry beyond its cells: outputs and execution counts."""
    return [(c.get("outputs"), c.get("execution_count")) for c in nb.cells if c.cell_type == "code"]


def _selected(source: Path, names: list[str] | None) -> bool:
    return not names or source.stem[:2] in names or source.stem in names or target(source).name in names


def build(check: bool = False, names: list[str] | None = None) -> list[str]:
    """Write (or with ``check``, compare) both products of the notebooks (those ``names``d: NN,
    stem or file name; default every one); returns the paths out of step, relative to notebooks/."""
    stale = []
    for source in sources():
        if not _selected(source, names):
            continue
        for product in (HANDOUT, REFERENCE):
            path = target(source, product)
            previous = _read(path)
            nb = build_notebook(source, previous, product)
            if (previous is None or cell_sources(previous) != cell_sources(nb)
                    or (product == HANDOUT and _stored_state(previous) != _stored_state(nb))):
                stale.append(str(path.relative_to(REPO_ROOT)))
            if not check:
                path.parent.mkdir(exist_ok=True)
                nbformat.write(nb, str(path))
    return stale


def clean_executed(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """An executed notebook minus what papermill adds: the injected-parameters cell, its error
    marker cells, and run metadata (timings, papermill's notebook and cell metadata)."""
    nb.cells = [c for c in nb.cells
                if not {INJECTED_TAG, ERROR_TAG} & set(c.metadata.get("tags", []))]
    for cell in nb.cells:
        for key in CELL_METADATA_NOISE:
            cell.metadata.pop(key, None)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def store(run_dir: Path, names: list[str] | None = None) -> list[str]:
    """Copy executed reference notebooks from ``run_dir`` into reference/ (only those with
    a source here)."""
    stored = []
    for source in sources():
        executed_path = run_dir / (source.stem + ".ipynb")
        if not _selected(source, names):
            continue
        if not executed_path.exists():
            continue
        executed = clean_executed(nbformat.read(str(executed_path), as_version=4))
        expected = build_notebook(source)
        if cell_sources(executed) != cell_sources(expected):
            raise SystemExit(f"{executed_path}: its cells differ from {source.name}; rebuild and run it again")
        errors = [i for i, c in enumerate(executed.cells) if c.cell_type == "code"
                  for o in c.get("outputs", []) if o.get("output_type") == "error"]
        unexecuted = [i for i, c in enumerate(executed.cells) if c.cell_type == "code" and c.execution_count is None]
        if errors or unexecuted:
            raise SystemExit(f"{executed_path}: cells {errors or unexecuted} failed or did not run; not storing it")
        nbformat.write(executed, str(target(source)))
        stored.append(str(target(source).relative_to(REPO_ROOT)))
    return stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report notebooks out of step with their source")
    parser.add_argument("--store", metavar="RUN_DIR", type=Path, help="store executed notebooks from RUN_DIR")
    parser.add_argument("names", nargs="*", help="only these notebooks (NN, stem or file name; default: all)")
    args = parser.parse_args(argv)
    if args.store:
        stored = store(args.store, args.names)
        print("stored: " + (", ".join(stored) or "nothing"))
        return 0
    stale = build(check=args.check, names=args.names)
    if args.check:
        if stale:
            print("out of step with notebooks/src: " + ", ".join(stale)
                  + " (python notebooks/src/build.py rebuilds them)")
            return 1
        print("handouts and reference notebooks match their sources")
        return 0
    built = [s.stem for s in sources() if _selected(s, args.names)]
    print("built: " + ", ".join(built) + (f" (changed: {', '.join(stale)})" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
