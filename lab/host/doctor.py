"""Host checks before the lab starts: Docker, tools, disk, memory, Python packages.

:func:`run_checks` returns :class:`Check` rows; the CLI prints them. A failed *required* check
means the lab cannot work on this host; a failed optional one is a warning.
"""
from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from lab import kitfile, runner
from lab.config import cache_dir
from lab.errors import LabError

GIB = 1024**3
OFFLINE_BUILD_DISK_GIB = 20
MIN_AVAILABLE_MEMORY_GIB = 2
TOOLS = ("kind", "helm", "kubectl")
DISTRIBUTION = "k8s-lab"
SETUP_HOST = "run scripts/setup-host (installs Debian's docker.io and starts the engine)"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "FAIL" if self.required else "warn"


def check_docker(timeout: float = 20) -> Check:
    docker = shutil.which("docker")
    if not docker:
        return Check("docker", False, "docker CLI not found on PATH", SETUP_HOST)
    try:
        proc = runner.run([docker, "info", "--format", "{{.ServerVersion}}"], timeout=timeout, check=False)
    except LabError as exc:
        return Check("docker", False, exc.message, SETUP_HOST)
    version = proc.stdout.strip()
    if proc.returncode != 0 or not version:
        reason = (proc.stderr.strip().splitlines() or ["no answer from the engine"])[-1]
        return Check("docker", False, f"the engine does not answer `docker info`: {reason}", SETUP_HOST)
    return Check("docker", True, f"engine {version} ({docker})")


def check_tool(name: str) -> Check:
    """Look a tool up through lab.host.tools; a missing tool is a warning: `lab cluster up` provides it."""
    try:
        from lab.host import tools
    except ImportError:
        return Check(name, False, "unknown: lab.host.tools is not available to look it up", "", required=False)
    try:
        path = tools.find(name)
    except Exception as exc:  # noqa: BLE001 - a broken lookup is reported, not raised
        return Check(name, False, f"unknown: lookup failed ({exc})", "", required=False)
    if path is None:
        return Check(
            name, False, "not installed yet: `lab cluster up` downloads it or builds it with Go", "",
            required=False,
        )
    try:
        version = tools.version(name)
    except Exception:  # noqa: BLE001
        version = None
    return Check(name, True, f"{version or 'version unknown'} ({path})")


def check_go() -> Check:
    go = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None)
    if not go:
        if (kitfile.imported() or {}).get("node_image"):
            return Check("go", True, "not installed, not needed: the imported classroom kit brings what it builds")
        return Check("go", False, "Go toolchain not found",
                     "install Go (Debian: golang-go) to build offline, or import a classroom kit (lab kit import FILE)",
                     required=False)
    try:
        out = runner.run([go, "version"], timeout=20, check=False).stdout.strip()
    except LabError:
        out = ""
    return Check("go", True, f"{out or 'version unknown'} ({go})")


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(path: Path | None = None, need_gib: float = OFFLINE_BUILD_DISK_GIB, required: bool = True) -> Check:
    target = Path(path or cache_dir())
    free = shutil.disk_usage(_existing_parent(target)).free
    detail = f"{free / GIB:.1f} GiB free for {target}"
    if free >= need_gib * GIB:
        return Check("disk", True, detail)
    return Check(
        "disk", False, f"{detail}; an offline build needs {need_gib:g} GiB",
        "free space there, or point LAB_CACHE_DIR at a larger disk", required=required,
    )


def read_meminfo(path: Path = Path("/proc/meminfo")) -> dict[str, int]:
    """/proc/meminfo as bytes per field."""
    info: dict[str, int] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^(\w+):\s+(\d+)\s*kB", line)
        if m:
            info[m.group(1)] = int(m.group(2)) * 1024
    return info


def check_memory(meminfo: Path = Path("/proc/meminfo"), need_gib: float = MIN_AVAILABLE_MEMORY_GIB) -> Check:
    try:
        info = read_meminfo(meminfo)
    except OSError as exc:
        return Check("memory", False, f"cannot read {meminfo}: {exc}", "", required=False)
    total, available = info.get("MemTotal"), info.get("MemAvailable")
    if total is None or available is None:
        return Check("memory", False, f"no MemTotal/MemAvailable in {meminfo}", "", required=False)
    detail = f"{available / GIB:.1f} GiB available of {total / GIB:.1f} GiB"
    if available >= need_gib * GIB:
        return Check("memory", True, detail)
    return Check("memory", False, f"{detail}; the cluster needs {need_gib:g} GiB",
                 "stop other containers or programs, or use a larger machine")


def _requirement_name(requirement: str) -> tuple[str, bool]:
    """('pandas', optional?) from a requirement string such as 'pandas>=2; extra == "x"'."""
    name = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return name, "extra ==" in requirement.replace("extra==", "extra ==")


def check_python_packages(distribution: str = DISTRIBUTION) -> list[Check]:
    try:
        requirements = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return [Check("python packages", False, f"{distribution} is not installed", "pip install -e . (make lab does it)")]
    missing, optional_missing = [], []
    for req in requirements:
        name, optional = _requirement_name(req)
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            (optional_missing if optional else missing).append(name)
    checks = []
    if missing:
        checks.append(Check("python packages", False, "missing: " + ", ".join(missing), "pip install -e . (make lab does it)"))
    else:
        checks.append(Check("python packages", True, f"{sum(not _requirement_name(r)[1] for r in requirements)} required packages installed"))
    if optional_missing:
        checks.append(Check("jupyterlab", False, "missing: " + ", ".join(optional_missing),
                            "pip install -e '.[notebook]' to open the notebooks in JupyterLab", required=False))
    return checks


def check_kernel(name: str = "python3") -> Check:
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return Check("kernel", False, "jupyter_client is not installed", "pip install -e .")
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return Check("kernel", False, f"no Jupyter kernel named {name}", "pip install ipykernel")
    interpreter = spec.argv[0]
    if interpreter in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        interpreter = sys.executable  # jupyter_client starts such kernels with this interpreter
    return Check("kernel", True, f"{name}: {interpreter}")


def run_checks(mode: str = "auto") -> list[Check]:
    """Every check, in the order a student would fix them.

    ``mode`` is the build mode the lab will use: disk space for the offline build is required
    unless it is ``online``.
    """
    checks = [check_docker()]
    checks += [check_tool(name) for name in TOOLS]
    checks.append(check_go())
    checks.append(check_disk(required=mode != "online"))
    checks.append(check_memory())
    checks += check_python_packages()
    checks.append(check_kernel())
    return checks


def failed_required(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.required and not c.ok]
