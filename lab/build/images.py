"""The lab's container images: which ones a mode uses, how they are built, and loading them into kind.

Two modes:

* ``online``: a container registry is reachable. Official images are used as they are (mysql,
  python) or as bases (nginx for the web image, debian-slim for the probe image).
* ``offline``: no registry (CI). Every image is built here from Debian packages, starting with
  ``k8s-lab/debian:<suite>``, which ``debootstrap`` makes from the host's own Debian mirror.

``build()`` is idempotent: each image carries the label ``k8s-lab.inputs`` with a hash of what
it was built from (its directory under ``images/``, its build arguments and its parent's hash);
an image whose label matches is not built again. Images from a classroom kit (``lab kit import``)
carry the hashes of the machine that exported them, whose apt sources differ: they count as up
to date when the hash computed with the kit's sources matches. Set
``LAB_IMAGE_MODE=online|offline`` to skip the registry check that ``mode="auto"`` makes, and
``LAB_IMAGES_VERBOSE=1`` to see build output as it happens (it always goes to
``$LAB_CACHE_DIR/images/logs/``).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from lab import config, kitfile, runner
from lab.errors import LabError
from lab.host import docker
from lab.progress import Step, info, step

IMAGES_DIR = config.REPO_ROOT / "images"
MODES = ("online", "offline")
ROLES = ("database", "web", "watcher", "probe")
INPUTS_LABEL = "k8s-lab.inputs"
MODE_LABEL = "k8s-lab.mode"
# Bumped when the way inputs are hashed (or the debian base is assembled) changes.
HASH_SCHEMA = 1

SUITE = config.DEBIAN_SUITE
DEBIAN_BASE = f"k8s-lab/debian:{SUITE}"
NGINX_BASE_OFFLINE = f"k8s-lab/nginx:{SUITE}"
PYTHON_BASE_OFFLINE = f"k8s-lab/python:{SUITE}"
MARIADB_IMAGE = "k8s-lab/mariadb:lab"
WEB_IMAGE = "k8s-lab/web:1"
PROBE_IMAGE = "k8s-lab/probe:1"
# The pod watcher (images/watcher/), built FROM the mode's Python base.
WATCHER_IMAGE = "k8s-lab/watcher:1"
# The same watcher in Go (images/watcher-go/): a static binary FROM scratch, the same in both modes.
WATCHER_GO_IMAGE = "k8s-lab/watcher-go:1"

# Official images used when a registry is reachable.
ONLINE_DATABASE = "mysql:8.4"
ONLINE_NGINX_BASE = "nginx:1.27"
ONLINE_PYTHON = "python:3.11-slim"
ONLINE_PROBE_BASE = f"debian:{SUITE}-slim"

REGISTRY_URL = "https://registry-1.docker.io/v2/"
REGISTRY_TIMEOUT_S = 3.0
NEEDED_FREE_GIB = 5
# debootstrap and a docker build of the database image take minutes; one past this is stuck.
BUILD_TIMEOUT_S = 1800
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Files that document an image directory but do not go into the image.
_UNHASHED_SUFFIXES = (".md", ".pyc")
_UNHASHED_NAMES = ("__pycache__", ".DS_Store")


@dataclass(frozen=True)
class ImageSpec:
    """One image that ``build()`` makes."""

    tag: str
    context: str  # directory under images/
    build_args: tuple[tuple[str, str], ...] = ()
    parent: str | None = None  # tag of another ImageSpec this one is built FROM
    load: bool = False  # goes into the kind cluster
    imported: bool = False  # made by debootstrap + docker import, not docker build
    go_binary: str | None = None  # the context is a Go main package: lab.host.gobuild builds this binary into it


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str
    components: tuple[str, ...]

    def line(self) -> str:
        return f"deb {self.uri} {self.suite} {' '.join(self.components)}"


# --------------------------------------------------------------------------------------------
# Modes and names


def registry_reachable(url: str = REGISTRY_URL, timeout: float = REGISTRY_TIMEOUT_S) -> bool:
    """True when a container registry answers an HTTPS HEAD (any HTTP status counts)."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # 401 from a registry that wants a token is still a registry
    except (urllib.error.URLError, OSError, ValueError):
        return False


@functools.lru_cache(maxsize=1)
def _auto_mode() -> str:
    forced = os.environ.get("LAB_IMAGE_MODE", "").strip().lower()
    if forced and forced != "auto":
        return _check_mode(forced)
    return "online" if registry_reachable() else "offline"


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise LabError(
            f"unknown image mode {mode!r}",
            hint="use one of: auto, online, offline (or set LAB_IMAGE_MODE)",
        )
    return mode


def resolve_mode(mode: str = "auto") -> str:
    """``online`` or ``offline``; ``auto`` asks LAB_IMAGE_MODE, then whether a registry answers."""
    if not isinstance(mode, str):
        raise LabError(f"unknown image mode {mode!r}", hint="use one of: auto, online, offline")
    mode = mode.strip().lower()
    if mode == "auto":
        return _auto_mode()
    return _check_mode(mode)


def image_names(mode: str = "auto") -> dict[str, str]:
    """Image references by role (database, web, watcher, probe): what runs in the cluster."""
    mode = resolve_mode(mode)
    if mode == "online":
        return {
            "database": ONLINE_DATABASE,
            "web": WEB_IMAGE,
            "watcher": WATCHER_IMAGE,
            "probe": PROBE_IMAGE,
        }
    return {
        "database": MARIADB_IMAGE,
        "web": WEB_IMAGE,
        "watcher": WATCHER_IMAGE,
        "probe": PROBE_IMAGE,
    }


WATCHER_GO_SPEC = ImageSpec(WATCHER_GO_IMAGE, "watcher-go", load=True, go_binary="k8s-lab-watcher-go")


def plan(mode: str) -> list[ImageSpec]:
    """The images ``build(mode)`` makes, parents before children."""
    mode = resolve_mode(mode)
    if mode == "online":
        return [
            ImageSpec(WEB_IMAGE, "web", (("NGINX_BASE", ONLINE_NGINX_BASE),), load=True),
            ImageSpec(PROBE_IMAGE, "probe", (("BASE_IMAGE", ONLINE_PROBE_BASE),), load=True),
            ImageSpec(WATCHER_IMAGE, "watcher", (("BASE_IMAGE", ONLINE_PYTHON),), load=True),
            WATCHER_GO_SPEC,
        ]
    base = (("BASE_IMAGE", DEBIAN_BASE),)
    return [
        ImageSpec(DEBIAN_BASE, "debian", imported=True),
        ImageSpec(MARIADB_IMAGE, "mysql", base, parent=DEBIAN_BASE, load=True),
        ImageSpec(NGINX_BASE_OFFLINE, "nginx", base, parent=DEBIAN_BASE),
        ImageSpec(WEB_IMAGE, "web", (("NGINX_BASE", NGINX_BASE_OFFLINE),), parent=NGINX_BASE_OFFLINE, load=True),
        ImageSpec(PYTHON_BASE_OFFLINE, "python", base, parent=DEBIAN_BASE),
        ImageSpec(PROBE_IMAGE, "probe", base, parent=DEBIAN_BASE, load=True),
        ImageSpec(WATCHER_IMAGE, "watcher", (("BASE_IMAGE", PYTHON_BASE_OFFLINE),),
                  parent=PYTHON_BASE_OFFLINE, load=True),
        WATCHER_GO_SPEC,
    ]


# --------------------------------------------------------------------------------------------
# Input hashing


def tree_digest(directory: Path) -> str:
    """sha256 over the relative paths, executable bits and contents of the files in a directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LabError(f"image directory {directory} is missing", hint="is this a complete checkout?")
    h = hashlib.sha256()
    for path in sorted(directory.rglob("*"), key=lambda p: p.relative_to(directory).as_posix()):
        rel = path.relative_to(directory)
        if any(part in _UNHASHED_NAMES for part in rel.parts) or path.name.endswith(_UNHASHED_SUFFIXES):
            continue
        if path.is_symlink():
            h.update(f"L {rel.as_posix()} -> {os.readlink(path)}\0".encode())
        elif path.is_file():
            executable = "x" if os.access(path, os.X_OK) else "-"
            h.update(f"F {rel.as_posix()} {executable}\0".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def inputs_hash(
    spec: ImageSpec,
    parent_hash: str | None = None,
    extra: dict | None = None,
    images_dir: Path | None = None,
) -> str:
    """The value of the ``k8s-lab.inputs`` label for an image built from ``spec``."""
    doc = {
        "schema": HASH_SCHEMA,
        "tag": spec.tag,
        "tree": tree_digest((images_dir or IMAGES_DIR) / spec.context),
        "args": sorted(list(a) for a in spec.build_args),
        "parent": parent_hash,
        "extra": extra or {},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def plan_hashes(
    mode: str,
    sources: Sequence[AptSource] | None = None,
    images_dir: Path | None = None,
) -> dict[str, str]:
    """Inputs hash per image tag for a mode; a parent's hash feeds into its children's."""
    hashes: dict[str, str] = {}
    for spec in plan(mode):
        extra = None
        if spec.imported:
            srcs = debian_sources() if sources is None else list(sources)
            extra = {"suite": SUITE, "variant": "minbase", "sources": [s.line() for s in srcs]}
        parent_hash = hashes.get(spec.parent) if spec.parent else None
        hashes[spec.tag] = inputs_hash(spec, parent_hash, extra, images_dir)
    return hashes


def kit_hashes(mode: str) -> dict[str, str]:
    """Inputs hash per image tag as the machine that exported the imported classroom kit computed
    them (with its apt sources); empty without an imported kit."""
    lines = (kitfile.imported() or {}).get("debian_sources")
    if not lines:
        return {}
    return plan_hashes(mode, sources=parse_sources_list("\n".join(lines)))


def up_to_date(tag: str, hashes: dict[str, str], kit: dict[str, str]) -> bool:
    """Whether the image under `tag` was built from this checkout's inputs, here or on the machine
    that exported the imported kit."""
    label = docker.image_label(tag, INPUTS_LABEL)
    return label is not None and label in (hashes[tag], kit.get(tag))


# --------------------------------------------------------------------------------------------
# The host's Debian mirror


_OFFICIAL_COMPONENTS = ("main", "contrib", "non-free", "non-free-firmware")


def _wanted_suite(suite: str) -> bool:
    return suite in (SUITE, f"{SUITE}-updates", f"{SUITE}-security", f"{SUITE}/updates")


def parse_sources_list(text: str) -> list[AptSource]:
    """Entries of a one-line-style sources.list: ``deb [opts] uri suite component...``."""
    found = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)  # drop [arch=... signed-by=...]
        words = line.split()
        if len(words) < 4 or words[0] != "deb":
            continue
        found.append(AptSource(words[1], words[2], tuple(words[3:])))
    return found


def parse_deb822(text: str) -> list[AptSource]:
    """Entries of a deb822 ``.sources`` file (Types/URIs/Suites/Components paragraphs)."""
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in paragraph.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        components = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                found.append(AptSource(uri, suite, components))
    return found


def debian_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    """The host's apt entries for the lab's suite (main, -updates, -security), official parts only.

    Falls back to deb.debian.org when the host has none (e.g. it is not Debian).
    """
    entries: list[AptSource] = []
    main_list = etc_apt / "sources.list"
    if main_list.is_file():
        entries += parse_sources_list(main_list.read_text(errors="replace"))
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                entries += parse_sources_list(path.read_text(errors="replace"))
            elif path.suffix == ".sources":
                entries += parse_deb822(path.read_text(errors="replace"))
    chosen: list[AptSource] = []
    for entry in entries:
        if not _wanted_suite(entry.suite) or not entry.uri.startswith(("http://", "https://", "file:/")):
            continue
        components = tuple(c for c in entry.components if c in _OFFICIAL_COMPONENTS) or ("main",)
        source = AptSource(entry.uri.rstrip("/"), entry.suite, components)
        if source not in chosen:
            chosen.append(source)
    if not any(s.suite == SUITE for s in chosen):
        chosen.insert(0, AptSource(DEFAULT_MIRROR, SUITE, ("main",)))
    return chosen


def debian_mirror(sources: Sequence[AptSource]) -> str:
    """The mirror that debootstrap fetches the suite itself from."""
    for source in sources:
        if source.suite == SUITE:
            return source.uri
    return DEFAULT_MIRROR


# --------------------------------------------------------------------------------------------
# Output


def _verbose() -> bool:
    return os.environ.get("LAB_IMAGES_VERBOSE", "").lower() in ("1", "true", "yes")


def _log_dir() -> Path:
    path = config.cache_dir() / "images" / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run_logged(cmd: Sequence[object], log_path: Path, what: str, progress: Step, input=None,
                env=None) -> None:
    """Run a long command with its output in a log file, its latest line on the progress step
    (and every line on the terminal when verbose)."""
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(map(str, cmd))}\n")

        def record(line: str) -> None:
            log.write(line + "\n")
            if _verbose():
                print(line, file=sys.stderr)
            if line.strip():
                progress.update(line.strip()[:100])

        result = runner.run(cmd, what=what, input=input, env=env, check=False, timeout=BUILD_TIMEOUT_S,
                            on_line=record, hint=f"full log: {log_path}")
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-25:]
        raise LabError(
            f"{what} failed (exit {result.returncode}); last lines:\n" + "\n".join("    " + t for t in tail),
            hint=f"full log: {log_path}",
        )


# --------------------------------------------------------------------------------------------
# Docker


def _docker_build(spec: ImageSpec, mode: str, inputs: str, progress: Step) -> None:
    log_path = _log_dir() / f"{spec.context}.log"
    log_path.write_text("")

    def build(temporary: str) -> None:
        cmd = [docker.executable(), "build", "--rm", "--force-rm", "-t", temporary,
               "--label", f"{INPUTS_LABEL}={inputs}", "--label", f"{MODE_LABEL}={mode}"]
        for key, value in spec.build_args:
            cmd += ["--build-arg", f"{key}={value}"]
        with tempfile.TemporaryDirectory(prefix="context-", dir=config.cache_dir()) as scratch:
            cmd.append(str(_go_context(spec, Path(scratch)) if spec.go_binary else IMAGES_DIR / spec.context))
            _run_logged(cmd, log_path, f"building {spec.tag}", progress)

    docker.make_image([spec.tag], build)


def _go_context(spec: ImageSpec, directory: Path) -> Path:
    """A build context with the image's Dockerfile and its Go program, built (or cached) by lab.host.gobuild."""
    from lab.host import gobuild

    source = IMAGES_DIR / spec.context
    binary = gobuild.build(gobuild.GoBuild(name=spec.context, packages=(".",), outputs=(spec.go_binary,),
                                           source=source)) / spec.go_binary
    shutil.copy2(source / "Dockerfile", directory / "Dockerfile")
    shutil.copy2(binary, directory / spec.go_binary)
    return directory


# --------------------------------------------------------------------------------------------
# The Debian base image


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mount_point = line.split()[4].replace("\\040", " ")
            if mount_point.startswith(prefix) or mount_point == prefix.rstrip("/"):
                found.append(mount_point)
    return found


def _unmount_all_under(path: Path) -> None:
    """debootstrap mounts /proc, /sys (and in containers binds /dev) into the target: undo leftovers."""
    for mount_point in sorted(_mounts_under(path), key=len, reverse=True):
        runner.run(["umount", "-l", mount_point], check=False, timeout=60)
    left = _mounts_under(path)
    if left:
        raise LabError(
            f"cannot unmount {', '.join(left)}; refusing to delete {path}",
            hint="unmount them by hand (umount -l PATH) and try again",
        )


def _clean_rootfs(rootfs: Path) -> None:
    """Remove what must not end up in the image: apt lists and caches, logs, device nodes, docs."""
    _unmount_all_under(rootfs)  # never delete through a bind mount of the host's /dev

    def empty(rel: str, keep: Iterable[str] = ()) -> None:
        directory = rootfs / rel
        if not directory.is_dir() or directory.is_symlink():
            return
        for child in directory.iterdir():
            if child.name in keep:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    for rel in ("var/lib/apt/lists", "var/cache/apt", "var/cache/debconf/tmp", "var/log", "tmp",
                "var/tmp", "dev", "run", "usr/share/man", "usr/share/info", "usr/share/groff",
                "usr/share/lintian"):
        empty(rel, keep=("partial",) if rel == "var/lib/apt/lists" else ())
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    empty("usr/share/locale", keep=("locale.alias",))
    doc = rootfs / "usr/share/doc"
    if doc.is_dir():
        for package in doc.iterdir():
            if package.is_dir() and not package.is_symlink():
                for child in package.iterdir():
                    if child.name != "copyright":
                        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for old in (rootfs / "var/cache/debconf").glob("*-old"):
        old.unlink()
    for rel in ("etc/resolv.conf", "etc/hostname", "etc/hosts", "etc/machine-id"):
        target = rootfs / rel
        if target.is_symlink() or target.exists():
            target.unlink()
    (rootfs / "etc/machine-id").write_text("")  # systemd convention: empty, filled at boot
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "var/tmp").chmod(0o1777)


def _make_rootfs_tarball(tarball: Path, sources: Sequence[AptSource], progress: Step) -> None:
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is not installed", hint="bash scripts/setup-host (it installs it)")
    if os.geteuid() != 0:
        raise LabError("debootstrap needs root to build the offline base image", hint="run this as root")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    rootfs = workdir / "rootfs"
    log_path = _log_dir() / "debian.log"
    log_path.write_text("")
    try:
        cmd = ["debootstrap", "--variant=minbase", "--components=main"]
        if KEYRING.is_file():
            cmd.append(f"--keyring={KEYRING}")
        if any(s.uri.startswith("https://") for s in sources):
            cmd.append("--include=ca-certificates")
        cmd += [SUITE, str(rootfs), debian_mirror(sources)]
        _run_logged(cmd, log_path, f"debootstrap {SUITE}", progress)
        overlay = IMAGES_DIR / "debian" / "overlay"
        if overlay.is_dir():
            shutil.copytree(overlay, rootfs, dirs_exist_ok=True, symlinks=True)
        (rootfs / "etc/apt/sources.list").write_text(
            "# Written by k8s-lab (lab/images.py) from the build host's apt sources.\n"
            + "".join(s.line() + "\n" for s in sources)
        )
        _clean_rootfs(rootfs)
        partial = tarball.with_suffix(".tar.partial")
        _run_logged(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
                    log_path, "packing the root file system", progress)
        os.replace(partial, tarball)
    finally:
        if rootfs.exists():
            _unmount_all_under(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        partial = tarball.with_suffix(".tar.partial")
        if partial.exists():
            partial.unlink()


def rootfs_tarball(inputs: str) -> Path:
    """Where the debootstrapped root file system for these inputs is cached."""
    return config.cache_dir() / "images" / f"debian-{SUITE}-rootfs-{inputs[:16]}.tar"


def _build_debian_base(spec: ImageSpec, inputs: str, sources: Sequence[AptSource], progress: Step) -> None:
    tarball = rootfs_tarball(inputs)
    if tarball.is_file():
        progress.update(f"reusing root file system {tarball}")
    else:
        for stale in tarball.parent.glob(f"debian-{SUITE}-rootfs-*.tar"):
            stale.unlink()
        progress.update(f"debootstrap --variant=minbase {SUITE} from {debian_mirror(sources)}")
        _make_rootfs_tarball(tarball, sources, progress)
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'CMD ["bash"]',
        f"LABEL {INPUTS_LABEL}={inputs}",
        f"LABEL {MODE_LABEL}=offline",
    ]

    def import_rootfs(temporary: str) -> None:
        cmd = [docker.executable(), "import"]
        for change in changes:
            cmd += ["--change", change]
        cmd += ["--message", f"k8s-lab debootstrap {SUITE} minbase", str(tarball), temporary]
        _run_logged(cmd, _log_dir() / "debian.log", f"docker import {spec.tag}", progress)

    docker.make_image([spec.tag], import_rootfs)


def debian_base() -> str:
    """The offline Debian base, built if missing or stale; the node image kit builds on it too."""
    sources = debian_sources()
    spec = plan("offline")[0]
    inputs = plan_hashes("offline", sources=sources)[spec.tag]
    if not up_to_date(spec.tag, {spec.tag: inputs}, kit_hashes("offline")):
        docker.require_engine()
        docker.require_free_space(NEEDED_FREE_GIB, config.cache_dir())
        with step(f"building {spec.tag}") as progress:
            _build_debian_base(spec, inputs, sources, progress)
    return spec.tag


# --------------------------------------------------------------------------------------------
# build


def build(mode: str = "auto") -> list[str]:
    """Build every lab image the mode needs (skipping up-to-date ones).

    Returns the tags of the images the mode builds, parents first; :func:`to_load` names those a
    cluster needs.
    """
    mode = resolve_mode(mode)
    docker.require_engine()
    specs = plan(mode)
    sources = debian_sources() if any(s.imported for s in specs) else []
    hashes = plan_hashes(mode, sources=sources)
    kit = kit_hashes(mode)
    todo = [s for s in specs if not up_to_date(s.tag, hashes, kit)]
    info(f"images, mode {mode}: {len(specs) - len(todo)} of {len(specs)} up to date")
    if todo:
        docker.require_free_space(NEEDED_FREE_GIB, config.cache_dir())
    for spec in todo:
        with step(f"building {spec.tag}") as progress:
            if spec.imported:
                _build_debian_base(spec, hashes[spec.tag], sources, progress)
            else:
                _docker_build(spec, mode, hashes[spec.tag], progress)
    return [s.tag for s in specs]


def to_load(mode: str = "auto") -> list[str]:
    """The images of `mode` that run in the cluster (bases are only built on)."""
    return [s.tag for s in plan(resolve_mode(mode)) if s.load]
