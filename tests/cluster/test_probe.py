"""lab.ops.probe on the real cluster, in a namespace of its own (never the lab's).

A small stand-in for the deployed system: two web Pods (the web image: nginx on 8080 behind the
web Service's port 80, as in the chart) and a "database" Pod (the probe image with
`nc -lk -p 3306`), with the lab's labels and Service names, and the lab's three NetworkPolicies
(or a wrong variant). Sources are the web Pods, a probe Pod that carries the web tier's policy
labels, and a non-web probe Pod.
"""
from __future__ import annotations

import os
import shlex
import subprocess

import pytest
from click.testing import CliRunner
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lab.build import images
from lab.cluster import kind, kube
from lab.ops import probe
from lab.host import tools
from tests.support import TARGET

pytestmark = pytest.mark.cluster

NS = "k8s-lab-probe-test"
CANARY_NS = "k8s-lab-probe-canary-test"
LAB = {"app.kubernetes.io/name": "k8s-lab", "app.kubernetes.io/instance": "k8s-lab"}
WEB = {**LAB, "app.kubernetes.io/component": "web"}
DB = {**LAB, "app.kubernetes.io/component": "database"}
# The policy sees the web tier in it (name + component); the web Service does not (instance).
WEB_LIKE = {"app.kubernetes.io/name": "k8s-lab", "app.kubernetes.io/instance": "probe-client",
            "app.kubernetes.io/component": "web"}

SOURCES = [probe.Source.pods("web", probe.LAB_WEB_SELECTOR),
           probe.Source.probe("web-probe", WEB_LIKE),
           probe.Source.probe("other", probe.LAB_OTHER_LABELS)]
DESTINATIONS = [probe.Destination.service("database"), probe.Destination.service("web"),
                probe.Destination.pods("db-pod", "app.kubernetes.io/component=database")]
PORTS = (3306, 80)
WEB_PORT = 8080  # the web image's nginx (uid 101, unprivileged port); Services map 80 to it
MODE = os.environ.get("LAB_IMAGE_MODE") or "auto"
WEB_SOURCES = ("web-0", "web-1", "probe-web-probe-0")


def expected(source: str, destination: str, port: int) -> str:
    """The lab's policy: web tier (web Pods and Pods with their policy labels) -> database:3306,
    everyone -> web:80; every other connection is dropped."""
    if destination == "web":
        return "connected"
    if port == 3306 and source in ("web", "web-probe"):
        return "connected"
    return "timeout"


def selector(labels: dict) -> client.V1LabelSelector:
    return client.V1LabelSelector(match_labels=labels)


def policy(name: str, pod_labels: dict, ingress: list | None, types=("Ingress",)):
    return client.V1NetworkPolicy(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1NetworkPolicySpec(pod_selector=selector(pod_labels),
                                        policy_types=list(types), ingress=ingress))


def allow(port: int, *froms: dict) -> client.V1NetworkPolicyIngressRule:
    return client.V1NetworkPolicyIngressRule(
        _from=[client.V1NetworkPolicyPeer(pod_selector=selector(f)) for f in froms] or None,
        ports=[client.V1NetworkPolicyPort(port=port, protocol="TCP")])


def lab_policies(database_from: dict) -> list[client.V1NetworkPolicy]:
    """manifests/04-network-policy, with the database's allowed clients as a parameter."""
    return [
        policy("default-deny-ingress", {}, None),
        policy("web-allow-http", WEB, [allow(WEB_PORT)]),
        policy("database-allow-clients", DB, [allow(3306, database_from)]),
    ]


CORRECT = {"app.kubernetes.io/name": "k8s-lab", "app.kubernetes.io/component": "web"}
WRONG = {"app.kubernetes.io/name": "k8s-lab-probe"}  # the non-web probe Pod's label


def set_policies(policies: list[client.V1NetworkPolicy]) -> None:
    net = client.NetworkingV1Api(kube.api_client(TARGET))
    for existing in net.list_namespaced_network_policy(NS).items:
        net.delete_namespaced_network_policy(existing.metadata.name, NS)
    for p in policies:
        net.create_namespaced_network_policy(NS, p)


def pod(name: str, image: str, labels: dict, command: list[str] | None, port: int) -> client.V1Pod:
    container = client.V1Container(
        name="main", image=image, image_pull_policy="IfNotPresent", command=command,
        ports=[client.V1ContainerPort(container_port=port)])
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels=labels),
                        spec=client.V1PodSpec(containers=[container],
                                              termination_grace_period_seconds=1))


def service(name: str, labels: dict, port: int, target_port: int | None = None) -> client.V1Service:
    return client.V1Service(metadata=client.V1ObjectMeta(name=name),
                            spec=client.V1ServiceSpec(selector=labels, ports=[
                                client.V1ServicePort(port=port, target_port=target_port or port)]))


@pytest.fixture(scope="module")
def stand_in_images() -> None:
    """The web and probe images as this repository builds them, in every node: the nodes may hold
    an older build under the same tag (kind load replaces it, and does nothing when it is there)."""
    images.build(images.resolve_mode(MODE))
    kind.load_images(TARGET, [images.WEB_IMAGE, images.PROBE_IMAGE])


@pytest.fixture(scope="module")
def system(stand_in_images):
    core = kube.core(TARGET)
    kube.delete_namespace(NS, target=TARGET)  # left over from an interrupted run
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    try:
        for i in range(2):
            core.create_namespaced_pod(NS, pod(f"web-{i}", images.WEB_IMAGE, WEB, None, WEB_PORT))
        core.create_namespaced_pod(NS, pod("db-0", images.PROBE_IMAGE, DB,
                                           ["nc", "-lk", "-p", "3306"], 3306))
        core.create_namespaced_service(NS, service("web", WEB, 80, WEB_PORT))
        core.create_namespaced_service(NS, service("database", DB, 3306))
        set_policies(lab_policies(CORRECT))
        probe._wait_ready(core, NS, ["web-0", "web-1", "db-0"], 120)
        yield NS
    finally:
        kube.delete_namespace(NS, target=TARGET)


def explain(df) -> str:
    """The wrong cells with their commands, and the state of kindnet (which enforces policies:
    while it restarts, nothing is enforced)."""
    import io
    out = io.StringIO()
    probe.report(df, file=out)
    return out.getvalue() + probe.cni_note(TARGET)


def cells(df) -> set[tuple[str, str, int]]:
    return {(r.source, r.destination, r.port) for r in df.itertuples()}


def test_correct_policy_every_cell_as_expected(system):
    set_policies(lab_policies(CORRECT))
    df = probe.matrix(NS, SOURCES, DESTINATIONS, PORTS, expected=expected, target=TARGET)
    # 4 source Pods x (database:3306 + web:80 + db-0:3306 + db-0:80); Services skip ports they
    # do not declare.
    assert len(df) == 4 * 4
    assert df.attrs["skipped"] == ["database:80", "web:3306"]
    assert set(df.source) == {"web-0", "web-1", "probe-web-probe-0", "probe-other-0"}
    assert probe.wrong(df).empty, explain(df)
    assert set(df.observed) == {"connected", "timeout"}


def test_exec_in_pod_tells_output_and_exit_code_from_a_command_that_did_not_run(system):
    ran = kube.exec_in_pod(TARGET, "db-0", ["bash", "-c", "echo out; echo err >&2; exit 3"], namespace=NS)
    assert (ran.stdout, ran.stderr, ran.exit_code, ran.problem, ran.ok) == ("out\n", "err\n", 3, "", False)
    assert kube.exec_in_pod(TARGET, "db-0", ["true"], namespace=NS).ok
    missing = kube.exec_in_pod(TARGET, "no-such-pod", ["true"], namespace=NS)
    assert missing.exit_code is None and missing.problem == 'exec failed: pods "no-such-pod" not found'
    no_binary = kube.exec_in_pod(TARGET, "db-0", ["/no/such/binary"], namespace=NS)
    assert no_binary.exit_code is None and "/no/such/binary" in no_binary.problem
    slow = kube.exec_in_pod(TARGET, "db-0", ["sleep", "5"], namespace=NS, timeout=1)
    assert slow.exit_code is None and slow.problem == "the exec did not finish within 1s"


def test_a_pods_http_answer_comes_through_the_api_servers_proxy(system):
    """What build.web-init reads a web Pod's page with: a 200's body, or None for anything else."""
    set_policies(lab_policies(CORRECT))  # HTTP to the web Pods is open to everyone, the API server too
    page = kube.pod_http_get(TARGET, "web-0", WEB_PORT, "/", namespace=NS)
    assert page is not None and "html" in page.lower(), page
    assert kube.pod_http_get(TARGET, "web-0", WEB_PORT, "/no-such-page", namespace=NS) is None
    assert kube.pod_http_get(TARGET, "web-0", 9, "/", namespace=NS) is None  # nothing listens
    assert kube.pod_http_get(TARGET, "no-such-pod", WEB_PORT, "/", namespace=NS) is None


def test_refused_and_timeout_are_told_apart(system):
    # Port 3307 on the database Pod: nothing listens. Opened to the web tier it answers with a
    # reset (refused); for everyone else the policy drops the packets (timeout).
    set_policies([*lab_policies(CORRECT),
                  policy("database-3307-from-web", DB, [allow(3307, CORRECT)])])
    closed = probe.Destination.pods("db-pod", "app.kubernetes.io/component=database",
                                    ports=[3307])
    df = probe.matrix(NS, SOURCES, [closed], expected=lambda s, d, p: (
        "refused" if s in ("web", "web-probe") else "timeout"), target=TARGET)
    assert probe.wrong(df).empty, explain(df)
    observed = dict(zip(df.source, df.observed))
    assert observed == {"web-0": "refused", "web-1": "refused", "probe-web-probe-0": "refused",
                        "probe-other-0": "timeout"}


def test_wrong_policy_reports_exactly_the_wrong_cells(system):
    set_policies(lab_policies(WRONG))  # the database lets in the non-web Pods instead of web
    df = probe.matrix(NS, SOURCES, DESTINATIONS, PORTS, expected=expected, target=TARGET)
    bad = probe.wrong(df)
    assert cells(bad) == {
        *[(s, d, 3306) for s in WEB_SOURCES for d in ("database", "db-0")],
        ("probe-other-0", "database", 3306), ("probe-other-0", "db-0", 3306),
    }, explain(df)
    assert set(bad[bad.source == "probe-other-0"].observed) == {"connected"}
    assert set(bad[bad.source != "probe-other-0"].observed) == {"timeout"}
    assert (bad.attempts >= 3).all()  # first pass, retries for ~10 s, a final pass
    # Every wrong cell carries the exact command that shows it again.
    row = bad[(bad.source == "probe-other-0") & (bad.destination == "db-0")].iloc[0]
    assert row.reproduce.startswith(f"kubectl --context {TARGET.kube_context} -n {NS} exec "
                                    f"probe-other-0 -c probe -- bash -c '")
    args = shlex.split(row.reproduce)
    out = subprocess.run([str(tools.ensure("kubectl")), *args[1:]], capture_output=True,
                         text=True, timeout=30).stdout
    assert out.strip() == f"{row.target}:3306 connected"
    set_policies(lab_policies(CORRECT))


def test_kubectl_transport_sees_the_same(system):
    set_policies(lab_policies(CORRECT))
    df = probe.matrix(NS, SOURCES[1:], DESTINATIONS[:2], PORTS, expected=expected,
                      transport="kubectl", target=TARGET)
    assert probe.wrong(df).empty, explain(df)
    assert len(df) == 2 * 2


def test_lab_probe_command_on_a_stand_in_system(system):
    from lab.cli import cli

    set_policies(lab_policies(CORRECT))
    result = CliRunner().invoke(cli, ["probe", "--namespace", NS])
    assert result.exit_code == 0, result.output
    assert "all 6 cells match" in result.output  # web-0, web-1, probe-other-0 x 2 Services


def test_lab_probe_command_without_the_system_names_lab_deploy():
    from lab.cli import cli

    result = CliRunner().invoke(cli, ["probe", "--namespace", "k8s-lab-probe-absent"])
    assert result.exit_code == 1
    assert "lab deploy" in result.output


def test_canary_proves_policies_are_enforced():
    result = probe.canary(CANARY_NS, target=TARGET)
    assert result.enforced
    assert (result.before, result.blocked, result.restored) == ("connected", "timeout", "connected")
    assert "enforced" in str(result)
    try:  # the canary removes the namespace it created
        assert kube.core(TARGET).read_namespace(CANARY_NS).status.phase == "Terminating"
    except ApiException as error:
        assert error.status == 404
