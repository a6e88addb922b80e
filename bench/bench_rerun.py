"""Every notebook runs twice in a row (issue 12): each reference notebook, in order, is executed,
then at once executed again on the state its first run left, as a student who runs all cells a
second time would. Prints, per notebook, both runs' wall time, status and checkpoints passed.

`--workers N` first recreates the lab's cluster with N workers (0: one node, where 09 grows it to
three; 2: the three nodes `make lab` leaves); without it the cluster is used as it is. It uses the
lab's namespace and leaves it empty, as notebook 99 does. Exits non-zero when any run fails.

    python bench/bench_rerun.py --workers 0
    python bench/bench_rerun.py --workers 2
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from lab import evidence  # noqa: E402

REFERENCE = ROOT / "reference"
LAB = [sys.executable, "-m", "lab.cli"]


def run_once(notebook: Path, out: Path) -> dict:
    """`lab run --only` of one notebook: its status, seconds and checkpoints."""
    subprocess.run([*LAB, "run", "--notebooks-dir", str(REFERENCE), "--only", notebook.stem, "--out", str(out)],
                   check=False)
    report = json.loads((out / "report.json").read_text())["results"][0]
    records = []
    if (out / notebook.name).exists():
        cells = nbformat.read(out / notebook.name, as_version=4).cells
        records = [found[0] for cell in cells for output in cell.get("outputs", [])
                   if (found := evidence.from_output(output)) is not None and isinstance(found[0], dict)]
    return {"status": report["status"], "seconds": report["duration_s"],
            "passed": sum(1 for r in records if r["passed"]), "checkpoints": len(records)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, help="recreate the lab's cluster with this many workers first")
    args = parser.parse_args()
    if args.workers is not None:
        subprocess.run([*LAB, "cluster", "up", "--recreate", "--workers", str(args.workers)], check=True)
        subprocess.run([*LAB, "images", "build"], check=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="k8s-lab-rerun-") as scratch:
        for notebook in sorted(REFERENCE.glob("[0-9][0-9]-*.ipynb")):
            runs = [run_once(notebook, Path(scratch) / f"{notebook.stem}-{n}") for n in (1, 2)]
            rows.append((notebook.stem, runs))
            print(f"{notebook.stem}: " + "; ".join(
                f"run {n}: {r['status']} in {r['seconds']:.0f} s, {r['passed']}/{r['checkpoints']} checkpoints"
                for n, r in enumerate(runs, 1)), flush=True)
    print(f"\n{'notebook':<22} {'1st s':>7} {'2nd s':>7} {'1st':>8} {'2nd':>8}  checkpoints (2nd run)")
    failed = 0
    for stem, (first, second) in rows:
        ok = all(r["status"] == "passed" and r["passed"] == r["checkpoints"] for r in (first, second))
        failed += not ok
        print(f"{stem:<22} {first['seconds']:7.0f} {second['seconds']:7.0f} {first['status']:>8} {second['status']:>8}"
              f"  {second['passed']}/{second['checkpoints']} PASS{'' if ok else '   <- not re-runnable'}")
    print(f"\n{len(rows) - failed} of {len(rows)} notebooks ran twice in a row with every checkpoint passing")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
