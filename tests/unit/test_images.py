"""lab.build.images without Docker: modes, names, input hashing, apt sources, guards."""
from __future__ import annotations

import http.server
import os
import shutil
import socket
import threading
from collections import namedtuple
from pathlib import Path

import pytest

from lab.host import docker
from lab.build import images
from lab.errors import LabError
from lab.target import Target

SOURCES = [
    images.AptSource("http://deb.debian.org/debian", "bookworm", ("main",)),
    images.AptSource("http://deb.debian.org/debian-security", "bookworm-security", ("main",)),
]


@pytest.fixture(autouse=True)
def _fresh_auto_mode(monkeypatch):
    monkeypatch.delenv("LAB_IMAGE_MODE", raising=False)
    images._auto_mode.cache_clear()
    yield
    images._auto_mode.cache_clear()


@pytest.fixture
def images_copy(tmp_path: Path) -> Path:
    """A private copy of images/ that a test may edit."""
    target = tmp_path / "images"
    shutil.copytree(images.IMAGES_DIR, target, symlinks=True)
    return target


# ------------------------------------------------------------------------------------ names


def test_image_names_offline():
    assert images.image_names("offline") == {
        "database": "k8s-lab/mariadb:lab",
        "web": "k8s-lab/web:1",
        "watcher": "k8s-lab/watcher:1",
        "probe": "k8s-lab/probe:1",
    }


def test_image_names_online_uses_official_images():
    names = images.image_names("online")
    assert names["database"] == "mysql:8.4"
    assert names["watcher"] == "k8s-lab/watcher:1"
    assert names["web"] == "k8s-lab/web:1"
    assert names["probe"] == "k8s-lab/probe:1"


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_every_role_has_an_image(mode):
    assert tuple(images.image_names(mode)) == images.ROLES


@pytest.mark.parametrize("mode", ["ONLINE", " offline "])
def test_mode_is_case_and_space_insensitive(mode):
    assert images.resolve_mode(mode) == mode.strip().lower()


@pytest.mark.parametrize("bad", ["", "fast", "on-line", None, 1])
def test_bad_mode_is_a_lab_error(bad):
    with pytest.raises(LabError) as err:
        images.image_names(bad)
    assert "mode" in err.value.message
    assert "offline" in err.value.hint


def test_build_rejects_a_bad_mode_before_touching_docker(monkeypatch):
    monkeypatch.setattr(docker, "require_engine", lambda: pytest.fail("docker was asked"))
    with pytest.raises(LabError):
        images.build("sideways")


def test_auto_mode_follows_the_registry_check(monkeypatch):
    monkeypatch.setattr(images, "registry_reachable", lambda *a, **k: False)
    assert images.resolve_mode("auto") == "offline"
    assert images.image_names()["database"] == "k8s-lab/mariadb:lab"
    images._auto_mode.cache_clear()
    monkeypatch.setattr(images, "registry_reachable", lambda *a, **k: True)
    assert images.resolve_mode("auto") == "online"


def test_lab_image_mode_env_skips_the_registry_check(monkeypatch):
    monkeypatch.setattr(images, "registry_reachable", lambda *a, **k: pytest.fail("network was asked"))
    monkeypatch.setenv("LAB_IMAGE_MODE", "offline")
    assert images.resolve_mode("auto") == "offline"
    images._auto_mode.cache_clear()
    monkeypatch.setenv("LAB_IMAGE_MODE", "bogus")
    with pytest.raises(LabError):
        images.resolve_mode("auto")


# ------------------------------------------------------------------------------------- plan


def test_offline_plan_builds_parents_first_from_the_debian_base():
    specs = images.plan("offline")
    tags = [s.tag for s in specs]
    assert tags[0] == "k8s-lab/debian:bookworm" and specs[0].imported
    for spec in specs:
        if spec.parent:
            assert tags.index(spec.parent) < tags.index(spec.tag)
    args = {s.tag: dict(s.build_args) for s in specs}
    assert args["k8s-lab/web:1"] == {"NGINX_BASE": "k8s-lab/nginx:bookworm"}
    for tag in ("k8s-lab/mariadb:lab", "k8s-lab/nginx:bookworm", "k8s-lab/python:bookworm", "k8s-lab/probe:1"):
        assert args[tag] == {"BASE_IMAGE": "k8s-lab/debian:bookworm"}
    assert args["k8s-lab/watcher:1"] == {"BASE_IMAGE": "k8s-lab/python:bookworm"}
    # Everything a manifest refers to is built and goes into the cluster; so is the Go watcher,
    # which chart value watcher.implementation=go (or manifests/05-watcher/go/) runs instead.
    loaded = {s.tag for s in specs if s.load}
    assert set(images.image_names("offline").values()) | {images.WATCHER_GO_IMAGE} == loaded


def test_online_plan_builds_only_the_lab_images_on_official_bases():
    specs = images.plan("online")
    assert {s.tag: dict(s.build_args) for s in specs} == {
        "k8s-lab/web:1": {"NGINX_BASE": "nginx:1.27"},
        "k8s-lab/probe:1": {"BASE_IMAGE": "debian:bookworm-slim"},
        "k8s-lab/watcher:1": {"BASE_IMAGE": "python:3.11-slim"},
        "k8s-lab/watcher-go:1": {},  # FROM scratch: a static Go binary
    }
    assert all(s.load and s.parent is None and not s.imported for s in specs)


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_every_image_directory_has_a_dockerfile_with_a_base_arg(mode):
    for spec in images.plan(mode):
        if spec.imported:
            continue
        dockerfile = (images.IMAGES_DIR / spec.context / "Dockerfile").read_text()
        for key, _ in spec.build_args:
            assert f"ARG {key}=" in dockerfile
            assert f"FROM ${{{key}}}" in dockerfile


def test_web_dockerfile_defaults_to_the_official_nginx():
    assert "ARG NGINX_BASE=nginx:1.27" in (images.IMAGES_DIR / "web" / "Dockerfile").read_text()


# ---------------------------------------------------------------------------------- hashing


def test_tree_digest_sees_content_names_and_exec_bits(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "run.sh").write_text("echo hi\n")
    first = images.tree_digest(tmp_path)
    assert images.tree_digest(tmp_path) == first

    (tmp_path / "run.sh").chmod(0o755)
    executable = images.tree_digest(tmp_path)
    assert executable != first

    (tmp_path / "run.sh").write_text("echo bye\n")
    assert images.tree_digest(tmp_path) != executable

    (tmp_path / "run.sh").rename(tmp_path / "go.sh")
    renamed = images.tree_digest(tmp_path)
    (tmp_path / "go.sh").rename(tmp_path / "run.sh")
    assert renamed != images.tree_digest(tmp_path)


def test_tree_digest_ignores_docs_and_bytecode(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    before = images.tree_digest(tmp_path)
    (tmp_path / "README.md").write_text("notes\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert images.tree_digest(tmp_path) == before


def test_tree_digest_of_a_missing_directory_is_a_lab_error(tmp_path):
    with pytest.raises(LabError):
        images.tree_digest(tmp_path / "nope")


def test_inputs_hash_covers_build_args_and_parent():
    spec = images.ImageSpec("k8s-lab/probe:1", "probe", (("BASE_IMAGE", "a"),))
    base = images.inputs_hash(spec)
    assert images.inputs_hash(spec) == base and len(base) == 64
    other_args = images.ImageSpec("k8s-lab/probe:1", "probe", (("BASE_IMAGE", "b"),))
    assert images.inputs_hash(other_args) != base
    assert images.inputs_hash(spec, parent_hash="0" * 64) != base
    assert images.inputs_hash(spec, extra={"suite": "trixie"}) != base


def test_plan_hashes_are_stable_and_differ_between_modes():
    offline = images.plan_hashes("offline", sources=SOURCES)
    assert offline == images.plan_hashes("offline", sources=SOURCES)
    online = images.plan_hashes("online", sources=SOURCES)
    assert offline["k8s-lab/web:1"] != online["k8s-lab/web:1"]
    assert offline["k8s-lab/probe:1"] != online["k8s-lab/probe:1"]


def test_a_changed_debian_base_rebuilds_everything_built_on_it(images_copy):
    before = images.plan_hashes("offline", sources=SOURCES, images_dir=images_copy)
    (images_copy / "debian" / "overlay" / "etc" / "k8s-lab-extra").write_text("x\n")
    after = images.plan_hashes("offline", sources=SOURCES, images_dir=images_copy)
    on_debian = [tag for tag in before if tag != images.WATCHER_GO_IMAGE]  # FROM scratch
    assert all(before[tag] != after[tag] for tag in on_debian)
    assert before[images.WATCHER_GO_IMAGE] == after[images.WATCHER_GO_IMAGE]


def test_a_changed_mirror_list_changes_only_through_the_base():
    other = [images.AptSource("http://mirror.example/debian", "bookworm", ("main",))]
    a = images.plan_hashes("offline", sources=SOURCES)
    b = images.plan_hashes("offline", sources=other)
    assert a["k8s-lab/debian:bookworm"] != b["k8s-lab/debian:bookworm"]
    assert a["k8s-lab/web:1"] != b["k8s-lab/web:1"]  # web -> nginx -> debian


def test_a_changed_web_template_rebuilds_only_the_web_image(images_copy):
    before = images.plan_hashes("offline", sources=SOURCES, images_dir=images_copy)
    template = images_copy / "web" / "templates" / "index.html.tmpl"
    template.write_text(template.read_text() + "<!-- changed -->\n")
    after = images.plan_hashes("offline", sources=SOURCES, images_dir=images_copy)
    changed = {tag for tag in before if before[tag] != after[tag]}
    assert changed == {"k8s-lab/web:1"}


# ------------------------------------------------------------------------------ apt sources


def test_parse_one_line_sources():
    text = """
# comment
deb http://deb.debian.org/debian bookworm main contrib
deb [arch=amd64 signed-by=/x.gpg] http://deb.debian.org/debian bookworm-updates main
deb-src http://deb.debian.org/debian bookworm main
"""
    assert images.parse_sources_list(text) == [
        images.AptSource("http://deb.debian.org/debian", "bookworm", ("main", "contrib")),
        images.AptSource("http://deb.debian.org/debian", "bookworm-updates", ("main",)),
    ]


def test_parse_deb822_sources():
    text = """Types: deb deb-src
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
"""
    assert images.parse_deb822(text) == [
        images.AptSource("http://deb.debian.org/debian", "bookworm", ("main",)),
        images.AptSource("http://deb.debian.org/debian", "bookworm-updates", ("main",)),
        images.AptSource("http://deb.debian.org/debian-security", "bookworm-security", ("main",)),
    ]


def test_debian_sources_keeps_the_suite_and_drops_third_party_repos(tmp_path):
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main non-free-firmware\n"
    )
    (parts / "vendor.list").write_text("deb https://packages.vendor.example/apt cloud-sdk-bookworm main\n")
    (parts / "old.list").write_text("deb http://mirror.example/debian bullseye main\n")
    found = images.debian_sources(tmp_path)
    assert found == [
        images.AptSource("http://mirror.example/debian", "bookworm", ("main", "non-free-firmware")),
        images.AptSource("http://mirror.example/debian", "bookworm-updates", ("main", "non-free-firmware")),
    ]
    assert images.debian_mirror(found) == "http://mirror.example/debian"


def test_debian_sources_falls_back_to_deb_debian_org(tmp_path):
    found = images.debian_sources(tmp_path)
    assert found == [images.AptSource(images.DEFAULT_MIRROR, "bookworm", ("main",))]


# ---------------------------------------------------------------------------------- guards


def test_registry_reachable_counts_any_http_answer(monkeypatch):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # a registry without a token answers 401
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert images.registry_reachable(f"http://127.0.0.1:{server.server_port}/v2/", timeout=3)
    finally:
        server.shutdown()
        server.server_close()


def test_registry_unreachable_when_nothing_listens():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert not images.registry_reachable(f"http://127.0.0.1:{port}/v2/", timeout=1)


def test_too_little_disk_fails_with_the_number_needed(monkeypatch, tmp_path):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(docker, "data_root", lambda: tmp_path)
    monkeypatch.setattr(docker.shutil, "disk_usage", lambda p: Usage(10 * 1024**3, 9 * 1024**3, 1024**3))
    with pytest.raises(LabError) as err:
        docker.require_free_space(images.NEEDED_FREE_GIB, tmp_path)
    assert "needs 5 GiB" in err.value.message
    assert "1.0 GiB free" in err.value.message


def test_enough_disk_passes(monkeypatch, tmp_path):
    Usage = namedtuple("Usage", "total used free")
    measured = []
    # A remote engine's data root is not on this machine, so it is not measured.
    monkeypatch.setattr(docker, "data_root", lambda: tmp_path / "remote-engine-root")
    monkeypatch.setattr(docker.shutil, "disk_usage",
                        lambda p: measured.append(p) or Usage(100 * 1024**3, 0, 50 * 1024**3))
    docker.require_free_space(images.NEEDED_FREE_GIB, tmp_path, tmp_path / "not-yet-created")
    assert measured == [tmp_path, tmp_path]


def test_up_to_date_images_are_not_rebuilt(monkeypatch):
    hashes = images.plan_hashes("online")
    monkeypatch.setattr(docker, "require_engine", lambda: None)
    monkeypatch.setattr(docker, "image_label", lambda ref, label: hashes[ref])
    monkeypatch.setattr(docker, "require_free_space", lambda *a: pytest.fail("disk checked for nothing"))
    monkeypatch.setattr(images, "_docker_build", lambda *a, **k: pytest.fail("rebuilt an up-to-date image"))
    assert images.build("online") == ["k8s-lab/web:1", "k8s-lab/probe:1", "k8s-lab/watcher:1",
                                                  "k8s-lab/watcher-go:1"]


def test_stale_images_are_rebuilt_after_the_disk_check(monkeypatch):
    built, checked = [], []
    monkeypatch.setattr(docker, "require_engine", lambda: None)
    monkeypatch.setattr(docker, "image_label", lambda ref, label: "stale")
    monkeypatch.setattr(docker, "require_free_space", lambda *a: checked.append(True))
    monkeypatch.setattr(images, "_docker_build",
                        lambda spec, mode, inputs, progress: built.append((spec.tag, mode)))
    images.build("online")
    assert checked == [True]
    assert built == [("k8s-lab/web:1", "online"), ("k8s-lab/probe:1", "online"),
                     ("k8s-lab/watcher:1", "online"), ("k8s-lab/watcher-go:1", "online")]


def _fake_docker(tmp_path: Path, monkeypatch) -> Path:
    """A `docker` first on PATH that succeeds and appends its arguments to the returned file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "docker-calls"
    (bin_dir / "docker").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_a_made_image_gets_its_tags_and_loses_the_temporary_one(tmp_path, monkeypatch):
    calls = _fake_docker(tmp_path, monkeypatch)
    made = []
    docker.make_image(["k8s-lab/web:1", "k8s-lab/web:latest"], made.append)
    [temporary] = made
    assert temporary.startswith("k8s-lab/web:building-")
    assert calls.read_text().splitlines() == [f"tag {temporary} k8s-lab/web:1",
                                              f"tag {temporary} k8s-lab/web:latest",
                                              f"rmi --no-prune {temporary}"]


def test_a_failed_make_tags_nothing_and_drops_the_temporary_tag(tmp_path, monkeypatch):
    calls = _fake_docker(tmp_path, monkeypatch)
    made = []

    def fail(temporary: str) -> None:
        made.append(temporary)
        raise LabError("build failed")

    with pytest.raises(LabError):
        docker.make_image(["k8s-lab/web:1"], fail)
    assert calls.read_text().splitlines() == [f"rmi --no-prune {made[0]}"]


def _fake_kind(tmp_path: Path, clusters: str) -> Path:
    kind = tmp_path / "kind"
    kind.write_text(f"#!/bin/sh\n[ \"$1\" = get ] && printf '{clusters}' && exit 0\n"
                    f"echo \"$@\" >> {tmp_path}/kind-calls\n")
    kind.chmod(0o755)
    return kind


def _use_kind(monkeypatch, kind: Path | None) -> None:
    """lab.host.tools finds `kind` (or no kind at all) and never downloads or builds a tool."""
    from lab.host import tools

    monkeypatch.setattr(tools, "find", lambda name: kind if name == "kind" else None)
    monkeypatch.setattr(tools, "ensure", lambda name, online=None: kind if name == "kind" and kind
                        else pytest.fail(f"{name} was downloaded or built just to load images"))


def test_loading_without_a_cluster_points_to_lab_cluster_up(monkeypatch, tmp_path):
    from lab.cluster import kind as lab_kind

    _use_kind(monkeypatch, _fake_kind(tmp_path, "other\\n"))
    with pytest.raises(LabError) as err:
        lab_kind.load_images(Target.of(), ["k8s-lab/web:1"])
    assert Target.of().cluster in err.value.message
    assert "lab cluster up" in err.value.hint
    assert not (tmp_path / "kind-calls").exists()


def test_loading_without_kind_points_to_lab_cluster_up(monkeypatch):
    from lab.cluster import kind as lab_kind

    _use_kind(monkeypatch, None)
    with pytest.raises(LabError) as err:
        lab_kind.load_images(Target.of(), ["k8s-lab/web:1"])
    assert "lab cluster up" in err.value.hint


def test_loading_calls_kind_load_with_the_cluster_name(monkeypatch, tmp_path):
    from lab.cluster import kind as lab_kind

    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    _use_kind(monkeypatch, _fake_kind(tmp_path, "k8s-lab\\nk8s-lab-b\\n"))
    lab_kind.load_images(Target("k8s-lab-b", "k8s-assignment"), ["k8s-lab/web:1", "k8s-lab/probe:1"])
    calls = (tmp_path / "kind-calls").read_text().split()
    assert calls == ["load", "docker-image", "--name", "k8s-lab-b", "k8s-lab/web:1", "k8s-lab/probe:1"]


def test_render_page_is_posix_sh():
    script = (images.IMAGES_DIR / "web" / "render-page").read_text()
    assert script.startswith("#!/bin/sh\n")
    assert os.access(images.IMAGES_DIR / "web" / "render-page", os.X_OK)


def test_render_page_renders_escaped_fields_without_docker(tmp_path):
    import json
    import subprocess

    env = dict(os.environ, POD_NAME="web-7d9f-abcde", POD_IP="10.244.2.5", NODE_NAME='n<1>&"2"',
               SERVING_HOST="web-7d9f-abcde", OUTPUT_DIR=str(tmp_path),
               TEMPLATE_DIR=str(images.IMAGES_DIR / "web" / "templates"))
    env.pop("POD_NAMESPACE", None)
    proc = subprocess.run(["sh", str(images.IMAGES_DIR / "web" / "render-page")], env=env,
                          capture_output=True, text=True, check=True)
    assert "web-7d9f-abcde" in proc.stdout
    page = (tmp_path / "index.html").read_text()
    assert '<meta name="pod-ip" content="10.244.2.5">' in page
    assert '<meta name="node-name" content="n&lt;1&gt;&amp;&quot;2&quot;">' in page
    # render-page writes the serving host itself: nothing is left for nginx to fill in (no SSI).
    assert '<meta name="serving-host" content="web-7d9f-abcde">' in page
    assert '<td id="serving-host">web-7d9f-abcde</td>' in page
    assert "{{" not in page and "<!--#" not in page
    doc = json.loads((tmp_path / "whoami.json").read_text())
    assert doc["pod_name"] == "web-7d9f-abcde" and doc["node_name"] == 'n<1>&"2"'
    assert doc["serving_host"] == "web-7d9f-abcde" and doc["pod_namespace"] == "unknown"


def test_render_page_without_a_serving_host_says_unknown(tmp_path):
    import json
    import subprocess

    env = dict(os.environ, POD_NAME="web-a", POD_IP="10.244.2.5", NODE_NAME="node-a", OUTPUT_DIR=str(tmp_path),
               TEMPLATE_DIR=str(images.IMAGES_DIR / "web" / "templates"))
    env.pop("SERVING_HOST", None)
    proc = subprocess.run(["sh", str(images.IMAGES_DIR / "web" / "render-page")], env=env,
                          capture_output=True, text=True, check=True)
    assert "not set: SERVING_HOST" in proc.stderr
    assert json.loads((tmp_path / "whoami.json").read_text())["serving_host"] == "unknown"
    assert '<td id="serving-host">unknown</td>' in (tmp_path / "index.html").read_text()
