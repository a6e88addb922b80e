"""Submissions as instructors receive them: folders or zip files, named however the LMS named them.

:func:`unpack` extracts a zip safely (only notebooks and run reports; no absolute paths, no ``..``,
no links, bounded size and count), so one hostile or broken archive is that student's error and
nothing more. :func:`match_roster` maps submission names to roster ids.
"""
from __future__ import annotations

import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from lab.errors import LabError

ARCHIVE_SUFFIXES = (".zip",)
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_MEMBERS = 2000
INTAKE_ERROR = "intake-error.txt"  # left in an unpacked folder: why the archive could not be read


def is_archive(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in ARCHIVE_SUFFIXES


def _wanted(name: str) -> bool:
    return name.endswith(".ipynb") or PurePosixPath(name).name == "report.json"


def unpack(archive: Path, dest: Path) -> Path:
    """Extract the notebooks (and run reports) of ``archive`` into ``dest``; ``dest``. A bad archive
    leaves ``dest`` with :data:`INTAKE_ERROR` saying why instead of raising."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        _extract(archive, dest)
    except (LabError, zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
            NotImplementedError, RuntimeError) as error:
        shutil.rmtree(dest)
        dest.mkdir(parents=True)
        reason = error.message if isinstance(error, LabError) else f"{type(error).__name__}: {error}"
        (dest / INTAKE_ERROR).write_text(f"{archive.name}: {reason}"[:500])
    return dest


def _extract(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        if len(members) > MAX_MEMBERS:
            raise LabError(f"{len(members)} files in the archive; at most {MAX_MEMBERS} are read")
        total = 0
        for member in members:
            path = PurePosixPath(member.filename)
            if member.is_dir() or not _wanted(member.filename):
                continue
            if path.is_absolute() or ".." in path.parts or "\\" in member.filename:
                raise LabError(f"unsafe path in the archive: {member.filename!r}")
            if stat.S_ISLNK(member.external_attr >> 16):
                raise LabError(f"a symbolic link in the archive: {member.filename!r}")
            total += member.file_size
            if total > MAX_UNPACKED_BYTES:
                raise LabError(f"the archive unpacks to more than {MAX_UNPACKED_BYTES // 2**20} MiB")
            target = dest.joinpath(*path.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as source, open(target, "wb") as out:
                # Read in bounded chunks: a member may claim a small size and inflate to much more.
                written = 0
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > member.file_size or written > MAX_UNPACKED_BYTES:
                        raise LabError(f"{member.filename!r} inflates beyond its declared size")
                    out.write(chunk)


def notebook_root(directory: Path) -> Path:
    """The shallowest folder under ``directory`` that holds notebooks (archives often wrap one folder)."""
    for candidate in sorted((p for p in directory.rglob("*.ipynb")), key=lambda p: (len(p.parts), str(p))):
        return candidate.parent
    return directory


def slug(text: str) -> str:
    """Lower-case words joined by '-' ("Ann_Lee 1" -> "ann-lee-1")."""
    return "-".join(t for t in re.split(r"[^a-z0-9]+", text.lower()) if t)


def match_roster(names: Iterable[str], students: Sequence) -> dict:
    """Submission name -> roster student (or None): the id, the e-mail's local part or the name
    (ignoring case and punctuation), else the longest of those found as whole words of the
    submission's name (``Ann_Lee_1234_lab.zip`` -> ``ann-lee``)."""
    by_key: dict[str, object] = {}
    for s in students:
        for key in (s.id, slug(s.email.split("@")[0]) if s.email else "", slug(s.name)):
            if key:
                by_key.setdefault(key, s)
    longest_first = sorted(by_key, key=len, reverse=True)
    out = {}
    for name in names:
        stem = Path(name).stem if Path(name).suffix.lower() in ARCHIVE_SUFFIXES else name
        words = f"-{slug(stem)}-"
        out[name] = by_key.get(slug(stem)) or next((by_key[k] for k in longest_first if f"-{k}-" in words), None)
    return out
