"""The pod watcher's events in pandas: read its logs, tidy them, derive Pod lifecycles, draw them.

The watcher (``images/watcher/``, image ``k8s-lab/watcher:1``) runs as a DaemonSet and prints one
JSON line per Pod change on its node (see the docstring of ``images/watcher/k8s_lab_watcher.py``
for the format). This module turns those lines into a DataFrame::

    from lab.ops import eventlog
    events = eventlog.load_events("k8s-assignment", since="30m")   # one row per line, deduplicated
    pods = eventlog.lifecycles(events)                              # one row per Pod (uid)
    eventlog.timeline(pods, events)                                 # a matplotlib Figure

``parse_lines`` + ``fill_restart_gaps`` + ``dedupe`` are what ``load_events`` does to the lines
``read_logs`` fetches (every watcher Pod's log through the API, concurrently); ``LogFollower``
streams them live instead, which keeps the lines of a watcher Pod that is deleted meanwhile.
``deploy_watcher`` puts the watcher (RBAC and DaemonSet, rendered from the chart) into any
namespace, e.g. a student's own.
"""
from __future__ import annotations

import gc
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from lab import config, timing, yamldoc
from lab.build import images
from lab.build.images import WATCHER_GO_IMAGE, WATCHER_IMAGE
from lab.cluster import kind, kube
from lab.errors import LabError
from lab.host import tools
from lab.target import Target

DAEMONSET = "watcher"
CONTAINER = "watcher"
SELECTOR = "app.kubernetes.io/component=watcher"
CHART_TEMPLATES = ("templates/watcher/rbac.yaml", "templates/watcher/daemonset.yaml")
# Chart value watcher.implementation -> the image of that program.
IMPLEMENTATIONS = {"python": WATCHER_IMAGE, "go": WATCHER_GO_IMAGE}

POD_TYPES = ("ADDED", "MODIFIED", "DELETED", "SNAPSHOT", "RESYNC")
STATUS_TYPE = "WATCHER"
TYPES = POD_TYPES + (STATUS_TYPE,)
CHANGES = ("ADDED", "MODIFIED", "DELETED")
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
STATUSES = ("started", "snapshot", "expired", "relisted", "error", "stopped")
# Condition type -> column with its lastTransitionTime while its status is True.
CONDITION_COLUMNS = {
    "PodScheduled": "scheduled_at",
    "Initialized": "initialized_at",
    "ContainersReady": "containers_ready_at",
    "Ready": "ready_at",
}
_STRING_COLUMNS = ("pod", "uid", "pod_ip", "resource_version", "detail")
_CATEGORY_COLUMNS = ("namespace", "phase", "node", "watcher_node", "watcher", "session", "status", "scope")
_TIME_COLUMNS = ("created", "deleting") + tuple(CONDITION_COLUMNS.values())
COLUMNS = ("time", "type", "change", "namespace", "pod", "uid", "phase", "node", "pod_ip", "ready",
           *CONDITION_COLUMNS.values(), "resource_version", "created", "deleting", "conditions",
           "watcher_node", "watcher", "session", "status", "scope", "detail", "inferred")


# --------------------------------------------------------------------------------- parsing


def parse_lines(lines: Iterable[str | bytes]) -> pd.DataFrame:
    """One row per watcher line (pod events and WATCHER status lines), with proper dtypes.

    Lines that are not the watcher's JSON (blank, partial, other output) are skipped. Columns:
    ``COLUMNS``; times are UTC datetimes, short repeated values categories, ids strings,
    ``ready`` a nullable boolean (the Ready condition), ``*_at`` the lastTransitionTime of the
    condition while it is True, ``conditions`` the list as logged, ``inferred`` False (True only
    for rows ``fill_restart_gaps`` adds).
    """
    collecting = gc.isenabled()
    gc.disable()  # hundreds of thousands of new dicts and lists: collections would triple the time
    try:
        return _parse(lines)
    finally:
        if collecting:
            gc.enable()


def _parse(lines: Iterable[str | bytes]) -> pd.DataFrame:
    records = _decode(lines)
    # Every key a line may carry, in one C-level pass per record (missing keys -> None).
    columns = list(zip(*(tuple(map(r.get, _LINE_KEYS)) for r in records))) or [()] * len(_LINE_KEYS)
    cols: dict[str, list] = dict(zip(_LINE_KEYS, columns))
    cols["detail"] = [None if d is None else str(d) for d in cols["detail"]]
    conditions = [c or [] for c in cols["conditions"]]
    cols["conditions"] = conditions
    true_since = {c: [] for c in CONDITION_COLUMNS}
    appends = [(c, true_since[c].append) for c in CONDITION_COLUMNS]
    ready = []
    for conds in conditions:
        found = {}
        for c in conds:
            found[c.get("type")] = (c.get("status"), c.get("last_transition_time"))
        for ctype, append in appends:
            status, since = found.get(ctype, (None, None))
            append(since if status == "True" else None)
        status = found.get("Ready", (None,))[0]
        ready.append(True if status == "True" else (False if status is not None else None))
    for ctype, column in CONDITION_COLUMNS.items():
        cols[column] = true_since[ctype]
    cols["ready"] = ready
    return _typed(cols)


_BATCH = 5000
_LINE_KEYS = tuple(c for c in COLUMNS if c not in ("ready", "inferred", *CONDITION_COLUMNS.values()))


def _decode(lines: Iterable[str | bytes]) -> list[dict]:
    """The watcher's records among ``lines``: JSON objects whose type is one of ``TYPES``.

    Lines are parsed in batches as one JSON array (much faster than line by line); a batch with a
    broken line is parsed line by line and the broken ones are skipped.
    """
    candidates = []
    for line in lines:
        if isinstance(line, (bytes, bytearray)):
            line = line.decode("utf-8", errors="replace")
        line = line.strip()
        if line[:1] == "{" and line[-1:] == "}":
            candidates.append(line)
    records: list = []
    loads = json.loads
    for start in range(0, len(candidates), _BATCH):
        batch = candidates[start:start + _BATCH]
        try:
            records.extend(loads("[" + ",".join(batch) + "]"))
        except ValueError:
            for line in batch:
                try:
                    records.append(loads(line))
                except ValueError:
                    continue
    return [r for r in records if isinstance(r, dict) and r.get("type") in TYPES]


def _typed(cols: dict[str, list]) -> pd.DataFrame:
    data: dict[str, object] = {}
    for name in COLUMNS:
        if name == "inferred":
            continue
        values = cols[name]
        if name == "time":
            data[name] = _times(values, "%Y-%m-%dT%H:%M:%S.%fZ")
        elif name in _TIME_COLUMNS:
            data[name] = _times(values)
        elif name == "type":
            data[name] = pd.Categorical(values, categories=TYPES)
        elif name == "change":
            data[name] = pd.Categorical(values, categories=CHANGES)
        elif name == "phase":
            data[name] = pd.Categorical(values, categories=PHASES)
        elif name == "status":
            data[name] = pd.Categorical(values, categories=STATUSES)
        elif name in _CATEGORY_COLUMNS:
            data[name] = pd.Categorical(values)
        elif name in _STRING_COLUMNS:
            data[name] = pd.array(values, dtype="string")
        elif name == "ready":
            data[name] = pd.array(values, dtype="boolean")
        else:
            data[name] = pd.Series(values, dtype=object)
    frame = pd.DataFrame(data)
    frame["inferred"] = False
    return frame


def _times(values: Sequence[str | None], fmt: str = "ISO8601") -> pd.Series:
    """UTC datetimes (ns) from RFC 3339 strings, None -> NaT; each distinct string parsed once.

    The watcher's and the API's times end in ``Z``: numpy parses those (without the Z) about ten
    times faster than pandas; anything else (offsets, odd forms) goes through pandas.
    """
    codes, uniques = pd.factorize(pd.Series(values, dtype=object))
    if len(uniques) == 0:
        return pd.Series(pd.NaT, index=range(len(values)), dtype=_TIME_DTYPE)
    try:
        naive = np.array([v[:-1] if v[-1:] == "Z" else "?" for v in uniques], dtype="datetime64[ns]")
        parsed = pd.DatetimeIndex(naive).tz_localize("UTC")
    except (ValueError, TypeError):
        parsed = pd.DatetimeIndex(pd.to_datetime(uniques, format=fmt, utc=True, errors="coerce")).as_unit("ns")
    return pd.Series(parsed.take(codes, allow_fill=True, fill_value=pd.NaT))


_TIME_DTYPE = "datetime64[ns, UTC]"


def empty_frame() -> pd.DataFrame:
    return parse_lines([])


def pod_events(events: pd.DataFrame) -> pd.DataFrame:
    """The rows about Pods (without the watcher's own status lines)."""
    return events[events["type"] != STATUS_TYPE]


def is_deletion(events: pd.DataFrame) -> pd.Series:
    """Rows that say a Pod is gone: DELETED, or a RESYNC whose change is DELETED."""
    return (events["type"] == "DELETED") | ((events["type"] == "RESYNC") & (events["change"] == "DELETED"))


# ---------------------------------------------------------------------------- dedupe, gaps


def dedupe(events: pd.DataFrame) -> pd.DataFrame:
    """Sorted by time; one row per (uid, resource_version, type), the earliest.

    The same line read twice (two reads of one log, a follower and a read) and the same state
    logged twice with the same type (a restarted watcher's SNAPSHOT of an unchanged Pod) collapse;
    status lines are kept once per (session, time, status).
    """
    if events.empty:
        return events.reset_index(drop=True)
    ordered = events.sort_values("time", kind="stable")
    is_status = ordered["type"] == STATUS_TYPE
    pods = ordered[~is_status].drop_duplicates(["uid", "resource_version", "type"], keep="first")
    status = ordered[is_status].drop_duplicates(["session", "time", "status"], keep="first")
    return pd.concat([pods, status]).sort_values("time", kind="stable").reset_index(drop=True)


def fill_restart_gaps(events: pd.DataFrame) -> pd.DataFrame:
    """Add a deletion row for every Pod that went away while no watcher of its node ran.

    A watcher that restarts (its Pod deleted and recreated by the DaemonSet, or its container
    restarted) starts with a SNAPSHOT of what exists; it cannot know what was deleted before.
    The previous watcher's lines can: a Pod that was alive in them (same node and namespace
    scope), is missing from the new snapshot and has no deletion anywhere was deleted in between.
    For each, this adds a copy of its last row with type RESYNC, change DELETED, the time of the
    new snapshot, the new watcher's session and ``inferred`` True. Other rows are unchanged.
    """
    if events.empty:
        return events
    # The bookkeeping reads ten columns: filtering those alone, not all of the frame's, is most of
    # the difference; whole rows are taken (by index label) only for the Pods found missing.
    if not events.index.is_unique:
        events = events.reset_index(drop=True)
    slim = events[["time", "type", "change", "status", "session", "scope", "watcher_node", "watcher",
                   "resource_version", "uid"]]
    status = slim[slim["type"] == STATUS_TYPE]
    pods = pod_events(slim)
    snapshots = pods[pods["type"] == "SNAPSHOT"]
    starts: dict[str, pd.Timestamp] = {}
    for session, when in status[status["status"] == "snapshot"].groupby("session", observed=True)["time"].min().items():
        starts[session] = when
    for session, when in snapshots.groupby("session", observed=True)["time"].max().items():
        starts.setdefault(session, when)
    if len(starts) < 2:
        return events
    scopes = status[status["status"] == "started"].groupby("session", observed=True)["scope"].first()
    nodes = slim.groupby("session", observed=True)["watcher_node"].first()
    watchers = slim.groupby("session", observed=True)["watcher"].first()
    list_rvs = (status[status["status"] == "snapshot"].groupby("session", observed=True)["resource_version"].first())
    groups: dict[tuple, list[tuple[pd.Timestamp, str]]] = {}
    for session, when in starts.items():
        key = (_value(nodes.get(session)), _value(scopes.get(session)))
        groups.setdefault(key, []).append((when, session))
    added = []
    for sessions in groups.values():
        if len(sessions) < 2:
            continue
        sessions.sort()
        members = pods[pods["session"].isin([s for _, s in sessions])]
        gone = set(members.loc[is_deletion(members), "uid"])
        for when, session in sessions[1:]:
            before = members[members["time"] < when]
            if before.empty:
                continue
            last = before.groupby("uid", sort=False).tail(1)
            alive = last[~is_deletion(last)]
            seen_now = set(snapshots.loc[snapshots["session"] == session, "uid"])
            missing = alive[~alive["uid"].isin(seen_now | gone)]
            if missing.empty:
                continue
            rows = events.loc[missing.index].copy()
            rows["time"] = when
            rows["type"] = "RESYNC"
            rows["change"] = "DELETED"
            rows["session"] = session
            rows["watcher"] = watchers.get(session)
            rv = _value(list_rvs.get(session))
            if rv is not None:
                rows["resource_version"] = rv
            rows["detail"] = "gone while no watcher ran (inferred at the next watcher's snapshot)"
            rows["inferred"] = True
            added.append(rows)
            gone |= set(rows["uid"])
    if not added:
        return events
    return pd.concat([events, *added], ignore_index=True)


def _value(value):
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


# ------------------------------------------------------------------------------ lifecycles


LIFECYCLE_COLUMNS = ("uid", "namespace", "pod", "node", "phase", "created", "scheduled", "initialized",
                     "ready", "deletion_requested", "deleted", "first_seen", "last_seen", "events",
                     "to_scheduled_s", "to_ready_s", "lifetime_s")


def lifecycles(events: pd.DataFrame) -> pd.DataFrame:
    """One row per Pod (uid): when it was created, scheduled, initialized, ready and deleted.

    ``created`` is metadata.creationTimestamp; ``scheduled`` / ``initialized`` / ``ready`` the
    first lastTransitionTime of PodScheduled / Initialized / Ready while True (all three have
    second precision); ``deletion_requested`` the deletionTimestamp; ``deleted`` when a watcher
    saw it gone (DELETED, or a RESYNC DELETED); ``first_seen`` / ``last_seen`` the first and last
    line about it; ``phase`` and ``node`` the last known; ``*_s`` seconds since ``created``.
    Sorted by creation.
    """
    pods = pod_events(events)
    if pods.empty:
        return pd.DataFrame({c: pd.Series(dtype=_LIFECYCLE_DTYPES.get(c, "object")) for c in LIFECYCLE_COLUMNS})
    pods = pods.sort_values("time", kind="stable").assign(_gone=lambda f: f["time"].where(is_deletion(f)))
    g = pods.groupby("uid", sort=False, observed=True)
    # Names and phase as last seen; each moment of the life cycle as first seen.
    latest = {"namespace": "namespace", "pod": "pod", "node": "node", "phase": "phase"}
    earliest = {"created": "created", "scheduled": "scheduled_at", "initialized": "initialized_at",
                "ready": "ready_at", "deletion_requested": "deleting", "deleted": "_gone", "first_seen": "time"}
    out = pd.DataFrame({**{name: g[column].last() for name, column in latest.items()},
                        **{name: g[column].min() for name, column in earliest.items()},
                        "last_seen": g["time"].max(), "events": g.size()})
    for column, since in (("to_scheduled_s", "scheduled"), ("to_ready_s", "ready"), ("lifetime_s", "deleted")):
        out[column] = (out[since] - out["created"]).dt.total_seconds()
    out = out.rename_axis("uid").reset_index()
    out["uid"] = out["uid"].astype("string")
    return out.sort_values(["created", "first_seen"], kind="stable").reset_index(drop=True)[list(LIFECYCLE_COLUMNS)]


_LIFECYCLE_DTYPES = {
    "uid": "string", "pod": "string", "events": "int64",
    "to_scheduled_s": "float64", "to_ready_s": "float64", "lifetime_s": "float64",
    **{c: "datetime64[ns, UTC]" for c in ("created", "scheduled", "initialized", "ready",
                                          "deletion_requested", "deleted", "first_seen", "last_seen")},
}


def timeline(data: pd.DataFrame, events: pd.DataFrame | None = None, max_pods: int = 40,
             title: str | None = None):
    """A matplotlib Figure: one bar per Pod from creation to deletion, coloured by stage.

    ``data`` is ``lifecycles()`` output or an events frame (then lifecycles are derived and its
    rows drawn as ticks). Stages: pending (created -> scheduled), starting (-> ready), ready
    (-> deletion requested, or the last line seen), terminating (-> deleted). The latest
    ``max_pods`` Pods are drawn.
    """
    from matplotlib import dates as mdates
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if "first_seen" not in data.columns:
        events = data if events is None else events
        data = lifecycles(data)
    pods = data.tail(max_pods).reset_index(drop=True)
    fig = Figure(figsize=(10, max(2.5, 0.32 * len(pods) + 1.4)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title or f"Pod lifecycles ({len(pods)} of {len(data)} Pods)")
    if pods.empty:
        ax.text(0.5, 0.5, "no Pod events", ha="center", va="center", transform=ax.transAxes)
        return fig

    def num(values) -> pd.Series:
        return pd.Series(mdates.date2num(pd.to_datetime(values, utc=True).dt.tz_convert(None)), index=pods.index)

    start = num(pods["created"].fillna(pods["first_seen"]))
    end_all = num(pods["deleted"].fillna(pods["last_seen"]))
    scheduled = num(pods["scheduled"]).fillna(end_all)
    ready = num(pods["ready"]).fillna(end_all)
    terminating = num(pods["deletion_requested"]).fillna(end_all)
    colours = {"pending": "#f2b134", "starting": "#4f9dd9", "ready": "#3aa655", "terminating": "#b0b0b0"}
    stages = (("pending", start, scheduled), ("starting", scheduled, ready),
              ("ready", ready, terminating), ("terminating", terminating, end_all))
    for i in pods.index:
        for stage, a, b in stages:
            lo, hi = max(a[i], start[i]), min(b[i], end_all[i])
            if stage != "terminating":
                hi = min(hi, terminating[i])
            if hi > lo:
                ax.broken_barh([(lo, hi - lo)], (i - 0.35, 0.7), facecolors=colours[stage])
    if events is not None:
        rows = pod_events(events)
        rows = rows[rows["uid"].isin(pods["uid"])]
        if not rows.empty:
            y = rows["uid"].map(dict(zip(pods["uid"], pods.index)))
            x = mdates.date2num(rows["time"].dt.tz_convert(None))
            ax.scatter(x, y, marker="|", s=60, color="black", linewidths=0.8, zorder=3)
    ax.set_yticks(list(pods.index), [f"{p}" for p in pods["pod"].astype(str)], fontsize=8)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.set_xlabel("time (UTC)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=[Patch(color=c, label=s) for s, c in colours.items()] +
              ([Patch(color="black", label="watcher line")] if events is not None else []),
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return fig


# ---------------------------------------------------------------------------- reading logs


def parse_since(text: str | None, now: datetime | None = None) -> pd.Timestamp | None:
    """``30s``, ``10m``, ``2h``, ``1d``, ``1h30m`` (before now) or an RFC 3339 time -> UTC Timestamp."""
    if text is None or str(text).strip() == "":
        return None
    text = str(text).strip()
    now = pd.Timestamp(now or datetime.now(timezone.utc))
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if parts and "".join(n + u for n, u in parts) == text:
        seconds = sum(float(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[u] for n, u in parts)
        return now - timedelta(seconds=seconds)
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError) as error:
        raise LabError(f"cannot read --since {text!r}",
                       hint="use a duration such as 30s, 10m, 2h, 1d or a time such as 2024-05-01T12:00:00Z") from error
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def watcher_pods(target: Target) -> list:
    return kube.core(target).list_namespaced_pod(target.namespace, label_selector=SELECTOR).items


def read_logs(target: Target, since_seconds: int | None = None, previous: bool = True,
              workers: int = 8) -> list[str]:
    """Every watcher Pod's log lines (and its previous container's, after a restart), read
    through the API concurrently. Raises LabError when no watcher Pod runs in ``namespace``."""
    from kubernetes.client.exceptions import ApiException

    namespace = target.namespace
    core = kube.core(target)
    pods = watcher_pods(target)
    if not pods:
        raise LabError(f"no watcher Pods ({SELECTOR}) in namespace {namespace}",
                       hint="deploy the watcher: kubectl apply -f manifests/05-watcher/ (lab deploy does), or "
                            "lab.ops.eventlog.deploy_watcher(target) for another namespace")
    jobs = []
    for pod in pods:
        state = next((s for s in pod.status.container_statuses or [] if s.name == CONTAINER), None)
        if state is None:
            continue
        jobs.append((pod.metadata.name, False))
        if previous and (state.restart_count or 0) > 0:
            jobs.append((pod.metadata.name, True))

    def fetch(job) -> list[str]:
        name, prev = job
        kwargs = {"container": CONTAINER, "previous": prev, "_preload_content": False,
                  "_request_timeout": (10, 120)}
        if since_seconds:
            kwargs["since_seconds"] = int(since_seconds)
        try:
            response = core.read_namespaced_pod_log(name, namespace, **kwargs)
        except ApiException as error:
            if error.status in (400, 404):  # not started yet, gone, or no previous container
                return []
            raise
        return response.data.decode("utf-8", errors="replace").splitlines()

    if not jobs:
        return []
    with timing.measure(timing.LAB), ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        return [line for lines in pool.map(fetch, jobs) for line in lines]


def load_events(target: Target | None, since: str | None = None, lines: Iterable[str] | None = None,
                fill_gaps: bool = True) -> pd.DataFrame:
    """The watcher's lines as a tidy, deduplicated DataFrame (see ``parse_lines``).

    ``lines`` defaults to ``read_logs(target)`` (pass ``target=None`` with ``lines``); ``since`` (``10m``, an RFC 3339 time) keeps
    only newer rows and asks the API for no older log lines.
    """
    cutoff = parse_since(since)
    if lines is None:
        since_seconds = None
        if cutoff is not None:
            since_seconds = max(1, int((pd.Timestamp.now(tz="UTC") - cutoff).total_seconds()) + 1)
        lines = read_logs(target, since_seconds=since_seconds)
    global _last_load
    key = (tuple(lines), cutoff, fill_gaps)
    if _last_load is not None and _last_load[0] == key:
        return _last_load[1].copy()
    events = parse_lines(key[0])
    if fill_gaps:
        events = fill_restart_gaps(events)
    events = dedupe(events)
    if cutoff is not None:
        events = events[events["time"] >= cutoff].reset_index(drop=True)
    _last_load = (key, events)
    return events.copy()


# The last lines parsed and their frame: checkpoints read the logs again right after a cell did,
# and when no line was written in between, parsing them again (tens of milliseconds of pandas,
# mostly fixed costs) would give the same frame.
_last_load: tuple[tuple, pd.DataFrame] | None = None


class LogFollower:
    """Stream every watcher Pod's log in a namespace as it is written, into ``lines``.

    Unlike ``read_logs`` it keeps the lines of watcher Pods that are deleted meanwhile. New Pods
    and restarted containers are picked up by polling every ``poll_s`` seconds. Use as a context
    manager, or ``start()`` / ``stop()``.
    """

    def __init__(self, target: Target, poll_s: float = 0.5):
        self.target, self.namespace, self.poll_s = target, target.namespace, poll_s
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._followed: set[tuple[str, int]] = set()
        self._responses: list = []
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []

    @property
    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def start(self) -> "LogFollower":
        thread = threading.Thread(target=self._poll, name="watch-log-poll", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        with self._lock:
            responses = list(self._responses)
        for response in responses:
            abort_stream(response)
        for thread in list(self._threads):
            thread.join(timeout)

    def __enter__(self) -> "LogFollower":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _poll(self) -> None:
        core = kube.core(self.target)
        while not self._stop.is_set():
            try:
                pods = core.list_namespaced_pod(self.namespace, label_selector=SELECTOR).items
            except Exception as error:  # noqa: BLE001 - keep polling through API hiccups
                self.errors.append(f"list: {error}")
                pods = []
            for pod in pods:
                state = next((s for s in pod.status.container_statuses or [] if s.name == CONTAINER), None)
                if state is None or (state.state.running is None and state.state.terminated is None):
                    continue
                key = (pod.metadata.uid, state.restart_count or 0)
                if key in self._followed:
                    continue
                self._followed.add(key)
                thread = threading.Thread(target=self._follow, args=(core, pod.metadata.name),
                                          name=f"watch-log-{pod.metadata.name}", daemon=True)
                thread.start()
                self._threads.append(thread)
            self._stop.wait(self.poll_s)

    def _follow(self, core, name: str) -> None:
        pending = b""
        try:
            response = core.read_namespaced_pod_log(name, self.namespace, container=CONTAINER, follow=True,
                                                    _preload_content=False)
            with self._lock:
                self._responses.append(response)
            for chunk in response.stream(None, decode_content=False):
                pending += chunk
                if b"\n" in pending:
                    *complete, pending = pending.split(b"\n")
                    with self._lock:
                        self._lines.extend(line.decode("utf-8", errors="replace") for line in complete)
        except Exception as error:  # noqa: BLE001 - the Pod went away or stop() closed the stream
            if not self._stop.is_set():
                self.errors.append(f"{name}: {type(error).__name__}: {error}")
        if pending.strip():
            with self._lock:
                self._lines.append(pending.decode("utf-8", errors="replace"))


def abort_stream(response) -> None:
    """End a streaming response that another thread is reading.

    ``close()`` alone can block on a TLS socket until the reader's next chunk arrives; shutting
    the socket down first makes the reader's ``recv`` return at once.
    """
    import socket

    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    try:
        response.close()
    except Exception:  # noqa: BLE001 - the reader may be closing it at the same time
        pass


# ------------------------------------------------------------------- deploying the watcher


def ensure_image(mode: str = "auto", load_into: Target | None = None, implementation: str = "python") -> str:
    """Build the lab images the mode needs (the watchers among them) and load one watcher into
    `load_into`'s kind cluster."""
    image = IMPLEMENTATIONS[implementation]
    images.build(mode)
    if load_into is not None:
        kind.load_images(load_into, [image])
    return image


def watcher_objects(namespace: str, image: str | None = None, env: dict[str, str] | None = None,
                    implementation: str = "python") -> list[dict]:
    """The watcher's ServiceAccount, Role, RoleBinding and DaemonSet for ``namespace``, rendered
    from the chart's defaults (``helm template``) for ``implementation`` (python or go), with extra
    environment variables for its container."""
    if implementation not in IMPLEMENTATIONS:
        raise LabError(f"unknown watcher implementation {implementation!r}",
                       hint=f"use one of: {', '.join(IMPLEMENTATIONS)}")
    image_value = "watcher.go.image" if implementation == "go" else "watcher.daemonset.image"
    cmd = ["template", "k8s-lab", str(config.REPO_ROOT / "chart"), "--namespace", namespace,
           "--set", f"watcher.implementation={implementation}",
           "--set", f"{image_value}={image or IMPLEMENTATIONS[implementation]}"]
    for template in CHART_TEMPLATES:
        cmd += ["--show-only", template]
    proc = tools.run("helm", *cmd, timeout=120, what="helm template of the watcher",
                     hint="check chart/templates/watcher/ with `helm lint chart`")
    objects = [d for d in yamldoc.load_all(proc.stdout) if d]
    for obj in objects:
        if obj.get("kind") != "DaemonSet" or not env:
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            if container["name"] != CONTAINER:
                continue
            current = [e for e in container.get("env") or [] if e["name"] not in env]
            container["env"] = current + [{"name": k, "value": str(v)} for k, v in env.items()]
    return objects


def deploy_watcher(target: Target, image: str | None = None, env: dict[str, str] | None = None,
                   wait: bool = True, timeout: int = 120, implementation: str = "python") -> list[dict]:
    """Apply the watcher (RBAC + DaemonSet) to `target`'s existing namespace; wait for its rollout."""
    import yaml

    namespace = target.namespace
    objects = watcher_objects(namespace, image=image, env=env, implementation=implementation)
    kube.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(objects), target=target)
    if wait:
        kube.kubectl("-n", namespace, "rollout", "status", f"daemonset/{DAEMONSET}", f"--timeout={timeout}s",
                     timeout=timeout + 30, target=target)
    return objects


def remove_watcher(target: Target, wait: bool = True) -> None:
    """Delete what ``deploy_watcher`` applied (not the namespace)."""
    kube.kubectl("-n", target.namespace, "delete", "--ignore-not-found", f"--wait={'true' if wait else 'false'}",
                 f"daemonset/{DAEMONSET}", "rolebinding/watcher-pod-reader", "role/watcher-pod-reader",
                 "serviceaccount/watcher", target=target)


def to_csv(events: pd.DataFrame, path) -> None:
    """Write events to CSV: times in RFC 3339, the conditions as JSON."""
    out = events.copy()
    out["conditions"] = [json.dumps(c, separators=(",", ":")) if isinstance(c, list) else "" for c in out["conditions"]]
    out.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
