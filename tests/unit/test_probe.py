"""lab.ops.probe without a cluster: the probe script, its output, expectations, the engine's retries
(with a fake exec), the DataFrame, the heatmap, the report and the `lab probe` command."""
from __future__ import annotations

import io
import os
import re
import shlex
import socket
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from lab.ops import probe
from lab.errors import LabError
from lab.target import Target

TARGET = Target("k8s-lab", "k8s-assignment")

# --------------------------------------------------------------------------------- the script


def run_locally(script: str, env: dict | None = None) -> str:
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                            env=env)
    return result.stdout


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # bound then closed: nothing listens there
    return port


def test_script_probes_loopback_connected_and_refused(listener, closed_port):
    script = probe.probe_script([("open", "127.0.0.1", listener),
                                  ("shut", "127.0.0.1", closed_port)])
    assert probe.parse_output(run_locally(script), ["open", "shut"]) == {
        "open": ("connected", ""), "shut": ("refused", "")}


@pytest.mark.parametrize("rc, message, outcome", [
    (124, "", "timeout"),
    (137, "", "timeout"),
    (1, "bash: connect: Connection refused", "refused"),
    (1, "bash: connect: Connection timed out", "timeout"),
    (1, "bash: connect: No route to host", "unreachable"),
    (1, "bash: connect: Network is unreachable", "unreachable"),
    (1, "bash: db: Name or service not known", "error"),
    (0, "", "connected"),
])
def test_script_classifies_what_timeout_and_bash_report(tmp_path: Path, rc, message, outcome):
    # A stand-in for coreutils' timeout: the script's verdict comes from its exit code and text.
    fake = tmp_path / "timeout"
    fake.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit {rc}\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    out = run_locally(probe.probe_script([("x", "10.0.0.1", 80)]), env)
    result, detail = probe.parse_output(out, ["x"])["x"]
    assert result == outcome
    if outcome in ("error", "unreachable"):
        assert message.split(": ")[-1] in detail


def test_script_runs_in_parallel_chunks():
    targets = [(f"c{i}", "10.0.0.1", 80) for i in range(20)]
    script = probe.probe_script(targets, timeout=1.5, parallel=16)
    assert "T=1.5;" in script
    assert script.count(" & wait") == 2  # 16 + 4
    assert script.count("p c") == 20
    single = probe.probe_script([("a", "10.0.0.1", 80)])
    assert "wait" not in single and single.endswith("p a 10.0.0.1 80")
    assert "'" not in probe.probe_script(targets)  # fits in bash -c '...'


@pytest.mark.parametrize("host", ["10.0.0.1;reboot", "$(id)", "a b", "", "-x"])
def test_script_refuses_hosts_that_are_not_plain_names(host):
    with pytest.raises(LabError):
        probe.probe_script([("a", host, 80)])


def test_script_refuses_bad_ports_and_timeouts():
    with pytest.raises(LabError):
        probe.probe_script([("a", "10.0.0.1", 70000)])
    with pytest.raises(LabError):
        probe.probe_script([("a", "10.0.0.1", 80)], timeout=0)


def test_parse_output_ignores_noise_and_marks_missing_tokens():
    text = "warning: something\nc0 connected\nc2 error bash: x: Name or service not known\n" \
           "c1 sideways\n"
    assert probe.parse_output(text, ["c0", "c1", "c2"]) == {
        "c0": ("connected", ""),
        "c1": ("error", "no result from the probe script"),
        "c2": ("error", "bash: x: Name or service not known"),
    }


def test_reproduce_command_is_the_exact_kubectl_exec(listener):
    command = probe.reproduce_command("k8s-lab-probe-test", "web-1", "nginx", "127.0.0.1",
                                      listener, timeout=1.5, target=TARGET)
    args = shlex.split(command)
    assert args[:12] == ["kubectl", "--context", "kind-k8s-lab", "-n", "k8s-lab-probe-test",
                         "exec", "web-1", "-c", "nginx", "--", "bash", "-c"]
    assert len(args) == 13
    # The script part, run here against a loopback listener, says what the engine would say.
    assert run_locally(args[12]).strip() == f"127.0.0.1:{listener} connected"


# ------------------------------------------------------------------------------- expectations


def cell(source="web-1", group="web", destination="database", dgroup="database", port=3306):
    return probe._Cell(source=source, source_group=group, namespace="ns", container="c",
                       destination=destination, destination_group=dgroup, target="10.0.0.1",
                       port=port)


def test_expectation_forms():
    assert probe.expectation(None)(cell()) is None
    assert probe.expectation("timeout")(cell()) == "timeout"
    assert probe.expectation(lambda s, d, p: "connected" if s == "web" else "timeout")(cell()) \
        == "connected"
    table = probe.expectation({
        ("*", "*", "*"): "timeout",
        ("web", "database", 3306): "connected",
        ("web", "*", "*"): "refused",
        ("web-2", "database", "*"): "timeout",
    })
    assert table(cell()) == "connected"
    assert table(cell(port=80)) == "refused"
    assert table(cell(source="web-2")) == "timeout"  # a Pod name beats its group
    assert table(cell(group="other", source="other-1")) == "timeout"


def test_expectation_errors():
    with pytest.raises(LabError, match="no expectation"):
        probe.expectation({("web", "*", "*"): "connected"})(cell(group="other", source="o"))
    with pytest.raises(LabError, match="not an outcome"):
        probe.expectation("open")
    with pytest.raises(LabError, match="not an outcome"):
        probe.expectation(lambda s, d, p: "allowed")(cell())
    with pytest.raises(LabError):
        probe.expectation({("web", "*"): "connected"})


def test_lab_expected_follows_the_lab_policy():
    assert probe.lab_expected("web", "database", 3306) == "connected"
    assert probe.lab_expected("other", "database", 3306) == "timeout"
    assert probe.lab_expected("web", "database", 80) == "timeout"
    assert probe.lab_expected("other", "web", 80) == "connected"
    assert probe.lab_expected("web", "web", 80) == "connected"
    # Another namespace: nobody there reaches the database, a borrowed web label included.
    outside = {s.name: s for s in probe.lab_outside_sources("elsewhere-ns")}
    assert outside["borrowed"].labels.items() >= {"app.kubernetes.io/component": "web"}.items()
    assert {s.namespace for s in outside.values()} == {"elsewhere-ns"}
    for source in outside:
        assert probe.lab_expected(source, "database", 3306) == "timeout"
        assert probe.lab_expected(source, "web", 80) == "connected"


# ---------------------------------------------------------------------------- labels and pods


def test_probe_pod_manifest_carries_labels_and_no_privileges():
    source = probe.Source.probe("web like", {"app.kubernetes.io/component": "web"})
    pod = probe.probe_pod_manifest(source, 0)
    assert pod.metadata.name == "probe-web-like-0"
    assert pod.metadata.labels == {"app.kubernetes.io/component": "web",
                                   probe.MANAGED_LABEL: "true", probe.SOURCE_LABEL: "web-like"}
    container = pod.spec.containers[0]
    assert container.command == ["sleep", "infinity"]
    assert container.image == "k8s-lab/probe:1"
    assert container.security_context.run_as_non_root is True
    assert container.resources.limits and container.resources.requests
    other = probe.probe_pod_manifest(probe.Source.probe("web like", {"x": "y"}), 0)
    assert other.metadata.annotations != pod.metadata.annotations  # changed labels -> new Pod


def test_selector_matching():
    from kubernetes.client import V1LabelSelector, V1LabelSelectorRequirement

    labels = {"app": "web", "tier": "front"}
    assert probe._selector_matches({"app": "web"}, labels)
    assert not probe._selector_matches({"app": "db"}, labels)
    assert not probe._selector_matches({}, labels)
    assert probe._selector_matches(V1LabelSelector(match_labels={"app": "web"}), labels)
    assert not probe._selector_matches(V1LabelSelector(), labels)
    assert probe._selector_matches(V1LabelSelector(match_expressions=[
        V1LabelSelectorRequirement(key="tier", operator="In", values=["front", "x"])]), labels)
    assert not probe._selector_matches(V1LabelSelector(match_expressions=[
        V1LabelSelectorRequirement(key="tier", operator="DoesNotExist")]), labels)


# ---------------------------------------------------------------- the engine, with a fake exec


class FakeCluster:
    """Answers execs from a table {(source pod, host, port): [outcome, outcome, ...]}: each probe
    of a cell takes the next outcome (the last one repeats)."""

    def __init__(self, answers):
        self.answers = {k: list(v) for k, v in answers.items()}
        self.execs = []  # (source pod, [(host, port)])

    def exec(self, source, script, timeout, target):
        assert target == TARGET
        calls = re.findall(r"\bp (\S+) (\S+) (\d+)", script)
        self.execs.append((source.name, [(h, int(p)) for _, h, p in calls]))
        lines = []
        for token, host, port in calls:
            queue = self.answers[(source.name, host, int(port))]
            lines.append(f"{token} {queue.pop(0) if len(queue) > 1 else queue[0]}")
        return "\n".join(lines) + "\n", ""


@pytest.fixture
def fake(monkeypatch):
    def install(answers):
        cluster = FakeCluster(answers)
        from lab.cluster import kube

        monkeypatch.setattr(kube, "core", lambda target: None)
        monkeypatch.setattr(probe, "_namespace_exists", lambda core, ns: True)
        monkeypatch.setattr(probe, "_exec_stream", cluster.exec)

        def source_pods(source, namespace, target):
            assert target == TARGET
            return [probe._SourcePod(source.name, f"{source.name}-{i}", namespace, "main")
                    for i in range(2)]

        def targets(dest, namespace, ports, target):
            assert target == TARGET
            host = {"database": "10.96.0.10", "web": "10.96.0.20"}[dest.name]
            return [(dest.name, host, p) for p in dest.ports or ports], []

        monkeypatch.setattr(probe, "_source_pods", source_pods)
        monkeypatch.setattr(probe, "_destination_targets", targets)
        return cluster
    return install


SOURCES = [probe.Source.pods("web", "app=web"), probe.Source.pods("other", "app=other")]
DESTS = [probe.Destination.service("database", ports=[3306]),
         probe.Destination.service("web", ports=[80])]


def lab_answers(**overrides):
    answers = {}
    for src in ("web-0", "web-1", "other-0", "other-1"):
        answers[(src, "10.96.0.10", 3306)] = ["connected" if src.startswith("web") else "timeout"]
        answers[(src, "10.96.0.20", 80)] = ["connected"]
    for key, value in overrides.items():
        src, dest = key.split("__")
        host, port = {"db": ("10.96.0.10", 3306), "web": ("10.96.0.20", 80)}[dest]
        answers[(src.replace("_", "-"), host, port)] = value
    return answers


def test_matrix_dataframe_shape_and_one_exec_per_source(fake):
    cluster = fake(lab_answers())
    df = probe.matrix("ns", SOURCES, DESTS, expected=probe.lab_expected, retry_s=1, target=TARGET)
    assert list(df.columns[:8]) == ["source", "destination", "port", "expected", "observed",
                                    "correct", "attempts", "reproduce"]
    assert list(df.columns) == list(probe.COLUMNS)
    assert len(df) == 4 * 2
    assert df["correct"].all() and (df["attempts"] == 1).all()
    assert sorted(name for name, _ in cluster.execs) == ["other-0", "other-1", "web-0", "web-1"]
    assert all(len(calls) == 2 for _, calls in cluster.execs)
    assert df.attrs["passes"] == 1 and df.attrs["execs"] == 4
    row = df[(df.source == "web-0") & (df.destination == "database")].iloc[0]
    assert row.port == 3306 and row.observed == "connected" and row.target == "10.96.0.10"
    assert row.reproduce.startswith("kubectl --context kind-k8s-lab -n ns exec web-0 -c main -- ")
    assert row.reproduce.endswith("p 10.96.0.10:3306 10.96.0.10 3306'")


def test_matrix_retries_only_wrong_cells_until_they_match(fake):
    # other-0 -> database is open for two probes (a policy still on its way), then blocked.
    cluster = fake(lab_answers(other_0__db=["connected", "connected", "timeout"]))
    df = probe.matrix("ns", SOURCES, DESTS, expected=probe.lab_expected, retry_s=5, target=TARGET)
    assert df["correct"].all()
    flaky = df[(df.source == "other-0") & (df.destination == "database")].iloc[0]
    assert flaky.attempts == 3
    assert (df.drop(flaky.name)["attempts"] == 1).all()
    retries = cluster.execs[4:]
    assert retries == [("other-0", [("10.96.0.10", 3306)])] * 2


def test_matrix_reports_a_cell_that_stays_wrong_after_a_final_pass(fake):
    fake(lab_answers(web_1__db=["timeout"]))
    df = probe.matrix("ns", SOURCES, DESTS, expected=probe.lab_expected, retry_s=0.6, target=TARGET)
    bad = probe.wrong(df)
    assert [(r.source, r.destination, r.port) for r in bad.itertuples()] == [
        ("web-1", "database", 3306)]
    assert bad.iloc[0].observed == "timeout" and bad.iloc[0].expected == "connected"
    assert bad.iloc[0].attempts >= 3  # first pass, at least one retry, the final pass


def test_matrix_without_expectations_does_not_retry(fake):
    fake(lab_answers(web_1__db=["timeout"]))
    df = probe.matrix("ns", SOURCES, DESTS, expected=None, target=TARGET)
    assert df["correct"].all() and (df["attempts"] == 1).all()
    assert df["expected"].isna().all()


def test_exec_failure_marks_that_sources_cells_as_errors(fake, monkeypatch):
    cluster = fake(lab_answers())

    def broken(source, script, timeout, target):
        if source.name == "web-1":
            return "", "exec failed: pod not found"
        return cluster.exec(source, script, timeout, target)

    monkeypatch.setattr(probe, "_exec_stream", broken)
    df = probe.matrix("ns", SOURCES, DESTS, expected=probe.lab_expected, retry_s=0, target=TARGET)
    bad = probe.wrong(df)
    assert set(bad.source) == {"web-1"}
    assert set(bad.observed) == {"error"} and set(bad.detail) == {"exec failed: pod not found"}


# -------------------------------------------------------------------------- heatmap and report


def sample_df(fake_install=None):
    rows = []
    for src, group in (("web-0", "web"), ("other-0", "other")):
        for dest, dgroup, port in (("database", "database", 3306), ("web", "web", 80),
                                   ("db-0", "db-pods", 3306)):
            exp = probe.lab_expected(group, dgroup if dgroup != "db-pods" else "database", port)
            obs = exp
            if (src, dest) == ("other-0", "database"):
                obs = "connected"
            if (src, dest) == ("web-0", "db-0"):
                obs = "refused"
            rows.append(dict(source=src, destination=dest, port=port, expected=exp, observed=obs,
                             correct=exp == obs, attempts=1 if exp == obs else 4,
                             reproduce=f"kubectl exec {src} -- probe {dest}:{port}",
                             source_group=group, destination_group=dgroup, target="10.0.0.1",
                             namespace="ns", detail=""))
    return pd.DataFrame(rows, columns=list(probe.COLUMNS))


def test_heatmap_returns_a_figure_with_wrong_cells_marked():
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    df = sample_df()
    fig = probe.heatmap(df)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "database:3306", "web:80", "db-pods/db-0:3306"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["web-0 (web)", "other-0 (other)"]
    marked = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch() == "//"]
    assert len(marked) == 2
    assert "2 differ" in ax.get_title()
    texts = [t.get_text() for t in ax.texts]
    assert "✗ connected\n(want timeout)" in texts
    fig.savefig(io.BytesIO(), format="png")  # it renders


def test_report_prints_the_command_of_every_wrong_cell():
    df = sample_df()
    out = io.StringIO()
    assert probe.report(df, file=out) == 2
    text = out.getvalue()
    assert "2 of 6 cells differ" in text
    assert "kubectl exec other-0 -- probe database:3306" in text
    assert "kubectl exec web-0 -- probe db-0:3306" in text
    assert "kubectl exec web-0 -- probe database:3306" not in text
    ok = df[df.correct]
    out = io.StringIO()
    assert probe.report(ok, file=out) == 0
    assert "all 4 cells as expected" in out.getvalue()


# ---------------------------------------------------------------------------------- the CLI


def test_cli_probe_exits_non_zero_and_shows_the_reproduce_command(monkeypatch):
    from lab.cli import cli

    df = sample_df()
    asked = []
    monkeypatch.setattr(probe, "lab_matrix", lambda target: asked.append(target) or df)
    monkeypatch.setattr(probe, "cni_note", lambda target: "; kindnet Pods: restarted")
    result = CliRunner().invoke(cli, ["probe", "-n", "somewhere"])
    assert result.exit_code == 1
    assert asked == [Target.of(namespace="somewhere")]
    assert "kubectl exec other-0 -- probe database:3306" in result.output
    assert "2 of 6 cells differ" in result.output
    assert "kindnet Pods: restarted" in result.output


def test_cli_probe_passes_when_every_cell_matches(monkeypatch):
    from lab.cli import cli

    df = sample_df()
    monkeypatch.setattr(probe, "lab_matrix", lambda target: df[df.correct])
    result = CliRunner().invoke(cli, ["probe"])
    assert result.exit_code == 0, result.output
    assert "all 4 cells match" in result.output


def test_cli_probe_not_deployed_names_lab_deploy(monkeypatch):
    from lab.cli import cli

    def not_deployed(target):
        raise LabError("the lab system is not deployed", hint="deploy it with `lab deploy`")

    monkeypatch.setattr(probe, "lab_matrix", not_deployed)
    result = CliRunner().invoke(cli, ["probe"])
    assert result.exit_code == 1
    assert "lab deploy" in result.output
