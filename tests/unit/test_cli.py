"""The `lab` command line: help everywhere, arguments reach the library, LabError stays short."""
from __future__ import annotations

import importlib
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import lab
from lab.cli import cli, main
from lab.cluster.kind import ClusterInfo
from lab.errors import LabError
from lab.target import Target


def all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        path = prefix + (name,)
        yield path
        if isinstance(command, click.Group):
            yield from all_commands(command, path)


COMMANDS = sorted(all_commands(cli))


LEAVES = [path for path in COMMANDS if not isinstance(
    cli.get_command(None, path[0]) if len(path) == 1 else None, click.Group)]


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_every_command_is_documented_in_the_readme(path):
    # The README's CLI table is what students read: a command missing there does not exist for them.
    readme = (Path(lab.__file__).resolve().parent.parent / "README.md").read_text()
    assert f"`lab {' '.join(path)}" in readme


@pytest.mark.parametrize("path", [()] + COMMANDS, ids=lambda p: " ".join(p) or "lab")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_has_help(path, flag):
    result = CliRunner().invoke(cli, [*path, flag])
    assert result.exit_code == 0, result.output
    assert f"Usage: lab {' '.join(path)}".rstrip() in result.output
    command = cli
    for name in path:
        command = command.commands[name]
    # click re-wraps help text, so compare words, not lines.
    assert command.help and " ".join(command.help.splitlines()[0].split()) in " ".join(result.output.split())


def test_main_is_the_console_script(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert lab.__version__ in capsys.readouterr().out


@pytest.fixture
def fake(monkeypatch):
    """Install a fake lab.<name> module (the real ones belong to other parts of the lab)."""

    def install(name: str, **functions):
        module = types.ModuleType(f"lab.{name}")
        module.calls = []
        for fname, fn in functions.items():
            def recorder(*args, _fn=fn, _name=fname, **kwargs):
                module.calls.append((_name, args, kwargs))
                return _fn(*args, **kwargs)
            setattr(module, fname, recorder)
        package, _, leaf = f"lab.{name}".rpartition(".")
        monkeypatch.setitem(__import__("sys").modules, f"lab.{name}", module)
        monkeypatch.setattr(importlib.import_module(package), leaf, module, raising=False)
        return module

    return install


def _info(target, **kw):
    return ClusterInfo("k8s-lab", "kind-k8s-lab", "k8s-lab/node:v1.34.4", ["k8s-lab-control-plane"],
                       created=kw.get("recreate", False))


def test_cluster_up_defaults(fake):
    mod = fake("cluster.kind", up=_info)
    result = CliRunner().invoke(cli, ["cluster", "up"])
    assert result.exit_code == 0, result.output
    assert mod.calls == [("up", (Target.of(),), {"workers": None, "mode": "auto", "recreate": False})]
    assert "cluster k8s-lab reused" in result.output


@pytest.mark.parametrize("flags, mode", [(["--offline"], "offline"), (["--online"], "online")])
def test_cluster_up_passes_flags(fake, flags, mode):
    mod = fake("cluster.kind", up=_info)
    result = CliRunner().invoke(cli, ["cluster", "up", "--workers", "2", "--recreate", *flags])
    assert result.exit_code == 0, result.output
    assert mod.calls == [("up", (Target.of(),), {"workers": 2, "mode": mode, "recreate": True})]


def test_cluster_up_rejects_negative_workers(fake):
    mod = fake("cluster.kind", up=lambda target, **kw: None)
    result = CliRunner().invoke(cli, ["cluster", "up", "--workers", "-1"])
    assert result.exit_code == 2
    assert mod.calls == []


def test_cluster_down(fake):
    mod = fake("cluster.kind", down=lambda target: None)
    result = CliRunner().invoke(cli, ["cluster", "down"])
    assert result.exit_code == 0, result.output
    assert mod.calls == [("down", (Target.of(),), {})]


@pytest.mark.parametrize("flags, target", [
    (["--cluster", "k8s-lab-b"], Target("k8s-lab-b", "k8s-assignment")),
    (["--context", "classroom", "--kubeconfig", "/tmp/kc"], Target.of(context="classroom", kubeconfig="/tmp/kc")),
])
def test_cluster_options_reach_the_library(fake, flags, target):
    mod = fake("cluster.kind", down=lambda target: None)
    result = CliRunner().invoke(cli, ["cluster", "down", *flags])
    assert result.exit_code == 0, result.output
    assert mod.calls == [("down", (target,), {})]


def test_cluster_status_prints_a_table(fake, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    fake("cluster.kind", status=lambda target: {"name": "k8s-lab", "nodes": ["control-plane", "worker"], "ready": True})
    result = CliRunner().invoke(cli, ["cluster", "status"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in result.output.splitlines() if line.count("│") == 3}
    assert rows == {"name": "k8s-lab", "nodes": "control-plane, worker", "ready": "True"}


@pytest.mark.parametrize("flags, mode", [([], "auto"), (["--offline"], "offline"), (["--online"], "online")])
def test_tools_resolves_every_tool_and_prints_where(fake, flags, mode, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    paths = {name: tmp_path / name / "bin" / name for name in ("kind", "helm", "kubectl")}
    mod = fake("host.tools", ensure_all=lambda mode: paths, version=lambda name: f"v-{name}")
    result = CliRunner().invoke(cli, ["tools", *flags])
    assert result.exit_code == 0, result.output
    assert mod.calls[0] == ("ensure_all", (mode,), {})
    for name, path in paths.items():
        assert f"v-{name}" in result.output and str(path) in result.output
    assert "export PATH=" + ":".join(str(p.parent) for p in paths.values()) + ":$PATH" in result.output


def test_images_build_defaults_and_flags(fake):
    mod = fake("build.images", build=lambda **kw: ["k8s-lab/web:1", "k8s-lab/db:1"],
               to_load=lambda mode: [f"k8s-lab/web:{mode}"])
    kind = fake("cluster.kind", load_images=lambda target, tags: None)
    runner = CliRunner()
    first = runner.invoke(cli, ["images", "build"])
    second = runner.invoke(cli, ["images", "build", "--offline", "--no-load"])
    assert first.exit_code == 0 and second.exit_code == 0, (first.output, second.output)
    assert mod.calls == [
        ("build", (), {"mode": "auto"}),
        ("to_load", ("auto",), {}),
        ("build", (), {"mode": "offline"}),
    ]
    # only the first (--load, the default) loads, into the cluster the CLI's options name
    assert kind.calls == [("load_images", (Target.of(), ["k8s-lab/web:auto"]), {})]
    assert "k8s-lab/web:1" in first.output and "2 images ready" in first.output
    assert "not loaded" in second.output


def test_lab_error_is_printed_without_traceback(fake):
    def boom(target):
        raise LabError("kind is not installed", "run `lab cluster up --offline` to build it")

    fake("cluster.kind", down=boom)
    result = CliRunner().invoke(cli, ["cluster", "down"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: kind is not installed",
        "hint: run `lab cluster up --offline` to build it",
    ]
    assert "Traceback" not in result.output


def test_lab_error_without_hint_prints_one_line(fake):
    def boom(**kwargs):
        raise LabError("no [registry] answers")  # square brackets are not rich markup

    fake("build.images", build=boom)
    result = CliRunner().invoke(cli, ["images", "build"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["error: no [registry] answers"]


def test_other_exceptions_are_not_swallowed(fake):
    def broken(target):
        raise RuntimeError("a bug")

    fake("cluster.kind", down=broken)
    result = CliRunner().invoke(cli, ["cluster", "down"])
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError)
