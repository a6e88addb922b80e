"""One contract, two watchers: the Python (list+watch) and the Go (client-go SharedInformer) pod
watcher, each deployed from the chart into its own namespace on the real cluster, must log every
Pod transition exactly once, in the same JSON lines.

Per implementation: create, label change, readiness change and delete, compared with an
independent watch from the host; the watcher's process killed and its Pod deleted mid-stream
while every watch expires (410 Gone from a real API server: watches resume from resourceVersion
1, long compacted) and is re-listed; and a watcher without RBAC, which must log a clear error,
back off and recover once it may list, never crash-looping.
"""
from __future__ import annotations

import json
import threading
import time

import pandas as pd
import pytest
from kubernetes import client
from kubernetes import watch as kwatch

from lab import runner
from lab.cluster import kube
from lab.host import tools
from lab.ops import eventlog
from lab.cluster.kube import wait_until as eventually
from tests.support import TARGET, watcher_state_problems

pytestmark = pytest.mark.cluster

IMPLEMENTATIONS = ("python", "go")
TRANSITIONS = ("ADDED", "MODIFIED", "DELETED", "RESYNC")
# The JSON-lines contract (images/watcher/k8s_lab_watcher.py): a Pod line's keys, in this order.
POD_KEYS = ["time", "type", "change", "namespace", "pod", "uid", "phase", "node", "pod_ip", "conditions",
            "resource_version", "created", "deleting", "watcher_node", "watcher", "session"]


def kubectl(*args: str, **kwargs):
    """The lab's kubectl against the cluster under test (namespaces named with -n)."""
    return kube.kubectl(*args, target=TARGET, **kwargs)


def at(namespace: str):
    """The cluster under test, in a test namespace (where a watcher is deployed and read)."""
    return TARGET.in_namespace(namespace)


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def implementation(request) -> str:
    eventlog.ensure_image(load_into=TARGET, implementation=request.param)
    return request.param


@pytest.fixture
def namespace(implementation):
    name = f"k8s-lab-contract-{implementation}"
    kube.delete_namespace(name, target=TARGET, timeout=180)  # a leftover of an interrupted run
    kube.core(TARGET).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    kube.core(TARGET).delete_namespace(name)  # not waited for: the next run's setup waits for it


def deploy(namespace: str, implementation: str, env: dict[str, str] | None = None, rbac: bool = True) -> list[dict]:
    """Apply the watcher from the chart (without its Role and RoleBinding unless ``rbac``); all
    its objects are returned."""
    objects = eventlog.watcher_objects(namespace, env=env, implementation=implementation)
    apply(namespace, [o for o in objects if rbac or o["kind"] not in ("Role", "RoleBinding")])
    kubectl("-n", namespace, "rollout", "status", f"daemonset/{eventlog.DAEMONSET}", "--timeout=180s", timeout=200)
    return objects


def apply(namespace: str, objects: list[dict]) -> None:
    import yaml

    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(objects))


def every_watcher_snapshotted(namespace: str, lines: list[str]) -> bool:
    pods = {p.metadata.name for p in eventlog.watcher_pods(at(namespace)) if p.status.phase == "Running"}
    done = {json.loads(line).get("watcher") for line in lines if '"status":"snapshot"' in line}
    return bool(pods) and pods <= done


def sleeper_pod(name: str, label: str, probe: bool = False) -> client.V1Pod:
    """A Pod that starts fast, stops at once on SIGTERM and, with ``probe``, is Ready while
    /tmp/ready exists (the test flips it with kubectl exec)."""
    readiness = client.V1Probe(_exec=client.V1ExecAction(command=["test", "-e", "/tmp/ready"]),
                               period_seconds=1, failure_threshold=1) if probe else None
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"test": label}),
        spec=client.V1PodSpec(termination_grace_period_seconds=5, containers=[client.V1Container(
            name="main", image=eventlog.WATCHER_IMAGE, image_pull_policy="IfNotPresent",
            command=["sh", "-c", 'trap "exit 0" TERM; sleep 3600 & wait'], readiness_probe=readiness,
            resources=client.V1ResourceRequirements(requests={"cpu": "1m", "memory": "4Mi"}))]))


class HostWatch:
    """An independent watch from the host with the official client: every event's type and Pod."""

    def __init__(self, namespace: str, label: str):
        core = kube.core(TARGET)
        listed = core.list_namespaced_pod(namespace, label_selector=f"test={label}")
        assert not listed.items
        self.events: list[tuple[str, client.V1Pod]] = []
        self._stopping = False
        self._watch = kwatch.Watch()
        self._stream = self._watch.stream(core.list_namespaced_pod, namespace, label_selector=f"test={label}",
                                          resource_version=listed.metadata.resource_version, timeout_seconds=600)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._stream:
                self.events.append((event["type"], event["object"]))
        except Exception:  # noqa: BLE001 - stop() ends the stream under the reader
            if not self._stopping:
                raise

    def stop(self) -> None:
        self._stopping = True
        self._watch.stop()

    def transitions(self, uid: str) -> list[tuple[str, str]]:
        """(type, resourceVersion) of a Pod from when it was on a node (what a node's watcher sees)."""
        return [(kind, pod.metadata.resource_version) for kind, pod in self.events
                if pod.metadata.uid == uid and pod.spec.node_name]


def pod_ready(namespace: str, name: str) -> bool | None:
    pod = kube.core(TARGET).read_namespaced_pod(name, namespace)
    ready = [c.status for c in pod.status.conditions or [] if c.type == "Ready"]
    return ready[0] == "True" if ready else None


def test_create_update_delete_are_each_logged_once_in_the_contracts_lines(implementation, namespace):
    deploy(namespace, implementation)
    eventually(lambda: every_watcher_snapshotted(namespace, eventlog.read_logs(at(namespace))), timeout=90,
               what="every watcher's snapshot")
    host = HostWatch(namespace, "life")
    core = kube.core(TARGET)
    names = ["life-0", "life-1"]
    uids = {core.create_namespaced_pod(namespace, sleeper_pod(name, "life", probe=True)).metadata.uid for name in names}
    kubectl("-n", namespace, "wait", "--for=jsonpath={.status.phase}=Running", "pod", "-l", "test=life",
            "--timeout=120s", timeout=130)
    relabelled = {core.patch_namespaced_pod(name, namespace, {"metadata": {"labels": {"colour": "blue"}}})
                  .metadata.resource_version for name in names}
    for name in names:  # readiness: False -> True -> False
        kubectl("-n", namespace, "exec", name, "--", "touch", "/tmp/ready")
    for name in names:
        eventually(lambda: pod_ready(namespace, name) is True, timeout=60, what=f"{name} Ready")
        kubectl("-n", namespace, "exec", name, "--", "rm", "/tmp/ready")
    for name in names:
        eventually(lambda: pod_ready(namespace, name) is False, timeout=60, what=f"{name} not Ready")
        core.delete_namespaced_pod(name, namespace)
    kubectl("-n", namespace, "wait", "--for=delete", "pod", "-l", "test=life", "--timeout=120s", timeout=130)

    def all_deleted_logged():
        lines = eventlog.read_logs(at(namespace))
        events = eventlog.parse_lines(lines)
        return (lines, events) if uids <= set(events.loc[events["type"] == "DELETED", "uid"]) else None

    lines, events = eventually(all_deleted_logged, timeout=60, what="DELETED lines for every Pod")
    time.sleep(1)  # the host's watch may trail by a moment
    host.stop()

    rows = events[events["uid"].isin(list(uids)) & events["type"].isin(TRANSITIONS)]
    for uid in uids:
        mine = rows[rows["uid"] == uid]
        theirs = host.transitions(uid)
        assert not mine.duplicated(["resource_version"]).any(), mine
        # Exactly the host's transitions: ADDED once on the node, then every MODIFIED, then DELETED.
        assert list(zip(mine["type"].astype(str), mine["resource_version"])) == \
            [("ADDED", theirs[0][1])] + theirs[1:], (mine[["type", "resource_version"]], theirs)
        assert mine["type"].iloc[-1] == "DELETED"
        assert set(mine["resource_version"]) & relabelled, "the label change is not logged"
        ready = mine["ready"].fillna(False).astype(bool).tolist()
        assert [True, False] in [ready[i:i + 2] for i in range(len(ready) - 1)], f"no Ready flip in {ready}"
    for line in lines:
        record = json.loads(line)  # nothing but JSON lines on the watcher's output
        if record["type"] != "WATCHER":
            assert list(record) == POD_KEYS, record
    started = [json.loads(line) for line in lines if '"status":"started"' in line]
    assert {s["implementation"] for s in started} == {implementation}
    # What `lab events` and notebook 06 derive from the lines works for either watcher.
    pods = eventlog.lifecycles(eventlog.dedupe(events)).set_index("uid").loc[sorted(uids)]
    for column in ("created", "scheduled", "ready", "deletion_requested", "deleted"):
        assert pods[column].notna().all(), column


def kill_watcher_processes(namespace: str) -> None:
    """SIGTERM to each watcher container from its node's runtime (the Go image has no shell to
    `kill` from): the kubelet restarts the container in the same Pod."""
    from lab.host import docker

    for pod in eventlog.watcher_pods(at(namespace)):
        [status] = [s for s in pod.status.container_statuses if s.name == eventlog.CONTAINER]
        container_id = status.container_id.split("://", 1)[1]
        # The exit code is left alone, as before: the sessions counted below show whether it stopped.
        runner.run([docker.executable(), "exec", pod.spec.node_name, "crictl", "stop", "--timeout", "10",
                    container_id], what=f"crictl stop {pod.metadata.name}", timeout=60, check=False,
                   env=tools.env_with_tools())


def test_killed_watcher_and_expiring_watches_lose_and_duplicate_nothing(implementation, namespace):
    # Every watch after the first of each list resumes from resourceVersion 1: the API server
    # answers 410 Gone every 2 s and the watcher re-lists, 1 s later, so changes land in the diff.
    deploy(namespace, implementation, {"WATCH_TIMEOUT_SECONDS": "2", "WATCHER_TEST_STALE_RESOURCE_VERSION": "1",
                                       "WATCHER_TEST_RELIST_DELAY_SECONDS": "1"})
    core = kube.core(TARGET)
    uids: set[str] = set()
    with eventlog.LogFollower(at(namespace)) as follower:
        eventually(lambda: every_watcher_snapshotted(namespace, follower.lines), timeout=90,
                   what="every watcher's snapshot")
        steps, live = 24, 10
        for step in range(steps):
            uids.add(core.create_namespaced_pod(namespace, sleeper_pod(f"churn-{step}", "churn")).metadata.uid)
            if step >= live:
                core.delete_namespaced_pod(f"churn-{step - live}", namespace)
            if step == 6:  # the watcher's process is stopped: its container restarts in the same Pod
                kill_watcher_processes(namespace)
            if step == 15:  # its Pod is deleted: the DaemonSet makes a new one
                for pod in eventlog.watcher_pods(at(namespace)):
                    core.delete_namespaced_pod(pod.metadata.name, namespace)
            time.sleep(0.8)
        for step in range(steps - live, steps - 2):  # delete most of the rest; keep two
            core.delete_namespaced_pod(f"churn-{step}", namespace)
        eventually(lambda: len(core.list_namespaced_pod(namespace, label_selector="test=churn").items) == 2,
                   timeout=120, what="the deleted Pods to go away")
        eventually(lambda: not watcher_state_problems(namespace, follower.lines, uids, "churn"), timeout=90,
                   what="the watcher's last state of every Pod to match a list")
        lines = follower.lines
        assert not follower.errors, follower.errors

    unique = list(dict.fromkeys(lines))  # the same line read twice is a read, not a second event
    events = eventlog.parse_lines(unique)
    rows = events[events["uid"].isin(list(uids)) & events["type"].isin(TRANSITIONS)]
    duplicated = rows[rows.duplicated(["uid", "resource_version"], keep=False)]
    assert duplicated.empty, duplicated[["time", "type", "change", "pod", "resource_version", "session"]]
    status = events[events["type"] == "WATCHER"]
    summary = {"sessions": status.loc[status["status"] == "started", "session"].nunique(),
               "stopped": int((status["status"] == "stopped").sum()),
               "expired": int((status["status"] == "expired").sum()),
               "relisted": int((status["status"] == "relisted").sum()),
               "resync_rows": int((rows["type"] == "RESYNC").sum()), "pods": len(uids)}
    print(f"\n{implementation} watcher churn: {summary}")
    assert summary["sessions"] >= 3, summary  # the first, after the process was stopped, after the Pod was deleted
    assert summary["stopped"] >= 2, summary  # both said goodbye
    assert {json.loads(line).get("reason") for line in unique if '"status":"stopped"' in line} == {"SIGTERM"}
    assert summary["expired"] >= 3 and summary["relisted"] >= 3 and summary["resync_rows"] >= 1, summary


def test_without_rbac_the_watcher_logs_a_clear_error_backs_off_and_recovers(implementation, namespace):
    objects = deploy(namespace, implementation, {"WATCH_BACKOFF_MAX_SECONDS": "8"}, rbac=False)

    def errors() -> list[dict]:
        return [json.loads(line) for line in eventlog.read_logs(at(namespace)) if '"status":"error"' in line]

    def first_pod_with_five() -> list[dict] | None:
        """One watcher Pod's first five errors: on a multi-node cluster every node's Pod retries on
        its own clock, and their lines interleave."""
        by_pod: dict[str, list[dict]] = {}
        for line in errors():
            by_pod.setdefault(line["watcher"], []).append(line)
        return next((lines[:5] for lines in by_pod.values() if len(lines) >= 5), None)

    found = eventually(first_pod_with_five, timeout=150, interval=2, what="five error lines from one watcher Pod")
    for line in found:
        assert "forbidden" in line["detail"] and 'cannot list resource "pods"' in line["detail"], line
        assert "watcher-pod-reader" in line["hint"], line
    times = sorted(pd.Timestamp(line["time"]) for line in found)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    # Exponential backoff (with jitter): the fourth wait is at least twice the first.
    assert gaps[-1] >= 1.5 and gaps[-1] > 2 * gaps[0], f"no backoff between retries: {gaps}"
    for line in eventlog.read_logs(at(namespace)):
        json.loads(line)  # one JSON line per event: no stack traces, no library logging
    for pod in eventlog.watcher_pods(at(namespace)):  # alive and probed healthy all along: no crash loop
        [state] = pod.status.container_statuses
        assert state.restart_count == 0 and state.ready, state

    apply(namespace, [o for o in objects if o["kind"] in ("Role", "RoleBinding")])
    eventually(lambda: every_watcher_snapshotted(namespace, eventlog.read_logs(at(namespace))), timeout=150, interval=2,
               what="the watcher to list Pods once it may")
    assert all(p.status.container_statuses[0].restart_count == 0 for p in eventlog.watcher_pods(at(namespace)))
