"""The command-line tools the lab drives: kind, helm and kubectl, at pinned versions.

Each tool is resolved in order: already on PATH at a compatible version; downloaded earlier or
imported from a classroom kit into the lab cache; built earlier; the official release download,
checked against its published SHA-256 (when the internet is reachable); `go build` from the Go
module proxy (offline).
"""
from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from lab import config, memo, runner
from lab.host import gobuild
from lab.errors import LabError
from lab.host.gobuild import GoBuild
from lab.progress import step

TOOLS = ("kind", "helm", "kubectl")


@dataclass(frozen=True)
class Tool:
    name: str
    version: str
    version_args: tuple[str, ...]
    compatible: Callable[[str], bool]
    release_url: str
    checksum_url: str
    go: Callable[[], GoBuild]
    archive_member: str | None = None


def _semver(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(x) for x in match.groups()) if match else None  # type: ignore[return-value]


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _kubectl_compatible(found: str) -> bool:
    # kubectl supports one minor version of skew either way against the API server.
    have, want = _semver(found), _semver(config.KUBERNETES_VERSION)
    return bool(have and want and have[0] == want[0] and abs(have[1] - want[1]) <= 1)


def _helm_compatible(found: str) -> bool:
    have, want = _semver(found), _semver(config.HELM_VERSION)
    return bool(have and want and have[0] == want[0] and have[1] >= want[1] - 2)


def _kubectl_build() -> GoBuild:
    from lab.build.nodeimage import kubernetes_build  # the node image builds kubectl with the rest
    return kubernetes_build()


def _helm_kube_version(go_mod: str) -> tuple[str, str]:
    """The Kubernetes (major, minor) that helm's client-go requirement stands for: v0.34.2 -> 1, 34."""
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/client-go\s+v0\.(\d+)\.\d+", go_mod, re.M)
    if match is None:
        raise LabError(f"helm {config.HELM_VERSION}'s go.mod does not require k8s.io/client-go v0.x",
                       hint="the helm build derives its Kubernetes version from that requirement")
    return "1", match.group(1)


def _helm_build() -> GoBuild:
    """helm through a wrapper module, with the ldflags helm's own Makefile sets."""
    version = config.HELM_VERSION
    # Unset, helm falls back to its compiled-in Kubernetes v1.20: `helm template` (no cluster)
    # then reports Capabilities.KubeVersion v1.20.0, rejects any chart whose kubeVersion asks for
    # more, and `helm lint` checks deprecations against 1.20. Helm's Makefile sets them from the
    # client-go version in its go.mod; the wrapper module requires only helm, so Go selects
    # exactly that client-go and helm's go.mod is the same source.
    gomod = gobuild.module_dir("helm.sh/helm/v3", version) / "go.mod"
    major, minor = _helm_kube_version(gomod.read_text())
    ldflags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={version}",
               # The module is the released tag's source, checked against go.sum.
               "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"]
    for package in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        ldflags += [f"-X {package}.k8sVersionMajor={major}", f"-X {package}.k8sVersionMinor={minor}"]
    return GoBuild(name=f"helm-{version}", packages=("helm.sh/helm/v3/cmd/helm",),
                   requires=(("helm.sh/helm/v3", version),), ldflags=" ".join(ldflags))


def _registry() -> dict[str, Tool]:
    arch = _arch()
    kind_url = f"https://kind.sigs.k8s.io/dl/{config.KIND_VERSION}/kind-linux-{arch}"
    helm_url = f"https://get.helm.sh/helm-{config.HELM_VERSION}-linux-{arch}.tar.gz"
    kubectl_url = f"https://dl.k8s.io/release/{config.KUBERNETES_VERSION}/bin/linux/{arch}/kubectl"
    return {
        "kind": Tool("kind", config.KIND_VERSION, ("version",),
                     lambda v: _semver(v) == _semver(config.KIND_VERSION),
                     kind_url, kind_url + ".sha256sum",
                     lambda: GoBuild(name=f"kind-{config.KIND_VERSION}", packages=("sigs.k8s.io/kind",),
                                     requires=(("sigs.k8s.io/kind", config.KIND_VERSION),))),
        "helm": Tool("helm", config.HELM_VERSION, ("version", "--short"), _helm_compatible,
                     helm_url, helm_url + ".sha256sum",
                     _helm_build, archive_member=f"linux-{arch}/helm"),
        "kubectl": Tool("kubectl", config.KUBERNETES_VERSION, ("version", "--client"),
                        _kubectl_compatible, kubectl_url, kubectl_url + ".sha256", _kubectl_build),
    }


def _tool(name: str) -> Tool:
    tools = _registry()
    if name not in tools:
        raise LabError(f"unknown tool {name!r}", hint=f"choose one of {', '.join(TOOLS)}")
    return tools[name]


def _reported_version(path: str | os.PathLike, tool: Tool) -> str | None:
    """The version the binary at `path` reports, remembered per binary: every notebook kernel and
    `lab` command asks for the same three tools, and their start-ups were half a second of each
    kernel's first checkpoint."""
    key = memo.file_key(path)
    return memo.recall_one("tool-versions", key, lambda: _ask_version(path, tool)) if key else None


def _ask_version(path: str | os.PathLike, tool: Tool) -> str | None:
    try:
        result = runner.run([path, *tool.version_args], timeout=20, check=False)
    except LabError:
        return None
    match = re.search(r"v\d+\.\d+\.\d+[\w.+-]*", result.stdout + result.stderr)
    return match.group(0) if result.returncode == 0 and match else None


def _download_dir(tool: Tool) -> Path:
    return config.cache_dir() / "tools" / f"{tool.name}-{tool.version}"


@lru_cache(maxsize=None)
def _found(name: str) -> Path | None:
    tool = _tool(name)
    on_path = shutil.which(name)
    if on_path:
        reported = _reported_version(Path(on_path), tool)
        if reported and tool.compatible(reported):
            return Path(on_path)
    downloaded = _download_dir(tool) / name
    if downloaded.is_file():
        return downloaded
    built = gobuild.cached(tool.go())
    if built is not None:
        return built / name
    return None


def find(name: str) -> Path | None:
    """The tool if it is already available at a compatible version; never downloads or builds."""
    return _found(name)


def pinned(name: str) -> str:
    """The version the lab pins (find() also accepts a compatible other one on PATH)."""
    return _tool(name).version


def place(name: str, binary: Path) -> Path:
    """Move a checked binary of the pinned version (from a classroom kit) to where find() looks,
    in one rename: no half-written tool is ever found."""
    target = _download_dir(_tool(name)) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    binary.chmod(0o755)
    os.replace(binary, target)
    _found.cache_clear()
    return target


def version(name: str) -> str | None:
    path = find(name)
    return _reported_version(path, _tool(name)) if path else None


def ensure(name: str, online: bool | None = None) -> Path:
    """Find the tool, or download it (online) or build it from Go modules (offline)."""
    path = find(name)
    if path is not None:
        return path
    tool = _tool(name)
    if online is None:
        online = _reachable(tool.release_url)
    if online:
        path = _download(tool)
    else:
        path = gobuild.build(tool.go()) / name
    _found.cache_clear()
    return path


def ensure_all(mode: str = "auto") -> dict[str, Path]:
    """Every tool the lab uses, found, downloaded or built. ``mode`` is "online" (download),
    "offline" (build from Go modules) or "auto" (download when each tool's release answers)."""
    online = None if mode == "auto" else mode == "online"
    return {name: ensure(name, online) for name in TOOLS}


def run(name: str, *args: object, **options) -> runner.Result:
    """Run one of the lab's tools (found, downloaded or built first) with all of them on PATH;
    `options` are :func:`lab.runner.run`'s."""
    return runner.run([ensure(name), *args], env=env_with_tools(), **options)


def env_with_tools() -> dict[str, str]:
    """The environment with every resolved tool's directory first on PATH (kind calls kubectl
    and docker; students' shells in notebooks call all three)."""
    return runner.environment(path.parent for path in map(find, TOOLS) if path is not None)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        return True
    except Exception:
        return False


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _download(tool: Tool) -> Path:
    target_dir = _download_dir(tool)
    target = target_dir / tool.name
    with step(f"download {tool.name} {tool.version}"):
        payload = _fetch(tool.release_url)
        expected = _fetch(tool.checksum_url).decode().split()[0]
        actual = hashlib.sha256(payload).hexdigest()
        if actual != expected:
            raise LabError(f"{tool.release_url} has SHA-256 {actual}, expected {expected}",
                           hint="the download was corrupted or tampered with; retry, or build "
                                "offline with `lab cluster up --offline`")
        target_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        if tool.archive_member:
            archive = target_dir / "archive.tar.gz"
            archive.write_bytes(payload)
            with tarfile.open(archive) as tar:
                member = tar.extractfile(tool.archive_member)
                if member is None:
                    raise LabError(f"{tool.archive_member} is missing from {tool.release_url}")
                partial.write_bytes(member.read())
            archive.unlink()
        else:
            partial.write_bytes(payload)
        partial.chmod(0o755)
        partial.rename(target)
    return target
