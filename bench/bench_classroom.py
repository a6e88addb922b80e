"""Benchmark of the classroom and of verified grading on a real cluster (issue 13's numbers).

    LAB_CLUSTER=... python bench/bench_classroom.py [--students 30] [--submissions 6]
    LAB_CLUSTER=... python bench/bench_classroom.py --notebooks [--class-size 3] [--last 08]

1. `lab classroom up` for N students (namespaces bench-<id>), then `up` again (idempotent).
2. `lab grade --live` over those N namespaces (the grader's checks of every notebook).
3. `lab grade --execute` of M submissions at --jobs 1 and --jobs 3, each in its own sandbox with
   its own limited kubeconfig. A submission is two notebooks that do namespaced work as a student
   would (a Deployment of the pause image, waiting until it is ready, a ConfigMap) and checkpoint
   it; after each notebook the grader runs its checks.
4. `lab classroom down`.

With --notebooks instead: a classroom of --class-size students (namespaces bench-nb-<id>) each run
the reference notebooks 02 to --last at once (`lab run`, their own copy of the notebooks, their own
kubeconfig), then `lab grade --live` grades them; prints the wall times, each student's points
(earned/possible: what the instructor made does not apply) and every check that did not pass.
Exits non-zero when a run fails. tests/cluster/test_classroom.py runs the same for 02-04 in CI.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbformat  # noqa: E402

from lab.cluster import classroom  # noqa: E402
from lab.grading import grade  # noqa: E402
from lab.target import Target  # noqa: E402
from tests.support import graded_notebook  # noqa: E402

CONTEXT = Target.of().kube_context

PREFIX = "bench-"
WORK = """from kubernetes import client
import time
apps = client.AppsV1Api(kube.api_client(target))
labels = {"app": "work-%(n)s"}
apps.create_namespaced_deployment(namespace, client.V1Deployment(
    metadata=client.V1ObjectMeta(name="work-%(n)s"),
    spec=client.V1DeploymentSpec(replicas=1, selector=client.V1LabelSelector(match_labels=labels),
        template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels),
            spec=client.V1PodSpec(containers=[client.V1Container(name="pause", image="registry.k8s.io/pause:3.10.1",
                                                                 image_pull_policy="IfNotPresent")])))))
deadline = time.monotonic() + 180
while not checks.deployment_ready("work-%(n)s").passed and time.monotonic() < deadline:
    time.sleep(1)
kube.core(target).create_namespaced_config_map(namespace, client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="database-config" if %(n)s == 1 else "web-nginx"),
    data={"my.cnf": "[mysqld]", "default.conf": "location = /healthz {}"}))"""
CHECK = 'checks.checkpoint("bench.work-%(n)s", points=1, verify=lambda: checks.deployment_ready("work-%(n)s", replicas=1))'


def submission(folder: Path) -> None:
    folder.mkdir(parents=True)
    for n, name in ((1, "03-database.ipynb"), (2, "04-web-server.ipynb")):
        nbformat.write(graded_notebook([WORK % {"n": n}, CHECK % {"n": n}]), str(folder / name))


def timed(what: str, fn):
    began = time.monotonic()
    result = fn()
    print(f"{what}: {time.monotonic() - began:.1f} s", flush=True)
    return result


def checkpoints(run_dir: Path) -> list[str]:
    """PASS, N/A or "FAIL check: message" per checkpoint record in a run's executed notebooks."""
    from lab import evidence

    found = []
    for path in sorted(run_dir.glob("[0-9][0-9]-*.ipynb")):
        for cell in nbformat.read(str(path), as_version=4).cells:
            for output in cell.get("outputs", []):
                record = (evidence.from_output(output) or (None,))[0]
                if isinstance(record, dict):
                    found.append("N/A" if not evidence.applies(record) else "PASS" if record["passed"]
                                 else f"FAIL {record['check_id']}: {record['message'][:120]}")
    return found


def notebooks(class_size: int, last: str) -> int:
    """Students of one classroom run the reference notebooks 02..last at once; then --live grades them."""
    from lab import config

    root = config.REPO_ROOT
    prefix = "bench-nb-"
    work = Path(tempfile.mkdtemp(prefix="bench-classroom-notebooks-"))
    students = [classroom.Student(f"s{i}") for i in range(class_size)]
    try:
        kubeconfigs = timed(f"classroom up, {class_size} students",
                            lambda: classroom.up(students, work / "room", context=CONTEXT, prefix=prefix))

        def run(student: classroom.Student) -> int:
            folder = work / student.id / "notebooks"
            folder.mkdir(parents=True)
            for path in (root / "reference").glob("[0-9][0-9]-*.ipynb"):
                shutil.copy(path, folder)
            out = work / student.id / "run"
            began = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "lab.cli", "run", last, "--from", "02", "--notebooks-dir",
                                   str(folder), "--out", str(out), "-p", f"cluster={config.CLUSTER_NAME}",
                                   "-p", f"namespace={student.namespace(prefix)}", "-p", "mode=offline",
                                   "-p", f"kubeconfig={kubeconfigs[student.id]}"],
                                  capture_output=True, text=True, cwd=root)
            report = json.loads((out / "report.json").read_text())
            verdicts = checkpoints(out)
            print(f"  {student.id}: {report['status']} in {time.monotonic() - began:.0f} s: "
                  + ", ".join(f"{r['notebook'][:2]} {r['duration_s']:.0f} s" for r in report["results"])
                  + f"; checkpoints: {verdicts.count('PASS')} PASS, {verdicts.count('N/A')} N/A"
                  + "".join(f"\n    {v}" for v in verdicts if v not in ("PASS", "N/A")), flush=True)
            if proc.returncode:
                print(proc.stdout[-3000:] + proc.stderr[-3000:])
            return proc.returncode

        with ThreadPoolExecutor(class_size) as pool:
            codes = timed(f"{class_size} students run notebooks 02-{last} at once", lambda: list(pool.map(run, students)))
        book = timed(f"grade --live, {class_size} namespaces",
                     lambda: grade.live_gradebook({s.id: s.namespace(prefix) for s in students}, jobs=8))
        for sub in book.submissions:
            missed = [f"{o.check_id} ({o.status}: {o.message[:120]})" for o in sub.outcomes
                      if o.status not in ("passed", "not-applicable")]
            na = sum(o.status == "not-applicable" for o in sub.outcomes)
            print(f"  {sub.student}: {sub.earned:g}/{sub.possible:g} points, {na} not applicable"
                  + ("".join(f"\n    {m}" for m in missed)))
        return max(codes)
    finally:
        classroom.down(context=CONTEXT, prefix=prefix)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--submissions", type=int, default=6)
    parser.add_argument("--skip-execute", action="store_true")
    parser.add_argument("--notebooks", action="store_true", help="time a class running the reference notebooks")
    parser.add_argument("--class-size", type=int, default=3)
    parser.add_argument("--last", default="08", help="the last notebook the class runs (from 02)")
    args = parser.parse_args()
    if args.notebooks:
        sys.exit(notebooks(args.class_size, args.last))
    work = Path(tempfile.mkdtemp(prefix="bench-classroom-"))
    students = [classroom.Student(f"s{i:02d}") for i in range(args.students)]
    try:
        timed(f"classroom up, {args.students} students", lambda: classroom.up(students, work / "room", context=CONTEXT, prefix=PREFIX))
        timed(f"classroom up again (idempotent), {args.students} students",
              lambda: classroom.up(students, work / "room", context=CONTEXT, prefix=PREFIX))
        book = timed(f"grade --live, {args.students} namespaces",
                     lambda: grade.live_gradebook({s.id: s.namespace(PREFIX) for s in students}, jobs=8))
        print(f"  {len(book.submissions)} graded, {len(book.expected)} checks each")
        timed("classroom down", lambda: classroom.down(context=CONTEXT, prefix=PREFIX))
        if args.skip_execute:
            return
        subs = work / "subs"
        for i in range(args.submissions):
            submission(subs / f"student-{i}")
        reference = subs / "student-0"
        for jobs in (1, 3):
            prefix = f"gj{jobs}-"
            names = [n for n, _ in grade.find_submissions([subs])]
            ids = classroom.ids_for(names)
            kubeconfigs = timed(f"  sandboxes for {len(names)}",
                                lambda: classroom.up([classroom.Student(i) for i in ids.values()], work / prefix, context=CONTEXT, prefix=prefix))
            sandboxes = {n: grade.Sandbox(f"{prefix}{ids[n]}", str(kubeconfigs[ids[n]])) for n in names}
            timed(f"grade --execute, {args.submissions} submissions, --jobs {jobs}",
                  lambda: grade.execute_all([subs], work / f"out-{jobs}", jobs=jobs, sandboxes=sandboxes, timeout=600))
            book = grade.grade([work / f"out-{jobs}"], reference_dir=reference, verified=True)
            print("  " + ", ".join(f"{s.student} {s.earned:g}/{s.possible:g} {s.status}" for s in book.submissions))
            classroom.down(context=CONTEXT, prefix=prefix)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
