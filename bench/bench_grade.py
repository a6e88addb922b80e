"""Benchmark of `lab grade` (no cluster needed).

Generates a class of executed submissions (default 200) in a temporary directory: 7 notebooks of
5 checkpoints each, with evidence records made by lab.checks from made-up results, some ordinary
outputs and a plot per notebook, so each submission weighs about what a real run does. A few
students fail checks, one pair copies a run and one student edits an output. Then it grades the
same class with --jobs 1 and --jobs 2 in one run and prints the seconds of each.

    python bench/bench_grade.py [--students 200] [--keep DIR]
"""
from __future__ import annotations

import argparse
import base64
import importlib
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbformat  # noqa: E402

from lab import checks  # noqa: E402
from lab.grading import grade  # noqa: E402

NOTEBOOKS = 7
CHECKS_PER_NOTEBOOK = 5
PLOT = base64.b64encode(random.Random(0).randbytes(24_000)).decode()  # ~32 KB, like a small PNG


def identity(student: str) -> dict:
    return {
        "context": "kind-k8s-lab", "kube_system_uid": f"ks-{student}", "server_version": "v1.34.4",
        "nodes": [{"name": "k8s-lab-control-plane", "uid": f"node-{student}", "os_image": "Debian GNU/Linux 12 (bookworm)",
                   "kubelet": "v1.34.4", "runtime": "containerd://1.7", "node_image": "k8s-lab/node:v1.34.4"}],
        "tools": {"kubectl": "v1.34.4", "helm": "v3.19.5", "kind": "v0.30.0"},
    }


def checkpoint_source(nb: int, i: int) -> str:
    return (f'checks.checkpoint("nb{nb}.step-{i}", points={1 + i % 3}, hint="kubectl -n k8s-assignment get all",\n'
            f'                  verify=lambda: checks.deployment_ready("web-{i}", replicas=3))')


def reference(directory: Path) -> None:
    for nb in range(1, NOTEBOOKS + 1):
        book = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell('namespace = "k8s-assignment"')
        params.metadata["tags"] = ["parameters"]
        book.cells = [params, nbformat.v4.new_code_cell("from lab import checks\nchecks.configure(namespace=namespace)")]
        for i in range(CHECKS_PER_NOTEBOOK):
            book.cells.append(nbformat.v4.new_markdown_cell(f"## Step {i}\nDo the thing, then check it."))
            book.cells.append(nbformat.v4.new_code_cell(f"!kubectl -n k8s-assignment get pods  # step {i}"))
            book.cells.append(nbformat.v4.new_code_cell(checkpoint_source(nb, i)))
        book.cells.append(nbformat.v4.new_code_cell("frame.plot()"))
        nbformat.write(book, str(directory / f"{nb:02d}-part.ipynb"))


def submission(ref: Path, out: Path, student: str, rng: random.Random) -> None:
    out.mkdir(parents=True)
    failing = {f"nb{rng.randint(1, NOTEBOOKS)}.step-{rng.randrange(CHECKS_PER_NOTEBOOK)}" for _ in range(rng.randrange(4))}
    for path in sorted(ref.glob("*.ipynb")):
        book = nbformat.read(str(path), as_version=4)
        session = checks.Session()
        for cell in book.cells:
            if cell.cell_type != "code":
                continue
            found = grade.scan_source(cell.source) if "checkpoint(" in cell.source else []
            if found:
                f = found[0]
                cid = f["check_id"]
                ok = cid not in failing
                result = checks.Result(ok, "Deployment web: 3/3 replicas ready" if ok else
                                       "Deployment web: 1/3 replicas ready; pod web-1 container web: ImagePullBackOff",
                                       {f"Deployment/{student}/{cid}": f"{student}-{cid}-d",
                                        f"Pod/{student}/{cid}-0": f"{student}-{cid}-p"})
                record = checks.make_record(cid, f["points"], result, hint=f["hint"], notebook=path.name,
                                            namespace=student, context="kind-k8s-lab", cluster=identity(student),
                                            cell_source=cell.source, session=session)
                cell.outputs = [checks.evidence_output(record)]
            elif cell.source.startswith("!kubectl"):
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="NAME READY STATUS\n" + "web-x 1/1 Running\n" * 6)]
            else:
                cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PLOT, "text/plain": "<Figure>"})]
        nbformat.write(book, str(out / path.name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="generate into this directory and keep it")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="k8s-lab-bench-grade-"))
    try:
        ref, subs = root / "reference", root / "submissions"
        ref.mkdir(parents=True, exist_ok=True)
        reference(ref)
        rng = random.Random(7)
        start = time.monotonic()
        names = [f"student-{i:03d}" for i in range(args.students)]
        for name in names[:-1]:
            submission(ref, subs / name, name, rng)
        shutil.copytree(subs / names[0], subs / names[-1])  # one copied run
        edited = next((subs / names[1]).glob("*.ipynb"))
        # an output edited after execution: the first record's message gains a character
        edited.write_text(edited.read_text().replace("replicas ready", "replicas ready!", 1))
        size = sum(p.stat().st_size for p in subs.rglob("*.ipynb"))
        print(f"generated {args.students} submissions ({args.students * NOTEBOOKS} notebooks, "
              f"{args.students * NOTEBOOKS * CHECKS_PER_NOTEBOOK} checkpoint records, {size / 1e6:.0f} MB) "
              f"in {time.monotonic() - start:.1f} s", flush=True)
        print(f"cores available: {len(os.sched_getaffinity(0))}", flush=True)

        # warm up imports (IPython's transformer, pandas, matplotlib) so both timings pay the same
        grade.expected_checks(ref)
        for module in ("matplotlib.figure", "pandas"):
            importlib.import_module(module)

        tables = {}
        for jobs in (1, 2):
            start = time.monotonic()
            book = grade.grade([subs], reference_dir=ref, jobs=jobs)
            graded = time.monotonic() - start
            start = time.monotonic()
            book.write(root / f"out-jobs{jobs}")
            written = time.monotonic() - start
            tables[jobs] = book.table()
            flagged = int((tables[jobs].status == "flagged").sum())
            print(f"lab grade --jobs {jobs}: {graded:6.2f} s grading + {written:5.2f} s writing CSV/HTML "
                  f"({args.students / graded:.0f} submissions/s; {flagged} flagged)", flush=True)
        assert tables[1].equals(tables[2]), "--jobs 1 and --jobs 2 disagree"
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
