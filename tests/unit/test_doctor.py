"""lab doctor against a fake PATH, fake tools and fake /proc/meminfo."""
from __future__ import annotations

import importlib.metadata
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

import lab
from lab.host import doctor
from lab.cli import cli
from lab.host.doctor import GIB, Check


def script(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_path(tmp_path, monkeypatch):
    """PATH holds only tmp_path/bin; the fake scripts name what else they run by full path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_docker_missing(fake_path):
    check = doctor.check_docker()
    assert not check.ok and check.required
    assert "not found" in check.detail
    assert "scripts/setup-host" in check.fix


def test_docker_engine_answers(fake_path):
    script(fake_path, "docker", '[ "$1" = info ] && echo 24.0.7 && exit 0\nexit 3')
    check = doctor.check_docker()
    assert check.ok, check
    assert "24.0.7" in check.detail


def test_docker_client_without_engine(fake_path):
    script(fake_path, "docker", "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2\nexit 1")
    check = doctor.check_docker()
    assert not check.ok and check.required
    assert "Cannot connect to the Docker daemon" in check.detail


def test_docker_that_hangs_times_out(fake_path):
    script(fake_path, "docker", "exec /bin/sleep 30")
    check = doctor.check_docker(timeout=0.5)
    assert not check.ok
    # the runner's timeout message: which command, and that it did not finish in time
    assert "docker info" in check.detail and "did not finish within" in check.detail


@pytest.fixture
def fake_tools(monkeypatch, fake_path):
    """A lab.host.tools that finds executables on the fake PATH."""
    import shutil

    module = types.ModuleType("lab.host.tools")

    def find(name):
        found = shutil.which(name)
        return Path(found) if found else None

    module.find = find
    module.version = lambda name: f"{name} v9.9.9" if find(name) else None
    monkeypatch.setitem(sys.modules, "lab.host.tools", module)
    monkeypatch.setattr(lab.host, "tools", module, raising=False)
    return fake_path


def test_tool_found_and_missing(fake_tools):
    script(fake_tools, "kind", "exit 0")
    kind, helm = doctor.check_tool("kind"), doctor.check_tool("helm")
    assert kind.ok and "kind v9.9.9" in kind.detail and str(fake_tools / "kind") in kind.detail
    assert not helm.ok and helm.status == "warn"
    assert helm.detail.startswith("not installed yet") and "lab cluster up" in helm.detail


def test_tool_unknown_when_lab_tools_cannot_be_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "lab.host.tools", None)  # makes `from lab import tools` raise ImportError
    monkeypatch.delattr(lab.host, "tools", raising=False)
    check = doctor.check_tool("kubectl")
    assert not check.ok and not check.required
    assert check.detail.startswith("unknown")


def test_disk(tmp_path):
    deep = tmp_path / "not" / "yet" / "created"
    free = doctor.check_disk(deep, need_gib=0)
    assert free.ok and str(deep) in free.detail
    full = doctor.check_disk(deep, need_gib=10**9)
    assert not full.ok and full.required and "LAB_CACHE_DIR" in full.fix
    assert doctor.check_disk(deep, need_gib=10**9, required=False).status == "warn"


def test_disk_uses_the_lab_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    assert str(tmp_path / "cache") in doctor.check_disk(need_gib=0).detail


def meminfo(tmp_path, total_gib, available_gib):
    path = tmp_path / "meminfo"
    path.write_text(
        f"MemTotal:       {int(total_gib * GIB / 1024)} kB\nMemFree:        1 kB\n"
        f"MemAvailable:   {int(available_gib * GIB / 1024)} kB\n"
    )
    return path


def test_memory(tmp_path):
    enough = doctor.check_memory(meminfo(tmp_path, 16, 8))
    assert enough.ok and enough.detail == "8.0 GiB available of 16.0 GiB"
    short = doctor.check_memory(meminfo(tmp_path, 4, 1))
    assert not short.ok and short.required


def test_python_packages(monkeypatch):
    installed = doctor.check_python_packages()
    assert installed[0].name == "python packages" and installed[0].ok, installed
    # without the [notebook] extra, JupyterLab shows up as a warning only
    assert all(not c.required for c in installed[1:]), installed
    real_requires = importlib.metadata.requires
    monkeypatch.setattr(
        doctor.metadata, "requires",
        lambda dist: real_requires(dist) + ["no-such-package-k8s-lab>=1", 'no-such-extra-k8s-lab; extra == "notebook"'],
    )
    required, optional = doctor.check_python_packages()
    assert not required.ok and required.required and required.detail == "missing: no-such-package-k8s-lab"
    assert not optional.ok and not optional.required and "no-such-extra-k8s-lab" in optional.detail


def test_run_checks_covers_everything_and_mode_decides_disk(monkeypatch):
    monkeypatch.setattr(doctor, "check_disk", lambda required=True: Check("disk", False, "tiny", "x", required=required))
    names = [c.name for c in doctor.run_checks()]
    for expected in ("docker", "kind", "helm", "kubectl", "disk", "memory", "python packages", "kernel"):
        assert expected in names
    assert next(c for c in doctor.run_checks("offline") if c.name == "disk").required
    assert not next(c for c in doctor.run_checks("online") if c.name == "disk").required


def test_cli_fails_on_a_required_check_and_says_what_to_fix(monkeypatch):
    monkeypatch.setenv("COLUMNS", "150")
    monkeypatch.setattr(doctor, "run_checks", lambda mode="auto": [
        Check("docker", False, "engine does not answer", "run scripts/setup-host"),
        Check("helm", False, "not found", "install helm", required=False),
        Check("memory", True, "8 GiB"),
    ])
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1
    out = result.output
    assert "docker" in out and "FAIL" in out and "warn" in out
    assert "What to fix" in out and "run scripts/setup-host" in out and "install helm" in out
    assert "1 required check failed: docker" in result.stderr


def test_cli_passes_with_only_warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(doctor, "run_checks", lambda mode="auto": seen.append(mode) or [
        Check("helm", False, "not found", "install helm", required=False),
        Check("memory", True, "8 GiB"),
    ])
    result = CliRunner().invoke(cli, ["doctor", "--offline"])
    assert result.exit_code == 0, result.output
    assert "can run the lab" in result.output
    assert seen == ["offline"]
