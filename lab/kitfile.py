"""The classroom kit's file format, and the record an import leaves in the lab cache.

A kit is one uncompressed tar archive: ``manifest.json`` first, then every file the manifest lists
(``tools/``, ``wheels/``, ``images/``), each with its size and SHA-256 there. Reading checks every
member against the manifest as it streams past, so a changed byte, a cut-off copy or a stray file
is found before anything is used.

Standard library only (and the equally plain :mod:`lab.errors` and :mod:`lab.config`): before the
lab's Python packages are installed, ``make venv KIT=FILE`` runs ``python3 -m lab.kitfile wheels
FILE DIR`` to take the checked wheels out of the kit.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from lab import config
from lab.errors import LabError

FORMAT = 1
MANIFEST = "manifest.json"
CONSTRAINTS = config.REPO_ROOT / "constraints.txt"
# Member names are plain files in one of these folders: nothing a tar could smuggle (absolute
# paths, `..`, links) ever matches.
MEMBER_NAME = re.compile(r"^(tools|wheels|images)/[A-Za-z0-9][A-Za-z0-9._+-]*$")
CHUNK = 1 << 20
# Every refusal ends the same way: the reader knows the lab cache is as it was.
UNTOUCHED = "nothing was imported"

OnBytes = Callable[[int], None]


def _ignore(_: int) -> None:
    """The default progress callback."""


def sha256_file(path: Path, on_bytes: OnBytes = _ignore) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            on_bytes(len(chunk))
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def constraints_digest(path: Path = CONSTRAINTS) -> str:
    """What the Python packages of a kit are locked to: the SHA-256 of constraints.txt."""
    try:
        return sha256_text(path.read_text())
    except OSError as error:
        raise LabError(f"cannot read {path}: {error.strerror}",
                       hint="is this a complete checkout of k8s-lab?") from error


def digest(manifest: dict) -> str:
    """The identity of a kit: its manifest names every file by SHA-256."""
    return sha256_text(json.dumps(manifest, sort_keys=True, separators=(",", ":")))


def python_of_this_machine() -> dict[str, str]:
    """The interpreter wheels must fit: binary wheels are built for one Python and one machine."""
    return {"version": f"{sys.version_info[0]}.{sys.version_info[1]}", "machine": platform.machine()}


# --------------------------------------------------------------------------------------------
# Writing


def write(bundle: Path, manifest: dict, files: dict[str, Path], on_bytes: OnBytes = _ignore) -> dict:
    """Write the kit: `manifest` plus a ``members`` entry (size, SHA-256) for each of `files`
    (name in the kit -> file). The archive appears under its name only when complete."""
    for name in files:
        if not MEMBER_NAME.match(name):
            raise LabError(f"{name!r} cannot go into a kit", hint="name members tools/X, wheels/X or images/X")
    manifest = {**manifest, "format": FORMAT,
                "members": {name: {"size": path.stat().st_size, "sha256": sha256_file(path, on_bytes)}
                            for name, path in files.items()}}
    text = json.dumps(manifest, indent=2, sort_keys=True).encode()
    bundle = Path(bundle)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    partial = bundle.with_name(f".{bundle.name}.partial-{os.getpid()}")
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_info(MANIFEST, len(text)), io.BytesIO(text))
            for name, path in files.items():
                with open(path, "rb") as handle:
                    tar.addfile(_info(name, manifest["members"][name]["size"]), _Reader(handle, on_bytes))
        os.replace(partial, bundle)
    finally:
        if partial.exists():
            partial.unlink()
    return manifest


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info


class _Reader:
    """A file object that reports how many bytes were read from it (tarfile copies from it)."""

    def __init__(self, handle, on_bytes: OnBytes):
        self.handle, self.on_bytes = handle, on_bytes

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.on_bytes(len(chunk))
        return chunk


# --------------------------------------------------------------------------------------------
# Reading


def _refuse(bundle: Path, problem: str, hint: str) -> LabError:
    return LabError(f"refusing kit {bundle}: {problem}; {UNTOUCHED}", hint=hint)


COPY_AGAIN = "copy the kit again from the instructor's original (`sha256sum` of both should agree)"


def _open(bundle: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(bundle, "r:")
    except FileNotFoundError:
        raise LabError(f"no kit at {bundle}", hint="name the file `lab kit export` wrote") from None
    except IsADirectoryError:
        raise LabError(f"{bundle} is a directory, not a kit", hint="name the file `lab kit export` wrote") from None
    except (tarfile.TarError, EOFError) as error:
        raise _refuse(bundle, f"not a kit archive ({error})", COPY_AGAIN) from None


def read_manifest(bundle: Path) -> dict:
    """The manifest of a kit, checked for shape (not yet against the files: see :func:`extract`)."""
    bundle = Path(bundle)
    with _open(bundle) as tar:
        try:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise _refuse(bundle, f"it does not start with {MANIFEST}",
                              "this is not a file `lab kit export` wrote")
            manifest = json.loads(tar.extractfile(first).read())
        except (tarfile.TarError, EOFError, ValueError) as error:
            raise _refuse(bundle, f"its manifest is unreadable ({error})", COPY_AGAIN) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise _refuse(bundle, f"kit format {found!r}, this lab reads format {FORMAT}",
                      "export the kit again with this checkout's `lab kit export`")
    members = manifest.get("members")
    if not isinstance(members, dict) or not all(
            MEMBER_NAME.match(name) and isinstance(entry, dict) and isinstance(entry.get("size"), int)
            and isinstance(entry.get("sha256"), str) for name, entry in members.items()):
        raise _refuse(bundle, "its manifest lists malformed members", COPY_AGAIN)
    return manifest


def extract(bundle: Path, manifest: dict, destination: Path | None,
            wanted: Callable[[str], bool] = lambda name: True, on_bytes: OnBytes = _ignore) -> list[str]:
    """Check every member of the kit against `manifest`; write the `wanted` ones under
    `destination` (names as in the kit). Any difference is a LabError after which `destination`
    holds only what the caller must throw away. Returns the names written."""
    bundle = Path(bundle)
    expected: dict = manifest["members"]
    seen: set[str] = set()
    written = []
    with _open(bundle) as tar:
        try:
            tar.next()  # the manifest, read already
            while (member := tar.next()) is not None:
                name = member.name
                if name not in expected or name in seen or not member.isfile():
                    raise _refuse(bundle, f"it holds {name!r}, which its manifest does not list",
                                  "this kit was altered after `lab kit export` wrote it; " + COPY_AGAIN)
                seen.add(name)
                entry = expected[name]
                if member.size != entry["size"]:
                    raise _refuse(bundle, f"{name} has {member.size} bytes, the manifest says {entry['size']}",
                                  COPY_AGAIN)
                target = destination / name if destination is not None and wanted(name) else None
                actual = _copy_member(tar, member, target, on_bytes)
                if actual != entry["sha256"]:
                    raise _refuse(bundle, f"{name} has SHA-256 {actual[:16]}…, the manifest says "
                                          f"{entry['sha256'][:16]}…", COPY_AGAIN)
                if target is not None:
                    written.append(name)
        except (tarfile.TarError, EOFError) as error:
            raise _refuse(bundle, f"it is truncated or damaged ({error})", COPY_AGAIN) from None
    missing = sorted(set(expected) - seen)
    if missing:
        raise _refuse(bundle, f"{len(missing)} of its {len(expected)} files are missing (first: {missing[0]}); "
                              "the copy is probably cut short", COPY_AGAIN)
    return written


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path | None, on_bytes: OnBytes) -> str:
    source = tar.extractfile(member)
    digest = hashlib.sha256()
    sink = None
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        sink = open(target, "wb")
    try:
        left = member.size
        while left:
            chunk = source.read(min(CHUNK, left))
            if not chunk:
                raise EOFError("unexpected end of data")
            left -= len(chunk)
            digest.update(chunk)
            if sink is not None:
                sink.write(chunk)
            on_bytes(len(chunk))
    finally:
        if sink is not None:
            sink.close()
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# The wheels, before the lab is installed


def check_python(bundle: Path, manifest: dict, python: dict[str, str] | None = None) -> None:
    """Refuse wheels built for another Python or another machine (numpy, pandas and others are
    binary)."""
    here = python or python_of_this_machine()
    made = manifest.get("python") or {}
    if (made.get("version"), made.get("machine")) != (here["version"], here["machine"]):
        raise _refuse(bundle, f"its Python packages are for Python {made.get('version')} on {made.get('machine')}, "
                              f"this is Python {here['version']} on {here['machine']}",
                      f"create the venv with Python {made.get('version')} (make venv PYTHON=python{made.get('version')}),"
                      f" or export the kit on a machine with Python {here['version']}")


def check_constraints(bundle: Path, manifest: dict, path: Path = CONSTRAINTS) -> None:
    if manifest.get("versions", {}).get("python packages") != constraints_digest(path):
        raise _refuse(bundle, f"its Python packages were locked by another {path.name} than this checkout's",
                      "export the kit from the same k8s-lab commit the students use")


def extract_wheels(bundle: Path, directory: Path, python: dict[str, str] | None = None) -> list[str]:
    """The kit's wheels, checked, in `directory` (replaced as a whole, only when all are good)."""
    bundle, directory = Path(bundle), Path(directory)
    manifest = read_manifest(bundle)
    wheels = [name for name in manifest["members"] if name.startswith("wheels/")]
    if not wheels:
        raise _refuse(bundle, "it carries no Python packages (exported --without wheels)",
                      "export the kit with its wheels, or install without KIT")
    check_python(bundle, manifest, python)
    check_constraints(bundle, manifest)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        extract(bundle, manifest, staging, wanted=lambda name: name.startswith("wheels/"))
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(staging / "wheels", directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(Path(name).name for name in wheels)


# --------------------------------------------------------------------------------------------
# The import record


def record_path() -> Path:
    return config.cache_dir() / "kit" / "imported.json"


def imported() -> dict | None:
    """The manifest of the kit last imported into this lab cache, or None."""
    try:
        record = json.loads(record_path().read_text())
    except (OSError, ValueError):
        return None
    return record.get("manifest") if isinstance(record, dict) else None


def write_record(manifest: dict, bundle: Path) -> None:
    """Written last by an import, in one rename: before it, the builders see no kit at all."""
    path = record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_text(json.dumps({"bundle": str(bundle), "digest": digest(manifest), "manifest": manifest},
                                  indent=2, sort_keys=True))
    os.replace(partial, path)


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] != "wheels":
        print("usage: python3 -m lab.kitfile wheels KIT DIRECTORY", file=sys.stderr)
        return 2
    try:
        names = extract_wheels(Path(args[1]), Path(args[2]))
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{len(names)} Python packages from {args[1]} checked, in {args[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
