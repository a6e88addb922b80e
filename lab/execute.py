"""Headless notebook runner: executes the lab's ordered notebooks with papermill.

Notebooks live in ``notebooks/`` as ``NN-name.ipynb`` and run in name order. Every run writes a
folder (``runs/<UTC timestamp>/`` unless told otherwise) holding the executed notebooks plus
``report.json`` and ``report.md``. All input is checked before anything executes; the run stops
at the first notebook that fails.

The engine boundary is :func:`execute_one`: the only place that talks to papermill's executor.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import yaml

from lab import timing, yamldoc
from lab.config import REPO_ROOT
from lab.errors import LabError

KERNEL_NAME = "python3"
NOTEBOOK_PATTERN = re.compile(r"^(\d{2})-.+\.ipynb$")
DEFAULT_CELL_TIMEOUT = 1200  # seconds; a cell that waits longer than this is stuck, not slow
REPORT_JSON = "report.json"
REPORT_MD = "report.md"

# papermill tags the cells it adds to a notebook; they are not part of the notebook the student wrote.
_INJECTED_TAG = "injected-parameters"
_ERROR_MARKER_TAG = "papermill-error-cell-tag"


def default_notebooks_dir() -> Path:
    return REPO_ROOT / "notebooks"


def default_runs_dir() -> Path:
    return REPO_ROOT / "runs"


# --------------------------------------------------------------------------------------------
# Discovery and selection
# --------------------------------------------------------------------------------------------


def discover(notebooks_dir: Path | None = None) -> list[Path]:
    """The lab's notebooks (``NN-*.ipynb``) in ``notebooks_dir``, sorted by file name."""
    directory = Path(notebooks_dir or default_notebooks_dir())
    if not directory.is_dir():
        return []
    return sorted(
        (p for p in directory.iterdir() if p.is_file() and NOTEBOOK_PATTERN.match(p.name)),
        key=lambda p: p.name,
    )


def _choices(notebooks: Sequence[Path]) -> str:
    return ", ".join(p.name for p in notebooks) or "(none)"


def resolve(name: str, notebooks: Sequence[Path]) -> Path:
    """Find a notebook by full file name, stem, or its ``NN`` prefix (``03`` or ``3``)."""
    wanted = name.strip()
    wanted_base = Path(wanted).name  # tolerate "notebooks/01-x.ipynb" as typed from the repo root
    for nb in notebooks:
        if wanted_base in (nb.name, nb.stem):
            return nb
    if wanted.isdigit():
        matches = [nb for nb in notebooks if int(NOTEBOOK_PATTERN.match(nb.name).group(1)) == int(wanted)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise LabError(
                f"notebook number {wanted!r} is ambiguous: {_choices(matches)}",
                "name the notebook by its file name or stem",
            )
    raise LabError(
        f"unknown notebook {name!r}",
        f"valid notebooks: {_choices(notebooks)} (by file name, stem or number)",
    )


def select(
    notebooks: Sequence[Path],
    names: Sequence[str] = (),
    start: str | None = None,
    only: bool = False,
) -> list[Path]:
    """Choose which notebooks to run, in lab order.

    * no names: every notebook;
    * names: everything up to and including the last one named (earlier notebooks set up the
      state later ones need); with ``only``, just the named notebooks;
    * ``start``: drop the notebooks before it.
    """
    if not notebooks:
        raise LabError("no notebooks found", "notebooks are files named NN-name.ipynb in notebooks/")
    named = [resolve(n, notebooks) for n in names]
    if only and not named:
        raise LabError("--only needs at least one notebook name", f"valid notebooks: {_choices(notebooks)}")
    order = list(notebooks)
    if only:
        chosen = [nb for nb in order if nb in named]
    elif named:
        last = max(order.index(nb) for nb in named)
        chosen = order[: last + 1]
    else:
        chosen = order
    if start is not None:
        first = resolve(start, notebooks)
        chosen = [nb for nb in chosen if order.index(nb) >= order.index(first)]
        if not chosen:
            raise LabError(
                f"nothing to run: --from {start} comes after every selected notebook",
                "drop --from or name a later notebook",
            )
    return chosen


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_parameters(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``key=value`` strings into a dict; values are read as YAML scalars (3, true, 1.5, x)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not _IDENTIFIER.match(key):
            raise LabError(
                f"malformed parameter {item!r}",
                "write parameters as -p name=value, with a Python identifier as the name",
            )
        try:
            value = yamldoc.load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise LabError(f"cannot read the value of parameter {key!r}: {raw!r}", f"quote it ({exc.__class__.__name__})")
        if isinstance(value, (_dt.date, _dt.datetime)):
            value = raw.strip()  # a date stays the text that was typed
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise LabError(
                f"parameter {key!r} must be a single value, got {type(value).__name__}: {raw!r}",
                "values are YAML scalars such as 3, true, 1.5 or text; quote text that looks like YAML",
            )
        params[key] = value
    return params


def notebook_parameters(notebook: Path) -> dict[str, dict]:
    """The parameters declared in the cell tagged ``parameters`` (papermill's inspection)."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def plan_parameters(notebooks: Sequence[Path], params: dict[str, Any]) -> dict[Path, dict[str, Any]]:
    """Which parameters go to which notebook.

    A parameter goes to every selected notebook whose ``parameters`` cell declares it; one that no
    selected notebook declares is an error.
    """
    declared = {nb: notebook_parameters(nb) for nb in notebooks}
    unknown = [k for k in params if not any(k in d for d in declared.values())]
    if unknown:
        accepted = "; ".join(
            f"{nb.name}: {', '.join(sorted(d)) or '(no parameters cell)'}" for nb, d in declared.items()
        )
        raise LabError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"for {', '.join(nb.name for nb in notebooks)}",
            f"parameters each notebook accepts: {accepted}",
        )
    return {nb: {k: v for k, v in params.items() if k in d} for nb, d in declared.items()}


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------


@dataclass
class CellError:
    cell_index: int | None  # index of the failing cell in the source notebook (0-based)
    execution_count: int | None
    ename: str
    evalue: str


@dataclass
class NotebookResult:
    notebook: str
    status: str  # passed | failed | not run
    duration_s: float = 0.0
    output: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    error: CellError | None = None
    # duration_s split: kernel start, waiting on the cluster, the lab's own work, the rest of the cells
    time_split: dict[str, float] = field(default_factory=dict)


@dataclass
class RunReport:
    out_dir: str
    notebooks_dir: str
    started: str
    finished: str | None = None
    status: str = "running"
    results: list[NotebookResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


def execute_one(notebook: Path, output: Path, parameters: dict[str, Any], cwd: Path, cell_timeout: int | None) -> None:
    """Execute one notebook with papermill (kernel python3, working directory ``cwd``).

    Raises papermill's ``PapermillExecutionError`` when a cell fails; the executed notebook is
    written to ``output`` either way.
    """
    import papermill
    from traitlets.config import Config

    # The kernel only ever talks to this process: Unix sockets instead of open TCP ports on the
    # host (and no "running over TCP without encryption" warning for every notebook), made in a
    # private temporary folder, not the notebooks' folder, where a killed kernel would leave them.
    with tempfile.TemporaryDirectory(prefix="lab-kernel-") as sockets:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters or None,
            kernel_name=KERNEL_NAME,
            cwd=str(cwd),
            progress_bar=False,
            log_output=False,
            execution_timeout=cell_timeout,
            config=Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}}),
        )


def _source_cell_index(output: Path, executed_index: int) -> int:
    """Map papermill's index (counted in the parameterized notebook) back to the source notebook."""
    import nbformat

    try:
        nb = nbformat.read(str(output), as_version=4)
    except Exception:  # noqa: BLE001 - the index is a courtesy; keep papermill's when unreadable
        return executed_index
    cells = [c for c in nb.cells if _ERROR_MARKER_TAG not in c.get("metadata", {}).get("tags", [])]
    injected = sum(1 for c in cells[:executed_index] if _INJECTED_TAG in c.get("metadata", {}).get("tags", []))
    return executed_index - injected


def _describe_failure(exc: BaseException, output: Path) -> CellError:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return CellError(
            cell_index=_source_cell_index(output, exc.cell_index),
            execution_count=exc.exec_count,
            ename=exc.ename,
            evalue=str(exc.evalue),
        )
    # Kernel death, timeouts, a missing kernel: no cell output to point at.
    cell_index = getattr(exc, "cell_index", None)
    return CellError(cell_index=cell_index, execution_count=None, ename=type(exc).__name__, evalue=str(exc))


@contextlib.contextmanager
def _kernel_books() -> Iterator[dict]:
    """What the kernel (started by papermill with this process's environment) booked in lab.timing,
    through a temporary file; the dict is filled when the block ends."""
    handle, name = tempfile.mkstemp(prefix="lab-timing-", suffix=".json")
    os.close(handle)
    path = Path(name)
    before = os.environ.get(timing.TIMING_FILE_ENV)
    os.environ[timing.TIMING_FILE_ENV] = str(path)
    books: dict = {}
    try:
        yield books
    finally:
        if before is None:
            del os.environ[timing.TIMING_FILE_ENV]
        else:
            os.environ[timing.TIMING_FILE_ENV] = before
        try:
            books.update(json.loads(path.read_text() or "{}"))
        except ValueError:
            pass  # a kernel killed while writing: no figures, never a failed run
        path.unlink(missing_ok=True)


def time_split(duration_s: float, output: Path, booked: dict) -> dict[str, float]:
    """Where a notebook's wall time went: the kernel's start (papermill's start of the notebook to the
    start of its first cell), waiting on the cluster and the lab's own work (the kernel's lab.timing
    books), and the rest (the notebook's own code, plots, imports; papermill between cells)."""
    import nbformat

    kernel = 0.0
    try:
        nb = nbformat.read(str(output), as_version=4)
        began = nb.metadata.papermill.start_time
        first = next(c.metadata.papermill.start_time for c in nb.cells if c.metadata.get("papermill", {}).get("start_time"))
        kernel = max(0.0, (_dt.datetime.fromisoformat(first) - _dt.datetime.fromisoformat(began)).total_seconds())
    except Exception:  # noqa: BLE001 - a notebook that never started a cell has no kernel figure
        pass
    wait, lab = booked.get(timing.WAIT, 0.0), booked.get(timing.LAB, 0.0)
    split = {"kernel_s": round(kernel, 3), timing.WAIT: round(wait, 3), timing.LAB: round(lab, 3),
             "other_s": round(max(0.0, duration_s - kernel - wait - lab), 3)}
    for key in ("checkpoints", "checkpoint_ms_max", "checkpoint_ms_mean", "by_what"):
        if key in booked:
            split[key] = booked[key]
    return split


def _utc_stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _fresh_run_dir(runs_dir: Path) -> Path:
    base = runs_dir / _utc_stamp()
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def write_report(report: RunReport) -> tuple[Path, Path]:
    out = Path(report.out_dir)
    json_path, md_path = out / REPORT_JSON, out / REPORT_MD
    json_path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    lines = [
        f"# Lab run {Path(report.out_dir).name}: {report.status}",
        "",
        f"- started: {report.started}",
        f"- finished: {report.finished}",
        f"- notebooks: {report.notebooks_dir}",
        "",
        "| notebook | status | duration (s) | failing cell | error |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for r in report.results:
        cell = error = ""
        if r.error:
            cell = "" if r.error.cell_index is None else str(r.error.cell_index)
            if r.error.execution_count is not None:
                cell += f" (In [{r.error.execution_count}])"
            message = " ".join(r.error.evalue.split())
            error = f"{r.error.ename}: {message}".replace("|", "\\|")
        lines.append(f"| {r.notebook} | {r.status} | {r.duration_s:.1f} | {cell} | {error} |")
    lines += _time_split_table(report.results)
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def _time_split_table(results: Sequence[NotebookResult]) -> list[str]:
    timed = [r for r in results if r.time_split]
    if not timed:
        return []
    lines = ["", "## Where the time went", "",
             "Waiting on the cluster: polls until ready, rollouts, `helm --wait`, kind making nodes and loading images, probes' connections. The lab's own work: "
             "checkpoints, external commands, API calls. Other: the notebook's own code and plots.", "",
             "| notebook | total (s) | kernel start | waiting on the cluster | the lab's own work | other "
             "| checkpoints | slowest checkpoint (ms) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    totals = dict.fromkeys(("kernel_s", timing.WAIT, timing.LAB, "other_s"), 0.0)
    for r in timed:
        s = r.time_split
        for key in totals:
            totals[key] += s.get(key, 0.0)
        lines.append(f"| {r.notebook} | {r.duration_s:.1f} | {s['kernel_s']:.1f} | {s[timing.WAIT]:.1f} "
                     f"| {s[timing.LAB]:.1f} | {s['other_s']:.1f} | {s.get('checkpoints', 0)} "
                     f"| {s.get('checkpoint_ms_max', 0):.0f} |")
    whole = sum(r.duration_s for r in timed) or 1.0
    lines.append("| **all** | {:.1f} | {} |  |  |".format(
        whole, " | ".join(f"{totals[k]:.1f} ({100 * totals[k] / whole:.0f}%)" for k in totals)))
    spent = tally(timed)
    if spent:
        lines += ["", "What the lab's own work went to (commands by program and subcommand, API calls by verb, "
                      "SQL requests; the time a command spent under a wait is waiting, not the lab's own):", "",
                  "| what | count | seconds | of them the lab's own |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| `{what}` | {n} | {seconds:.1f} | {own:.1f} |" for what, (n, seconds, own) in spent[:10]]
    return lines


def tally(results: Sequence[NotebookResult]) -> list[tuple[str, tuple[int, float, float]]]:
    """The notebooks' ``by_what`` tallies summed as (count, seconds, the lab's own seconds), the
    most of the lab's own time first."""
    summed: dict[str, list[float]] = {}
    for r in results:
        for what, (n, seconds, own) in (r.time_split or {}).get("by_what", {}).items():
            line = summed.setdefault(what, [0, 0.0, 0.0])
            line[0] += n
            line[1] += seconds
            line[2] += own
    return sorted(((w, (int(n), s, o)) for w, (n, s, o) in summed.items()), key=lambda item: (-item[1][2], -item[1][1]))


Listener = Callable[[str, NotebookResult], None]


def run(
    names: Sequence[str] = (),
    parameters: Sequence[str] | dict[str, Any] = (),
    out_dir: Path | None = None,
    start: str | None = None,
    only: bool = False,
    notebooks_dir: Path | None = None,
    runs_dir: Path | None = None,
    cell_timeout: int | None = DEFAULT_CELL_TIMEOUT,
    listener: Listener | None = None,
) -> RunReport:
    """Validate everything, then execute the selected notebooks in order, stopping at the first failure.

    ``listener(event, result)`` is called with ``"start"`` before and ``"done"`` after each notebook.
    Raises :class:`LabError` for bad input (nothing executes then); a failing notebook is not an
    exception: it is recorded in the returned report (``report.ok`` is False).
    """
    nb_dir = Path(notebooks_dir or default_notebooks_dir()).resolve()
    notebooks = discover(nb_dir)
    if not notebooks:
        raise LabError(f"no notebooks found in {nb_dir}", "notebooks are files named NN-name.ipynb")
    chosen = select(notebooks, names, start=start, only=only)
    params = dict(parameters) if isinstance(parameters, dict) else parse_parameters(parameters)
    per_notebook = plan_parameters(chosen, params)

    out = Path(out_dir) if out_dir else _fresh_run_dir(Path(runs_dir or default_runs_dir()))
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = RunReport(out_dir=str(out), notebooks_dir=str(nb_dir), started=_dt.datetime.now(_dt.timezone.utc).isoformat())
    report.results = [NotebookResult(notebook=nb.name, status="not run", parameters=per_notebook[nb]) for nb in chosen]
    write_report(report)

    failed = False
    for nb, result in zip(chosen, report.results):
        if failed:
            break
        output = out / nb.name
        result.output = str(output)
        if listener:
            listener("start", result)
        began = time.monotonic()
        try:
            with _kernel_books() as books:
                execute_one(nb, output, per_notebook[nb], cwd=nb_dir, cell_timeout=cell_timeout)
        except KeyboardInterrupt:
            result.status = "failed"
            result.error = CellError(None, None, "KeyboardInterrupt", "interrupted")
            result.duration_s = round(time.monotonic() - began, 3)
            report.status = "interrupted"
            report.finished = _dt.datetime.now(_dt.timezone.utc).isoformat()
            write_report(report)
            raise
        except Exception as exc:  # noqa: BLE001 - any engine failure fails this notebook, not the runner
            result.status = "failed"
            result.error = _describe_failure(exc, output)
            failed = True
        else:
            result.status = "passed"
        result.duration_s = round(time.monotonic() - began, 3)
        result.time_split = time_split(result.duration_s, output, books)
        if listener:
            listener("done", result)
        write_report(report)

    report.status = "failed" if failed else "passed"
    report.finished = _dt.datetime.now(_dt.timezone.utc).isoformat()
    write_report(report)
    return report
