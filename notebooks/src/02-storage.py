# Source of notebooks/02-storage.ipynb (build with: python notebooks/src/build.py)

# %% [markdown]
# # 02 · A namespace with limits, and storage that outlives Pods
#
# Before an application moves in, we prepare its place: a **namespace** of its own, with a ceiling
# on what it may consume (**ResourceQuota**) and sensible defaults for containers that say nothing
# (**LimitRange**), and a **PersistentVolume** for the database, whose files must survive when Pods
# come and go.

# %% [markdown]
# ## Learning objectives
#
# After this notebook you can
#
# - create a namespace from a manifest and explain what belongs to a namespace and what does not,
# - read a ResourceQuota and a LimitRange, and predict which resources a container without any
#   `resources:` gets (server-side dry run),
# - create a PersistentVolume by hand (static provisioning) with `storageClassName: manual`, and say
#   what a reclaim policy and `claimRef` do,
# - find a hostPath volume's files on your own machine.

# %% [markdown]
# ## Concepts
#
# - **Namespaces** group objects: names only have to be unique within one, access rules (RBAC) and
#   quotas apply per namespace, and deleting a namespace deletes everything in it. Some objects are
#   *cluster-scoped* and belong to no namespace: nodes, namespaces themselves, and
#   **PersistentVolumes**.
# - A **ResourceQuota** caps the sum over the namespace (Pods, CPU and memory requests and limits,
#   storage, Services...). Once a quota covers CPU and memory, every container must state them;
#   a **LimitRange** fills in defaults for containers that do not, and caps any single container.
# - **PersistentVolume (PV)** = a piece of storage, described once by an administrator.
#   **PersistentVolumeClaim (PVC)** = a request for storage by an application. Kubernetes binds a
#   claim to a matching volume. With a StorageClass a *provisioner* makes volumes on demand; our
#   class `manual` has no provisioner, so the volume must exist before the claim, and `claimRef`
#   reserves it for one claim: the database's `data-database-0` (notebook 03).
# - **hostPath** volumes are a directory on the node. kind mounts the lab's data directory of *your
#   machine* into every node at `/var/local/k8s-lab`, so the database's files end up on your disk
#   and outlive Pods, the namespace and even the cluster. `Retain` means: when the claim is
#   deleted, keep the volume and its files (the alternative, `Delete`, would remove them).
# - **In a classroom** (your instructor's cluster, the kubeconfig you were given) you may act in
#   your namespace only. Your instructor made the namespace, its quota and limits and your volume
#   (`lab classroom up`): the steps that would make them say so and skip, and their checkpoints say
#   N/A, which counts neither for nor against you. Everything else is the same.

# %% tags=["parameters"]
cluster = "k8s-lab"  # the kind cluster: kubeconfig context kind-<cluster>
namespace = "k8s-assignment"  # where the lab's objects go
mode = "auto"  # images: "auto" | "online" | "offline"
solutions = True  # True runs the reference solutions; False leaves the exercises to you
kubeconfig = ""  # "": $KUBECONFIG or ~/.kube/config; in a classroom, the file your instructor gave you

# %%
# NBVAL_CHECK_OUTPUT
from lab import checks, notebook

nb = notebook.start("02-storage.ipynb", cluster=cluster, namespace=namespace, mode=mode, solutions=solutions,
                    kubeconfig=kubeconfig, requires=("01",))

# %% [markdown]
# ## Step 1: the namespace
#
# The manifests of the whole system are in `manifests/`, one folder per layer, applied in order.
# Layer `00-namespace` starts with the namespace itself:

# %%
# NBVAL_CHECK_OUTPUT
print((notebook.MANIFESTS_DIR / "00-namespace" / "0-namespace.yaml").read_text())

# %% [markdown]
# `kubectl apply` creates what is missing and updates what differs; applying the same file twice
# changes nothing the second time ("unchanged"). That makes every step here safe to run again.

# %%
# NBVAL_IGNORE_OUTPUT
if not nb.in_classroom("namespace"):
    nb.apply("00-namespace/0-namespace.yaml")
nb.kubectl("get", "namespace", nb.namespace, "--show-labels", namespaced=False);

# %% [markdown]
# **Checkpoint.** The namespace exists and is `Active`.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "storage.namespace", points=1,
    hint="kubectl apply -f manifests/00-namespace/0-namespace.yaml; kubectl get namespace k8s-assignment",
    verify=lambda: checks.namespace_created(),
)

# %% [markdown]
# ## Step 2: a quota and default limits
#
# ```bash
# kubectl apply -f manifests/00-namespace/1-resourcequota.yaml -f manifests/00-namespace/2-limitrange.yaml
# kubectl -n k8s-assignment describe resourcequota lab-quota
# kubectl -n k8s-assignment describe limitrange lab-limits
# ```

# %%
# NBVAL_IGNORE_OUTPUT
if not nb.in_classroom("quota"):
    nb.apply("00-namespace/1-resourcequota.yaml")
    nb.apply("00-namespace/2-limitrange.yaml");

# %% [markdown]
# The quota's ceilings (the *used* column of `kubectl describe resourcequota` grows as the next
# notebooks add the database and the web server):

# %%
# NBVAL_CHECK_OUTPUT
quota = nb.read("ResourceQuota", nb.quota_name)
for resource, hard in sorted(quota.spec.hard.items()):
    print(f"{resource:24} {hard}")

# %%
# NBVAL_IGNORE_OUTPUT
nb.kubectl("describe", "limitrange", nb.limits_name);

# %% [markdown]
# **Checkpoint.** The quota and the limit range are in place.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("storage.quota-and-limits", points=1,
                   hint="kubectl -n k8s-assignment get resourcequota,limitrange; apply manifests/00-namespace/")
def storage_quota_and_limits():
    if checks.in_classroom():
        return checks.not_applicable(f"classroom: your instructor set {nb.quota_name} and {nb.limits_name}")
    quota, limits = nb.read("ResourceQuota", "lab-quota"), nb.read("LimitRange", "lab-limits")
    if quota is None or limits is None:
        missing = [n for n, o in (("ResourceQuota lab-quota", quota), ("LimitRange lab-limits", limits)) if o is None]
        return checks.fail(f"missing in {nb.namespace}: {', '.join(missing)}")
    if "pods" not in (quota.spec.hard or {}):
        return checks.fail("ResourceQuota lab-quota does not limit the number of Pods")
    return checks.ok("ResourceQuota lab-quota and LimitRange lab-limits are in place",
                     {f"ResourceQuota/{nb.namespace}/lab-quota": quota.metadata.uid,
                      f"LimitRange/{nb.namespace}/lab-limits": limits.metadata.uid})


# %% [markdown]
# ## Exercise: what does a container without `resources:` get?
#
# Ask the API server, without creating anything: a **server-side dry run** sends the object through
# everything that would change or reject it (the LimitRange admission plugin included) and returns
# the result, but stores nothing.
#
# ```bash
# kubectl -n k8s-assignment run dry --image=k8s-lab/probe:1 --restart=Never --dry-run=server -o json \
#   --override-type=strategic --overrides="$RESTRICTED"
# ```
#
# The namespace enforces Pod Security **restricted** (its labels, layer 00): every Pod must run as
# a non-root user, drop all capabilities, forbid privilege escalation and use the RuntimeDefault
# seccomp profile, or the API server refuses it, dry run or not. `RESTRICTED` below says so.
#
# Set `defaults` to the container's `resources` from that answer (a dict with `requests` and
# `limits`), e.g. `{"requests": {"cpu": ..., "memory": ...}, "limits": {...}}`.

# %%
# NBVAL_CHECK_OUTPUT
import json

defaults = None
# BEGIN SOLUTION NO PROMPT
# The namespace enforces Pod Security "restricted": the dry run asks for a restricted Pod too.
RESTRICTED = json.dumps({"spec": {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "dry", "securityContext": {"allowPrivilegeEscalation": False,
                                                       "capabilities": {"drop": ["ALL"]}}}]}})
answer = nb.kubectl("run", "dry", f"--image={nb.images()['probe']}", "--restart=Never", "--dry-run=server",
                    "--override-type=strategic", f"--overrides={RESTRICTED}", "-o", "json", show=False)
defaults = json.loads(answer.stdout)["spec"]["containers"][0]["resources"]
# END SOLUTION
# BEGIN PROMPT
# TODO: run the dry run above (nb.kubectl(...) returns its output in .stdout) and set `defaults`
# END PROMPT
print(json.dumps(defaults, indent=2, sort_keys=True))

# %% [markdown]
# **Checkpoint.** Your `defaults` are what the LimitRange gives.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("storage.limit-defaults", points=2,
                   hint="the LimitRange's `default` becomes limits and `defaultRequest` requests: kubectl -n k8s-assignment describe limitrange")
def storage_limit_defaults():
    limits = nb.read("LimitRange", nb.limits_name)
    if limits is None:
        return checks.fail(f"LimitRange {nb.limits_name} not found in {nb.namespace}")
    item = next(i for i in limits.spec.limits if i.type == "Container")
    expected = {"requests": dict(item.default_request or {}), "limits": dict(item.default or {})}
    if not isinstance(defaults, dict):
        return checks.fail(f"`defaults` is {defaults!r}, not a dict with requests and limits")
    if {k: dict(v or {}) for k, v in defaults.items()} != expected:
        return checks.fail(f"`defaults` is {defaults}, the LimitRange gives {expected}")
    return checks.ok("a container without resources gets the LimitRange's defaults: you found them")


# %% [markdown]
# ## Exercise: a Pod the quota refuses
#
# The LimitRange caps **each container** (`max`: 2 CPUs, 2Gi memory); the quota caps the **sum**
# over the namespace. Write a Pod `too-big` whose containers each stay within the LimitRange but
# which together ask for more memory (`requests`) than the quota allows. Use the image
# `k8s-lab/probe:1` with `command: [sleep, infinity]`, and give every container `requests` and
# `limits` (without limits, the LimitRange's default limit would be below your request, and that
# is refused for another reason). The cell after it sends the Pod as a **server-side dry run**:
# the API server decides, nothing is created.

# %%
# NBVAL_IGNORE_OUTPUT
%%writefile work/too-big.yaml
apiVersion: v1
kind: Pod
metadata:
  name: too-big
spec:
  # Pod Security "restricted" (the namespace enforces it) is checked before the quota.
  securityContext:
    runAsNonRoot: true
    runAsUser: 65534
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: one
      image: k8s-lab/probe:1
      command: [sleep, infinity]
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
# BEGIN SOLUTION
      resources:
        requests: {memory: 2Gi}
        limits: {memory: 2Gi}
    - name: two
      image: k8s-lab/probe:1
      command: [sleep, infinity]
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
      resources:
        requests: {memory: 2Gi}
        limits: {memory: 2Gi}
# END SOLUTION
# BEGIN PROMPT
      # TODO: resources (requests and limits) for this container, then a second container
      # (with the same securityContext as this one)
# END PROMPT

# %%
# NBVAL_IGNORE_OUTPUT
from lab import tasks

accepted = tasks.apply(nb, "work/too-big.yaml", "Pod", dry_run=True)

# %% [markdown]
# Read the API server's answer and explain it in one sentence in `why_rejected`: which object
# refused the Pod, and which of its resources would have been exceeded?

# %%
# NBVAL_CHECK_OUTPUT
why_rejected = f"the ResourceQuota {nb.quota_name} caps requests.memory in the namespace; 4Gi more would exceed it"  # SOLUTION

# %% [markdown]
# **Checkpoint.** The API server refuses your Pod because of the quota, and your sentence names it.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "build.quota-rejects", points=2,
    hint="kubectl -n k8s-assignment describe resourcequota lab-quota shows what is used and what is left",
    verify=lambda: tasks.quota_rejection(nb, "work/too-big.yaml", why_rejected),
)

# %% [markdown]
# ## Step 3: the database's PersistentVolume (you write it)
#
# Layer `01-storage` of the system is a single object, and you write it. In `work/pv.yaml`, complete
# the PersistentVolume `k8s-lab-database-data`:
#
# - it belongs to the class **`manual`**, which has no provisioner (so nothing else makes or deletes
#   volumes of it);
# - it offers **1Gi**, mounted read-write by one node (`ReadWriteOnce`);
# - when its claim is deleted, the volume and its files must **stay** (the reclaim policy);
# - `claimRef` reserves it for the database's claim `data-database-0` in `k8s-assignment`;
# - its files are the directory `/var/local/k8s-lab/pv/database` inside the node (`hostPath`), and
#   it is only usable on the node labelled `k8s-lab/database=true` (`nodeAffinity`).
#
# `kubectl explain persistentvolume.spec` lists the fields. The cell after it applies your file:
# `kubectl apply -f work/pv.yaml`.

# %%
# NBVAL_IGNORE_OUTPUT
%%writefile work/pv.yaml
apiVersion: v1
kind: PersistentVolume
metadata:
  name: k8s-lab-database-data
  labels:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/part-of: k8s-lab
    app.kubernetes.io/component: database
  annotations:
    k8s-lab/host-owner: "999:999"
    k8s-lab/host-mode: "0750"
spec:
  storageClassName: manual  # SOLUTION
# BEGIN SOLUTION
  capacity:
    storage: 1Gi
# END SOLUTION
# BEGIN PROMPT
  # TODO: capacity
# END PROMPT
  accessModes:
    - ReadWriteOnce
  persistentVolumeReclaimPolicy: Retain  # SOLUTION
  volumeMode: Filesystem
  claimRef:
    namespace: k8s-assignment
    name: data-database-0
  hostPath:
    path: /var/local/k8s-lab/pv/database
    type: DirectoryOrCreate
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions:
            - key: k8s-lab/database
              operator: In
              values:
                - "true"

# %%
# NBVAL_IGNORE_OUTPUT
if not nb.in_classroom("pv"):
    tasks.apply(nb, "work/pv.yaml", "PersistentVolume")
nb.kubectl("get", "persistentvolume", nb.pv_name, namespaced=False, check=False)
nb.kubectl("get", "storageclass", namespaced=False);

# %% [markdown]
# kind ships a StorageClass `standard` (a provisioner that makes hostPath volumes on demand). There
# is no class `manual`: nothing provisions for it, so our volume is exactly the one we wrote. Its
# status is `Available` until the database's claim binds it (`Bound`, notebook 03).
#
# **Checkpoint.** Your volume is in the cluster, retained, big enough, of class `manual`, reserved
# for the database's claim and on the lab's data directory.

# %%
# NBVAL_CHECK_OUTPUT
checks.check("build.pv")

# %% [markdown]
# ## Step 4: where the files really are
#
# The volume's `hostPath` is a path *inside the node*. The node is a container, and kind mounted
# your machine's lab data directory into it (`extraMounts` in `manifests/kind/cluster.yaml`):
#
# | inside the node | on your machine |
# | --- | --- |
# | `/var/local/k8s-lab` | `$LAB_DATA_DIR` (default `~/.cache/k8s-lab/data`) |
#
# ```bash
# ls -la ~/.cache/k8s-lab/data
# docker exec k8s-lab-control-plane ls -la /var/local/k8s-lab
# ```

# %%
# NBVAL_IGNORE_OUTPUT
from lab import config

print("lab data directory on this machine:", nb.target.data_dir)
print("the database's files will be in:   ", nb.pv_host_path)
if not nb.in_classroom("nodes"):
    nb.run(["ls", "-la", str(nb.target.data_dir)], f"ls -la {nb.target.data_dir}")
    nb.docker("exec", f"{nb.cluster}-control-plane", "ls", "-la", notebook.NODE_DATA_PATH);

# %% [markdown]
# **Checkpoint.** Every node sees the directory of your machine: the check writes a random token
# into the data directory here and reads it back inside each node.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("storage.host-directory", points=1,
                   hint="the kind config must mount $LAB_DATA_DIR at /var/local/k8s-lab (manifests/kind/cluster.yaml, extraMounts)")
def storage_host_directory():
    import secrets

    from lab.host import docker

    if checks.in_classroom():
        return checks.not_applicable("classroom: the nodes and their data directory are your instructor's")
    token = secrets.token_hex(8)
    marker = nb.target.data_dir / ".mount-check"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(token)
    nodes = nb.node_containers()
    seen = docker.exec_each(nodes, ["cat", f"{notebook.NODE_DATA_PATH}/.mount-check"])
    blind = [node for node, text in seen.items() if (text or "").strip() != token]
    if not nodes:
        return checks.fail(f"no node containers of cluster {nb.cluster}")
    if blind:
        return checks.fail(f"node(s) {', '.join(blind)} do not see {nb.target.data_dir} at {notebook.NODE_DATA_PATH}")
    return checks.ok(f"every node sees the lab data directory at {notebook.NODE_DATA_PATH}")


# %% [markdown]
# ## Summary
#
# - The namespace `k8s-assignment` holds the lab; its ResourceQuota caps the total, its
#   LimitRange gives containers without `resources:` defaults (a server-side dry run shows them).
# - The database's PersistentVolume is cluster-scoped, made by hand (class `manual`, no
#   provisioner), reserved for one claim, pinned to the database node, and `Retain`ed.
# - Its hostPath is a directory of your own machine, mounted into the nodes by kind.

# %%
# NBVAL_CHECK_OUTPUT
checks.summary()

# %% [markdown]
# ## Clean-up
#
# Keep everything: notebook 03 puts the database on this volume. For reference, this is how the
# pieces would go (do **not** run it now):
#
# ```bash
# kubectl delete namespace k8s-assignment         # everything in the namespace, the claim included
# kubectl delete pv k8s-lab-database-data         # Retain: the volume stays (Released) until deleted by hand
# rm -rf ~/.cache/k8s-lab/data/pv/database        # ...and the files stay until you remove them
# ```
#
# Next: **03-database**.
