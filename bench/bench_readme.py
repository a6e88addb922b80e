"""The README's two commands, in the README's order, several times in a row (issue 15).

Each round starts where a newcomer starts: no kind cluster of the lab's (`k8s-lab` is deleted),
a fresh `git clone` of this repository's committed HEAD with no venv; then `make lab` (which ends
on the three-node cluster notebook 09 makes) and `make test` on what it left. The lab cache and
Docker's images stay as they are: on a new machine `make lab` first builds them (bench_cold.py
times that). Prints each round's times and the test suites' summary lines; stops at the first
round that fails and exits non-zero.

    python bench/bench_readme.py --rounds 3
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = "k8s-lab"
# pytest's closing line of each suite ("892 passed in 12.3s", framed by "=" unless -q) and
# make's own failures.
SUMMARY = re.compile(r"^=* ?(\d+ (?:passed|failed|error).* in [\d.]+s.*?) ?=*$|^make(?:\[\d+\])?: \*\*\*.*$")


def delete_cluster() -> None:
    subprocess.run([sys.executable, "-m", "lab.cli", "cluster", "down", "--cluster", CLUSTER], cwd=ROOT, check=True)


def timed(command: list[str], cwd: Path, log: Path) -> tuple[int, float, list[str]]:
    """Run ``command`` with its output in ``log``: exit code, seconds, the summary lines."""
    start = time.monotonic()
    with log.open("w") as sink:
        code = subprocess.run(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - start
    lines = [m.group(1) or m.group(0) for m in map(SUMMARY.match, log.read_text(errors="replace").splitlines()) if m]
    return code, seconds, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="how many times in a row (default: 3)")
    parser.add_argument("--logs", type=Path, help="keep each round's logs here (default: a temporary directory)")
    options = parser.parse_args()
    # One commit for every round, even when HEAD moves while they run.
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="k8s-lab-readme-") as scratch:
        logs = options.logs or Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        for round_ in range(1, options.rounds + 1):
            delete_cluster()
            clone = Path(scratch) / f"clone-{round_}"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
            subprocess.run(["git", "checkout", "-q", "--detach", head], cwd=clone, check=True)
            print(f"\n== round {round_} of {options.rounds}: a fresh clone of {head}, no cluster", flush=True)
            for goal in ("lab", "test"):
                code, seconds, lines = timed(["make", goal], clone, logs / f"round{round_}-make-{goal}.log")
                print(f"make {goal:<5} {'passed' if code == 0 else f'FAILED (exit {code})'} in {seconds:6.0f} s")
                for line in lines:
                    print(f"    {line}")
                if code != 0:
                    print(f"log: {logs / f'round{round_}-make-{goal}.log'}")
                    return 1
    print(f"\nall {options.rounds} rounds passed in the README's order")
    return 0


if __name__ == "__main__":
    sys.exit(main())
