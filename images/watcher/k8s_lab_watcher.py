#!/usr/bin/env python3
"""k8s-lab pod watcher: one JSON line on stdout for every change of a Pod on this node.

Runs as a DaemonSet (one replica per node). It lists the Pods once, prints them as ``SNAPSHOT``
lines, then watches from the list's resourceVersion and prints ``ADDED`` / ``MODIFIED`` /
``DELETED`` lines. When the watch's resourceVersion is too old (410 Gone / "Expired") it lists
again and prints a ``RESYNC`` line, with ``change`` ADDED / MODIFIED / DELETED, for every Pod that
changed while it was not watching (a diff of the new list against the last state it printed per
uid), then watches on from the new list. Bookmarks keep its resourceVersion fresh; errors are
retried with exponential backoff; SIGTERM ends it cleanly with a final ``WATCHER`` line.

Pod lines (keys in this order; absent values are null):
  time               when the watcher saw the change, RFC 3339 UTC with milliseconds
  type               ADDED | MODIFIED | DELETED | SNAPSHOT | RESYNC
  change             for RESYNC: ADDED | MODIFIED | DELETED (what the re-list revealed); else null
  namespace, pod, uid, phase, node, pod_ip
  conditions         [{"type", "status", "last_transition_time"}, ...]
  resource_version   the Pod's; for a RESYNC DELETED the re-list's (the Pod's last is unknown)
  created            metadata.creationTimestamp;  deleting: metadata.deletionTimestamp
  watcher_node, watcher, session   node and Pod of this watcher, random id of this process
Status lines have ``"type": "WATCHER"`` and a ``status``: started, snapshot, expired, relisted,
error, stopped (with counters).

Configuration (flags override the environment):
  NODE_NAME                  watch only Pods with spec.nodeName=NODE_NAME (empty: every node)
  WATCH_NAMESPACE            namespace to watch; "*" for all namespaces (needs a ClusterRole);
                             default: the ServiceAccount's own namespace, matching the
                             namespaced Role the lab ships
  POD_NAME                   this watcher's Pod (goes into every line)
  WATCH_TIMEOUT_SECONDS      server-side timeout of one watch request (default 300)
  WATCH_BACKOFF_MAX_SECONDS  longest wait between retries after errors (default 30)
  WATCHER_TEST_STALE_RESOURCE_VERSION
                             testing only: resume every watch after the first from this
                             (e.g. "1", long compacted) instead of the latest resourceVersion,
                             which forces 410 Gone and a re-list each time
  WATCHER_TEST_RELIST_DELAY_SECONDS
                             testing only: wait this long after a 410 before re-listing, so
                             that changes fall into the re-list's diff (RESYNC lines)
  WATCHER_HEALTH_PORT        port of the liveness probe's GET /healthz (default 8081; 0: none).
                             It answers 503 once the loop has been stuck in one call longer
                             than any request or pause may take.
Works with the kubernetes client 22.6 (Debian bookworm) and newer (pip): it uses the client for
configuration and requests only, and reads the raw JSON itself (no model objects).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from datetime import datetime, timezone

EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "SNAPSHOT", "RESYNC")
STATUS_TYPE = "WATCHER"
ALL_NAMESPACES = "*"
SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
DEFAULT_TIMEOUT_S = 300
CONNECT_TIMEOUT_S = 10
READ_GRACE_S = 30  # a watch request's read timeout is its server timeout plus this
LIST_TIMEOUT_S = 60
LIST_PAGE = 500
BACKOFF_BASE_S = 0.5
DEFAULT_BACKOFF_MAX_S = 30.0
DEFAULT_HEALTH_PORT = 8081
RBAC_HINT = ("the watcher's ServiceAccount needs get, list and watch on pods (Role and RoleBinding "
             "watcher-pod-reader); the watcher retries with backoff")


class Expired(Exception):
    """The resourceVersion to watch from is gone (HTTP 410 or an ERROR event with code 410)."""


class Stop(BaseException):
    """SIGTERM/SIGINT arrived while waiting on the network or sleeping."""


# --------------------------------------------------------------------------------- pure parts


def rfc3339_ms(t: float | None = None) -> str:
    """UTC time as 2024-05-01T12:00:00.123Z."""
    stamp = datetime.fromtimestamp(time.time() if t is None else t, timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def summarize(pod: dict) -> dict:
    """The fields a line carries, from a Pod as the API returns it (JSON, camelCase)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    return {
        "namespace": meta.get("namespace"),
        "pod": meta.get("name"),
        "uid": meta.get("uid"),
        "phase": status.get("phase"),
        "node": spec.get("nodeName"),
        "pod_ip": status.get("podIP"),
        "conditions": [
            {"type": c.get("type"), "status": c.get("status"),
             "last_transition_time": c.get("lastTransitionTime")}
            for c in status.get("conditions") or ()
        ],
        "resource_version": meta.get("resourceVersion"),
        "created": meta.get("creationTimestamp"),
        "deleting": meta.get("deletionTimestamp"),
    }


def relist_diff(known: dict[str, dict], listed: list[dict], list_rv: str | None = None) -> list[tuple[str, dict]]:
    """What changed between the last state printed per uid and a fresh list.

    Returns ``(change, summary)`` pairs: ADDED for a uid not known before, MODIFIED for a known
    uid whose resourceVersion differs, DELETED (with the last known state, its resource_version
    set to ``list_rv``) for a known uid the list no longer has. Unchanged Pods give nothing.
    Listed Pods come first, in list order, then the deleted ones in the order they were known.
    """
    changes: list[tuple[str, dict]] = []
    seen = set()
    for pod in listed:
        uid = pod["uid"]
        seen.add(uid)
        before = known.get(uid)
        if before is None:
            changes.append(("ADDED", pod))
        elif before.get("resource_version") != pod.get("resource_version"):
            changes.append(("MODIFIED", pod))
    for uid, before in known.items():
        if uid not in seen:
            gone = dict(before)
            if list_rv is not None:
                gone["resource_version"] = list_rv
            changes.append(("DELETED", gone))
    return changes


def iter_lines(chunks):
    """Split a stream of byte chunks into non-blank lines, without the newline.

    A last line without its newline (the connection broke mid-event) is dropped: the watch
    resumes from the last complete event, so nothing is lost.
    """
    pending = b""
    for chunk in chunks:
        if not chunk:
            continue
        pending += chunk
        if b"\n" not in chunk:
            continue
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield line


class Backoff:
    """Exponential backoff with jitter: base, 2*base, 4*base ... up to cap, each in [d/2, d]."""

    def __init__(self, base: float = BACKOFF_BASE_S, cap: float = DEFAULT_BACKOFF_MAX_S, rng=None):
        self.base, self.cap = base, cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        delay = min(self.cap, self.base * (2 ** self.failures))
        self.failures += 1
        return self._rng.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.failures = 0


# ---------------------------------------------------------------------------------- the watcher


class Watcher:
    """List, then watch; re-list on 410; print a line per change. ``api`` is a CoreV1Api."""

    def __init__(self, api, namespace: str, node: str | None = None, pod_name: str | None = None,
                 timeout_s: int = DEFAULT_TIMEOUT_S, backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
                 stale_rv: str | None = None, relist_delay_s: float = 0.0, out=None, sleep=time.sleep):
        self.api = api
        self.namespace = namespace
        self.node = node or None
        self.pod_name = pod_name or None
        self.timeout_s = int(timeout_s)
        self.stale_rv = stale_rv or None
        self.relist_delay_s = float(relist_delay_s or 0)
        self.out = out if out is not None else sys.stdout
        self.backoff = Backoff(cap=backoff_max_s)
        self._sleep = sleep
        self.session = "%08x" % random.getrandbits(32)
        self.known: dict[str, dict] = {}  # uid -> the last state printed
        self.rv: str | None = None
        self.snapshot_done = False
        self.stopping = False
        self.stop_reason = None
        self._interruptible = False
        self.counts = {t: 0 for t in EVENT_TYPES}
        self.counts.update(bookmarks=0, expired=0, errors=0, watches=0, duplicates=0)
        self.progress_at = time.monotonic()  # when the loop last entered or left a blocking call

    # -- output

    def _write(self, record: dict) -> None:
        self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.out.flush()

    def emit(self, kind: str, pod: dict, change: str | None = None) -> None:
        record = {"time": rfc3339_ms(), "type": kind, "change": change}
        record.update(pod)
        record.update(watcher_node=self.node, watcher=self.pod_name, session=self.session)
        self._write(record)
        self.counts[kind] += 1

    def status(self, status: str, **fields) -> None:
        record = {"time": rfc3339_ms(), "type": STATUS_TYPE, "status": status}
        record.update(fields)
        record.update(watcher_node=self.node, watcher=self.pod_name, session=self.session)
        self._write(record)

    # -- requests

    def _selector_kwargs(self) -> dict:
        return {"field_selector": f"spec.nodeName={self.node}"} if self.node else {}

    def _list_call(self, **kwargs):
        kwargs.update(self._selector_kwargs(), _preload_content=False)
        if self.namespace == ALL_NAMESPACES:
            return self.api.list_pod_for_all_namespaces(**kwargs)
        return self.api.list_namespaced_pod(self.namespace, **kwargs)

    def list_pods(self) -> tuple[str, list[dict]]:
        """All Pods in scope (paged) and the list's resourceVersion."""
        pods: list[dict] = []
        token, list_rv = None, None
        while True:
            kwargs = {"limit": LIST_PAGE, "_request_timeout": (CONNECT_TIMEOUT_S, LIST_TIMEOUT_S)}
            if token:
                kwargs["_continue"] = token
            response = self._blocking(self._list_call, **kwargs)
            try:
                body = json.loads(self._blocking(lambda: response.data))
            finally:
                response.release_conn()
            meta = body.get("metadata") or {}
            list_rv = list_rv or meta.get("resourceVersion")
            pods.extend(summarize(item) for item in body.get("items") or ())
            token = meta.get("continue")
            if not token:
                return list_rv, pods

    def watch_once(self, rv: str | None) -> None:
        """One watch request from ``rv`` until the server ends it; raises Expired on 410."""
        response = self._blocking(
            self._list_call, watch=True, allow_watch_bookmarks=True, resource_version=rv,
            timeout_seconds=self.timeout_s,
            _request_timeout=(CONNECT_TIMEOUT_S, self.timeout_s + READ_GRACE_S))
        self.counts["watches"] += 1
        try:
            for line in iter_lines(self._interruptible_iter(response.stream(None, decode_content=False))):
                self.handle(json.loads(line))
                if self.stopping:
                    raise Stop()
        finally:
            response.close()

    def handle(self, event: dict) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "BOOKMARK":
            self.rv = (obj.get("metadata") or {}).get("resourceVersion") or self.rv
            self.counts["bookmarks"] += 1
            return
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired(obj.get("message") or "resource version expired")
            raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('reason')}: {obj.get('message')}")
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        pod = summarize(obj)
        self.rv = pod["resource_version"] or self.rv
        uid = pod["uid"]
        before = self.known.get(uid)
        if before is not None and kind != "DELETED" and before["resource_version"] == pod["resource_version"]:
            self.counts["duplicates"] += 1  # already printed this state (never expected; cheap guard)
            return
        if kind == "DELETED":
            self.known.pop(uid, None)
        else:
            self.known[uid] = pod
        self.emit(kind, pod)

    # -- the loop

    def snapshot(self) -> None:
        list_rv, pods = self.list_pods()
        for pod in pods:
            self.known[pod["uid"]] = pod
            self.emit("SNAPSHOT", pod)
        self.rv = list_rv
        self.snapshot_done = True
        self.status("snapshot", pods=len(pods), resource_version=list_rv)

    def relist(self) -> None:
        list_rv, pods = self.list_pods()
        changes = relist_diff(self.known, pods, list_rv)
        for change, pod in changes:
            if change == "DELETED":
                self.known.pop(pod["uid"], None)
            else:
                self.known[pod["uid"]] = pod
            self.emit("RESYNC", pod, change=change)
        self.rv = list_rv
        self.status("relisted", pods=len(pods), changes=len(changes), resource_version=list_rv)

    def run(self) -> int:
        self.status("started", scope=self.namespace, implementation="python", timeout_s=self.timeout_s,
                    stale_resource_version=self.stale_rv, relist_delay_s=self.relist_delay_s or None)
        listed, fresh = False, True  # fresh: the next watch starts right after a list
        expiries_in_a_row = 0
        try:
            while not self.stopping:
                try:
                    if not listed:
                        self.relist() if self.snapshot_done else self.snapshot()
                        listed, fresh = True, True
                    start = self.rv if fresh or not self.stale_rv else self.stale_rv
                    fresh = False
                    self.watch_once(start)
                    self.backoff.reset()  # the server ended the watch: resume from self.rv
                    expiries_in_a_row = 0
                except Expired as error:
                    self.counts["expired"] += 1
                    expiries_in_a_row += 1
                    self.status("expired", detail=str(error), resource_version=self.rv)
                    listed = False
                    if expiries_in_a_row > 2:
                        self._pause(self.backoff.next())
                    elif self.relist_delay_s:
                        self._pause(self.relist_delay_s)
                except Stop:
                    raise
                except Exception as error:  # noqa: BLE001 - network, API, decoding: retry them all
                    if _http_status(error) == 410:
                        self.counts["expired"] += 1
                        self.status("expired", detail=f"HTTP 410: {_reason(error)}", resource_version=self.rv)
                        listed = False
                        continue
                    self.counts["errors"] += 1
                    delay = self.backoff.next()
                    hint = {"hint": RBAC_HINT} if _http_status(error) in (401, 403) else {}
                    self.status("error", detail=f"{type(error).__name__}: {_reason(error)}"[:500],
                                retry_in_s=round(delay, 3), **hint)
                    self._pause(delay)
        except Stop:
            pass
        self.status("stopped", reason=self.stop_reason, resource_version=self.rv,
                    pods_known=len(self.known), **self.counts)
        return 0

    # -- signals

    def request_stop(self, signum=None, frame=None) -> None:
        self.stopping = True
        self.stop_reason = signal.Signals(signum).name if signum else "requested"
        if self._interruptible:
            raise Stop()

    def _blocking(self, fn, *args, **kwargs):
        if self.stopping:
            raise Stop()
        self._interruptible = True
        self.progress_at = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            self._interruptible = False
            self.progress_at = time.monotonic()

    # -- health

    def stall_limit_s(self) -> float:
        """The longest one blocking call may take: a quiet watch, a list, or a backoff pause."""
        return self.timeout_s + READ_GRACE_S + LIST_TIMEOUT_S + self.backoff.cap

    def health(self, now: float | None = None) -> tuple[bool, dict]:
        stuck_s = (time.monotonic() if now is None else now) - self.progress_at
        healthy = stuck_s <= self.stall_limit_s()
        return healthy, {"status": "ok" if healthy else "stuck", "stuck_s": round(stuck_s, 1),
                         "synced": self.snapshot_done, "session": self.session, "pods_known": len(self.known)}

    def _interruptible_iter(self, iterator):
        iterator = iter(iterator)
        while True:
            try:
                chunk = self._blocking(next, iterator)
            except StopIteration:
                return
            yield chunk

    def _pause(self, seconds: float) -> None:
        self._blocking(self._sleep, seconds)


def _http_status(error: BaseException):
    return getattr(error, "status", None)


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    body = getattr(error, "body", None)
    try:  # the API's Status object says what is wrong in plain words (e.g. which permission is missing)
        message = json.loads(body).get("message") if isinstance(body, (str, bytes)) else None
    except (ValueError, AttributeError):
        message = None
    if message:
        return f"{reason}: {message}" if reason else message
    if reason or body:
        return f"{reason or ''} {(body or '')[:200] if isinstance(body, str) else ''}".strip()
    return str(error)


# -------------------------------------------------------------------------------------- main


def serve_health(watcher: Watcher, port: int):
    """GET /healthz for the liveness probe, from a daemon thread: 200 while the loop makes
    progress, 503 when it is stuck. API errors keep it healthy: the loop retries them itself."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            if self.path.split("?")[0] != "/healthz":
                self.send_error(404)
                return
            healthy, body = watcher.health()
            data = json.dumps(body).encode() + b"\n"
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # stdout carries the JSON lines only
            pass

    server = ThreadingHTTPServer(("", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server


def default_namespace() -> str:
    env = os.environ.get("WATCH_NAMESPACE", "").strip()
    if env:
        return env
    try:
        with open(SA_NAMESPACE_FILE) as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"


def core_api(context: str | None = None):
    """CoreV1Api from the in-cluster ServiceAccount, else from kubeconfig (for running on a host)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(context=context)
    return client.CoreV1Api()


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Print one JSON line per Pod change on this node.")
    parser.add_argument("--namespace", default=None, help='namespace to watch, "*" for all '
                        "(default: $WATCH_NAMESPACE, else the ServiceAccount's namespace)")
    parser.add_argument("--all-namespaces", action="store_true", help='same as --namespace "*"')
    parser.add_argument("--node", default=env("NODE_NAME", ""), help="only Pods on this node ($NODE_NAME)")
    parser.add_argument("--pod-name", default=env("POD_NAME", ""), help="this watcher's Pod ($POD_NAME)")
    parser.add_argument("--timeout-seconds", type=int,
                        default=int(env("WATCH_TIMEOUT_SECONDS", "") or DEFAULT_TIMEOUT_S))
    parser.add_argument("--backoff-max-seconds", type=float,
                        default=float(env("WATCH_BACKOFF_MAX_SECONDS", "") or DEFAULT_BACKOFF_MAX_S))
    parser.add_argument("--test-stale-resource-version",
                        default=env("WATCHER_TEST_STALE_RESOURCE_VERSION", "") or None,
                        help="testing: resume watches from this old resourceVersion (forces 410)")
    parser.add_argument("--test-relist-delay-seconds", type=float,
                        default=float(env("WATCHER_TEST_RELIST_DELAY_SECONDS", "") or 0),
                        help="testing: wait this long after a 410 before re-listing")
    parser.add_argument("--health-port", type=int,
                        default=int(env("WATCHER_HEALTH_PORT", "") or DEFAULT_HEALTH_PORT),
                        help="port of GET /healthz for the liveness probe (0: none)")
    parser.add_argument("--context", default=env("KUBE_CONTEXT", "") or None,
                        help="kubeconfig context when not running in a cluster")
    args = parser.parse_args(argv)
    args.namespace = ALL_NAMESPACES if args.all_namespaces else (args.namespace or default_namespace())
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    watcher = Watcher(None, args.namespace, node=args.node, pod_name=args.pod_name,
                      timeout_s=args.timeout_seconds, backoff_max_s=args.backoff_max_seconds,
                      stale_rv=args.test_stale_resource_version,
                      relist_delay_s=args.test_relist_delay_seconds)
    signal.signal(signal.SIGTERM, watcher.request_stop)
    signal.signal(signal.SIGINT, watcher.request_stop)
    if args.health_port:
        serve_health(watcher, args.health_port)
    try:
        watcher.api = watcher._blocking(core_api, args.context)
    except Stop:
        watcher.status("stopped", reason=watcher.stop_reason)
        return 0
    except Exception as error:  # noqa: BLE001 - no credentials: say so in the log and exit
        watcher.status("error", detail=f"cannot configure the API client: {type(error).__name__}: {error}")
        return 2
    return watcher.run()


if __name__ == "__main__":
    sys.exit(main())
