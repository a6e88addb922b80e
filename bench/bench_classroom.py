"""Benchmark of the classroom and of verified grading on a real cluster (issue 13's numbers).

    LAB_CLUSTER=... python bench/bench_classroom.py [--students 30] [--submissions 6]

1. `lab classroom up` for N students (namespaces bench-<id>), then `up` again (idempotent).
2. `lab grade --live` over those N namespaces (the grader's checks of every notebook).
3. `lab grade --execute` of M submissions at --jobs 1 and --jobs 3, each in its own sandbox with
   its own limited kubeconfig. A submission is two notebooks that do namespaced work as a student
   would (a Deployment of the pause image, waiting until it is ready, a ConfigMap) and checkpoint
   it; after each notebook the grader runs its checks. The lab's own notebooks 02-08 need
   classroom-mode changes (issue 12/13 follow-up) before they can run in a sandbox.
4. `lab classroom down`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbformat  # noqa: E402

from lab.cluster import classroom  # noqa: E402
from lab.grading import grade  # noqa: E402
from lab.target import Target  # noqa: E402

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
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        params = nbformat.v4.new_code_cell('cluster = "k8s-lab"\nnamespace = "k8s-assignment"\nsolutions = True')
        params.metadata["tags"] = ["parameters"]
        setup = nbformat.v4.new_code_cell("from lab import checks\nfrom lab.cluster import kube\nfrom lab.target import Target\n"
                                          "context = f'kind-{cluster}'\ntarget = Target(cluster, namespace)\n"
                                          "checks.configure(namespace=namespace, context=context)")
        nb.cells = [params, setup, nbformat.v4.new_code_cell(WORK % {"n": n}), nbformat.v4.new_code_cell(CHECK % {"n": n})]
        nbformat.write(nb, str(folder / name))


def timed(what: str, fn):
    began = time.monotonic()
    result = fn()
    print(f"{what}: {time.monotonic() - began:.1f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--submissions", type=int, default=6)
    parser.add_argument("--skip-execute", action="store_true")
    args = parser.parse_args()
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
