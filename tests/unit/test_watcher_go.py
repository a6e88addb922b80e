"""The Go watcher's own tests (`go test` in images/watcher-go: the real client-go informer
against a scripted API: snapshot, watch events, 410 and re-list, resync, Forbidden).

`go test` needs Go (the offline kit does too); without it the test FAILS, it never skips.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from lab import config

GO_DIR = config.REPO_ROOT / "images" / "watcher-go"


def test_go_watcher_unit_tests_pass():
    go = shutil.which("go")
    if go is None:
        pytest.fail("`go` is not on PATH: the Go watcher's tests need it (as the offline kit does)", pytrace=False)
    env = dict(os.environ, GOWORK="off", GOFLAGS="-mod=mod", CGO_ENABLED="0")
    result = subprocess.run([go, "test", "-count=1", "./..."], cwd=GO_DIR, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout
