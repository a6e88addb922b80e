"""Progress output for slow steps: one line when a step starts, one when it ends, with seconds."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console

console = Console(stderr=True, highlight=False)


@contextmanager
def step(what: str) -> Iterator[None]:
    console.print(f"[cyan]…[/] {what}")
    start = time.monotonic()
    try:
        yield
    except BaseException:
        console.print(f"[red]✗[/] {what} [dim]({time.monotonic() - start:.1f}s)[/]")
        raise
    console.print(f"[green]✓[/] {what} [dim]({time.monotonic() - start:.1f}s)[/]")


def info(message: str) -> None:
    console.print(f"  {message}")
