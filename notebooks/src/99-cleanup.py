# Source of notebooks/99-cleanup.ipynb (build with: python notebooks/src/build.py)

# %% [markdown]
# # 99 · Clean-up: remove the system, and know what stays behind
#
# Removing software from a cluster is a skill of its own. `helm uninstall` removes what the release
# made, but not everything the system created *while it ran* (the database's claim came from the
# StatefulSet, not from the chart). Deleting the namespace takes what is left inside it. And some
# things are meant to survive even that: the database's files and the backups live on **your
# machine**, in the lab's data directory, outside the cluster. In this notebook we take the system
# down in that order, check after each step that it is really gone, and look at what stays and how
# to remove it too. Deleting the cluster itself is optional (parameter `down`).

# %% [markdown]
# ## Learning objectives
#
# After this notebook you can
#
# - uninstall a Helm release and name what it does *not* remove (objects created by controllers,
#   objects created by hand),
# - delete a namespace, wait until it is really gone, and explain `Terminating` and finalizers,
# - explain why a PersistentVolume with `Retain` and a hostPath keeps its files after its claim,
#   the volume object and even the cluster are gone, and remove them deliberately,
# - check for leftovers by label instead of trusting that a command worked,
# - delete the kind cluster (`lab cluster down`) and say what that keeps.

# %% [markdown]
# ## Concepts
#
# - **What a release owns.** Helm deletes exactly the objects of its last revision. Objects that
#   controllers made from them (ReplicaSets, Pods, Jobs) go through **garbage collection**: their
#   `ownerReferences` point at a deleted owner. Objects with no owner in the release stay: the
#   claim `data-database-0` (made by the StatefulSet from its `volumeClaimTemplates`, and
#   deliberately never deleted with it), probe Pods, anything applied by hand.
# - **Namespace deletion** is asynchronous: the namespace turns `Terminating`, the namespace
#   controller deletes everything in it, then the namespace's finalizer is removed and it
#   disappears. A PersistentVolume is protected by the finalizer `kubernetes.io/pv-protection`
#   while a claim uses it, so it goes only after the claim.
# - **What the cluster never owned.** The hostPath volume's directory and the backups are on the
#   host (`$LAB_DATA_DIR`, mounted into every node). Reclaim policy `Retain` means Kubernetes never
#   deletes such data for you; `kind delete cluster` does not touch it either. That is what let the
#   data survive the drills of notebook 08, and it is why you delete it by hand, on purpose.

# %% tags=["parameters"]
cluster = "k8s-lab"  # the kind cluster: kubeconfig context kind-<cluster>
namespace = "k8s-assignment"  # where the lab's objects go
mode = "auto"  # images: "auto" | "online" | "offline"
solutions = True  # True runs the reference solutions; False leaves the exercises to you
kubeconfig = ""  # "": $KUBECONFIG or ~/.kube/config; in a classroom, the file your instructor gave you
down = False  # True also deletes the kind cluster at the end (`lab cluster down`); CI keeps it

# %%
# NBVAL_CHECK_OUTPUT
from lab import checks, notebook
from lab.errors import LabError

nb = notebook.start("99-cleanup.ipynb", cluster=cluster, namespace=namespace, mode=mode, solutions=solutions,
                    kubeconfig=kubeconfig)
if not isinstance(down, bool):
    raise LabError(f"parameter down must be True or False, not {type(down).__name__} {down!r}",
                   hint="down = True deletes the cluster at the end (with lab run: -p down=true)")

# %% [markdown]
# This notebook needs nothing from the others: it removes whatever of the lab is there and is
# happy when there is nothing. First, is there a cluster at all?

# %%
# NBVAL_IGNORE_OUTPUT
from pathlib import Path

import pandas as pd

from lab import config
from lab.ops import backup
from lab.cluster import kube


def cluster_answers():
    if nb.cluster not in notebook.known_clusters() or not nb.node_containers():
        return False
    try:
        kube.core(nb.target).list_namespace(limit=1, _request_timeout=10)
        return True
    except Exception:  # noqa: BLE001 - refused, timed out: not there
        return False


have_cluster = cluster_answers()
print(f"cluster {nb.cluster}: {'answers' if have_cluster else 'is not there (nothing to remove in it)'}")
if have_cluster:
    nb.kubectl("get", "namespace", nb.namespace, "--ignore-not-found", namespaced=False)
    nb.helm("list")

# %% [markdown]
# ## Step 1: uninstall the Helm release
#
# What the release holds, then the uninstall. When the system was applied with `kubectl` (notebooks
# 02-06 without 07), there is no release: then the manifests' layers are deleted in reverse order,
# as `lab deploy --delete` does.
#
# ```bash
# helm -n k8s-assignment get manifest k8s-lab | grep '^kind:' | sort | uniq -c
# helm -n k8s-assignment uninstall k8s-lab
# ```

# %%
# NBVAL_IGNORE_OUTPUT
def release_exists():
    return bool(notebook.release_revisions(nb)) if have_cluster else False


if not have_cluster:
    print("no cluster: no release")
elif release_exists():
    manifest = nb.helm("get", "manifest", notebook.RELEASE, show=False).stdout
    kinds = pd.Series([line.split(":", 1)[1].strip() for line in manifest.splitlines() if line.startswith("kind:")])
    print("the release holds:", ", ".join(f"{n} {k}" for k, n in kinds.value_counts().sort_index().items()))
    nb.helm("uninstall", notebook.RELEASE)
elif nb.read("Namespace", nb.namespace) is not None:
    from lab.system import deploy

    print("no Helm release: deleting the manifests' objects, last layer first")
    for layer in reversed(deploy.layers()):
        if layer.name == "00-namespace":
            continue  # the namespace goes in step 2, with everything still in it
        print(f"$ kubectl --context {nb.context} delete --ignore-not-found --wait=false -f manifests/{layer.name}/")
        out = nb.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=nb.render(layer.name),
                         namespaced=False, show=False)
        print(out.output.strip() or "(nothing there)")
else:
    print(f"no release and no namespace {nb.namespace}: nothing to uninstall")

# %% [markdown]
# **Checkpoint.** There is no Helm release `k8s-lab` in the namespace any more.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("cleanup.release-gone", points=1,
                   hint="helm -n k8s-assignment list; helm -n k8s-assignment uninstall k8s-lab")
def cleanup_release_gone():
    if not have_cluster:
        return checks.ok("no Helm release k8s-lab (there is no cluster)")
    if release_exists():
        return checks.fail(f"the Helm release {notebook.RELEASE} still exists in {nb.namespace}")
    return checks.ok(f"no Helm release {notebook.RELEASE} in the namespace")


# %% [markdown]
# ## Step 2: what the release left, and the namespace
#
# Look before deleting: the claim is still there (no release ever owned it), and so are the probe
# Pods of notebook 05 and whatever else was made by hand. Then delete the namespace, the lab's
# PersistentVolume (Helm removed it already, unless the system came from the manifests), and
# **wait** until both are gone.
#
# ```bash
# kubectl -n k8s-assignment get all,pvc,configmaps,secrets,networkpolicies
# kubectl delete namespace k8s-assignment --wait=false
# kubectl delete pv k8s-lab-database-data --ignore-not-found --wait=false
# kubectl get namespace k8s-assignment          # Terminating ... then NotFound
# ```

# %%
# NBVAL_IGNORE_OUTPUT
if have_cluster and nb.read("Namespace", nb.namespace) is not None:
    nb.kubectl("get", "all,pvc,configmaps,secrets,networkpolicies")
if have_cluster:
    nb.kubectl("delete", "namespace", nb.namespace, "--ignore-not-found", "--wait=false", namespaced=False)
    nb.kubectl("delete", "persistentvolume", nb.pv_name, "--ignore-not-found", "--wait=false", namespaced=False)


def namespace_and_volume_gone():
    left = []
    ns = nb.read("Namespace", nb.namespace)
    if ns is not None:
        left.append(f"namespace {nb.namespace} ({ns.status.phase})")
    pv = nb.read("PersistentVolume", nb.pv_name)
    if pv is not None:
        left.append(f"PersistentVolume {nb.pv_name} ({pv.status.phase}, finalizers {', '.join(pv.metadata.finalizers or []) or 'none'})")
    return checks.fail("still there: " + "; ".join(left)) if left else checks.ok("namespace and volume are gone")


if have_cluster:
    nb.wait_for(namespace_and_volume_gone, f"namespace {nb.namespace} and PersistentVolume {nb.pv_name} to go", timeout=300,
                hint=f"kubectl get namespace {nb.namespace} -o yaml (its status.conditions say what blocks it)")

# %% [markdown]
# **Checkpoint.** The namespace and the lab's PersistentVolume no longer exist.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("cleanup.namespace-gone", points=2,
                   hint="kubectl get namespace k8s-assignment -o yaml; kubectl get pv k8s-lab-database-data -o yaml (finalizers?)")
def cleanup_namespace_gone():
    if not have_cluster:
        return checks.ok("the namespace and the PersistentVolume are gone (there is no cluster)")
    return namespace_and_volume_gone()


# %% [markdown]
# ## Step 3: what stays on your machine
#
# The PersistentVolume object is gone, its files are not: `Retain` plus a hostPath in the lab data
# directory, which every node mounts at `/var/local/k8s-lab`. Next to them are the backups of
# notebook 08 and of the CronJob.

# %%
# NBVAL_IGNORE_OUTPUT
def size_of(path):
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


data = nb.target.data_dir
on_host = pd.DataFrame([
    {"what": "database files (this namespace's volume)", "path": str(nb.pv_host_path),
     "files": sum(1 for p in nb.pv_host_path.rglob("*") if p.is_file()) if nb.pv_host_path.exists() else 0,
     "size": backup.human_size(size_of(nb.pv_host_path))},
    {"what": "backups", "path": str(backup.backup_dir(nb.target)), "files": len(backup.list_backups(backup.backup_dir(nb.target))),
     "size": backup.human_size(size_of(backup.backup_dir(nb.target)))},
    {"what": "the whole lab data directory", "path": str(data),
     "files": sum(1 for p in data.rglob("*") if p.is_file()) if data.exists() else 0, "size": backup.human_size(size_of(data))},
])
on_host

# %% [markdown]
# To remove them too (do this deliberately: the backups are the only copy of your data once the
# files are gone; the directories belong to uid 999, the database user, so it may take `sudo`):
#
# ```bash
# rm -rf ~/.cache/k8s-lab/data/pv/database        # the database's files ($LAB_DATA_DIR/pv/database)
# rm -rf ~/.cache/k8s-lab/data/backups            # every backup
# ```
#
# With the files gone, notebook 03 starts an empty database next time; with them kept, the new
# database opens the old files and your rows are back.
#
# **Checkpoint.** The volume object is gone, yet the database's files are still on this machine.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("cleanup.files-stay", points=1,
                   hint="ls the lab data directory (pv/database); were the files removed by hand?")
def cleanup_files_stay():
    if have_cluster and nb.read("PersistentVolume", nb.pv_name) is not None:
        return checks.fail(f"PersistentVolume {nb.pv_name} still exists (step 2)")
    files = checks.file_exists_on_host(str(Path(nb.pv_node_path).relative_to(notebook.NODE_DATA_PATH) / "*"))
    if not files.passed:
        return files
    return checks.ok("the volume object is gone, the database's files stay in the lab data directory", files.uids)


# %% [markdown]
# ## Exercise: look for leftovers yourself
#
# Do not trust a command to have worked: ask the cluster. Every object of the lab carries the label
# `app.kubernetes.io/part-of=k8s-lab`. Collect in `leftovers` the `kind/name` of every **cluster-wide**
# object with that label that belongs to this namespace's system (the namespace itself and the
# PersistentVolume `nb.pv_name`), e.g. with
#
# ```bash
# kubectl get namespaces,persistentvolumes -l app.kubernetes.io/part-of=k8s-lab -o name
# ```
#
# (`nb.kubectl(..., namespaced=False, show=False).stdout` gives you the lines). It should be empty.

# %%
# NBVAL_IGNORE_OUTPUT
leftovers = None
# BEGIN SOLUTION NO PROMPT
leftovers = []
if have_cluster:
    listed = nb.kubectl("get", "namespaces,persistentvolumes", "-l", "app.kubernetes.io/part-of=k8s-lab",
                        "-o", "name", namespaced=False, show=False).stdout.split()
    mine = {f"namespace/{nb.namespace}", f"persistentvolume/{nb.pv_name}"}
    leftovers = [name for name in listed if name in mine]
# END SOLUTION
# BEGIN PROMPT
# TODO: leftovers = [...] from kubectl get namespaces,persistentvolumes -l app.kubernetes.io/part-of=k8s-lab -o name
# END PROMPT
print("leftovers:", leftovers)

# %% [markdown]
# **Checkpoint.** Your list is empty, and so is the cluster's answer.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("cleanup.no-leftovers", points=2,
                   hint="kubectl get namespaces,persistentvolumes -l app.kubernetes.io/part-of=k8s-lab -o name; set leftovers to the matching names")
def cleanup_no_leftovers():
    if leftovers is None:
        return checks.fail("leftovers is None: fill it in the exercise cell")
    if have_cluster:
        gone = namespace_and_volume_gone()
        if not gone.passed:
            return gone
    if leftovers:
        return checks.fail(f"leftovers: {', '.join(leftovers)}")
    return checks.ok("no namespace or PersistentVolume of the lab is left")


# %% [markdown]
# ## Step 4: the cluster itself (optional)
#
# By default the cluster stays (`down = False`): notebook 01 and CI reuse it, and creating one takes
# a minute or two. With `down = True` (`lab run 99 --only -p down=true`) it is deleted:
#
# ```bash
# lab cluster down              # kind delete cluster --name k8s-lab
# ```
#
# That removes the node containers with everything inside them: the images loaded into the nodes,
# etcd with every object. It keeps the lab data directory (above), the lab's build cache
# (`~/.cache/k8s-lab`: node image, tools, image layers) and the images in Docker.

# %%
# NBVAL_IGNORE_OUTPUT
from lab.cluster import kind as lab_cluster

if down and nb.cluster != config.CLUSTER_NAME:
    raise LabError(f"down = True deletes only the lab's own cluster {config.CLUSTER_NAME!r}, not {nb.cluster!r}",
                   hint=f"delete it yourself: kind delete cluster --name {nb.cluster}")
if down and nb.node_containers():
    lab_cluster.down(nb.target)
    have_cluster = False
print(f"the cluster {nb.cluster} {'was deleted' if down else 'stays (down = False)'}; node containers now:",
      nb.node_containers() or "none")

# %% [markdown]
# **Checkpoint.** With `down = True` the cluster's node containers are gone; otherwise the cluster
# still answers.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("cleanup.cluster", points=1,
                   hint="lab cluster status; with down = True: lab cluster down")
def cleanup_cluster():
    if down:
        left = nb.node_containers()
        return checks.fail(f"node containers still there: {', '.join(left)}") if left else \
            checks.ok("the cluster was deleted (down = True); the lab data directory stays")
    if not cluster_answers():
        return checks.fail("the cluster does not answer, but down is False")
    return checks.ok("the cluster stays (down = False) for the next run")


# %% [markdown]
# ## Summary
#
# - `helm uninstall` removed the release's objects; what controllers made from them went with them
#   (garbage collection), but the StatefulSet's claim and the hand-made Pods did not.
# - Deleting the namespace took everything left inside it; we waited until it and the volume object
#   were really gone instead of assuming it.
# - The database's files and the backups stay on this machine: `Retain` and a hostPath outside the
#   cluster. Removing them is a deliberate `rm`.
# - `lab cluster down` deletes the cluster, not the data directory nor the build cache.

# %%
# NBVAL_CHECK_OUTPUT
checks.summary()

# %% [markdown]
# ## Clean-up
#
# This notebook *was* the clean-up. To start again: `lab run` (or open `00-preflight`); notebook 01
# brings the cluster up when it is gone, and notebook 03 finds the old database files unless you
# removed them.
