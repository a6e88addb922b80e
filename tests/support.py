"""Helpers the cluster tests share: the lab's own kubectl, helm and `lab` command, and progress
lines. Not a test module (pytest collects only test_*.py); importable because pyproject puts the
repository root on pytest's path.

A failing command fails the test with its output and without a Python traceback: the command and
what it printed are the whole story.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import pytest

from lab import config, runner
from lab.cluster import kind, kube
from lab.host import tools
from lab.ops import eventlog
from lab.system import deploy
from lab.target import Target


def say(message: str) -> None:
    """A progress line on stderr (shown with `pytest -s`), named after the running test."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0].rsplit("/", 1)[-1]
    print(f"[{test}] {message}", file=sys.stderr, flush=True)


# The cluster under test: the lab's own, or the one LAB_CLUSTER names.
TARGET = Target.of()


def run(cmd: Sequence[str], *, stdin: str | None = None, check: bool = True,
        timeout: float = 240) -> runner.Result:
    shown = " ".join([Path(str(cmd[0])).name, *map(str, cmd[1:6])])
    result = runner.run(cmd, what=shown, input=stdin, timeout=timeout, check=False, env=tools.env_with_tools())
    if check and result.returncode != 0:
        pytest.fail(f"{shown} ... failed ({result.returncode}):\n{result.stderr}{result.stdout}", pytrace=False)
    return result


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 180):
    """The lab's kubectl against the lab's context."""
    return run(deploy.kubectl_cmd(TARGET, *args), stdin=stdin, check=check, timeout=timeout)


def helm(*args: str, check: bool = True, timeout: float = 600):
    """The lab's helm against the lab's context."""
    return run(deploy.helm_cmd(TARGET, *args), check=check, timeout=timeout)


def lab_cli(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> runner.Result:
    """The `lab` command as a student runs it (output piped, as in `lab events | grep`)."""
    return runner.run([sys.executable, "-m", "lab.cli", *args], timeout=timeout, check=False,
                      env={**os.environ, **(env or {})}, cwd=config.REPO_ROOT)


def watcher_state_problems(namespace: str, lines: list[str], uids: set[str], label: str) -> list[str]:
    """What a pod watcher's lines get wrong about the Pods labelled ``test=<label>`` compared with
    a list (empty: nothing): a Pod never logged, logged as deleted but listed, logged at another
    resourceVersion than listed, or gone without a deletion line."""
    events = eventlog.dedupe(eventlog.fill_restart_gaps(eventlog.parse_lines(lines)))
    rows = eventlog.pod_events(events)
    rows = rows[rows["uid"].isin(list(uids))]
    last = rows.groupby("uid", sort=False).tail(1).set_index("uid")
    gone = eventlog.is_deletion(last)
    listed = {p.metadata.uid: p for p in kube.core(TARGET).list_namespaced_pod(namespace, label_selector=f"test={label}").items}
    problems = []
    for uid in sorted(uids):
        if uid not in last.index:
            problems.append(f"{uid}: never logged")
        elif uid in listed:
            pod = listed[uid]
            if gone[uid]:
                problems.append(f"{pod.metadata.name}: logged as deleted but listed")
            elif last.loc[uid, "resource_version"] != pod.metadata.resource_version:
                problems.append(f"{pod.metadata.name}: logged at {last.loc[uid, 'resource_version']}, "
                                f"listed at {pod.metadata.resource_version}")
        elif not gone[uid]:
            problems.append(f"{last.loc[uid, 'pod']}: deleted, last logged {last.loc[uid, 'type']}")
    return problems


def ensure_images(mode: str) -> None:
    """The lab's own images for ``mode`` in the cluster's nodes (built and loaded when missing)."""
    from lab.build import images

    mode = images.resolve_mode(mode)
    local = sorted({r for r in images.image_names(mode).values() if r.startswith("k8s-lab/")})
    if deploy.missing_images(TARGET, local):
        say(f"loading the lab images into the cluster (lab images build, {mode})")
        images.build(mode)
        kind.load_images(TARGET, images.to_load(mode))


@contextlib.contextmanager
def deployed(method: str, mode: str):
    """The lab system installed afresh with ``method`` ("helm" or "manifests"), waited for, and
    removed (host files kept) afterwards; yields lab.system.deploy's result."""
    ensure_images(mode)
    if deploy.installed_method(TARGET) is not None:
        deploy.undeploy(TARGET)
    result = deploy.deploy(TARGET, method, mode=mode, wait=True)
    say(f"lab deploy --{method}: {result.seconds:.1f}s ({result.mode} images)")
    try:
        yield result
    finally:
        start = time.monotonic()
        deploy.undeploy(TARGET)
        say(f"undeploy: {time.monotonic() - start:.1f}s")


def graded_notebook(cells: Sequence[str]):
    """A minimal notebook as the lab's own start: the parameters cell (cluster, namespace,
    solutions) and the checks' setup, then ``cells``; what grading tests and benches submit."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('cluster = "k8s-lab"\nnamespace = "k8s-assignment"\nsolutions = True')
    params.metadata["tags"] = ["parameters"]
    setup = nbformat.v4.new_code_cell("from lab import checks\nfrom lab.cluster import kube\nfrom lab.target import Target\n"
                                      "context = f'kind-{cluster}'\ntarget = Target(cluster, namespace)\n"
                                      "checks.configure(namespace=namespace, context=context)")
    nb.cells = [params, setup, *map(nbformat.v4.new_code_cell, cells)]
    return nb
