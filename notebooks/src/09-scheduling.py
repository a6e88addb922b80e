# Source of notebooks/09-scheduling.ipynb (build with: python notebooks/src/build.py)

# %% [markdown]
# # 09 · Where Pods run: nodes, affinity, topology spread and DaemonSets
#
# On a cluster of one node the question *where* a Pod runs does not come up, and the lab's cluster
# starts with one. Real clusters have many, and the **scheduler** decides for every new Pod which
# node gets it. Our
# system states three different wishes: the database must run on the node that has its data
# (**node affinity**), the web server's copies should be spread over the nodes so that losing one
# node does not take the site down (**topology spread**), and the pod watcher must run on **every**
# node, the control plane included (a **DaemonSet** with a **toleration**). In this notebook we
# give the cluster `workers` worker nodes and check each wish against where the Pods really landed.

# %% [markdown]
# ## Learning objectives
#
# After this notebook you can
#
# - explain how the scheduler picks a node: *filters* (resources, affinity, taints) then *scores*
#   (spread, balance), and read its decision with `kubectl get pods -o wide`,
# - pin a Pod to labelled nodes with required node affinity, and see why a local volume needs it,
# - spread a Deployment's replicas with `topologySpreadConstraints` and tell a hard rule
#   (`DoNotSchedule`) from a soft one (`ScheduleAnyway`),
# - explain taints and tolerations, and why a DaemonSet's Pod reaches the control-plane node while
#   the web Pods do not,
# - say why a kind cluster has to be created again to get more nodes, and what survives that.

# %% [markdown]
# ## Concepts
#
# - **Scheduling.** A new Pod has no `spec.nodeName`. The scheduler first *filters* the nodes (enough
#   free CPU and memory for the Pod's requests, matching node affinity, no taint the Pod does not
#   tolerate), then *scores* the rest (e.g. how evenly a topology spread is met, how balanced the
#   node's resources are) and binds the Pod to the best one. Once bound, a Pod never moves: only a
#   new Pod is scheduled again.
# - **Node affinity** (`requiredDuringSchedulingIgnoredDuringExecution`) is a filter on node labels.
#   Our database and its PersistentVolume both require `k8s-lab/database=true`: a hostPath volume's
#   files live on one node, so the database must run there. The cluster configuration puts that
#   label on the first worker.
# - **Topology spread** counts matching Pods per *topology domain* (here `kubernetes.io/hostname`:
#   each node is a domain) and keeps the difference (*skew*) at most `maxSkew`. Ours is soft
#   (`ScheduleAnyway`): the scheduler prefers an even spread but still places a Pod when it cannot
#   have one.
# - **Taints and tolerations.** A node with a taint repels Pods that do not tolerate it. kind's
#   control-plane node, once the cluster has workers, carries
#   `node-role.kubernetes.io/control-plane:NoSchedule`: ordinary Pods stay off it. The watcher's
#   DaemonSet tolerates it and runs one Pod on every node.
# - **Why recreate.** A kind cluster's nodes are Docker containers fixed when the cluster is
#   created; kind cannot add a node later. More nodes means a new cluster. Nothing we care about
#   is lost: the database's files and the backups are in the host's lab data directory, the
#   images are rebuilt from cache and loaded again, and the whole system comes back from the chart
#   in one command. This is the one notebook that may do that.

# %% tags=["parameters"]
cluster = "k8s-lab"  # the kind cluster: kubeconfig context kind-<cluster>
namespace = "k8s-assignment"  # where the lab's objects go
mode = "auto"  # images: "auto" | "online" | "offline"
solutions = True  # True runs the reference solutions; False leaves the exercises to you
kubeconfig = ""  # "": $KUBECONFIG or ~/.kube/config; in a classroom, the file your instructor gave you
workers = 2  # worker nodes the cluster needs (besides the control plane)

# %%
# NBVAL_CHECK_OUTPUT
from lab import checks, notebook
from lab.errors import LabError

nb = notebook.start("09-scheduling.ipynb", cluster=cluster, namespace=namespace, mode=mode, solutions=solutions,
                    kubeconfig=kubeconfig, requires=("01",))
if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 4:
    raise LabError(f"parameter workers must be a whole number from 1 to 4, not {type(workers).__name__} {workers!r}",
                   hint="e.g. workers = 2 (with lab run: -p workers=2); each node is a container that needs memory")

# %%
# NBVAL_IGNORE_OUTPUT
%matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd

from lab import config
from lab.system import deploy
from lab.build import images
from lab.cluster import kube
from lab.ops import eventlog
from lab.cluster import kind as lab_cluster

DB_LABEL = lab_cluster.DATABASE_NODE_LABEL
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"


def nodes():
    """The cluster's nodes, sorted by name: the control plane first, then the workers."""
    return sorted(kube.core(nb.target).list_node(_request_timeout=10).items, key=lambda n: n.metadata.name)


def is_control_plane(node):
    return CONTROL_PLANE_TAINT in (node.metadata.labels or {})


def node_table():
    rows = []
    for n in nodes():
        rows.append({"node": n.metadata.name, "role": "control-plane" if is_control_plane(n) else "worker",
                     "ready": kube.node_ready(n), DB_LABEL: (n.metadata.labels or {}).get(DB_LABEL, ""),
                     "taints": ", ".join(f"{t.key}:{t.effect}" for t in n.spec.taints or []) or "-",
                     "cpu": n.status.allocatable.get("cpu"), "memory": n.status.allocatable.get("memory")})
    return pd.DataFrame(rows)


def components_per_node():
    """How many of the namespace's Pods of each component run on each node."""
    pods = kube.core(nb.target).list_namespaced_pod(nb.namespace, _request_timeout=10).items
    rows = [{"node": p.spec.node_name or "(not scheduled)",
             "component": (p.metadata.labels or {}).get("app.kubernetes.io/component", "other")}
            for p in pods if p.metadata.deletion_timestamp is None and p.status.phase in ("Pending", "Running")]
    table = pd.DataFrame(rows, columns=["node", "component"])
    counts = table.groupby(["node", "component"]).size().unstack(fill_value=0) if len(table) else pd.DataFrame()
    return counts.reindex([n.metadata.name for n in nodes()], fill_value=0)


node_table()

# %% [markdown]
# ## Step 1: enough nodes
#
# We need the control plane plus `workers` workers. When the cluster has fewer, it is created again
# with them: `lab.cluster.kind.up(workers=workers, recreate=True)`, the same as
#
# ```bash
# lab cluster up --recreate --workers 2      # kind delete cluster, then kind create cluster with 3 nodes
# ```
#
# That deletes **every** namespace of the cluster, so the notebook only does it for the lab's own
# cluster and namespace. (A grader running students' notebooks in their own namespaces prepares the
# multi-node cluster once, beforehand.)

# %%
# NBVAL_IGNORE_OUTPUT
have = len(nodes())
recreated = False
if have >= workers + 1:
    print(f"the cluster has {have} nodes; {workers + 1} are needed: nothing to do")
elif nb.cluster != config.CLUSTER_NAME or not nb.default_namespace:
    raise LabError(f"cluster {nb.cluster} has {have} node(s), this notebook needs {workers + 1}; recreating it would "
                   f"delete every namespace in it, so it is done only for the lab's own cluster and namespace",
                   hint=f"lab cluster up --recreate --workers {workers}   (then lab images build, and run this notebook again)")
else:
    print(f"the cluster has {have} node(s); {workers + 1} are needed: creating it again "
          f"(the data directory {nb.target.data_dir} stays)")
    info = lab_cluster.up(nb.target, workers=workers, mode=nb.mode, recreate=True)
    recreated = True
    print(f"created {info.name}: {', '.join(info.nodes)} ({info.image})")
node_table()

# %% [markdown]
# **Checkpoint.** The cluster has the control plane and at least `workers` workers, all Ready.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("sched.nodes", points=1,
                   hint="lab cluster status; lab cluster up --recreate --workers 2 makes a cluster with two workers")
def sched_nodes():
    found = nodes()
    uids = {f"Node/{n.metadata.name}": n.metadata.uid for n in found}
    not_ready = [n.metadata.name for n in found if not kube.node_ready(n)]
    worker_count = sum(1 for n in found if not is_control_plane(n))
    if not_ready:
        return checks.fail(f"nodes not Ready: {', '.join(not_ready)}", uids)
    if worker_count < workers:
        return checks.fail(f"{worker_count} worker node(s), the notebook needs {workers}", uids)
    return checks.ok(f"a control plane and at least {workers} worker nodes, all Ready", uids)


# %% [markdown]
# ## Step 2: the lab's images on every node
#
# Nothing pulls the lab's own images (`k8s-lab/...`) from a registry: they are loaded into each
# node's container runtime with `kind load docker-image`. A new cluster has none of them, and a
# Pod scheduled to a node without its image would wait forever (`ErrImageNeverPull` /
# `ImagePullBackOff`). The build is skipped when the images are up to date; the load is not.
#
# ```bash
# lab images build          # build what changed, then kind load docker-image ... into every node
# docker exec k8s-lab-worker crictl images | grep k8s-lab      # what one node has
# ```

# %%
# NBVAL_IGNORE_OUTPUT
local_images = sorted({ref for ref in images.image_names(nb.mode).values() if ref.startswith("k8s-lab/")}
                      | {eventlog.WATCHER_IMAGE})
missing = deploy.missing_images(nb.target, local_images)
if recreated or missing:
    print("missing on the nodes:", missing or "(a new cluster: all of them)")
    images.build(nb.mode)
    lab_cluster.load_images(nb.target, images.to_load(nb.mode))


def images_everywhere():
    missing = deploy.missing_images(nb.target, local_images)
    if missing:
        return checks.fail("; ".join(f"{ref} missing on {', '.join(where)}" for ref, where in missing.items()))
    return checks.ok(f"every node has the lab's images ({', '.join(local_images)})")


# a node reports newly loaded images with its next status update
nb.wait_for(images_everywhere, "the images on every node", timeout=120, hint="lab images build")
pd.DataFrame([{"node": n.metadata.name,
               **{ref: any(ref in name for image in n.status.images or [] for name in image.names or [])
                  for ref in local_images}} for n in nodes()]).set_index("node")

# %% [markdown]
# **Checkpoint.** Every node reports every image the system uses.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint("sched.images", points=1, hint="lab images build (it loads the images into every node of the cluster)",
                  verify=images_everywhere)


# %% [markdown]
# ## Step 3: the system, on several nodes
#
# After a new cluster the namespace is empty; on an existing one nothing changes. One idempotent
# command brings the system to what the chart says (notebook 07's release):
#
# ```bash
# lab deploy --helm         # helm upgrade --install k8s-lab chart/ -n k8s-assignment --create-namespace --wait
# ```

# %%
# NBVAL_IGNORE_OUTPUT
has_release = bool(notebook.release_revisions(nb)) if nb.read("Namespace", nb.namespace) is not None else False
if not has_release and nb.read("Deployment", "web") is not None:
    raise LabError(f"the system in {nb.namespace} was applied with kubectl and is not a Helm release yet",
                   hint="run 07-helm.ipynb first: it hands the objects over to Helm")
if nb.default_namespace:
    result = deploy.deploy(nb.target, method="helm", mode=nb.mode)
else:
    nb.helm_upgrade(install=True, timeout=600)
nb.kubectl("get", "pods", "-o", "wide");

# %% [markdown]
# **Checkpoint.** The release is deployed and the database and the web server are ready.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("sched.system", points=2,
                   hint="lab deploy --helm; kubectl -n k8s-assignment get pods -o wide; kubectl -n k8s-assignment describe pod <a Pending Pod>")
def sched_system():
    return checks.system_ready("k8s-lab")


# %% [markdown]
# ## Step 4: the database goes where its data is
#
# Two objects ask for the label `k8s-lab/database=true`: the PersistentVolume (`spec.nodeAffinity`:
# the volume is only reachable there) and the StatefulSet's Pod template
# (`affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`). The kind configuration
# put the label on the first worker.
#
# ```bash
# kubectl get nodes -L k8s-lab/database
# kubectl get pv k8s-lab-database-data -o jsonpath='{.spec.nodeAffinity}'
# kubectl -n k8s-assignment get pod database-0 -o wide
# ```

# %%
# NBVAL_IGNORE_OUTPUT
nb.kubectl("get", "nodes", "-L", DB_LABEL, namespaced=False)
nb.kubectl("get", "persistentvolume", nb.pv_name, "-o", "jsonpath={.spec.nodeAffinity.required}", namespaced=False, check=False)
print()
nb.kubectl("get", "pod", "database-0", "-o", "wide");

# %% [markdown]
# **Checkpoint.** Exactly one node, the first worker, carries the label, and `database-0` runs on it.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("sched.database-node", points=2,
                   hint="kubectl get nodes -L k8s-lab/database; kubectl -n k8s-assignment describe pod database-0 (Events: FailedScheduling?)")
def sched_database_node():
    found = nodes()
    labelled = [n.metadata.name for n in found if (n.metadata.labels or {}).get(DB_LABEL) == "true"]
    first_worker = next((n.metadata.name for n in found if not is_control_plane(n)), None)
    if labelled != [first_worker]:
        return checks.fail(f"nodes labelled {DB_LABEL}=true: {', '.join(labelled) or 'none'}; expected only the first worker {first_worker}")
    pod = nb.read("Pod", "database-0")
    if pod is None or pod.spec.node_name != first_worker:
        return checks.fail(f"database-0 runs on {pod.spec.node_name if pod else 'no node'}, not on {first_worker}")
    return checks.ok(f"database-0 runs on the first worker, the only node labelled {DB_LABEL}=true",
                     {f"Pod/{nb.namespace}/database-0": pod.metadata.uid})


# %% [markdown]
# ## Exercise: a node label and a node affinity rule of your own
#
# The database is pinned by a label and a required node affinity rule. Do the same yourself:
#
# 1. label the **last worker** `k8s-lab/tier=spare` (write the kubectl command into
#    `label_command`; the next cell runs it against this notebook's cluster),
# 2. write a Pod `spare-probe` (image `k8s-lab/probe:1`, `command: [sleep, infinity]`) whose
#    **required** node affinity (`requiredDuringSchedulingIgnoredDuringExecution`) lets it run
#    only on nodes with that label.
#
# A Pod's affinity cannot be changed once it exists, so the cell deletes an earlier `spare-probe`
# before applying yours.

# %%
# NBVAL_IGNORE_OUTPUT
workers_now = [n.metadata.name for n in nodes() if not is_control_plane(n)]
print("workers:", ", ".join(workers_now))

# %%
# NBVAL_CHECK_OUTPUT
label_command = f"kubectl label node {workers_now[-1]} k8s-lab/tier=spare --overwrite"  # SOLUTION

# %%
# NBVAL_IGNORE_OUTPUT
%%writefile work/spare-probe.yaml
apiVersion: v1
kind: Pod
metadata:
  name: spare-probe
spec:
  # The namespace enforces Pod Security "restricted": no root, no capabilities, the default seccomp.
  securityContext:
    runAsNonRoot: true
    runAsUser: 65534
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: probe
      image: k8s-lab/probe:1
      command: [sleep, infinity]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
      resources:
        requests: {cpu: 10m, memory: 16Mi}
        limits: {cpu: 50m, memory: 32Mi}
# BEGIN SOLUTION
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - key: k8s-lab/tier
                operator: In
                values: [spare]
# END SOLUTION
# BEGIN PROMPT
  # TODO: the required node affinity
# END PROMPT

# %%
# NBVAL_IGNORE_OUTPUT
from lab import tasks

tasks.run_kubectl(nb, label_command, "label node")
nb.kubectl("delete", "pod", "spare-probe", "--ignore-not-found", "--wait=true")
if tasks.apply(nb, "work/spare-probe.yaml", "Pod"):
    tasks.wait(nb, lambda: checks.ok("scheduled") if nb.read("Pod", "spare-probe").spec.node_name else
               checks.fail("spare-probe is not scheduled yet"), "spare-probe on a node", timeout=60,
               hint="kubectl -n k8s-assignment describe pod spare-probe (Events: FailedScheduling?)")
nb.kubectl("get", "nodes", "-L", "k8s-lab/tier", namespaced=False)
nb.kubectl("get", "pod", "spare-probe", "-o", "wide", check=False);

# %% [markdown]
# **Checkpoint.** Exactly one node carries `k8s-lab/tier=spare`, `spare-probe` requires that label
# and runs there.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint("sched.node-affinity", points=3,
                  hint="kubectl get nodes -L k8s-lab/tier; kubectl explain pod.spec.affinity.nodeAffinity",
                  verify=lambda: tasks.node_affinity(nb, "spare-probe", "k8s-lab/tier", "spare"))


# %% [markdown]
# ## Step 5: the web server, spread over the nodes
#
# `web`'s Pod template asks for `maxSkew: 1` over `kubernetes.io/hostname`, softly. Which nodes may
# take a web Pod at all? Not the control plane: its taint. So three replicas go 2 + 1 over two
# workers. Pods per node and component:
#
# ```bash
# kubectl -n k8s-assignment get pods -o wide --sort-by=.spec.nodeName
# ```

# %%
# NBVAL_IGNORE_OUTPUT
def plot_pods_per_node(title):
    counts = components_per_node()
    colours = {"web": "#326ce5", "database": "#e0a030", "watcher": "#8c959f", "backup": "#a371f7", "other": "#d0d7de"}
    fig, ax = plt.subplots(figsize=(8, 3.5))
    bottom = pd.Series(0, index=counts.index)
    for component in counts.columns:
        ax.bar(counts.index, counts[component], bottom=bottom, label=component,
               color=colours.get(component, "#57606a"))
        bottom += counts[component]
    ax.set_ylabel("Pods")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.yaxis.get_major_locator().set_params(integer=True)
    plt.tight_layout()
    plt.show()
    return counts


def web_spread(replicas):
    ready = checks.deployment_ready("web", replicas=replicas)
    if not ready.passed:
        return ready
    schedulable = [n.metadata.name for n in nodes()
                   if not any(t.effect == "NoSchedule" for t in n.spec.taints or [])]
    web = components_per_node().get("web", pd.Series(dtype=int)).reindex(schedulable, fill_value=0)
    if web.max() - web.min() > 1:
        return checks.fail("web Pods per node: " + ", ".join(f"{n} {c}" for n, c in web.items()), ready.uids)
    return checks.ok(f"{replicas} web Pods spread over the {len(schedulable)} schedulable nodes with a skew of at most 1",
                     ready.uids)


per_node = plot_pods_per_node(f"Pods per node in {nb.namespace}")
per_node

# %% [markdown]
# **Checkpoint.** The web Pods are spread over the nodes that may run them: at most one more on any
# node than on another.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "sched.web-spread", points=2,
    hint="kubectl -n k8s-assignment get pods -o wide; the Deployment's topologySpreadConstraints (kubectl -n k8s-assignment get deploy web -o yaml)",
    verify=lambda: web_spread(3),
)

# %% [markdown]
# ## Step 6: the watcher on every node
#
# A DaemonSet does not ask the scheduler for *a* node: it wants one Pod per node that matches, and
# adding a node adds a Pod. Its toleration for `node-role.kubernetes.io/control-plane:NoSchedule` lets
# it onto the control plane as well, where the web Pods may not go.
#
# ```bash
# kubectl -n k8s-assignment get daemonset watcher
# kubectl -n k8s-assignment get pods -l app.kubernetes.io/component=watcher -o wide
# ```

# %%
# NBVAL_IGNORE_OUTPUT
nb.wait_for(lambda: checks.pods_on_every_node(eventlog.SELECTOR), "a watcher Pod on every node", timeout=180,
            hint=f"kubectl -n {nb.namespace} describe daemonset watcher")
nb.kubectl("get", "daemonset", "watcher", "-o", "wide")
nb.kubectl("get", "pods", "-l", "app.kubernetes.io/component=watcher", "-o", "wide");

# %% [markdown]
# **Checkpoint.** A ready watcher Pod runs on each node, the control plane included.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("sched.watcher-everywhere", points=2,
                   hint="kubectl -n k8s-assignment describe daemonset watcher (its tolerations); kubectl get nodes -o custom-columns=NAME:.metadata.name,TAINTS:.spec.taints")
def sched_watcher_everywhere():
    everywhere = checks.pods_on_every_node(eventlog.SELECTOR)
    if not everywhere.passed:
        return everywhere
    pods = eventlog.watcher_pods(nb.target)
    on_control_plane = [p.metadata.name for p in pods for n in nodes()
                        if p.spec.node_name == n.metadata.name and is_control_plane(n)]
    if not on_control_plane:
        return checks.fail("no watcher Pod on the control-plane node", everywhere.uids)
    return checks.ok("a ready watcher Pod runs on every node, the control plane included", everywhere.uids)


# %% [markdown]
# ## Exercise: six web servers
#
# Scale the web server to **6** replicas through the chart (not with `kubectl scale`: the release
# would undo it), wait until they are ready, and look at the spread again.
#
# **Predict first:** how many web Pods will the busiest node run? Store your number in
# `predicted_busiest`; the checkpoint compares it with the measurement.
#
# ```bash
# helm upgrade k8s-lab chart/ -n k8s-assignment --set web.replicas=6 --wait     # plus the image --set options
# ```
#
# `nb.helm_upgrade(*options)` runs that `helm upgrade` with the `--set` options every upgrade passes
# (`notebook.helm_set_args(nb)`), your `options` added, and `--wait`.

# %%
# NBVAL_CHECK_OUTPUT
predicted_busiest = -(-6 // workers)  # SOLUTION

# %%
# NBVAL_IGNORE_OUTPUT
# BEGIN SOLUTION NO PROMPT
nb.helm_upgrade("--set", "web.replicas=6")
# END SOLUTION
# BEGIN PROMPT
# TODO: nb.helm_upgrade("--set", ...) with the value that asks for six web replicas
# END PROMPT
per_node = plot_pods_per_node("six web replicas")

# %% [markdown]
# **Checkpoint.** Six ready web Pods, spread with a skew of at most one.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "sched.scale-spread", points=2,
    hint="helm upgrade k8s-lab chart/ -n k8s-assignment --set web.replicas=6 --wait (plus the image --set options); kubectl -n k8s-assignment get pods -o wide",
    verify=lambda: web_spread(6),
)

# %% [markdown]
# **Checkpoint.** Your prediction matches the busiest node.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("sched.prediction", points=1, hint="6 Pods, spread with a skew of at most one over the schedulable nodes")
def sched_prediction():
    if isinstance(predicted_busiest, bool) or not isinstance(predicted_busiest, int):
        return checks.fail(f"predicted_busiest is {tasks.described(predicted_busiest)}: write a whole number")
    if not checks.deployment_ready("web", replicas=6).passed:
        return checks.fail("there are not six ready web Pods to compare with: run the exercise's upgrade")
    busiest = int(components_per_node().get("web", pd.Series(dtype=int)).max())
    if predicted_busiest != busiest:
        return checks.fail(f"you predicted {predicted_busiest} web Pods on the busiest node; the measurement differs")
    return checks.ok("your prediction of the busiest node matches the measurement")


# %% [markdown]
# ## Step 7: back to the chart's three
#
# Leave the system as notebook 07 left it: the same upgrade without `--set web.replicas`, so the
# chart's default (3) applies again. The Deployment removes three Pods; which ones is its choice.

# %%
# NBVAL_IGNORE_OUTPUT
nb.helm_upgrade()
per_node = plot_pods_per_node("back to three web replicas")

# %% [markdown]
# **Checkpoint.** Three ready web Pods again, still spread, and the release deployed.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("sched.back-to-three", points=1,
                   hint="helm upgrade k8s-lab chart/ -n k8s-assignment --wait (with the image --set options, without web.replicas)")
def sched_back_to_three():
    release = checks.helm_release_deployed("k8s-lab")
    if not release.passed:
        return release
    spread = web_spread(3)
    if not spread.passed:
        return spread
    return checks.ok("the release is deployed with 3 web Pods, spread over the workers", {**release.uids, **spread.uids})


# %% [markdown]
# ## Summary
#
# - The cluster now has a control plane and `workers` workers; kind makes a new cluster for that,
#   and the data directory, the images (from cache) and the chart brought everything back.
# - Required node affinity kept the database on the one node labelled `k8s-lab/database=true`,
#   where its volume is.
# - A soft topology spread put the web Pods evenly on the workers, also after scaling to six.
# - The control plane's taint kept the web Pods off it; the watcher's DaemonSet tolerates it and
#   runs on every node.

# %%
# NBVAL_CHECK_OUTPUT
checks.summary()

# %% [markdown]
# ## Clean-up
#
# Keep the multi-node cluster: every notebook works on it, and `lab cluster up` reuses it as it is.
# For a single node again: `lab cluster up --recreate` (then `lab images build` and the notebooks
# from 01). Evidence from before and after a recreation comes from two clusters; `lab grade` notes
# that for review.
#
# Next: **99-cleanup**.
