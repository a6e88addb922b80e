"""The classroom kit without Docker: its file format, the refusals, the import's moves into the lab
cache, and the builders counting an imported kit's images as up to date."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from lab import config, kitfile
from lab.build import images, kit, nodeimage
from lab.cli import cli
from lab.errors import LabError
from lab.cluster import kind
from lab.host import docker, gobuild, tools

# The apt sources of the machine that "exported" the kits below: not this machine's.
KIT_SOURCES = [images.AptSource("http://mirror.example/debian", "bookworm", ("main",))]
NODE_LABEL = "node-inputs-on-the-exporting-machine"
FAKE_KIND = "#!/bin/sh\necho 'kind v0.30.0 go1.24.6 linux/amd64'\n"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private lab cache holding what an earlier session left there."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("LAB_CACHE_DIR", str(directory))
    (directory / "tools" / "helm-old").mkdir(parents=True)
    (directory / "tools" / "helm-old" / "helm").write_text("an older helm")
    (directory / "images" / "logs").mkdir(parents=True)
    (directory / "images" / "logs" / "web.log").write_text("built yesterday")
    tools._found.cache_clear()
    yield directory
    tools._found.cache_clear()


def snapshot(directory: Path) -> dict[str, str]:
    """Every path under `directory` with its SHA-256 (directories as "dir"): equal snapshots, equal trees."""
    if not directory.exists():
        return {}
    return {path.relative_to(directory).as_posix(): "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*"))}


def app_labels() -> dict[str, str]:
    return images.plan_hashes("offline", sources=KIT_SOURCES)


def make_kit(directory: Path, name: str = "kit.tar", **changes) -> Path:
    """A kit that fits this checkout (as `lab kit export` on another machine writes it), with
    small stand-ins for the image archives; `changes` override manifest fields."""
    directory.mkdir(parents=True, exist_ok=True)
    parts = directory / f"{name}-parts"
    parts.mkdir()
    (parts / "node.tar.gz").write_bytes(b"node image layers " * 1000)
    (parts / "apps.tar.gz").write_bytes(b"application image layers " * 1000)
    (parts / "kind").write_text(FAKE_KIND)
    (parts / "six-1.0-py3-none-any.whl").write_bytes(b"a wheel")
    manifest = {
        "lab": "0.1.0", "commit": "0123456789abcdef", "parts": list(kit.PARTS),
        "versions": {**kit.pinned_versions(), "python packages": kitfile.constraints_digest()},
        "python": kitfile.python_of_this_machine(),
        "node_image": {"tag": config.OFFLINE_NODE_IMAGE, "label": NODE_LABEL,
                       "release": kit.node_image_release()},
        "debian_sources": [source.line() for source in KIT_SOURCES],
        "images": app_labels(),
        "tools": {"kind": config.KIND_VERSION},
    }
    manifest.update(changes)
    files = {kit.NODE_MEMBER: parts / "node.tar.gz", kit.APPS_MEMBER: parts / "apps.tar.gz",
             "tools/kind": parts / "kind", "wheels/six-1.0-py3-none-any.whl": parts / "six-1.0-py3-none-any.whl"}
    bundle = directory / name
    kitfile.write(bundle, manifest, files)
    return bundle


class FakeDocker:
    """Docker's image store as the kit sees it: labels by tag, and the archives loaded."""

    def __init__(self, monkeypatch):
        self.labels: dict[str, str] = {}
        self.loaded: list[str] = []
        monkeypatch.setattr(docker, "require_engine", lambda: None)
        monkeypatch.setattr(docker, "require_free_space", lambda gib, *paths: None)
        monkeypatch.setattr(docker, "image_label", lambda tag, label: self.labels.get(tag))
        monkeypatch.setattr(docker, "load", self.load)

    def load(self, archive: Path, on_bytes) -> None:
        self.loaded.append(archive.name)
        on_bytes(archive.stat().st_size)
        # What the real archives carry: the exporting machine's labels.
        if archive.name == Path(kit.NODE_MEMBER).name:
            self.labels[config.OFFLINE_NODE_IMAGE] = NODE_LABEL
        else:
            self.labels.update(app_labels())


@pytest.fixture
def fake_docker(monkeypatch) -> FakeDocker:
    return FakeDocker(monkeypatch)


def flip_byte(bundle: Path, member: str) -> None:
    """Change one byte in the middle of `member`'s data, in place."""
    with tarfile.open(bundle) as tar:
        info = tar.getmember(member)
    with open(bundle, "r+b") as handle:
        handle.seek(info.offset_data + info.size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x01]))


# ------------------------------------------------------------------------------- the file


def test_a_kit_round_trips_every_member(tmp_path):
    bundle = make_kit(tmp_path)
    manifest = kitfile.read_manifest(bundle)
    assert set(manifest["members"]) == {kit.NODE_MEMBER, kit.APPS_MEMBER, "tools/kind",
                                        "wheels/six-1.0-py3-none-any.whl"}
    out = tmp_path / "out"
    written = kitfile.extract(bundle, manifest, out)
    assert sorted(written) == sorted(manifest["members"])
    assert (out / "tools" / "kind").read_text() == FAKE_KIND
    for name, entry in manifest["members"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
        assert (out / name).stat().st_size == entry["size"]


def test_the_manifest_comes_first_and_names_the_versions(tmp_path):
    bundle = make_kit(tmp_path)
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert names[0] == kitfile.MANIFEST
    manifest = kitfile.read_manifest(bundle)
    assert manifest["format"] == kitfile.FORMAT
    assert manifest["versions"]["kubernetes"] == config.KUBERNETES_VERSION
    assert kit.differences(manifest) == []


def test_verify_reads_everything_and_writes_nothing(tmp_path, cache):
    bundle = make_kit(tmp_path)
    before = snapshot(cache)
    assert kit.verify(bundle)["members"] == kitfile.read_manifest(bundle)["members"]
    assert snapshot(cache) == before


def test_a_member_name_outside_the_kit_folders_cannot_be_written(tmp_path):
    stray = tmp_path / "x"
    stray.write_text("x")
    with pytest.raises(LabError, match="cannot go into a kit"):
        kitfile.write(tmp_path / "kit.tar", {}, {"../etc/passwd": stray})
    assert not (tmp_path / "kit.tar").exists()


@pytest.mark.parametrize("member", [kit.NODE_MEMBER, kit.APPS_MEMBER, "tools/kind",
                                    "wheels/six-1.0-py3-none-any.whl"])
def test_one_byte_changed_anywhere_is_refused(tmp_path, member):
    bundle = make_kit(tmp_path)
    flip_byte(bundle, member)
    with pytest.raises(LabError) as error:
        kit.verify(bundle)
    assert f"{member} has SHA-256" in error.value.message
    assert "nothing was imported" in error.value.message and "\n" not in error.value.message
    assert "copy the kit again" in error.value.hint


def test_a_truncated_kit_is_refused(tmp_path):
    bundle = make_kit(tmp_path)
    data = bundle.read_bytes()
    for cut in (len(data) // 2, len(data) - 3000, 700):
        bundle.write_bytes(data[:cut])
        with pytest.raises(LabError) as error:
            kit.verify(bundle)
        assert "refusing kit" in error.value.message and "nothing was imported" in error.value.message


def test_a_kit_cut_at_a_member_boundary_misses_members(tmp_path):
    bundle = make_kit(tmp_path)
    with tarfile.open(bundle) as tar:
        last = tar.getmembers()[-1]
    bundle.write_bytes(bundle.read_bytes()[:last.offset])
    with pytest.raises(LabError, match=r"1 of its 4 files are missing"):
        kit.verify(bundle)


def test_a_file_added_to_a_kit_is_refused(tmp_path):
    bundle = make_kit(tmp_path)
    extra = tmp_path / "extra"
    extra.write_text("not from the instructor")
    with tarfile.open(bundle, "a") as tar:
        tar.add(extra, arcname="tools/kubectl")
    with pytest.raises(LabError, match="holds 'tools/kubectl', which its manifest does not list"):
        kit.verify(bundle)


def test_a_changed_manifest_no_longer_matches_its_files(tmp_path):
    bundle = make_kit(tmp_path)
    manifest = kitfile.read_manifest(bundle)
    manifest["members"]["tools/kind"]["sha256"] = "0" * 64
    text = json.dumps(manifest).encode()
    rebuilt = tmp_path / "rebuilt.tar"
    with tarfile.open(bundle) as old, tarfile.open(rebuilt, "w") as new:
        for member in old.getmembers():
            if member.name == kitfile.MANIFEST:
                member.size = len(text)
                new.addfile(member, io.BytesIO(text))
            else:
                new.addfile(member, old.extractfile(member))
    with pytest.raises(LabError, match="tools/kind has SHA-256"):
        kit.verify(rebuilt)


@pytest.mark.parametrize("content, problem", [
    (b"just some text\n", "not a kit archive"),
    (b"", "not a kit archive"),
])
def test_a_file_that_is_not_a_kit_is_refused(tmp_path, content, problem):
    bundle = tmp_path / "kit.tar"
    bundle.write_bytes(content)
    with pytest.raises(LabError, match=problem):
        kitfile.read_manifest(bundle)


def test_a_tar_without_a_manifest_first_is_refused(tmp_path):
    stray = tmp_path / "notes.txt"
    stray.write_text("hello")
    bundle = tmp_path / "kit.tar"
    with tarfile.open(bundle, "w") as tar:
        tar.add(stray, arcname="notes.txt")
    with pytest.raises(LabError, match="does not start with manifest.json"):
        kitfile.read_manifest(bundle)


def test_a_kit_of_another_format_says_to_export_again(tmp_path):
    bundle = make_kit(tmp_path)
    manifest = kitfile.read_manifest(bundle)
    text = json.dumps({**manifest, "format": 99}).encode()
    with tarfile.open(tmp_path / "v99.tar", "w") as tar:
        info = tarfile.TarInfo(kitfile.MANIFEST)
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    with pytest.raises(LabError) as error:
        kitfile.read_manifest(tmp_path / "v99.tar")
    assert "format 99" in error.value.message and "export the kit again" in error.value.hint


def test_a_missing_kit_names_the_file(tmp_path):
    with pytest.raises(LabError, match=f"no kit at {tmp_path / 'nope.tar'}"):
        kit.import_(tmp_path / "nope.tar")


# --------------------------------------------------------------------------- other versions


@pytest.mark.parametrize("changes, named", [
    ({"versions": {**kit.pinned_versions(), "kubernetes": "v1.33.1"}},
     f"kubernetes v1.33.1 (this checkout: {config.KUBERNETES_VERSION})"),
    ({"versions": {**kit.pinned_versions(), "helm": "v3.18.0"}}, "helm v3.18.0"),
    ({"node_image": {"tag": config.OFFLINE_NODE_IMAGE, "label": NODE_LABEL, "release": "older"}},
     f"the node image {config.OFFLINE_NODE_IMAGE}"),
    ({"images": {**app_labels(), images.WEB_IMAGE: "made-from-an-older-images/web"}},
     f"the image {images.WEB_IMAGE} (images/web differs)"),
    ({"versions": {**kit.pinned_versions(), "python packages": "other-lock"}},
     "the Python packages (constraints.txt differs)"),
])
def test_a_kit_of_other_versions_is_refused_before_reading_it(tmp_path, cache, fake_docker, monkeypatch,
                                                              changes, named):
    bundle = make_kit(tmp_path, **changes)
    before = snapshot(cache)
    monkeypatch.setattr(kitfile, "extract", lambda *a, **k: pytest.fail("read the files of a kit it refuses"))
    with pytest.raises(LabError) as error:
        kit.import_(bundle)
    assert named in error.value.message
    assert "made for other versions (lab 0.1.0, commit 0123456789ab)" in error.value.message
    assert "\n" not in error.value.message and "same k8s-lab commit" in error.value.hint
    assert snapshot(cache) == before and fake_docker.loaded == []


def test_an_image_missing_from_a_kit_is_another_version(tmp_path):
    labels = app_labels()
    del labels[images.PROBE_IMAGE]
    bundle = make_kit(tmp_path, images=labels)
    with pytest.raises(LabError, match=f"the image {images.PROBE_IMAGE} \\(missing from the kit\\)"):
        kit.verify(bundle)


# --------------------------------------------------------------------------------- import


def test_import_loads_images_places_tools_and_records_the_kit(tmp_path, cache, fake_docker, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no kind on PATH: the kit's must be found
    bundle = make_kit(tmp_path)
    manifest, imported = kit.import_(bundle)
    assert imported
    assert fake_docker.loaded == ["node.tar.gz", "apps.tar.gz"]
    placed = cache / "tools" / f"kind-{config.KIND_VERSION}" / "kind"
    assert placed.read_text() == FAKE_KIND and os.access(placed, os.X_OK)
    assert tools.find("kind") == placed
    assert kitfile.imported() == manifest
    # The wheels are the venv's (make venv KIT=...), not the lab cache's; no staging is left.
    assert not list(cache.rglob("*.whl")) and not list(cache.glob(".kit-import-*"))


def test_a_second_import_of_the_same_kit_does_nothing(tmp_path, cache, fake_docker, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bundle = make_kit(tmp_path)
    kit.import_(bundle)
    fake_docker.loaded.clear()
    monkeypatch.setattr(kitfile, "extract", lambda *a, **k: pytest.fail("read the kit again"))
    assert kit.import_(bundle)[1] is False
    assert fake_docker.loaded == []


def test_an_import_whose_images_went_missing_loads_them_again(tmp_path, cache, fake_docker, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bundle = make_kit(tmp_path)
    kit.import_(bundle)
    fake_docker.labels.pop(images.WEB_IMAGE)  # docker image rm k8s-lab/web:1
    fake_docker.loaded.clear()
    assert kit.import_(bundle)[1] is True
    assert fake_docker.loaded == ["node.tar.gz", "apps.tar.gz"]


def test_a_corrupt_kit_leaves_the_lab_cache_exactly_as_it_was(tmp_path, cache, fake_docker, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    kit.import_(make_kit(tmp_path / "earlier"))  # a kit imported before, with its record and tools
    before = snapshot(cache)
    assert "kit/imported.json" in before and f"tools/kind-{config.KIND_VERSION}/kind" in before
    fake_docker.loaded.clear()
    bundle = make_kit(tmp_path / "new", commit="fedcba9876543210")
    flip_byte(bundle, "wheels/six-1.0-py3-none-any.whl")  # the last member: everything else was good
    with pytest.raises(LabError, match="has SHA-256"):
        kit.import_(bundle)
    assert snapshot(cache) == before
    assert fake_docker.loaded == []


def test_a_truncated_kit_leaves_a_new_lab_cache_absent(tmp_path, fake_docker, monkeypatch):
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("LAB_CACHE_DIR", str(cache))
    bundle = make_kit(tmp_path)
    bundle.write_bytes(bundle.read_bytes()[:-5000])
    with pytest.raises(LabError, match="refusing kit"):
        kit.import_(bundle)
    assert not cache.exists()
    assert fake_docker.loaded == []


def test_images_that_load_without_the_kits_labels_are_not_recorded(tmp_path, cache, fake_docker, monkeypatch):
    monkeypatch.setattr(fake_docker, "load", lambda archive, on_bytes: fake_docker.loaded.append(archive.name))
    monkeypatch.setattr(docker, "load", fake_docker.load)
    with pytest.raises(LabError, match="do not carry the kit's labels"):
        kit.import_(make_kit(tmp_path))
    assert kitfile.imported() is None


def test_a_kit_without_a_part_imports_the_rest(tmp_path, cache, fake_docker, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "kind").write_text(FAKE_KIND)
    bundle = tmp_path / "tools-only.tar"
    kitfile.write(bundle, {"lab": "0.1.0", "parts": ["tools"], "versions": kit.pinned_versions(),
                           "tools": {"kind": config.KIND_VERSION}}, {"tools/kind": parts / "kind"})
    kit.import_(bundle)
    assert fake_docker.loaded == [] and tools.find("kind") is not None
    shown = capsys.readouterr()  # the progress channel: stdout in a kernel, stderr elsewhere
    assert "no node image and no application images" in shown.out + shown.err


# ---------------------------------------------------------------------- the builders after it


def record(manifest: dict) -> None:
    kitfile.write_record(manifest, Path("/media/usb/k8s-lab-kit.tar"))


def test_imported_images_are_up_to_date_on_a_machine_with_other_apt_sources(tmp_path, cache, monkeypatch):
    here = [images.AptSource("http://ftp.de.debian.org/debian", "bookworm", ("main",))]
    monkeypatch.setattr(images, "debian_sources", lambda etc_apt=None: here)
    monkeypatch.setattr(docker, "require_engine", lambda: None)
    labels = app_labels()  # what the kit's images carry
    monkeypatch.setattr(docker, "image_label", lambda tag, label: labels.get(tag))
    built = []
    monkeypatch.setattr(images, "_docker_build", lambda spec, *a: built.append(spec.tag))
    monkeypatch.setattr(images, "_build_debian_base", lambda spec, *a: built.append(spec.tag))
    monkeypatch.setattr(docker, "require_free_space", lambda *a: None)

    images.build("offline")  # no kit imported: the labels are another machine's, so they all build
    # ... except the Go watcher, FROM scratch: no apt sources in its hash.
    assert built == [spec.tag for spec in images.plan("offline") if spec.tag != images.WATCHER_GO_IMAGE]
    built.clear()
    record(kitfile.read_manifest(make_kit(tmp_path)))
    images.build("offline")
    assert built == []
    assert images.debian_base() == images.DEBIAN_BASE and built == []


def test_an_image_changed_since_the_kit_is_built_again(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(docker, "require_engine", lambda: None)
    monkeypatch.setattr(docker, "require_free_space", lambda *a: None)
    labels = {**app_labels(), images.WEB_IMAGE: "from-an-older-images/web"}
    monkeypatch.setattr(docker, "image_label", lambda tag, label: labels.get(tag))
    built = []
    monkeypatch.setattr(images, "_docker_build", lambda spec, *a: built.append(spec.tag))
    record(kitfile.read_manifest(make_kit(tmp_path)))
    images.build("offline")
    assert built == [images.WEB_IMAGE]


def test_no_label_is_no_match_even_without_a_kit(monkeypatch):
    monkeypatch.setattr(docker, "image_label", lambda tag, label: None)
    assert images.up_to_date(images.WEB_IMAGE, {images.WEB_IMAGE: "h"}, {}) is False


def test_the_kits_node_image_needs_no_go(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(nodeimage, "build", lambda: pytest.fail("went to the builder (it needs `go`)"))
    monkeypatch.setattr(docker, "image_label", lambda tag, label: NODE_LABEL)
    record(kitfile.read_manifest(make_kit(tmp_path)))
    assert kind.node_image("offline") == config.OFFLINE_NODE_IMAGE


@pytest.mark.parametrize("label, release", [("rebuilt-since", None), (NODE_LABEL, "older-kit-sources")])
def test_a_node_image_that_is_not_the_kits_goes_the_usual_way(tmp_path, cache, monkeypatch, label, release):
    monkeypatch.setattr(nodeimage, "build", lambda: "built the usual way")
    monkeypatch.setattr(docker, "image_label", lambda tag, _: label)
    manifest = kitfile.read_manifest(make_kit(tmp_path))
    if release:
        manifest["node_image"]["release"] = release
    record(manifest)
    assert kit.node_image() == "built the usual way"


def test_the_node_image_release_follows_the_kit_sources(tmp_path, monkeypatch):
    before = kit.node_image_release()
    copy = tmp_path / "kit"
    shutil.copytree(gobuild.KIT_DIR, copy)
    monkeypatch.setattr(gobuild, "KIT_DIR", copy)
    assert kit.node_image_release() == before
    (copy / "pause" / "pause.c").write_text("/* changed */\n")
    assert kit.node_image_release() != before


# ------------------------------------------------------------------------- wheels for the venv


def test_wheels_come_out_checked_and_replace_the_directory(tmp_path):
    bundle = make_kit(tmp_path)
    target = tmp_path / "venv" / "kit-wheels"
    target.mkdir(parents=True)
    (target / "stale-0.1-py3-none-any.whl").write_bytes(b"old")
    assert kitfile.extract_wheels(bundle, target) == ["six-1.0-py3-none-any.whl"]
    assert sorted(p.name for p in target.iterdir()) == ["six-1.0-py3-none-any.whl"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["kit-wheels"]


def test_wheels_for_another_python_are_refused(tmp_path):
    bundle = make_kit(tmp_path, python={"version": "3.9", "machine": "x86_64"})
    target = tmp_path / "kit-wheels"
    with pytest.raises(LabError) as error:
        kitfile.extract_wheels(bundle, target, python={"version": "3.12", "machine": "x86_64"})
    assert "for Python 3.9 on x86_64, this is Python 3.12" in error.value.message
    assert "PYTHON=python3.9" in error.value.hint
    assert not target.exists()


def test_wheels_of_another_lock_are_refused(tmp_path, monkeypatch):
    bundle = make_kit(tmp_path, versions={**kit.pinned_versions(), "python packages": "x"})
    with pytest.raises(LabError, match="another constraints.txt"):
        kitfile.extract_wheels(bundle, tmp_path / "kit-wheels")


def test_wheels_with_a_changed_byte_are_refused_and_nothing_is_left(tmp_path):
    bundle = make_kit(tmp_path)
    flip_byte(bundle, "wheels/six-1.0-py3-none-any.whl")
    target = tmp_path / "venv" / "kit-wheels"
    with pytest.raises(LabError, match="has SHA-256"):
        kitfile.extract_wheels(bundle, target)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


def test_the_wheels_command_needs_only_the_standard_library(tmp_path):
    # make venv runs it with the system's python3, before any of the lab's packages is installed.
    bundle = make_kit(tmp_path)
    from lab import runner

    probe = ("import sys, runpy; sys.argv = ['kitfile', 'wheels', sys.argv[1], sys.argv[2]];"
             "runpy.run_module('lab.kitfile', run_name='__main__')")
    result = runner.run([sys.executable, "-S", "-c", probe, bundle, tmp_path / "wheels"], check=False,
                        cwd=config.REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "1 Python packages" in result.stdout
    assert (tmp_path / "wheels" / "six-1.0-py3-none-any.whl").exists()


def test_the_wheels_command_prints_the_refusal_and_fails(tmp_path, capsys):
    bundle = make_kit(tmp_path)
    flip_byte(bundle, "wheels/six-1.0-py3-none-any.whl")
    assert kitfile.main(["wheels", str(bundle), str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: refusing kit") and "hint: copy the kit again" in err


# -------------------------------------------------------------------------------- export


def test_export_refuses_a_tool_that_is_only_compatible(monkeypatch, tmp_path):
    kubectl = tmp_path / "bin" / "kubectl"
    monkeypatch.setattr(tools, "ensure_all", lambda mode: {"kubectl": kubectl})
    monkeypatch.setattr(tools, "version", lambda name: "v1.33.2")
    with pytest.raises(LabError) as error:
        kit._exact_tools()
    assert f"carries exactly {config.KUBERNETES_VERSION}" in error.value.message
    assert str(tmp_path / "bin") in error.value.hint


def test_export_takes_a_tool_at_the_pinned_version_with_build_metadata(monkeypatch, tmp_path):
    helm = tmp_path / "helm"
    monkeypatch.setattr(tools, "ensure_all", lambda mode: {"helm": helm})
    monkeypatch.setattr(tools, "version", lambda name: config.HELM_VERSION + "+g1234abc")
    assert kit._exact_tools() == {"helm": helm}


def test_export_names_unknown_parts(tmp_path):
    with pytest.raises(LabError) as error:
        kit.export(tmp_path / "k.tar", without=["docs"])
    assert "docs" in error.value.message and "node, images, tools, wheels" in error.value.hint


def test_the_lock_parses_as_wheel_names_spell_it(tmp_path):
    lock = tmp_path / "constraints.txt"
    lock.write_text("# comment\nPyYAML==6.0.2\njupyter-server==2.14.0\nruamel.yaml==0.18.6  # why\n\n")
    assert kit._pins(lock) == {"pyyaml": "6.0.2", "jupyter_server": "2.14.0", "ruamel_yaml": "0.18.6"}


def test_the_cli_prints_a_refusal_as_one_line_and_a_hint(tmp_path, cache):
    bundle = make_kit(tmp_path)
    flip_byte(bundle, kit.APPS_MEMBER)
    result = CliRunner().invoke(cli, ["kit", "verify", str(bundle)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith(("error:", "hint:"))]
    assert [line.split(":")[0] for line in lines] == ["error", "hint"]
    assert "images/apps.tar.gz has SHA-256" in lines[0]


def test_a_kit_without_wheels_says_so_to_make_venv(tmp_path, capsys):
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "kind").write_text(FAKE_KIND)
    bundle = tmp_path / "tools-only.tar"
    kitfile.write(bundle, {"parts": ["tools"], "versions": kit.pinned_versions()}, {"tools/kind": parts / "kind"})
    assert kitfile.main(["wheels", str(bundle), str(tmp_path / "wheels")]) == 1
    assert "carries no Python packages (exported --without wheels)" in capsys.readouterr().err


def test_doctor_needs_no_go_once_a_kit_brought_the_node_image(tmp_path, cache, monkeypatch):
    from lab.host import doctor

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(doctor.os, "access", lambda path, mode: False)  # no /usr/local/go either
    assert doctor.check_go().status == "warn" and "lab kit import" in doctor.check_go().fix
    record(kitfile.read_manifest(make_kit(tmp_path)))
    check = doctor.check_go()
    assert check.ok and "not needed" in check.detail


@pytest.mark.parametrize("n, shown", [(51, "51 B"), (4_200, "4 KB"), (171_850_000, "171.8 MB"),
                                      (871_900_000, "871.9 MB"), (1_130_000_000, "1.13 GB")])
def test_sizes_read_as_people_write_them(n, shown):
    assert kit.size(n) == shown


def test_an_image_retagged_during_the_export_fails_it(tmp_path, monkeypatch):
    labels = iter(["before", "after"])
    monkeypatch.setattr(docker, "image_label", lambda tag, label: next(labels))
    monkeypatch.setattr(docker, "save", lambda tags, sink: sink(b"layers"))
    with pytest.raises(LabError, match=f"{images.WEB_IMAGE} changed while the kit was being written"):
        kit._save([images.WEB_IMAGE], tmp_path / "apps.tar.gz")


def test_saved_images_are_gzipped_as_docker_load_reads_them(tmp_path, monkeypatch):
    import gzip

    monkeypatch.setattr(docker, "image_label", lambda tag, label: "same")
    monkeypatch.setattr(docker, "save", lambda tags, sink: [sink(b"layer " * 1000) for _ in range(3)])
    archive = kit._save([images.WEB_IMAGE], tmp_path / "apps.tar.gz")
    assert gzip.decompress(archive.read_bytes()) == b"layer " * 3000


@pytest.fixture
def stub_docker(tmp_path, monkeypatch):
    """A `docker` on PATH that saves a fixed stream, loads into a file, or fails as told."""
    stub = tmp_path / "bin" / "docker"
    stub.parent.mkdir()
    stub.write_text(f"""#!/bin/sh
case "$1" in
  save) [ -n "$FAIL" ] && {{ echo "Error response from daemon: reference does not exist" >&2; exit 1; }}
        head -c 3000000 /dev/zero ;;
  load) [ -n "$SLOW" ] && exec sleep 30
        cat > {tmp_path}/loaded; echo "Loaded image: k8s-lab/web:1" ;;
esac
""")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}:{os.environ['PATH']}")
    return tmp_path


def test_docker_save_streams_every_byte(stub_docker):
    got = []
    docker.save(["k8s-lab/web:1"], got.append)
    assert sum(map(len, got)) == 3_000_000 and max(map(len, got)) <= docker.CHUNK


def test_docker_save_failing_says_why(stub_docker, monkeypatch):
    monkeypatch.setenv("FAIL", "1")
    with pytest.raises(LabError, match="reference does not exist"):
        docker.save(["k8s-lab/nope:1"], lambda chunk: None)


def test_docker_load_feeds_the_archive_and_counts(stub_docker):
    archive = stub_docker / "apps.tar.gz"
    archive.write_bytes(os.urandom(2_500_000))
    counted = []
    docker.load(archive, counted.append)
    assert (stub_docker / "loaded").read_bytes() == archive.read_bytes() and sum(counted) == 2_500_000


def test_a_stuck_docker_load_ends_at_its_timeout(stub_docker, monkeypatch):
    monkeypatch.setenv("SLOW", "1")
    archive = stub_docker / "small.tar"
    archive.write_bytes(b"x")
    with pytest.raises(LabError, match="did not finish within 1s"):
        docker.load(archive, lambda n: None, timeout=1)
