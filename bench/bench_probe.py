"""Benchmark of the connectivity probe (lab.ops.probe).

A matrix of 6 sources x 4 destinations x 2 ports (48 cells) in a namespace of its own
(k8s-lab-probe-bench, created and deleted here): 3 probe Pods with the web tier's policy labels
and 3 other probe Pods, against the web and database Services and the web and database Pods, on
80 (the web Pod: 8080, where its nginx listens) and 3306, under the lab's three NetworkPolicies.
Prints, in one run:

  * the lab engine (one exec per source Pod, connects in parallel inside it, 4 sources at a
    time), over the API server's exec stream and over `kubectl exec`;
  * a naive loop of one `kubectl exec ... probe-tcp HOST PORT 1.5` per cell;
  * the speed-up (target >= 5x) and the number of wrong cells of each (target 0).

The probe Pods are started before the timing (the engine reuses them across runs).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client  # noqa: E402

from lab.build import images  # noqa: E402
from lab.cluster import kube  # noqa: E402
from lab.ops import probe  # noqa: E402
from lab.host import tools  # noqa: E402
from lab.target import Target  # noqa: E402

TARGET = Target.of()  # the lab's cluster, or the one LAB_CLUSTER names
NS = "k8s-lab-probe-bench"
LAB = {"app.kubernetes.io/name": "k8s-lab", "app.kubernetes.io/instance": "k8s-lab"}
WEB = {**LAB, "app.kubernetes.io/component": "web"}
DB = {**LAB, "app.kubernetes.io/component": "database"}
WEB_TIER = {"app.kubernetes.io/name": "k8s-lab", "app.kubernetes.io/component": "web"}
WEB_LIKE = {**WEB_TIER, "app.kubernetes.io/instance": "probe-bench"}
PORTS = (80, 3306)
WEB_PORT = 8080  # the web image's nginx (uid 101); the web Service maps 80 to it
SOURCES = [probe.Source.probe("web", WEB_LIKE, replicas=3),
           probe.Source.probe("other", {"app.kubernetes.io/name": "k8s-lab-probe"}, replicas=3)]
DESTINATIONS = [probe.Destination.service("web"), probe.Destination.service("database"),
                probe.Destination.pods("web-pod", "app.kubernetes.io/component=web,"
                                                  "app.kubernetes.io/instance=k8s-lab", ports=[WEB_PORT, 3306]),
                probe.Destination.pods("db-pod", "app.kubernetes.io/component=database")]


def expected(source: str, destination: str, port: int) -> str:
    if destination in ("web", "web-pod"):
        return "connected" if port in (80, WEB_PORT) else "timeout"
    return "connected" if source == "web" and port == 3306 else "timeout"


def selector(labels: dict) -> client.V1LabelSelector:
    return client.V1LabelSelector(match_labels=labels)


def setup(core) -> None:
    net = client.NetworkingV1Api(kube.api_client(TARGET))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))

    def pod(name, image, labels, command, port):
        return client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1PodSpec(termination_grace_period_seconds=1, containers=[
                client.V1Container(name="main", image=image, image_pull_policy="IfNotPresent",
                                   command=command,
                                   ports=[client.V1ContainerPort(container_port=port)])]))

    core.create_namespaced_pod(NS, pod("web-0", images.WEB_IMAGE, WEB, None, WEB_PORT))
    core.create_namespaced_pod(NS, pod("db-0", images.PROBE_IMAGE, DB,
                                       ["nc", "-lk", "-p", "3306"], 3306))
    for name, labels in (("web", WEB), ("database", DB)):  # both declare both ports
        core.create_namespaced_service(NS, client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(selector=labels, ports=[
                client.V1ServicePort(name=f"p{p}", port=p, target_port=WEB_PORT if (name, p) == ("web", 80) else p)
                for p in PORTS])))

    def rule(port, peer=None):
        return client.V1NetworkPolicyIngressRule(
            _from=[client.V1NetworkPolicyPeer(pod_selector=selector(peer))] if peer else None,
            ports=[client.V1NetworkPolicyPort(port=port, protocol="TCP")])

    for name, labels, ingress in (("default-deny-ingress", {}, None),
                                  ("web-allow-http", WEB, [rule(WEB_PORT)]),
                                  ("database-allow-clients", DB, [rule(3306, WEB_TIER)])):
        net.create_namespaced_network_policy(NS, client.V1NetworkPolicy(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1NetworkPolicySpec(pod_selector=selector(labels),
                                            policy_types=["Ingress"], ingress=ingress)))
    probe._wait_ready(core, NS, ["web-0", "db-0"], 120)
    for source in SOURCES:
        probe.ensure_probe_pods(source, NS, TARGET)


def naive(cells) -> tuple[float, int]:
    """One `kubectl exec` per cell, one after the other."""
    kubectl = str(tools.ensure("kubectl"))
    start, cpu = time.monotonic(), cpu_seconds()
    wrong = 0
    for row in cells.itertuples():
        out = subprocess.run([kubectl, *TARGET.kubectl_flags(), "-n", NS, "exec",
                              row.source, "-c", "probe", "--", "probe-tcp", row.target,
                              str(row.port), "1.5"], capture_output=True, text=True,
                             timeout=60).stdout.strip()
        wrong += out != row.expected
    return time.monotonic() - start, wrong, cpu_seconds() - cpu


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (kubectl) so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def engine(transport: str):
    start, cpu = time.monotonic(), cpu_seconds()
    df = probe.matrix(NS, SOURCES, DESTINATIONS, PORTS, expected=expected, transport=transport,
                      target=TARGET)
    df.attrs["cpu"] = cpu_seconds() - cpu
    return time.monotonic() - start, df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the namespace in place")
    args = parser.parse_args()
    core = kube.core(TARGET)
    kube.delete_namespace(NS, target=TARGET)
    start = time.monotonic()
    setup(core)
    print(f"{'setup (servers, policies, 6 probe pods)':<46} {time.monotonic() - start:7.1f} s")
    try:
        t_stream, df = engine("stream")
        n = len(df)
        print(f"{'cells':<46} {n:7d}    ({df.source.nunique()} sources x "
              f"{df.groupby(['destination_group', 'destination']).ngroups} destinations x "
              f"{df.port.nunique()} ports)")
        w_stream = len(probe.wrong(df))
        print(f"{'lab engine, exec stream':<46} {t_stream:7.1f} s   wrong cells {w_stream}   "
              f"(passes {df.attrs['passes']}, execs {df.attrs['execs']}, "
              f"local CPU {df.attrs['cpu']:.2f} s)")
        t_kubectl, df_k = engine("kubectl")
        print(f"{'lab engine, kubectl exec':<46} {t_kubectl:7.1f} s   wrong cells "
              f"{len(probe.wrong(df_k))}   (passes {df_k.attrs['passes']}, "
              f"execs {df_k.attrs['execs']}, local CPU {df_k.attrs['cpu']:.2f} s)")
        t_naive, w_naive, cpu_naive = naive(df)
        print(f"{'naive loop, one kubectl exec per cell':<46} {t_naive:7.1f} s   wrong cells "
              f"{w_naive}   (execs {n}, local CPU {cpu_naive:.2f} s)")
        print(f"{'speed-up naive / engine (stream)':<46} {t_naive / t_stream:7.1f} x   "
              f"(target >= 5)")
        print(f"{'wrong cells (engine)':<46} {w_stream:7d}      (target 0)")
        cni = probe.cni_note(TARGET)
        if cni:  # policies are not enforced while kindnet restarts
            print("note:" + cni.lstrip(";"))
        if w_stream:
            probe.report(df)
    finally:
        if not args.keep:
            kube.delete_namespace(NS, target=TARGET)


if __name__ == "__main__":
    main()
