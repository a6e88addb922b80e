"""lab.ops.backup without a cluster: names and timestamps, file checks, metadata, listing, and the
create/restore control flow against a stand-in database that runs its scripts locally."""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.ops import backup
from lab.ops.database import PASSWORD_FROM_STDIN, Database
from lab.cli import cli
from lab.errors import LabError
from lab.target import Target

TARGET = Target("k8s-lab", "test-ns")
MOMENT = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """Nothing here may write into the real lab data directory (safety dumps default to it)."""
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path / "data"))
# Like a real dump: a header, rows that do not compress to nothing, mysqldump's closing line.
SQL = (b"-- MariaDB dump 10.19\n"
       + b"".join(b"INSERT INTO t VALUES (%d,'%s');\n" % (i, os.urandom(8).hex().encode()) for i in range(200))
       + b"\n-- Dump completed on 2025-03-04  5:06:07\n")


@pytest.fixture(autouse=True)
def _no_real_data_dir(tmp_path, monkeypatch):
    """A restore or create without a directory uses the target's data directory: keep it in tmp_path."""
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LAB_DATA_DIR", raising=False)


def write_backup(directory: Path, name: str = "k8s-lab-lab-20250304T050607Z.sql.gz", sql: bytes = SQL,
                 metadata: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(gzip.compress(sql))
    if metadata:
        meta = {"format": 1, "file": name, "created": "2025-03-04T05:06:07+00:00", "database": "lab",
                "databases": ["lab"], "tables": [{"database": "lab", "table": "t", "rows": 200,
                                                   "checksum": 42, "data_bytes": 16384}],
                "objects": {"lab": {"views": 0, "routines": 0, "triggers": 0, "events": 0}},
                "sizes": {"compressed_bytes": path.stat().st_size}, "sha256": backup.sha256_of(path),
                "verifications": []}
        backup.metadata_path(path).write_text(json.dumps(meta))
    return path


# ------------------------------------------------------------------------- names and timestamps


def test_backup_names_carry_database_and_utc_timestamp():
    assert backup.timestamp(MOMENT) == "20250304T050607Z"
    assert backup.backup_name("lab", MOMENT) == "k8s-lab-lab-20250304T050607Z.sql.gz"
    assert backup.backup_name(None, MOMENT) == "k8s-lab-20250304T050607Z.sql.gz"
    assert backup.parse_name("k8s-lab-lab-20250304T050607Z.sql.gz") == ("lab", MOMENT)
    assert backup.parse_name("k8s-lab-20250304T050607Z.sql.gz") == (None, MOMENT)
    assert backup.parse_name("k8s-lab-my-shop-20250304T050607Z.sql.gz") == ("my-shop", MOMENT)


def test_timestamps_are_utc():
    from datetime import timedelta

    local = MOMENT.astimezone(timezone(timedelta(hours=2)))
    assert backup.timestamp(local) == "20250304T050607Z"
    with pytest.raises(ValueError):
        backup.timestamp(datetime(2025, 3, 4))  # naive: ambiguous
    assert backup.parse_timestamp("20250304T050607Z") == MOMENT


@pytest.mark.parametrize("name", [
    ".k8s-lab-lab-20250304T050607Z.sql.gz.partial", "k8s-lab-lab-20250304T050607Z.meta.json",
    "k8s-lab-lab-20250304T050607Z.sql", "other-20250304T050607Z.sql.gz", "k8s-lab-lab-2025.sql.gz",
    "k8s-lab-lab-20251399T999999Z.sql.gz",
])
def test_other_files_are_not_backups(name):
    assert not backup.is_backup_name(name)


def test_partial_and_metadata_names(tmp_path):
    final = tmp_path / backup.backup_name("lab", MOMENT)
    assert backup.partial_path(final).name == ".k8s-lab-lab-20250304T050607Z.sql.gz.partial"
    assert backup.metadata_path(final).name == "k8s-lab-lab-20250304T050607Z.meta.json"
    assert not backup.is_backup_name(backup.partial_path(final).name)


@pytest.mark.parametrize("name", ["", "-x", "a b", "a;drop", "a`b", "x" * 65, "lab/../x"])
def test_unsafe_database_names_are_refused(name):
    with pytest.raises(LabError):
        backup.check_database_name(name)


def test_a_taken_name_moves_to_the_next_second(tmp_path):
    (tmp_path / backup.backup_name("lab", MOMENT)).write_bytes(b"x")
    free = backup._free_name(tmp_path, "lab", MOMENT)
    assert free.name == "k8s-lab-lab-20250304T050608Z.sql.gz"


# ---------------------------------------------------------------------------------- file checks


def test_a_complete_dump_passes(tmp_path):
    path = write_backup(tmp_path)
    check = backup.check_file(path, backup.load_metadata(path))
    assert check.size == path.stat().st_size
    assert check.uncompressed_bytes == len(SQL)
    assert check.sha256 == backup.sha256_of(path)


def test_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "k8s-lab-lab-20250304T050607Z.sql.gz"
    path.write_bytes(b"")
    with pytest.raises(LabError, match="is empty"):
        backup.check_file(path)


def test_a_tiny_file_is_refused(tmp_path):
    path = tmp_path / "x.sql.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(LabError, match="too small"):
        backup.check_file(path)


def test_a_truncated_gzip_is_refused(tmp_path):
    path = write_backup(tmp_path, sql=os.urandom(20000) + SQL, metadata=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LabError, match="not a valid gzip file"):
        backup.check_file(path)


def test_a_corrupt_gzip_is_refused_by_gzip_t(tmp_path):
    path = write_backup(tmp_path, sql=os.urandom(20000) + SQL, metadata=False)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LabError, match="gzip"):
        backup.check_file(path)


def test_a_corrupt_file_is_refused_by_its_metadata_first(tmp_path):
    path = write_backup(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LabError, match="does not match its metadata: sha256"):
        backup.check_file(path, backup.load_metadata(path))


def test_a_size_different_from_the_metadata_is_refused(tmp_path):
    path = write_backup(tmp_path)
    meta = backup.load_metadata(path)
    with open(path, "ab") as handle:
        handle.write(gzip.compress(b"more"))
    with pytest.raises(LabError, match="metadata records"):
        backup.check_file(path, meta)


def test_a_dump_without_its_closing_line_is_refused(tmp_path):
    path = write_backup(tmp_path, sql=SQL.rsplit(b"-- Dump completed", 1)[0], metadata=False)
    with pytest.raises(LabError, match="Dump completed"):
        backup.check_file(path)


def test_a_gzip_with_several_members_is_read_to_the_end(tmp_path):
    path = tmp_path / "x.sql.gz"
    half = len(SQL) // 2
    path.write_bytes(gzip.compress(SQL[:half]) + gzip.compress(SQL[half:]))
    assert backup.check_file(path).uncompressed_bytes == len(SQL)


def test_checks_work_without_a_gzip_binary(tmp_path, monkeypatch):
    monkeypatch.setattr(backup.shutil, "which", lambda name: None)
    good = write_backup(tmp_path / "a", metadata=False)
    backup.check_file(good)
    bad = write_backup(tmp_path / "b", sql=os.urandom(20000) + SQL, metadata=False)
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(LabError, match="not a valid gzip file"):
        backup.check_file(bad)


def test_gzip_t_agrees_with_the_checks(tmp_path):
    good = write_backup(tmp_path, metadata=False)
    assert subprocess.run(["gzip", "-t", str(good)]).returncode == 0


# ------------------------------------------------------------------------------------- metadata


def test_metadata_missing_is_none_and_broken_is_an_error(tmp_path):
    path = write_backup(tmp_path, metadata=False)
    assert backup.load_metadata(path) is None
    backup.metadata_path(path).write_text("{not json")
    with pytest.raises(LabError, match="not valid JSON"):
        backup.load_metadata(path)
    backup.metadata_path(path).write_text(json.dumps({"format": 1}))
    with pytest.raises(LabError, match="lacks"):
        backup.load_metadata(path)
    backup.metadata_path(path).write_text("5")
    with pytest.raises(LabError, match="not a JSON object"):
        backup.load_metadata(path)


@pytest.mark.parametrize("sha256", ["", None, "abc", "0" * 63 + "g"])
def test_metadata_without_a_valid_checksum_is_not_trusted(tmp_path, sha256):
    """An empty sha256 used to switch the hash check off: now the metadata is refused."""
    path = write_backup(tmp_path)
    meta = json.loads(backup.metadata_path(path).read_text())
    backup.metadata_path(path).write_text(json.dumps({**meta, "sha256": sha256}))
    with pytest.raises(LabError, match="no valid sha256"):
        backup.load_metadata(path)
    with pytest.raises(LabError, match="no valid sha256"):
        backup.restore(TARGET, path, db=LocalDatabase(LOADER))


def test_list_survives_metadata_that_is_not_an_object(tmp_path):
    path = write_backup(tmp_path)
    backup.metadata_path(path).write_text("5")
    frame = backup.list_backups(tmp_path)
    assert frame["file"].tolist() == [path.name] and frame["verified"].tolist() == [False]


def test_list_shows_backups_with_and_without_metadata(tmp_path):
    first = write_backup(tmp_path)
    write_backup(tmp_path, name="k8s-lab-20250305T000000Z.sql.gz", metadata=False)  # as the CronJob writes
    (tmp_path / ".k8s-lab-lab-20250306T000000Z.sql.gz.partial").write_bytes(b"half")
    (tmp_path / "k8s-lab-gone-20250301T000000Z.meta.json").write_text("{}")
    meta = backup.load_metadata(first)
    meta["verifications"].append({"ok": True})
    backup.metadata_path(first).write_text(json.dumps(meta))
    frame = backup.list_backups(tmp_path)
    assert list(frame.columns) == ["time", "file", "size", "database", "verified"]
    assert frame["file"].tolist() == [first.name, "k8s-lab-20250305T000000Z.sql.gz"]
    assert frame["database"].tolist() == ["lab", "all"]
    assert frame["verified"].tolist() == [True, False]
    assert frame["size"].iloc[0] == first.stat().st_size
    assert str(frame["time"].iloc[0]) == "2025-03-04 05:06:07+00:00"


def test_list_of_an_empty_or_missing_directory(tmp_path):
    assert backup.list_backups(tmp_path / "none").empty


def test_resolve_latest_and_names(tmp_path):
    older = write_backup(tmp_path)
    newer = write_backup(tmp_path, name="k8s-lab-lab-20250304T050700Z.sql.gz")
    write_backup(tmp_path, name="k8s-lab-shop-20250309T000000Z.sql.gz")
    assert backup.resolve("latest", tmp_path, database="lab") == newer
    assert backup.resolve(older.name, tmp_path) == older
    with pytest.raises(LabError, match="no backup file"):
        backup.resolve("nope.sql.gz", tmp_path)
    with pytest.raises(LabError, match="no backups"):
        backup.resolve("latest", tmp_path / "empty")


def test_compare_marks_differences_and_missing_tables():
    frame = backup.compare({"a": (3, 10), "b": (1, 5), "gone": (2, 2), "(views)": (1, None)},
                           {"a": (3, 10), "b": (1, 6), "new": (0, 0), "(views)": (1, None)})
    by = frame.set_index("table")["ok"].to_dict()
    assert by == {"a": True, "b": False, "gone": False, "new": False, "(views)": True}
    assert frame.attrs["ok"] is False
    assert list(frame.columns) == ["table", "rows_before", "rows_after", "checksum_before",
                                   "checksum_after", "ok"]
    assert backup.compare({"a": (1, 1)}, {"a": (1, 1)}).attrs["ok"] is True


# ------------------------------------------------------------ create and restore, no cluster


class LocalDatabase(Database):
    """Runs the scripts locally: `mysqldump` and `mysql` are shell functions given by the test."""

    def __init__(self, functions: str, running: bool = True):
        super().__init__(TARGET)
        self.functions = functions
        self.running = running
        self.statements: list[str] = []
        self._password = "s3cret-pw"

    def require_running(self):
        if not self.running:
            raise LabError("the database is down: pod database-0 does not exist in test-ns")

    def cmd(self, script, *args):
        return ["bash", "-c", PASSWORD_FROM_STDIN + self.functions + "\n" + script, "x", *args]

    def sql(self, statements, database=None, timeout=600):
        self.statements.append(statements)
        # table_stats: one table t per database, as write_backup's metadata records it
        if "TABLE_TYPE = 'BASE TABLE'" in statements:
            return [[s, "t", "16384"] for s in re.findall(r"'([^']+)'", statements.split(" IN (")[1])]
        if "CHECKSUM TABLE" in statements:
            n = statements.count("CHECKSUM TABLE")
            return [["200"]] * n + [["x.t", "42"]] * n
        if "SCHEMATA" in statements and "SCHEMA_NAME =" in statements:
            return [["lab"]] if "'lab'" in statements else []
        if "COUNT(*) FROM information_schema.TABLES" in statements:
            return [["0"]]
        if "SCHEMATA" in statements and "DEFAULT_CHARACTER_SET_NAME" in statements:
            return [["lab", "utf8mb4", "utf8mb4_unicode_ci"]]
        if "SCHEMATA" in statements:
            return [["information_schema"], ["lab"], ["mysql"]]
        if "VERSION()" in statements:
            return [["10.11.0-MariaDB"]]
        return []


GOOD_DUMP = ('mysqldump() { [ "$MYSQL_PWD" = s3cret-pw ] || exit 7; '
             'printf -- "-- dump of %s\\n" "$@"; head -c 3000 /dev/urandom | od -x; '
             'printf "\\n-- Dump completed on today\\n"; }')


def test_create_writes_backup_and_metadata_and_no_partial(tmp_path):
    db = LocalDatabase(GOOD_DUMP)
    made = backup.create(TARGET, "lab", directory=tmp_path, db=db)
    assert backup.is_backup_name(made.path.name) and made.path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([made.path.name, made.metadata_path.name])
    meta = json.loads(made.metadata_path.read_text())
    assert meta["database"] == "lab" and meta["databases"] == ["lab"]
    assert meta["sha256"] == backup.sha256_of(made.path)
    assert meta["sizes"]["compressed_bytes"] == made.path.stat().st_size
    assert set(meta["durations"]) == {"stats_s", "dump_s", "check_s", "total_s"}
    assert "--single-transaction" in meta["mysqldump_options"]
    sql = gzip.decompress(made.path.read_bytes())
    assert b"-- dump of --single-transaction\n" in sql and b"-- dump of --databases" not in sql
    assert sql.split(b"\n-- dump of ")[-1].startswith(b"lab\n")
    assert "s3cret-pw" not in made.metadata_path.read_text()


def test_create_of_every_database_skips_system_schemas(tmp_path):
    made = backup.create(TARGET, None, directory=tmp_path, db=LocalDatabase(GOOD_DUMP))
    assert made.metadata["databases"] == ["lab"]
    assert made.path.name.startswith("k8s-lab-2")
    sql = gzip.decompress(made.path.read_bytes())
    assert b"-- dump of --add-drop-database\n-- dump of --databases\n-- dump of lab\n" in sql


@pytest.mark.parametrize("functions", [
    # mysqldump fails half way: pipefail must turn that into a failure although gzip succeeds
    'mysqldump() { head -c 5000 /dev/urandom; echo "mysqldump: Error 2013: Lost connection" >&2; exit 2; }',
    # mysqldump "succeeds" but its output is cut short
    'mysqldump() { head -c 5000 /dev/zero; }',
    # nothing at all
    'mysqldump() { :; }',
])
def test_a_failed_dump_leaves_no_file(tmp_path, functions):
    with pytest.raises(LabError) as error:
        backup.create(TARGET, "lab", directory=tmp_path, db=LocalDatabase(functions))
    assert list(tmp_path.iterdir()) == []
    assert "s3cret-pw" not in str(error.value)


def test_a_dump_while_the_database_is_down_leaves_no_file(tmp_path):
    with pytest.raises(LabError, match="down"):
        backup.create(TARGET, "lab", directory=tmp_path / "backups", db=LocalDatabase(GOOD_DUMP, running=False))
    assert not (tmp_path / "backups").exists() or list((tmp_path / "backups").iterdir()) == []


LOADER = 'mysql() { cat > "$LOADED"; }'


@pytest.mark.parametrize("damage", ["empty", "truncated", "corrupt", "no-metadata", "bad-metadata"])
def test_restore_refuses_bad_files_before_touching_the_database(tmp_path, damage):
    path = write_backup(tmp_path)
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "corrupt":
        corrupt = bytearray(data)
        corrupt[len(corrupt) // 2] ^= 0xFF
        path.write_bytes(bytes(corrupt))
    elif damage == "no-metadata":
        backup.metadata_path(path).unlink()
    else:
        backup.metadata_path(path).write_text("[]")
    db = LocalDatabase(LOADER)
    with pytest.raises(LabError):
        backup.restore(TARGET, path, db=db)
    assert db.statements == []


def test_restore_loads_a_good_file_into_a_fresh_database(tmp_path, monkeypatch):
    path = write_backup(tmp_path)
    loaded = tmp_path / "loaded.sql"
    monkeypatch.setenv("LOADED", str(loaded))
    db = LocalDatabase(LOADER)
    result = backup.restore(TARGET, path, into="lab_copy", directory=tmp_path, db=db)
    assert result.databases == ["lab_copy"]
    assert loaded.read_bytes() == SQL
    creates = [s for s in db.statements if "CREATE DATABASE" in s]
    # first into a staging database, verified there, then into the target
    assert len(creates) == 2 and "-restore-" in creates[0] and "CREATE DATABASE `lab_copy`" in creates[1]
    assert not (tmp_path / backup.SAFETY_DIR).exists()  # lab_copy did not exist: nothing to keep


def test_restore_over_a_live_database_keeps_a_safety_dump(tmp_path, monkeypatch):
    monkeypatch.setenv("LOADED", str(tmp_path / "loaded.sql"))
    path = write_backup(tmp_path)
    db = LocalDatabase(GOOD_DUMP + "\n" + LOADER)
    backup.restore(TARGET, path, directory=tmp_path, db=db)
    [safety] = backup._backup_files(tmp_path / backup.SAFETY_DIR)
    assert backup.parse_name(safety.name)[0] == "lab" and backup.load_metadata(safety)
    assert backup.list_backups(tmp_path)["file"].tolist() == [path.name]  # not among the backups


def test_a_dump_that_breaks_halfway_leaves_the_live_database_alone(tmp_path, monkeypatch):
    """Valid gzip, header and trailer, a broken statement in the middle: the load into the staging
    database fails, the live database is never dropped, and the error names the safety dump."""
    path = write_backup(tmp_path)
    failing = 'mysql() { head -c 100 >/dev/null; echo "ERROR 1064 (42000) at line 3" >&2; exit 1; }'
    db = LocalDatabase(GOOD_DUMP + "\n" + failing)
    with pytest.raises(LabError) as error:
        backup.restore(TARGET, path, directory=tmp_path, db=db)
    assert "ERROR 1064" in error.value.message and "the live database is untouched" in error.value.message
    [safety] = backup._backup_files(tmp_path / backup.SAFETY_DIR)
    assert str(safety) in error.value.message
    touched = [s for s in db.statements if "`lab`" in s and ("DROP" in s or "CREATE" in s)]
    assert touched == []
    assert all("-restore-" in s for s in db.statements if "DROP DATABASE" in s)


def test_a_live_load_that_fails_after_staging_loads_the_safety_dump_back(tmp_path, monkeypatch):
    """The dump loads and verifies in staging, then the load into the live database breaks: the
    safety dump taken before is loaded back, and the error says so."""
    loaded, failed = tmp_path / "loaded.sql", tmp_path / "failed-once"
    monkeypatch.setenv("LOADED", str(loaded))
    monkeypatch.setenv("FAILED", str(failed))
    # Staging loads succeed; the first load into a live database breaks, later ones succeed.
    flaky = ('mysql() { case "$*" in *-restore-*) cat >/dev/null ;; *) if [ -e "$FAILED" ]; '
             'then cat > "$LOADED"; else touch "$FAILED"; cat >/dev/null; '
             'echo "ERROR 2013 (HY000): Lost connection" >&2; exit 1; fi ;; esac; }')
    path = write_backup(tmp_path)
    db = LocalDatabase(GOOD_DUMP + "\n" + flaky)
    with pytest.raises(LabError) as error:
        backup.restore(TARGET, path, directory=tmp_path, db=db)
    [safety] = backup._backup_files(tmp_path / backup.SAFETY_DIR)
    assert "ERROR 2013" in error.value.message and "the safety dump was loaded back" in error.value.message
    assert str(safety) in error.value.message
    assert loaded.read_bytes() == gzip.decompress(safety.read_bytes())  # the live database holds it again


def test_restore_refuses_a_dump_that_does_not_match_its_metadata(tmp_path, monkeypatch):
    monkeypatch.setenv("LOADED", str(tmp_path / "loaded.sql"))
    path = write_backup(tmp_path)
    meta = json.loads(backup.metadata_path(path).read_text())
    meta["tables"][0]["rows"] = 199
    backup.metadata_path(path).write_text(json.dumps(meta))
    db = LocalDatabase(LOADER)
    with pytest.raises(LabError, match="does not match its metadata: t"):
        backup.restore(TARGET, path, into="copy", db=db)
    assert not any("CREATE DATABASE `copy`" in s for s in db.statements)


def test_restore_into_needs_a_single_database_backup_and_no_system_schema(tmp_path):
    path = write_backup(tmp_path)
    meta = backup.load_metadata(path)
    with pytest.raises(LabError, match="system database"):
        backup._restore_targets(path, meta, "mysql")
    meta.update(database=None, databases=["lab", "shop"])
    with pytest.raises(LabError, match="--into needs a backup of one database"):
        backup._restore_targets(path, meta, "copy")
    assert backup._restore_targets(path, meta, None) == (["lab", "shop"], None)


ALL_DATABASES = b"""-- MariaDB dump 10.19
/*!40101 SET NAMES utf8mb4 */;
--
-- Current Database: `lab`
--

/*!40000 DROP DATABASE IF EXISTS `lab`*/;

CREATE DATABASE /*!32312 IF NOT EXISTS*/ `lab` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;

USE `lab`;
INSERT INTO t VALUES (1);
ALTER DATABASE `lab` CHARACTER SET latin1 ;
--
-- Current Database: `mysql`
--

CREATE DATABASE /*!32312 IF NOT EXISTS*/ `mysql` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;

USE `mysql`;
INSERT INTO global_priv VALUES ('%','root','{"old":"password"}');
--
-- Current Database: `lab`
--

USE `lab`;
CREATE VIEW v AS SELECT 1;
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

-- Dump completed on 2025-03-04  5:06:07
"""


def test_an_all_databases_dump_is_renamed_and_never_brings_back_the_mysql_schema(tmp_path):
    path = tmp_path / "k8s-lab-20250304T050607Z.sql.gz"
    path.write_bytes(gzip.compress(ALL_DATABASES))
    assert backup._dump_sections(path) == ["lab", "mysql"]
    sql = b"".join(backup._sql_chunks(path, {"lab": "lab-restore-1"}))
    assert b"global_priv" not in sql and b"`mysql`" not in sql
    assert b"/*!40000 DROP DATABASE IF EXISTS `lab-restore-1`*/;" in sql
    assert b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `lab-restore-1` /*!40100" in sql
    assert b"USE `lab-restore-1`;" in sql and b"ALTER DATABASE `lab-restore-1` CHARACTER SET" in sql
    assert b"`lab`" not in sql and b"-- Current Database: `lab-restore-1`" in sql
    assert b"SET TIME_ZONE=@OLD_TIME_ZONE" in sql
    only_system = b"".join(backup._sql_chunks(path, {}, keep={"mysql"}))
    assert b"global_priv" in only_system and b"INSERT INTO t" not in only_system


def test_restore_of_an_all_databases_dump_loads_only_user_databases(tmp_path, monkeypatch):
    loaded = tmp_path / "loaded.sql"
    monkeypatch.setenv("LOADED", str(loaded))
    path = tmp_path / "k8s-lab-20250304T050607Z.sql.gz"
    path.write_bytes(gzip.compress(ALL_DATABASES + b"-- " + b"x" * 400 + b"\n-- Dump completed\n"))
    result = backup.restore(TARGET, path, directory=tmp_path, db=LocalDatabase(GOOD_DUMP + "\n" + LOADER),
                            require_metadata=False)
    assert result.databases == ["lab"]
    assert b"global_priv" not in loaded.read_bytes() and b"USE `lab`;" in loaded.read_bytes()


def test_restore_of_a_failing_load_is_an_error(tmp_path):
    path = write_backup(tmp_path)
    db = LocalDatabase('mysql() { echo "ERROR 1064 (42000) at line 3" >&2; exit 1; }')
    with pytest.raises(LabError, match="ERROR 1064"):
        backup.restore(TARGET, path, into="copy", db=db)


def test_a_hung_dump_is_stopped_at_its_deadline(tmp_path):
    """The deadline used to be checked only between reads: an exec that hung sending nothing
    hung `lab backup create` for ever."""
    started = time.monotonic()
    with pytest.raises(LabError, match="did not finish within 1s"):
        backup._stream_to_file(["sleep", "30"], b"", tmp_path / "out", timeout=1)
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- namespace snapshots


def test_clean_object_strips_what_the_cluster_sets():
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "db", "namespace": "n", "uid": "u", "resourceVersion": "1",
                            "creationTimestamp": "t", "managedFields": []},
               "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ports": []},
               "status": {"loadBalancer": {}}}
    clean = backup.clean_object(service)
    assert clean["metadata"] == {"name": "db", "namespace": "n"}
    assert "clusterIP" not in clean["spec"] and "status" not in clean
    headless = dict(service, spec={"clusterIP": "None", "clusterIPs": ["None"]})
    assert backup.clean_object(headless)["spec"]["clusterIP"] == "None"
    owned = dict(service, metadata={"name": "x", "ownerReferences": [{"uid": "u"}]})
    assert backup.clean_object(owned) is None
    assert backup.clean_object({"kind": "Secret", "type": "kubernetes.io/service-account-token",
                                "metadata": {"name": "t"}}) is None
    assert backup.clean_object({"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}}) is None


# -------------------------------------------------------------------------------------- the CLI


def test_cli_list_and_drill_needs_yes(tmp_path):
    write_backup(tmp_path)
    result = CliRunner().invoke(cli, ["backup", "list", "--dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "k8s-lab-lab-20250304T050607Z.sql.gz" in result.output
    result = CliRunner().invoke(cli, ["backup", "drill", "-n", "nowhere"])
    assert result.exit_code == 1 and "--yes" in result.output


def test_cli_restore_of_a_bad_file_fails_cleanly(tmp_path):
    path = write_backup(tmp_path)
    path.write_bytes(b"")
    result = CliRunner().invoke(cli, ["backup", "restore", str(path), "-n", "nowhere"])
    assert result.exit_code == 1
    assert "is empty" in result.output
