"""What a gradebook gives back: one HTML page per student (jinja2) and a CSV an LMS imports.

``feedback/<student>.html`` lists, notebook by notebook, what passed, what failed with what the
grader saw and the hint, and the grading mode (verified or self-reported). ``lms.csv`` has one row
per student: id, name, e-mail, points, possible, percent, status and grading mode, so a spreadsheet
or an LMS gradebook import maps it by id or e-mail.
"""
from __future__ import annotations

import datetime as _dt
import functools
import itertools
import re
from pathlib import Path

from lab import __version__ as LAB_VERSION

FEEDBACK_DIR = "feedback"
LMS_CSV = "lms.csv"
LMS_COLUMNS = ["student", "name", "email", "points", "possible", "percent", "status", "grading"]


@functools.lru_cache(maxsize=None)
def environment():
    """The jinja2 environment of the lab's HTML templates (autoescaped; a missing value is an error),
    made once: templates compile on first use."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("lab.grading", "templates"),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda value: f"{value:g}"
    return env


def file_name(student: str) -> str:
    """A safe file name for a student's page (ids are safe already; folder names may not be)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", student).strip("._") or "student"


def render(sub) -> str:
    """One student's feedback page."""
    by_notebook = [(nb, list(group)) for nb, group in itertools.groupby(sub.outcomes, key=lambda o: o.notebook)]
    percent = round(100 * sub.earned / sub.possible, 1) if sub.possible else 0.0
    return environment().get_template("feedback.html.j2").render(
        sub=sub, by_notebook=by_notebook, percent=f"{percent:g}", flags=sub.flags, version=LAB_VERSION,
        when=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def write(book, out_dir: Path) -> dict[str, Path]:
    """``feedback/<student>.html`` for every submission and ``lms.csv``; their paths."""
    import pandas as pd

    folder = Path(out_dir) / FEEDBACK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for sub in book.submissions:
        (folder / f"{file_name(sub.student)}.html").write_text(render(sub), encoding="utf-8")
    rows = [{"student": s.student, "name": s.name, "email": s.email, "points": s.earned, "possible": s.possible,
             "percent": round(100 * s.earned / s.possible, 1) if s.possible else 0.0, "status": s.status,
             "grading": s.mode} for s in book.submissions]
    lms = Path(out_dir) / LMS_CSV
    pd.DataFrame(rows, columns=LMS_COLUMNS).to_csv(lms, index=False)
    return {"feedback": folder, "lms": lms}
