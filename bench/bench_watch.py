"""Benchmark of the pod watcher and of lab.ops.eventlog.

Prints, in one run:
  * parsing: synthetic watcher lines (written with the watcher's own code) per second into the
    events DataFrame with ``lab.ops.eventlog.parse_lines`` (target: at least 50k/s), and the time of
    dedupe + lifecycles on the result;
  * for both watchers at once, the Python one (list+watch) and the Go one (client-go informer),
    each in its own namespace under the same load (the same Pods created in both at the same
    moment): memory working set of the watcher Pod as the kubelet reports it (stats summary),
    idle and with ``--pods`` Pods (target: the Go one below the Python one);
  * lag from a Pod's creation to each watcher's first line about it, p50 / p95 over ``--pods``
    Pods (target: p95 under 1 s). Measured from the moment the create request is sent (the kind
    node shares the host's clock). The per-node watcher sees a Pod once it is scheduled, so the
    lag includes the scheduler.

The cluster part deploys the watchers into their own namespaces (k8s-lab-watch-bench-python,
-go) and deletes them at the end; ``--only go`` measures one; ``--no-cluster`` runs the parsing
part only.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import config  # noqa: E402
from lab.cluster import kube  # noqa: E402
from lab.ops import eventlog  # noqa: E402
from lab.target import Target  # noqa: E402

TARGET = Target.of()  # the lab's cluster, or the one LAB_CLUSTER names

NS = "k8s-lab-watch-bench"
IMPLEMENTATIONS = tuple(eventlog.IMPLEMENTATIONS)  # python, go
WATCHER_PATH = config.REPO_ROOT / "images" / "watcher" / "k8s_lab_watcher.py"


def kubectl(*args: str, **kwargs):
    """The lab's kubectl against the cluster under test (namespaces named with -n)."""
    return kube.kubectl(*args, target=TARGET, **kwargs)


def load_watcher_module():
    spec = importlib.util.spec_from_file_location("k8s_lab_watcher", WATCHER_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.dont_write_bytecode = True
    spec.loader.exec_module(module)
    return module


def synthetic_lines(n: int, pods: int = 2000) -> list[str]:
    """n lines as a watcher writes them: each Pod added, modified a few times, deleted."""
    w = load_watcher_module()
    lines = []
    base = 1714564800.0
    for i in range(n):
        p, step = i % pods, i // pods
        kind = "ADDED" if step == 0 else ("DELETED" if i >= n - pods else "MODIFIED")
        ready = "True" if step >= 2 else "False"
        pod = {
            "metadata": {"name": f"web-{p}", "namespace": "k8s-assignment", "uid": f"uid-{p:06d}",
                         "resourceVersion": str(1000 + i), "creationTimestamp": w.rfc3339_ms(base + p)[:19] + "Z"},
            "spec": {"nodeName": f"node-{p % 3}"},
            "status": {"phase": "Running" if step >= 1 else "Pending", "podIP": f"10.244.{p % 3}.{p % 250}",
                       "conditions": [
                           {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2024-05-01T12:00:02Z"},
                           {"type": "Initialized", "status": "True", "lastTransitionTime": "2024-05-01T12:00:01Z"},
                           {"type": "Ready", "status": ready, "lastTransitionTime": "2024-05-01T12:00:04Z"},
                           {"type": "ContainersReady", "status": ready, "lastTransitionTime": "2024-05-01T12:00:04Z"},
                           {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-05-01T12:00:00Z"},
                       ]},
        }
        record = {"time": w.rfc3339_ms(base + i * 0.01), "type": kind, "change": None, **w.summarize(pod),
                  "watcher_node": f"node-{p % 3}", "watcher": f"watcher-{p % 3}", "session": f"{p % 3:08x}"}
        lines.append(json.dumps(record, separators=(",", ":")))
    return lines


def bench_parsing(n: int, repeats: int = 3) -> dict:
    lines = synthetic_lines(n)
    size = sum(len(line) + 1 for line in lines)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        events = eventlog.parse_lines(lines)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    start = time.perf_counter()
    pods = eventlog.lifecycles(eventlog.dedupe(events))
    derive = time.perf_counter() - start
    assert len(events) == n and len(pods) == 2000
    best, median = min(walls), statistics.median(walls)
    print(f"parse {n:,} lines ({size / 1e6:.0f} MB) into the DataFrame: best {n / best:,.0f}/s, "
          f"median {n / median:,.0f}/s (CPU best {n / min(cpus):,.0f}/s)   target >= 50,000/s", flush=True)
    print(f"dedupe + lifecycles of {n:,} rows: {derive:.2f} s", flush=True)
    return {"lines_per_s_best": n / best, "lines_per_s_median": n / median, "derive_s": derive}



def working_set(namespace: str) -> dict[str, float]:
    """MiB of memory working set per watcher Pod, as the kubelet reports it (its stats summary,
    the number the kubelet evicts by and `kubectl top` shows); needs no shell in the image."""
    result = {}
    for pod in eventlog.watcher_pods(TARGET.in_namespace(namespace)):
        raw = kubectl("get", "--raw", f"/api/v1/nodes/{pod.spec.node_name}/proxy/stats/summary").stdout
        for stats in json.loads(raw)["pods"]:
            if stats["podRef"]["name"] == pod.metadata.name and stats["podRef"]["namespace"] == namespace:
                [container] = [c for c in stats["containers"] if c["name"] == eventlog.CONTAINER]
                result[pod.metadata.name] = container["memory"]["workingSetBytes"] / 1024 / 1024
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[index]


def lag_pod(i: int):
    from kubernetes import client

    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=f"lag-{i}", labels={"bench": "lag"}),
        spec=client.V1PodSpec(termination_grace_period_seconds=2, containers=[client.V1Container(
            name="main", image=eventlog.WATCHER_IMAGE, image_pull_policy="IfNotPresent",
            command=["sh", "-c", 'trap "exit 0" TERM; sleep 3600 & wait'],
            resources=client.V1ResourceRequirements(requests={"cpu": "1m", "memory": "4Mi"}))]))


def bench_cluster(n_pods: int, spacing_s: float, implementations=IMPLEMENTATIONS) -> dict:
    """Both watchers at once, each in its own namespace, under the same load: the same Pods are
    created in both namespaces at the same moment, then deleted."""
    from lab.build import images
    from lab.cluster import kind

    core = kube.core(TARGET)
    images.build()
    kind.load_images(TARGET, [eventlog.IMPLEMENTATIONS[i] for i in implementations])
    spaces = {impl: f"{NS}-{impl}" for impl in implementations}
    for ns in spaces.values():
        kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=true", timeout=300)
        kubectl("create", "namespace", ns)
    try:
        for impl, ns in spaces.items():
            eventlog.deploy_watcher(TARGET.in_namespace(ns), implementation=impl, timeout=180)
        deadline = time.monotonic() + 90
        while not all(any('"status":"snapshot"' in line for line in eventlog.read_logs(TARGET.in_namespace(ns)))
                      for ns in spaces.values()):
            if time.monotonic() > deadline:
                raise SystemExit("the watchers did not start")
            time.sleep(0.5)
        time.sleep(15)  # the kubelet's stats refresh every ~10 s
        idle = {impl: working_set(ns) for impl, ns in spaces.items()}
        sent: dict[str, dict[str, float]] = {impl: {} for impl in spaces}
        for i in range(n_pods):
            for impl, ns in spaces.items():
                before = time.time()
                sent[impl][core.create_namespaced_pod(ns, lag_pod(i)).metadata.uid] = before
            time.sleep(spacing_s)
        for ns in spaces.values():
            kubectl("-n", ns, "wait", "--for=condition=Ready", "pod", "-l", "bench=lag", "--timeout=300s", timeout=320)
        time.sleep(15)
        busy = {impl: working_set(ns) for impl, ns in spaces.items()}
        for ns in spaces.values():
            kubectl("-n", ns, "delete", "pod", "-l", "bench=lag", "--wait=true", timeout=300)
        results = {}
        for impl, ns in spaces.items():
            rows = eventlog.pod_events(eventlog.load_events(TARGET.in_namespace(ns)))
            first = rows[rows["uid"].isin(list(sent[impl]))].groupby("uid")["time"].min()
            lags = [first[uid].timestamp() - t for uid, t in sent[impl].items() if uid in first.index]
            results[impl] = {"pods": len(sent[impl]), "missing": len(sent[impl]) - len(lags),
                             "lag_p50_s": percentile(lags, 0.5), "lag_p95_s": percentile(lags, 0.95),
                             "lag_max_s": max(lags), "idle_working_set_mib": max(idle[impl].values()),
                             "working_set_mib": max(busy[impl].values())}
            r = results[impl]
            print(f"{impl:6} watcher: lag create request -> first line over {len(lags)} Pods: p50 "
                  f"{r['lag_p50_s'] * 1000:.0f} ms, p95 {r['lag_p95_s'] * 1000:.0f} ms, max {r['lag_max_s'] * 1000:.0f} ms;"
                  f" working set idle {r['idle_working_set_mib']:.1f} MiB, with {n_pods} Pods "
                  f"{r['working_set_mib']:.1f} MiB" + (f"  ({r['missing']} Pods never logged!)" if r["missing"] else ""),
                  flush=True)
        if {"python", "go"} <= set(results):
            ratio = results["go"]["working_set_mib"] / results["python"]["working_set_mib"]
            print(f"go / python working set: {ratio:.2f}   target < 1", flush=True)
        return results
    finally:
        for ns in spaces.values():
            kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000, help="synthetic lines to parse")
    parser.add_argument("--pods", type=int, default=30, help="Pods for the lag measurement")
    parser.add_argument("--spacing", type=float, default=0.5, help="seconds between Pod creations")
    parser.add_argument("--no-cluster", action="store_true", help="parsing only")
    parser.add_argument("--only", choices=IMPLEMENTATIONS, help="measure one watcher (default: both)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    bench_parsing(args.lines)
    if not args.no_cluster:
        bench_cluster(args.pods, args.spacing, (args.only,) if args.only else IMPLEMENTATIONS)


if __name__ == "__main__":
    main()
