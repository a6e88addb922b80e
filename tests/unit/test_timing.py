"""Where a notebook's time goes (issue 11, item 5): the kernel's books and `lab run`'s report."""
from __future__ import annotations

import json
import time

import pytest

from lab import execute, timing


@pytest.fixture
def books(monkeypatch):
    monkeypatch.setattr(timing, "spent", {timing.WAIT: 0.0, timing.LAB: 0.0})
    monkeypatch.setattr(timing, "checkpoint_ms", [])
    monkeypatch.setattr(timing, "_last_mark", None)
    monkeypatch.setattr(timing, "by_what", {})
    return timing.spent


def test_a_wait_counts_as_waiting_even_around_the_lab_s_own_calls(books):
    with timing.measure(timing.LAB):
        time.sleep(0.05)  # the lab's own work
        with timing.measure(timing.WAIT):
            time.sleep(0.05)
            with timing.measure(timing.LAB):  # an API call made by a poll is still waiting
                time.sleep(0.05)
        time.sleep(0.05)
    time.sleep(0.05)  # outside any measure: neither
    assert books[timing.WAIT] == pytest.approx(0.10, abs=0.03)
    assert books[timing.LAB] == pytest.approx(0.10, abs=0.03)


@pytest.mark.parametrize("argv, waits", [
    (["kubectl", "--context", "kind-x", "-n", "ns", "rollout", "status", "deploy/web"], True),
    (["kubectl", "--context", "kind-x", "wait", "--for=condition=Ready", "pod/a"], True),
    (["helm", "upgrade", "--install", "k8s-lab", "chart", "--wait", "--timeout", "300s"], True),
    (["kubectl", "--context", "kind-x", "apply", "-f", "-"], False),
    (["kubectl", "--context", "kind-x", "-n", "ns", "delete", "pod", "web-1"], True),  # waits by default
    (["kubectl", "--context", "kind-x", "delete", "pod", "web-1", "--wait=false"], False),
    (["helm", "upgrade", "k8s-lab", "chart", "--wait=false"], False),
    (["helm", "history", "k8s-lab"], False),
    (["kubectl", "--context", "kind-x", "get", "pods", "-o", "json"], False),
    (["/cache/bin/kind", "create", "cluster", "--name", "k8s-lab", "--config", "-"], True),
    (["kind", "delete", "cluster", "--name", "k8s-lab"], True),
    (["kind", "load", "docker-image", "--name", "k8s-lab", "k8s-lab/web:1"], True),
    (["kind", "get", "kubeconfig", "--name", "k8s-lab"], False),
    (["kind", "version"], False),
])
def test_commands_that_wait_on_the_cluster_are_told_apart(argv, waits):
    assert timing.waits(argv) is waits


@pytest.mark.parametrize("argv, name", [
    (["/cache/bin/kubectl", "--context", "kind-x", "-n", "ns", "exec", "-i", "database-0", "--", "mysql"], "kubectl exec"),
    (["kubectl", "--context", "kind-x", "rollout", "status", "deploy/web"], "kubectl rollout status"),
    (["helm", "template", "k8s-lab", "chart"], "helm template"),
    (["kind", "load", "docker-image", "--name", "k8s-lab"], "kind load docker-image"),
    (["gzip", "-t", "/tmp/x.gz"], "gzip /tmp/x.gz"),
])
def test_a_command_is_tallied_by_program_and_subcommand(argv, name):
    assert timing.command_name(argv) == name


def test_the_tally_says_what_the_time_went_to(books):
    for _ in range(3):
        with timing.command(["helm", "lint", "chart"]):
            time.sleep(0.02)
    with timing.tally("SQL"):
        time.sleep(0.05)
    with timing.measure(timing.WAIT), timing.command(["kubectl", "get", "pods"]):
        time.sleep(0.08)  # a poll's command: waiting, none of it the lab's own
    assert timing.by_what["helm lint"][0] == 3 and timing.by_what["helm lint"][1] >= 0.06
    assert timing.by_what["helm lint"][2] == timing.by_what["helm lint"][1]
    assert timing.by_what["kubectl get"][1] >= 0.08 and timing.by_what["kubectl get"][2] == 0
    assert list(timing.totals()["by_what"]) == ["helm lint", "SQL", "kubectl get"]  # the most own time first
    assert books[timing.LAB] >= 0.11


def test_the_books_reach_the_file_lab_run_names(books, tmp_path, monkeypatch):
    ledger = tmp_path / "t.json"
    monkeypatch.setenv(timing.TIMING_FILE_ENV, str(ledger))
    with timing.checkpoint():
        time.sleep(0.02)
    data = json.loads(ledger.read_text())
    assert data["checkpoints"] == 1 and data["checkpoint_ms_max"] >= 20 and data[timing.LAB] >= 0.02


def test_lab_run_splits_each_notebook_s_time(make_notebook, tmp_path):
    """A real kernel: a poll that waits about a second, a command of the lab, a checkpoint."""
    make_notebook("01-timed.ipynb", [
        "import time\nfrom lab import checks, runner\nfrom lab.cluster import kube",
        "began = time.monotonic()\nkube.wait_until(lambda: time.monotonic() - began > 1, interval=0.1)",
        "runner.run(['sleep', '0.5'])",
        "checks.checkpoint('demo.quick', 1, lambda: (True, 'fine'))",
        "time.sleep(0.7)  # the notebook's own code",
    ])
    report = execute.run(notebooks_dir=make_notebook.dir, out_dir=tmp_path / "out")
    assert report.ok, report.results
    split = report.results[0].time_split
    assert split[timing.WAIT] == pytest.approx(1.0, abs=0.3)
    assert split[timing.LAB] >= 0.5
    assert split["other_s"] >= 0.7
    assert split["kernel_s"] > 0
    assert split["checkpoints"] == 1 and split["checkpoint_ms_max"] > 0
    total = split["kernel_s"] + split[timing.WAIT] + split[timing.LAB] + split["other_s"]
    assert total == pytest.approx(report.results[0].duration_s, abs=0.01)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Where the time went" in md and "| 01-timed.ipynb |" in md.split("## Where the time went")[1]
    assert split["by_what"]["sleep 0.5"][0] == 1 and "| `sleep 0.5` | 1 | 0.5 | 0.5 |" in md
