"""Answers that never change for their key, remembered in the lab cache across processes.

What a binary reports as its version, which Go toolchain a `go` is, where a module version sits in
Go's module cache, which image a kind node runs: each costs a process start-up to ask, and every
notebook kernel and `lab` command asked again. The key carries whatever would change the answer
(a binary's path, size and modification time; a node's UID). A missing or unreadable memo only
costs the question; None answers are not remembered.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from lab import config


def _file(name: str) -> Path:
    return config.cache_dir() / f"{name}.json"


def recall(name: str, keys: Iterable[str], ask: Callable[[list[str]], dict[str, Any]],
           valid: Callable[[Any], bool] = lambda answer: True) -> dict[str, Any]:
    """The answers for ``keys`` from memo ``name``, asking ``ask(unknown keys)`` (one call, for
    all of them) for the ones it does not hold yet, or holds but ``valid`` no longer accepts."""
    keys = list(keys)
    try:
        memo = json.loads(_file(name).read_text())
    except (OSError, ValueError):
        memo = {}
    unknown = [k for k in keys if k not in memo or not valid(memo[k])]
    if unknown:
        answers = {k: v for k, v in ask(unknown).items() if v is not None}
        if answers:
            memo.update(answers)
            _write(_file(name), memo)
    return {k: memo[k] for k in keys if k in memo}


def recall_one(name: str, key: str, ask: Callable[[], Any], valid: Callable[[Any], bool] = lambda answer: True) -> Any:
    return recall(name, [key], lambda unknown: {key: ask()}, valid).get(key)


def file_key(path: str | os.PathLike) -> str | None:
    """A binary's key: its real path, size and modification time (None when it is not there)."""
    real = Path(path).resolve()
    try:
        stat = real.stat()
    except OSError:
        return None
    return f"{real}:{stat.st_size}:{stat.st_mtime_ns}"


def _write(path: Path, memo: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(memo))
        os.replace(partial, path)  # whole or not at all, whoever writes last
    except OSError:
        pass  # a read-only cache only costs the next caller the same question
