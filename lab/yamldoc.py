"""YAML read with libyaml's C parser when PyYAML was built with it (pure Python otherwise).

Checkpoints parse a student's files and the chart's rendered documents on every run; the pure
Python parser took about 130 ms for the chart's two dozen documents, the C one a tenth of that.
Safe loading either way: plain data, no Python objects.
"""
from __future__ import annotations

from typing import Any, Iterator

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> Any:
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, C or Python


def load_all(text: str) -> Iterator[Any]:
    return yaml.load_all(text, Loader=_LOADER)  # noqa: S506 - a safe loader, C or Python
