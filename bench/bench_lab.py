"""`make lab`'s notebook run against the same deployment done by a plain script, in one run.

Prints the wall time of `lab run` (every notebook, headless, warm caches, per notebook from its
report) and of a plain script that only applies the manifests layer by layer with kubectl and
waits for each workload (`kubectl apply` + `kubectl rollout status`), plus the ratio. The
difference is what the lab adds on top of "apply and wait": checkpoints, probes, plots, the watcher,
backups and the drill.

It uses the lab's cluster and namespace (k8s-assignment) and leaves the namespace empty, as
notebook 99 does: run it when nothing else uses them.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.system import deploy  # noqa: E402
from lab.cluster import kube  # noqa: E402
from lab.target import Target  # noqa: E402

TARGET = Target.of()  # the lab's cluster (or LAB_CLUSTER's), in the lab's namespace


def lab_run(out: Path) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "lab.cli", "run", "--out", str(out)], check=True)
    seconds = time.monotonic() - start
    report = json.loads((out / "report.json").read_text())
    for entry in report["results"]:
        print(f"  {entry['notebook']:<28} {entry['duration_s']:7.1f} s  {entry['status']}")
    return seconds


def plain_script() -> float:
    start = time.monotonic()
    for layer in deploy.layers():
        kube.kubectl("apply", "-f", "-", stdin=deploy.render_layer(layer), target=TARGET)
        for kind in ("statefulset", "deployment"):
            names = kube.kubectl("-n", TARGET.namespace, "get", kind, "-o", "name", target=TARGET).stdout.split()
            for name in names:
                kube.kubectl("-n", TARGET.namespace, "rollout", "status", name, "--timeout=300s",
                             timeout=320, target=TARGET)
    return time.monotonic() - start


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="k8s-lab-bench-") as scratch:
        notebooks = lab_run(Path(scratch))
    print(f"{'lab run (all notebooks, headless)':<48} {notebooks:8.1f} s")
    deploy.undeploy(TARGET)  # the plain script starts from the same empty namespace the notebooks did
    plain = plain_script()
    print(f"{'plain script (kubectl apply + rollout status)':<48} {plain:8.1f} s")
    print(f"{'ratio lab run / plain':<48} {notebooks / plain:8.1f} x")
    deploy.undeploy(TARGET)


if __name__ == "__main__":
    main()
