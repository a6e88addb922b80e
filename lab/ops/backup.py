"""Backups of the lab database: create, check, restore, verify and list them, and a disaster drill.

A backup is one gzip file of ``mysqldump`` output in the host's backup directory
(``<data_dir>/backups``, which every kind node sees as ``/var/local/k8s-lab/backups``; another
namespace's in ``backups-<namespace>``) plus a
sidecar metadata file::

    k8s-lab-lab-20250101T020000Z.sql.gz          one database (here: lab)
    k8s-lab-20250101T020000Z.sql.gz              every user database (as the CronJob names them)
    k8s-lab-lab-20250101T020000Z.meta.json       what was backed up: tables, row counts,
                                                 CHECKSUM TABLE values, sizes, durations, sha256

How it works:

* ``mysqldump --single-transaction --routines --triggers --events`` runs inside the database Pod
  (``kubectl exec``), piped through ``gzip`` with ``pipefail``; the compressed stream comes back
  over the exec connection and is written on the host under a hidden temporary name
  (``.k8s-lab-....sql.gz.partial``). Only when the dump exited 0, the file has a minimum size,
  passes ``gzip -t`` and ends with mysqldump's ``-- Dump completed`` line is it renamed to its
  final name. Any failure removes the temporary file: nothing that looks like a backup is left.
* The root password is read from the database's Secret through the Kubernetes API and handed to
  the Pod on the exec's stdin; the script there puts it in ``MYSQL_PWD``. It never appears on a
  command line (``ps``), in output or in error messages.
* ``restore`` checks the file (size, sha256 against the metadata, ``gzip -t``, the closing line)
  BEFORE it touches the live database, takes a safety dump of it (``<backups>/safety/``), loads
  the dump into a staging database and verifies it there; only then does it replace the target
  database, and a failure on the way leaves the live database as it was. The ``mysql`` schema of
  an all-databases dump is left out unless asked for. ``verify`` compares row counts and ``CHECKSUM TABLE`` per table (and the
  number of views, routines, triggers and events) between the metadata, or a live source
  database, and the restored database.
* "Every database" means every user database: ``mysql``, ``sys``, ``information_schema`` and
  ``performance_schema`` are not dumped. Accounts come from the database Secret, which the
  image's entrypoint applies when it initializes an empty data directory.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

from kubernetes.client.exceptions import ApiException

from lab import config, runner
from lab.cluster import kube
from lab.errors import LabError
from lab.ops.database import (OBJECT_KINDS, SYSTEM_SCHEMAS, Database, database_charsets, object_counts,
                              pod_ready, quote_identifier, quote_string, table_stats)
from lab.progress import info, step
from lab.target import Target

PREFIX = "k8s-lab"
SUFFIX = ".sql.gz"
META_SUFFIX = ".meta.json"
PARTIAL_SUFFIX = ".partial"
METADATA_FORMAT = 1
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"

# A gzip of an empty stream is 20 bytes; mysqldump's header and footer alone compress to several
# hundred. Anything under this is not a dump.
MIN_BACKUP_BYTES = 200
DUMP_TRAILER = b"-- Dump completed"

DUMP_OPTIONS = ("--single-transaction", "--routines", "--triggers", "--events", "--hex-blob",
                "--default-character-set=utf8mb4")
DEFAULT_TIMEOUT_S = 1800
CHUNK = 1 << 20

_NAME = re.compile(rf"^{PREFIX}-(?:(?P<database>.+)-)?(?P<stamp>\d{{8}}T\d{{6}}Z){re.escape(SUFFIX)}$")
# Names this module creates databases under or restores into: plain identifiers only (they are
# also passed to shell scripts as arguments, never spliced into them).
_DATABASE_NAME = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9_$-]{0,63}$")


# --------------------------------------------------------------------------------------------
# Names and places


def _backups_name(namespace: str) -> str:
    # Another namespace's backups apart from the lab's: a classroom's students must not read each
    # other's dumps, nor restore the "latest" of someone else.
    return "backups" if namespace == config.NAMESPACE else f"backups-{namespace}"


def backup_dir(target: Target) -> Path:
    """Where `target`'s backups live on the host: the data directory's ``backups`` for the lab's
    namespace, ``backups-<namespace>`` for another (see :func:`node_backup_dir`)."""
    return target.data_dir / _backups_name(target.namespace)


def node_backup_dir(namespace: str) -> str:
    """The same directory inside the cluster's nodes (the backup PersistentVolume's hostPath)."""
    return f"{config.NODE_DATA_PATH}/{_backups_name(namespace)}"


def timestamp(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        raise ValueError("timestamp() needs an aware datetime (UTC)")
    return moment.astimezone(timezone.utc).strftime(STAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=timezone.utc)


def backup_name(database: str | None, moment: datetime | None = None) -> str:
    """``k8s-lab-<database>-<UTC stamp>.sql.gz``; without a database (every user database)
    ``k8s-lab-<UTC stamp>.sql.gz``, as the CronJob names its dumps."""
    if database is not None:
        check_database_name(database)
    stamp = timestamp(moment)
    return f"{PREFIX}-{database}-{stamp}{SUFFIX}" if database else f"{PREFIX}-{stamp}{SUFFIX}"


def parse_name(name: str) -> tuple[str | None, datetime] | None:
    """(database or None for every database, time) of a backup file name; None if it is not one."""
    match = _NAME.match(name)
    if not match:
        return None
    try:
        return match.group("database"), parse_timestamp(match.group("stamp"))
    except ValueError:
        return None


def is_backup_name(name: str) -> bool:
    return parse_name(name) is not None


def metadata_path(path: Path) -> Path:
    path = Path(path)
    stem = path.name[:-len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
    return path.with_name(stem + META_SUFFIX)


def partial_path(final: Path) -> Path:
    """The hidden temporary name a backup is written under (never matches a backup name)."""
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


def check_database_name(name: str) -> str:
    if not _DATABASE_NAME.match(name or ""):
        raise LabError(f"{name!r} is not a database name this tool accepts",
                       hint="use letters, digits, _, $ and - (at most 64 characters)")
    return name


def _free_name(directory: Path, database: str | None, moment: datetime) -> Path:
    """A backup path that does not exist yet (a later second when two backups start together)."""
    for seconds in range(120):
        path = directory / backup_name(database, moment + timedelta(seconds=seconds))
        if not path.exists() and not partial_path(path).exists():
            return path
    raise LabError(f"no free backup name in {directory} around {timestamp(moment)}")


# --------------------------------------------------------------------------------------------
# Checking a backup file (no cluster needed)


@dataclass
class FileCheck:
    path: Path
    size: int
    sha256: str
    uncompressed_bytes: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _gzip_error(path: Path, detail: str) -> LabError:
    return LabError(f"{Path(path).name} is not a valid gzip file (gzip -t: {detail[-300:]})",
                    hint="the file is corrupt or truncated: use another backup")


def _start_gzip_test(path: Path) -> runner.Process | None:
    """``gzip -t`` in the background (None where the host has no gzip)."""
    gzip_bin = shutil.which("gzip")
    if not gzip_bin:
        return None
    return runner.start([gzip_bin, "-t", path], stdout=runner.PIPE, stderr=runner.STDOUT)


def _finish_gzip_test(proc: runner.Process | None, path: Path) -> None:
    if proc is None:
        return
    output, _ = proc.communicate()
    if proc.returncode != 0:
        raise _gzip_error(path, output.decode(errors="replace").strip().replace(str(path), Path(path).name))


def gzip_test(path: Path) -> None:
    """``gzip -t`` (the host's gzip; Python's gzip reader where there is none)."""
    proc = _start_gzip_test(path)
    if proc is not None:
        _finish_gzip_test(proc, path)
        return
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(CHUNK):
                pass
    except (OSError, EOFError, zlib.error) as error:
        raise _gzip_error(path, str(error)) from error


def _read_through(path: Path) -> tuple[str, int, bytes, str | None]:
    """One pass over the file: (sha256 of the file, uncompressed size, last bytes of the SQL,
    what is wrong with the compressed data or None). Hashing goes on after a bad block."""
    digest = hashlib.sha256()
    total, tail, problem = 0, b"", None
    decompressor, fed = zlib.decompressobj(wbits=31), False
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            data = chunk
            while data and problem is None:
                fed = True
                try:
                    out = decompressor.decompress(data)
                except zlib.error as error:
                    problem = str(error)
                    break
                total += len(out)
                tail = (tail + out)[-512:]
                data = b""
                if decompressor.eof:  # another gzip member may follow
                    data = decompressor.unused_data
                    decompressor, fed = zlib.decompressobj(wbits=31), False
    if problem is None and fed:
        problem = "unexpected end of file: the gzip stream is truncated"
    return digest.hexdigest(), total, tail, problem


def check_file(path: Path, metadata: dict | None = None, min_bytes: int = MIN_BACKUP_BYTES) -> FileCheck:
    """Raise LabError unless ``path`` is a complete backup: not empty, at least ``min_bytes``,
    the size and sha256 its metadata records (when given), ``gzip -t`` clean, and ending with
    mysqldump's ``-- Dump completed`` line."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise LabError(f"no backup file {path}", hint="`lab backup list` shows the backups there are")
    size = path.stat().st_size
    if size == 0:
        raise LabError(f"{name} is empty (0 bytes)", hint="the backup failed when it was written: use another one")
    if size < min_bytes:
        raise LabError(f"{name} is too small to be a backup ({size} bytes, at least {min_bytes} expected)",
                       hint="the file is truncated: use another backup")
    if metadata is not None:
        expected_size = (metadata.get("sizes") or {}).get("compressed_bytes")
        if expected_size is not None and expected_size != size:
            raise LabError(f"{name} has {size} bytes but its metadata records {expected_size}",
                           hint="the file was truncated or changed after the backup: use another one")
    # gzip -t runs on a second core while this process hashes and decompresses the file.
    tester = _start_gzip_test(path)
    try:
        digest, uncompressed, tail, problem = _read_through(path)
        if metadata is not None and metadata.get("sha256") and digest != metadata["sha256"]:
            raise LabError(f"{name} does not match its metadata: sha256 {digest[:16]}…, "
                           f"expected {metadata['sha256'][:16]}…",
                           hint="the file was corrupted or changed after the backup: use another one")
        _finish_gzip_test(tester, path)
    finally:
        if tester is not None and tester.poll() is None:
            tester.kill()
            tester.wait()
    if problem is not None:
        raise LabError(f"{name} is not a valid gzip file ({problem})",
                       hint="the file is corrupt or truncated: use another backup")
    if DUMP_TRAILER not in tail:
        raise LabError(f"{name} does not end with mysqldump's '-- Dump completed' line",
                       hint="the dump was cut short when it was written: use another backup")
    return FileCheck(path, size, digest, uncompressed)


def load_metadata(path: Path) -> dict | None:
    """The metadata of backup ``path`` (None when it has none); LabError when it is unreadable."""
    meta = metadata_path(path)
    if not meta.is_file():
        return None
    try:
        document = json.loads(meta.read_text())
    except (OSError, ValueError) as error:
        raise LabError(f"the metadata {meta.name} is not valid JSON ({error})",
                       hint="restore without it (--without-metadata) only if you trust the file") from error
    if not isinstance(document, dict):
        raise LabError(f"the metadata {meta.name} is not a JSON object",
                       hint="it was not written by lab.ops.backup, or it was edited")
    missing = [k for k in ("format", "databases", "tables", "sha256", "sizes") if k not in document]
    if missing:
        raise LabError(f"the metadata {meta.name} lacks {', '.join(missing)}",
                       hint="it was not written by lab.ops.backup, or it was edited")
    # Without a checksum the metadata proves nothing about the file: never trust it then.
    if not isinstance(document["sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", document["sha256"]):
        raise LabError(f"the metadata {meta.name} carries no valid sha256 of its backup",
                       hint="it was not written by lab.ops.backup, or it was edited")
    return document


def _write_json(path: Path, document: dict) -> None:
    """Write JSON atomically (temporary file in the same directory, then rename)."""
    tmp = path.with_name(f".{path.name}{PARTIAL_SUFFIX}")
    try:
        tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Create


@dataclass
class Backup:
    path: Path
    metadata: dict

    @property
    def metadata_path(self) -> Path:
        return metadata_path(self.path)

    @property
    def size(self) -> int:
        return self.metadata["sizes"]["compressed_bytes"]

    @property
    def seconds(self) -> float:
        return self.metadata["durations"]["total_s"]


def dump_script(single: bool, level: int = 6) -> str:
    """The script run in the database container: mysqldump piped through gzip, with pipefail."""
    options = " ".join(DUMP_OPTIONS)
    which = '"$1"' if single else '--add-drop-database --databases "$@"'
    return f"mysqldump --user=root {options} {which} | gzip -{level} -c"


def _stream_to_file(cmd: Sequence[str], stdin: bytes, target: Path, timeout: float) -> tuple[str, int, int, str]:
    """Run ``cmd`` with ``stdin``, its stdout into ``target``: (sha256, bytes, exit code, stderr)."""
    digest = hashlib.sha256()
    size = 0
    with tempfile.TemporaryFile() as errors, open(target, "wb") as out:
        proc = runner.start(cmd, stdin=runner.PIPE, stdout=runner.PIPE, stderr=errors)
        with _deadline(proc, timeout) as expired:
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
            for chunk in iter(lambda: proc.stdout.read(CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            code = proc.wait()
        if expired():
            raise LabError(f"the dump did not finish within {timeout:.0f}s")
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    return digest.hexdigest(), size, code, stderr


def create(target: Target, database: str | None = None,
           directory: Path | None = None, level: int = 6, timeout: float = DEFAULT_TIMEOUT_S,
           db: Database | None = None) -> Backup:
    """Back up one database (or every user database) into ``directory`` (default: the host's
    backup directory). Returns the Backup; LabError (and no backup file) when anything fails."""
    started = time.monotonic()
    db = db or Database(target)
    directory = Path(directory) if directory else backup_dir(target)
    if database is not None:
        check_database_name(database)
    what = database or "every user database"
    db.require_running()
    with step(f"backup of {what} in {db.namespace}/{db.pod}"):
        t0 = time.monotonic()
        if database is not None:
            if not db.database_exists(database):
                raise LabError(f"there is no database {database!r} in {db.namespace}/{db.pod}",
                               hint=f"its databases: {', '.join(db.user_databases()) or 'none'}")
            databases = [database]
        else:
            databases = db.user_databases()
            if not databases:
                raise LabError(f"{db.namespace}/{db.pod} has no user databases to back up")
        tables = table_stats(db, databases)
        objects = object_counts(db, databases)
        charsets = database_charsets(db, databases)
        version = db.server_version()
        stats_s = time.monotonic() - t0

        directory.mkdir(parents=True, exist_ok=True)
        created = datetime.now(timezone.utc)
        final = _free_name(directory, database, created)
        partial = partial_path(final)
        meta_final = metadata_path(final)
        try:
            t0 = time.monotonic()
            cmd = db.cmd(dump_script(database is not None, level), *databases)
            digest, size, code, stderr = _stream_to_file(cmd, (db.password() + "\n").encode(), partial, timeout)
            dump_s = time.monotonic() - t0
            if code != 0:
                raise LabError(f"mysqldump of {what} in {db.namespace}/{db.pod} failed (exit {code}): "
                               f"{runner.redact(stderr.strip(), [db.password()])[-1500:]}",
                               hint="is the database up and healthy? nothing was written")
            t0 = time.monotonic()
            checked = check_file(partial, {"sha256": digest, "sizes": {"compressed_bytes": size}})
            check_s = time.monotonic() - t0
            metadata = {
                "format": METADATA_FORMAT,
                "file": final.name,
                "created": created.isoformat(timespec="seconds"),
                "namespace": db.namespace,
                "pod": db.pod,
                "server_version": version,
                "database": database,
                "databases": databases,
                "charsets": charsets,
                "tables": tables,
                "objects": objects,
                "sizes": {"compressed_bytes": size, "uncompressed_bytes": checked.uncompressed_bytes,
                          "data_bytes": sum(t["data_bytes"] for t in tables)},
                "durations": {"stats_s": round(stats_s, 3), "dump_s": round(dump_s, 3),
                              "check_s": round(check_s, 3),
                              "total_s": round(time.monotonic() - started, 3)},
                "sha256": digest,
                "mysqldump_options": [*DUMP_OPTIONS, *([] if database else ["--add-drop-database"])],
                "gzip_level": level,
                "verifications": [],
            }
            _write_json(meta_final, metadata)
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            if not final.exists():
                meta_final.unlink(missing_ok=True)
            raise
        info(f"{final} ({human_size(size)}, {len(tables)} tables, "
             f"{sum(t['rows'] for t in tables)} rows, sha256 {digest[:12]}…)")
    return Backup(final, metadata)


# --------------------------------------------------------------------------------------------
# Find backups


def resolve(backup: str | Path, directory: Path, database: str | None = None) -> Path:
    """A backup file from a path, a file name in ``directory``, or ``latest`` (the newest there,
    of ``database`` when given)."""
    directory = Path(directory)
    if str(backup) == "latest":
        found = [p for p in _backup_files(directory)
                 if database is None or (parse_name(p.name) or (None,))[0] == database]
        if not found:
            raise LabError(f"no backups{' of ' + database if database else ''} in {directory}",
                           hint="make one with `lab backup create`")
        return max(found, key=lambda p: (parse_name(p.name)[1], p.name))
    path = Path(backup)
    if not path.is_absolute() and not path.exists() and (directory / path).exists():
        path = directory / path
    if not path.exists():
        raise LabError(f"no backup file {backup}", hint=f"`lab backup list` shows the backups in {directory}")
    return path


def _backup_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and is_backup_name(p.name))


def list_backups(directory: Path):
    """The backups in ``directory`` as a DataFrame: time, file, size, database, verified
    (oldest first). ``verified`` is the result of the last verify against the metadata (False
    when never verified or without metadata)."""
    import pandas as pd

    directory = Path(directory)
    rows = []
    for path in _backup_files(directory):
        database, moment = parse_name(path.name)
        try:
            meta = load_metadata(path)
        except LabError:
            meta = None
        if meta is not None:
            moment = datetime.fromisoformat(meta.get("created") or moment.isoformat())
            if meta.get("database"):
                database = meta["database"]
            else:
                database = "all: " + ", ".join(meta.get("databases") or [])
        elif database is None:
            database = "all"
        checks = (meta or {}).get("verifications") or []
        rows.append({"time": pd.Timestamp(moment), "file": path.name, "size": path.stat().st_size,
                     "database": database, "verified": bool(checks and checks[-1].get("ok"))})
    frame = pd.DataFrame(rows, columns=["time", "file", "size", "database", "verified"])
    return frame.sort_values(["time", "file"], ignore_index=True) if len(frame) else frame


# --------------------------------------------------------------------------------------------
# Restore


@dataclass
class RestoreResult:
    path: Path
    databases: list[str]
    seconds: float
    compressed_bytes: int
    metadata: dict | None


def _restore_targets(path: Path, meta: dict | None, into: str | None) -> tuple[list[str], str | None]:
    """(databases that will be replaced, the single database the dump is loaded into or None for
    a dump that names its own databases)."""
    if meta is not None:
        single, databases = meta.get("database"), list(meta.get("databases") or [])
    else:
        single = (parse_name(path.name) or (None,))[0]
        databases = [single] if single else []
    if into is not None:
        check_database_name(into)
        if not single:
            raise LabError(f"{path.name} holds {'every user database' if not databases else ', '.join(databases)}; "
                           "--into needs a backup of one database",
                           hint="make one with `lab backup create DATABASE`")
        single = into
        databases = [into]
    for name in databases:
        check_database_name(name)
        if name in SYSTEM_SCHEMAS:
            raise LabError(f"refusing to restore into the system database {name!r}")
    return databases, single


def restore(target: Target, backup: str | Path, into: str | None = None,
            directory: Path | None = None, replace: bool = False, require_metadata: bool = True,
            timeout: float = DEFAULT_TIMEOUT_S, db: Database | None = None,
            system_schemas: bool = False) -> RestoreResult:
    """Load a backup into its own database(s), or with ``into`` into another one.

    The file is checked first (size, sha256 against the metadata, ``gzip -t``, the closing
    line); a bad file raises LabError before anything happens in the database. Then:

    1. a safety dump of every target database that exists (``<backups>/safety/``);
    2. the dump is loaded into new staging databases and, with metadata, verified there (row
       counts and CHECKSUM TABLE); a dump that breaks halfway fails here, and the live
       databases are untouched;
    3. only then each target is replaced by the verified dump; should that load fail, the
       safety dump is loaded back and the error says so.

    Sections of the system schemas (``mysql``: accounts and passwords) in an all-databases dump
    are left out unless ``system_schemas``; then they are loaded last, as they are. ``into`` an
    existing database other than the backup's own that has tables needs ``replace=True``.
    """
    started = time.monotonic()
    db = db or Database(target)
    path = resolve(backup, Path(directory) if directory else backup_dir(target))
    meta = load_metadata(path)
    if meta is None and require_metadata:
        raise LabError(f"{path.name} has no metadata ({metadata_path(path).name}); its integrity "
                       "cannot be checked", hint="restore it anyway with --without-metadata")
    with step(f"checking {path.name}"):
        check = check_file(path, meta)
    databases, single = _restore_targets(path, meta, into)
    sections = [] if single else _dump_sections(path)
    system = [d for d in sections if d in SYSTEM_SCHEMAS]
    if not single:
        databases = [check_database_name(d) for d in sections if d not in SYSTEM_SCHEMAS]
    db.require_running()
    original = (meta or {}).get("database") or (parse_name(path.name) or (None,))[0]
    if into is not None and into != original and not replace and db.database_exists(into):
        tables = db.sql(f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {quote_string(into)};")
        if int(tables[0][0]):
            raise LabError(f"database {into!r} already exists in {db.namespace} and has tables",
                           hint="choose another name, or pass --replace to overwrite it")
    what = f"{path.name} into {', '.join(databases) or 'the databases it names'} in {db.namespace}/{db.pod}"
    charset = ((meta or {}).get("charsets") or {}).get(original or "", {})
    with step(f"restore of {what}"):
        safety_of = [d for d in databases if db.database_exists(d)]
        safety = _safety_dumps(db, safety_of,
                               (Path(directory) if directory else backup_dir(target)) / SAFETY_DIR, timeout)
        kept = f"; safety dump{'s' if len(safety) > 1 else ''}: {', '.join(map(str, safety))}" if safety else ""
        stamp = timestamp()
        staging = {d: _staging_name(d, stamp) for d in databases}
        try:
            _load(db, path, staging, single and staging[single], charset, timeout, what)
            if meta is not None:
                _verify_staging(db, meta, staging, bool(single))
        except LabError as error:
            raise LabError(f"{error.message}\nthe live database{'s are' if len(databases) > 1 else ' is'} "
                           f"untouched{kept}", hint=error.hint) from None
        finally:
            db.sql("".join(f"DROP DATABASE IF EXISTS {quote_identifier(s)};\n" for s in staging.values()))
        try:
            _load(db, path, {d: d for d in databases}, single, charset, timeout, what)
        except LabError as error:
            # Straight from the safety dumps (one database each), not through restore(): a reload
            # must not take safety dumps of its own.
            try:
                for name, dump in zip([d for d in databases if d in safety_of], safety):
                    _load(db, dump, {name: name}, name, charset, timeout, f"safety dump {dump.name}")
                back = "the safety dump was loaded back"
            except LabError as reload_error:
                back = f"loading the safety dump back failed too ({reload_error.message})"
            raise LabError(f"{error.message}\nthe dump loaded and verified in a staging database, but "
                           f"not into the live one; {back}{kept}", hint=error.hint) from None
        if system and system_schemas:
            _stream_from_file(db.cmd(_LOAD_SCRIPT, ""), (db.password() + "\n").encode(),
                              _sql_chunks(path, {}, keep=set(system)), timeout, db.password(), what)
        elif system:
            info(f"left out of {path.name}: {', '.join(system)} (accounts and passwords come from "
                 f"the database's Secret; restore them with system_schemas=True)")
    seconds = time.monotonic() - started
    info(f"restored {', '.join(databases) or path.name} ({human_size(check.size)} compressed, "
         f"{human_size(check.uncompressed_bytes)} SQL) in {seconds:.1f}s" + kept)
    return RestoreResult(path, databases, seconds, check.size, meta)


SAFETY_DIR = "safety"
_LOAD_SCRIPT = 'mysql --user=root --default-character-set=utf8mb4 ${1:+--database="$1"}'
# The lines of a mysqldump --databases dump that name a database: the section header, DROP,
# CREATE, USE, and the ALTER DATABASE around routines.
_SECTION = re.compile(rb"^-- Current Database: `((?:[^`]|``)+)`")
_NAMES_DATABASE = re.compile(rb"^((?:/\*!\d+ )?(?:DROP DATABASE IF EXISTS|CREATE DATABASE /\*!32312 IF NOT EXISTS\*/"
                             rb"|USE|ALTER DATABASE)) `((?:[^`]|``)+)`")
# After the last section: mysqldump's closing lines, which restore session settings.
_FOOTER = re.compile(rb"^/\*!40103 SET TIME_ZONE=@OLD_TIME_ZONE \*/;")


def _staging_name(database: str, stamp: str) -> str:
    return check_database_name(f"{database[:44]}-restore-{stamp}")


def _dump_sections(path: Path) -> list[str]:
    """The databases a --databases / --all-databases dump holds, in order (a database's views
    come in a second section of its own at the end)."""
    with gzip.open(path, "rb") as sql:
        return list(dict.fromkeys(m.group(1).replace(b"``", b"`").decode() for m in map(_SECTION.match, sql) if m))


def _sql_chunks(path: Path, rename: dict[str, str], keep: set[str] | None = None) -> Iterable[bytes]:
    """The dump's SQL with its database names mapped by ``rename``. Sections of databases not in
    ``rename`` (or, given ``keep``, not in ``keep``) are left out."""
    wanted = set(keep) if keep is not None else set(rename)
    mapped = {k.encode(): v.replace("`", "``").encode() for k, v in rename.items()}
    including = True
    with gzip.open(path, "rb") as sql:
        for line in sql:
            section = _SECTION.match(line)
            if section:
                including = section.group(1).replace(b"``", b"`").decode() in wanted
                if section.group(1) in mapped:
                    line = b"-- Current Database: `%s`%s" % (mapped[section.group(1)], line[section.end():])
            elif _FOOTER.match(line):
                including = True
            if not including:
                continue
            named = _NAMES_DATABASE.match(line)
            if named and named.group(2) in mapped:
                line = b"%s `%s`%s" % (named.group(1), mapped[named.group(2)], line[named.end():])
            yield line


def _load(db: Database, path: Path, rename: dict[str, str], single: str | None, charset: dict,
          timeout: float, what: str) -> None:
    """Load the dump into fresh databases: ``single`` for a one-database dump, else the dump's
    own (renamed by ``rename``)."""
    targets = [single] if single else list(rename.values())
    create = ""
    for name in targets:
        create += f"DROP DATABASE IF EXISTS {quote_identifier(name)};\n"
        if single:
            create += f"CREATE DATABASE {quote_identifier(name)}"
            if charset.get("character_set") and charset.get("collation"):
                create += f" CHARACTER SET {charset['character_set']} COLLATE {charset['collation']}"
            create += ";\n"
    db.sql(create)
    # A one-database dump has no sections and names no database: every line belongs to it.
    with contextlib.closing(gzip.open(path, "rb") if single else _sql_chunks(path, rename)) as chunks:
        _stream_from_file(db.cmd(_LOAD_SCRIPT, single or ""), (db.password() + "\n").encode(), chunks,
                          timeout, db.password(), what)


def _verify_staging(db: Database, meta: dict, staging: dict[str, str], single: bool) -> None:
    """Row counts and CHECKSUM TABLE of the staging databases against the metadata."""
    names = list(staging.values())
    back = {s: d for d, s in staging.items()}
    tables = [{**t, "database": back[t["database"]]} for t in table_stats(db, names)]
    objects = {back[s]: counts for s, counts in object_counts(db, names).items()}
    frame = compare(_keyed(meta["tables"], meta.get("objects") or {}, single), _keyed(tables, objects, single))
    if not frame.attrs["ok"]:
        wrong = frame[~frame["ok"]]["table"].tolist()
        raise LabError(f"the loaded dump does not match its metadata: {', '.join(wrong[:10])}",
                       hint="the backup is not what its metadata describes: use another one")


def _safety_dumps(db: Database, databases: Sequence[str], directory: Path, timeout: float) -> list[Path]:
    return [create(db.target, name, directory=directory, timeout=timeout, db=db).path for name in databases]


def _stream_from_file(cmd: Sequence[str], header: bytes, chunks: Iterable[bytes], timeout: float,
                      password: str, what: str) -> None:
    with tempfile.TemporaryFile() as output:
        proc = runner.start(cmd, stdin=runner.PIPE, stdout=output, stderr=output)
        with _deadline(proc, timeout) as expired:
            try:
                proc.stdin.write(header)
                for chunk in chunks:
                    proc.stdin.write(chunk)
                proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass  # the other side gave up (or was stopped); its exit code and output say why
            code = proc.wait()
        if expired():
            raise LabError(f"restore of {what} did not finish within {timeout:.0f}s")
        if code != 0:
            output.seek(0)
            message = runner.redact(output.read().decode(errors="replace").strip(), [password])
            raise LabError(f"restore of {what} failed (exit {code}): {message[-1500:]}",
                           hint="the file loads with errors: use another backup")


@contextlib.contextmanager
def _deadline(proc: runner.Process, timeout: float):
    """Kill ``proc`` when ``timeout`` passes, even while a read or write on it hangs (a hung
    exec); yields a function that tells whether that happened. Any exception kills it too."""
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        proc.kill()

    timer = threading.Timer(timeout, stop)
    timer.daemon = True
    timer.start()
    try:
        yield fired.is_set
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        timer.cancel()


# --------------------------------------------------------------------------------------------
# Verify


def _keyed(tables: Iterable[dict], objects: dict[str, dict[str, int]], single: bool) -> dict[str, tuple[int | None, int | None]]:
    """name -> (rows, checksum) for tables, name -> (count, None) for '(views)' etc.; names are
    bare for one database and ``db.table`` for several."""
    keyed: dict[str, tuple[int | None, int | None]] = {}
    for t in tables:
        name = t["table"] if single else f"{t['database']}.{t['table']}"
        keyed[name] = (t["rows"], t["checksum"])
    for database, counts in objects.items():
        for kind in OBJECT_KINDS:
            name = f"({kind})" if single else f"{database}.({kind})"
            keyed[name] = (int(counts.get(kind, 0)), None)
    return keyed


def compare(before: dict[str, tuple], after: dict[str, tuple]):
    """The verify DataFrame from two name -> (rows, checksum) maps."""
    import pandas as pd

    rows = []
    for name in sorted(set(before) | set(after), key=lambda n: (n.startswith("(") or ".(" in n, n)):
        rb, cb = before.get(name, (None, None))
        ra, ca = after.get(name, (None, None))
        ok = name in before and name in after and rb == ra and cb == ca
        rows.append({"table": name, "rows_before": rb, "rows_after": ra,
                     "checksum_before": cb, "checksum_after": ca, "ok": ok})
    frame = pd.DataFrame(rows, columns=["table", "rows_before", "rows_after", "checksum_before",
                                        "checksum_after", "ok"])
    for column in ("rows_before", "rows_after", "checksum_before", "checksum_after"):
        frame[column] = frame[column].astype("Int64")
    frame["ok"] = frame["ok"].astype(bool)
    frame.attrs["ok"] = bool(frame["ok"].all())
    return frame


def verify(target: Target, backup: str | Path | None = None, into: str | None = None,
           source: str | None = None, directory: Path | None = None, record: bool = True,
           db: Database | None = None):
    """Compare row counts and CHECKSUM TABLE per table (and the number of views, routines,
    triggers and events) of a restored database with what the backup's metadata recorded, or
    with the live database ``source``. The restored database is ``into``, else the backup's own.

    Returns a DataFrame (table, rows_before, rows_after, checksum_before, checksum_after, ok);
    ``frame.attrs["ok"]`` is True when every row is ok. With ``record`` the result is added to
    the metadata (``lab backup list`` shows it as ``verified``).
    """
    db = db or Database(target)
    directory = Path(directory) if directory else backup_dir(target)
    meta, path = None, None
    if backup is not None:
        path = resolve(backup, directory)
        meta = load_metadata(path)
        if meta is None and source is None:
            raise LabError(f"{path.name} has no metadata to verify against",
                           hint="compare with a live database instead: --source NAME")
    if source is None and meta is None:
        raise LabError("verify needs a backup (with metadata) or a --source database")
    if source is not None:
        check_database_name(source)
        before_dbs = [source]
    else:
        before_dbs = list(meta["databases"])
    if into is not None:
        check_database_name(into)
        if len(before_dbs) != 1:
            raise LabError("--into needs a backup of one database")
        after_dbs = [into]
    elif meta is not None:
        after_dbs = list(meta["databases"])
    else:
        raise LabError("verify --source needs --into (the database to compare with it)")
    single = len(before_dbs) == 1 and len(after_dbs) == 1
    db.require_running()
    with step(f"verify {', '.join(after_dbs)} in {db.namespace} against "
              f"{'live ' + source if source else path.name}"):
        if source is not None:
            before = _keyed(table_stats(db, before_dbs), object_counts(db, before_dbs), single)
        else:
            before = _keyed(meta["tables"], meta.get("objects") or {}, single)
        existing = set(db.user_databases())
        missing = [d for d in after_dbs if d not in existing]
        present = [d for d in after_dbs if d in existing]
        after = _keyed(table_stats(db, present), object_counts(db, present), single)
        frame = compare(before, after)
        if missing:
            frame.attrs["ok"] = False
            frame.attrs["missing"] = missing
        bad = int((~frame["ok"]).sum())
        info(f"{len(frame) - bad} of {len(frame)} ok" + (f"; missing databases: {', '.join(missing)}" if missing else ""))
    if record and meta is not None and source is None and path is not None:
        meta.setdefault("verifications", []).append({
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "namespace": db.namespace, "databases": after_dbs, "ok": frame.attrs["ok"]})
        _write_json(metadata_path(path), meta)
    return frame


# --------------------------------------------------------------------------------------------
# Disaster drill

DRILL_STAGES = ("pod", "statefulset", "namespace")
# Also possible, not run by default: "database" drops the backed-up database(s) (the human error
# no volume survives), so only the backup can bring the data back.
ALL_DRILL_STAGES = (*DRILL_STAGES, "database")
# What a namespace snapshot keeps (Pods, Jobs, ReplicaSets, Endpoints come back from these).
SNAPSHOT_KINDS = ("resourcequotas", "limitranges", "serviceaccounts", "roles", "rolebindings",
                  "secrets", "configmaps", "persistentvolumeclaims", "services", "networkpolicies",
                  "statefulsets", "deployments", "daemonsets", "cronjobs")
_SKIP = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
_DROP_ANNOTATIONS = ("pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
                     "volume.beta.kubernetes.io/storage-provisioner",
                     "volume.kubernetes.io/storage-provisioner", "volume.kubernetes.io/selected-node",
                     "deployment.kubernetes.io/revision")


def clean_object(obj: dict) -> dict | None:
    """An object as it can be created again (None for objects the cluster makes itself)."""
    kind, meta = obj.get("kind"), dict(obj.get("metadata") or {})
    if meta.get("ownerReferences") or (kind, meta.get("name")) in _SKIP:
        return None
    if kind == "Secret" and obj.get("type") == "kubernetes.io/service-account-token":
        return None
    clean = {k: v for k, v in obj.items() if k != "status"}
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
                "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers"):
        meta.pop(key, None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROP_ANNOTATIONS}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    clean["metadata"] = meta
    if kind == "Service":
        spec = dict(clean.get("spec") or {})
        if spec.get("clusterIP") != "None":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        clean["spec"] = spec
    return clean


def snapshot_namespace(target: Target) -> dict:
    """The namespace's own objects (see SNAPSHOT_KINDS), cleaned for re-creation. Holds Secrets:
    keep it in memory, never print it."""
    namespace = target.namespace
    ns = json.loads(kube.kubectl("get", "namespace", namespace, "-o", "json", target=target).stdout)
    items = json.loads(kube.kubectl("get", "-n", namespace, ",".join(SNAPSHOT_KINDS), "-o", "json", target=target,
                                timeout=120).stdout).get("items", [])
    order = {k: i for i, k in enumerate(SNAPSHOT_KINDS)}
    kept = [c for c in (clean_object(o) for o in items) if c is not None]
    kept.sort(key=lambda o: order.get(o["kind"].lower() + "s", len(order)))
    labels = {k: v for k, v in (ns["metadata"].get("labels") or {}).items()
              if k != "kubernetes.io/metadata.name"}
    return {"namespace": {"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": namespace, "labels": labels}},
            "items": kept}


def recreate_namespace(target: Target, snapshot: dict) -> None:
    """Create the namespace and its objects from ``snapshot_namespace``."""
    document = {"apiVersion": "v1", "kind": "List", "items": [snapshot["namespace"], *snapshot["items"]]}
    result = kube.kubectl("create", "-f", "-", stdin=json.dumps(document), check=False, timeout=180, target=target)
    if result.returncode != 0:
        problems = [line for line in result.stderr.splitlines()
                    if line.strip() and "AlreadyExists" not in line and "already exists" not in line]
        if problems:
            raise LabError(f"re-creating namespace {snapshot['namespace']['metadata']['name']} failed: "
                           + "\n".join(problems)[-1500:])


def rebind_volume(target: Target, pv_name: str) -> None:
    """Make a Released PersistentVolume (reclaim policy Retain) bindable again by the claim of the
    same namespace and name: drop claimRef's uid and resourceVersion (the old claim's)."""
    core = kube.core(target)
    pv = core.read_persistent_volume(pv_name)
    ref = pv.spec.claim_ref
    if ref is None:
        return
    patch = [{"op": "remove", "path": f"/spec/claimRef/{key}"}
             for key, value in (("uid", ref.uid), ("resourceVersion", ref.resource_version)) if value]
    if patch:
        core.patch_persistent_volume(pv_name, patch)
        info(f"PersistentVolume {pv_name}: claimRef cleared for {ref.namespace}/{ref.name} "
             f"(was {pv.status.phase})")


def wait_database(db: Database, timeout: float, old_uid: str | None = None) -> None:
    """Wait until the database Pod (a new one, when ``old_uid`` is given) is Ready and answers."""
    core = kube.core(db.target)

    def ready():
        pod = core.read_namespaced_pod(db.pod, db.namespace)
        if old_uid and pod.metadata.uid == old_uid:
            return False
        return pod_ready(pod)

    def answers():
        try:
            return ready() and db.ping()
        except ApiException:
            return False

    kube.wait_until(answers, timeout, interval=2,
                    what=f"pod {db.pod} in {db.namespace} to be Ready and answer SQL")


def drill(target: Target, database: str | None = None,
          directory: Path | None = None, stages: Sequence[str] = DRILL_STAGES,
          timeout: float = 600, backup: str | Path | None = None):
    """A disaster drill: back up, then delete the database Pod, then its StatefulSet, then the
    whole namespace, and bring the data back after each (verify after each).

    * pod: the StatefulSet makes a new Pod on the same volume.
    * statefulset: deleted (its claim stays), then created again from its saved definition.
    * namespace: deleted with everything in it, claim included; the PersistentVolume (Retain)
      keeps the files. Its claimRef is cleared so the new claim can bind it again, and the
      namespace's objects are created again from a snapshot taken before.
    * database (not by default): DROP DATABASE of what the backup holds; only a restore helps.

    After each stage the live data is verified against the backup; when it does not match, the
    backup is restored and verified again. ``backup`` uses an existing backup instead of making
    one. Returns a DataFrame: stage, seconds (until the database answered again), restore_seconds
    (how long the restore took; 0 where none was needed), survived (the data matched the backup
    without a restore), restored, ok.
    """
    import pandas as pd

    unknown = [s for s in stages if s not in ALL_DRILL_STAGES]
    if unknown:
        raise LabError(f"unknown drill stage(s) {', '.join(unknown)}",
                       hint=f"choose from {', '.join(ALL_DRILL_STAGES)}")
    namespace = target.namespace
    db = Database(target)
    core, apps = kube.core(target), kube.apps(target)
    db.require_running()
    if backup is None:
        made = create(target, database, directory=directory, db=db)
        path = made.path
    else:
        path = resolve(backup, Path(directory) if directory else backup_dir(target))
    frame = verify(target, path, db=db, directory=directory, record=False)
    if not frame.attrs["ok"]:
        raise LabError(f"the live database does not match {path.name} before the drill",
                       hint="take a fresh backup (omit backup=) while nothing writes to the database")
    results = []
    for stage in stages:
        with step(f"disaster drill: delete the {stage}"):
            started = time.monotonic()
            old_uid = core.read_namespaced_pod(db.pod, namespace).metadata.uid
            if stage == "database":
                meta = load_metadata(path) or {}
                dropped = list(meta.get("databases") or [])
                db.sql("".join(f"DROP DATABASE IF EXISTS {quote_identifier(d)};\n" for d in dropped))
                info(f"dropped database {', '.join(dropped)}: no volume keeps that")
            elif stage == "pod":
                core.delete_namespaced_pod(db.pod, namespace)
                info(f"deleted pod {db.pod}; the StatefulSet makes a new one")
                wait_database(db, timeout, old_uid)
            elif stage == "statefulset":
                from kubernetes import client

                saved = json.loads(kube.kubectl("get", "-n", namespace, "statefulset", db.statefulset,
                                                "-o", "json", target=target).stdout)
                apps.delete_namespaced_stateful_set(
                    db.statefulset, namespace, body=client.V1DeleteOptions(propagation_policy="Foreground"))
                kube.wait_until(
                    lambda: kube.not_found(apps.read_namespaced_stateful_set, db.statefulset, namespace)
                    and kube.not_found(core.read_namespaced_pod, db.pod, namespace),
                    timeout, interval=2, what=f"StatefulSet {db.statefulset} and its Pod to be gone")
                info(f"deleted StatefulSet {db.statefulset} (claim data-{db.pod} stays); creating it again")
                kube.kubectl("create", "-f", "-", stdin=json.dumps(clean_object(saved)), target=target)
                wait_database(db, timeout)
            else:
                snapshot = snapshot_namespace(target)
                claims = [o for o in snapshot["items"] if o["kind"] == "PersistentVolumeClaim"]
                volumes = [c["spec"].get("volumeName") for c in claims if c["spec"].get("volumeName")]
                for pv in volumes:
                    policy = core.read_persistent_volume(pv).spec.persistent_volume_reclaim_policy
                    if policy != "Retain":
                        raise LabError(f"PersistentVolume {pv} has reclaim policy {policy}: deleting "
                                       f"namespace {namespace} would destroy its data",
                                       hint=f"kubectl patch pv {pv} -p "
                                            "'{\"spec\":{\"persistentVolumeReclaimPolicy\":\"Retain\"}}'")
                core.delete_namespace(namespace)
                info(f"deleted namespace {namespace} ({len(snapshot['items'])} objects saved; "
                     f"volumes {', '.join(volumes) or 'none'} are kept: reclaim policy Retain)")
                kube.wait_deleted(core.read_namespace, namespace, what=f"namespace {namespace}",
                                  timeout=timeout, interval=2)
                for pv in volumes:
                    rebind_volume(target, pv)
                recreate_namespace(target, snapshot)
                db.forget_password()
                info(f"namespace {namespace} and its objects created again")
                wait_database(db, timeout)
            seconds = time.monotonic() - started
            frame = verify(target, path, db=db, directory=directory, record=False)
            survived, restored, restore_seconds = frame.attrs["ok"], False, 0.0
            if not survived:
                info("the data did not survive: restoring the backup")
                restoring = time.monotonic()
                restore(target, path, directory=directory, db=db)
                restore_seconds = time.monotonic() - restoring
                frame = verify(target, path, db=db, directory=directory)
                restored = True
            info(f"{stage}: database back after {seconds:.0f}s; data "
                 + ("survived" if survived else f"restored from the backup in {restore_seconds:.0f}s")
                 + ("" if frame.attrs["ok"] else " BUT DOES NOT MATCH"))
            results.append({"stage": stage, "seconds": round(seconds, 1), "restore_seconds": round(restore_seconds, 1),
                            "survived": survived, "restored": restored, "ok": frame.attrs["ok"]})
    out = pd.DataFrame(results, columns=["stage", "seconds", "restore_seconds", "survived", "restored", "ok"])
    out.attrs["backup"] = str(path)
    if not out["ok"].all():
        raise LabError("the disaster drill did not recover the data at stage "
                       + ", ".join(out.loc[~out["ok"], "stage"]))
    return out


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
