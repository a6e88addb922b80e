"""Benchmark of lab.ops.backup: backup and verified restore of a ~100 MB database, against plain
mysqldump/mysql in the same run.

It installs its own database (the chart's storage and database layers) in the namespace
k8s-lab-backup-bench, fills a database `bench` by doubling a table with INSERT ... SELECT until
its InnoDB data reaches --mb, then times, once each:

  20 SQL requests           lab.ops.database's one client per Pod, against a kubectl exec each
  lab backup create         lab.ops.backup.create (stats + mysqldump | gzip + checks + metadata)
  lab restore + verify      lab.ops.backup.restore --into a fresh database, then lab.ops.backup.verify
  plain dump to file        kubectl exec mysqldump | gzip > file (no checks, no metadata)
  plain restore from file   gzip -dc file | kubectl exec mysql
  plain mysqldump | mysql   both inside the Pod, straight into another database

and removes everything afterwards (--keep leaves it). Run when the cluster is otherwise quiet:
the numbers are wall-clock seconds on whatever else the machine is doing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.ops import backup  # noqa: E402
from lab.ops.database import Database  # noqa: E402
from lab.system import deploy  # noqa: E402
from lab.target import Target  # noqa: E402

TARGET = Target.of()  # the lab's cluster, or the one LAB_CLUSTER names
NS = "k8s-lab-backup-bench"
HERE = TARGET.in_namespace(NS)
PV = "k8s-lab-backup-bench-data"
NODE_DIR = "/var/local/k8s-lab/pv/backup-bench"
HOST_DIR = TARGET.data_dir / "pv" / "backup-bench"
CREDENTIAL_FILE = "/etc/k8s-lab/database-credentials/root-password"
# Plain runs read the password from the Secret mounted in the Pod (as the probes do).
PLAIN_LOGIN = f'export MYSQL_PWD="$(cat {CREDENTIAL_FILE})"; set -o pipefail; '

results: list[tuple[str, float, str]] = []


def timed(label: str, fn, note: str = ""):
    start = time.monotonic()
    value = fn()
    seconds = time.monotonic() - start
    results.append((label, seconds, note() if callable(note) else note))
    print(f"{label:<34} {seconds:8.1f} s", flush=True)
    return value


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, **kwargs)
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else result.stderr
        raise SystemExit(f"{cmd[:6]}... failed ({result.returncode}): {err[-2000:]}")
    return result


def plain_exec(script: str, stdin=None, stdout=None) -> None:
    cmd = deploy.kubectl_cmd(TARGET, "exec", *(["-i"] if stdin is not None else []), "-n", NS, "database-0",
                             "-c", "database", "--", "bash", "-c", PLAIN_LOGIN + script)
    result = subprocess.run(cmd, stdin=stdin, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise SystemExit(f"plain run failed ({result.returncode}): {result.stderr.decode()[-2000:]}")


def remove() -> None:
    subprocess.run(deploy.helm_cmd(TARGET, "uninstall", "k8s-lab", "--namespace", NS), capture_output=True)
    subprocess.run(deploy.kubectl_cmd(TARGET, "delete", "namespace", NS, "--ignore-not-found", "--timeout=180s"),
                   capture_output=True)
    subprocess.run(deploy.kubectl_cmd(TARGET, "delete", "pv", PV, "--ignore-not-found", "--timeout=60s"),
                   capture_output=True)
    shutil.rmtree(HOST_DIR, ignore_errors=True)


def install() -> Database:
    from lab.build import images

    image = images.image_names(images.resolve_mode("auto"))["database"]
    run(deploy.helm_cmd(TARGET, "upgrade", "--install", "k8s-lab", str(deploy.CHART_DIR), "--namespace", NS,
                        "--create-namespace", "--set", "web.enabled=false", "--set", "networkPolicy.enabled=false",
                        "--set", "watcher.enabled=false", "--set", "backup.enabled=false",
                        "--set", f"storage.persistentVolumeName={PV}", "--set", f"storage.hostPath={NODE_DIR}",
                        "--set", f"database.image={image}", "--wait", "--timeout", "300s"))
    db = Database(HERE)
    backup.wait_database(db, 300)
    return db


def data_mb(db: Database) -> float:
    rows = db.sql("SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES "
                  "WHERE TABLE_SCHEMA = 'bench';")
    return int(rows[0][0]) / 2**20


def fill(db: Database, megabytes: int) -> int:
    db.sql("CREATE DATABASE IF NOT EXISTS bench; SET GLOBAL innodb_flush_log_at_trx_commit = 2;")
    db.sql("CREATE TABLE IF NOT EXISTS items (id BIGINT PRIMARY KEY AUTO_INCREMENT, n INT NOT NULL, "
           "x DOUBLE, label VARCHAR(40), body VARCHAR(255), created DATETIME) ENGINE=InnoDB;"
           "INSERT INTO items (n, x, label, body, created) VALUES (1, 0.5, 'seed', REPEAT('s', 100), NOW());",
           database="bench")
    while True:
        db.sql("ANALYZE TABLE items;", database="bench")
        count = int(db.sql("SELECT COUNT(*) FROM items;", database="bench")[0][0])
        size = data_mb(db)
        print(f"  {count:>9} rows, {size:7.1f} MiB", flush=True)
        if size >= megabytes:
            return count
        # Doubling; the text is hex of random hashes, so gzip sees realistic, not trivial, data.
        db.sql("INSERT INTO items (n, x, label, body, created) "
               "SELECT FLOOR(RAND() * 1000000000), RAND() * 1000, CONCAT('item-', id + n % 7), "
               "CONCAT(MD5(RAND()), ' ', MD5(RAND()), ' ', SHA1(RAND()), ' lorem ipsum dolor sit amet'), "
               "NOW() - INTERVAL FLOOR(RAND() * 1000) DAY FROM items;", database="bench", timeout=1800)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100, help="InnoDB data size to reach (MiB)")
    parser.add_argument("--keep", action="store_true", help="keep the namespace, volume and files")
    args = parser.parse_args()

    remove()
    workdir = Path(tempfile.mkdtemp(prefix="k8s-lab-bench-backup-"))
    try:
        db = timed("install database (chart)", install)
        rows = timed("generate data (INSERT...SELECT)", lambda: fill(db, args.mb))
        size = data_mb(db)
        print(f"database bench: {rows} rows, {size:.1f} MiB InnoDB data+index", flush=True)

        timed("20 SQL requests: one session", lambda: [db.sql("SELECT 1;") for _ in range(20)])
        timed("20 SQL requests: an exec each", lambda: [plain_exec("mysql --user=root -e 'SELECT 1'")
                                                        for _ in range(20)])
        made = timed("lab backup create", lambda: backup.create(HERE, "bench", directory=workdir))
        meta = made.metadata
        results[-1] = (*results[-1][:2], f"{backup.human_size(made.size)} gz, "
                       f"{backup.human_size(meta['sizes']['uncompressed_bytes'])} SQL; "
                       + ", ".join(f"{k} {v:.1f}s" for k, v in meta["durations"].items()))
        timed("lab restore --into (checks first)",
              lambda: backup.restore(HERE, made.path, into="bench_lab"))
        frame = timed("lab verify", lambda: backup.verify(HERE, made.path, into="bench_lab"))
        assert frame.attrs["ok"], frame.to_string()

        plain_file = workdir / "plain.sql.gz"
        with open(plain_file, "wb") as out:
            timed("plain dump to file (mysqldump|gzip)", lambda: plain_exec(
                "mysqldump --user=root --single-transaction --routines --triggers --events bench | gzip -6 -c",
                stdout=out))
        db.sql("CREATE DATABASE bench_plain;")
        with open(plain_file, "rb") as source:
            timed("plain restore from file (gzip|mysql)", lambda: plain_exec(
                "gzip -dc | mysql --user=root bench_plain", stdin=source))
        db.sql("CREATE DATABASE bench_pipe;")
        timed("plain mysqldump | mysql (in Pod)", lambda: plain_exec(
            "mysqldump --user=root --single-transaction --routines --triggers --events bench "
            "| mysql --user=root bench_pipe"))
        assert backup.verify(HERE, source="bench", into="bench_pipe", record=False).attrs["ok"]

        by = {label: seconds for label, seconds, _ in results}
        lab_total = by["lab backup create"] + by["lab restore --into (checks first)"] + by["lab verify"]
        plain_total = by["plain dump to file (mysqldump|gzip)"] + by["plain restore from file (gzip|mysql)"]
        print()
        print(f"{'step':<38}{'seconds':>9}  notes")
        for label, seconds, note in results:
            print(f"{label:<38}{seconds:9.1f}  {note}")
        print(f"{'lab: backup + restore + verify':<38}{lab_total:9.1f}")
        print(f"{'plain: dump to file + restore':<38}{plain_total:9.1f}  ratio lab/plain {lab_total / plain_total:.2f}")
        print(f"{'plain: mysqldump | mysql':<38}{by['plain mysqldump | mysql (in Pod)']:9.1f}")
        print(f"data: {rows} rows, {size:.1f} MiB InnoDB; {os.cpu_count()} CPUs on the host, "
              f"load average {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not args.keep:
            remove()


if __name__ == "__main__":
    main()
