"""Benchmark of the air-gapped kit.

Prints, in one run:
  * the offline node image build time (warm: everything cached; `--cold` uses an empty lab cache
    and Go build cache, which rebuilds every binary and image from Go modules and Debian packages);
  * warm `lab cluster up` (node image cached, cluster absent) against plain `kind create cluster`
    with the same image and config, and their ratio (target: at most 1.2).

It works on a cluster of its own (LAB_CLUSTER=k8s-lab-bench, host port 30180), so the lab's
cluster keeps running.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time a build from empty caches")
    args = parser.parse_args()
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
