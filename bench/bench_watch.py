"""Benchmark of the pod watcher and of lab.ops.eventlog.

Prints, in one run:
  * parsing: synthetic watcher lines (written with the watcher's own code) per second into the
    events DataFrame with ``lab.ops.eventlog.parse_lines`` (target: at least 50k/s), and the time of
    dedupe + lifecycles on the result;
  * memory of a watcher Pod after creating and deleting the Pods below, from its cgroup, read
    inside the Pod with ``kubectl exec`` (target: under 60 MiB; the kubelet's "working set" is
    usage minus inactive file cache);
  * lag from a Pod's creation to the watcher's first line about it, p50 / p95 over ``--pods``
    Pods (target: p95 under 1 s). Measured from the moment the create request is sent (the kind
    node shares the host's clock); creationTimestamp has whole seconds only, so the lag from it
    is shown as well but reads up to 1 s high. The per-node watcher sees a Pod once it is
    scheduled, so the lag includes the scheduler.

The cluster part deploys the watcher into its own namespace (k8s-lab-watch-bench) and deletes
that namespace at the end; ``--no-cluster`` runs the parsing part only.
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

from lab import config, watch  # noqa: E402
from lab.cluster.kube import kubectl  # noqa: E402

NS = "k8s-lab-watch-bench"
WATCHER_PATH = config.REPO_ROOT / "images" / "watcher" / "k8s_lab_watcher.py"


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
        events = watch.parse_lines(lines)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    start = time.perf_counter()
    pods = watch.lifecycles(watch.dedupe(events))
    derive = time.perf_counter() - start
    assert len(events) == n and len(pods) == 2000
    best, median = min(walls), statistics.median(walls)
    print(f"parse {n:,} lines ({size / 1e6:.0f} MB) into the DataFrame: best {n / best:,.0f}/s, "
          f"median {n / median:,.0f}/s (CPU best {n / min(cpus):,.0f}/s)   target >= 50,000/s", flush=True)
    print(f"dedupe + lifecycles of {n:,} rows: {derive:.2f} s", flush=True)
    return {"lines_per_s_best": n / best, "lines_per_s_median": n / median, "derive_s": derive}



MEMORY_SCRIPT = r"""
if [ -f /sys/fs/cgroup/memory.current ]; then
  echo "usage $(cat /sys/fs/cgroup/memory.current)"
  grep -E '^(anon|file|inactive_file) ' /sys/fs/cgroup/memory.stat
else
  echo "usage $(cat /sys/fs/cgroup/memory/memory.usage_in_bytes)"
  grep -E '^total_(rss|cache|inactive_file) ' /sys/fs/cgroup/memory/memory.stat | sed 's/^total_//'
fi
grep VmRSS /proc/1/status | tr -s ' \t' ' ' | sed 's/ kB$//; s/VmRSS: /vmrss_kib /'
"""


def watcher_memory(pod: str) -> dict:
    out = kubectl("-n", NS, "exec", pod, "-c", watch.CONTAINER, "--", "sh", "-c", MEMORY_SCRIPT).stdout
    values = {k: int(v) for k, v in (line.split() for line in out.splitlines() if line.strip())}
    mib = 1024 * 1024
    inactive = values.get("inactive_file", 0)
    result = {"usage_mib": values["usage"] / mib, "working_set_mib": (values["usage"] - inactive) / mib,
              "anon_mib": values.get("rss", values.get("anon", 0)) / mib,
              "file_cache_mib": values.get("cache", values.get("file", 0)) / mib,
              "process_rss_mib": values.get("vmrss_kib", 0) / 1024}
    print(f"watcher Pod memory (cgroup): usage {result['usage_mib']:.1f} MiB, working set "
          f"{result['working_set_mib']:.1f} MiB (anon {result['anon_mib']:.1f}, file cache "
          f"{result['file_cache_mib']:.1f}); process RSS {result['process_rss_mib']:.1f} MiB   target < 60 MiB",
          flush=True)
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[index]


def bench_cluster(n_pods: int, spacing_s: float) -> dict:
    from kubernetes import client

    from lab.cluster import kube

    core = kube.core()
    watch.ensure_image(load=True)
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=300)
    kubectl("create", "namespace", NS)
    try:
        watch.deploy_watcher(NS, timeout=180)
        deadline = time.monotonic() + 60
        while not any('"status":"snapshot"' in line for line in watch.read_logs(NS)):
            if time.monotonic() > deadline:
                raise SystemExit("the watcher did not start")
            time.sleep(0.5)
        sent: dict[str, float] = {}
        for i in range(n_pods):
            pod = client.V1Pod(
                metadata=client.V1ObjectMeta(name=f"lag-{i}", labels={"bench": "lag"}),
                spec=client.V1PodSpec(termination_grace_period_seconds=2, containers=[client.V1Container(
                    name="main", image=watch.WATCHER_IMAGE, image_pull_policy="IfNotPresent",
                    command=["sh", "-c", 'trap "exit 0" TERM; sleep 3600 & wait'],
                    resources=client.V1ResourceRequirements(requests={"cpu": "1m", "memory": "4Mi"}))]))
            before = time.time()
            uid = core.create_namespaced_pod(NS, pod).metadata.uid
            sent[uid] = before
            time.sleep(spacing_s)
        kubectl("-n", NS, "wait", "--for=condition=Ready", "pod", "-l", "bench=lag", "--timeout=180s", timeout=200)
        kubectl("-n", NS, "delete", "pod", "-l", "bench=lag", "--wait=true", timeout=200)
        time.sleep(2)
        events = watch.load_events(NS)
        rows = watch.pod_events(events)
        first = rows[rows["uid"].isin(list(sent))].groupby("uid")["time"].min()
        created = rows[rows["uid"].isin(list(sent))].groupby("uid")["created"].min()
        lags = [first[uid].timestamp() - sent[uid] for uid in sent if uid in first.index]
        lags_ct = [(first[uid] - created[uid]).total_seconds() for uid in sent if uid in first.index]
        missing = len(sent) - len(lags)
        result = {"pods": len(sent), "missing": missing,
                  "lag_p50_s": percentile(lags, 0.5), "lag_p95_s": percentile(lags, 0.95),
                  "lag_max_s": max(lags),
                  "lag_from_creation_timestamp_p50_s": percentile(lags_ct, 0.5),
                  "lag_from_creation_timestamp_p95_s": percentile(lags_ct, 0.95)}
        print(f"lag create request -> first watcher line over {len(lags)} Pods: p50 {result['lag_p50_s'] * 1000:.0f} ms, "
              f"p95 {result['lag_p95_s'] * 1000:.0f} ms, max {result['lag_max_s'] * 1000:.0f} ms   target p95 < 1 s"
              + (f"  ({missing} Pods never logged!)" if missing else ""), flush=True)
        print(f"lag creationTimestamp (whole seconds) -> first line: p50 "
              f"{result['lag_from_creation_timestamp_p50_s'] * 1000:.0f} ms, p95 "
              f"{result['lag_from_creation_timestamp_p95_s'] * 1000:.0f} ms", flush=True)
        [watcher_pod] = [p.metadata.name for p in watch.watcher_pods(NS)][:1]
        result["memory"] = watcher_memory(watcher_pod)
        return result
    finally:
        kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000, help="synthetic lines to parse")
    parser.add_argument("--pods", type=int, default=30, help="Pods for the lag measurement")
    parser.add_argument("--spacing", type=float, default=0.5, help="seconds between Pod creations")
    parser.add_argument("--no-cluster", action="store_true", help="parsing only")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    bench_parsing(args.lines)
    if not args.no_cluster:
        bench_cluster(args.pods, args.spacing)


if __name__ == "__main__":
    main()
