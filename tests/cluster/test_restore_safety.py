"""Safe restore (issue 14) on the real cluster: a dump that breaks halfway through the load leaves
the live database exactly as it was (row counts and CHECKSUM TABLE), and the message names the
safety dump; a good restore over the live database replaces it and keeps a safety dump.

The module installs only the database (chart: storage + database layers) into its own namespace
with its own PersistentVolume and host directory, and removes all of it afterwards.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil

import pytest
import yaml

from lab.ops import backup
from lab.ops.database import Database, table_stats
from lab.system import deploy
from lab.system import hostdirs
from lab.cluster import kind, kube
from lab.errors import LabError
from tests.support import TARGET, helm, kubectl, say

pytestmark = pytest.mark.cluster

NS = "k8s-lab-restore-test"
HERE = TARGET.in_namespace(NS)  # the test's own database, never the lab's
PV = "k8s-lab-restore-test-data"
NODE_DIR = "/var/local/k8s-lab/pv/restore-test"
HOST_DIR = TARGET.data_dir / "pv" / "restore-test"
MODE = os.environ.get("LAB_IMAGE_MODE") or "auto"
CHART_ARGS = ("--set", "web.enabled=false", "--set", "networkPolicy.enabled=false", "--set", "watcher.enabled=false",
              "--set", "backup.enabled=false", "--set", f"storage.persistentVolumeName={PV}",
              "--set", f"storage.hostPath={NODE_DIR}")
SEED = ("CREATE TABLE readings (id INT PRIMARY KEY, sensor VARCHAR(16), value DOUBLE);"
        "INSERT INTO readings VALUES " + ",".join(f"({i}, 's{i % 7}', {i * 1.5})" for i in range(1, 2001)) + ";"
        "CREATE TABLE notes (id INT PRIMARY KEY, note TEXT); INSERT INTO notes VALUES (1, 'before');")


def remove_everything() -> None:
    helm("uninstall", deploy.RELEASE, "--namespace", NS, check=False)
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", "--timeout=180s", check=False, timeout=200)
    kubectl("delete", "persistentvolume", PV, "--ignore-not-found", "--wait=true", "--timeout=60s", check=False,
            timeout=80)
    shutil.rmtree(HOST_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def db():
    from lab.build import images

    remove_everything()
    mode = images.resolve_mode(MODE)
    image = images.image_names(mode)["database"]
    if image.startswith("k8s-lab/") and deploy.missing_images(TARGET, [image]):
        images.build(mode)
        kind.load_images(TARGET, images.to_load(mode))
    args = [*CHART_ARGS, "--set", f"database.image={image}"]
    rendered = helm("template", deploy.RELEASE, str(deploy.CHART_DIR), "--namespace", NS, *args).stdout
    hostdirs.prepare([d for d in yaml.safe_load_all(rendered) if d], TARGET.cluster)
    helm("upgrade", "--install", deploy.RELEASE, str(deploy.CHART_DIR), "--namespace", NS, "--create-namespace",
         *args, "--wait", "--timeout", "300s", timeout=360)
    database = Database(HERE)
    kube.wait_until(database.ping, 300, what="the database to answer SQL")
    database.sql(SEED, database="lab")
    yield database
    remove_everything()


def live(database: Database) -> list[dict]:
    """Each table's rows and CHECKSUM TABLE: its content. Not data_bytes, which InnoDB updates in
    the background (persistent statistics) with no change of content."""
    return [{k: v for k, v in table.items() if k != "data_bytes"} for table in table_stats(database, ["lab"])]


def broken_copy(good: backup.Backup, directory) -> backup.Backup:
    """The good dump with a broken statement in the middle: valid gzip, mysqldump's header and
    closing line, and metadata that matches the file (so every file check passes)."""
    lines = gzip.decompress(good.path.read_bytes()).split(b"\n")
    inserts = [i for i, line in enumerate(lines) if line.startswith(b"INSERT INTO `readings`")]
    assert inserts, "the dump has no INSERTs to break"
    lines.insert(inserts[len(inserts) // 2], b"INSERT INTO `readings` VALUES (1, 'broken' THIS IS NOT SQL;")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / backup.backup_name("lab")
    path.write_bytes(gzip.compress(b"\n".join(lines)))
    meta = {**good.metadata, "file": path.name, "sha256": backup.sha256_of(path),
            "sizes": {**good.metadata["sizes"], "compressed_bytes": path.stat().st_size}}
    backup.metadata_path(path).write_text(json.dumps(meta))
    return backup.Backup(path, meta)


def test_a_dump_broken_halfway_leaves_the_live_database_identical(db, tmp_path):
    good = backup.create(HERE, "lab", directory=tmp_path / "good")
    bad = broken_copy(good, tmp_path / "bad")
    backup.check_file(bad.path, backup.load_metadata(bad.path))  # the file itself looks fine
    db.sql("UPDATE notes SET note = 'changed after the backup' WHERE id = 1;", database="lab")
    before = live(db)
    with pytest.raises(LabError) as error:
        backup.restore(HERE, bad.path, directory=tmp_path / "bad", db=db)
    say(error.value.message.splitlines()[-1])
    assert "the live database is untouched" in error.value.message
    [safety] = backup._backup_files(tmp_path / "bad" / backup.SAFETY_DIR)
    assert str(safety) in error.value.message
    assert live(db) == before  # row counts and CHECKSUM TABLE, table by table
    assert db.sql("SELECT note FROM notes WHERE id = 1;", database="lab") == [["changed after the backup"]]
    assert [d for d in db.user_databases() if "restore" in d] == []  # no staging database left


def test_a_good_restore_replaces_the_live_database_and_keeps_a_safety_dump(db, tmp_path):
    good = backup.create(HERE, "lab", directory=tmp_path)
    db.sql("DELETE FROM readings WHERE id > 1000; UPDATE notes SET note = 'after';", database="lab")
    changed = live(db)
    backup.restore(HERE, good.path, directory=tmp_path, db=db)
    assert backup.verify(HERE, good.path, directory=tmp_path, record=False).attrs["ok"]
    [safety] = backup._backup_files(tmp_path / backup.SAFETY_DIR)
    assert {t["table"]: t["rows"] for t in backup.load_metadata(safety)["tables"]} == \
        {t["table"]: t["rows"] for t in changed}
    assert [d for d in db.user_databases() if "restore" in d] == []


def test_an_all_databases_dump_never_restores_the_mysql_schema(db, tmp_path):
    """An old-style --all-databases dump (the CronJob made them before issue 14) carries the
    mysql schema: its accounts and passwords stay out unless asked for."""
    db.sql("CREATE USER IF NOT EXISTS 'intruder'@'%' IDENTIFIED BY 'intruder-password';")
    path = tmp_path / backup.backup_name(None)
    script = "mysqldump --user=root --all-databases --single-transaction | gzip -c"
    backup._stream_to_file(db.cmd(script), (db.password() + "\n").encode(), path, 120)
    assert b"intruder" in gzip.decompress(path.read_bytes())
    db.sql("DROP USER 'intruder'@'%';")
    before = db.sql("SELECT User, Host FROM mysql.user ORDER BY 1, 2;")
    result = backup.restore(HERE, path, directory=tmp_path, db=db, require_metadata=False)
    assert result.databases == ["lab"]
    assert db.sql("SELECT User, Host FROM mysql.user ORDER BY 1, 2;") == before
