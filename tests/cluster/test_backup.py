"""lab.ops.backup on the real cluster (issue 5): round trip, refused bad files, a backup while the
database is down, and the disaster drill.

The module installs its own database with the Helm chart (only the storage and database layers)
into the namespace k8s-lab-backup-test, with its own PersistentVolume and host directory, and
removes all of it afterwards. It never touches k8s-assignment. Backups go to a temporary directory.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from lab import config
from lab.cluster import kind, kube
from lab.ops import backup
from lab.ops import database as mysql
from lab.ops.database import Database, table_stats
from lab.system import deploy, hostdirs
from lab.errors import LabError
from tests.support import TARGET, helm, kubectl, lab_cli, say

pytestmark = pytest.mark.cluster

NS = "k8s-lab-backup-test"
HERE = TARGET.in_namespace(NS)  # the test's own database, never the lab's
RELEASE = "k8s-lab"
PV = "k8s-lab-backup-test-data"
NODE_DIR = "/var/local/k8s-lab/pv/backup-test"
HOST_DIR = TARGET.data_dir / "pv" / "backup-test"
MODE = os.environ.get("LAB_IMAGE_MODE") or "auto"

SEED = """
CREATE TABLE items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(50) NOT NULL,
                    price DECIMAL(8,2), note TEXT, data BLOB, created DATETIME(3));
CREATE TABLE audit (id INT PRIMARY KEY AUTO_INCREMENT, item_id INT, what VARCHAR(20));
CREATE TABLE empty_one (id INT PRIMARY KEY);
INSERT INTO items (name, price, note, data, created) VALUES
  ('apple', 1.50, 'tab\\there', UNHEX('00FF10'), '2025-01-02 03:04:05.678'),
  ('pear', 2.25, NULL, NULL, NULL),
  ('kiwi', 0.99, 'ünïcode ✓ \\'quoted\\'', UNHEX(''), NOW(3));
INSERT INTO items (name, price) SELECT CONCAT('bulk-', a.id, '-', b.id), a.id + b.id / 100
  FROM items a, items b, items c;
CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 2;
CREATE TRIGGER items_ai AFTER INSERT ON items FOR EACH ROW INSERT INTO audit (item_id, what) VALUES (NEW.id, 'insert');
CREATE PROCEDURE add_item(n VARCHAR(50)) INSERT INTO items (name, price) VALUES (n, 1);
CREATE EVENT cleanup ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit WHERE id < 0;
CALL add_item('via-procedure');
"""


def remove_everything() -> None:
    started = time.monotonic()
    # Not --wait: the PersistentVolume stays in use (and Terminating) until the namespace, with
    # the StatefulSet's claim, is gone.
    helm("uninstall", RELEASE, "--namespace", NS, check=False)
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", "--timeout=180s", check=False,
            timeout=200)
    kubectl("delete", "persistentvolume", PV, "--ignore-not-found", "--wait=true", "--timeout=60s",
            check=False, timeout=80)
    shutil.rmtree(HOST_DIR, ignore_errors=True)
    say(f"removed {NS}, {PV} and {HOST_DIR} ({time.monotonic() - started:.0f}s)")


def database_image() -> str:
    from lab.build import images

    mode = images.resolve_mode(MODE)
    image = images.image_names(mode)["database"]
    if image.startswith("k8s-lab/") and deploy.missing_images(TARGET, [image]):
        say(f"loading the lab images into the cluster (lab images build, {mode})")
        images.build(mode)
        kind.load_images(TARGET, images.to_load(mode))
    return image


@pytest.fixture(scope="module")
def db():
    """A fresh database (chart: storage + database only) in NS, seeded; removed afterwards."""
    remove_everything()
    image = database_image()
    say(f"installing the database into {NS} ({image})")
    # uid 999 runs the database and no Pod may chown (restricted): the lab prepares the directory.
    hostdirs.prepare([{"kind": "PersistentVolume", "metadata": {"name": PV, "annotations": {
        hostdirs.OWNER_ANNOTATION: "999:999", hostdirs.MODE_ANNOTATION: "0750"}},
        "spec": {"hostPath": {"path": NODE_DIR}}}], config.CLUSTER_NAME)
    helm("upgrade", "--install", RELEASE, str(deploy.CHART_DIR), "--namespace", NS, "--create-namespace",
         "--set", "web.enabled=false", "--set", "networkPolicy.enabled=false",
         "--set", "watcher.enabled=false", "--set", "backup.enabled=false",
         "--set", f"storage.persistentVolumeName={PV}", "--set", f"storage.hostPath={NODE_DIR}",
         "--set", f"database.image={image}", "--wait", "--timeout", "300s", timeout=360)
    database = Database(HERE)
    kube.wait_until(database.ping, 300, what="the database to answer SQL")
    database.sql(SEED, database="lab")
    yield database
    remove_everything()


@pytest.fixture
def backups(tmp_path):
    return tmp_path / "backups"


def live_state(database: Database, name: str = "lab") -> list[dict]:
    return table_stats(database, [name])


def rows(database: Database, query: str, name: str = "lab") -> list[list[str]]:
    return database.sql(query, database=name)


# ------------------------------------------------------------------------------------- tests


def signal_sql_clients(signal: str) -> None:
    """Send ``signal`` to every mysql client process in the test's database container."""
    script = (f'for p in /proc/[0-9]*; do case "$(cat $p/comm 2>/dev/null)" in mysql|mariadb) '
              f'kill -{signal} "${{p#/proc/}}";; esac; done')
    ran = kube.exec_in_pod(HERE, "database-0", ["bash", "-c", script], container=mysql.CONTAINER)
    assert ran.ok, ran


def test_statements_share_one_client_and_an_idle_one_must_answer_first(db, monkeypatch):
    connection = lambda: db.sql("SELECT CONNECTION_ID();")[0][0]  # noqa: E731 - the server's id of this client
    first = connection()
    assert connection() == first  # the same client answered: no new exec, no new login
    monkeypatch.setattr(mysql, "SESSION_IDLE_S", 0.0)
    assert connection() == first  # idle, it answered the ping: kept, no new login
    # A client that no longer answers (stopped here; a connection cut in silence looks the same):
    # the ping times out and the statement goes down a new session instead.
    monkeypatch.setattr(mysql, "PING_TIMEOUT_S", 1.0)
    signal_sql_clients("STOP")
    try:
        started = time.monotonic()
        second = connection()
        assert second != first
        assert time.monotonic() - started < 15  # the ping's timeout, not the statement's 600 s
    finally:
        signal_sql_clients("CONT")
    assert connection() == second


def test_a_session_prepared_in_the_background_serves_the_next_statement(db, monkeypatch):
    import threading

    opened = []

    class Counted(mysql._Session):
        def __init__(self, *args):
            super().__init__(*args)
            opened.append(threading.current_thread().name)

    monkeypatch.setattr(mysql, "_Session", Counted)
    mysql._close_sessions(db)
    db.prepare("lab").join(60)
    assert db.sql("SELECT DATABASE();", database="lab") == [["lab"]]
    assert opened == ["sql-session"]  # opened once, by the background thread, and used after


def test_threads_sharing_a_database_each_get_their_own_answers(db):
    """lab grade --live checks students in threads; two checks of one database must never read
    each other's rows off the shared client."""
    from concurrent.futures import ThreadPoolExecutor

    def asks(worker: int) -> list[bool]:
        return [db.sql(f"SELECT {worker * 100 + i};") == [[str(worker * 100 + i)]] for i in range(15)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = [ok for worker in pool.map(asks, range(4)) for ok in worker]
    assert answers == [True] * 60


def test_a_failed_statement_says_what_the_server_said_and_the_next_one_runs(db):
    with pytest.raises(LabError, match=rf"SQL in {NS}/database-0 failed: ERROR 1146 .*no_such_table"):
        db.sql("SELECT * FROM no_such_table;", database="lab")
    assert db.sql("SELECT COUNT(*) FROM empty_one;", database="lab") == [["0"]]
    assert db.sql("SELECT 'tab\there', 'ünïcode ✓';") == [["tab\\there", "ünïcode ✓"]]  # batch mode escapes a tab


def test_round_trip_into_a_fresh_database_verifies(db, backups):
    made = backup.create(HERE, "lab", directory=backups)
    meta = made.metadata
    assert made.path.parent == backups and backup.parse_name(made.path.name)[0] == "lab"
    assert sorted(p.name for p in backups.iterdir()) == sorted([made.path.name, made.metadata_path.name])
    subprocess.run(["gzip", "-t", str(made.path)], check=True)
    assert meta["sha256"] == backup.sha256_of(made.path)
    tables = {t["table"]: t for t in meta["tables"]}
    assert set(tables) == {"items", "audit", "empty_one"}
    assert tables["items"]["rows"] == 3 + 27 + 1 and tables["audit"]["rows"] == 1
    assert all(isinstance(t["checksum"], int) for t in tables.values())
    assert meta["objects"]["lab"] == {"views": 1, "routines": 1, "triggers": 1, "events": 1}

    result = backup.restore(HERE, made.path, into="lab_restored")
    assert result.databases == ["lab_restored"]
    frame = backup.verify(HERE, made.path, into="lab_restored")
    assert list(frame.columns) == ["table", "rows_before", "rows_after", "checksum_before",
                                   "checksum_after", "ok"]
    assert frame["ok"].all() and frame.attrs["ok"], frame.to_string()
    assert set(frame["table"]) >= {"items", "audit", "empty_one", "(views)", "(routines)", "(triggers)", "(events)"}
    # The live source agrees too, and the odd values came through byte for byte.
    assert backup.verify(HERE, source="lab", into="lab_restored").attrs["ok"]
    query = "SELECT name, HEX(data), note, created FROM items WHERE id <= 3 ORDER BY id"
    assert rows(db, query, "lab_restored") == rows(db, query, "lab")
    # The procedure and the trigger work in the copy.
    rows(db, "CALL add_item('after-restore');", "lab_restored")
    assert rows(db, "SELECT COUNT(*) FROM audit", "lab_restored") == [["2"]]
    listed = backup.list_backups(backups)
    assert listed["file"].tolist() == [made.path.name] and listed["verified"].tolist() == [True]


def test_restore_into_the_same_database_undoes_changes(db, backups):
    made = backup.create(HERE, "lab", directory=backups)
    rows(db, "DELETE FROM items WHERE name LIKE 'bulk-%'; UPDATE items SET price = 99 WHERE name = 'pear';"
             "CREATE TABLE stray (id INT);")
    assert not backup.verify(HERE, made.path, record=False).attrs["ok"]
    backup.restore(HERE, made.path)
    frame = backup.verify(HERE, made.path)
    assert frame.attrs["ok"], frame.to_string()
    assert "stray" not in set(frame["table"])
    # --into an existing database with tables needs replace=True.
    rows(db, "CREATE DATABASE IF NOT EXISTS other; CREATE TABLE IF NOT EXISTS other.t (i INT);")
    with pytest.raises(LabError, match="already exists"):
        backup.restore(HERE, made.path, into="other")
    backup.restore(HERE, made.path, into="other", replace=True)
    assert backup.verify(HERE, made.path, into="other").attrs["ok"]


def test_cli_round_trip_keeps_the_password_out_of_output(db, backups):
    password = db.password()
    created = lab_cli("backup", "create", "lab", "-n", NS, "--dir", str(backups))
    assert created.returncode == 0, created.stderr
    restored = lab_cli("backup", "restore", "latest", "--into", "lab_cli", "-n", NS, "--dir", str(backups))
    assert restored.returncode == 0, restored.stderr + restored.stdout
    assert "checks ok" in restored.stdout
    listed = lab_cli("backup", "list", "--dir", str(backups))
    assert listed.returncode == 0 and "k8s-lab-lab-" in listed.stdout
    for result in (created, restored, listed):
        assert password not in result.stdout + result.stderr


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "empty", "corrupt-no-metadata",
                                    "truncated-no-metadata"])
def test_bad_files_are_refused_and_the_live_database_is_untouched(db, backups, damage):
    made = backup.create(HERE, "lab", directory=backups)
    sentinel = f"written-after-the-backup-{damage}"
    rows(db, f"INSERT INTO items (name) VALUES ('{sentinel}');")
    before = live_state(db)
    databases_before = db.user_databases()
    data = made.path.read_bytes()
    if damage.startswith("corrupt"):
        broken = bytearray(data)
        for offset in range(len(broken) // 3, len(broken) // 3 + 16):
            broken[offset] ^= 0x5A
        made.path.write_bytes(bytes(broken))
    elif damage.startswith("truncated"):
        made.path.write_bytes(data[: len(data) * 2 // 3])
    else:
        made.path.write_bytes(b"")
    require_metadata = True
    if damage.endswith("no-metadata"):
        made.metadata_path.unlink()
        require_metadata = False
    with pytest.raises(LabError) as refused:
        backup.restore(HERE, made.path, require_metadata=require_metadata)
    expected = {"corrupt": "does not match its metadata", "truncated": "metadata records",
                "empty": "is empty", "corrupt-no-metadata": "gzip",
                "truncated-no-metadata": "gzip"}[damage]
    assert expected in str(refused.value)
    with pytest.raises(LabError):
        backup.restore(HERE, made.path, into="lab_never", require_metadata=require_metadata)
    assert live_state(db) == before
    assert db.user_databases() == databases_before
    assert rows(db, f"SELECT COUNT(*) FROM items WHERE name = '{sentinel}'") == [["1"]]
    cli = lab_cli("backup", "restore", str(made.path), "-n", NS, "--without-metadata")
    assert cli.returncode == 1 and "error" in cli.stderr
    assert live_state(db) == before


def test_backup_while_the_database_is_down_fails_and_leaves_no_file(db, backups):
    kubectl("-n", NS, "scale", "statefulset/database", "--replicas=0")
    core = kube.core(TARGET)

    def pod_gone():
        return not [p for p in core.list_namespaced_pod(NS).items if p.metadata.name == "database-0"]

    try:
        kube.wait_until(pod_gone, 180, what="database-0 to stop")
        with pytest.raises(LabError, match="down"):
            backup.create(HERE, "lab", directory=backups)
        with pytest.raises(LabError, match="down"):
            backup.create(HERE, None, directory=backups)
        cli = lab_cli("backup", "create", "lab", "-n", NS, "--dir", str(backups))
        assert cli.returncode != 0 and "down" in cli.stderr
        assert not backups.exists() or list(backups.iterdir()) == []
    finally:
        kubectl("-n", NS, "scale", "statefulset/database", "--replicas=1")
        backup.wait_database(db, 300)
    made = backup.create(HERE, "lab", directory=backups)
    assert backup.verify(HERE, made.path).attrs["ok"]


def test_disaster_drill_recovers_the_data_at_every_stage(db, backups):
    frame = backup.drill(HERE, database="lab", directory=backups, timeout=400)
    assert frame["stage"].tolist() == ["pod", "statefulset", "namespace"]
    assert frame["ok"].all(), frame.to_string()
    # The volume kept the files (Retain): nothing had to be restored.
    assert frame["survived"].all(), frame.to_string()
    assert (frame["restore_seconds"] == 0).all(), frame.to_string()
    pv = kube.core(TARGET).read_persistent_volume(PV)
    assert pv.status.phase == "Bound" and pv.spec.claim_ref.namespace == NS
    assert helm("status", RELEASE, "--namespace", NS).returncode == 0
    # And the backup taken by the drill restores into a fresh database that verifies.
    backup.restore(HERE, frame.attrs["backup"], into="lab_after_drill")
    assert backup.verify(HERE, frame.attrs["backup"], into="lab_after_drill").attrs["ok"]


def test_drill_restores_a_dropped_database(db, backups):
    """No volume keeps a dropped database: the drill must bring it back from the backup."""
    made = backup.create(HERE, "lab", directory=backups)
    frame = backup.drill(HERE, directory=backups, stages=["database"], backup=made.path, timeout=300)
    record = frame.to_dict("records")[0]
    assert (record["stage"], record["survived"], record["restored"], record["ok"]) == ("database", False, True, True)
    assert record["restore_seconds"] > 0  # measured on its own, beside the time until the database answered
    assert backup.verify(HERE, made.path).attrs["ok"]
