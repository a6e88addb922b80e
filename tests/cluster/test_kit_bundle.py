"""The classroom kit for real: exported from this machine's images and tools, imported into a fresh
lab cache by `lab` with no `go` (nor kind, kubectl or helm) on PATH, after which tool resolution
and `lab images build` build nothing. A kit with one byte changed is refused, the cache untouched.

To stay within CI's budget the kit holds the application images and the tools (a few hundred MB);
the node image (a gigabyte more) and the wheels go the same way, timed by bench/bench_kit.py.
The images are loaded into this machine's Docker, where they exist already under the same IDs.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from lab import kitfile
from lab.build import images, kit
from lab.host import docker, tools
from tests.support import lab_cli, say

pytestmark = pytest.mark.cluster

MODE = "offline"  # the kit carries the offline images: what an air-gapped classroom resolves to


def ok(result, what: str):
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def snapshot(directory: Path) -> dict[str, str]:
    if not directory.exists():
        return {}
    return {path.relative_to(directory).as_posix(): "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*"))}


@pytest.fixture(scope="module")
def bare_path(tmp_path_factory) -> str:
    """A PATH with docker and nothing else the lab could build or fetch with: no go, no kind,
    kubectl or helm."""
    directory = tmp_path_factory.mktemp("bin")
    (directory / "docker").symlink_to(docker.executable())
    return str(directory)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    images.build(MODE)
    bundle = tmp_path_factory.mktemp("kit") / "k8s-lab-kit.tar"
    start = time.monotonic()
    ok(lab_cli("kit", "export", str(bundle), "--without", "node", "--without", "wheels", timeout=1200),
       "lab kit export")
    say(f"export (images and tools): {time.monotonic() - start:.0f}s, {kit.size(bundle.stat().st_size)}")
    return bundle


@pytest.fixture(scope="module")
def imported(exported, bare_path, tmp_path_factory) -> dict[str, str]:
    """The environment of a student machine that imported the kit: its own lab cache, no Go."""
    env = {"LAB_CACHE_DIR": str(tmp_path_factory.mktemp("student-cache")), "PATH": bare_path,
           "LAB_IMAGE_MODE": MODE}
    ids = {spec.tag: docker.image_id(spec.tag) for spec in images.plan(MODE)}
    start = time.monotonic()
    result = ok(lab_cli("kit", "import", str(exported), env=env, timeout=1200), "lab kit import")
    say(f"import (images and tools): {time.monotonic() - start:.0f}s")
    assert "kit imported" in result.stdout
    # The same images as before, under the same tags: loading them changed nothing here.
    assert {tag: docker.image_id(tag) for tag in ids} == ids
    return env


def test_the_kit_lists_what_it_carries(exported):
    manifest = kitfile.read_manifest(exported)
    assert set(manifest["images"]) == {spec.tag for spec in images.plan(MODE)}
    assert manifest["tools"] == {name: tools.pinned(name) for name in tools.TOOLS}
    assert sorted(manifest["members"]) == sorted([kit.APPS_MEMBER] + [f"tools/{name}" for name in tools.TOOLS])
    assert kit.differences(manifest) == []


def test_tools_resolve_from_the_kit_without_go(imported):
    result = ok(lab_cli("tools", "--offline", env=imported), "lab tools --offline")
    path_line = next(line for line in result.stdout.splitlines() if line.startswith("export PATH="))
    cache = imported["LAB_CACHE_DIR"]
    assert all(f"{cache}/tools/{name}-{tools.pinned(name)}:" in path_line for name in tools.TOOLS), path_line


def test_images_build_builds_nothing_after_the_import(imported):
    result = ok(lab_cli("images", "build", "--offline", "--no-load", env=imported), "lab images build")
    plan = images.plan(MODE)
    assert f"{len(plan)} of {len(plan)} up to date" in result.stdout + result.stderr
    assert "building" not in result.stdout + result.stderr


def test_the_kit_counts_on_a_machine_with_other_apt_sources(imported, monkeypatch):
    # Here the images' labels match this machine's own apt sources anyway; on a student's machine
    # with another mirror only the kit's record makes them count as up to date.
    monkeypatch.setenv("LAB_CACHE_DIR", imported["LAB_CACHE_DIR"])
    monkeypatch.setattr(images, "debian_sources", lambda etc_apt=None: [
        images.AptSource("http://mirror.example/debian", images.SUITE, ("main",))])
    monkeypatch.setattr(images, "_docker_build", lambda spec, *a: pytest.fail(f"built {spec.tag}"))
    monkeypatch.setattr(images, "_build_debian_base", lambda spec, *a: pytest.fail(f"built {spec.tag}"))
    assert images.build(MODE) == [spec.tag for spec in images.plan(MODE)]


def test_a_second_import_returns_at_once(exported, imported):
    start = time.monotonic()
    result = ok(lab_cli("kit", "import", str(exported), env=imported), "lab kit import (again)")
    assert "already imported" in result.stdout
    assert time.monotonic() - start < 30


def test_a_kit_with_one_byte_changed_is_refused_and_the_cache_untouched(exported, bare_path, tmp_path):
    copy = tmp_path / "changed.tar"
    shutil.copyfile(exported, copy)
    manifest = kitfile.read_manifest(copy)
    with tarfile.open(copy) as tar:
        member = tar.getmember(kit.APPS_MEMBER)
    with open(copy, "r+b") as handle:
        handle.seek(member.offset_data + member.size - 10)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    cache = tmp_path / "cache"
    (cache / "tools").mkdir(parents=True)
    (cache / "tools" / "note").write_text("an earlier session's file")
    before = snapshot(cache)
    result = lab_cli("kit", "import", str(copy), env={"LAB_CACHE_DIR": str(cache), "PATH": bare_path})
    assert result.returncode == 1
    assert f"refusing kit {copy}: {kit.APPS_MEMBER} has SHA-256" in result.stderr
    assert "nothing was imported" in result.stderr and "hint: copy the kit again" in result.stderr
    assert snapshot(cache) == before
    assert manifest["members"][kit.APPS_MEMBER]["size"] == member.size
