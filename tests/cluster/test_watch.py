"""The pod watcher on the real cluster: every Pod transition logged exactly once, also when the
watcher is killed and its watches expire.

The tests deploy the watcher (ServiceAccount, Role, RoleBinding and DaemonSet, rendered from the
chart) into their own namespace, create and delete Pods there, and compare what the watcher logged
with an independent watch and with a final list. They never touch the lab's namespace.
"""
from __future__ import annotations

import json
import threading
import time

import pytest
from kubernetes import client

from lab.cluster import kube
from lab.ops import eventlog
from lab.cluster.kube import wait_until as eventually
from tests.support import TARGET, watcher_state_problems

pytestmark = pytest.mark.cluster

NS = "k8s-lab-watch-test"
HERE = TARGET.in_namespace(NS)  # the watcher under test lives in NS, never in the lab's namespace
TRANSITIONS = ("ADDED", "MODIFIED", "DELETED", "RESYNC")


def kubectl(*args: str, **kwargs):
    """The lab's kubectl against the cluster under test (namespaces named with -n)."""
    return kube.kubectl(*args, target=TARGET, **kwargs)


def every_watcher_snapshotted(lines: list[str]) -> bool:
    """One watcher per node: on a multi-node cluster each must be watching before Pods start."""
    pods = {p.metadata.name for p in eventlog.watcher_pods(HERE) if p.status.phase == "Running"}
    done = {json.loads(line).get("watcher") for line in lines if '"status":"snapshot"' in line}
    return bool(pods) and pods <= done


@pytest.fixture(scope="module")
def watcher_image() -> str:
    return eventlog.ensure_image(load_into=TARGET)


@pytest.fixture(scope="module")
def namespace():
    kube.delete_namespace(NS, target=TARGET, timeout=180)  # a leftover of an interrupted run
    core = kube.core(TARGET)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    yield NS
    core.delete_namespace(NS)  # not waited for: the next run's setup waits for it


@pytest.fixture
def deployed(namespace, watcher_image):
    """deployed(env) puts the watcher into the namespace; it is removed after the test."""
    def deploy(env: dict[str, str] | None = None) -> None:
        eventlog.deploy_watcher(TARGET.in_namespace(namespace), image=watcher_image, env=env, timeout=180)
    yield deploy
    eventlog.remove_watcher(TARGET.in_namespace(namespace), wait=True)
    eventually(lambda: not eventlog.watcher_pods(TARGET.in_namespace(namespace)), timeout=120,
               what="watcher Pods to go away")


def sleeper_pod(name: str, label: str) -> client.V1Pod:
    """A Pod that starts fast and stops at once on SIGTERM (from the watcher image, always loaded)."""
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"test": label}),
        spec=client.V1PodSpec(
            termination_grace_period_seconds=5,
            containers=[client.V1Container(
                name="main", image=eventlog.WATCHER_IMAGE, image_pull_policy="IfNotPresent",
                command=["sh", "-c", 'trap "exit 0" TERM; sleep 3600 & wait'],
                resources=client.V1ResourceRequirements(requests={"cpu": "1m", "memory": "4Mi"}))]))


def create(name: str, label: str) -> str:
    return kube.core(TARGET).create_namespaced_pod(NS, sleeper_pod(name, label)).metadata.uid


def delete(name: str) -> None:
    kube.core(TARGET).delete_namespaced_pod(name, NS)


class IndependentWatch:
    """A plain watch from the host (all nodes, no re-list logic) recording every event."""

    def __init__(self, label: str):
        self.label = label
        self.events: list[dict] = []
        self._response = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "IndependentWatch":
        core = kube.core(TARGET)
        listed = core.list_namespaced_pod(NS, label_selector=f"test={self.label}")
        assert not listed.items
        self._response = core.list_namespaced_pod(
            NS, label_selector=f"test={self.label}", watch=True, resource_version=listed.metadata.resource_version,
            timeout_seconds=600, _preload_content=False)
        self._thread.start()
        return self

    def _run(self) -> None:
        pending = b""
        try:
            for chunk in self._response.stream(None, decode_content=False):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        obj = event["object"]
                        self.events.append({"type": event["type"], "uid": obj["metadata"]["uid"],
                                            "rv": obj["metadata"]["resourceVersion"],
                                            "node": (obj.get("spec") or {}).get("nodeName")})
        except Exception:  # noqa: BLE001 - stop() closes the stream under the reader
            if not self._stop.is_set():
                raise

    def stop(self) -> None:
        self._stop.set()
        eventlog.abort_stream(self._response)
        self._thread.join(10)
        assert not self._thread.is_alive()


def transition_rows(events, uids):
    rows = eventlog.pod_events(events)
    return rows[rows["uid"].isin(list(uids)) & rows["type"].isin(TRANSITIONS)]


def test_each_transition_is_logged_exactly_once(deployed):
    deployed()
    eventually(lambda: every_watcher_snapshotted(eventlog.read_logs(HERE)), timeout=60,
               what="every watcher's snapshot")
    independent = IndependentWatch("once").start()
    names = [f"once-{i}" for i in range(4)]
    uids = {create(name, "once") for name in names}
    kubectl("-n", NS, "wait", "--for=condition=Ready", "pod", "-l", "test=once", "--timeout=120s", timeout=130)
    for name in names:
        delete(name)
    kubectl("-n", NS, "wait", "--for=delete", "pod", "-l", "test=once", "--timeout=120s", timeout=130)

    def all_deleted_logged():
        events = eventlog.parse_lines(eventlog.read_logs(HERE))
        deleted = set(events.loc[events["type"] == "DELETED", "uid"])
        return [events] if uids <= deleted else None

    [events] = eventually(all_deleted_logged, timeout=60, what="DELETED lines for every Pod")
    time.sleep(1)  # the independent watch trails by a few milliseconds
    independent.stop()

    rows = transition_rows(events, uids)  # the raw lines: nothing deduplicated
    for uid in uids:
        mine = rows[rows["uid"] == uid]
        theirs = [e for e in independent.events if e["uid"] == uid and e["node"]]  # once scheduled
        assert not mine.duplicated(["resource_version"]).any(), mine
        assert mine["resource_version"].tolist() == [e["rv"] for e in theirs], (mine, theirs)
        assert mine["type"].tolist() == ["ADDED"] + [e["type"] for e in theirs[1:]]
        # Each Pod is reported only by the watcher on its own node (multi-node clusters too).
        assert mine["type"].iloc[-1] == "DELETED"
        assert (mine["node"].astype(str) == mine["watcher_node"].astype(str)).all(), mine
    pods = eventlog.lifecycles(eventlog.dedupe(events)).set_index("uid").loc[sorted(uids)]
    for column in ("created", "scheduled", "initialized", "ready", "deletion_requested", "deleted"):
        assert pods[column].notna().all(), column
    assert (pods["created"] <= pods["scheduled"]).all() and (pods["scheduled"] <= pods["ready"]).all()
    assert (pods["ready"] <= pods["deleted"]).all()
    assert set(pods["pod"]) == set(names)


def test_killed_watcher_and_expiring_watches_lose_and_duplicate_nothing(deployed):
    # Every watch after the first of each list starts from resourceVersion 1 -> 410 Gone every
    # 2 s; the watcher waits 1 s before re-listing, so changes land in the re-list's diff.
    deployed({"WATCH_TIMEOUT_SECONDS": "2", "WATCHER_TEST_STALE_RESOURCE_VERSION": "1",
              "WATCHER_TEST_RELIST_DELAY_SECONDS": "1"})
    uids: set[str] = set()
    with eventlog.LogFollower(HERE) as follower:
        eventually(lambda: every_watcher_snapshotted(follower.lines), timeout=60,
                   what="every watcher's snapshot")
        steps, live = 24, 10  # each Pod lives 10 steps, longer than a watcher takes to come back
        for step in range(steps):
            uids.add(create(f"churn-{step}", "churn"))
            if step >= live:
                delete(f"churn-{step - live}")
            # One watcher per node: every one of them goes through the same trouble.
            if step == 6:  # the watcher's process is killed: its container restarts in the same Pod
                for pod in eventlog.watcher_pods(HERE):
                    kubectl("-n", NS, "exec", pod.metadata.name, "-c", eventlog.CONTAINER, "--", "sh", "-c",
                            "kill 1")
            if step == 15:  # its Pod is deleted: the DaemonSet makes a new one
                for pod in eventlog.watcher_pods(HERE):
                    delete(pod.metadata.name)
            time.sleep(0.8)
        kubectl("-n", NS, "wait", "--for=condition=Ready", *[f"pod/churn-{i}" for i in range(steps - live, steps)],
                "--timeout=120s", timeout=130)
        for step in range(steps - live, steps - 2):  # delete some of the rest too; keep two
            delete(f"churn-{step}")
        kubectl("-n", NS, "wait", "--for=delete", f"pod/churn-{steps - live}", "--timeout=60s", timeout=70)
        eventually(lambda: len(kube.core(TARGET).list_namespaced_pod(NS, label_selector="test=churn").items) == 2,
                   timeout=90, what="the deleted Pods to go away")
        eventually(lambda: not watcher_state_problems(NS, follower.lines, uids, "churn"), timeout=60,
                   what="the watcher's last state of every Pod to match a list")
        lines = follower.lines
        assert not follower.errors, follower.errors

    problems = watcher_state_problems(NS, lines, uids, "churn")
    assert not problems, problems
    unique = list(dict.fromkeys(lines))  # the same line read twice is a read, not a second event
    events = eventlog.parse_lines(unique)
    rows = transition_rows(events, uids)
    duplicated = rows[rows.duplicated(["uid", "resource_version"], keep=False)]
    assert duplicated.empty, duplicated[["time", "type", "change", "pod", "resource_version", "session"]]

    status = events[events["type"] == "WATCHER"]
    sessions = status.loc[status["status"] == "started", "session"].nunique()
    stops = status[status["status"] == "stopped"]
    summary = {"sessions": sessions, "expired": int((status["status"] == "expired").sum()),
               "relisted": int((status["status"] == "relisted").sum()),
               "resync_rows": int((rows["type"] == "RESYNC").sum()),
               "inferred": int(eventlog.fill_restart_gaps(events)["inferred"].sum()),
               "pods": len(uids)}
    stopped_at = status.loc[status["status"] == "stopped", "time"].sort_values().tolist()
    snapshots_at = status.loc[status["status"] == "snapshot", "time"].sort_values().tolist()
    summary["gaps_s"] = [round((next(t for t in snapshots_at if t > stop) - stop).total_seconds(), 2)
                         for stop in stopped_at if any(t > stop for t in snapshots_at)]
    print(f"\nwatcher churn: {summary}")
    assert sessions >= 3, summary  # the first, after the process was killed, after the Pod was
    assert len(stops) >= 2, summary  # the killed process and the deleted Pod said goodbye
    assert {json.loads(line).get("reason") for line in unique if '"status":"stopped"' in line} == {"SIGTERM"}
    assert summary["expired"] >= 3 and summary["relisted"] >= 3, summary
    assert summary["resync_rows"] >= 1, summary
