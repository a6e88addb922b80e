"""Where a notebook's time goes: waiting on the cluster, or the lab's own work.

Every lab function that waits on the cluster (a poll until ready, `kubectl rollout status`, `helm
--wait`, kind booting nodes or loading images, a probe matrix's connections and their timeouts)
runs inside ``measure(WAIT)``; every checkpoint, external command and Kubernetes API call
inside ``measure(LAB)``. Time under any active wait counts as waiting, even when a command or API
call runs inside it (a poll is waiting, however it polls); other time under a LAB measure is the
lab's own work; the rest of a cell (the student's code, plots, imports) is neither.

Beside the split, each external command (by program and subcommand: ``kubectl exec``, ``helm
template``), API call (by verb) and SQL request is tallied by what it was, its count and its
seconds, so a report can name what the lab's own time was spent on.

The books are kept per process, in the main thread only (a progress poller in a background thread
runs beside a wait and must not be counted twice). When ``LAB_TIMING_FILE`` names a file, as
`lab run` sets it for each notebook's kernel, the totals are written there whenever the outermost
measure ends, so a kernel that is shut down, or dies, still leaves its last numbers.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

WAIT = "cluster_wait_s"
LAB = "lab_s"
TIMING_FILE_ENV = "LAB_TIMING_FILE"

spent: dict[str, float] = {WAIT: 0.0, LAB: 0.0}
checkpoint_ms: list[float] = []
by_what: dict[str, list[float]] = {}  # what -> [count, seconds, of them the lab's own (under no wait)]
TOP = 15
_active: Counter = Counter()
_last_mark: float | None = None


def _book() -> None:
    """Give the time since the last mark to what is active now (a wait beats the lab's work)."""
    global _last_mark
    now = time.perf_counter()
    if _last_mark is not None:
        kind = WAIT if _active[WAIT] else LAB if _active[LAB] else None
        if kind:
            spent[kind] += now - _last_mark
    _last_mark = now


@contextmanager
def measure(kind: str) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _book()
    _active[kind] += 1
    try:
        yield
    finally:
        _book()
        _active[kind] -= 1
        if not +_active:
            _save()


@contextmanager
def _timed(kind: str, keep: Callable[[float], None]) -> Iterator[None]:
    """``measure(kind)``, and the block's seconds handed to ``keep`` (main thread only)."""
    began = time.perf_counter()
    with measure(kind):
        try:
            yield
        finally:
            if threading.current_thread() is threading.main_thread():
                keep(time.perf_counter() - began)


def checkpoint():
    """A checkpoint's verification: the lab's own work, and its duration kept for the report."""
    return _timed(LAB, lambda seconds: checkpoint_ms.append(seconds * 1000))


def waits(argv: Sequence[str]) -> bool:
    """Whether an external command waits on the cluster rather than doing work of its own: a
    waiting kubectl or helm (``kubectl delete`` waits for what it deletes to be gone unless told
    ``--wait=false``), and kind making, removing or loading nodes (booting containers and
    importing images is the cluster's work, which a plain script does just the same)."""
    args = [str(a) for a in argv[1:]]
    program = Path(str(argv[0])).name if argv else ""
    if program == "kind":
        return any(_subcommand(args, *words) for words in (("create", "cluster"), ("delete", "cluster"), ("load",)))
    if "--wait=false" in args:
        return False
    return ("--wait" in args or any(a.startswith("--wait=") for a in args)
            or _subcommand(args, "wait") or _subcommand(args, "rollout", "status")
            or (program == "kubectl" and _subcommand(args, "delete")))


def _subcommand(args: list[str], *words: str) -> bool:
    plain = [a for a in args if not a.startswith("-")]
    return any(plain[i:i + len(words)] == list(words) for i in range(len(plain)))


def tally(what: str, kind: str = LAB):
    """``measure(kind)``, and the elapsed time added to ``what``'s line in ``by_what``: to its
    seconds, and to its own seconds too when no wait holds it (then it is the lab's own work)."""
    own = kind == LAB and not _active[WAIT]

    def keep(seconds: float) -> None:
        line = by_what.setdefault(what, [0, 0.0, 0.0])
        line[0] += 1
        line[1] += seconds
        line[2] += seconds if own else 0.0

    return _timed(kind, keep)


# Options the lab puts before a subcommand, whose value is the next word.
_VALUED = frozenset({"--context", "--kube-context", "--kubeconfig", "-n", "--namespace"})


def command_name(argv: Sequence[str]) -> str:
    """A command as the tally names it: the program and its first one or two plain words."""
    plain, skip = [], False
    for arg in map(str, argv[1:]):
        if skip:
            skip = False
        elif arg in _VALUED:
            skip = True
        elif not arg.startswith("-"):
            plain.append(arg)
    program = Path(str(argv[0])).name if argv else "?"
    words = plain[:2] if program == "kind" or plain[:1] == ["rollout"] else plain[:1]
    return " ".join([program, *words])


def command(argv: Sequence[str]):
    return tally(command_name(argv), WAIT if waits(argv) else LAB)


def totals() -> dict:
    top = sorted(by_what.items(), key=lambda item: (-item[1][2], -item[1][1]))[:TOP]
    return {**{k: round(v, 3) for k, v in spent.items()}, "checkpoints": len(checkpoint_ms),
            "by_what": {what: [int(n), round(seconds, 3), round(own, 3)] for what, (n, seconds, own) in top},
            "checkpoint_ms_max": round(max(checkpoint_ms, default=0.0), 1),
            "checkpoint_ms_mean": round(sum(checkpoint_ms) / len(checkpoint_ms), 1) if checkpoint_ms else 0.0}


def _save() -> None:
    path = os.environ.get(TIMING_FILE_ENV)
    if path:
        try:
            Path(path).write_text(json.dumps(totals()))
        except OSError:
            pass  # the numbers are a report's extra, never a reason for a cell to fail
