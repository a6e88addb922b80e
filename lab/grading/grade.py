"""Grading: build a gradebook from the grader's own checks (``--execute``, ``--live``, labelled
*verified*) or from the checkpoint evidence in executed notebooks (labelled *self-reported*).

``lab grade PATH...`` treats each PATH as one submission when it holds notebooks itself, else each
of its sub-directories as one (a folder of students, or a ``runs/`` folder of run directories); a
sub-directory that holds run directories rather than notebooks is graded by its latest run.

For every submission the grader reads the executed notebooks (nbformat), extracts the checkpoint
records (:data:`lab.checks.MIME_TYPE`), verifies each record's hash, the hash chain of every kernel
session and the hash of the cell that produced it, and scores them against the checkpoints the
reference notebooks (``notebooks/``) contain. Anything suspicious becomes a flag, never a silent
pass: records edited after execution, a broken chain, evidence from two clusters in one run,
object UIDs shared with another student's run (a copied run), checkpoints deleted from a notebook,
checkpoint cells that differ from the reference. Bad input (no notebooks, invalid JSON, records of
another lab version) is reported for that submission while the others are graded.

Outputs (:meth:`Gradebook.write`): ``gradebook.csv`` (one row per student, one column per check),
``details.csv`` (student x check with status, reason and hint), ``flags.csv`` and a
self-contained ``report.html``.
"""
from __future__ import annotations

import ast
import base64
import collections
import concurrent.futures as futures
import datetime as _dt
import io
import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from lab import __version__ as LAB_VERSION
from lab import checks, evidence
from lab.cluster import classroom
from lab.grading import intake
from lab import tasks  # noqa: F401 - registers the build tasks' checks
from lab.grading import grader_checks  # noqa: F401 - registers the checks the grader runs itself
from lab.config import REPO_ROOT
from lab.errors import LabError
from lab.target import Target

GRADEBOOK_CSV = "gradebook.csv"
DETAILS_CSV = "details.csv"
FLAGS_CSV = "flags.csv"
REPORT_HTML = "report.html"
NO_EVIDENCE = "no checkpoint evidence in the notebooks: were they executed (lab run) and saved with outputs?"
GRADER_JSON = "grader.json"  # the grader's own check records, written by --execute beside the notebooks
EXECUTE_ERROR = "execute-error.txt"
NAMESPACE_PARAMETER = "namespace"
DEFAULT_NOTEBOOK_TIMEOUT = 1800

# Flag severities: "tamper" means the evidence itself is not what was executed; "review" needs an
# instructor's judgement; "info" explains an oddity that costs nothing.
SEVERITY = {
    "edited-output": "tamper",
    "edited-cell": "tamper",
    "broken-chain": "tamper",
    "duplicated-record": "tamper",
    "malformed-record": "tamper",
    "copied-run": "tamper",
    "forged-evidence": "tamper",
    "evidence-disagrees": "review",
    "not-in-roster": "review",
    "deleted-checkpoint": "tamper",
    "multiple-clusters": "review",
    "shared-cluster": "review",
    "modified-checkpoint": "review",
    "points-mismatch": "review",
    "missing-notebook": "review",
    "no-cluster-identity": "review",
    "chain-gap": "info",
    "misplaced-record": "info",
    "unknown-check": "info",
    "other-lab-version": "info",
}
SEVERITY_ORDER = {"tamper": 0, "review": 1, "info": 2}

STATUS_TEXT = {
    "passed": "passed",
    "failed": "failed",
    "invalid": "evidence edited after execution: not counted",
    "not-executed": "the checkpoint cell has no evidence: it did not run (did an earlier cell fail?)",
    "deleted": "the checkpoint is not in the notebook any more",
    "missing": "the notebook is not in the submission",
    "not-run": "the run stopped before this notebook",
    "unreadable": "the notebook could not be read",
    "solutions-run": "a build task run with the reference solutions earns nothing",
    "unverified": "checked only inside the notebook's kernel, which the grader cannot trust: no points",
    "not-applicable": "not applicable here (e.g. a classroom's namespace, quota or volume, made by the instructor): "
                      "counted neither as earned nor as possible points",
}


def default_reference_dir() -> Path:
    """The reference run (reference/: the checkpoints, their points and a real run's evidence, so
    a copy of it is recognised); the handouts where a checkout has no reference run."""
    reference = REPO_ROOT / "reference"
    return reference if reference.is_dir() else REPO_ROOT / "notebooks"


def _utc_stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def default_out_dir() -> Path:
    return REPO_ROOT / "runs" / f"grade-{_utc_stamp()}"


# ============================================================================================
# Expected checkpoints, from the reference notebooks
# ============================================================================================


@dataclass
class Expected:
    check_id: str
    points: float
    notebook: str
    order: int
    cell_sha256: str | None = None
    hint: str = ""
    description: str = ""


def _python(source: str) -> str:
    """Cell source as plain Python (IPython magics and !shell lines translated)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - fall back to the raw text
        return source


def _literal(node: ast.AST | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except (ValueError, SyntaxError, TypeError):
        return None


_CALL_FALLBACK = re.compile(r"""\b(checkpoint|check)\(\s*["']([a-z0-9][a-z0-9_.-]*)["']""")
_POINTS_FALLBACK = re.compile(r"points\s*=\s*(\d+(?:\.\d+)?)")


def scan_source(source: str) -> list[dict]:
    """The checkpoints one cell declares: ``checks.checkpoint("id", points=...)`` (also as a
    decorator) and ``checks.check("id")`` calls whose id is a string literal."""
    found = []
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        for match in _CALL_FALLBACK.finditer(source):
            points = _POINTS_FALLBACK.search(source, match.end())
            found.append({"check_id": match.group(2), "via": match.group(1),
                          "points": float(points.group(1)) if points else None, "hint": "", "description": ""})
        return found
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if name == "run_cell_magic" and len(node.args) == 3 and isinstance(_literal(node.args[2]), str):
            found.extend(scan_source(_literal(node.args[2])))  # the body of %%time, %%capture, ...
            continue
        if name not in ("checkpoint", "check"):
            continue
        if name == "check" and isinstance(func, ast.Attribute) and not (
                isinstance(func.value, ast.Name) and func.value.id in ("checks", "lab_checks")):
            continue
        kwargs = {k.arg: k.value for k in node.keywords if k.arg}
        check_id = _literal(node.args[0] if node.args else kwargs.get("check_id"))
        if not isinstance(check_id, str) or not checks.CHECK_ID.match(check_id):
            found.append({"check_id": None, "via": name, "points": None, "hint": "", "description": "",
                          "line": getattr(node, "lineno", None)})
            continue
        points = None
        if name == "checkpoint":
            points = _literal(node.args[1] if len(node.args) > 1 else kwargs.get("points"))
            if points is None and len(node.args) < 2 and "points" not in kwargs:
                points = 1  # the default of checkpoint()
        found.append({"check_id": check_id, "via": name, "points": points,
                      "hint": _literal(kwargs.get("hint")) or "",
                      "description": _literal(kwargs.get("description")) or ""})
    return found


def expected_checks(reference_dir: Path | None = None, warnings: list[str] | None = None) -> dict[str, Expected]:
    """The checkpoints the reference notebooks contain, in lab order (empty without notebooks).
    Calls whose id is not a string literal cannot be expected; each adds a line to ``warnings``."""
    import nbformat

    from lab import execute

    registered = {c.check_id: c for c in checks.registry()}
    expected: dict[str, Expected] = {}
    for path in execute.discover(Path(reference_dir or default_reference_dir())):
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            for found in scan_source(cell.source):
                cid = found["check_id"]
                if cid is None:
                    if warnings is not None:
                        warnings.append(f"{path.name}: a {found['via']}() call without a literal check id "
                                        "(the grader cannot expect it; write the id as a string literal)")
                    continue
                if cid in expected:
                    if warnings is not None and expected[cid].notebook != path.name:
                        warnings.append(f"{path.name}: check id {cid!r} is also used in {expected[cid].notebook}")
                    continue
                reg = registered.get(cid)
                points = found["points"]
                if points is None and reg is not None:
                    points = reg.points
                if points is None:
                    raise LabError(f"{path.name}: the points of checkpoint {cid!r} are not a literal number",
                                   "write points=<number> in the checkpoint call so the grader can read it")
                expected[cid] = Expected(
                    check_id=cid, points=checks._number(points), notebook=path.name, order=len(expected),
                    cell_sha256=checks.source_hash(cell.source),
                    hint=found["hint"] or (reg.hint if reg else ""),
                    description=found["description"] or (reg.description if reg else ""))
    return expected


# ============================================================================================
# Reading one submission
# ============================================================================================


@dataclass
class Flag:
    kind: str
    detail: str
    notebook: str | None = None
    check_id: str | None = None

    @property
    def severity(self) -> str:
        return SEVERITY.get(self.kind, "review")

    @property
    def rank(self) -> int:
        return SEVERITY_ORDER[self.severity]


@dataclass
class Evidence:
    notebook: str
    cell: int
    record: dict
    cell_sha256: str
    intact: bool = True  # the record's own hash matches its content
    usable: bool = True  # a record of this grader's schema with the fields it needs


@dataclass
class Outcome:
    check_id: str
    notebook: str
    possible: float
    earned: float
    status: str
    message: str
    hint: str


@dataclass
class Submission:
    student: str
    path: str
    run_dir: str | None = None
    notebooks: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    mentioned: dict[str, list[str]] = field(default_factory=dict)
    report: dict[str, dict] = field(default_factory=dict)  # notebook -> its entry in report.json
    evidence: list[Evidence] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    solutions: dict[str, bool | None] = field(default_factory=dict)  # notebook -> ran with the solutions?
    # The grader's own checks (lab grade --execute / --live); None: graded from stored evidence only.
    grader_records: list[dict] | None = None
    name: str = ""
    email: str = ""

    @property
    def mode(self) -> str:
        return "self-reported" if self.grader_records is None else "verified"

    def flag(self, kind: str, detail: str, notebook: str | None = None, check_id: str | None = None) -> None:
        self.flags.append(Flag(kind, detail, notebook, check_id))

    @property
    def earned(self) -> float:
        return sum(o.earned for o in self.outcomes)

    @property
    def possible(self) -> float:
        return sum(o.possible for o in self.outcomes)

    @property
    def status(self) -> str:
        if self.errors or (self.grader_records is None and not any(e.usable for e in self.evidence)):
            return "error"
        return "flagged" if any(f.severity == "tamper" for f in self.flags) else "graded"

    def records(self) -> list[dict]:
        return [e.record for e in self.evidence if e.usable and e.intact]


_NOTEBOOK_SKIP = re.compile(r"-checkpoint\.ipynb$")


def _notebooks_in(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir()
                      if p.is_file() and p.suffix == ".ipynb" and not _NOTEBOOK_SKIP.search(p.name))
    except OSError:
        return []


def _subdirs(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and not (p / GRADEBOOK_CSV).exists())
    except OSError:
        return []


def _archives(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if intake.is_archive(p))
    except OSError:
        return []


def find_submissions(paths: Iterable[Path]) -> list[tuple[str, Path]]:
    """(student, directory) pairs: a PATH with notebooks is one submission; otherwise each of its
    sub-directories is one (a sub-directory without notebooks is graded by its latest run)."""
    found: list[tuple[str, Path]] = []
    for path in map(Path, paths):
        if intake.is_archive(path):
            found.append((path.stem, path))
            continue
        if not path.is_dir() or _notebooks_in(path):
            found.append((path.name or str(path), path))
            continue
        children = _subdirs(path)
        archives = _archives(path)
        if not children and not archives:
            found.append((path.name or str(path), path))  # graded as "no notebooks"
        found.extend((child.name, child) for child in children)
        found.extend((archive.stem, archive) for archive in archives)
    names = collections.Counter(name for name, _ in found)
    return [(f"{path.parent.name}/{name}" if names[name] > 1 else name, path) for name, path in found]


def _run_dir(path: Path) -> Path | None:
    """Where the notebooks are: the directory itself, or its latest run directory."""
    if _notebooks_in(path):
        return path
    runs = [d for d in _subdirs(path) if _notebooks_in(d)]
    return runs[-1] if runs else None


def _read_report(run_dir: Path, sub: Submission) -> None:
    from lab import execute

    report_path = run_dir / execute.REPORT_JSON
    if not report_path.exists():
        return
    try:
        report = json.loads(report_path.read_text())
        sub.report = {r["notebook"]: r for r in report.get("results", [])}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        sub.errors.append(f"{execute.REPORT_JSON} is not a valid run report ({type(error).__name__}: {error})")


def inspect_submission(student: str, path: str | Path, expected_ids: Sequence[str] = ()) -> Submission:
    """Read one submission's notebooks and check the integrity of its evidence (no scoring)."""
    path = Path(path)
    if intake.is_archive(path):
        with tempfile.TemporaryDirectory(prefix="lab-grade-") as unpacked:
            root = intake.notebook_root(intake.unpack(path, Path(unpacked) / "submission"))
            sub = inspect_submission(student, root, expected_ids)
        sub.path, sub.run_dir = str(path), None
        return sub
    sub = Submission(student=student, path=str(path))
    if (path / intake.INTAKE_ERROR).is_file():
        sub.errors.append(f"unreadable archive: {(path / intake.INTAKE_ERROR).read_text()[:300]}")
        return sub
    if not path.exists():
        sub.errors.append(f"no such directory: {path}")
        return sub
    if not path.is_dir():
        sub.errors.append(f"not a directory: {path}")
        return sub
    run_dir = _run_dir(path)
    if run_dir is None:
        sub.errors.append(f"no notebooks (*.ipynb) in {path}")
        return sub
    sub.run_dir = str(run_dir)
    _read_report(run_dir, sub)
    for nb_path in _notebooks_in(run_dir):
        try:
            nb = _read_notebook(nb_path)
            found = _notebook_evidence(nb, nb_path.name, expected_ids)
            solutions = solutions_parameter(nb)
        except Exception as error:  # noqa: BLE001 - invalid JSON, not a notebook, bad encoding, odd structure
            sub.unreadable.append(nb_path.name)
            sub.errors.append(f"{nb_path.name}: not a readable notebook ({type(error).__name__}: "
                              f"{' '.join(str(error).split())[:200]})")
            continue
        sub.notebooks.append(nb_path.name)
        sub.mentioned[nb_path.name], evidence_found, malformed = found
        sub.solutions[nb_path.name] = solutions
        for ev, text in evidence_found:
            sub.evidence.append(ev)
            _check_display(sub, ev, text)
        for cell, reasons in malformed:
            sub.flag("malformed-record", f"cell {cell}: {'; '.join(reasons)}", nb_path.name)
            sub.errors.append(f"{nb_path.name} cell {cell}: malformed checkpoint record ({'; '.join(reasons[:3])})")
    if not sub.notebooks:
        return sub
    if not sub.evidence:
        sub.errors.append(NO_EVIDENCE)
    _check_records(sub)
    for ev in sub.evidence:  # verified: keep what scoring and cross-checks need, not the node list
        cluster = ev.record.get("cluster")
        if isinstance(cluster, dict):
            ev.record["cluster"] = {k: cluster[k] for k in ("context", "kube_system_uid", "error") if k in cluster}
    return sub


MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024


def _read_notebook(path: Path):
    """A notebook as nbformat reads it, refused when it is too large or not nbformat 4."""
    import nbformat
    from nbformat.v4.rwbase import rejoin_lines

    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"{size / 2**20:.0f} MiB is more than the {MAX_NOTEBOOK_BYTES // 2**20} MiB a notebook may have")
    raw = json.loads(path.read_bytes().decode("utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise ValueError("the JSON is not a notebook (no list of cells)")
    if not isinstance(raw.get("metadata"), dict):
        raise ValueError("the notebook has no metadata object")
    if raw.get("nbformat") != 4:
        raise ValueError(f"nbformat {raw.get('nbformat')!r}; the lab's notebooks are nbformat 4")
    # JSON stores multi-line text as lists of lines; nbformat.reads would join them the same way.
    return rejoin_lines(nbformat.from_dict(raw))


def _notebook_evidence(nb, name: str, expected_ids: Sequence[str]):
    """(check ids the code cells mention, [(Evidence, its text/plain)], [(cell, reasons)] of
    malformed records) of one notebook."""
    mentioned: set[str] = set()
    found, malformed = [], []
    for index, cell in enumerate(nb.cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        mentioned.update(cid for cid in expected_ids if cid in source)
        outputs = cell.get("outputs")
        for output in outputs if isinstance(outputs, list) else []:
            got = evidence.from_output(output)
            if got is None:
                continue
            record, text = got
            reasons = evidence.problems(record)
            if reasons:
                malformed.append((index, reasons))
                continue
            found.append((Evidence(name, index, dict(record), checks.source_hash(source)), text))
    return sorted(mentioned), found, malformed


def solutions_parameter(nb) -> bool | None:
    """Whether the notebook ran with the reference solutions: the last value of ``solutions`` set by
    the cells papermill injected or tagged ``parameters`` (None when neither sets it)."""
    value = None
    for cell in nb.cells:
        tags = (cell.get("metadata") or {}).get("tags") or []
        if cell.get("cell_type") != "code" or not {"parameters", "injected-parameters"} & set(tags):
            continue
        try:
            tree = ast.parse(_python(cell.get("source", "")))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "solutions" for t in node.targets):
                literal = _literal(node.value)
                value = literal if isinstance(literal, bool) else value
    return value




def _check_display(sub: Submission, ev: Evidence, text: Any) -> None:
    if text is None or not isinstance(ev.record.get("check_id"), str):
        return
    if isinstance(text, list):
        text = "".join(text)
    try:
        expected = checks.render_text(ev.record)
    except (KeyError, TypeError):
        return
    if text != expected:
        sub.flag("edited-output", f"cell {ev.cell}: the PASS/FAIL text differs from the evidence it came with",
                 ev.notebook, ev.record.get("check_id"))


def _check_records(sub: Submission) -> None:
    """Schema, record hashes, cell hashes, hash chains and cluster identity of a submission."""
    other_schemas = collections.Counter()
    for ev in sub.evidence:
        rec = ev.record
        if rec.get("schema") != checks.SCHEMA:
            ev.usable = False
            other_schemas[f"{rec.get('schema')} (lab {rec.get('lab_version', '?')})"] += 1
            continue
        if checks.record_hash(rec) != rec["hash"]:
            ev.intact = False
            sub.flag("edited-output", f"cell {ev.cell}: the record's content does not match its hash",
                     ev.notebook, rec["check_id"])
        if rec.get("cell_sha256") and rec["cell_sha256"] != ev.cell_sha256:
            sub.flag("edited-cell", f"cell {ev.cell}: the cell's source changed after it produced this evidence",
                     ev.notebook, rec["check_id"])
        if rec.get("notebook") and rec["notebook"] != ev.notebook:
            sub.flag("misplaced-record", f"cell {ev.cell}: recorded in {rec['notebook']}", ev.notebook,
                     rec["check_id"])
    if other_schemas:
        listing = ", ".join(f"{n} record(s) of {s}" for s, n in other_schemas.items())
        sub.errors.append(f"run of another lab version: {listing}; this grader (lab {LAB_VERSION}) reads {checks.SCHEMA}")
    usable = [e for e in sub.evidence if e.usable]
    versions = sorted({str(e.record.get("lab_version")) for e in usable} - {LAB_VERSION})
    if versions:
        sub.flag("other-lab-version", f"records from lab {', '.join(versions)}; grader is lab {LAB_VERSION}")
    _check_chains(sub, usable)
    _check_clusters(sub, usable)


def _check_chains(sub: Submission, usable: list[Evidence]) -> None:
    sessions: dict[str, list[Evidence]] = collections.defaultdict(list)
    for ev in usable:
        sessions[str(ev.record["session"])].append(ev)
    for session, evs in sessions.items():
        evs.sort(key=lambda e: _seq(e.record))
        seen: dict[int, Evidence] = {}
        gaps = 0
        previous: Evidence | None = None
        for ev in evs:
            rec = ev.record
            seq = _seq(rec)
            if seq in seen:
                sub.flag("duplicated-record", f"cell {ev.cell}: record {seq} of session {session[:8]} appears twice "
                         f"(also {seen[seq].notebook} cell {seen[seq].cell})", ev.notebook, rec["check_id"])
                continue
            seen[seq] = ev
            if seq == 1 and rec["prev_hash"] != checks.GENESIS_HASH:
                sub.flag("broken-chain", f"cell {ev.cell}: the first record of session {session[:8]} does not start the chain",
                         ev.notebook, rec["check_id"])
            elif previous is not None and seq == _seq(previous.record) + 1:
                if rec["prev_hash"] != previous.record["hash"]:
                    sub.flag("broken-chain", f"cell {ev.cell}: record {seq} of session {session[:8]} does not follow "
                             f"record {seq - 1} ({previous.notebook} cell {previous.cell})", ev.notebook, rec["check_id"])
            elif seq > 1:
                gaps += 1
            previous = ev
        if gaps:
            sub.flag("chain-gap", f"session {session[:8]}: {gaps} link(s) cannot be verified because earlier records "
                     "are not in the notebook (cells re-run or outputs cleared)", evs[0].notebook)


def _check_clusters(sub: Submission, usable: list[Evidence]) -> None:
    clusters: dict[str, list[str]] = collections.defaultdict(list)
    for ev in usable:
        cluster = ev.record.get("cluster") or {}
        uid = cluster.get("kube_system_uid") if isinstance(cluster, dict) else None
        if uid:
            clusters[uid].append(ev.notebook)
        elif ev.record.get("passed"):
            sub.flag("no-cluster-identity", f"cell {ev.cell}: passed without a cluster identity "
                     f"({(cluster or {}).get('error', 'none recorded') if isinstance(cluster, dict) else 'none'})",
                     ev.notebook, ev.record["check_id"])
    if len(clusters) > 1:
        listing = "; ".join(f"{uid[:8]}… in {', '.join(sorted(set(nbs)))}" for uid, nbs in clusters.items())
        sub.flag("multiple-clusters", f"evidence from {len(clusters)} clusters: {listing}")


# ============================================================================================
# Scoring and cross-submission checks
# ============================================================================================


def _derive_expected(submissions: Iterable[Submission]) -> dict[str, Expected]:
    """Without reference notebooks: every check any submission recorded, with its usual points."""
    seen: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    where: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    first: dict[str, tuple] = {}
    for sub in submissions:
        for ev in sub.evidence:
            if ev.usable:
                cid = ev.record["check_id"]
                seen[cid][ev.record["points"]] += 1
                where[cid][ev.notebook] += 1
                first.setdefault(cid, (ev.notebook, ev.record.get("seq", 0)))
    ordered = sorted(seen, key=lambda c: (where[c].most_common(1)[0][0], first[c][1], c))
    return {cid: Expected(cid, seen[cid].most_common(1)[0][0], where[cid].most_common(1)[0][0], i)
            for i, cid in enumerate(ordered)}


def _seq(record: Mapping[str, Any]) -> int:
    return int(record["seq"]) if str(record.get("seq")).isdigit() else 0


def _when(ev: Evidence) -> tuple[str, int]:
    return str(ev.record.get("finished", "")), _seq(ev.record)


def _latest(sub: Submission) -> dict[str, Evidence]:
    """The last usable record of each check in a submission's notebooks."""
    latest: dict[str, Evidence] = {}
    for ev in sub.evidence:
        if not ev.usable:
            continue
        cid = ev.record["check_id"]
        if cid not in latest or _when(ev) >= _when(latest[cid]):
            latest[cid] = ev
    return latest


def score(sub: Submission, expected: Mapping[str, Expected], reference_cells: bool = True,
          build_tasks: Iterable[str] = ()) -> None:
    """Fill ``sub.outcomes`` (one per expected check) and the flags that scoring reveals: from the
    grader's own checks when it ran them (:func:`score_verified`), else from the stored evidence
    (self-reported), where a build task run with the reference solutions earns nothing."""
    if sub.grader_records is not None:
        score_verified(sub, expected)
        return
    build_tasks = set(build_tasks)
    latest = _latest(sub)
    sub.outcomes = []
    missing_notebooks = set()
    for exp in sorted(expected.values(), key=lambda e: e.order):
        ev = latest.get(exp.check_id)
        if ev is not None:
            rec = ev.record
            if not ev.intact:
                outcome = Outcome(exp.check_id, ev.notebook, exp.points, 0, "invalid", STATUS_TEXT["invalid"],
                                  exp.hint)
            elif not evidence.applies(rec):
                outcome = Outcome(exp.check_id, ev.notebook, 0, 0, "not-applicable", str(rec.get("message", "")),
                                  exp.hint)
            else:
                passed = bool(rec.get("passed"))
                outcome = Outcome(exp.check_id, ev.notebook, exp.points, exp.points if passed else 0,
                                  "passed" if passed else "failed", str(rec.get("message", "")),
                                  str(rec.get("hint") or exp.hint))
                if exp.check_id in build_tasks and sub.solutions.get(ev.notebook) is not False:
                    outcome.earned, outcome.status = 0, "solutions-run"
                    outcome.message = STATUS_TEXT["solutions-run"] + (
                        "" if sub.solutions.get(ev.notebook) else " (the notebook does not say solutions = False)")
            if rec.get("points") != exp.points:
                sub.flag("points-mismatch", f"recorded for {rec.get('points')} points; the reference gives {exp.points}",
                         ev.notebook, exp.check_id)
            if reference_cells and exp.cell_sha256 and ev.cell_sha256 != exp.cell_sha256:
                sub.flag("modified-checkpoint", "the checkpoint cell differs from the reference notebook's",
                         ev.notebook, exp.check_id)
            sub.outcomes.append(outcome)
            continue
        nb = exp.notebook
        report = sub.report.get(nb) or {}
        if nb in sub.unreadable:
            status, message = "unreadable", STATUS_TEXT["unreadable"]
        elif nb not in sub.notebooks:
            if report.get("status") in ("not run", "failed"):
                status, message = "not-run", STATUS_TEXT["not-run"] + _report_error(report)
            else:
                status, message = "missing", STATUS_TEXT["missing"]
                if sub.notebooks and nb not in missing_notebooks:
                    missing_notebooks.add(nb)
                    sub.flag("missing-notebook", f"{nb} (with its checkpoints) is not in the submission", nb)
        elif not reference_cells:
            status, message = "missing", "no evidence for this check in the submission"
        elif any(exp.check_id in ids for ids in sub.mentioned.values()):
            status, message = "not-executed", STATUS_TEXT["not-executed"] + _report_error(report)
        else:
            status, message = "deleted", STATUS_TEXT["deleted"]
            sub.flag("deleted-checkpoint", "the checkpoint call was removed from the notebook", nb, exp.check_id)
        sub.outcomes.append(Outcome(exp.check_id, nb, exp.points, 0, status, message, exp.hint))
    unknown = sorted(set(latest) - set(expected))
    if unknown and expected:
        sub.flag("unknown-check", f"evidence for checks the reference does not have: {', '.join(unknown)}")


def score_verified(sub: Submission, expected: Mapping[str, Expected]) -> None:
    """Points from the grader's own checks only. The notebook's evidence for the same check is a
    cross-check: PASS in the notebook where the grader saw FAIL is forged (or the state changed).
    Checkpoints the grader cannot verify are listed for feedback and earn nothing."""
    mine = {r["check_id"]: r for r in sub.grader_records or []}
    latest = {cid: ev for cid, ev in _latest(sub).items() if ev.intact}
    sub.outcomes = []
    for exp in sorted(expected.values(), key=lambda e: e.order):
        rec = mine.get(exp.check_id)
        if rec is None:
            status, message = "not-run", "the grader did not run this check (the notebook before it did not run?)"
            sub.outcomes.append(Outcome(exp.check_id, exp.notebook, exp.points, 0, status, message, exp.hint))
            continue
        verdict = _verdict(rec)
        if verdict == "N/A":
            sub.outcomes.append(Outcome(exp.check_id, exp.notebook, 0, 0, "not-applicable", rec["message"],
                                        rec["hint"] or exp.hint))
        else:
            passed = verdict == "PASS"
            sub.outcomes.append(Outcome(exp.check_id, exp.notebook, exp.points, exp.points if passed else 0,
                                        "passed" if passed else "failed", rec["message"], rec["hint"] or exp.hint))
        ev = latest.get(exp.check_id)
        if ev is not None and _verdict(ev.record) != verdict:
            said = _verdict(ev.record)
            kind = "forged-evidence" if said == "PASS" and verdict == "FAIL" else "evidence-disagrees"
            sub.flag(kind, f"the notebook says {said}, the grader's own check says {verdict}: {rec['message']}",
                     ev.notebook, exp.check_id)
    for cid, ev in latest.items():
        if cid not in expected:
            said = _verdict(ev.record)
            sub.outcomes.append(Outcome(cid, ev.notebook, 0, 0, "unverified",
                                        f"{STATUS_TEXT['unverified']} (the notebook says {said}: "
                                        f"{ev.record['message']})", ev.record["hint"]))


def _verdict(record: Mapping[str, Any]) -> str:
    if not evidence.applies(record):
        return "N/A"
    return "PASS" if record["passed"] else "FAIL"


def _report_error(report: Mapping[str, Any]) -> str:
    error = report.get("error") if report else None
    if not isinstance(error, dict):
        return ""
    where = f" in cell {error.get('cell_index')}" if error.get("cell_index") is not None else ""
    return f" ({report.get('notebook')} failed{where}: {error.get('ename')}: {str(error.get('evalue', ''))[:200]})"


REFERENCE_OWNER = "the reference notebooks"
# A notebook's records are a copy when this many in a row match another run's (check, verdict,
# duration and the gap before the next one, to the millisecond): a pattern nobody reproduces by
# running the notebook again, and one that renaming UIDs and re-hashing does not change. Only gaps
# of a second or more carry that chance (a machine-fast sequence repeats to the millisecond).
SHAPE_MIN_RECORDS = 4
SHAPE_MIN_GAP_MS = 1000
SHARED_TIMINGS_MIN = 2


def _millis(text: Any) -> float | None:
    try:
        return _dt.datetime.fromisoformat(str(text)).timestamp() * 1000
    except ValueError:
        return None


def fingerprints(records: Sequence[Mapping[str, Any]]) -> tuple[set, set]:
    """What a student cannot invent by renaming: (each record's exact start and finish times,
    each session's sequence of checks with verdicts, durations and gaps)."""
    timings = {(r["check_id"], r.get("started"), r.get("finished")) for r in records
               if r.get("started") and r.get("finished")}
    sessions: dict[str, list] = collections.defaultdict(list)
    for r in records:
        sessions[str(r["session"])].append(r)
    shapes = set()
    for chain in sessions.values():
        chain.sort(key=_seq)
        times = [(_millis(r.get("started")), _millis(r.get("finished"))) for r in chain]
        if len(chain) < SHAPE_MIN_RECORDS or any(None in pair for pair in times):
            continue
        steps = tuple((r["check_id"], bool(r["passed"]), round(f - s), round(times[i + 1][0] - f) if i + 1 < len(chain) else None)
                      for i, (r, (s, f)) in enumerate(zip(chain, times)))
        if sum(gap is not None and gap >= SHAPE_MIN_GAP_MS for *_, gap in steps) >= SHAPE_MIN_RECORDS - 1:
            shapes.add(steps)
    return timings, shapes


def cross_check(submissions: Sequence[Submission], reference: Submission | None = None) -> None:
    """Flag submissions that share object UIDs, records, timings or a cluster with another
    submission or with the reference notebooks' stored run (copied runs)."""
    others = [*submissions, *([reference] if reference is not None else [])]
    uid_owners: dict[str, set[str]] = collections.defaultdict(set)
    hash_owners: dict[str, set[str]] = collections.defaultdict(set)
    cluster_owners: dict[str, set[str]] = collections.defaultdict(set)
    timing_owners: dict[tuple, set[str]] = collections.defaultdict(set)
    shape_owners: dict[tuple, set[str]] = collections.defaultdict(set)
    prints = {}
    for sub in others:
        records = sub.records()
        prints[sub.student] = fingerprints(records)
        for key in prints[sub.student][0]:
            timing_owners[key].add(sub.student)
        for shape in prints[sub.student][1]:
            shape_owners[shape].add(sub.student)
        for rec in records:
            for uid in (rec.get("objects") or {}).values():
                uid_owners[str(uid)].add(sub.student)
            hash_owners[rec["hash"]].add(sub.student)
            if _place(rec):
                cluster_owners[_place(rec)].add(sub.student)
    for sub in submissions:
        shared: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        mine_uids = {str(u) for rec in sub.records() for u in (rec.get("objects") or {}).values()}
        for uid in mine_uids:
            for other in uid_owners[uid] - {sub.student}:
                shared[other]["object UID(s)"] += 1
        for rec in sub.records():
            for other in hash_owners[rec["hash"]] - {sub.student}:
                shared[other]["identical record(s)"] += 1
        timings, shapes = prints[sub.student]
        for key in timings:
            for other in timing_owners[key] - {sub.student}:
                shared[other]["record(s) with the same start and finish times"] += 1
        for shape in shapes:
            for other in shape_owners[shape] - {sub.student}:
                shared[other]["session(s) with the same checks, verdicts and timings"] += 1
        for other in sorted(shared):
            counts = shared[other]
            if set(counts) == {"record(s) with the same start and finish times"} and \
                    counts["record(s) with the same start and finish times"] < SHARED_TIMINGS_MIN:
                continue
            parts = [f"{n} {what}" for what, n in counts.items()]
            sub.flag("copied-run", f"shares {' and '.join(parts)} with {other}")
        # A classroom shares one cluster by design; one namespace shared by two students does not.
        mine_places = {_place(rec) for rec in sub.records()} - {None}
        sharing = sorted(set().union(*(cluster_owners[c] for c in mine_places)) - {sub.student}) if mine_places else []
        if sharing:
            sub.flag("shared-cluster", f"evidence from the same cluster and namespace as {', '.join(sharing[:5])}"
                     + (f" and {len(sharing) - 5} more" if len(sharing) > 5 else ""))


def _place(record: Mapping[str, Any]) -> tuple[str, str] | None:
    cluster = record.get("cluster")
    uid = cluster.get("kube_system_uid") if isinstance(cluster, dict) else None
    return (str(uid), str(record.get("namespace", ""))) if uid else None


def reference_run(reference_dir: Path | None) -> Submission | None:
    """The evidence stored in the reference notebooks (a real run), to recognise copies of it."""
    if reference_dir is None or not Path(reference_dir).is_dir():
        return None
    sub = _safe_inspect(REFERENCE_OWNER, reference_dir, ())
    return sub if sub.records() else None


# ============================================================================================
# The gradebook
# ============================================================================================


def _solutions_label(sub: Submission) -> str:
    """Whether a submission's notebooks ran with the reference solutions: yes, no, or unknown."""
    values = set(sub.solutions.values())
    return "yes" if True in values else "no" if values == {False} else "unknown"


@dataclass
class Gradebook:
    submissions: list[Submission]
    expected: dict[str, Expected]
    reference: str | None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # about the reference notebooks

    def details(self):
        """Student x check, long form: possible/earned points, status, reason, hint."""
        import pandas as pd

        rows = [{"student": s.student, "notebook": o.notebook, "check_id": o.check_id, "possible": o.possible,
                 "earned": o.earned, "status": o.status, "message": o.message, "hint": o.hint}
                for s in self.submissions for o in s.outcomes]
        return pd.DataFrame(rows, columns=["student", "notebook", "check_id", "possible", "earned", "status",
                                           "message", "hint"])

    def flags(self):
        import pandas as pd

        rows = [{"student": s.student, "severity": f.severity, "kind": f.kind, "notebook": f.notebook or "",
                 "check_id": f.check_id or "", "detail": f.detail}
                for s in self.submissions for f in sorted(s.flags, key=lambda f: SEVERITY_ORDER[f.severity])]
        return pd.DataFrame(rows, columns=["student", "severity", "kind", "notebook", "check_id", "detail"])

    def table(self):
        """One row per student: status, totals, flag counts, errors, then earned points per check."""
        import pandas as pd

        check_ids = [e.check_id for e in sorted(self.expected.values(), key=lambda e: e.order)]
        rows = []
        for s in self.submissions:
            counts = collections.Counter(f.severity for f in s.flags)
            row = {"student": s.student, "status": s.status, "grading": s.mode, "solutions": _solutions_label(s),
                   "earned": s.earned, "possible": s.possible,
                   "percent": round(100 * s.earned / s.possible, 1) if s.possible else 0.0,
                   "tamper_flags": counts["tamper"], "review_flags": counts["review"],
                   "flags": "; ".join(sorted({f.kind for f in s.flags}, key=lambda k: (SEVERITY_ORDER[SEVERITY.get(k, 'review')], k))),
                   "errors": "; ".join(s.errors), "path": s.run_dir or s.path}
            earned = {o.check_id: o.earned for o in s.outcomes}
            row.update({cid: earned.get(cid, 0) for cid in check_ids})
            rows.append(row)
        columns = ["student", "status", "grading", "solutions", "earned", "possible", "percent", "tamper_flags", "review_flags", "flags",
                   "errors", "path", *check_ids]
        return pd.DataFrame(rows, columns=columns).set_index("student")

    def pass_rates(self):
        import pandas as pd

        details = self.details()
        rows = []
        for exp in sorted(self.expected.values(), key=lambda e: e.order):
            d = details[details.check_id == exp.check_id]
            graded = d[d.status.isin(["passed", "failed", "invalid", "not-executed", "deleted", "not-run"])]
            passed = int((d.status == "passed").sum())
            failures = d[d.status != "passed"].message.value_counts()
            rows.append({"check_id": exp.check_id, "notebook": exp.notebook, "points": exp.points,
                         "passed": passed, "graded": len(graded),
                         "pass_rate": round(100 * passed / len(graded), 1) if len(graded) else 0.0,
                         "most_common_failure": failures.index[0] if len(failures) else ""})
        return pd.DataFrame(rows, columns=["check_id", "notebook", "points", "passed", "graded", "pass_rate",
                                           "most_common_failure"])

    def write(self, out_dir: Path) -> dict[str, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"gradebook": out / GRADEBOOK_CSV, "details": out / DETAILS_CSV, "flags": out / FLAGS_CSV,
                 "report": out / REPORT_HTML}
        self.table().to_csv(paths["gradebook"])
        self.details().to_csv(paths["details"], index=False)
        self.flags().to_csv(paths["flags"], index=False)
        paths["report"].write_text(render_html(self), encoding="utf-8")
        from lab.grading import feedback

        paths.update(feedback.write(self, out))
        return paths


def grade(
    paths: Iterable[Path],
    reference_dir: Path | None = None,
    jobs: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
    verified: bool = False,
    roster: Sequence[Any] | None = None,
    grader_records: Mapping[str, list[dict]] | None = None,
) -> Gradebook:
    """Grade every submission under ``paths`` against the reference notebooks' checkpoints.

    ``jobs`` > 1 reads submissions in that many processes. ``progress(done, total, student)`` is
    called after each submission. ``verified``: the paths are run directories that
    :func:`execute_all` wrote, and points come from the grader's own checks recorded there;
    otherwise from the notebooks' stored evidence, labelled self-reported. ``grader_records``
    (run directory -> records, from :func:`execute_all`'s ``collect``) takes precedence over the
    files. ``roster``
    (:class:`lab.cluster.classroom.Student` s) names submissions by student id and lists the students
    who submitted nothing.
    """
    started = time.monotonic()
    reference = Path(reference_dir or default_reference_dir())
    warnings: list[str] = []
    expected = expected_checks(reference, warnings)
    items = find_submissions(paths)
    if not items:
        raise LabError("nothing to grade", "name one directory per student, or a folder of them (e.g. runs/)")
    ids = list(expected)
    results: list[Submission | None] = [None] * len(items)

    def done(index: int, sub: Submission) -> None:
        results[index] = sub
        if progress:
            progress(sum(r is not None for r in results), len(items), sub.student)

    if jobs <= 1 or len(items) == 1:
        for i, (student, path) in enumerate(items):
            done(i, _safe_inspect(student, path, ids))
    else:
        with futures.ProcessPoolExecutor(max_workers=min(jobs, len(items))) as pool:
            pending = {pool.submit(_safe_inspect, student, str(path), ids): i for i, (student, path) in enumerate(items)}
            for future in futures.as_completed(pending):
                i = pending[future]
                try:
                    sub = future.result()
                except Exception as error:  # noqa: BLE001 - a dead worker fails one submission
                    sub = Submission(items[i][0], str(items[i][1]), errors=[f"grader failed: {type(error).__name__}: {error}"])
                done(i, sub)
    submissions = [s for s in results if s is not None]
    if roster is not None:
        submissions = _apply_roster(submissions, roster)
    reference_cells = bool(expected)
    if verified:
        from lab import execute

        for sub in submissions:
            _load_grader_records(sub, grader_records)
        expected = verified_expected([p.name for p in execute.discover(reference)] if reference.is_dir() else [])
    elif not expected:
        expected = _derive_expected(submissions)
    for sub in submissions:
        try:
            score(sub, expected, reference_cells=reference_cells, build_tasks=build_task_ids())
        except Exception as error:  # noqa: BLE001 - one odd submission must not stop the gradebook
            sub.outcomes, sub.errors = [], [*sub.errors, f"could not score: {type(error).__name__}: {error}"]
    cross_check(submissions, reference_run(reference))
    return Gradebook(submissions, expected, str(reference) if reference_cells else None,
                     seconds=round(time.monotonic() - started, 3), warnings=warnings)


def _apply_roster(submissions: list[Submission], roster: Sequence[Any]) -> list[Submission]:
    """Name each submission by its roster id (with name and e-mail); flag the ones the roster does
    not know; add an error row for every student without a submission."""
    matched = intake.match_roster([Path(s.path).name for s in submissions], roster)
    taken: dict[str, Submission] = {}
    for sub in submissions:
        student = matched.get(Path(sub.path).name)
        if student is None:
            sub.flag("not-in-roster", f"{Path(sub.path).name} matches no student of the roster")
            continue
        if student.id in taken:
            sub.flag("not-in-roster", f"{Path(sub.path).name} is a second submission of {student.id} "
                     f"(also {Path(taken[student.id].path).name})")
            continue
        taken[student.id] = sub
        sub.student, sub.name, sub.email = student.id, student.name, student.email
    missing = [Submission(s.id, "", errors=["no submission"], name=s.name, email=s.email)
               for s in roster if s.id not in taken]
    return [*submissions, *missing]


def _load_grader_records(sub: Submission, in_memory: Mapping[str, list[dict]] | None = None) -> None:
    """The grader's own records of an executed submission: those it kept in memory, else the file
    --execute left beside the executed notebooks."""
    where = Path(sub.run_dir or sub.path)
    sub.grader_records = []
    sub.errors = [e for e in sub.errors if e != NO_EVIDENCE]  # the grader's records are the evidence now
    if (where / EXECUTE_ERROR).exists():
        sub.errors.append(f"execution failed: {(where / EXECUTE_ERROR).read_text()[:300]}")
    if in_memory is not None:
        sub.grader_records = list(in_memory.get(str(where), []))
        if not sub.grader_records and sub.notebooks:
            sub.errors.append("the grader's checks did not run")
        return
    try:
        records = json.loads((where / GRADER_JSON).read_text())
    except (OSError, ValueError) as error:
        if sub.notebooks:
            sub.errors.append(f"the grader's checks did not run ({type(error).__name__})")
        return
    bad = [r for r in records if evidence.problems(r)] if isinstance(records, list) else [records]
    if bad:
        sub.errors.append(f"{GRADER_JSON}: {len(bad)} malformed record(s)")
        return
    sub.grader_records = records


def build_task_ids() -> set[str]:
    """Registered checks of objects the student builds (``build_task=True``, or defined in lab.tasks)."""
    return {c.check_id for c in checks.registry()
            if c.build_task or getattr(c.verify, "__module__", "") == "lab.tasks"}


def _safe_inspect(student: str, path: str | Path, ids: Sequence[str]) -> Submission:
    try:
        return inspect_submission(student, path, ids)
    except Exception as error:  # noqa: BLE001 - one broken submission must not stop the others
        return Submission(student, str(path), errors=[f"grader failed on this submission: {type(error).__name__}: {error}"])


# ============================================================================================
# HTML report
# ============================================================================================


def _histogram_png(percents: Sequence[float]) -> str:
    """A score distribution plot as a base64 PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.8), dpi=100)
    ax = fig.add_subplot()
    ax.hist(list(percents), bins=list(range(0, 105, 5)), color="#4c72b0", edgecolor="white")
    ax.set_xlabel("score (%)")
    ax.set_ylabel("students")
    ax.set_xlim(0, 100)
    ax.set_title("Score distribution")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode()


def render_html(book: Gradebook) -> str:
    """The class report (templates/report.html.j2): distribution, students, checks, feedback."""
    from lab.grading import feedback

    table = book.table()
    return feedback.environment().get_template("report.html.j2").render(
        book=book, table=table, rates=book.pass_rates(), possible=sum(e.points for e in book.expected.values()),
        histogram=_histogram_png(table.percent) if len(table) else "", version=LAB_VERSION,
        modes=sorted({s.mode for s in book.submissions}),
        when=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


# ============================================================================================
# --execute: run each submission's notebooks headlessly, then grade
# ============================================================================================


def namespace_for(student: str, prefix: str = "grade-") -> str:
    """A DNS-1123 namespace name for a student's run."""
    slug = re.sub(r"[^a-z0-9-]+", "-", f"{prefix}{student}".lower()).strip("-")
    return (slug[:63].rstrip("-")) or "grade"


@dataclass(frozen=True)
class Sandbox:
    """Where one submission runs: its namespace, the limited kubeconfig its kernels get (never the
    instructor's), and the context the grader's own checks read the namespace with."""

    namespace: str
    kubeconfig: str | None = None
    context: str | None = None


def _execute_child(notebook: str, output: str, parameters: dict, cwd: str, cell_timeout: int | None,
                   error_file: str, env: dict | None = None) -> None:
    """In a child process: lab.execute's engine on one notebook; a failure's description to error_file.
    ``env`` (e.g. KUBECONFIG) is set first, so the kernel inherits it."""
    import os

    from lab import execute

    os.environ.update(env or {})
    try:
        execute.execute_one(Path(notebook), Path(output), parameters, Path(cwd), cell_timeout)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        error = execute._describe_failure(exc, Path(output))
        Path(error_file).write_text(json.dumps(asdict(error)))
        raise SystemExit(1)


def execute_notebook(notebook: Path, output: Path, parameters: dict, cwd: Path, timeout: float,
                     cell_timeout: int | None, env: dict | None = None):
    """Run one notebook with lab.execute.execute_one in a child process killed after ``timeout`` s
    (its kernel exits with it). Returns (status, CellError | None)."""
    import multiprocessing

    from lab import execute

    error_file = output.with_suffix(".error.json")
    error_file.unlink(missing_ok=True)
    process = multiprocessing.get_context("spawn").Process(
        target=_execute_child, args=(str(notebook), str(output), parameters, str(cwd), cell_timeout, str(error_file), env))
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
        return "failed", execute.CellError(None, None, "NotebookTimeout", f"the notebook ran longer than {timeout:g} s")
    if process.exitcode == 0:
        return "passed", None
    try:
        error = execute.CellError(**json.loads(error_file.read_text()))
    except (OSError, ValueError, TypeError):
        error = execute.CellError(None, None, "ExecutionFailed", f"the runner exited with {process.exitcode}")
    finally:
        error_file.unlink(missing_ok=True)
    return "failed", error


def load_checks(files: Iterable[Path]) -> None:
    """Import Python files that register extra checks (hidden ones an instructor keeps out of the
    repository and the handouts)."""
    import importlib.util

    for i, path in enumerate(files):
        spec = importlib.util.spec_from_file_location(f"lab_instructor_checks_{i}", path)
        try:
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        except Exception as error:  # noqa: BLE001 - any error in the instructor's file
            raise LabError(f"cannot load checks from {path}: {type(error).__name__}: {error}",
                           "the file registers checks with @checks.register(...) from lab") from error


def checks_after(notebook: str | None, *, last: bool = False) -> list:
    """The registered checks the grader runs itself after ``notebook`` (with ``last``: also those
    tied to no notebook, which hold for the finished lab)."""
    return [c for c in checks.registry() if c.notebook == notebook or (last and c.notebook is None)]


def verified_expected(notebook_names: Sequence[str]) -> dict[str, Expected]:
    """The checks a verified grade has, in lab order: each notebook's grader checks, then the rest."""
    order = {name: i for i, name in enumerate(notebook_names)}
    chosen = [c for c in checks.registry() if c.notebook is None or c.notebook in order]
    chosen.sort(key=lambda c: order.get(c.notebook, len(order)))
    return {c.check_id: Expected(c.check_id, c.points, c.notebook or "(finished lab)", i, hint=c.hint,
                                 description=c.description) for i, c in enumerate(chosen)}


def _write_grader_records(out_dir: Path, records: list[dict]) -> None:
    (out_dir / GRADER_JSON).write_text(json.dumps(records, indent=1) + "\n")


def execute_submission(student: str, source: Path, out_dir: Path, namespace: str | Sandbox, *,
                       timeout: float = DEFAULT_NOTEBOOK_TIMEOUT, cell_timeout: int | None = None,
                       listener: Callable[[str, str, str], None] | None = None, keep_going: bool = True,
                       verify: bool = True, collect: dict[str, list[dict]] | None = None) -> Path:
    """Execute one submission's NN-*.ipynb notebooks in order into ``out_dir`` (with report.json
    as ``lab run`` writes it), each kernel with the sandbox's namespace and kubeconfig and without
    the reference solutions. After each notebook the grader itself (this process, not the kernel)
    runs that notebook's registered checks against the namespace, into ``grader.json``.
    With ``keep_going`` a failing notebook does not stop the later ones. ``collect`` receives the
    grader's records in memory too (``str(out_dir)`` -> records): student code runs as the same
    user and could rewrite the file, not this process's memory."""
    from lab import config
    from lab import execute

    sandbox = namespace if isinstance(namespace, Sandbox) else Sandbox(namespace)
    env = {"KUBECONFIG": sandbox.kubeconfig} if sandbox.kubeconfig else {}
    forced = {NAMESPACE_PARAMETER: sandbox.namespace, "solutions": False, "cluster": config.CLUSTER_NAME}
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = execute.discover(source)
    report = execute.RunReport(out_dir=str(out_dir), notebooks_dir=str(source),
                              started=_dt.datetime.now(_dt.timezone.utc).isoformat())
    for nb in notebooks:
        try:
            declared = execute.notebook_parameters(nb)
        except Exception:  # noqa: BLE001 - an unreadable notebook fails when it runs
            declared = {}
        params = {k: v for k, v in forced.items() if k in declared}
        report.results.append(execute.NotebookResult(notebook=nb.name, status="not run", parameters=params))
    execute.write_report(report)
    records: list[dict] = []
    if collect is not None:
        collect[str(out_dir)] = records
    if verify:
        _write_grader_records(out_dir, records)
    failed = False
    for i, (nb, result) in enumerate(zip(notebooks, report.results)):
        if failed and not keep_going:
            break
        if listener:
            listener(student, nb.name, "start")
        output = out_dir / nb.name
        result.output = str(output)
        began = time.monotonic()
        result.status, result.error = execute_notebook(nb, output, result.parameters, source, timeout, cell_timeout,
                                                       env)
        result.duration_s = round(time.monotonic() - began, 3)
        failed = failed or result.status == "failed"
        execute.write_report(report)
        if verify:
            records += checks.run_registered(context=sandbox.context, namespace=sandbox.namespace,
                                             which=checks_after(nb.name, last=i == len(notebooks) - 1))
            _write_grader_records(out_dir, records)
        if listener:
            listener(student, nb.name, result.status)
    report.status = "failed" if failed else "passed"
    report.finished = _dt.datetime.now(_dt.timezone.utc).isoformat()
    execute.write_report(report)
    return out_dir


def execute_all(paths: Iterable[Path], out_dir: Path, *, namespace_prefix: str = "grade-", jobs: int = 1,
                timeout: float = DEFAULT_NOTEBOOK_TIMEOUT, cell_timeout: int | None = None,
                listener: Callable[[str, str, str], None] | None = None,
                sandboxes: Mapping[str, Sandbox] | None = None, keep_going: bool = True,
                verify: bool = True, collect: dict[str, list[dict]] | None = None) -> list[Path]:
    """Execute every submission under ``paths`` into ``out_dir/<student>/``, ``jobs`` at once; the
    run directories. ``sandboxes`` maps a student to its :class:`Sandbox` (e.g. from
    :func:`lab.cluster.classroom.up`); without one a student runs in namespace ``<prefix><student>``."""
    items = find_submissions(paths)
    if not items:
        raise LabError("nothing to execute", "name one directory per student, or a folder of them")
    out_dir = Path(out_dir)

    def one(item: tuple[str, Path]) -> Path:
        student, source = item
        target = out_dir / student.replace("/", "_")
        if intake.is_archive(source):
            source = intake.notebook_root(intake.unpack(source, out_dir.parent / "unpacked" / target.name))
        if not source.is_dir() or not (_run_dir(source)):
            target.mkdir(parents=True, exist_ok=True)  # graded as "no notebooks", or the archive's error
            if (source / intake.INTAKE_ERROR).is_file():
                shutil.copy(source / intake.INTAKE_ERROR, target)
            return target
        sandbox = (sandboxes or {}).get(student) or Sandbox(namespace_for(student, namespace_prefix))
        try:
            return execute_submission(student, _run_dir(source), target, sandbox, timeout=timeout,
                                      cell_timeout=cell_timeout, listener=listener, keep_going=keep_going,
                                      verify=verify, collect=collect)
        except Exception as error:  # noqa: BLE001 - one submission's trouble must not stop the others
            target.mkdir(parents=True, exist_ok=True)
            (target / EXECUTE_ERROR).write_text(f"{type(error).__name__}: {error}")
            return target

    with futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, items))


# ============================================================================================
# --live: the grader's checks against running namespaces
# ============================================================================================


def live_gradebook(namespaces: Mapping[str, str], context: str | None = None, jobs: int = 4,
                   reference_dir: Path | None = None,
                   progress: Callable[[int, int, str], None] | None = None) -> Gradebook:
    """Grade running namespaces (student -> namespace) with the grader's own checks only: every
    registered check of the reference notebooks, instructor-only ones too. Nothing a student's
    kernel wrote counts, so forged evidence earns nothing."""
    from lab import execute

    started = time.monotonic()
    reference = Path(reference_dir or default_reference_dir())
    expected = verified_expected([p.name for p in execute.discover(reference)] if reference.is_dir() else [])
    which = [checks._registered(cid) for cid in expected]
    items = list(namespaces.items())
    subs: list[Submission] = []

    def one(item: tuple[str, str]) -> Submission:
        student, namespace = item
        sub = Submission(student=student, path=f"namespace {namespace}")
        try:
            sub.grader_records = checks.run_registered(context=context, namespace=namespace, which=which)
        except Exception as error:  # noqa: BLE001 - an unreachable namespace is that student's error
            sub.grader_records = []
            sub.errors.append(f"could not check namespace {namespace}: {type(error).__name__}: {error}")
        score(sub, expected)
        return sub

    with futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for sub in pool.map(one, items):
            subs.append(sub)
            if progress:
                progress(len(subs), len(items), sub.student)
    return Gradebook(subs, expected, str(reference), seconds=round(time.monotonic() - started, 3))


def classroom_status(students: Sequence["classroom.Student"], *, context: str, prefix: str = classroom.PREFIX,
                     jobs: int = 8):
    """Per student: the namespace's state, its Pods (running/all) and the grader's checks passing
    (points), from the grader's own look at the cluster. A DataFrame."""
    import pandas as pd

    from lab.cluster import kube

    core = kube.core(Target.for_context(context))
    present = {n.metadata.name: n.status.phase for n in core.list_namespace(
        label_selector=f"{classroom.LABEL}={prefix.rstrip('-') or 'student'}", _request_timeout=30).items}
    live = [s for s in students if s.namespace(prefix) in present]
    book = live_gradebook({s.id: s.namespace(prefix) for s in live}, context=context, jobs=jobs)
    by_id = {sub.student: sub for sub in book.submissions}
    rows = []
    for s in students:
        ns = s.namespace(prefix)
        sub = by_id.get(s.id)
        pods = core.list_namespaced_pod(ns, _request_timeout=30).items if ns in present else []
        counted = [o for o in sub.outcomes if o.status != "not-applicable"] if sub else []
        rows.append({"student": s.id, "name": s.name, "namespace": ns, "state": present.get(ns, "missing"),
                     "pods": f"{sum(p.status.phase == 'Running' for p in pods)}/{len(pods)}",
                     "checks": f"{sum(o.status == 'passed' for o in counted)}/{len(counted)}" if sub else "",
                     "points": f"{sub.earned:g}/{sub.possible:g}" if sub else ""})
    return pd.DataFrame(rows, columns=["student", "name", "namespace", "state", "pods", "checks", "points"])
