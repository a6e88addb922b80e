"""The handouts as a student gets them, run untouched on the real cluster (one run, shared).

Issue 12's other half of "checks proven both ways": the reference notebooks pass every checkpoint
(nbval, `make lab`); the handouts with no work done must run to the end (exit 0, no error, no
hang), every build task's checkpoint must FAIL with a message that names the problem (no
"could not verify", which means the check itself crashed), the checks that need a student's
object must say which step to finish, and the total must be far below the reference's.

The run starts from an empty namespace (`lab deploy --delete`): otherwise the objects of an
earlier reference run would pass for the student's work. It runs 00 to 09 from a copy of the
handouts, so the student's work folder is a temporary one. Notebook 09 grows a one-node cluster
to three nodes (as `make lab` does); the run takes about as long as the reference run.
"""
from __future__ import annotations

import shutil

import nbformat
import pytest

from lab import checks, config
from lab.cluster import kube
from tests.support import TARGET, lab_cli, say

pytestmark = pytest.mark.cluster

# The checkpoints of the build tasks: the student writes the object; untouched, each must FAIL.
BUILD_TASKS = {
    "build.kind-config", "build.quota-rejects", "build.pv", "build.db-service", "build.db-claims",
    "build.web-init", "build.web-service", "netpol.matrix", "watcher.rbac", "helm.upgrade-replicas",
    "helm.template-change", "backup.created", "backup.restored", "sched.node-affinity", "sched.prediction",
}
# The exercises that were there before: a TODO, so they fail too.
EXERCISES = {
    "preflight.version-skew", "cluster.components", "storage.limit-defaults", "db.row-written",
    "web.endpoints", "netpol.break-detected", "watcher.to-ready", "helm.rollback",
    "backup.checksum-by-hand", "backup.drill-database", "sched.scale-spread",
}
# Checks of what a build task would have made possible (a second Helm revision, a backup of one's own).
AFTER_BUILD = {"helm.history", "backup.listed"}
# Checks of steps that need a student's object that is not there: "finish step N of NN first".
NEEDS = {
    "db.statefulset-ready": "finish step 4 of 03 first",
    "db.claim-bound": "finish step 3 of 02 first",
    "db.stable-name": "finish step 4 of 03 first",
    "db.survives-restart": "finish step 4 of 03 first",
    "db.config-live": "finish step 4 of 03 first",
    "web.load-spread": "finish step 4 of 04 first",
    "web.pages-match-api": "finish step 4 of 04 first",
    "netpol.open": "finish step 4 of 03 first",
    "netpol.restored": "finish step 4 of 03 first",
    "watcher.daemonset": "finish step 1 of 06 first",
    "watcher.snapshot": "finish step 2 of 06 first",
    "watcher.events": "finish step 2 of 06 first",
    "watcher.lifecycles": "finish step 2 of 06 first",
    "watcher.list-watch": "finish step 2 of 06 first",
    "watcher.go": "finish step 2 of 06 first",
    "helm.ownership": "finish step 3 of 02 first",
}
# Every other checkpoint of 00-09 checks what the notebook itself does, and passes.
SCORE_LIMIT = 0.6  # the untouched run earns less than this share of the points; the reference earns all


@pytest.fixture(scope="module")
def untouched(tmp_path_factory):
    handouts = tmp_path_factory.mktemp("handouts")
    for notebook in (config.REPO_ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"):
        shutil.copy(notebook, handouts)
    say("lab deploy --delete: an empty namespace, so nothing of an earlier run passes for the student's work")
    deleted = lab_cli("deploy", "--delete", timeout=900)
    assert deleted.returncode == 0, deleted.stderr + deleted.stdout
    out = handouts / "run"
    # 09 keeps the workers a cluster has; a one-node cluster grows to two workers, as in make lab
    workers = len(kube.core(TARGET).list_node(_request_timeout=10).items) - 1 or 2
    say(f"lab run 09 on the untouched handouts (00 to 09), cluster {TARGET.cluster}, {workers} workers")
    result = lab_cli("run", "09", "--notebooks-dir", str(handouts), "--out", str(out), "-p", f"cluster={TARGET.cluster}",
                     "-p", f"workers={workers}", timeout=4 * 3600)
    records, errors = {}, []
    for path in sorted(out.glob("[0-9][0-9]-*.ipynb")):
        for index, cell in enumerate(nbformat.read(str(path), as_version=4).cells):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    errors.append(f"{path.name} cell {index}: {output.get('ename')}: {output.get('evalue')}")
                record = output.get("data", {}).get(checks.MIME_TYPE)
                if record is not None:
                    records[record["check_id"]] = record
    return result, records, errors


def test_the_untouched_handouts_run_to_the_end(untouched):
    result, records, errors = untouched
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert errors == []
    assert {r["notebook"][:2] for r in records.values()} >= {f"{n:02d}" for n in range(10)}


def test_every_build_task_fails_with_a_message(untouched):
    _, records, _ = untouched
    for check_id in sorted(BUILD_TASKS | EXERCISES):
        assert check_id in records, f"{check_id} did not run"
        record = records[check_id]
        assert not record["passed"], f"{check_id} passed without the student's work: {record['message']}"
        assert record["message"] and not record["message"].startswith("could not verify"), \
            f"{check_id}: the check crashed instead of naming the problem: {record['message']}"


def test_checks_that_need_a_students_object_name_the_step(untouched):
    _, records, _ = untouched
    wrong = {c: records[c]["message"] for c, step in NEEDS.items() if step not in records[c]["message"]}
    assert wrong == {}
    assert all(not records[c]["passed"] for c in NEEDS)


def test_exactly_the_expected_checkpoints_fail(untouched):
    _, records, _ = untouched
    failed = {c for c, r in records.items() if not r["passed"]}
    expected = BUILD_TASKS | EXERCISES | set(NEEDS) | AFTER_BUILD
    assert failed == expected, {"failed but expected to pass": sorted(failed - expected),
                                "passed but expected to fail": sorted(expected - failed)}


def test_the_untouched_run_scores_well_below_the_reference(untouched):
    _, records, _ = untouched
    earned = sum(r["earned"] for r in records.values())
    possible = sum(r["points"] for r in records.values())
    say(f"untouched handouts: {earned}/{possible} points")
    assert earned < SCORE_LIMIT * possible
