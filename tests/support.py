"""Helpers the cluster tests share: the lab's own kubectl, helm and `lab` command, and progress
lines. Not a test module (pytest collects only test_*.py); importable because pyproject puts the
repository root on pytest's path.

A failing command fails the test with its output and without a Python traceback: the command and
what it printed are the whole story.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import pytest

from lab import config, deploy, kube


def say(message: str) -> None:
    """A progress line on stderr (shown with `pytest -s`), named after the running test."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0].rsplit("/", 1)[-1]
    print(f"[{test}] {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], *, stdin: str | None = None, check: bool = True,
        timeout: float = 240) -> subprocess.CompletedProcess:
    shown = " ".join([Path(str(cmd[0])).name, *map(str, cmd[1:6])])
    result = kube.run(cmd, what=shown, stdin=stdin, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"{shown} ... failed ({result.returncode}):\n{result.stderr}{result.stdout}", pytrace=False)
    return result


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 180):
    """The lab's kubectl against the lab's context."""
    return run(deploy.kubectl_cmd(*args), stdin=stdin, check=check, timeout=timeout)


def helm(*args: str, check: bool = True, timeout: float = 600):
    """The lab's helm against the lab's context."""
    return run(deploy.helm_cmd(*args), check=check, timeout=timeout)


def lab_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The `lab` command as a student runs it, in a wide terminal so that tables do not wrap."""
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, COLUMNS="200"), cwd=config.REPO_ROOT)


def ensure_images(mode: str) -> None:
    """The lab's own images for ``mode`` in the cluster's nodes (built and loaded when missing)."""
    from lab import images

    mode = images.resolve_mode(mode)
    local = sorted({r for r in images.image_names(mode).values() if r.startswith("k8s-lab/")})
    if deploy.missing_images(local):
        say(f"loading the lab images into the cluster (lab images build, {mode})")
        images.build(mode=mode, load=True)


@contextlib.contextmanager
def deployed(method: str, mode: str):
    """The lab system installed afresh with ``method`` ("helm" or "manifests"), waited for, and
    removed (host files kept) afterwards; yields lab.deploy's result."""
    kube.forget()
    ensure_images(mode)
    if deploy.installed_method() is not None:
        deploy.undeploy()
    result = deploy.deploy(method, mode=mode, wait=True)
    say(f"lab deploy --{method}: {result.seconds:.1f}s ({result.mode} images)")
    try:
        yield result
    finally:
        start = time.monotonic()
        deploy.undeploy()
        say(f"undeploy: {time.monotonic() - start:.1f}s")
