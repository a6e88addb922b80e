"""`make lab`'s notebook run against a plain shell script doing the same cluster work, in one run.

Prints, per notebook, the wall time of `lab run` (the reference notebooks, headless, warm caches)
split the way its report splits it: kernel start, waiting on the cluster, the lab's own work
(checkpoints, external commands, API calls) and the rest (the notebooks' own code and plots); then
the wall time of `bench/same_work.sh`, which does the same applies, waits, probes, dumps and
restores with kubectl, helm and a shell, section by section; then the ratios against the targets
issue 11 set: the lab's own work under 10% of the wall time, a checkpoint under 50 ms, the suite
within 1.3x of the same-work script.

It uses the lab's cluster and namespace (k8s-assignment) and leaves the namespace empty, as
notebook 99 does: run it when nothing else uses them. With ``--fresh`` each side
starts where `make lab` starts on a new machine: the cluster recreated with one node and the lab's
images loaded (not timed); notebook 09, and the script's section 09, grow it to three nodes.
Without it both run on the cluster as it is (three nodes after a `make lab`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab import execute, timing  # noqa: E402
from lab.host import tools  # noqa: E402
from lab.system import deploy  # noqa: E402
from lab.target import Target  # noqa: E402

TARGET = Target.of()  # the lab's cluster (or LAB_CLUSTER's), in the lab's namespace
TARGETS = {"own work share": 0.10, "checkpoint ms": 50.0, "suite / same work": 1.3}
COLUMNS = ("kernel_s", timing.WAIT, timing.LAB, "other_s")


def lab_run(out: Path) -> tuple[float, list[dict]]:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "lab.cli", "run", "--notebooks-dir", str(ROOT / "reference"),
                    "-p", f"cluster={TARGET.cluster}", "--out", str(out)], check=True)
    seconds = time.monotonic() - start
    results = json.loads((out / "report.json").read_text())["results"]
    print(f"\n{'notebook':<28} {'total':>7} {'kernel':>7} {'wait':>7} {'lab':>7} {'other':>7} {'checks':>6} {'max ms':>7}")
    for entry in results:
        split = entry["time_split"]
        print(f"{entry['notebook']:<28} {entry['duration_s']:7.1f} "
              + " ".join(f"{split[c]:7.1f}" for c in COLUMNS)
              + f" {split.get('checkpoints', 0):6d} {split.get('checkpoint_ms_max', 0):7.0f}")
    return seconds, results


def fresh_cluster() -> None:
    """A new one-node cluster with the lab's images in its node: where `make lab` begins."""
    for args in (["cluster", "up", "--recreate", "--workers", "0"], ["images", "build"]):
        subprocess.run([sys.executable, "-m", "lab.cli", *args, "--cluster", TARGET.cluster], check=True)


def same_work() -> float:
    # The lab's own kubectl, helm and kind first on PATH, as `make lab` leaves a student's shell.
    env = dict(tools.env_with_tools(), CONTEXT=TARGET.kube_context, NS=TARGET.namespace, CLUSTER=TARGET.cluster)
    start = time.monotonic()
    subprocess.run(["bash", str(ROOT / "bench" / "same_work.sh")], check=True, env=env)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true",
                        help="recreate the cluster with one node before each side, as `make lab` finds it")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="keep the executed notebooks and the report here (default: a temporary directory)")
    options = parser.parse_args()
    fresh = options.fresh
    if fresh:
        fresh_cluster()
    with tempfile.TemporaryDirectory(prefix="k8s-lab-bench-") as scratch:
        suite, results = lab_run(options.out or Path(scratch))
    totals = {c: sum(r["time_split"][c] for r in results) for c in COLUMNS}
    checkpoints = sum(r["time_split"].get("checkpoints", 0) for r in results)
    slowest = max((r["time_split"].get("checkpoint_ms_max", 0) for r in results), default=0)
    mean = (sum(r["time_split"].get("checkpoint_ms_mean", 0) * r["time_split"].get("checkpoints", 0)
                for r in results) / checkpoints) if checkpoints else 0.0
    print(f"\n{'lab run (reference notebooks, headless)':<46} {suite:8.1f} s")
    for column in COLUMNS:
        print(f"  {column:<44} {totals[column]:8.1f} s  {100 * totals[column] / suite:5.1f} %")
    print(f"  {'checkpoints':<44} {checkpoints:8d}    mean {mean:.1f} ms, slowest {slowest:.0f} ms")
    print(f"\n{'what the lab spent its own time on':<44} {'count':>8} {'seconds':>9} {'own':>7}")
    for what, (n, seconds, own) in execute.tally([SimpleNamespace(time_split=r["time_split"]) for r in results])[:12]:
        print(f"  {what:<42} {n:8d} {seconds:9.1f} {own:7.1f}")
    if fresh:
        fresh_cluster()
    else:
        deploy.undeploy(TARGET)  # the script starts from the same empty namespace the notebooks did
    plain = same_work()
    print(f"{'bench/same_work.sh (kubectl, helm, a shell)':<46} {plain:8.1f} s")
    own = totals[timing.LAB] / suite
    print(f"\n{'target (' + ('1 node, grown to 3 by 09' if fresh else 'the cluster as it was') + ')':<30} "
          f"{'measured':>10} {'goal':>8}")
    for name, measured, goal in (("own work share", own, TARGETS["own work share"]),
                                 ("checkpoint ms (mean)", mean, TARGETS["checkpoint ms"]),
                                 ("suite / same work", suite / plain, TARGETS["suite / same work"])):
        print(f"{name:<30} {measured:10.2f} {goal:8.2f}  {'met' if measured <= goal else 'NOT met'}")
    deploy.undeploy(TARGET)


if __name__ == "__main__":
    main()
