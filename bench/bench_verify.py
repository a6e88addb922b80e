"""Benchmark of `lab cluster verify`: the build of upstream's e2e tests, and the lab's full selection
on a 1-node and a 3-node cluster (issue 15 item 1's numbers).

    python bench/bench_verify.py [--cold] [--workers 0 2] [--quick] [--keep]

1. With --cold: e2e.test and agnhost built from an empty Go build cache and an empty lab cache
   (module downloads are reused: the Go module cache is not emptied). Without it, the warm build.
2. The test images and `e2e.test --list-tests` (warm, so the run below measures the tests).
3. For each --workers N: a cluster k8s-lab-bench-verify-N of N+1 nodes made afresh, the selection
   run with the same code as `lab cluster verify`, its counts, time and failures printed, and the
   cluster deleted (--keep leaves it). The lab's own cluster is never touched.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.build import e2e  # noqa: E402
from lab.cluster import kind, verify  # noqa: E402
from lab.host import gobuild  # noqa: E402
from lab.target import Target  # noqa: E402


def timed(label: str, fn):
    start = time.monotonic()
    value = fn()
    print(f"{label:<56} {time.monotonic() - start:8.1f} s", flush=True)
    return value


def build(cold: bool) -> None:
    def both() -> None:
        gobuild.build(e2e.e2e_build())
        gobuild.build(e2e.agnhost_build())

    if not cold:
        timed("e2e.test + agnhost build (warm)", both)
        return
    with tempfile.TemporaryDirectory(prefix="k8s-lab-cold-") as scratch:
        os.environ["LAB_CACHE_DIR"] = scratch
        os.environ["GOCACHE"] = str(Path(scratch) / "gocache")
        try:
            timed("e2e.test build (cold: empty Go and lab caches)", lambda: gobuild.build(e2e.e2e_build()))
            timed("agnhost build (after it)", lambda: gobuild.build(e2e.agnhost_build()))
        finally:
            del os.environ["LAB_CACHE_DIR"], os.environ["GOCACHE"]


def run_on(workers: int, selection: verify.Selection, keep: bool) -> verify.Report:
    target = Target.of(f"k8s-lab-bench-verify-{workers}")
    if kind.exists(target):
        kind.down(target)
    timed(f"lab cluster up --workers {workers}", lambda: kind.up(target, workers=workers, mode="offline"))
    try:
        report = timed(f"lab cluster verify on {workers + 1} node(s)", lambda: verify.run(target, selection))
    finally:
        if not keep:
            kind.down(target)
    counts = report.counts()
    print(f"  {workers + 1} node(s): {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped of {report.selected} in {report.seconds:.0f} s ({report.out_dir})")
    for result in report.results:
        if not result.passed:
            print(f"    {result.status:<8} {result.seconds:7.1f} s  {result.name}: {result.message}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="build from empty Go and lab caches first")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="cluster sizes (worker nodes)")
    parser.add_argument("--quick", action="store_true", help="the quick selection instead of the full one")
    parser.add_argument("--keep", action="store_true", help="leave the benchmark clusters running")
    args = parser.parse_args()
    build(args.cold)
    selection = verify.Selection.of(quick=args.quick)
    e2e_test = e2e.e2e_binary()
    timed("test images (agnhost, httpd, tools)", lambda: e2e.build_images(e2e_test))
    names = timed("e2e.test --list-tests and the selection", lambda: selection.pick(verify.list_tests(e2e_test)))
    print(f"  {len(names)} upstream tests selected", flush=True)
    reports = [run_on(workers, selection, args.keep) for workers in args.workers]
    sys.exit(0 if all(r.ok for r in reports) else 1)


if __name__ == "__main__":
    main()
