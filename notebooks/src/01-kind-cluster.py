# Source of notebooks/01-kind-cluster.ipynb (build with: python notebooks/src/build.py)

# %% [markdown]
# # 01 · A Kubernetes cluster in Docker: kind
#
# Kubernetes is a set of programs (an API server, a database, a scheduler, controllers, and a
# *kubelet* on every machine) that together keep containers running the way you described them.
# To learn it you need a real cluster, but not a data centre: [kind](https://kind.sigs.k8s.io/)
# runs each node of a cluster as a Docker container on your machine. In this notebook we bring the
# lab's cluster up (or find it already running) and look inside.

# %% [markdown]
# ## Learning objectives
#
# After this notebook you can
#
# - explain what kind is and why a Kubernetes node can be "just" a container,
# - bring the lab's cluster up idempotently (`lab cluster up` reuses a running cluster),
# - find the cluster through its kubeconfig **context** and ask it for its version and nodes,
# - name the control-plane components running in `kube-system` and say what each one does,
# - tell the online node image (`kindest/node`) from the offline one the lab builds itself.

# %% [markdown]
# ## Concepts
#
# - A kind **node** is a Docker container whose image (the *node image*) contains systemd,
#   containerd and the kubelet. Inside it, the kubelet starts the cluster's own components as
#   containers: containers in a container.
# - **Control plane.** `kube-apiserver` is the only door into the cluster: kubectl, helm and the
#   Python client all talk to it. `etcd` stores every object. `kube-scheduler` picks a node for each
#   new Pod. `kube-controller-manager` runs the control loops that turn what you asked for (a
#   Deployment with 3 replicas) into what exists (3 Pods).
# - **On every node.** `kube-proxy` programs the node's packet filter so that Service addresses
#   reach Pods; `kindnet` is kind's network plugin (Pod addresses, routes, NetworkPolicy);
#   CoreDNS (`k8s-app=kube-dns`) answers DNS names such as `database.k8s-assignment.svc`.
# - **kubeconfig context.** `kind create cluster --name k8s-lab` writes the API server's address and
#   a client certificate into `~/.kube/config` under the context `kind-k8s-lab`. Every command
#   names that context, so you never talk to the wrong cluster by accident.
# - **Idempotent set-up.** Creating a cluster takes minutes; finding a healthy one takes a second.
#   `lab cluster up` (and this notebook) reuse the running cluster and never delete it.

# %% tags=["parameters"]
cluster = "k8s-lab"  # the kind cluster: kubeconfig context kind-<cluster>
namespace = "k8s-assignment"  # where the lab's objects go
mode = "auto"  # images and node image: "auto" | "online" | "offline"
solutions = True  # True runs the reference solutions; False leaves the exercises to you
kubeconfig = ""  # "": $KUBECONFIG or ~/.kube/config; in a classroom, the file your instructor gave you

# %%
# NBVAL_CHECK_OUTPUT
from lab import checks, notebook, tasks

nb = notebook.start("01-kind-cluster.ipynb", cluster=cluster, namespace=namespace, mode=mode, solutions=solutions,
                    kubeconfig=kubeconfig)

# %% [markdown]
# ## Step 1: bring the cluster up (or reuse it)
#
# ```bash
# lab cluster up            # = kind create cluster --name k8s-lab --config manifests/kind/cluster.yaml --image NODE_IMAGE
# ```
#
# When the cluster already runs, this returns at once ("reusing healthy cluster"); stopped node
# containers (after a reboot) are started again. It never deletes anything: `lab cluster up
# --recreate` would, and we do not use it here.

# %%
# NBVAL_IGNORE_OUTPUT
info = nb.cluster_up()
print(f"cluster {info.name}: {'created' if info.created else 'reused'}, {len(info.nodes)} node(s): "
      f"{', '.join(info.nodes)}; node image {info.image}")

# %% [markdown]
# **Checkpoint.** Every node of the cluster reports `Ready`.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("cluster.nodes-ready", points=2,
                   hint="`lab cluster status`; then `kubectl --context kind-k8s-lab describe nodes` shows why a node is not Ready")
def cluster_nodes_ready():
    from lab.cluster import kube

    nodes = kube.core(nb.target).list_node(_request_timeout=10).items
    not_ready = [n.metadata.name for n in nodes if not kube.node_ready(n)]
    if not nodes:
        return checks.fail("the cluster has no nodes")
    if not_ready:
        return checks.fail(f"nodes not Ready: {', '.join(not_ready)}")
    return checks.ok("every node is Ready", {f"Node/{n.metadata.name}": n.metadata.uid for n in nodes})


# %% [markdown]
# ## Step 2: the kubeconfig context
#
# The context names a cluster (the API server's URL and CA certificate) and a user (a client
# certificate). kind maps the API server to a random port on `127.0.0.1`.
#
# ```bash
# kubectl config get-contexts
# kubectl --context kind-k8s-lab cluster-info
# kubectl --context kind-k8s-lab version
# ```

# %%
# NBVAL_IGNORE_OUTPUT
nb.kubectl("config", "get-contexts", namespaced=False)
nb.kubectl("cluster-info", namespaced=False)
nb.kubectl("version", namespaced=False);

# %% [markdown]
# **Checkpoint.** The context reaches an API server of the Kubernetes version the lab pins.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("cluster.api-version", points=1,
                   hint="`kubectl --context kind-k8s-lab version`; a different server version means another cluster answers")
def cluster_api_version():
    from kubernetes import client

    from lab import config
    from lab.cluster import kube

    version = client.VersionApi(kube.api_client(nb.target)).get_code(_request_timeout=10).git_version
    if version.split("+")[0] != config.KUBERNETES_VERSION:
        return checks.fail(f"context {nb.context} reaches Kubernetes {version}, the lab expects {config.KUBERNETES_VERSION}")
    return checks.ok(f"context {nb.context} reaches Kubernetes {config.KUBERNETES_VERSION}")


# %% [markdown]
# ## Step 3: the nodes
#
# ```bash
# kubectl --context kind-k8s-lab get nodes -o wide --show-labels
# ```
#
# Look at the columns: the kubelet version, the container runtime (containerd), the OS of the node
# image. One label matters later: `k8s-lab/database=true` marks the node where the database and
# its data directory live.

# %%
# NBVAL_IGNORE_OUTPUT
nb.kubectl("get", "nodes", "-o", "wide", namespaced=False);

# %%
# NBVAL_IGNORE_OUTPUT
import pandas as pd

from lab.cluster import kube

nodes = kube.core(nb.target).list_node(_request_timeout=10).items
node_table = pd.DataFrame([{
    "node": n.metadata.name,
    "roles": ",".join(sorted(k.split("/", 1)[1] for k in n.metadata.labels if k.startswith("node-role.kubernetes.io/"))) or "worker",
    "kubelet": n.status.node_info.kubelet_version,
    "runtime": n.status.node_info.container_runtime_version.split(":")[0],
    "os": n.status.node_info.os_image,
    "database node": n.metadata.labels.get("k8s-lab/database") == "true",
} for n in nodes])
print(node_table.to_string(index=False))

# %% [markdown]
# **Checkpoint.** Exactly one node carries the database label (the database's volume is pinned to it).

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("cluster.database-node", points=1,
                   hint="kubectl --context kind-k8s-lab get nodes -L k8s-lab/database; the kind config (manifests/kind/cluster.yaml) sets the label")
def cluster_database_node():
    labelled = [n.metadata.name for n in kube.core(nb.target).list_node(_request_timeout=10).items
                if (n.metadata.labels or {}).get("k8s-lab/database") == "true"]
    if len(labelled) != 1:
        return checks.fail(f"{len(labelled)} nodes are labelled k8s-lab/database=true ({', '.join(labelled) or 'none'}); expected one")
    return checks.ok("one node is labelled k8s-lab/database=true")


# %% [markdown]
# ## Step 4: the nodes are Docker containers
#
# ```bash
# kind get clusters
# kind get nodes --name k8s-lab
# docker ps --filter label=io.x-k8s.kind.cluster=k8s-lab
# ```
#
# The container's image is the **node image**. Online, kind uses the published
# `kindest/node:v1.34.0`. Offline (no registry), the lab assembles its own, `k8s-lab/node:v1.34.4`:
# kubelet, kubeadm, containerd, etcd, CoreDNS and the pause image built from Go modules, on a Debian
# base made from Debian packages. Both hold the same programs; only where they came from differs.

# %%
# NBVAL_IGNORE_OUTPUT
from lab.host import tools

kind_bin = tools.ensure("kind")
nb.run([kind_bin, "get", "clusters"], "kind get clusters")
nb.run([kind_bin, "get", "nodes", "--name", nb.cluster], f"kind get nodes --name {nb.cluster}")
nb.docker("ps", "--filter", f"label=io.x-k8s.kind.cluster={nb.cluster}",
          "--format", "table {{.Names}}\t{{.Image}}\t{{.Status}}\t{{.Ports}}");

# %% [markdown]
# Inside a node container, the node's own runtime (containerd) runs the cluster's containers.
# `crictl` is the kubelet's view of them:
#
# ```bash
# docker exec k8s-lab-control-plane crictl ps --namespace kube-system
# ```

# %%
# NBVAL_IGNORE_OUTPUT
nb.docker("exec", f"{nb.cluster}-control-plane", "crictl", "ps", "--namespace", "kube-system", "--state", "running");

# %% [markdown]
# **Checkpoint.** The nodes run the lab's online or offline node image.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("cluster.node-image", points=1,
                   hint="`docker ps --filter label=io.x-k8s.kind.cluster=k8s-lab`; a cluster made elsewhere can be rebuilt with `lab cluster up --recreate`")
def cluster_node_image():
    from lab import config
    from lab.host import docker

    nodes = nb.node_containers()
    images = dict(zip(nodes, docker.output(["inspect", "--format", "{{.Config.Image}}", *nodes]).split())) if nodes else {}
    known = {config.UPSTREAM_NODE_IMAGE: "online", config.OFFLINE_NODE_IMAGE: "offline"}
    odd = {n: i for n, i in images.items() if i not in known}
    if not images:
        return checks.fail(f"no Docker containers of cluster {nb.cluster}")
    if odd:
        return checks.fail("unexpected node image(s): " + ", ".join(f"{n}: {i}" for n, i in odd.items()))
    kinds = sorted({known[i] for i in images.values()})
    return checks.ok(f"the nodes run the {' and '.join(kinds)} node image")


# %% [markdown]
# ## Step 5: the control plane in `kube-system`
#
# ```bash
# kubectl --context kind-k8s-lab -n kube-system get pods -o wide
# ```
#
# Static Pods (the API server, etcd, scheduler, controller manager) are named after their node; Pods
# made by a DaemonSet or Deployment (kube-proxy, kindnet, CoreDNS) carry a random suffix.

# %%
# NBVAL_IGNORE_OUTPUT
nb.kubectl("get", "pods", "-o", "wide", "--namespace", "kube-system", namespaced=False);

# %% [markdown]
# **Checkpoint.** Every `kube-system` Pod runs and is ready.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("cluster.system-pods", points=1,
                   hint="kubectl --context kind-k8s-lab -n kube-system get pods; describe the one that is not Running")
def cluster_system_pods():
    pods = kube.core(nb.target).list_namespaced_pod("kube-system", _request_timeout=10).items
    bad = [f"{p.metadata.name} ({p.status.phase})" for p in pods
           if p.status.phase != "Running" or not all(s.ready for s in p.status.container_statuses or [])]
    if not pods:
        return checks.fail("kube-system has no Pods")
    if bad:
        return checks.fail("not running and ready: " + ", ".join(bad))
    return checks.ok("every kube-system Pod is running and ready",
                     {f"Pod/kube-system/{p.metadata.name}": p.metadata.uid for p in pods})


# %% [markdown]
# ## Exercise: the kind configuration, written by you
#
# `lab cluster up` made this cluster from the lab's kind configuration. Write one yourself, in
# `work/kind-cluster.yaml`, for the cluster notebook 09 uses: a control plane and **two workers**.
# It must give the lab what the lab relies on:
#
# - the web Service's node port **30080** of the control-plane node published on this machine, on
#   `127.0.0.1` only (`extraPortMappings`: `containerPort`, `hostPort`, `listenAddress`),
# - the lab data directory of this machine mounted into **every** node at `/var/local/k8s-lab`
#   (`extraMounts`; write `hostPath: LAB_DATA_DIR`, which `lab cluster up` replaces with your data
#   directory),
# - the label `k8s-lab/database: "true"` on the **first worker** only (the database follows it).
#
# The checkpoint reads your file and compares it with the cluster that runs.

# %%
# NBVAL_IGNORE_OUTPUT
%%writefile work/kind-cluster.yaml
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/16
nodes:
  - role: control-plane
# BEGIN SOLUTION
    extraPortMappings:
      - containerPort: 30080
        hostPort: 30080
        listenAddress: 127.0.0.1
        protocol: TCP
    extraMounts:
      - hostPath: LAB_DATA_DIR
        containerPath: /var/local/k8s-lab
  - role: worker
    labels:
      k8s-lab/database: "true"
    extraMounts:
      - hostPath: LAB_DATA_DIR
        containerPath: /var/local/k8s-lab
  - role: worker
    extraMounts:
      - hostPath: LAB_DATA_DIR
        containerPath: /var/local/k8s-lab
# END SOLUTION
# BEGIN PROMPT
    # TODO: the port mapping and the data mount; then the two workers
# END PROMPT

# %% [markdown]
# **Checkpoint.** Your configuration publishes the port the running cluster publishes, mounts the
# data directory into every node, and labels the first worker.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint("build.kind-config", points=3,
                  hint="kind's configuration reference: https://kind.sigs.k8s.io/docs/user/configuration/; manifests/kind/cluster.yaml is the lab's own",
                  verify=lambda: tasks.kind_config(nb, "work/kind-cluster.yaml", workers=2))


# %% [markdown]
# ## Exercise: which components make up this cluster?
#
# Every `kube-system` Pod says which component it is in a label: static Pods use `component`
# (e.g. `component=etcd`), the others `k8s-app` (e.g. `k8s-app=kube-proxy`). Build the **set** of
# component names of all `kube-system` Pods and store it in `components`.
#
# Hint: `kube.core(nb.target).list_namespaced_pod("kube-system").items` gives the Pods, and
# `pod.metadata.labels` their labels. Or in a terminal:
# `kubectl -n kube-system get pods -L component,k8s-app`.

# %%
# NBVAL_CHECK_OUTPUT
components = set()
# BEGIN SOLUTION NO PROMPT
for pod in kube.core(nb.target).list_namespaced_pod("kube-system", _request_timeout=10).items:
    labels = pod.metadata.labels or {}
    components.add(labels.get("component") or labels.get("k8s-app"))
# END SOLUTION
# BEGIN PROMPT
# TODO: fill the set `components` with the component name of every kube-system Pod
# END PROMPT
print(sorted(components))

# %% [markdown]
# **Checkpoint.** Your set matches the cluster.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("cluster.components", points=2,
                   hint="each kube-system Pod has a `component` or a `k8s-app` label: kubectl -n kube-system get pods -L component,k8s-app")
def cluster_components():
    actual = set()
    for pod in kube.core(nb.target).list_namespaced_pod("kube-system", _request_timeout=10).items:
        labels = pod.metadata.labels or {}
        actual.add(labels.get("component") or labels.get("k8s-app"))
    missing, extra = sorted(actual - set(components)), sorted(set(components) - actual)
    if missing or extra:
        return checks.fail(f"components: missing {missing or 'none'}, not in the cluster {extra or 'none'}")
    return checks.ok(f"you found all {len(actual)} components")


# %% [markdown]
# ## Summary
#
# - kind runs each Kubernetes node as a Docker container; the node image holds kubelet and
#   containerd, which run the control plane as containers inside it.
# - The kubeconfig context `kind-k8s-lab` is how every tool finds this cluster.
# - `kube-system` holds the control plane (API server, etcd, scheduler, controller manager) and the
#   per-node helpers (kube-proxy, kindnet) plus CoreDNS.
# - Bringing the cluster up is idempotent: a healthy cluster is reused.

# %%
# NBVAL_CHECK_OUTPUT
checks.summary()

# %% [markdown]
# ## Clean-up
#
# Keep the cluster: every following notebook uses it. When the course is over, `lab cluster down`
# deletes it (the lab's data directory on your machine, with the database files and backups, stays).
# Next: **02-storage**.
