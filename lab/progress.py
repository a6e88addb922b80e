"""The lab's one progress channel for every slow step: builds, waits, rollouts, dumps.

In a terminal a step is a live line (a spinner, the step, its latest detail and the elapsed time)
that ends as one ✓ or ✗ line. Elsewhere (a notebook, a log, CI) it is plain text with no terminal
codes: one line when the step starts, a detail line at most every ``DETAIL_EVERY_S`` seconds, one
line when it ends. Nested steps are indented under the step that holds them.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape

from lab import timing

DETAIL_EVERY_S = 15.0

console = Console(stderr=True, highlight=False)
_depth = threading.local()


def _in_notebook() -> bool:
    return "ipykernel" in sys.modules


def _level() -> int:
    return getattr(_depth, "value", 0)


def _plain(message: str) -> None:
    # Notebooks show stdout as ordinary output; stderr would paint every line as a warning.
    stream = sys.stdout if _in_notebook() else sys.stderr
    print(message, file=stream, flush=True)


def _live() -> bool:
    return console.is_terminal and not _in_notebook() and not console.quiet


class Step:
    """A running step; ``update`` shows what it is doing now (a package, "2/3 ready")."""

    def __init__(self, what: str):
        self.what = what
        self.started = time.monotonic()
        self.detail = ""
        self._status = None
        self._shown_at = self.started

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, detail: str) -> None:
        if detail == self.detail:
            return
        self.detail = detail
        if self._status is not None:
            self._status.update(self._line())
        elif not console.quiet and not _live() and time.monotonic() - self._shown_at >= DETAIL_EVERY_S:
            self._shown_at = time.monotonic()
            _plain(f"{self._indent()}  … {detail} ({self.elapsed:.0f}s)")

    @contextmanager
    def following(self, describe: Callable[[], str | None], every: float = 3.0) -> Iterator[None]:
        """While the block runs (a command that prints nothing while it waits), show `describe()`
        every `every` seconds."""
        done = threading.Event()

        def poll() -> None:
            while not done.wait(every):
                try:
                    detail = describe()
                except Exception:  # noqa: BLE001 - progress must never break the step it follows
                    continue
                if detail:
                    self.update(detail)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            with timing.measure(timing.WAIT):
                yield
        finally:
            done.set()
            poller.join()

    def _indent(self) -> str:
        return "  " * (_level() - 1)

    def _line(self) -> str:
        detail = f" [dim]{escape(self.detail)}[/]" if self.detail else ""
        return f"{escape(self.what)}{detail}"


@contextmanager
def step(what: str) -> Iterator[Step]:
    current = Step(what)
    _depth.value = _level() + 1
    live = _live() and _level() == 1
    try:
        if live:
            with console.status(current._line()) as status:
                current._status = status
                yield current
        else:
            # Under a live line a nested step shows only its end, printed above that line.
            if not console.quiet and not _live():
                _plain(f"{current._indent()}… {what}")
            yield current
    except BaseException:
        _end(current, ok=False)
        raise
    else:
        _end(current, ok=True)
    finally:
        _depth.value = _level() - 1


def _end(current: Step, ok: bool) -> None:
    if console.quiet:
        return
    mark = "✓" if ok else "✗"
    if _live():
        colour = "green" if ok else "red"
        console.print(f"{current._indent()}[{colour}]{mark}[/] {escape(current.what)} "
                      f"[dim]({current.elapsed:.1f}s)[/]")
    else:
        _plain(f"{current._indent()}{mark} {current.what} ({current.elapsed:.1f}s)")


def info(message: str) -> None:
    if console.quiet:
        return
    if _live():
        console.print(f"  {escape(message)}")
    else:
        _plain(f"  {message}")


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the channel for a block whose steps the caller reports its own way."""
    before = console.quiet
    console.quiet = True
    try:
        yield
    finally:
        console.quiet = before
