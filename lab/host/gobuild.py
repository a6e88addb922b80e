"""Build Go programs from the Go module proxy into the lab cache.

Each build gets its own throw-away wrapper module (a generated go.mod that requires the upstream
module at a pinned version), so upstream `replace` directives that `go install` refuses are
handled, and every output is keyed by a hash of its inputs: a second run rebuilds nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lab.config import REPO_ROOT, cache_dir
from lab import memo, runner
from lab.errors import LabError
from lab.progress import step


# Kubernetes alone compiles for 5 to 12 minutes on 2 cores; a build past this is stuck.
BUILD_TIMEOUT_S = 3600
MODULE_DOWNLOAD_TIMEOUT_S = 900


@dataclass(frozen=True)
class GoBuild:
    """One `go build` of some packages of one module at one version."""

    name: str
    packages: tuple[str, ...]
    requires: tuple[tuple[str, str], ...] = ()
    replaces: tuple[tuple[str, str], ...] = ()
    ldflags: str = "-s -w"
    cgo: bool = False
    tags: tuple[str, ...] = ()
    # A directory of this repo with our own Go source; without a go.mod of its own it gets the
    # generated wrapper one.
    source: Path | None = None
    outputs: tuple[str, ...] = field(default=())
    # The test binary of the one package (`go test -c`), as upstream's e2e.test is made.
    test: bool = False

    def key(self) -> str:
        inputs = [self.name, self.packages, self.requires, self.replaces, self.ldflags, self.cgo,
                  self.tags, go_version()]
        if self.test:
            # Only when set, so the keys (and caches) of every other build stay as they were.
            inputs.append("test")
        digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode())
        if self.source is not None:
            for path in sorted(self.source.rglob("*")):
                if path.is_file():
                    digest.update(path.relative_to(self.source).as_posix().encode())
                    digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    def binary_names(self) -> tuple[str, ...]:
        return self.outputs or tuple(p.rstrip("/").rsplit("/", 1)[-1] for p in self.packages)


@lru_cache(maxsize=1)
def go_version() -> str:
    """The Go toolchain's version (part of every build's key), remembered per `go` binary."""
    go = shutil.which("go")
    if go is None:
        raise LabError("the offline kit builds from Go modules, but `go` is not on PATH",
                       hint="install Go 1.24 or newer (https://go.dev/dl or Debian's golang-1.2x)")
    # GOTOOLCHAIN can make one `go` binary run another toolchain: set in the environment, it is
    # asked every time; set with `go env -w`, the settings file is part of the key.
    settings = Path(os.environ.get("GOENV") or Path.home() / ".config" / "go" / "env")
    key = f"{memo.file_key(go)}|{memo.file_key(settings)}" if "GOTOOLCHAIN" not in os.environ else None
    ask = lambda: runner.run([go, "env", "GOVERSION"], timeout=60).stdout.strip()  # noqa: E731
    return memo.recall_one("go-versions", key, ask) if key else ask()


def go_env(cgo: bool) -> dict[str, str]:
    env = dict(os.environ, CGO_ENABLED="1" if cgo else "0", GOFLAGS="-mod=mod")
    # Builds must not pick up a go.work from wherever the caller happens to be.
    env["GOWORK"] = "off"
    return env


def module_dir(module: str, version: str) -> Path:
    """Download a module (cached by Go) and return where its source is. Where a module version
    sits is remembered while it is there: Go's module cache never changes a version's files."""
    key = f"{os.environ.get('GOMODCACHE', '')}|{module}@{version}"
    return Path(memo.recall_one("go-module-dirs", key, lambda: str(_download_module(module, version)),
                                valid=lambda directory: Path(directory).is_dir()))


def _download_module(module: str, version: str) -> Path:
    result = runner.run(["go", "mod", "download", "-json", f"{module}@{version}"], env=go_env(False),
                        timeout=MODULE_DOWNLOAD_TIMEOUT_S, check=False,
                        hint="check that the Go module proxy is reachable (go env GOPROXY)")
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        raise LabError(f"cannot download Go module {module}@{version}: "
                       f"{info.get('Error') or result.stderr.strip()}",
                       hint="check that the Go module proxy is reachable (go env GOPROXY)")
    return Path(info["Dir"])


def output_dir(spec: GoBuild) -> Path:
    return cache_dir() / "bin" / f"{spec.name}-{spec.key()}"


def cached(spec: GoBuild) -> Path | None:
    """The directory of an identical earlier build, if there is one."""
    out = output_dir(spec)
    return out if all((out / b).is_file() for b in spec.binary_names()) else None


def build(spec: GoBuild) -> Path:
    """Build `spec` unless an identical build is cached; return the directory of its binaries."""
    if (done := cached(spec)) is not None:
        return done
    out = output_dir(spec)
    work = cache_dir() / "build" / spec.name
    if spec.source is not None:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(spec.source, work)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "go.mod").exists():
        (work / "go.mod").write_text(_wrapper_go_mod(spec))
    # Per process: two lab processes building the same program must not delete each other's output.
    staging = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # One program gets an explicit file name (a wrapper module's own name carries a version).
    target = str(staging / spec.binary_names()[0]) if len(spec.packages) == 1 else str(staging) + "/"
    cmd = ["go", *build_verb(spec), "-trimpath", "-ldflags", spec.ldflags, "-o", target]
    if spec.tags:
        cmd += ["-tags", ",".join(spec.tags)]
    cmd += list(spec.packages)
    what = "go test -c" if spec.test else "go build"
    with step(f"{what} {spec.name} ({len(spec.packages)} programs)") as progress:
        compiled = 0

        def show(line: str) -> None:
            nonlocal compiled
            if (package := compiled_package(line, spec.test)) is not None:
                compiled += 1
                progress.update(f"{compiled} packages compiled, now {package}")

        result = runner.run(cmd, cwd=work, env=go_env(spec.cgo), timeout=BUILD_TIMEOUT_S, check=False,
                            on_line=show, hint=f"the build directory is {work}")
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise LabError(f"building {spec.name} failed:\n{result.stderr[-4000:]}",
                       hint=f"the build directory is {work}; rerun there with `go build -x`")
    if cached(spec) is not None:
        # Another lab process finished the same build first: its output is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)
        return out
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def build_verb(spec: GoBuild) -> list[str]:
    """`go build -v` names each package it compiles; `go test -c` has no such flag (its -v is the
    test binary's), so a test binary is built with -x and its compiler calls name the packages.
    -vet=off: this builds upstream's tests to run them, it does not check their source."""
    if spec.test:
        if len(spec.packages) != 1:
            raise LabError(f"{spec.name}: a test binary is built from exactly one package, "
                           f"not {len(spec.packages)}", hint="make one GoBuild per test package")
        return ["test", "-c", "-vet=off", "-x"]
    return ["build", "-v"]


_COMPILE = re.compile(r"/compile\s.*?\s-p\s+(\S+)")


def compiled_package(line: str, test: bool) -> str | None:
    """The package a line of build output says is being compiled, if it says so."""
    if test:
        match = _COMPILE.search(line)
        return match.group(1) if match else None
    return line if line and not line.startswith(("#", " ", "\t")) else None


def _wrapper_go_mod(spec: GoBuild) -> str:
    lines = [f"module k8s-lab/kit/{spec.name}", "", "go 1.24.0", ""]
    lines += [f"require {mod} {ver}" for mod, ver in spec.requires]
    if spec.replaces:
        lines += ["", "replace ("] + [f"\t{old} => {new}" for old, new in spec.replaces] + [")"]
    return "\n".join(lines) + "\n"


# Our own sources for the offline kit's Go programs, Dockerfiles and the pause binary.
KIT_DIR = REPO_ROOT / "kit"


def kit_source(name: str) -> Path:
    return KIT_DIR / name
