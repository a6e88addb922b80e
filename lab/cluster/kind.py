"""The lab's kind cluster: create, reuse, recreate, inspect and delete it."""
from __future__ import annotations

import copy
import os
import socket
import time
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client

from lab import config, runner, timing, yamldoc
from lab.cluster import kube
from lab.errors import LabError
from lab.host import docker, tools
from lab.progress import info, step
from lab.target import Target

KIND_CONFIG = config.REPO_ROOT / "manifests" / "kind" / "cluster.yaml"
NODE_DATA_PATH = config.NODE_DATA_PATH
DATABASE_NODE_LABEL = "k8s-lab/database"
READY_TIMEOUT_S = 300
KIND_TIMEOUT_S = 600
LOAD_TIMEOUT_S = 900


@dataclass
class ClusterInfo:
    name: str
    context: str
    image: str
    nodes: list[str]
    created: bool


def _kind(*args: str, timeout: float = KIND_TIMEOUT_S) -> runner.Result:
    return tools.run("kind", *args, timeout=timeout,
                     hint="see the kind output above; `lab doctor` checks the host")


def exists(target: Target) -> bool:
    # Without kind there is no kind cluster: asking must not download or build kind first.
    return tools.find("kind") is not None and target.cluster in _kind("get", "clusters").stdout.split()


def require(target: Target) -> None:
    """Fail with one line naming the cluster (and how to make it) when it is not there."""
    if not exists(target):
        make = "lab cluster up" if target.cluster == config.CLUSTER_NAME else f"LAB_CLUSTER={target.cluster} lab cluster up"
        raise LabError(f"the kind cluster {target.cluster!r} does not exist", hint=f"create it with `{make}`")


def load_images(target: Target, tags: list[str]) -> None:
    """``kind load docker-image`` the given images into every node of `target`'s cluster."""
    if not tags:
        return
    require(target)
    with step(f"loading {len(tags)} image(s) into kind cluster {target.cluster}") as progress:
        progress.update(", ".join(tags))
        _kind("load", "docker-image", "--name", target.cluster, *tags, timeout=LOAD_TIMEOUT_S)


# Lowering a process's oom_score_adj needs CAP_SYS_RESOURCE. Where the host's bounding set lacks
# it, runc fails to start every pod sandbox that kubelet asks a negative score for ("can't get
# final child's PID from pipe"); containerd then has to clamp scores to its own, as it does rootless.
RESTRICT_OOM_SCORE_ADJ = """[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
"""
CAP_SYS_RESOURCE = 24


def host_lacks_sys_resource(status: Path = Path("/proc/self/status")) -> bool:
    for line in status.read_text().splitlines():
        if line.startswith("CapBnd:"):
            return not (int(line.split()[1], 16) >> CAP_SYS_RESOURCE) & 1
    return False


def render_config(workers: int, data_dir: Path, host_port: int = config.WEB_HOST_PORT) -> dict:
    """The kind config from the repo, with the data directory and `workers` worker nodes."""
    if workers < 0:
        raise LabError(f"--workers must be 0 or more, not {workers}")
    document = yamldoc.load(KIND_CONFIG.read_text())
    worker = document.pop("worker")
    for node in (document["nodes"][0], worker):
        for mount in node["extraMounts"]:
            if mount["containerPath"] == NODE_DATA_PATH:
                mount["hostPath"] = str(data_dir)
    document["nodes"][0]["extraPortMappings"][0]["hostPort"] = host_port
    document["nodes"].extend(copy.deepcopy(worker) for _ in range(workers))
    if host_lacks_sys_resource():
        document["containerdConfigPatches"] = [RESTRICT_OOM_SCORE_ADJ]
    if workers:
        # On a multi-node cluster the database belongs on a worker, not the control plane.
        document["nodes"][0].pop("labels", None)
        document["nodes"][1]["labels"] = {DATABASE_NODE_LABEL: "true"}
    return document


def node_image(mode: str) -> str:
    from lab.build.images import resolve_mode  # one notion of online/offline for every image

    if resolve_mode(mode) == "online":
        return config.UPSTREAM_NODE_IMAGE
    from lab.build import kit

    return kit.node_image()


def health(target: Target) -> tuple[bool, str, list[str]]:
    """(healthy, reason, node names) for an existing cluster."""
    try:
        nodes = kube.core(target).list_node(_request_timeout=10).items
    except Exception as error:  # any API failure means the cluster cannot be used as is
        return False, f"the API server does not answer ({type(error).__name__}: {error})"[:300], []
    names = [n.metadata.name for n in nodes]
    not_ready = [n.metadata.name for n in nodes if not kube.node_ready(n)]
    if not nodes:
        return False, "the cluster has no nodes", names
    if not_ready:
        return False, f"nodes not Ready: {', '.join(not_ready)}", names
    return True, "all nodes Ready", names


def wait_ready(target: Target, timeout: float = READY_TIMEOUT_S) -> list[str]:
    """Wait for every node to be Ready and for cluster DNS to serve."""
    deadline = time.monotonic() + timeout
    reason = ""
    with timing.measure(timing.WAIT), step("waiting for nodes to be Ready") as progress:
        while time.monotonic() < deadline:
            healthy, reason, names = health(target)
            if healthy:
                break
            progress.update(reason)
            time.sleep(2)
        else:
            raise LabError(f"the cluster did not become ready in {timeout:.0f}s: {reason}",
                           hint=f"look at `kubectl --context {target.kube_context} get pods -A`; "
                                "`lab cluster up --recreate` starts over")
    with timing.measure(timing.WAIT), step("waiting for cluster DNS"):
        core = kube.core(target)
        while time.monotonic() < deadline:
            pods = core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns").items
            if pods and all(any(c.type == "Ready" and c.status == "True"
                                for c in p.status.conditions or []) for p in pods):
                return names
            time.sleep(2)
    raise LabError("CoreDNS did not become ready", hint="kubectl -n kube-system describe pods")


def up(target: Target, workers: int | None = None, mode: str = "auto", recreate: bool = False) -> ClusterInfo:
    """Create the lab cluster, or reuse a healthy one.

    ``workers=None`` takes a running cluster at whatever size it has (notebook 09 grows it) and
    makes a new one with none; a number insists on that many worker nodes."""
    docker.require_engine()
    # kind makes the cluster; kubectl and helm come with it because the notebooks, `lab deploy`
    # and the tests all drive the cluster with them.
    tools.ensure_all(mode)
    name, context = target.cluster, target.kube_context
    if exists(target):
        if recreate:
            down(target)
        else:
            _start_stopped_nodes(target)
            healthy, reason, names = health(target)
            if not healthy:
                raise LabError(f"cluster {name!r} exists but is broken: {reason}",
                               hint="`lab cluster up --recreate` deletes it and starts over")
            if workers is not None and len(names) != workers + 1:
                raise LabError(f"cluster {name!r} has {len(names)} nodes, you asked for {workers + 1}",
                               hint="`lab cluster up --recreate --workers N` rebuilds it")
            info(f"reusing healthy cluster {name} ({len(names)} nodes)")
            return ClusterInfo(name, context, _node_image_of(name), names, created=False)
    workers = workers or 0
    host_port = _web_host_port(name)
    _require_free_host_port(host_port, name)  # before a node image build that may take minutes
    image = node_image(mode)
    data_dir = target.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    rendered = config.cache_dir() / f"kind-config-{name}.yaml"
    rendered.parent.mkdir(parents=True, exist_ok=True)
    rendered.write_text(yaml.safe_dump(render_config(workers, data_dir, host_port), sort_keys=False))
    with step(f"kind create cluster {name} ({workers + 1} nodes, {image})"):
        _kind("create", "cluster", "--name", name, "--image", image, "--config", str(rendered),
              "--wait", "0s")
    names = wait_ready(target)
    return ClusterInfo(name, context, image, names, created=True)


def _web_host_port(name: str) -> int:
    """The host port for the web NodePort: 30080 (or LAB_WEB_HOST_PORT) for the lab's own cluster,
    a free port of its own for any other (`docker port` finds it). Never 30080 for another one,
    even when it is free: the lab's own cluster, deleted for a moment (notebook 09, `--recreate`),
    would find it taken when it comes back."""
    if name == config.DEFAULT_CLUSTER or "LAB_WEB_HOST_PORT" in os.environ:
        return config.WEB_HOST_PORT
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _require_free_host_port(port: int, name: str) -> None:
    """Before kind makes nodes: a container already publishing ``port`` is named, with what to
    do, instead of Docker's "port is already allocated" halfway through `kind create`."""
    holders = docker.output(["ps", "--filter", f"publish={port}", "--format",
                             '{{.Names}}\t{{.Label "io.x-k8s.kind.cluster"}}']).splitlines()
    if not holders:
        return
    container, _, cluster = holders[0].partition("\t")
    holder, way_out = ((f"cluster {cluster} (container {container})", f"delete it (`lab cluster down --cluster {cluster}`)")
                       if cluster else (f"container {container}", f"stop it (`docker stop {container}`)"))
    raise LabError(f"host port {port}, which cluster {name} publishes its web NodePort on, is taken by {holder}",
                   hint=f"{way_out}, or give {name} another port: LAB_WEB_HOST_PORT=30081 lab cluster up --cluster {name}")


def web_host_port(target: Target) -> int:
    """Where `target`'s web NodePort answers on this host."""
    mapped = docker.output(["port", f"{target.cluster}-control-plane", f"{config.WEB_NODEPORT}/tcp"])
    return int(mapped.split()[0].rsplit(":", 1)[1])


def _start_stopped_nodes(target: Target) -> None:
    """After a reboot or a Docker restart the node containers are stopped, not gone: start them
    and wait until the kubelets and DNS report again (their old Ready flags are stale)."""
    nodes = docker.output(["ps", "-a", "--filter", f"label=io.x-k8s.kind.cluster={target.cluster}",
                           "--filter", "status=exited", "--format", "{{.Names}}"]).split()
    if not nodes:
        return
    since = datetime.now(timezone.utc)
    with step(f"starting stopped node containers {', '.join(nodes)}"):
        docker.run(["start", *nodes])
    deadline = time.monotonic() + READY_TIMEOUT_S
    with timing.measure(timing.WAIT), step("waiting for the kubelets to report again"):
        while time.monotonic() < deadline:
            if _fresh_since(since, target):
                break
            time.sleep(2)
    wait_ready(target)


def _fresh_since(since: datetime, target: Target) -> bool:
    try:
        leases = client.CoordinationV1Api(kube.api_client(target)).list_namespaced_lease(
            "kube-node-lease", _request_timeout=5).items
        dns = kube.core(target).list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns",
                                                     _request_timeout=5).items
    except Exception:  # the API server is still starting
        return False
    renewed = leases and all(l.spec.renew_time and l.spec.renew_time > since for l in leases)
    restarted = dns and all(c.state.running and c.state.running.started_at > since
                            for p in dns for c in p.status.container_statuses or [])
    return bool(renewed and restarted)


def _node_image_of(name: str) -> str:
    return docker.output(["inspect", "--format", "{{.Config.Image}}", f"{name}-control-plane"])


def down(target: Target) -> None:
    """Delete the cluster; the host data directory (volumes, backups) is kept."""
    docker.require_engine()
    with step(f"kind delete cluster {target.cluster}"):
        _kind("delete", "cluster", "--name", target.cluster)


def status(target: Target) -> dict:
    docker.require_engine()
    if not exists(target):
        return {"cluster": target.cluster, "exists": False,
                "hint": "create it with `lab cluster up`"}
    healthy, reason, names = health(target)
    result = {"cluster": target.cluster, "exists": True, "context": target.kube_context,
              "healthy": healthy, "detail": reason, "nodes": ", ".join(names),
              "image": _node_image_of(target.cluster), "data_dir": str(target.data_dir)}
    if healthy:
        result["server_version"] = client.VersionApi(kube.api_client(target)).get_code().git_version
    return result
