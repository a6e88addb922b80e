"""A fresh machine's `make lab`, timed phase by phase: the cold build path and the classroom-kit path.

Each path runs `make lab` in a fresh clone of this repository (the committed HEAD), with a lab
cache, Go build cache and Go module cache of its own (empty temporary directories) and a cluster
of its own (LAB_CLUSTER=k8s-lab-cold, deleted afterwards), and prints when each phase began:
venv, host and doctor; kit import; cluster up; images; the first notebook running and passed.
Targets (issue 15): the kit path under 5 minutes to the first notebook running, the build path
under 30 minutes on 2 cores.

  build   compiles Kubernetes and the rest from Go modules, debootstraps the images: about 25
          minutes of both cores. A fresh machine has no k8s-lab images; where Docker holds some,
          the script refuses (their layers would make the numbers meaningless) unless told
          --remove-images, which deletes them: never on a machine others use.
  kit     `make lab KIT=FILE` with no package index (PIP_NO_INDEX), no Go module proxy
          (GOPROXY=off) and `go`, kind, kubectl and helm on PATH replaced by stubs that fail: any
          build or download fails the run. The kit is FILE (--kit) or exported from this checkout
          first (`lab kit export`, timed). Images already in Docker are loaded again under the
          same IDs, so their layers exist: a fresh machine unpacks them too (bench_kit.py --kit
          times a load into an empty store).

  python bench/bench_cold.py kit --first-notebook      # the kit path up to the first notebook
  python bench/bench_cold.py build --remove-images     # a fresh CI machine only
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = "k8s-lab-cold"
TARGET_S = {"kit": 300, "build": 1800}
# Where each phase of `make lab` begins: the first output line that contains the text.
PHASES = (
    ("host and doctor", "scripts/setup-host"),
    ("kit import", "lab kit import"),
    ("cluster up", "lab cluster up"),
    ("images", "lab images build"),
    ("first notebook running", "lab run --notebooks-dir"),
    ("first notebook passed", "passed 00-"),
)
STUBBED = ("go", "kind", "kubectl", "helm")


def lab_images() -> list[str]:
    out = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], check=True,
                         capture_output=True, text=True).stdout.split()
    return sorted(ref for ref in out if ref.startswith("k8s-lab/"))


def fresh_clone(scratch: Path) -> Path:
    clone = scratch / "k8s-lab"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    if subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True,
                      text=True).stdout.strip():
        print("note: this checkout has uncommitted changes; the clone runs the committed HEAD", flush=True)
    return clone


def stubs(scratch: Path) -> Path:
    """A directory of scripts that fail loudly, first on PATH: nothing may build or download."""
    directory = scratch / "stubs"
    directory.mkdir()
    for name in STUBBED:
        stub = directory / name
        stub.write_text(f'#!/bin/sh\necho "bench_cold: {name} was called ($*): the kit path must not need it" >&2\n'
                        "exit 127\n")
        stub.chmod(0o755)
    return directory


def environment(scratch: Path, path: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("LAB_") and key not in ("VIRTUAL_ENV", "PIP_FIND_LINKS", "GOFLAGS")}
    env.update(LAB_CACHE_DIR=str(scratch / "lab-cache"), GOCACHE=str(scratch / "go-cache"),
               GOMODCACHE=str(scratch / "go-mod-cache"), LAB_CLUSTER=CLUSTER, LAB_IMAGE_MODE="offline")
    if path == "kit":
        env.update(PATH=f"{stubs(scratch)}:{env['PATH']}", GOPROXY="off", PIP_NO_INDEX="1")
    return env


def export_kit(scratch: Path) -> Path:
    bundle = scratch / "k8s-lab-kit.tar"
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "lab.cli", "kit", "export", str(bundle)], check=True, cwd=ROOT)
    print(f"{'kit export (this checkout)':<32} {time.monotonic() - start:8.1f} s   "
          f"{bundle.stat().st_size / 1e9:.2f} GB", flush=True)
    return bundle


def make_lab(clone: Path, env: dict[str, str], kit: Path | None, first_notebook: bool, log: Path) -> dict[str, float]:
    """Run `make lab`, noting when each phase began; returns seconds from the start per phase."""
    seen: dict[str, float] = {}
    start = time.monotonic()
    process = subprocess.Popen(["make", "lab", f"KIT={kit or ''}"], cwd=clone, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    with open(log, "w") as out:
        for line in process.stdout:
            out.write(line)
            out.flush()
            now = time.monotonic() - start
            for phase, marker in PHASES:
                if phase not in seen and marker in line:
                    seen[phase] = now
                    print(f"  {phase:<30} at {now:7.1f} s", flush=True)
            if first_notebook and "first notebook passed" in seen:
                os.killpg(process.pid, signal.SIGTERM)
                break
    code = process.wait()
    seen["end"] = time.monotonic() - start
    if code != 0 and not (first_notebook and "first notebook passed" in seen):
        raise SystemExit(f"make lab failed (exit {code}); its output: {log}")
    return seen


def cluster_down(clone: Path, env: dict[str, str]) -> None:
    subprocess.run([str(clone / ".venv" / "bin" / "lab"), "cluster", "down"], env=env, cwd=clone,
                   capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", choices=("kit", "build"))
    parser.add_argument("--kit", type=Path, help="the kit to import (default: export one from this checkout)")
    parser.add_argument("--first-notebook", action="store_true",
                        help="stop once the first notebook has passed (the target's measure)")
    parser.add_argument("--remove-images", action="store_true",
                        help="delete Docker's k8s-lab images first, as on a fresh machine (never where others work)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and the cluster")
    args = parser.parse_args()
    present = lab_images()
    if present and args.path == "build":
        if not args.remove_images:
            raise SystemExit(f"Docker holds {len(present)} k8s-lab images ({', '.join(present[:3])}, …): "
                             "not a fresh machine. Run on one, or pass --remove-images to delete them.")
        subprocess.run(["docker", "rmi", *present], check=True, capture_output=True)
    scratch = Path(tempfile.mkdtemp(prefix="k8s-lab-cold-"))
    print(f"{args.path} path in {scratch} (cluster {CLUSTER})", flush=True)
    clone = fresh_clone(scratch)
    env = environment(scratch, args.path)
    kit = None
    if args.path == "kit":
        kit = args.kit.absolute() if args.kit else export_kit(scratch)
    try:
        seen = make_lab(clone, env, kit, args.first_notebook, scratch / "make-lab.log")
    finally:
        if not args.keep:
            cluster_down(clone, env)
    print(f"\n{'phase of make lab (' + args.path + ' path)':<32} {'began at':>9}")
    for phase, _ in PHASES:
        if phase in seen:
            print(f"{phase:<32} {seen[phase]:8.1f} s")
    print(f"{'make lab ' + ('stopped' if args.first_notebook else 'finished'):<32} {seen['end']:8.1f} s")
    running = seen.get("first notebook running")
    if running is not None:
        target = TARGET_S[args.path]
        print(f"{'to the first notebook running':<32} {running:8.1f} s   (target <= {target} s: "
              f"{'met' if running <= target else 'missed'})")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
