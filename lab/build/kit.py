"""The classroom kit: what `make lab` builds and fetches, in one file for machines without either.

``lab kit export FILE`` (the instructor, once) packs the offline node image, the application
images, kind/kubectl/helm at the pinned versions and the wheels of every Python package at the
versions ``constraints.txt`` locks, with a manifest of versions and SHA-256 sums
(:mod:`lab.kitfile`). ``lab kit import FILE`` (each student) refuses a kit made for other
versions, checks every sum before it touches anything, then loads the images into Docker, moves
the tools into the lab cache and records the kit there: from then on the kit's images count as
up to date (:func:`node_image`, ``images.build``), so ``lab cluster up`` and ``lab images build``
need no Go toolchain and build nothing. The wheels go into the venv before the lab exists
(``make venv KIT=FILE``). The node image's check lives here, not in ``nodeimage``: that module's
own digest keys the node image, and an edit to it would mean a rebuild on every machine.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import lab
from lab import config, kitfile, runner
from lab.build import images, nodeimage
from lab.errors import LabError
from lab.host import docker, gobuild, tools
from lab.progress import Step, info, step

PARTS = ("node", "images", "tools", "wheels")
NODE_MEMBER = "images/node.tar.gz"
APPS_MEMBER = "images/apps.tar.gz"
# Level 1: most of gzip's saving on image layers at a fraction of its time.
GZIP_LEVEL = 1
# Room the import needs besides the kit's own bytes: Docker keeps the layers unpacked.
UNPACKED_PER_PACKED = 3
WHEELS_TIMEOUT_S = 1800
DEFAULT_PLACE = Path("~/k8s-lab-kit.tar")
SAME_COMMIT = "export the kit from the same k8s-lab commit the students use"


def pinned_versions() -> dict[str, str]:
    return {"kubernetes": config.KUBERNETES_VERSION, "kind": config.KIND_VERSION, "helm": config.HELM_VERSION}


def size(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} KB" if n >= 1e3 else f"{n:.0f} B"


def _counter(progress: Step, total: int | None) -> Callable[[int], None]:
    done = 0
    shown = -1

    def add(n: int) -> None:
        nonlocal done, shown
        done += n
        if done // 10**7 != shown:  # every 10 MB: enough to see it move, little to redraw
            shown = done // 10**7
            progress.update(f"{size(done)} of {size(total)}" if total else size(done))

    return add


# --------------------------------------------------------------------------------------------
# The node image


def node_image_release() -> str:
    """What this checkout makes the offline node image from, known without a Go toolchain: the
    pinned versions, the kit/ sources and the builder's code. (nodeimage.node_image_inputs() also
    keys on the Go version and the modules' go.mod files, which need `go`.)"""
    parts = [config.KUBERNETES_VERSION, config.KIND_VERSION, config.ETCD_VERSION, config.COREDNS_VERSION,
             config.CRICTL_VERSION, config.CNI_PLUGINS_VERSION, config.LOCAL_PATH_PROVISIONER_VERSION,
             config.RUNC_VERSION, images.tree_digest(gobuild.KIT_DIR),
             hashlib.sha256(Path(nodeimage.__file__).read_bytes()).hexdigest()]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def node_image_from_kit(tag: str) -> bool:
    """Whether `tag` is the imported kit's node image, made from what this checkout makes it from."""
    entry = (kitfile.imported() or {}).get("node_image") or {}
    return (entry.get("tag") == tag and entry.get("release") == node_image_release()
            and docker.image_label(tag, nodeimage.INPUTS_LABEL) == entry.get("label"))


def node_image() -> str:
    """The offline node image: the imported kit's (no Go needed to tell), else nodeimage.build()'s."""
    if node_image_from_kit(config.OFFLINE_NODE_IMAGE):
        info(f"node image {config.OFFLINE_NODE_IMAGE} is up to date (from the classroom kit)")
        return config.OFFLINE_NODE_IMAGE
    return nodeimage.build()


# --------------------------------------------------------------------------------------------
# What a kit must match


def differences(manifest: dict) -> list[str]:
    """What in `manifest` this checkout would make differently (empty: the kit fits)."""
    found = [f"{what} {manifest.get('versions', {}).get(what)} (this checkout: {here})"
             for what, here in pinned_versions().items() if manifest.get("versions", {}).get(what) != here]
    node = manifest.get("node_image")
    if node and node.get("release") != node_image_release():
        found.append(f"the node image {node.get('tag')} (kit/ or lab/build/nodeimage.py differ)")
    labels = manifest.get("images")
    if labels:
        sources = images.parse_sources_list("\n".join(manifest.get("debian_sources", [])))
        hashes = images.plan_hashes("offline", sources=sources)
        contexts = {spec.tag: spec.context for spec in images.plan("offline")}
        found += [f"the image {tag} (images/{contexts.get(tag, '?')} differs)"
                  for tag, label in sorted(labels.items()) if hashes.get(tag) != label]
        found += [f"the image {tag} (missing from the kit)" for tag in sorted(set(hashes) - set(labels))]
    if any(name.startswith("wheels/") for name in manifest.get("members", {})):
        if manifest.get("versions", {}).get("python packages") != kitfile.constraints_digest():
            found.append("the Python packages (constraints.txt differs)")
    return found


def refuse_other_versions(bundle: Path, manifest: dict) -> None:
    found = differences(manifest)
    if found:
        made = f"lab {manifest.get('lab')}" + (f", commit {manifest['commit'][:12]}" if manifest.get("commit") else "")
        raise LabError(f"refusing kit {bundle}: it was made for other versions ({made}): {'; '.join(found)}; "
                       f"{kitfile.UNTOUCHED}", hint=SAME_COMMIT)


def describe(manifest: dict) -> list[str]:
    """One line per part of the kit, for people."""
    members = manifest.get("members", {})
    lines = []
    if manifest.get("node_image"):
        lines.append(f"node image {manifest['node_image']['tag']} ({size(members[NODE_MEMBER]['size'])})")
    if manifest.get("images"):
        lines.append(f"{len(manifest['images'])} images: {', '.join(sorted(manifest['images']))} "
                     f"({size(members[APPS_MEMBER]['size'])})")
    if manifest.get("tools"):
        lines.append(", ".join(f"{name} {version}" for name, version in sorted(manifest["tools"].items())))
    wheels = [name for name in members if name.startswith("wheels/")]
    if wheels:
        python = manifest.get("python", {})
        lines.append(f"{len(wheels)} Python packages for Python {python.get('version')} on {python.get('machine')} "
                     f"({size(sum(members[name]['size'] for name in wheels))})")
    return lines


# --------------------------------------------------------------------------------------------
# Export


def export(bundle: Path, without: Iterable[str] = ()) -> dict:
    """Write the kit to `bundle`, building what is missing first; returns its manifest."""
    without = set(without)
    unknown = sorted(without - set(PARTS))
    if unknown:
        raise LabError(f"unknown kit part {', '.join(unknown)}", hint=f"choose from {', '.join(PARTS)}")
    parts = [part for part in PARTS if part not in without]
    if not parts:
        raise LabError("that kit would be empty", hint=f"leave out fewer of {', '.join(PARTS)}")
    bundle = Path(bundle).expanduser().absolute()
    manifest: dict = {"lab": lab.__version__, "commit": _commit(), "parts": parts,
                      "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "versions": pinned_versions(), "python": kitfile.python_of_this_machine()}
    if "node" in parts or "images" in parts:
        docker.require_engine()
    bundle.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".kit-export-", dir=bundle.parent))
    try:
        files = _gather(parts, manifest, staging)
        found = differences(manifest)
        if found:
            raise LabError(f"the kit would not fit this checkout: {'; '.join(found)}",
                           hint="rebuild with `lab cluster up --offline` and `lab images build --offline`, then export again")
        with step(f"writing {bundle}") as progress:
            total = sum(path.stat().st_size for path in files.values())
            # Each file is read twice: once for its sum, once into the archive.
            manifest = kitfile.write(bundle, manifest, files, _counter(progress, 2 * total))
    except OSError as error:
        raise LabError(f"writing the kit failed: {error}",
                       hint=f"free disk space in {bundle.parent}, or write the kit elsewhere") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _gather(parts: list[str], manifest: dict, staging: Path) -> dict[str, Path]:
    """Build or find each part, note it in `manifest`; returns the files of the kit."""
    files: dict[str, Path] = {}
    if "node" in parts:
        tag = node_image()
        manifest["node_image"] = {"tag": tag, "label": docker.image_label(tag, nodeimage.INPUTS_LABEL),
                                  "release": node_image_release()}
        files[NODE_MEMBER] = _save([tag], staging / NODE_MEMBER)
    if "images" in parts:
        tags = images.build("offline")
        manifest["debian_sources"] = [source.line() for source in images.debian_sources()]
        manifest["images"] = {tag: docker.image_label(tag, images.INPUTS_LABEL) for tag in tags}
        # One archive: the images share their Debian base layers, which `docker save` stores once.
        files[APPS_MEMBER] = _save(tags, staging / APPS_MEMBER)
    if "tools" in parts:
        manifest["tools"] = {}
        for name, path in _exact_tools().items():
            manifest["tools"][name] = tools.pinned(name)
            files[f"tools/{name}"] = path
    if "wheels" in parts:
        manifest["versions"]["python packages"] = kitfile.constraints_digest()
        files.update({f"wheels/{wheel.name}": wheel for wheel in _wheels(staging / "wheels")})
    return files


def _commit() -> str | None:
    """The checkout's commit, for people reading a refusal (a release bundle has no .git)."""
    try:
        result = runner.run(["git", "-C", config.REPO_ROOT, "rev-parse", "HEAD"], check=False, timeout=30)
    except LabError:  # no git on this machine
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _save(tags: list[str], archive: Path) -> Path:
    """`docker save` the images into a gzipped archive; their labels must be the same before and
    after (another build retagging one meanwhile would make the manifest lie)."""
    before = {tag: docker.image_label(tag, images.INPUTS_LABEL) for tag in tags}
    archive.parent.mkdir(parents=True, exist_ok=True)
    with step(f"docker save {', '.join(tags)}") as progress, open(archive, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as packed:
        count = _counter(progress, None)

        def write(chunk: bytes) -> None:
            packed.write(chunk)
            count(len(chunk))

        docker.save(tags, write)
    changed = sorted(tag for tag in tags if docker.image_label(tag, images.INPUTS_LABEL) != before[tag])
    if changed:
        raise LabError(f"{', '.join(changed)} changed while the kit was being written",
                       hint="another build ran meanwhile; export again when it has finished")
    info(f"{archive.name}: {size(archive.stat().st_size)}")
    return archive


def _exact_tools() -> dict[str, Path]:
    """kind, kubectl and helm at exactly the pinned versions (on PATH a compatible other version
    would do for the lab here, but not for a kit that names its versions)."""
    found = tools.ensure_all("auto")
    for name, path in found.items():
        reported = tools.version(name) or "unknown"
        match = re.match(r"v\d+\.\d+\.\d+", reported)
        if match is None or match.group(0) != tools.pinned(name):
            raise LabError(f"the {name} the lab finds ({path}) is {reported}; a kit carries exactly {tools.pinned(name)}",
                           hint=f"take {path.parent} off PATH for the export, so that the lab uses its own {name}")
    return found


def _pins(constraints: Path) -> dict[str, str]:
    pins = {}
    for line in constraints.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
        if match:
            pins[_normal(match.group(1))] = match.group(2)
    return pins


def _normal(name: str) -> str:
    """A distribution name as wheel file names spell it (PEP 427: runs of -_. become _)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _wheels(directory: Path) -> list[Path]:
    """A wheel per package constraints.txt pins, at that version (pip builds those published
    only as source)."""
    directory.mkdir(parents=True, exist_ok=True)
    pins = _pins(kitfile.CONSTRAINTS)
    with step(f"{len(pins)} Python packages at the versions constraints.txt locks") as progress:
        runner.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--progress-bar", "off",
                    "--disable-pip-version-check", "--wheel-dir", directory, "-r", kitfile.CONSTRAINTS],
                   timeout=WHEELS_TIMEOUT_S, on_line=lambda line: progress.update(line.strip()[:100]),
                   hint="the wheels come from the package index (PyPI); without one, "
                        "export with --without wheels")
    wheels = sorted(directory.glob("*.whl"))
    have = {_normal(wheel.name.split("-")[0]): wheel.name.split("-")[1] for wheel in wheels}
    wrong = sorted(f"{name}=={version}" for name, version in pins.items() if have.get(name) != version)
    if wrong:
        raise LabError(f"pip made no wheel for {', '.join(wrong)}",
                       hint="check constraints.txt (`make constraints` refreshes it) and the package index")
    return wheels


# --------------------------------------------------------------------------------------------
# Verify and import


def verify(bundle: Path) -> dict:
    """Check a kit completely (versions, every sum) without importing anything; returns its manifest."""
    bundle = Path(bundle).expanduser().absolute()
    manifest = kitfile.read_manifest(bundle)
    refuse_other_versions(bundle, manifest)
    total = sum(entry["size"] for entry in manifest["members"].values())
    with step(f"checking {bundle.name} ({size(total)})") as progress:
        kitfile.extract(bundle, manifest, None, on_bytes=_counter(progress, total))
    return manifest


def already_imported(manifest: dict) -> bool:
    """Whether this very kit was imported here and what it brought is still in place."""
    record = kitfile.imported()
    if record is None or kitfile.digest(record) != kitfile.digest(manifest):
        return False
    labels = dict(manifest.get("images") or {})
    if manifest.get("node_image"):
        labels[manifest["node_image"]["tag"]] = manifest["node_image"]["label"]
    return (all(docker.image_label(tag, images.INPUTS_LABEL) == label for tag, label in labels.items())
            and all(tools.find(name) is not None for name in manifest.get("tools", {})))


def import_(bundle: Path) -> tuple[dict, bool]:
    """Import a kit into this machine's Docker and lab cache; returns its manifest and whether
    anything had to be imported (a kit imported before is left as it is)."""
    bundle = Path(bundle).expanduser().absolute()
    manifest = kitfile.read_manifest(bundle)
    refuse_other_versions(bundle, manifest)
    archives = [name for name in (NODE_MEMBER, APPS_MEMBER) if name in manifest["members"]]
    if archives:
        docker.require_engine()
    if already_imported(manifest):
        info(f"kit {bundle.name} is imported already")
        return manifest, False
    cache = config.cache_dir()
    created = not cache.exists()
    cache.mkdir(parents=True, exist_ok=True)
    needed = [name for name in manifest["members"] if not name.startswith("wheels/")]
    packed = sum(manifest["members"][name]["size"] for name in needed)
    unpacked = sum(manifest["members"][name]["size"] for name in archives) * UNPACKED_PER_PACKED
    if archives:
        docker.require_free_space(math.ceil((packed + unpacked) / 2**30), cache)
    staging = Path(tempfile.mkdtemp(prefix=".kit-import-", dir=cache))
    try:
        total = sum(entry["size"] for entry in manifest["members"].values())
        with step(f"checking {bundle.name} ({size(total)})") as progress:
            kitfile.extract(bundle, manifest, staging, wanted=needed.__contains__,
                            on_bytes=_counter(progress, total))
        _load(staging, archives, manifest)
        for name in manifest.get("tools", {}):
            tools.place(name, staging / "tools" / name)
        kitfile.write_record(manifest, bundle)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(cache.iterdir()):
            cache.rmdir()
    missing = [what for what, part in (("node image", "node"), ("application images", "images"),
                                       ("kind, kubectl and helm", "tools")) if part not in manifest.get("parts", [])]
    if missing:
        info(f"this kit has no {' and no '.join(missing)}: the lab builds them (with Go) when it needs them")
    return manifest, True


def _load(staging: Path, archives: list[str], manifest: dict) -> None:
    for name in archives:
        archive = staging / name
        with step(f"docker load {Path(name).name}") as progress:
            docker.load(archive, _counter(progress, archive.stat().st_size))
    expected = dict(manifest.get("images") or {})
    if manifest.get("node_image"):
        expected[manifest["node_image"]["tag"]] = manifest["node_image"]["label"]
    wrong = sorted(tag for tag, label in expected.items() if docker.image_label(tag, images.INPUTS_LABEL) != label)
    if wrong:
        raise LabError(f"after docker load, {', '.join(wrong)} do not carry the kit's labels",
                       hint="another process may be retagging images; run `lab kit import` again")
