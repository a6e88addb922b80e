"""The pod watcher program (images/watcher/) and lab.ops.eventlog, without a cluster.

The watcher's loop runs against a scripted fake CoreV1Api; lab.ops.eventlog parses lines that the
watcher's own code writes, so the two sides agree on the format.
"""
from __future__ import annotations

import importlib.util
import io
import json
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pandas as pd
import pytest

from lab import config
from lab.ops import eventlog
from lab.errors import LabError
from lab.target import Target

WATCHER_PATH = config.REPO_ROOT / "images" / "watcher" / "k8s_lab_watcher.py"


def _load_watcher():
    spec = importlib.util.spec_from_file_location("k8s_lab_watcher", WATCHER_PATH)
    module = importlib.util.module_from_spec(spec)
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # keep __pycache__ out of the image directory
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    return module


W = _load_watcher()
NODE = "node-a"


# ------------------------------------------------------------------------------- fixtures


def pod(name: str, rv: str | int, uid: str | None = None, phase: str = "Running", node: str = NODE,
        ready: bool | None = True, created: str = "2024-05-01T12:00:00Z", deleting: str | None = None,
        ns: str = "lab") -> dict:
    """A Pod as the API returns it (JSON), with the conditions a running Pod has."""
    conditions = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-05-01T12:00:01Z"},
        {"type": "Initialized", "status": "True", "lastTransitionTime": "2024-05-01T12:00:02Z"},
    ]
    if ready is not None:
        status = "True" if ready else "False"
        conditions += [
            {"type": "ContainersReady", "status": status, "lastTransitionTime": "2024-05-01T12:00:04Z"},
            {"type": "Ready", "status": status, "lastTransitionTime": "2024-05-01T12:00:04Z"},
        ]
    meta = {"name": name, "namespace": ns, "uid": uid or f"uid-{name}", "resourceVersion": str(rv),
            "creationTimestamp": created, "labels": {"app": "x"}}
    if deleting:
        meta["deletionTimestamp"] = deleting
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": {"nodeName": node},
            "status": {"phase": phase, "podIP": "10.244.0.9", "conditions": conditions}}


def pod_list(rv: str | int, *pods: dict, cont: str | None = None) -> bytes:
    meta = {"resourceVersion": str(rv)}
    if cont:
        meta["continue"] = cont
    return json.dumps({"kind": "PodList", "metadata": meta, "items": list(pods)}).encode()


def event(kind: str, obj: dict) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def bookmark(rv: str | int) -> bytes:
    return event("BOOKMARK", {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}})


def gone(message: str = "too old resource version: 1 (500)") -> bytes:
    return event("ERROR", {"kind": "Status", "status": "Failure", "reason": "Expired", "code": 410,
                           "message": message})


class FakeResponse:
    def __init__(self, data: bytes = b"", chunks=(), on_end=None):
        self.data = data
        self._chunks = list(chunks)
        self._on_end = on_end
        self.closed = False

    def stream(self, amt=None, decode_content=None):
        yield from self._chunks
        if self._on_end:
            self._on_end()

    def release_conn(self):
        pass

    def close(self):
        self.closed = True


class FakeApiException(Exception):
    def __init__(self, status: int, reason: str = ""):
        super().__init__(f"({status}) {reason}")
        self.status, self.reason, self.body = status, reason, None


class FakeApi:
    """Answers list/watch calls from a script: a FakeResponse, an exception, or a callable."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls: list[dict] = []

    def _answer(self, kwargs):
        self.calls.append(kwargs)
        if not self.script:
            raise AssertionError(f"unexpected call {kwargs}")
        item = self.script.pop(0)
        if callable(item) and not isinstance(item, FakeResponse):
            item = item()
        if isinstance(item, BaseException):
            raise item
        return item

    def list_namespaced_pod(self, namespace, **kwargs):
        return self._answer(dict(kwargs, namespace=namespace))

    def list_pod_for_all_namespaces(self, **kwargs):
        return self._answer(dict(kwargs, namespace="*"))


def make_watcher(api, **kwargs):
    out = io.StringIO()
    sleeps: list[float] = []
    watcher = W.Watcher(api, kwargs.pop("namespace", "lab"), node=kwargs.pop("node", NODE),
                        pod_name="watcher-x", out=out, sleep=sleeps.append, **kwargs)
    return watcher, out, sleeps


def records(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def pod_records(out: io.StringIO) -> list[dict]:
    return [r for r in records(out) if r["type"] != "WATCHER"]


def stop_after(watcher):
    """A script step: the watch blocks until SIGTERM arrives (request_stop while interruptible)."""
    def stopped_while_blocked():
        watcher.request_stop(15)
    return lambda: FakeResponse(chunks=[], on_end=stopped_while_blocked)


# ------------------------------------------------------------------------ pure watcher parts


def test_rfc3339_with_milliseconds_in_utc():
    assert W.rfc3339_ms(0) == "1970-01-01T00:00:00.000Z"
    assert W.rfc3339_ms(1714564800.1239) == "2024-05-01T12:00:00.123Z"


def test_summarize_takes_the_logged_fields_from_api_json():
    s = W.summarize(pod("web-1", 42, deleting="2024-05-01T12:05:00Z"))
    assert s == {
        "namespace": "lab", "pod": "web-1", "uid": "uid-web-1", "phase": "Running", "node": NODE,
        "pod_ip": "10.244.0.9",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "last_transition_time": "2024-05-01T12:00:01Z"},
            {"type": "Initialized", "status": "True", "last_transition_time": "2024-05-01T12:00:02Z"},
            {"type": "ContainersReady", "status": "True", "last_transition_time": "2024-05-01T12:00:04Z"},
            {"type": "Ready", "status": "True", "last_transition_time": "2024-05-01T12:00:04Z"},
        ],
        "resource_version": "42", "created": "2024-05-01T12:00:00Z", "deleting": "2024-05-01T12:05:00Z",
    }
    bare = W.summarize({"metadata": {"name": "p", "uid": "u"}})
    assert bare["conditions"] == [] and bare["phase"] is None and bare["node"] is None


def test_relist_diff_reports_added_modified_deleted_and_nothing_for_unchanged():
    known = {p["uid"]: p for p in map(W.summarize, [pod("a", 1), pod("b", 2), pod("c", 3)])}
    listed = [W.summarize(p) for p in (pod("a", 1), pod("b", 7), pod("d", 8))]
    changes = W.relist_diff(known, listed, list_rv="9")
    assert [(change, p["pod"], p["resource_version"]) for change, p in changes] == [
        ("MODIFIED", "b", "7"), ("ADDED", "d", "8"), ("DELETED", "c", "9")]
    assert known["uid-c"]["resource_version"] == "3"  # the input is not changed
    assert W.relist_diff(known, list(known.values())) == []
    assert W.relist_diff({}, []) == []
    deleted = W.relist_diff(known, [])
    assert [(c, p["resource_version"]) for c, p in deleted] == [("DELETED", "1"), ("DELETED", "2"), ("DELETED", "3")]


def test_relist_diff_tells_a_recreated_pod_by_its_uid():
    known = {"uid-old": W.summarize(pod("db-0", 5, uid="uid-old"))}
    changes = W.relist_diff(known, [W.summarize(pod("db-0", 9, uid="uid-new"))], "10")
    assert [(c, p["uid"]) for c, p in changes] == [("ADDED", "uid-new"), ("DELETED", "uid-old")]


def test_iter_lines_joins_chunks_and_drops_a_trailing_partial_line():
    chunks = [b'{"a":', b'1}\n{"b":2}\n\n{"c"', b':3}\n{"partial']
    assert list(W.iter_lines(chunks)) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']
    assert list(W.iter_lines([])) == []


def test_backoff_doubles_up_to_the_cap_with_jitter_and_resets():
    import random

    backoff = W.Backoff(base=0.5, cap=4, rng=random.Random(1))
    delays = [backoff.next() for _ in range(6)]
    for delay, ceiling in zip(delays, [0.5, 1, 2, 4, 4, 4]):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next() <= 0.5


def test_namespace_defaults_to_the_environment_then_the_service_account(monkeypatch, tmp_path):
    monkeypatch.setenv("WATCH_NAMESPACE", "team-a")
    assert W.parse_args([]).namespace == "team-a"
    assert W.parse_args(["--all-namespaces"]).namespace == "*"
    assert W.parse_args(["--namespace", "b"]).namespace == "b"
    monkeypatch.delenv("WATCH_NAMESPACE")
    sa = tmp_path / "namespace"
    sa.write_text("from-sa\n")
    monkeypatch.setattr(W, "SA_NAMESPACE_FILE", str(sa))
    assert W.parse_args([]).namespace == "from-sa"
    monkeypatch.setenv("NODE_NAME", "n1")
    monkeypatch.setenv("WATCH_TIMEOUT_SECONDS", "7")
    monkeypatch.setenv("WATCHER_TEST_STALE_RESOURCE_VERSION", "1")
    monkeypatch.setenv("WATCHER_TEST_RELIST_DELAY_SECONDS", "0.5")
    args = W.parse_args([])
    assert (args.node, args.timeout_seconds, args.test_stale_resource_version) == ("n1", 7, "1")
    assert args.test_relist_delay_seconds == 0.5


# -------------------------------------------------------------------------- the watcher loop


def test_snapshot_then_watch_with_bookmarks_then_410_relists_and_resyncs():
    api = FakeApi(
        FakeResponse(pod_list(12, pod("a", 10), pod("b", 11))),
        FakeResponse(chunks=[event("MODIFIED", pod("a", 13)), bookmark(20),
                             event("ADDED", pod("c", 21))[:30], event("ADDED", pod("c", 21))[30:]]),
        FakeResponse(chunks=[bookmark(25)]),
        FakeResponse(chunks=[gone()]),
        FakeResponse(pod_list(32, pod("a", 13), pod("b", 30), pod("d", 31))),
    )
    watcher, out, sleeps = make_watcher(api, timeout_s=60)
    api.script.append(stop_after(watcher))
    assert watcher.run() == 0

    lines = pod_records(out)
    assert [(r["type"], r["change"], r["pod"], r["resource_version"]) for r in lines] == [
        ("SNAPSHOT", None, "a", "10"), ("SNAPSHOT", None, "b", "11"),
        ("MODIFIED", None, "a", "13"), ("ADDED", None, "c", "21"),
        ("RESYNC", "MODIFIED", "b", "30"), ("RESYNC", "ADDED", "d", "31"), ("RESYNC", "DELETED", "c", "32"),
    ]
    watches = [c for c in api.calls if c.get("watch")]
    # from the list, from the last event, from the bookmark, then from the re-list
    assert [c["resource_version"] for c in watches] == ["12", "21", "25", "32"]
    for call in api.calls:
        assert call["field_selector"] == f"spec.nodeName={NODE}" and call["_preload_content"] is False
        assert call["namespace"] == "lab"
    for call in watches:
        assert call["allow_watch_bookmarks"] is True and call["timeout_seconds"] == 60
        assert call["_request_timeout"][1] > 60
    status = [r for r in records(out) if r["type"] == "WATCHER"]
    assert [s["status"] for s in status] == ["started", "snapshot", "expired", "relisted", "stopped"]
    assert status[-1]["reason"] == "SIGTERM" and status[-1]["bookmarks"] == 2 and status[-1]["expired"] == 1
    assert sleeps == []
    for r in lines:
        assert r["watcher_node"] == NODE and r["watcher"] == "watcher-x" and r["session"] == watcher.session
        datetime.strptime(r["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert list(r)[:13] == ["time", "type", "change", "namespace", "pod", "uid", "phase", "node",
                                "pod_ip", "conditions", "resource_version", "created", "deleting"]


def test_errors_back_off_exponentially_and_the_watch_resumes_where_it_was():
    api = FakeApi(
        FakeResponse(pod_list(5, pod("a", 4))),
        FakeResponse(chunks=[event("MODIFIED", pod("a", 6)), b'{"type":"MODIFIED","obj']),  # connection broke
        ConnectionResetError("reset by peer"),
        FakeApiException(500, "Internal Server Error"),
        FakeResponse(chunks=[event("DELETED", pod("a", 9, phase="Succeeded"))]),
    )
    watcher, out, sleeps = make_watcher(api)
    api.script.append(stop_after(watcher))
    watcher.run()
    assert [(r["type"], r["resource_version"]) for r in pod_records(out)] == [
        ("SNAPSHOT", "4"), ("MODIFIED", "6"), ("DELETED", "9")]
    assert [c["resource_version"] for c in api.calls if c.get("watch")] == ["5", "6", "6", "6", "9"]
    assert len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1
    errors = [r for r in records(out) if r.get("status") == "error"]
    assert len(errors) == 2 and "ConnectionResetError" in errors[0]["detail"] and errors[0]["retry_in_s"] > 0


def test_http_410_on_the_watch_request_relists_too_and_a_duplicate_event_is_dropped():
    api = FakeApi(
        FakeResponse(pod_list(5, pod("a", 4))),
        FakeApiException(410, "Gone"),
        FakeResponse(pod_list(8, pod("a", 7))),
        FakeResponse(chunks=[event("MODIFIED", pod("a", 7)), event("MODIFIED", pod("a", 10))]),
    )
    watcher, out, sleeps = make_watcher(api)
    api.script.append(stop_after(watcher))
    watcher.run()
    assert [(r["type"], r["change"], r["resource_version"]) for r in pod_records(out)] == [
        ("SNAPSHOT", None, "4"), ("RESYNC", "MODIFIED", "7"), ("MODIFIED", None, "10")]
    assert watcher.counts["duplicates"] == 1 and sleeps == []


def test_the_test_stale_resource_version_forces_a_relist_after_every_watch():
    api = FakeApi(
        FakeResponse(pod_list(5, pod("a", 4))),
        FakeResponse(chunks=[event("MODIFIED", pod("a", 6))]),  # ends normally (timeout)
        FakeResponse(chunks=[gone("too old resource version: 1 (3)")]),
        FakeResponse(pod_list(9, pod("a", 6), pod("b", 8))),
        FakeResponse(chunks=[]),
        FakeResponse(chunks=[gone()]),
        FakeResponse(pod_list(12, pod("b", 8))),
    )
    watcher, out, sleeps = make_watcher(api, stale_rv="1", timeout_s=2, relist_delay_s=0.25)
    api.script.append(stop_after(watcher))
    watcher.run()
    assert sleeps == [0.25, 0.25]  # the test delay before each re-list
    assert [c["resource_version"] for c in api.calls if c.get("watch")] == ["5", "1", "9", "1", "12"]
    assert [(r["type"], r["change"], r["pod"]) for r in pod_records(out)] == [
        ("SNAPSHOT", None, "a"), ("MODIFIED", None, "a"), ("RESYNC", "ADDED", "b"), ("RESYNC", "DELETED", "a")]


def test_lists_are_paged_and_keep_the_first_pages_resource_version():
    api = FakeApi(
        FakeResponse(pod_list(50, pod("a", 1), cont="next-page")),
        FakeResponse(pod_list(99, pod("b", 2))),
    )
    watcher, out, _ = make_watcher(api, namespace="*", node="")
    api.script.append(stop_after(watcher))
    watcher.run()
    assert api.calls[1]["_continue"] == "next-page" and api.calls[0]["limit"] == W.LIST_PAGE
    assert all(c["namespace"] == "*" and "field_selector" not in c for c in api.calls)
    assert api.calls[2]["resource_version"] == "50"
    assert [r["pod"] for r in pod_records(out)] == ["a", "b"]


def test_stop_between_events_finishes_the_current_line():
    api = FakeApi(FakeResponse(pod_list(5)))
    watcher, out, _ = make_watcher(api)

    def sigterm_after_first_event():
        chunks = [event("ADDED", pod("a", 6))]
        original = watcher.emit

        def emit(*args, **kwargs):
            original(*args, **kwargs)
            watcher.request_stop(15)  # not interruptible here: only flags
        watcher.emit = emit
        return FakeResponse(chunks=chunks + [event("ADDED", pod("b", 7))])

    api.script.append(sigterm_after_first_event)
    assert watcher.run() == 0
    assert [r["pod"] for r in pod_records(out)] == ["a"]
    assert records(out)[-1]["status"] == "stopped"


# ------------------------------------------------------------------------- lines for lab.ops.eventlog


class Feed:
    """Write watcher lines with the watcher's own code, at chosen times."""

    def __init__(self, node: str = NODE, pod_name: str = "watcher-x", session: str = "s1"):
        self.out = io.StringIO()
        self.w = W.Watcher(None, "lab", node=node, pod_name=pod_name, out=self.out)
        self.w.session = session
        self.clock = 1714564800.0

    def at(self, seconds: float):
        self.clock = 1714564800.0 + seconds
        return self

    def _stamp(self):
        return W.rfc3339_ms(self.clock)

    def emit(self, kind: str, api_pod: dict, change: str | None = None):
        original = W.rfc3339_ms
        W.rfc3339_ms = lambda t=None: original(self.clock)
        try:
            self.w.emit(kind, W.summarize(api_pod), change=change)
        finally:
            W.rfc3339_ms = original
        return self

    def status(self, status: str, **fields):
        original = W.rfc3339_ms
        W.rfc3339_ms = lambda t=None: original(self.clock)
        try:
            self.w.status(status, **fields)
        finally:
            W.rfc3339_ms = original
        return self

    @property
    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


def lifecycle_feed() -> Feed:
    f = Feed()
    f.at(0).status("started", scope="lab").status("snapshot", pods=0, resource_version="1")
    f.at(1).emit("ADDED", pod("web", 2, ready=None, phase="Pending"))
    f.at(2).emit("MODIFIED", pod("web", 3, ready=False, phase="Pending"))
    f.at(5).emit("MODIFIED", pod("web", 4, ready=True))
    f.at(9).emit("MODIFIED", pod("web", 5, ready=True, deleting="2024-05-01T12:00:09Z"))
    f.at(10).emit("DELETED", pod("web", 6, ready=False, phase="Succeeded", deleting="2024-05-01T12:00:09Z"))
    f.at(11).emit("ADDED", pod("job", 7, ready=None, phase="Pending", created="2024-05-01T12:00:11Z"))
    return f


def test_parse_lines_gives_typed_columns_and_skips_what_is_not_a_watcher_line():
    lines = lifecycle_feed().lines
    noisy = ["", "Traceback (most recent call last):", '{"type": "SOMETHING"}', "{broken", "[1, 2]",
             lines[2].encode(), *lines]
    events = eventlog.parse_lines(noisy)
    assert len(events) == len(lines) + 1  # the bytes line counts too
    assert list(events.columns) == list(eventlog.COLUMNS)
    dtypes = events.dtypes.astype(str)
    assert dtypes["time"] == dtypes["created"] == dtypes["ready_at"] == "datetime64[ns, UTC]"
    for column in ("type", "change", "namespace", "phase", "node", "watcher_node", "session", "status"):
        assert isinstance(events[column].dtype, pd.CategoricalDtype), column
    for column in ("pod", "uid", "pod_ip", "resource_version", "detail"):
        assert isinstance(events[column].dtype, pd.StringDtype), column
    assert dtypes["ready"] == "boolean" and dtypes["inferred"] == "bool"
    rows = eventlog.pod_events(events).drop_duplicates("resource_version")
    assert [None if pd.isna(x) else bool(x) for x in rows["ready"]][:3] == [None, False, True]
    ready = rows[rows["resource_version"] == "4"].iloc[0]
    assert ready["time"] == pd.Timestamp("2024-05-01T12:00:05Z")
    assert ready["scheduled_at"] == pd.Timestamp("2024-05-01T12:00:01Z")
    assert ready["ready_at"] == pd.Timestamp("2024-05-01T12:00:04Z")
    assert pd.isna(rows[rows["resource_version"] == "3"].iloc[0]["ready_at"])  # Ready is False
    assert events.loc[1, "type"] == "WATCHER" and events.loc[1, "scope"] == "lab"  # row 0: the bytes line


def test_parse_lines_of_nothing_has_the_columns_and_dtypes():
    empty = eventlog.parse_lines([])
    assert list(empty.columns) == list(eventlog.COLUMNS) and empty.empty
    assert str(empty["time"].dtype) == "datetime64[ns, UTC]"
    assert eventlog.lifecycles(empty).empty


def test_times_with_offsets_or_odd_forms_fall_back_to_pandas():
    line = json.loads(lifecycle_feed().lines[2])
    line["created"] = "2024-05-01T14:00:00+02:00"
    events = eventlog.parse_lines([json.dumps(line)])
    assert events.loc[0, "created"] == pd.Timestamp("2024-05-01T12:00:00Z")


def test_dedupe_keeps_one_row_per_uid_resource_version_and_type():
    lines = lifecycle_feed().lines
    twice = eventlog.parse_lines(lines + lines[3:5])
    deduped = eventlog.dedupe(twice)
    assert len(deduped) == len(lines)
    assert deduped["time"].is_monotonic_increasing
    keys = eventlog.pod_events(deduped)[["uid", "resource_version", "type"]]
    assert not keys.duplicated().any()
    # the same state as SNAPSHOT (a restarted watcher) and as MODIFIED is two rows
    f = lifecycle_feed()
    f.at(20).emit("SNAPSHOT", pod("job", 7, ready=None, phase="Pending", created="2024-05-01T12:00:11Z"))
    assert len(eventlog.dedupe(eventlog.parse_lines(f.lines))) == len(lines) + 1


def test_lifecycles_from_conditions_and_events():
    events = eventlog.dedupe(eventlog.parse_lines(lifecycle_feed().lines))
    pods = eventlog.lifecycles(events).set_index("pod")
    web = pods.loc["web"]
    t = lambda s: pd.Timestamp(f"2024-05-01T12:00:{s:02d}Z")  # noqa: E731
    assert (web["created"], web["scheduled"], web["initialized"], web["ready"]) == (t(0), t(1), t(2), t(4))
    assert web["deletion_requested"] == t(9) and web["deleted"] == t(10)
    assert web["phase"] == "Succeeded" and web["events"] == 5 and web["node"] == NODE
    assert (web["to_scheduled_s"], web["to_ready_s"], web["lifetime_s"]) == (1.0, 4.0, 10.0)
    job = pods.loc["job"]
    assert pd.isna(job["ready"]) and pd.isna(job["deleted"]) and job["phase"] == "Pending"
    assert list(eventlog.lifecycles(events).columns) == list(eventlog.LIFECYCLE_COLUMNS)
    assert eventlog.lifecycles(events)["pod"].tolist() == ["web", "job"]  # by creation


def test_a_resync_deletion_ends_a_lifecycle():
    f = Feed()
    f.at(0).emit("SNAPSHOT", pod("a", 2))
    f.at(4).emit("RESYNC", {**pod("a", 2), "metadata": {**pod("a", 2)["metadata"], "resourceVersion": "9"}},
                 change="DELETED")
    pods = eventlog.lifecycles(eventlog.parse_lines(f.lines))
    assert pods.loc[0, "deleted"] == pd.Timestamp("2024-05-01T12:00:04Z")


def restart_feeds():
    """A watcher that ran, was killed, and whose successor started with a snapshot."""
    old = Feed(pod_name="watcher-old", session="old")
    old.at(0).status("started", scope="lab").status("snapshot", pods=0, resource_version="1")
    old.at(1).emit("ADDED", pod("keep", 2))
    old.at(2).emit("ADDED", pod("gone-in-gap", 3))
    old.at(3).emit("ADDED", pod("deleted-seen", 4))
    old.at(4).emit("DELETED", pod("deleted-seen", 5))
    old.at(5).emit("ADDED", pod("changed-in-gap", 6))
    old.at(6).status("stopped", reason="SIGTERM")
    new = Feed(pod_name="watcher-new", session="new")
    new.at(10).status("started", scope="lab")
    new.at(10).emit("SNAPSHOT", pod("keep", 2))
    new.at(10).emit("SNAPSHOT", pod("changed-in-gap", 9))
    new.at(10).emit("SNAPSHOT", pod("born-in-gap", 8))
    new.at(10).status("snapshot", pods=3, resource_version="10")
    other_node = Feed(node="node-b", pod_name="watcher-b", session="b")
    other_node.at(0).status("started", scope="lab").status("snapshot", pods=0, resource_version="1")
    other_node.at(1).emit("ADDED", pod("elsewhere", 11, node="node-b"))
    return old.lines + new.lines + other_node.lines


def test_fill_restart_gaps_infers_deletions_missed_between_two_watchers():
    events = eventlog.fill_restart_gaps(eventlog.parse_lines(restart_feeds()))
    inferred = events[events["inferred"]]
    assert inferred["pod"].tolist() == ["gone-in-gap"]
    row = inferred.iloc[0]
    assert (row["type"], row["change"], row["session"], row["watcher"]) == ("RESYNC", "DELETED", "new", "watcher-new")
    assert row["time"] == pd.Timestamp("2024-05-01T12:00:10Z") and row["resource_version"] == "10"
    pods = eventlog.lifecycles(eventlog.dedupe(events)).set_index("pod")
    assert pods.loc["gone-in-gap", "deleted"] == pd.Timestamp("2024-05-01T12:00:10Z")
    assert pd.isna(pods.loc["keep", "deleted"]) and pd.isna(pods.loc["elsewhere", "deleted"])
    # nothing to infer from one watcher, or when nothing went missing
    single = eventlog.parse_lines(lifecycle_feed().lines)
    assert eventlog.fill_restart_gaps(single) is single
    assert eventlog.fill_restart_gaps(events.iloc[:0]).empty
    # A frame glued from two (its index repeats) gets the same one inferred row, no more.
    parsed = eventlog.parse_lines(restart_feeds())
    halves = pd.concat([parsed.iloc[:len(parsed) // 2], parsed.iloc[len(parsed) // 2:].reset_index(drop=True)])
    assert not halves.index.is_unique
    assert eventlog.fill_restart_gaps(halves)["inferred"].sum() == 1


def test_load_events_parses_fills_dedupes_and_cuts_at_since():
    lines = restart_feeds()
    events = eventlog.load_events(None, lines=lines + lines[:5])
    assert events["inferred"].sum() == 1
    assert not eventlog.pod_events(events)[["uid", "resource_version", "type"]].duplicated().any()
    later = eventlog.load_events(None, lines=lines, since="2024-05-01T12:00:05Z")
    assert later["time"].min() >= pd.Timestamp("2024-05-01T12:00:05Z")


def test_the_same_lines_loaded_again_are_parsed_once_and_each_caller_gets_its_own_frame(monkeypatch):
    parsed = []
    real = eventlog.parse_lines
    monkeypatch.setattr(eventlog, "parse_lines", lambda lines: parsed.append(len(lines)) or real(lines))
    lines = restart_feeds()
    first = eventlog.load_events(None, lines=lines)
    first.loc[:, "pod"] = "changed by a caller"
    again = eventlog.load_events(None, lines=list(lines))
    assert parsed == [len(lines)] and "changed by a caller" not in set(again["pod"])
    more = eventlog.load_events(None, lines=lines + lines[:1])  # a line more: parsed again
    assert len(parsed) == 2 and len(more) == len(again)  # (the extra line is a duplicate)


def test_parse_since():
    now = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert eventlog.parse_since("90s", now) == pd.Timestamp("2024-05-01T11:58:30Z")
    assert eventlog.parse_since("1h30m", now) == pd.Timestamp("2024-05-01T10:30:00Z")
    assert eventlog.parse_since("2d", now) == pd.Timestamp("2024-04-29T12:00:00Z")
    assert eventlog.parse_since("2024-05-01T10:00:00Z") == pd.Timestamp("2024-05-01T10:00:00Z")
    assert eventlog.parse_since("2024-05-01 10:00") == pd.Timestamp("2024-05-01T10:00:00Z")
    assert eventlog.parse_since(None) is None and eventlog.parse_since("") is None
    with pytest.raises(LabError):
        eventlog.parse_since("yesterday-ish")


def test_timeline_is_a_figure_with_a_bar_per_pod():
    from matplotlib.figure import Figure

    events = eventlog.load_events(None, lines=restart_feeds())
    fig = eventlog.timeline(events)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert set(labels) == {"keep", "gone-in-gap", "deleted-seen", "changed-in-gap", "born-in-gap", "elsewhere"}
    assert len(ax.collections) > len(labels)  # bars, plus the ticks of the lines
    fig.savefig(io.BytesIO(), format="png")
    assert isinstance(eventlog.timeline(eventlog.lifecycles(events), max_pods=2), Figure)
    assert isinstance(eventlog.timeline(eventlog.parse_lines([])), Figure)


def test_watcher_objects_render_the_chart_with_the_watcher_image_and_extra_env():
    objects = eventlog.watcher_objects("my-ns", env={"WATCH_TIMEOUT_SECONDS": "5", "NODE_NAME": "ignored?"})
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert kinds == {("ServiceAccount", "watcher"), ("Role", "watcher-pod-reader"),
                     ("RoleBinding", "watcher-pod-reader"), ("DaemonSet", "watcher")}
    assert all(o["metadata"]["namespace"] == "my-ns" for o in objects)
    ds = next(o for o in objects if o["kind"] == "DaemonSet")
    [container] = ds["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "k8s-lab/watcher:1" and container["command"] == ["k8s-lab-watcher"]
    env = {e["name"]: e for e in container["env"]}
    assert env["WATCH_TIMEOUT_SECONDS"]["value"] == "5"
    assert env["NODE_NAME"] == {"name": "NODE_NAME", "value": "ignored?"}  # explicit env replaces
    assert env["WATCH_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert ds["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "watcher"


def test_the_watcher_image_is_in_both_plans_on_the_watcher_base():
    from lab.build import images

    for mode in ("online", "offline"):
        [spec] = [s for s in images.plan(mode) if s.tag == images.WATCHER_IMAGE]
        assert spec.context == "watcher" and spec.load
        base = images.ONLINE_PYTHON if mode == "online" else images.PYTHON_BASE_OFFLINE
        assert dict(spec.build_args) == {"BASE_IMAGE": base}
    dockerfile = (images.IMAGES_DIR / "watcher" / "Dockerfile").read_text()
    assert "COPY k8s_lab_watcher.py /usr/local/bin/k8s-lab-watcher" in dockerfile


def test_lab_events_prints_a_lifecycle_table_and_writes_csv(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from lab.cli import cli

    asked = {}
    events = eventlog.load_events(None, lines=restart_feeds())

    def fake_load(target, since=None):
        asked.update(target=target, since=since)
        return events

    monkeypatch.setattr(eventlog, "load_events", fake_load)
    from rich.console import Console

    from lab import cli as cli_module

    monkeypatch.setattr(cli_module, "console", Console(width=200))  # no folding of the table
    out = tmp_path / "events.csv"
    result = CliRunner().invoke(cli, ["events", "-n", "team", "--since", "10m", "--csv", str(out)],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert asked == {"target": Target.of(namespace="team"), "since": "10m"}
    assert "gone-in-gap" in result.output and "born-in-gap" in result.output
    assert "6 Pods" in result.output and "from 3 watcher runs" in result.output
    written = pd.read_csv(out)
    assert len(written) == len(events)
    assert json.loads(written.loc[written["type"] == "ADDED", "conditions"].iloc[0])[0]["type"] == "PodScheduled"


def test_lab_events_without_a_watcher_says_how_to_get_one(monkeypatch):
    from click.testing import CliRunner

    from lab.cli import cli

    def no_watcher(target, since=None):
        raise LabError("no watcher Pods (app.kubernetes.io/component=watcher) in namespace x", hint="deploy it")

    monkeypatch.setattr(eventlog, "load_events", no_watcher)
    result = CliRunner().invoke(cli, ["events", "-n", "x"])
    assert result.exit_code == 1 and "no watcher Pods" in result.output


# ------------------------------------------------------------- health and RBAC errors


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_python_health_endpoint_turns_503_when_the_loop_is_stuck():
    watcher = W.Watcher(None, "lab", node="node-a", out=io.StringIO(), timeout_s=5, backoff_max_s=2)
    server = W.serve_health(watcher, 0)
    try:
        port = server.server_address[1]
        status, body = healthz(port)
        assert status == 200 and body["status"] == "ok" and body["session"] == watcher.session
        # Longer in one call than a quiet watch (5 s + grace), a list and the longest pause take.
        watcher.progress_at -= watcher.stall_limit_s() + 1
        status, body = healthz(port)
        assert status == 503 and body["status"] == "stuck" and body["stuck_s"] > watcher.stall_limit_s()
        watcher._blocking(lambda: None)  # any progress makes it healthy again
        assert healthz(port)[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_python_forbidden_list_logs_the_api_message_with_a_hint_and_backs_off():
    from kubernetes.client.exceptions import ApiException

    message = ('pods is forbidden: User "system:serviceaccount:lab:watcher" cannot list resource "pods" '
               'in API group "" in the namespace "lab"')

    class Forbidden:
        calls = 0

        def list_namespaced_pod(self, namespace, **kwargs):
            self.calls += 1
            error = ApiException(status=403, reason="Forbidden")
            # Bytes: with _preload_content=False the client hands over the raw response body.
            error.body = json.dumps({"kind": "Status", "status": "Failure", "message": message,
                                     "reason": "Forbidden", "code": 403}).encode()
            raise error

    out, sleeps = io.StringIO(), []
    watcher = W.Watcher(Forbidden(), "lab", node="node-a", out=out, backoff_max_s=30, sleep=sleeps.append)

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 6:
            watcher.request_stop(15)
    watcher._sleep = sleep
    assert watcher.run() == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    errors = [r for r in lines if r.get("status") == "error"]
    assert len(errors) == 6 == watcher.api.calls
    assert errors[0]["detail"] == f"ApiException: Forbidden: {message}"
    assert "watcher-pod-reader" in errors[0]["hint"]
    # Exponential backoff with jitter: the i-th wait is within [d/2, d] for d = 0.5 s * 2**i.
    assert all(0.25 * 2**i <= delay <= 0.5 * 2**i for i, delay in enumerate(sleeps)), sleeps
    assert lines[-1]["status"] == "stopped" and lines[-1]["reason"] == "SIGTERM"
