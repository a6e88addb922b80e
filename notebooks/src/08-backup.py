# Source of notebooks/08-backup.ipynb (build with: python notebooks/src/build.py)

# %% [markdown]
# # 08 · Backups you can trust: create, restore, verify, and a disaster drill
#
# The volume of notebook 02 keeps the database's files when a Pod, a StatefulSet or even the
# namespace goes away. It does not help when someone runs `DROP DATABASE`, when a bug writes
# garbage, or when the disk dies: for that you need **backups**, copies kept somewhere else. And a
# backup you have never restored is only a hope. In this notebook we take backups two ways (the
# chart's nightly CronJob, and `lab backup`), restore one into a fresh database, prove with row
# counts and checksums that it holds the same data, and then run a **disaster drill**: we delete
# the database Pod, its StatefulSet and finally the whole namespace, and bring the data back
# after each, timing how long it took.

# %% [markdown]
# ## Learning objectives
#
# After this notebook you can
#
# - take a consistent logical backup of a running MySQL/MariaDB with `mysqldump --single-transaction`,
#   and say why a copy of the data directory of a running server is not one,
# - check that a backup file is complete (size, sha256, `gzip -t`, mysqldump's closing line) before
#   trusting it,
# - restore into a fresh database and verify it table by table (row counts and `CHECKSUM TABLE`),
# - explain what survives the loss of a Pod, a StatefulSet and a namespace, and why the
#   PersistentVolume's reclaim policy `Retain` matters for the last one,
# - measure recovery time (RTO) per failure, and tell the failures a volume survives from those
#   only a backup repairs.

# %% [markdown]
# ## Concepts
#
# - **Logical vs physical backup.** `mysqldump` writes SQL (`CREATE TABLE`, `INSERT`) that
#   rebuilds the data on any server version; a copy of the data directory (physical) is faster but
#   only consistent when the server is stopped or the copy tool understands the storage engine.
# - **Consistency.** `--single-transaction` dumps every InnoDB table from one snapshot (a
#   repeatable-read transaction) without locking out writers: all tables show the same moment.
# - **Integrity.** A dump cut short looks like a dump. `lab backup` writes to a temporary name,
#   checks the exit code, `gzip -t` and the `-- Dump completed` trailer, then renames; it records
#   the file's sha256, and per table the row count and `CHECKSUM TABLE` value, in a
#   `.meta.json` next to it. Restore checks the file before it touches the database.
# - **RPO and RTO.** *Recovery point objective*: how much data you may lose (the time since the
#   last backup; nightly means up to a day). *Recovery time objective*: how long the repair may
#   take. The drill measures the second.
# - **Retain.** When a claim is deleted, a PersistentVolume with reclaim policy `Delete` loses its
#   data; `Retain` keeps the files and marks the volume `Released`. A Released volume still points
#   at the old claim (by UID), so a new claim of the same name cannot bind until that pointer is
#   cleared: the drill does exactly that.

# %% tags=["parameters"]
cluster = "k8s-lab"  # the kind cluster: kubeconfig context kind-<cluster>
namespace = "k8s-assignment"  # where the lab's objects go
mode = "auto"  # images: "auto" | "online" | "offline"
solutions = True  # True runs the reference solutions; False leaves the exercises to you
kubeconfig = ""  # "": $KUBECONFIG or ~/.kube/config; in a classroom, the file your instructor gave you

# %%
# NBVAL_CHECK_OUTPUT
from lab import checks, notebook

nb = notebook.start("08-backup.ipynb", cluster=cluster, namespace=namespace, mode=mode, solutions=solutions,
                    kubeconfig=kubeconfig, requires=("01", "02", "03", "04", "07"))

# %% [markdown]
# `lab.ops.backup` (and `lab backup ...` in the shell) does the work; it runs `mysqldump` and `mysql`
# in the database Pod with `kubectl exec`, the root password travelling on stdin, never on a
# command line. Its progress lines are quieted inside the checkpoints.

# %%
# NBVAL_IGNORE_OUTPUT
%matplotlib inline
import contextlib
import time

import matplotlib.pyplot as plt
import pandas as pd

from lab import config, progress
from lab.ops import backup
from lab.cluster import kube
from lab.errors import LabError

if nb.context != config.KUBE_CONTEXT:
    raise LabError(f"lab.ops.backup works on the lab's own cluster ({config.KUBE_CONTEXT}), not {nb.context}",
                   hint=f"run this notebook with cluster = {config.CLUSTER_NAME!r}")


@contextlib.contextmanager
def quietly():
    """No progress lines (lab.progress) while a checkpoint looks at the live database."""
    before = progress.console.quiet
    progress.console.quiet = True
    try:
        yield
    finally:
        progress.console.quiet = before


def live_verify(path, into=None):
    """Compare the live database with a backup's metadata, without recording it."""
    with quietly():
        return backup.verify(nb.target, path, into=into, record=False)


print("backups on this machine:", backup.backup_dir(nb.target))
print("the nodes see them as:   ", backup.node_backup_dir(nb.namespace))

# %% [markdown]
# ## Step 1: data worth protecting
#
# Notebook 03 left one row in `lab.notes`. Add a table with 1000 readings, so that the backups
# have something to carry. `REPLACE` makes the cell safe to run again: the same 1000 rows, never
# more.

# %%
# NBVAL_IGNORE_OUTPUT
DIGITS = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 " \
         "UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
nb.mysql(f"""
    CREATE TABLE IF NOT EXISTS readings (id INT PRIMARY KEY, sensor VARCHAR(16) NOT NULL, value DOUBLE NOT NULL);
    REPLACE INTO readings (id, sensor, value)
      SELECT a.d * 100 + b.d * 10 + c.d + 1, CONCAT('sensor-', c.d), (a.d * 100 + b.d * 10 + c.d) * 0.25
      FROM {DIGITS} a CROSS JOIN {DIGITS} b CROSS JOIN {DIGITS} c;
    SELECT COUNT(*) AS readings, ROUND(SUM(value), 2) AS total FROM readings;
""");

# %% [markdown]
# **Checkpoint.** `lab.readings` holds the 1000 readings.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("backup.data", points=1,
                   hint="run the cell above; nb.mysql(\"SELECT COUNT(*) FROM readings;\") shows what is there")
def backup_data():
    try:
        [[count]] = nb.query("SELECT COUNT(*) FROM readings WHERE id BETWEEN 1 AND 1000;")
    except LabError as error:
        return checks.fail(f"cannot read lab.readings: {error.message}")
    if count != "1000":
        return checks.fail(f"lab.readings has {count} of the 1000 readings (ids 1-1000)")
    return checks.ok("lab.readings holds the 1000 readings")


# %% [markdown]
# ## Step 2: the nightly backup, run now
#
# Since notebook 07 the chart's CronJob `database-backup` runs every night at 02:00. Its Job
# connects to the Service `database` on port 3306 (notebook 05's policy lets Pods labelled
# `backup` in), dumps **every** database into the node's `/var/local/k8s-lab/backups`, which is
# this machine's lab data directory, and keeps the newest seven. Waiting until 02:00 is no way to
# test a backup: make a Job from the CronJob's template now.
#
# ```bash
# kubectl -n k8s-assignment create job backup-now-1 --from=cronjob/database-backup
# kubectl -n k8s-assignment wait --for=condition=complete job/backup-now-1 --timeout=5m
# kubectl -n k8s-assignment logs job/backup-now-1
# ```

# %%
# NBVAL_IGNORE_OUTPUT
import re

from kubernetes import client

batch = client.BatchV1Api(kube.api_client(nb.target))
job_name = f"backup-now-{int(time.time())}"
nb.kubectl("create", "job", job_name, "--from=cronjob/database-backup")


def job_finished():
    job = batch.read_namespaced_job(job_name, nb.namespace, _request_timeout=10)
    states = {c.type: c.status for c in job.status.conditions or []}
    if states.get("Complete") == "True":
        return checks.ok(f"Job {job_name} completed")
    if states.get("Failed") == "True":
        raise LabError(f"Job {job_name} failed", hint=f"kubectl -n {nb.namespace} logs job/{job_name}")
    return checks.fail(f"Job {job_name}: {job.status.active or 0} active, {job.status.failed or 0} failed Pod(s)")


nb.wait_for(job_finished, f"Job {job_name}", timeout=300,
            hint=f"kubectl -n {nb.namespace} describe job {job_name}; kubectl -n {nb.namespace} logs job/{job_name}")
job_log = nb.kubectl("logs", f"job/{job_name}", "-c", "mysqldump").stdout
written = re.search(r"wrote /backups/(\S+)", job_log)
nightly = backup.backup_dir(nb.target) / written.group(1) if written else None
print("on this machine:", nightly)

# %% [markdown]
# **Checkpoint.** The Job completed and its dump is on this machine, complete (`gzip -t`, and the
# `-- Dump completed` line at its end).

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("backup.cronjob", points=2,
                   hint="kubectl -n k8s-assignment describe job <backup-now-...>; its log names the file; does the Job's Pod reach database:3306 (notebook 05)?")
def backup_cronjob():
    job = batch.read_namespaced_job(job_name, nb.namespace, _request_timeout=10)
    uids = {f"Job/{nb.namespace}/{job_name}": job.metadata.uid}
    if not job.status.succeeded:
        return checks.fail(f"Job {job_name} did not succeed", uids)
    if nightly is None:
        return checks.fail("the Job's log names no file it wrote", uids)
    try:
        backup.check_file(nightly)
    except LabError as error:
        return checks.fail(error.message, uids)
    return checks.ok("the CronJob's Job wrote a complete dump of every database to the host", uids)


# %% [markdown]
# ## Step 3: a backup with metadata: `lab backup create`
#
# The CronJob's file says nothing about what it should contain. `lab backup create` dumps a
# database the same way, checks the result before it gives it its final name, and writes the
# metadata next to it: per table the row count and `CHECKSUM TABLE`, the file's sha256 and size,
# and how long each part took.
#
# **Your part:** write the shell command that backs up **only the schema `lab`** into
# `backup_command` (`lab backup --help` and `lab backup create --help` in a terminal). The next cell
# runs it (against this notebook's cluster and namespace) and finds the file it made.

# %%
# NBVAL_CHECK_OUTPUT
backup_command = "lab backup create lab"  # SOLUTION

# %%
# NBVAL_IGNORE_OUTPUT
from lab import tasks

path, meta = tasks.run_lab(nb, backup_command, "backup create").made, None
if path is not None:
    meta = backup.load_metadata(path)
    print(f"{path.name}: {backup.human_size(path.stat().st_size)}, sha256 {meta['sha256'][:16]}…")
    display(pd.DataFrame(meta["tables"])[["database", "table", "rows", "checksum"]])
# the drills of step 6 start from a backup of lab: yours, or one the lab makes when yours is missing
drill_source = path or backup.create(nb.target, "lab").path

# %% [markdown]
# **Checkpoint.** The backup file is complete and matches its metadata, which records the 1000
# readings.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("backup.created", points=2,
                   hint="lab backup create lab; lab backup list shows the files; the .meta.json next to a backup describes it")
def backup_created():
    if path is None:
        return checks.fail("backup_command made no new backup in this run (see the output above)")
    on_host = checks.file_exists_on_host(path)
    if not on_host.passed:
        return on_host
    recorded = backup.load_metadata(path)
    if recorded is None or [t["database"] for t in recorded["tables"]] != ["lab"] * len(recorded["tables"]):
        return checks.fail(f"{path.name} is not a backup of the schema lab alone", on_host.uids)
    try:
        backup.check_file(path, recorded)
    except LabError as error:
        return checks.fail(error.message, on_host.uids)
    rows = {t["table"]: t["rows"] for t in recorded["tables"]}
    if rows.get("readings") != 1000:
        return checks.fail(f"the metadata records {rows.get('readings')} rows in readings, expected 1000", on_host.uids)
    return checks.ok("the backup of lab is complete, matches its sha256, and records 1000 readings", on_host.uids)


# %% [markdown]
# ## Step 4: the list of backups, size and duration
#
# Every run of this notebook adds backups, and the CronJob adds one per night. `lab backup list`
# lists them; from the metadata we also know how long each took. Plotted over time, a sudden jump
# in size or duration is worth a look (a table that exploded, a slow disk).
#
# ```bash
# lab backup list
# ```

# %%
# NBVAL_IGNORE_OUTPUT
def backups_table(last=20):
    listing = backup.list_backups(backup.backup_dir(nb.target)).tail(last).reset_index(drop=True)
    seconds = []
    for name in listing["file"]:
        try:
            found = backup.load_metadata(backup.backup_dir(nb.target) / name)
        except LabError:
            found = None
        seconds.append(found["durations"]["total_s"] if found else None)
    listing["seconds"] = pd.array(seconds, dtype="Float64")
    listing["kind"] = ["lab backup (metadata)" if s is not pd.NA else "CronJob (all databases)" for s in listing["seconds"]]
    return listing


listing = backups_table()
listing[["time", "file", "size", "database", "verified", "seconds"]]

# %%
# NBVAL_IGNORE_OUTPUT
fig, (ax_size, ax_time) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
colours = {"lab backup (metadata)": "#326ce5", "CronJob (all databases)": "#e0a030"}
for kind, rows in listing.groupby("kind"):
    ax_size.plot(rows["time"], rows["size"] / 1024, "o-", color=colours[kind], label=kind)
    timed = rows.dropna(subset=["seconds"])
    if len(timed):
        ax_time.plot(timed["time"], timed["seconds"], "o-", color=colours[kind], label=kind)
ax_size.set_ylabel("compressed size (KiB)")
ax_size.set_yscale("log")
ax_size.legend(fontsize=8)
ax_size.set_title(f"the last {len(listing)} backups in {backup.backup_dir(nb.target)}")
ax_time.set_ylabel("duration (s)")
ax_time.set_ylim(bottom=0)
ax_time.set_xlabel("backup time (UTC)")
fig.autofmt_xdate()
plt.tight_layout()
plt.show()

# %% [markdown]
# The CronJob's dumps are much larger: they hold every database, the server's own `mysql` schema
# included. Only the `lab backup` files have a duration: it is in their metadata.
#
# **Checkpoint.** The list has the new backup, and the backup directory holds both kinds.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("backup.listed", points=1, hint="lab backup list; ls the backup directory printed at the top")
def backup_listed():
    names = set(backup.list_backups(backup.backup_dir(nb.target))["file"])
    if path is None:
        return checks.fail("there is no backup of yours to look for: write backup_command in step 3")
    if path.name not in names:
        return checks.fail(f"{path.name} is not in the list of backups")
    if nightly is None or nightly.name not in names:
        return checks.fail("the CronJob's dump is not in the list of backups")
    return checks.ok("the list holds the new lab backup and the CronJob's dump")


# %% [markdown]
# ## Step 5: restore into a fresh database, and verify it
#
# Never test a restore on the live data. Restore into a new database `lab_restored` next to it.
# `lab backup restore` first checks the file (size, sha256 against the metadata, `gzip -t`, the
# closing line), then drops and recreates the target and loads the dump into it.
#
# **Your part:** write the command that restores **your newest backup** (it has a short name) into
# the database **`lab_restored`**, allowed to overwrite a `lab_restored` left by an earlier run of
# this notebook (`lab backup restore --help`).

# %%
# NBVAL_CHECK_OUTPUT
restore_command = "lab backup restore latest --into lab_restored --replace"  # SOLUTION

# %%
# NBVAL_IGNORE_OUTPUT
RESTORED = "lab_restored"
restored_ok = tasks.run_lab(nb, restore_command, "backup restore").ok

# %% [markdown]
# Then **verify**, table by table. Equal row counts are not enough (a row could be damaged), so `verify` also compares
# `CHECKSUM TABLE`, a checksum over every row's content, per table, plus the number of views,
# routines, triggers and events.
#
# ```bash
# lab backup verify latest --into lab_restored
# ```

# %%
# NBVAL_IGNORE_OUTPUT
if path is not None and restored_ok:
    display(backup.verify(nb.target, path, into=RESTORED))

# %% [markdown]
# **Checkpoint.** `lab_restored` holds exactly what the backup recorded: same tables, row counts
# and checksums.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("backup.restored", points=3,
                   hint="lab backup restore <file> --into lab_restored --replace; then lab backup verify <file> --into lab_restored shows which table differs")
def backup_restored():
    if path is None or not restored_ok:
        return checks.fail("finish step 3 (backup_command) and step 5 (restore_command) first")
    frame = live_verify(path, into=RESTORED)
    if not frame.attrs["ok"]:
        bad = frame.loc[~frame["ok"], "table"].tolist()
        return checks.fail(f"{RESTORED} differs from the backup in: {', '.join(bad) or frame.attrs.get('missing')}")
    return checks.ok(f"{RESTORED} matches the backup: every table's rows and checksum, and the object counts")


# %% [markdown]
# ## Exercise: the checksums, by hand
#
# Do what `verify` does for one table yourself. As root (the application user `lab` may not read
# `lab_restored`), run
#
# ```sql
# CHECKSUM TABLE lab.readings, lab_restored.readings;
# ```
#
# and put the two numbers into the dict `my_checksums` as integers, keyed by database:
# `{"lab": ..., "lab_restored": ...}`. `nb.mysql(SQL, user_key="root", password_key="root-password",
# show=False)` returns the output (`.stdout`, tab-separated: `Table`, `Checksum`).

# %%
# NBVAL_IGNORE_OUTPUT
my_checksums = {}
# BEGIN SOLUTION NO PROMPT
answer = nb.mysql("CHECKSUM TABLE lab.readings, lab_restored.readings;", user_key="root",
                  password_key="root-password", show=False)
for line in answer.stdout.splitlines()[1:]:
    table, value = line.split("\t")
    my_checksums[table.split(".")[0]] = int(value)
# END SOLUTION
# BEGIN PROMPT
# TODO: run CHECKSUM TABLE as root and fill my_checksums = {"lab": ..., "lab_restored": ...}
# END PROMPT
my_checksums

# %% [markdown]
# **Checkpoint.** Your two checksums are equal, and equal to what the backup's metadata recorded.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("backup.checksum-by-hand", points=2,
                   hint="CHECKSUM TABLE lab.readings, lab_restored.readings; as root; the numbers go into my_checksums as int")
def backup_checksum_by_hand():
    if meta is None:
        return checks.fail("there is no backup of yours to compare with: finish step 3 first")
    recorded = next((t["checksum"] for t in meta["tables"] if t["table"] == "readings"), None)
    if set(my_checksums) != {"lab", "lab_restored"}:
        return checks.fail(f"my_checksums has keys {sorted(my_checksums)}; expected 'lab' and 'lab_restored'")
    if my_checksums["lab"] != my_checksums["lab_restored"]:
        return checks.fail(f"the checksums differ: {my_checksums}")
    if my_checksums["lab"] != recorded:
        return checks.fail(f"your checksum {my_checksums['lab']} is not the one the backup recorded")
    try:
        [[_, live]] = nb.query("CHECKSUM TABLE lab_restored.readings;")
    except LabError:
        live = None
    if live != str(recorded):
        return checks.fail("lab_restored.readings has another checksum now: restore it again (step 5)")
    return checks.ok("CHECKSUM TABLE: lab.readings = lab_restored.readings = the backup's metadata")


# %% [markdown]
# ## Step 6: the disaster drill
#
# Now we destroy things, on purpose, one level at a time, and recover after each. The drill first
# checks that the live data matches our backup; after each recovery it verifies again and only
# restores the backup if the data did not survive. It reports how long the database was gone
# (`seconds`) and, where it had to restore, how long the restore took (`restore_seconds`).
#
# ```bash
# lab backup drill --yes                       # all three stages; or one: --stage pod
# ```
#
# ### 6a: the Pod
#
# The StatefulSet notices the missing `database-0` and makes a new one with the same name and claim.

# %%
# NBVAL_IGNORE_OUTPUT
old_pod_uid = nb.read("Pod", "database-0").metadata.uid
drill_pod = backup.drill(nb.target, database="lab", stages=("pod",), backup=drill_source)
drill_pod

# %% [markdown]
# **Checkpoint.** A new `database-0` runs, and the data survived without a restore.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("backup.drill-pod", points=2,
                   hint="kubectl -n k8s-assignment get pod database-0; lab backup drill --stage pod --yes")
def backup_drill_pod():
    pod = nb.read("Pod", "database-0")
    if pod is None or pod.metadata.uid == old_pod_uid:
        return checks.fail("database-0 is still the old Pod: run the drill's pod stage")
    if not bool(drill_pod.loc[0, "survived"]):
        return checks.fail("the data did not survive the loss of the Pod (it had to be restored)")
    frame = live_verify(drill_source)
    if not frame.attrs["ok"]:
        return checks.fail("the live database lab does not match the backup")
    return checks.ok("a new database-0 serves the same data (survived: the volume kept it)",
                     {f"Pod/{nb.namespace}/database-0": pod.metadata.uid})


# %% [markdown]
# ### 6b: the StatefulSet
#
# Deleting a StatefulSet deletes its Pods but never its claims (`data-database-0` stays, bound to
# the volume). The drill saved the StatefulSet's definition first and creates it again, as
# `helm upgrade` or `kubectl apply` would.

# %%
# NBVAL_IGNORE_OUTPUT
old_sts_uid = nb.read("StatefulSet", "database").metadata.uid
drill_sts = backup.drill(nb.target, database="lab", stages=("statefulset",), backup=drill_source)
drill_sts

# %% [markdown]
# **Checkpoint.** A new StatefulSet (new UID) is ready, on the same claim, and the data survived.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("backup.drill-statefulset", points=2,
                   hint="kubectl -n k8s-assignment get statefulset,pvc; lab backup drill --stage statefulset --yes")
def backup_drill_statefulset():
    sts = nb.read("StatefulSet", "database")
    if sts is None or sts.metadata.uid == old_sts_uid:
        return checks.fail("StatefulSet database is still the old one: run the drill's statefulset stage")
    ready = checks.statefulset_ready("database", replicas=1)
    if not ready.passed:
        return ready
    claim = checks.pvc_bound("data-database-0")
    if not claim.passed:
        return claim
    if not bool(drill_sts.loc[0, "survived"]) or not live_verify(drill_source).attrs["ok"]:
        return checks.fail("the data did not survive the loss of the StatefulSet")
    return checks.ok("a new StatefulSet database serves the same data from claim data-database-0", {**ready.uids, **claim.uids})


# %% [markdown]
# ### 6c: the namespace
#
# The worst case short of losing the machine: `kubectl delete namespace k8s-assignment` takes
# everything in it, the claim `data-database-0` and the Helm release records included. What is
# left is cluster-wide: the PersistentVolume, whose reclaim policy is `Retain`:

# %%
# NBVAL_IGNORE_OUTPUT
nb.kubectl("get", "persistentvolume", nb.pv_name, "-o",
           "custom-columns=NAME:.metadata.name,RECLAIM:.spec.persistentVolumeReclaimPolicy,STATUS:.status.phase,CLAIM:.spec.claimRef.name",
           namespaced=False, check=False);

# %% [markdown]
# The drill takes a snapshot of the namespace's objects (kept in memory: it holds Secrets),
# deletes the namespace and waits until it is gone. The volume is then `Released`; the drill
# clears its `claimRef` UID (what you would do with
# `kubectl patch pv k8s-lab-database-data --type=json -p '[{"op":"remove","path":"/spec/claimRef/uid"}]'`),
# creates the namespace and its objects again, and the new claim binds the old volume, files and all.

# %%
# NBVAL_IGNORE_OUTPUT
old_ns_uid = nb.read("Namespace", nb.namespace).metadata.uid
drill_ns = None
if not nb.in_classroom("delete-namespace"):
    drill_ns = backup.drill(nb.target, database="lab", stages=("namespace",), backup=drill_source)
    nb.kubectl("get", "persistentvolume", nb.pv_name, "-o",
               "custom-columns=NAME:.metadata.name,RECLAIM:.spec.persistentVolumeReclaimPolicy,STATUS:.status.phase,CLAIM:.spec.claimRef.name",
               namespaced=False)
drill_ns

# %% [markdown]
# **Checkpoint.** The namespace is new (new UID), the claim is bound to the same volume, and the
# data survived.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("backup.drill-namespace", points=3,
                   hint="kubectl get pv (Released? clear its claimRef uid); kubectl -n k8s-assignment get pvc,pods; lab backup drill --stage namespace --yes")
def backup_drill_namespace():
    if checks.in_classroom():
        return checks.not_applicable("classroom: your namespace is your instructor's; the drill leaves this stage out")
    ns = nb.read("Namespace", nb.namespace)
    if ns is None or ns.metadata.uid == old_ns_uid:
        return checks.fail(f"namespace {nb.namespace} is still the old one: run the drill's namespace stage")
    claim = checks.pvc_bound("data-database-0")
    if not claim.passed:
        return claim
    if nb.pv_name not in claim.message:
        return checks.fail(f"{claim.message}, not to {nb.pv_name}", claim.uids)
    if nb.read("PersistentVolume", nb.pv_name).spec.persistent_volume_reclaim_policy != "Retain":
        return checks.fail(f"PersistentVolume {nb.pv_name} is not Retain")
    if not bool(drill_ns.loc[0, "survived"]) or not live_verify(drill_source).attrs["ok"]:
        return checks.fail("the data did not survive the loss of the namespace")
    return checks.ok(f"new namespace, claim bound to {nb.pv_name} again (Retain), same data",
                     {f"Namespace/{nb.namespace}": ns.metadata.uid, **claim.uids})


# %% [markdown]
# ## Exercise: the failure no volume survives
#
# All three losses above were survived by the *volume*: no restore was needed. Now the human
# error: `DROP DATABASE lab`. The drill's fourth stage, `database`, does exactly that and then has
# to restore the backup. Run it:
#
# ```bash
# lab backup drill --stage database --yes
# ```
#
# with `backup.drill(nb.target, database="lab", stages=("database",), backup=drill_source)`, and keep
# its result in `drill_db`.

# %%
# NBVAL_IGNORE_OUTPUT
drill_db = None
# BEGIN SOLUTION NO PROMPT
drill_db = backup.drill(nb.target, database="lab", stages=("database",), backup=drill_source)
# END SOLUTION
# BEGIN PROMPT
# TODO: drill_db = backup.drill(...) with stages=("database",)
# END PROMPT
drill_db

# %% [markdown]
# **Checkpoint.** The data did **not** survive the drop (`survived` is False), the backup was
# restored (`restored` is True), and the live database matches the backup again.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("backup.drill-database", points=2,
                   hint="backup.drill(nb.target, database='lab', stages=('database',), backup=drill_source)")
def backup_drill_database():
    if drill_db is None:
        return checks.fail("drill_db is None: run the drill's database stage in the exercise cell")
    row = drill_db.iloc[0]
    if row["stage"] != "database" or bool(row["survived"]) or not bool(row["restored"]):
        return checks.fail(f"expected the database stage, not survived, restored; got {row.to_dict()}")
    if not live_verify(drill_source).attrs["ok"]:
        return checks.fail("the live database lab does not match the backup")
    return checks.ok("DROP DATABASE was repaired only by the backup; lab matches it again")


# %% [markdown]
# How long until the data was back in each case? Each bar has two parts: the time until the
# database answered again (Pod and StatefulSet: a new Pod started; namespace: its deletion
# included; database: only the `DROP`), and on top of it, only where the data did not survive,
# the time the restore of the backup took. The total is written above each bar.

# %%
# NBVAL_IGNORE_OUTPUT
drill_all = pd.concat([d for d in (drill_pod, drill_sts, drill_ns, drill_db) if d is not None], ignore_index=True)
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.bar(drill_all["stage"], drill_all["seconds"], color="#1a7f37", label="until the database answered again")
restores = ax.bar(drill_all["stage"], drill_all["restore_seconds"], bottom=drill_all["seconds"], color="#cf222e",
                  label="restoring the backup")
ax.bar_label(restores, labels=[f"{s:.0f} s" for s in drill_all["seconds"] + drill_all["restore_seconds"]])
ax.set_ylabel("seconds")
ax.set_ylim(0, (drill_all["seconds"] + drill_all["restore_seconds"]).max() * 1.4)
ax.set_title("disaster drill: how long until the data was back")
ax.legend(loc="upper left", ncols=2, frameon=False)
plt.tight_layout()
plt.show()
drill_all

# %% [markdown]
# ## Step 7: hand the system back to Helm
#
# The namespace came back from a snapshot, Helm's release records (the `sh.helm.release.v1`
# Secrets) included, so `helm status` still knows the release. To be sure that everything is as the
# chart says, run the same idempotent upgrade as `lab deploy --helm`; it repairs whatever differs
# and waits until everything is ready. It renders the lab's own `chart/`, so the annotation of your
# template change in notebook 07 goes. And remove `lab_restored`: it was only for the test.
#
# ```bash
# helm upgrade --install k8s-lab chart/ -n k8s-assignment --wait
# ```

# %%
# NBVAL_IGNORE_OUTPUT
nb.helm_upgrade(install=True, timeout=600)
nb.mysql(f"DROP DATABASE IF EXISTS {RESTORED};", user_key="root", password_key="root-password")
nb.kubectl("get", "statefulsets,deployments,daemonsets,cronjobs,pvc");

# %% [markdown]
# **Checkpoint.** The release is deployed, the database and the web server are ready, the release
# owns them, and the data is the backup's.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("backup.system-back", points=2,
                   hint="helm -n k8s-assignment status k8s-lab; kubectl -n k8s-assignment get pods; run step 7 again")
def backup_system_back():
    system = checks.system_ready("k8s-lab")
    if not system.passed:
        return system
    uids = system.uids
    rows = {(r["kind"], r["name"]): r["state"] for r in notebook.ownership(nb, notebook.chart_objects(nb))}
    stray = [f"{kind}/{name}: {state}" for (kind, name), state in rows.items() if state != "owned by the release"]
    if stray:
        return checks.fail("not as the chart says: " + ", ".join(stray[:5]), uids)
    if not live_verify(drill_source).attrs["ok"]:
        return checks.fail("the live database lab does not match the backup", uids)
    return checks.ok("release deployed; database 1/1 and web 3/3 ready, every chart object owned; data intact", uids)


# %% [markdown]
# ## Summary
#
# - The CronJob dumps every database nightly; a Job made from it with `kubectl create job --from`
#   tests it now. `lab backup create` adds metadata: sha256, sizes, durations, rows and checksums.
# - A backup is checked before it is trusted (size, sha256, `gzip -t`, the closing line) and proven
#   by restoring it into a fresh database and comparing row counts and `CHECKSUM TABLE`.
# - The volume (reclaim policy `Retain`) survived the loss of the Pod, the StatefulSet and the whole
#   namespace; a `DROP DATABASE` only the backup could repair.
# - The drill measured how long each recovery took, and the system is back under Helm.

# %%
# NBVAL_CHECK_OUTPUT
checks.summary()

# %% [markdown]
# ## Clean-up
#
# The system runs as notebook 07 left it (plus a Helm revision from step 7). The backups stay on
# this machine, outside the cluster, in the directory printed at the top: they are meant to outlive
# it. Notebook 99 shows how to remove them. `lab_restored` was dropped in step 7.
#
# Next: **09-scheduling**.
