"""The air-gapped kit on the real cluster: the ground every lesson stands on.

These tests create their own namespace and objects and remove them afterwards; they never touch
the lab's namespace.
"""
from __future__ import annotations

import shutil
import urllib.request
import uuid

import pytest
from kubernetes import client

from lab import config
from lab.cluster import kind
from lab.build import images
from lab.cluster import kube
from lab.cluster.kube import wait_until as eventually
from tests.support import TARGET

pytestmark = pytest.mark.cluster

NS = "k8s-lab-kit-test"
WEB_PORT = 8080  # the web image's nginx: uid 101, so an unprivileged port


def kubectl(*args: str, **kwargs):
    """The lab's kubectl against the cluster under test (namespaces named with -n)."""
    return kube.kubectl(*args, target=TARGET, **kwargs)


@pytest.fixture(scope="module")
def lab_images() -> dict[str, str]:
    mode = images.resolve_mode()
    images.build(mode)
    kind.load_images(TARGET, images.to_load(mode))
    return images.image_names(mode)


def kindnetd_restarts() -> dict[str, int]:
    pods = kube.core(TARGET).list_namespaced_pod("kube-system", label_selector="app=kindnet").items
    return {p.metadata.name: sum(c.restart_count for c in p.status.container_statuses or []) for p in pods}


@pytest.fixture(scope="module", autouse=True)
def kindnetd_restarts_before() -> dict[str, int]:
    """Restarts counted before this module's traffic: a Docker restart (a new session) restarts
    every node and so every kindnetd once, which is not what the last test looks for."""
    return kindnetd_restarts()


@pytest.fixture(scope="module")
def namespace():
    core = kube.core(TARGET)
    # A previous run's namespace may still be terminating.
    kube.wait_deleted(core.read_namespace, NS, what=f"namespace {NS} from an earlier run")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    yield NS
    kube.delete_namespace(NS, target=TARGET)


def pod_manifest(name: str, image: str, labels: dict, command: list[str] | None = None,
                 port: int | None = None, volumes=None, mounts=None) -> client.V1Pod:
    container = client.V1Container(name="main", image=image, image_pull_policy="IfNotPresent",
                                   command=command, volume_mounts=mounts)
    if port:
        container.ports = [client.V1ContainerPort(container_port=port)]
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels=labels),
                        spec=client.V1PodSpec(containers=[container], volumes=volumes,
                                              termination_grace_period_seconds=1))


def run_pod(pod: client.V1Pod, namespace: str) -> client.V1Pod:
    core = kube.core(TARGET)
    core.create_namespaced_pod(namespace, pod)
    kubectl("-n", namespace, "wait", "--for=condition=Ready", f"pod/{pod.metadata.name}",
            "--timeout=120s", timeout=130)
    return core.read_namespaced_pod(pod.metadata.name, namespace)


def test_nodes_ready_at_pinned_minor():
    nodes = kube.core(TARGET).list_node().items
    assert nodes, "the cluster has no nodes"
    minor = ".".join(config.KUBERNETES_VERSION.split(".")[:2])  # v1.34
    for node in nodes:
        assert kube.node_ready(node), f"{node.metadata.name} is not Ready"
        assert node.status.node_info.kubelet_version.startswith(minor + "."), \
            node.status.node_info.kubelet_version


def test_deployment_pods_run(namespace, lab_images):
    apps = kube.apps(TARGET)
    labels = {"app": "kit-web"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="kit-web"),
        spec=client.V1DeploymentSpec(
            replicas=2, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(
                    name="web", image=lab_images["web"], image_pull_policy="IfNotPresent",
                    ports=[client.V1ContainerPort(container_port=WEB_PORT)])]))))
    apps.create_namespaced_deployment(namespace, deployment)
    kubectl("-n", namespace, "rollout", "status", "deployment/kit-web", "--timeout=120s",
            timeout=130)
    pods = kube.core(TARGET).list_namespaced_pod(namespace, label_selector="app=kit-web").items
    assert len(pods) == 2
    assert all(p.status.phase == "Running" for p in pods)


def test_service_dns_resolves_from_a_pod(namespace, lab_images):
    core = kube.core(TARGET)
    core.create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name="kit-dns"),
        spec=client.V1ServiceSpec(selector={"app": "none"},
                                  ports=[client.V1ServicePort(port=80)])))
    cluster_ip = core.read_namespaced_service("kit-dns", namespace).spec.cluster_ip
    run_pod(pod_manifest("kit-dns-client", lab_images["probe"], {"app": "kit-dns-client"},
                         ["sleep", "3600"]), namespace)
    fqdn = f"kit-dns.{namespace}.svc.cluster.local"
    resolved = kubectl("-n", namespace, "exec", "kit-dns-client", "--", "getent", "hosts", fqdn)
    assert resolved.stdout.split()[0] == cluster_ip


def nodeport_owner(port: int) -> str | None:
    for svc in kube.core(TARGET).list_service_for_all_namespaces().items:
        if any(p.node_port == port for p in svc.spec.ports or []):
            return f"{svc.metadata.namespace}/{svc.metadata.name}"
    return None


def host_get(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as response:
            return response.status
    except OSError:
        return None


def test_nodeport_30080_answers_from_host(namespace, lab_images):
    """Host port 30080 -> kind's port mapping -> node -> kube-proxy -> a pod, end to end."""
    core = kube.core(TARGET)
    owner = nodeport_owner(config.WEB_NODEPORT)
    if owner is None:
        run_pod(pod_manifest("kit-nodeport", lab_images["web"], {"app": "kit-nodeport"}, port=WEB_PORT),
                namespace)
        core.create_namespaced_service(namespace, client.V1Service(
            metadata=client.V1ObjectMeta(name="kit-nodeport"),
            spec=client.V1ServiceSpec(type="NodePort", selector={"app": "kit-nodeport"},
                                      ports=[client.V1ServicePort(port=80, target_port=WEB_PORT,
                                                                  node_port=config.WEB_NODEPORT)])))
    # When the lab's web Service already holds the port, the same path is proven through it.
    host_port = kind.web_host_port(TARGET)  # kind's mapping of the NodePort on this host
    if TARGET.cluster == config.DEFAULT_CLUSTER:  # the lab's own cluster: the documented port
        assert host_port == config.WEB_HOST_PORT, host_port
    try:
        assert eventually(lambda: host_get(host_port), timeout=60,
                          what=f"NodePort {config.WEB_NODEPORT} to answer on host port {host_port}") == 200
    finally:
        if owner is None:
            core.delete_namespaced_service("kit-nodeport", namespace)


def tcp_connect(namespace: str, pod: str, ip: str, port: int) -> bool:
    result = kubectl("-n", namespace, "exec", pod, "--", "nc", "-z", "-w", "2", ip, str(port),
                     check=False, timeout=30)
    return result.returncode == 0


def test_network_policy_default_deny_then_allow(namespace, lab_images):
    """The canary for the whole lab: the cluster really enforces NetworkPolicy."""
    server = run_pod(pod_manifest("kit-np-server", lab_images["web"], {"app": "kit-np-server"},
                                  port=WEB_PORT), namespace)
    # Long-lived client: its connections are set up before policies change, as the probe does.
    run_pod(pod_manifest("kit-np-client", lab_images["probe"], {"app": "kit-np-client"},
                         ["sleep", "3600"]), namespace)
    ip = server.status.pod_ip
    assert eventually(lambda: tcp_connect(namespace, "kit-np-client", ip, WEB_PORT), timeout=30,
                      what="connect before any policy")
    net = client.NetworkingV1Api(kube.api_client(TARGET))
    net.create_namespaced_network_policy(namespace, client.V1NetworkPolicy(
        metadata=client.V1ObjectMeta(name="default-deny"),
        spec=client.V1NetworkPolicySpec(pod_selector=client.V1LabelSelector(),
                                        policy_types=["Ingress"])))
    assert eventually(lambda: not tcp_connect(namespace, "kit-np-client", ip, WEB_PORT), timeout=30,
                      what="default-deny to block the connect")
    net.create_namespaced_network_policy(namespace, client.V1NetworkPolicy(
        metadata=client.V1ObjectMeta(name="allow-client"),
        spec=client.V1NetworkPolicySpec(
            pod_selector=client.V1LabelSelector(match_labels={"app": "kit-np-server"}),
            policy_types=["Ingress"],
            ingress=[client.V1NetworkPolicyIngressRule(
                _from=[client.V1NetworkPolicyPeer(pod_selector=client.V1LabelSelector(
                    match_labels={"app": "kit-np-client"}))],
                ports=[client.V1NetworkPolicyPort(port=WEB_PORT, protocol="TCP")])])))
    assert eventually(lambda: tcp_connect(namespace, "kit-np-client", ip, WEB_PORT), timeout=30,
                      what="the allow rule to let the connect through")


def test_hostpath_pvc_survives_pod_deletion(namespace, lab_images):
    core = kube.core(TARGET)
    token = uuid.uuid4().hex[:8]
    pv_name = f"kit-pv-{token}"
    node_dir = f"{kind.NODE_DATA_PATH}/test/{pv_name}"
    core.create_persistent_volume(client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=pv_name, labels={"kit": token}),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": "64Mi"}, access_modes=["ReadWriteOnce"],
            storage_class_name="kit-manual", persistent_volume_reclaim_policy="Delete",
            host_path=client.V1HostPathVolumeSource(path=node_dir, type="DirectoryOrCreate"))))
    try:
        core.create_namespaced_persistent_volume_claim(namespace, client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="kit-data"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"], storage_class_name="kit-manual",
                selector=client.V1LabelSelector(match_labels={"kit": token}),
                resources=client.V1VolumeResourceRequirements(requests={"storage": "64Mi"}))))
        volume = [client.V1Volume(name="data", persistent_volume_claim=client.
                                  V1PersistentVolumeClaimVolumeSource(claim_name="kit-data"))]
        mount = [client.V1VolumeMount(name="data", mount_path="/data")]

        def pod(name: str) -> client.V1Pod:
            return pod_manifest(name, lab_images["probe"], {"app": name}, ["sleep", "3600"],
                                volumes=volume, mounts=mount)

        run_pod(pod("kit-writer"), namespace)
        kubectl("-n", namespace, "exec", "kit-writer", "--", "sh", "-c",
                f"echo {token} > /data/proof")
        core.delete_namespaced_pod("kit-writer", namespace, grace_period_seconds=0)
        eventually(lambda: not [p for p in core.list_namespaced_pod(namespace).items
                                if p.metadata.name == "kit-writer"], what="the writer to be gone")
        run_pod(pod("kit-reader"), namespace)
        read = kubectl("-n", namespace, "exec", "kit-reader", "--", "cat", "/data/proof")
        assert read.stdout.strip() == token
        # The bytes live in the host directory mounted into the node, so they outlive the cluster.
        on_host = TARGET.data_dir / "test" / pv_name / "proof"
        assert on_host.read_text().strip() == token
    finally:
        core.delete_namespaced_pod("kit-reader", namespace, grace_period_seconds=0)
        core.delete_namespaced_persistent_volume_claim("kit-data", namespace)
        core.delete_persistent_volume(pv_name)
        shutil.rmtree(TARGET.data_dir / "test" / pv_name, ignore_errors=True)


def test_policy_engine_survived_the_traffic_above(kindnetd_restarts_before):
    """NodePort clients and pods without policies reach kindnetd's packet queue too; a crash there
    silently disables NetworkPolicy (the queue is bypassed while kindnetd restarts)."""
    after = kindnetd_restarts()
    assert after, "kindnetd is not running"
    restarted = {pod: n - kindnetd_restarts_before.get(pod, 0) for pod, n in after.items()
                 if n != kindnetd_restarts_before.get(pod, 0)}
    assert not restarted, f"kindnetd restarted during these tests: {restarted}"
