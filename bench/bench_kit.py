"""Benchmark of the air-gapped kit.

Prints, in one run:
  * the offline node image build time (warm: everything cached; `--cold` uses an empty lab cache
    and Go build cache, which rebuilds every binary and image from Go modules and Debian packages);
  * warm `lab cluster up` (node image cached, cluster absent) against plain `kind create cluster`
    with the same image and config, and their ratio (target: at most 1.2).

It works on a cluster of its own (LAB_CLUSTER=k8s-lab-bench, host port 30180), so the lab's
cluster keeps running.

With `--kit` it times the classroom kit instead (no cluster): `lab kit export` of everything, its
size per part, `lab kit verify`, then, as a student machine with a fresh lab cache and `go`,
kind, kubectl and helm on PATH replaced by failing stubs, `lab kit import`, `lab tools`,
`lab images build --no-load` (which must build nothing) and a venv from the kit's wheels with no
package index. `--empty-docker` imports into a private Docker engine with an empty image store
(its own data root and socket, started and stopped here) so that `docker load` unpacks every
layer, as on a fresh machine; without it the images load into this engine, which holds them.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LAB_CLUSTER", "k8s-lab-bench")
os.environ.setdefault("LAB_WEB_HOST_PORT", "30180")

from lab import config  # noqa: E402
from lab.build import nodeimage  # noqa: E402
from lab.cluster import kind  # noqa: E402
from lab.host import tools  # noqa: E402
from lab.target import Target  # noqa: E402

TARGET = Target.of()  # LAB_CLUSTER, set above: the benchmark's own cluster, never the lab's

PLAIN_NAME = "k8s-lab-bench-plain"


def timed(label: str, fn) -> float:
    start = time.monotonic()
    fn()
    seconds = time.monotonic() - start
    print(f"{label:<48} {seconds:8.1f} s", flush=True)
    return seconds


def node_image_build(cold: bool) -> float:
    if not cold:
        return timed("node image build (warm, all cached)", nodeimage.build)
    with tempfile.TemporaryDirectory(prefix="k8s-lab-cold-") as scratch:
        os.environ["LAB_CACHE_DIR"] = scratch
        os.environ["GOCACHE"] = str(Path(scratch) / "gocache")
        try:
            return timed("node image build (cold)", lambda: nodeimage.build(force=True))
        finally:
            del os.environ["LAB_CACHE_DIR"], os.environ["GOCACHE"]


def plain_kind(image: str) -> float:
    kind = str(tools.ensure("kind"))
    rendered = config.cache_dir() / "kind-config-bench.yaml"
    import yaml
    rendered.write_text(yaml.safe_dump(kind.render_config(0, TARGET.data_dir)))
    # The plain cluster cannot share the host port with the benchmark's lab cluster; drop it.
    document = yaml.safe_load(rendered.read_text())
    document["nodes"][0].pop("extraPortMappings", None)
    rendered.write_text(yaml.safe_dump(document))
    subprocess.run([kind, "delete", "cluster", "--name", PLAIN_NAME], capture_output=True)
    try:
        return timed("plain `kind create cluster --wait 5m`", lambda: subprocess.run(
            [kind, "create", "cluster", "--name", PLAIN_NAME, "--image", image, "--config",
             str(rendered), "--wait", "5m"], check=True, capture_output=True,
            env=tools.env_with_tools()))
    finally:
        subprocess.run([kind, "delete", "cluster", "--name", PLAIN_NAME], capture_output=True)


def lab_cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "lab.cli", *map(str, args)], cwd=ROOT, text=True,
                            capture_output=True, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise SystemExit(f"lab {' '.join(map(str, args))} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result


def student_path(scratch: Path) -> str:
    """PATH with stubs for go, kind, kubectl and helm that fail: an import path that needed one fails."""
    stubs = scratch / "stubs"
    stubs.mkdir()
    for name in ("go", "kind", "kubectl", "helm"):
        (stubs / name).write_text(f"#!/bin/sh\necho 'bench: {name} was called' >&2\nexit 127\n")
        (stubs / name).chmod(0o755)
    return f"{stubs}:{os.environ['PATH']}"


@contextlib.contextmanager
def private_docker(scratch: Path):
    """A Docker engine of our own with an empty image store; yields its DOCKER_HOST."""
    root = scratch / "docker"
    (root / "exec").mkdir(parents=True)
    (root / "daemon.json").write_text("{}")
    socket = root / "docker.sock"
    with open(root / "dockerd.log", "w") as log:
        daemon = subprocess.Popen(
            ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "--pidfile", str(root / "docker.pid"), "--host", f"unix://{socket}", "--config-file",
             str(root / "daemon.json"), "--bridge", "none", "--iptables=false", "--ip6tables=false",
             "--containerd-namespace", "k8s-lab-bench", "--containerd-plugins-namespace", "k8s-lab-bench-p"],
            stdout=log, stderr=subprocess.STDOUT)
    host = f"unix://{socket}"
    try:
        for _ in range(60):
            if subprocess.run(["docker", "-H", host, "info"], capture_output=True).returncode == 0:
                break
            time.sleep(1)
        else:
            raise SystemExit(f"the private Docker engine did not start: {root / 'dockerd.log'}")
        yield host
    finally:
        daemon.terminate()
        daemon.wait(60)


def kit_bench(keep: Path | None, empty_docker: bool) -> None:
    from lab import kitfile
    from lab.build import kit

    with tempfile.TemporaryDirectory(prefix="k8s-lab-kit-bench-") as scratch_name:
        scratch = Path(scratch_name)
        bundle = keep or scratch / "k8s-lab-kit.tar"
        if bundle.exists():
            print(f"{'lab kit export':<48} skipped: {bundle} exists")
        else:
            timed("lab kit export (everything)", lambda: lab_cli("kit", "export", bundle))
        print(f"{'  kit size':<48} {bundle.stat().st_size / 1e9:8.2f} GB")
        for line in kit.describe(kitfile.read_manifest(bundle)):
            print(f"    {line}")
        timed("lab kit verify", lambda: lab_cli("kit", "verify", bundle))
        student = {"LAB_CACHE_DIR": str(scratch / "student-cache"), "PATH": student_path(scratch),
                   "LAB_IMAGE_MODE": "offline"}
        with contextlib.ExitStack() as stack:
            if empty_docker:
                student["DOCKER_HOST"] = stack.enter_context(private_docker(scratch))
            where = "an empty Docker" if empty_docker else "this Docker, which holds the images"
            timed(f"lab kit import ({where})", lambda: lab_cli("kit", "import", bundle, env=student))
            timed("lab tools (from the kit, no go)", lambda: lab_cli("tools", "--offline", env=student))
            built = lab_cli("images", "build", "--offline", "--no-load", env=student)
            if "building" in built.stdout + built.stderr:
                raise SystemExit("lab images build built something after the import:\n" + built.stderr)
            print(f"{'lab images build after it':<48} builds nothing")
        venv = scratch / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        no_index = {**os.environ, "PIP_CONSTRAINT": str(ROOT / "constraints.txt"), "PIP_NO_INDEX": "1"}
        no_index.pop("PIP_FIND_LINKS", None)
        timed("venv from the kit's wheels (no index)", lambda: (
            subprocess.run([sys.executable, "-m", "lab.kitfile", "wheels", str(bundle), str(scratch / "wheels")],
                           check=True, cwd=ROOT, capture_output=True),
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
                            "--no-compile", "--find-links", str(scratch / "wheels"), f"{ROOT}[notebook]"],
                           check=True, env=no_index)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time a build from empty caches")
    parser.add_argument("--kit", action="store_true", help="time the classroom kit instead (no cluster)")
    parser.add_argument("--kit-file", type=Path,
                        help="with --kit: write the kit here and keep it (one that exists is reused, not exported)")
    parser.add_argument("--empty-docker", action="store_true",
                        help="with --kit: import into a private Docker engine with an empty image store")
    args = parser.parse_args()
    if args.kit:
        kit_bench(args.kit_file.absolute() if args.kit_file else None, args.empty_docker)
        return
    node_image_build(cold=args.cold)
    image = nodeimage.build()
    if kind.exists(TARGET):
        kind.down(TARGET)
    lab_up = timed("warm `lab cluster up` (to nodes Ready + DNS)",
                   lambda: kind.up(TARGET, mode="offline"))
    kind.down(TARGET)
    plain = plain_kind(image)
    print(f"{'ratio lab/plain':<48} {lab_up / plain:8.2f} x   (target <= 1.20)")


if __name__ == "__main__":
    main()
