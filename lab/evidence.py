"""The evidence record of a checkpoint: its format, its hash chain, how it is shown, and how a
grader validates one it reads back.

One module for both sides: :mod:`lab.checks` builds and displays records in the student's kernel,
:mod:`lab.grading.grade` reads them back from executed notebooks. A record is plain JSON (see
:func:`make_record`); every record carries the hash of the previous record of the same kernel session
and its own SHA-256 over canonical JSON. The hash has no key: it shows that records agree with each
other, not who wrote them, so a grade that must be trusted comes from the grader's own checks.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
import re
import uuid
from typing import Any, Mapping

from lab import __version__ as LAB_VERSION

MIME_TYPE = "application/vnd.k8s-lab.checkpoint+json"
# The record format. A grader reads only records of its own schema; bump it when fields change meaning.
SCHEMA = "k8s-lab.checkpoint/1"
GENESIS_HASH = "0" * 64
MAX_MESSAGE = 600
CHECK_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def canonical(obj: Any) -> bytes:
    """The bytes a record hash is taken over: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of the record's canonical JSON without its own ``hash`` field."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def normalize_source(source: str | None) -> str:
    """Cell source as hashed: trailing spaces and blank lines at either end do not count."""
    lines = [line.rstrip() for line in (source or "").splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def source_hash(source: str | None) -> str:
    return hashlib.sha256(normalize_source(source).encode()).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _number(value: Any) -> int | float:
    """Points as JSON that survives a round trip through a browser (2.0 would come back as 2)."""
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")) or number < 0:
        raise ValueError(f"points must be a finite number >= 0, got {value!r}")
    return int(number) if number.is_integer() else number


def _short(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(value: Any) -> Any:
    """Plain JSON types only, so the hash recomputed from the saved notebook is the same."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return _number(value) if value >= 0 else str(value)
    return str(value)


class Session:
    """The hash chain of one kernel session: sequence numbers and the previous record's hash."""

    def __init__(self, session_id: str | None = None):
        self.id = session_id or uuid.uuid4().hex
        self.seq = 0
        self.last_hash = GENESIS_HASH
        self.records: list[dict] = []

    def seal(self, record: Mapping[str, Any]) -> dict:
        """Chain ``record`` after the previous one and add its hash."""
        self.seq += 1
        sealed = dict(record, session=self.id, seq=self.seq, prev_hash=self.last_hash)
        sealed.pop("hash", None)
        sealed["hash"] = record_hash(sealed)
        self.last_hash = sealed["hash"]
        self.records.append(sealed)
        return sealed


def make_record(
    check_id: str,
    points: float,
    result: Any,
    *,
    hint: str = "",
    description: str = "",
    started: str | None = None,
    finished: str | None = None,
    notebook: str = "",
    namespace: str = "",
    context: str = "",
    cluster: Mapping[str, Any] | None = None,
    cell_source: str | None = None,
    session: Session,
    kind: str = "notebook",
) -> dict:
    """Build the evidence record of one verification (``result`` has ``passed``, ``message`` and
    ``uids``) and seal it into ``session``'s chain."""
    if not CHECK_ID.match(check_id):
        raise ValueError(f"check id {check_id!r} must be lower-case letters, digits, '.', '_' or '-'")
    started = started or _now()
    points = _number(points)
    record = {
        "schema": SCHEMA,
        "lab_version": LAB_VERSION,
        "kind": kind,
        "check_id": check_id,
        "description": description,
        "points": points,
        "passed": bool(result.passed),
        "earned": points if result.passed else 0,
        "message": _short(result.message),
        "hint": hint,
        "started": started,
        "finished": finished or _now(),
        "notebook": notebook,
        "namespace": namespace,
        "context": context,
        "cluster": _jsonable(cluster or {}),
        "objects": {str(k): str(v) for k, v in dict(result.uids or {}).items()},
        "cell_sha256": None if cell_source is None else source_hash(cell_source),
    }
    if not getattr(result, "applicable", True):
        # Only then: records of a check that applies stay exactly as before this field existed.
        record.update(applicable=False, passed=False, earned=0)
    return session.seal(record)


def applies(record: Mapping[str, Any]) -> bool:
    """Whether the record's check applied (a record without the field is of a check that did)."""
    return record.get("applicable", True) is not False


def render_text(record: Mapping[str, Any]) -> str:
    """The human line shown for a record (also stored as the output's text/plain)."""
    if not applies(record):
        return f"– N/A {record['check_id']} (not applicable, no points): {record['message']}"
    verdict = "✔ PASS" if record["passed"] else "✘ FAIL"
    line = f"{verdict} {record['check_id']} ({record['earned']}/{record['points']} points): {record['message']}"
    if not record["passed"] and record.get("hint"):
        line += f"\n    hint: {record['hint']}"
    return line


def render_html(record: Mapping[str, Any]) -> str:
    if not applies(record):
        return (f'<div class="k8s-lab-checkpoint" style="font-family:monospace">'
                f'<b style="color:#57606a">N/A</b> <b>{html.escape(record["check_id"])}</b> '
                f'(not applicable, no points): {html.escape(record["message"])}</div>')
    colour = "#1a7f37" if record["passed"] else "#cf222e"
    verdict = "PASS" if record["passed"] else "FAIL"
    out = (f'<div class="k8s-lab-checkpoint" style="font-family:monospace">'
           f'<b style="color:{colour}">{verdict}</b> <b>{html.escape(record["check_id"])}</b> '
           f'({record["earned"]}/{record["points"]} points): {html.escape(record["message"])}')
    if not record["passed"] and record.get("hint"):
        out += f'<br><span style="color:#9a6700">hint: {html.escape(record["hint"])}</span>'
    return out + "</div>"


def bundle(record: Mapping[str, Any]) -> dict:
    """The MIME bundle displayed for a record: the evidence plus its human renderings."""
    return {MIME_TYPE: dict(record), "text/plain": render_text(record), "text/html": render_html(record)}


def evidence_output(record: Mapping[str, Any]):
    """The notebook output (nbformat ``display_data``) that displaying ``record`` produces."""
    import nbformat

    return nbformat.v4.new_output("display_data", data=bundle(record), metadata={})


# ============================================================================================
# Reading records back
# ============================================================================================


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
        and value not in (float("inf"), float("-inf")) and value >= 0


# field -> (what it must be, test). Everything the grader indexes, sums or compares is here, so a
# record that passes can be used without further type checks.
_FIELDS = {
    "check_id": ("an id string", lambda v: isinstance(v, str) and bool(CHECK_ID.match(v))),
    "points": ("a number >= 0", _is_number),
    "earned": ("a number >= 0", _is_number),
    "passed": ("true or false", lambda v: isinstance(v, bool)),
    "message": ("text", lambda v: isinstance(v, str)),
    "hint": ("text", lambda v: isinstance(v, str)),
    "session": ("text", lambda v: isinstance(v, str) and 0 < len(v) <= 200),
    "seq": ("an integer >= 1", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1),
    "prev_hash": ("a SHA-256 hex digest", lambda v: isinstance(v, str) and bool(_HEX64.match(v))),
    "hash": ("a SHA-256 hex digest", lambda v: isinstance(v, str) and bool(_HEX64.match(v))),
}
_OPTIONAL = {
    "started": ("text", lambda v: isinstance(v, str)),
    "finished": ("text", lambda v: isinstance(v, str)),
    "notebook": ("text", lambda v: isinstance(v, str)),
    "namespace": ("text", lambda v: isinstance(v, str)),
    "cluster": ("an object", lambda v: isinstance(v, dict)),
    "objects": ("an object of strings", lambda v: isinstance(v, dict)
                and all(isinstance(x, str) for x in v.values())),
    "cell_sha256": ("a SHA-256 hex digest or null", lambda v: v is None or (isinstance(v, str) and bool(_HEX64.match(v)))),
    "applicable": ("false (or absent)", lambda v: v is False),
}


def problems(record: Any) -> list[str]:
    """What makes ``record`` unusable as evidence of this schema (empty when it is well formed).
    Says nothing about whether it is genuine: see :func:`record_hash` for that."""
    if not isinstance(record, dict):
        return [f"the record is {type(record).__name__}, not a JSON object"]
    found = []
    for name, (wanted, test) in _FIELDS.items():
        if name not in record:
            found.append(f"{name} is missing")
        elif not test(record[name]):
            found.append(f"{name} is {_shown(record[name])}, not {wanted}")
    for name, (wanted, test) in _OPTIONAL.items():
        if name in record and not test(record[name]):
            found.append(f"{name} is {_shown(record[name])}, not {wanted}")
    if not found and record["earned"] not in (0, record["points"]):
        found.append(f"earned is {record['earned']}, neither 0 nor the {record['points']} points")
    if not found and not applies(record) and (record["passed"] or record["earned"]):
        found.append("a check that did not apply is marked passed or earned points")
    return found


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def from_output(output: Any) -> tuple[Any, Any] | None:
    """(record, text/plain) of a notebook output that carries evidence, else None. The record is
    whatever the JSON holds (validate it with :func:`problems`)."""
    data = output.get("data") if isinstance(output, Mapping) else None
    if not isinstance(data, Mapping) or MIME_TYPE not in data:
        return None
    record = data[MIME_TYPE]
    if isinstance(record, str):
        try:
            record = json.loads(record)
        except ValueError:
            pass
    text = data.get("text/plain")
    if isinstance(text, list) and all(isinstance(t, str) for t in text):
        text = "".join(text)
    return record, text
