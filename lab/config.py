"""Names, versions and paths that every part of the lab agrees on.

Versions are pinned here and nowhere else; build caches are keyed by them.
"""
from __future__ import annotations

import os
from pathlib import Path

# LAB_CLUSTER and LAB_WEB_HOST_PORT let a second cluster (a benchmark, an instructor's grading
# cluster) run beside the lab's own without clashing over its name or host port.
DEFAULT_CLUSTER = "k8s-lab"
CLUSTER_NAME = os.environ.get("LAB_CLUSTER", DEFAULT_CLUSTER)
KUBE_CONTEXT = f"kind-{CLUSTER_NAME}"
NAMESPACE = "k8s-assignment"
WEB_NODEPORT = 30080
WEB_HOST_PORT = int(os.environ.get("LAB_WEB_HOST_PORT", WEB_NODEPORT))
DB_PORT = 3306
# The NetworkPolicies (deny, allow) of the NetworkPolicy canary in a namespace it shares (lab.ops.probe.canary).
CANARY_POLICIES = ("canary-deny", "canary-allow")
# Where every kind node mounts its cluster's host data directory (hostPath volumes, backups).
NODE_DATA_PATH = "/var/local/k8s-lab"

# Kubernetes stays on 1.34: these hosts run cgroup v1, which kubelet 1.35 refuses by default.
KUBERNETES_VERSION = "v1.34.4"
KIND_VERSION = "v0.30.0"
HELM_VERSION = "v3.19.5"
# The node image that kind v0.30.0 publishes for Kubernetes 1.34 (used when a registry is reachable).
UPSTREAM_NODE_IMAGE = "kindest/node:v1.34.0"

# Images that kubeadm v1.34 and kind v0.30.0 expect inside the node, with the Go modules the
# offline kit builds them from.
ETCD_VERSION = "v3.6.4"
ETCD_IMAGE_TAG = "3.6.4-0"
COREDNS_VERSION = "v1.12.1"
PAUSE_IMAGE_TAG = "3.10.1"
RUNC_VERSION = "v1.3.0"
CNI_PLUGINS_VERSION = "v1.7.1"
CRICTL_VERSION = "v1.34.0"
LOCAL_PATH_PROVISIONER_VERSION = "v0.0.30"

OFFLINE_NODE_IMAGE = f"k8s-lab/node:{KUBERNETES_VERSION}"
DEBIAN_SUITE = "bookworm"

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Build outputs live outside the work tree so a fresh clone (as CI makes) reuses them."""
    base = os.environ.get("LAB_CACHE_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "k8s-lab"


def data_dir(cluster: str = CLUSTER_NAME) -> Path:
    """Host directory that `cluster`'s nodes mount for hostPath volumes and backups.

    Each cluster has its own, so a second cluster's volumes and backups never mix with the lab's.
    LAB_DATA_DIR names the directory of the cluster that LAB_CLUSTER names."""
    explicit = os.environ.get("LAB_DATA_DIR")
    if explicit and cluster == CLUSTER_NAME:
        return Path(explicit)
    return cache_dir() / ("data" if cluster == DEFAULT_CLUSTER else f"data-{cluster}")
