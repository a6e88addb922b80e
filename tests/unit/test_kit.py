"""The kit's pure logic: kind config rendering, host detection, kind's constants, tool versions."""
from __future__ import annotations

import pytest

from lab import config
from lab.cluster import kind
from lab.host import docker
from lab.host import gobuild
from lab.build import nodeimage
from lab.host import tools
from lab.errors import LabError
from lab.target import Target

TARGET = Target("k8s-lab", "k8s-assignment")


def test_single_node_config_maps_nodeport_and_data_dir(tmp_path):
    document = kind.render_config(0, tmp_path)
    assert [n["role"] for n in document["nodes"]] == ["control-plane"]
    control = document["nodes"][0]
    assert control["extraPortMappings"][0]["hostPort"] == config.WEB_NODEPORT
    assert control["extraPortMappings"][0]["listenAddress"] == "127.0.0.1"
    assert control["extraMounts"] == [{"hostPath": str(tmp_path),
                                       "containerPath": kind.NODE_DATA_PATH}]
    assert control["labels"] == {kind.DATABASE_NODE_LABEL: "true"}
    assert "worker" not in document


def test_workers_get_the_mount_and_the_first_worker_gets_the_database(tmp_path):
    document = kind.render_config(2, tmp_path)
    roles = [n["role"] for n in document["nodes"]]
    assert roles == ["control-plane", "worker", "worker"]
    assert all(n["extraMounts"][0]["hostPath"] == str(tmp_path) for n in document["nodes"])
    labelled = [i for i, n in enumerate(document["nodes"]) if n.get("labels")]
    assert labelled == [1]


def test_negative_workers_rejected(tmp_path):
    with pytest.raises(LabError, match="--workers"):
        kind.render_config(-1, tmp_path)


@pytest.mark.parametrize("bounding, lacks", [("000001fffeffffff", True), ("000001ffffffffff", False)])
def test_sys_resource_detection(tmp_path, bounding, lacks):
    status = tmp_path / "status"
    status.write_text(f"Name:\tx\nCapBnd:\t{bounding}\n")
    assert kind.host_lacks_sys_resource(status) is lacks


def test_oom_patch_follows_the_host(tmp_path, monkeypatch):
    monkeypatch.setattr(kind, "host_lacks_sys_resource", lambda: True)
    assert kind.render_config(0, tmp_path)["containerdConfigPatches"] == [
        kind.RESTRICT_OOM_SCORE_ADJ]
    monkeypatch.setattr(kind, "host_lacks_sys_resource", lambda: False)
    assert "containerdConfigPatches" not in kind.render_config(0, tmp_path)


def test_kind_constants_resolve_concatenations(tmp_path):
    source = tmp_path / "pkg/build/nodeimage"
    source.mkdir(parents=True)
    (source / "const_a.go").write_text(
        'package nodeimage\n\nconst helper = "docker.io/x/helper:v1"\n'
        "const manifest = `\nimage: ` + helper + `\nend\n`\n")
    values = nodeimage.kind_constants(tmp_path)
    assert values["helper"] == "docker.io/x/helper:v1"
    assert values["manifest"] == "\nimage: docker.io/x/helper:v1\nend\n"


def test_kind_constants_of_the_pinned_kind_name_its_images():
    values = nodeimage.kind_constants(nodeimage.kind_source())
    assert values["kindnetdImage"].startswith("docker.io/kindest/kindnetd:")
    assert values["kindnetdImage"] in values["defaultCNIManifest"]
    assert values["storageHelperImage"] in values["defaultStorageManifest"]


def test_staging_modules_replaced_at_the_matching_release():
    spec = nodeimage.kubernetes_build()
    replaced = dict(spec.replaces)
    assert replaced["k8s.io/client-go"] == "k8s.io/client-go v0" + config.KUBERNETES_VERSION[2:]
    assert f"gitVersion={config.KUBERNETES_VERSION}" in spec.ldflags
    assert set(spec.binary_names()) == set(nodeimage.KUBE_BINARIES)


def test_build_key_changes_with_inputs():
    a = gobuild.GoBuild(name="x", packages=("example.com/x",), requires=(("example.com/x", "v1.0.0"),))
    b = gobuild.GoBuild(name="x", packages=("example.com/x",), requires=(("example.com/x", "v1.0.1"),))
    assert a.key() != b.key()
    assert a.key() == gobuild.GoBuild(**{**a.__dict__}).key()


@pytest.mark.parametrize("found, ok", [("v1.34.0", True), ("v1.33.9", True), ("v1.35.1", True),
                                       ("v1.32.4-dispatcher", False), ("garbage", False)])
def test_kubectl_skew(found, ok):
    assert tools._kubectl_compatible(found) is ok


def test_unknown_tool_names_the_choices():
    with pytest.raises(LabError) as error:
        tools.find("kubeadm")
    assert "kind" in error.value.hint and "helm" in error.value.hint


def test_no_docker_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert docker.engine_ready() is False
    with pytest.raises(LabError) as error:
        kind.up(TARGET)
    assert "docker.io" in error.value.hint


def test_a_stopped_engine_fails_with_its_own_complaint(monkeypatch, tmp_path):
    stub = tmp_path / "docker"
    stub.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock' >&2\n"
                    "exit 1\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LabError) as error:
        kind.up(TARGET)
    assert "Cannot connect to the Docker daemon" in error.value.message
    assert "scripts/setup-host" in error.value.hint


def test_too_little_disk_fails_before_building(monkeypatch, tmp_path):
    monkeypatch.setattr(docker, "data_root", lambda: tmp_path)
    with pytest.raises(LabError, match=r"needs 100000 GiB"):
        docker.require_free_space(100000, tmp_path)


@pytest.mark.parametrize("mode", ["auto", "online", "offline"])
def test_cluster_up_brings_every_tool_first(monkeypatch, mode):
    # The chart's unit tests, `lab deploy` and the notebooks all need helm; a fresh machine once
    # had a cluster but no helm because `cluster up` only fetched kind and kubectl.
    calls = []
    monkeypatch.setattr(docker, "require_engine", lambda: None)
    monkeypatch.setattr(tools, "ensure_all", lambda mode: calls.append(mode))

    def exists(target):
        raise RuntimeError("stop here")

    monkeypatch.setattr(kind, "exists", exists)
    with pytest.raises(RuntimeError, match="stop here"):
        kind.up(TARGET, mode=mode)
    assert calls == [mode]


def test_only_the_labs_own_cluster_publishes_its_web_on_30080(monkeypatch):
    monkeypatch.delenv("LAB_WEB_HOST_PORT", raising=False)
    assert kind._web_host_port(config.DEFAULT_CLUSTER) == config.WEB_HOST_PORT
    # Another cluster never takes it, even while it is free: k8s-lab, recreated, would find it gone.
    ports = {kind._web_host_port("k8s-lab-b") for _ in range(3)}
    assert config.WEB_HOST_PORT not in ports and all(1024 < p < 65536 for p in ports)


@pytest.mark.parametrize("holder, named, hint", [
    ("k8s-lab-m-control-plane\tk8s-lab-m", "taken by cluster k8s-lab-m (container k8s-lab-m-control-plane)",
     "lab cluster down --cluster k8s-lab-m"),
    ("some-web\t", "taken by container some-web", "docker stop some-web"),
])
def test_a_taken_web_port_is_named_before_anything_is_built(monkeypatch, holder, named, hint):
    asked = []
    monkeypatch.setattr(docker, "require_engine", lambda: None)
    monkeypatch.setattr(tools, "ensure_all", lambda mode: {})
    monkeypatch.setattr(kind, "exists", lambda target: False)
    monkeypatch.setattr(docker, "output", lambda args: asked.append(args) or holder)
    monkeypatch.setattr(kind, "node_image", lambda mode: pytest.fail("the node image was built first"))
    with pytest.raises(LabError) as error:
        kind.up(TARGET)
    assert f"host port {config.WEB_HOST_PORT}" in error.value.message and named in error.value.message
    assert hint in error.value.hint and "LAB_WEB_HOST_PORT=" in error.value.hint
    assert ["--filter", f"publish={config.WEB_HOST_PORT}"] == asked[0][1:3]


@pytest.fixture
def healthy_three_nodes(monkeypatch):
    nodes = ["k8s-lab-control-plane", "k8s-lab-worker", "k8s-lab-worker2"]
    monkeypatch.setattr(docker, "require_engine", lambda: None)
    monkeypatch.setattr(tools, "ensure_all", lambda mode: {})
    monkeypatch.setattr(kind, "exists", lambda target: True)
    monkeypatch.setattr(kind, "_start_stopped_nodes", lambda target: None)
    monkeypatch.setattr(kind, "health", lambda target: (True, "all nodes Ready", nodes))
    monkeypatch.setattr(kind, "_node_image_of", lambda name: config.OFFLINE_NODE_IMAGE)
    return nodes


def test_cluster_up_without_workers_keeps_a_grown_cluster(healthy_three_nodes):
    # Notebook 09 grows the cluster to three nodes; `make lab` or `make test` afterwards must reuse it.
    info = kind.up(TARGET)
    assert info.nodes == healthy_three_nodes and not info.created


def test_cluster_up_with_other_workers_points_to_recreate(healthy_three_nodes):
    with pytest.raises(LabError) as error:
        kind.up(TARGET, workers=0)
    assert "has 3 nodes, you asked for 1" in error.value.message and "--recreate" in error.value.hint


def test_broken_cluster_points_to_recreate(monkeypatch):
    monkeypatch.setattr(docker, "require_engine", lambda: None)
    monkeypatch.setattr(tools, "ensure_all", lambda mode: {})
    monkeypatch.setattr(kind, "exists", lambda target: True)
    monkeypatch.setattr(kind, "health", lambda target:
                        (False, "nodes not Ready: k8s-lab-control-plane", ["k8s-lab-control-plane"]))
    with pytest.raises(LabError) as error:
        kind.up(TARGET)
    assert "broken" in error.value.message and "--recreate" in error.value.hint
