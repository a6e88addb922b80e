# Source of notebooks/06-pod-watcher.ipynb (build with: python notebooks/src/build.py)

# %% [markdown]
# # 06 · Watching Pods: a DaemonSet, list + watch, and the events in pandas
#
# Every controller in Kubernetes (the Deployment controller, the scheduler, the kubelet) works the
# same way: it **lists** the objects it cares about once, then **watches** for changes and reacts to
# each one. We write a small controller of our own that only reacts by printing: the **pod
# watcher**. It runs as a **DaemonSet**, one copy per node, each reporting the Pods of its node as
# one JSON line per change. We make the cluster produce changes (scale the web server, delete a
# Pod), load the watcher's lines into **pandas**, turn them into Pod lifecycles and draw them as a
# timeline. On the way we meet the machinery that makes watching reliable: `resourceVersion`,
# `410 Gone` and bookmarks.

# %% [markdown]
# ## Learning objectives
#
# After this notebook you can
#
# - run a DaemonSet with least-privilege RBAC (a ServiceAccount that may only get, list and watch
#   Pods) and check its permissions with `kubectl auth can-i`,
# - explain list + watch: why a watch starts at the `resourceVersion` of a list, what `410 Gone`
#   means and how a client recovers (list again, compare), and what bookmarks are for,
# - load structured logs into a pandas DataFrame with proper types, and count, filter and group them,
# - derive per-Pod lifecycles (created, scheduled, ready, deleted) from events, and plot a timeline,
# - see a Deployment's rolling behaviour (scale up, replace a deleted Pod, scale down) in the data.

# %% [markdown]
# ## Concepts
#
# - **resourceVersion.** Every change to an object gets a new, increasing `resourceVersion` (in
#   fact etcd's revision). A list returns one for the whole collection: "this is the state as of
#   version N". A watch *from N* then delivers every change after N, in order: nothing missed,
#   nothing twice.
# - **410 Gone.** The API server keeps only a recent window of changes (etcd compacts old
#   revisions, the watch cache holds a few minutes). A watch from a version that is too old fails
#   with HTTP 410 (`Expired: too old resource version`). The only remedy is to **list again** and
#   compare the new list with what you knew; our watcher then prints `RESYNC` lines for what changed
#   while it was not watching.
# - **Bookmarks.** A quiet watch sees no events, so its last known version grows old, and a
#   reconnect would hit 410. With `allowWatchBookmarks` the server sends `BOOKMARK` events now and
#   then that carry nothing but a fresh `resourceVersion` to resume from.
# - **DaemonSet.** One Pod per (matching) node; a new node gets one automatically. Each watcher
#   learns its node's name from the downward API and watches only Pods with `spec.nodeName` equal
#   to it (a *field selector*), so the copies never report the same Pod twice.
# - **RBAC.** The watcher's ServiceAccount gets a Role with `get`, `list`, `watch` on `pods` in
#   this namespace, nothing else: a compromised watcher can read Pod metadata, not Secrets.

# %% tags=["parameters"]
cluster = "k8s-lab"  # the kind cluster: kubeconfig context kind-<cluster>
namespace = "k8s-assignment"  # where the lab's objects go
mode = "auto"  # images: "auto" | "online" | "offline"
solutions = True  # True runs the reference solutions; False leaves the exercises to you
kubeconfig = ""  # "": $KUBECONFIG or ~/.kube/config; in a classroom, the file your instructor gave you

# %%
# NBVAL_CHECK_OUTPUT
from lab import checks, notebook

nb = notebook.start("06-pod-watcher.ipynb", cluster=cluster, namespace=namespace, mode=mode, solutions=solutions,
                    kubeconfig=kubeconfig, requires=("01", "02", "04"))

# %%
# NBVAL_IGNORE_OUTPUT
%matplotlib inline
import pandas as pd

from lab.cluster import kube
from lab.ops import eventlog

core = kube.core(nb.target)
apps = kube.apps(nb.target)
WEB = "app.kubernetes.io/component=web"

# %% [markdown]
# ## Step 1: the watcher's identity and permissions (you write them)
#
# The watcher program runs as the ServiceAccount `watcher`. It reads the Pods of this namespace,
# as they are now (`get`, `list`) and as they change (`watch`), and needs nothing else: no
# Secrets, no writes, no other kinds. That is **least privilege**: if the watcher is ever
# compromised, it can do no more than it needs.
#
# **Your part:** in `work/watcher-rbac.yaml`, the ServiceAccount and the names are given. Write
# the Role's `rules` (the API group of Pods is the core group, `""`) and the RoleBinding's
# `subjects` (who gets the Role). `kubectl auth can-i --as` asks the API server what the account
# may do, without being it:
#
# ```bash
# kubectl apply -f work/watcher-rbac.yaml
# kubectl -n k8s-assignment auth can-i watch pods   --as=system:serviceaccount:k8s-assignment:watcher   # yes
# kubectl -n k8s-assignment auth can-i get secrets  --as=system:serviceaccount:k8s-assignment:watcher   # no
# ```

# %%
# NBVAL_IGNORE_OUTPUT
%%writefile work/watcher-rbac.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: watcher
  namespace: k8s-assignment
  labels:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/part-of: k8s-lab
    app.kubernetes.io/component: watcher
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: watcher-pod-reader
  namespace: k8s-assignment
  labels:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/part-of: k8s-lab
    app.kubernetes.io/component: watcher
rules:
# BEGIN SOLUTION
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, watch]
# END SOLUTION
# BEGIN PROMPT
  # TODO: what the watcher may do, and nothing more
# END PROMPT
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: watcher-pod-reader
  namespace: k8s-assignment
  labels:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/part-of: k8s-lab
    app.kubernetes.io/component: watcher
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: watcher-pod-reader
subjects:
# BEGIN SOLUTION
  - kind: ServiceAccount
    name: watcher
    namespace: k8s-assignment
# END SOLUTION
# BEGIN PROMPT
  # TODO: who gets the Role
# END PROMPT

# %%
# NBVAL_IGNORE_OUTPUT
from lab import tasks

tasks.apply(nb, "work/watcher-rbac.yaml", "ServiceAccount", "Role", "RoleBinding")
ACCOUNT = f"system:serviceaccount:{nb.namespace}:watcher"


def can(verb, resource):
    return tasks.can(nb, verb, resource)


permissions = pd.DataFrame([{"verb": v, "resource": r, "allowed": can(v, r)}
                            for v, r in (("get", "pods"), ("list", "pods"), ("watch", "pods"), ("delete", "pods"),
                                         ("get", "secrets"), ("list", "deployments"))])
permissions

# %% [markdown]
# **Checkpoint.** The watcher may get, list and watch Pods, and nothing else we asked about.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("watcher.rbac", points=1,
                   hint="kubectl -n k8s-assignment auth can-i --list --as=system:serviceaccount:k8s-assignment:watcher; kubectl -n k8s-assignment get role,rolebinding -o yaml")
def watcher_rbac():
    needed = {("get", "pods"), ("list", "pods"), ("watch", "pods")}
    for verb, resource in [("get", "pods"), ("list", "pods"), ("watch", "pods"), ("delete", "pods"),
                           ("get", "secrets"), ("list", "deployments"), ("create", "pods")]:
        allowed = can(verb, resource)
        if allowed and (verb, resource) not in needed:
            return checks.fail(f"the watcher may {verb} {resource}: more than it needs")
        if not allowed and (verb, resource) in needed:
            return checks.fail(f"the watcher may not {verb} {resource}, which it needs (the Role's rules, or who the RoleBinding names)")
    return checks.ok("the watcher may get, list and watch pods; not delete pods, read secrets or list deployments")


# %% [markdown]
# ## Step 2: the DaemonSet
#
# The watcher program is `images/watcher/k8s_lab_watcher.py` in the image `k8s-lab/watcher:1`.
# `daemonset.yaml` runs one copy of it on every node:
#
# ```bash
# kubectl apply -f manifests/05-watcher/daemonset.yaml
# kubectl -n k8s-assignment rollout status daemonset/watcher
# ```
#
# Read its Pod template: `NODE_NAME` comes from the downward API (`spec.nodeName`), the container
# runs as `nobody` with a read-only root filesystem, and it tolerates the control-plane taint.

# %%
# NBVAL_IGNORE_OUTPUT
from lab.system import deploy

# a cluster from before the watcher existed: lab images build builds what changed and loads it into kind
if deploy.missing_images(nb.target, [eventlog.WATCHER_IMAGE]) and not nb.in_classroom("images"):
    eventlog.ensure_image(nb.mode, load_into=nb.target)
if tasks.have(nb, "watcher-rbac"):  # without its permissions the watcher could only crash
    nb.apply("05-watcher/daemonset.yaml")
    nb.wait_for(lambda: checks.pods_on_every_node(eventlog.SELECTOR), "the watcher on every node", timeout=180,
                hint=f"kubectl -n {nb.namespace} describe daemonset watcher")


def watchers_listening():
    """Ready is not enough: each watcher Pod has listed its node's Pods (its `snapshot` status line)."""
    names = {p.metadata.name for p in eventlog.watcher_pods(nb.target) if p.metadata.deletion_timestamp is None}
    lines = eventlog.load_events(nb.target)
    listed = set(lines.loc[(lines["type"] == eventlog.STATUS_TYPE) & (lines["status"] == "snapshot"), "watcher"].astype(str))
    waiting = sorted(names - listed)
    if waiting:
        return checks.fail(f"waiting for the first snapshot of {', '.join(waiting)}")
    return checks.ok("every watcher has listed its node's Pods and watches")


watching = tasks.have(nb, "watcher", "web")  # the next steps read the watcher's lines about web Pods
if watching:
    nb.wait_for(watchers_listening, "the watchers' snapshots", timeout=120, interval=1)
    nb.kubectl("get", "daemonset", "watcher", "-o", "wide")
    nb.kubectl("get", "pods", "-l", eventlog.SELECTOR, "-o", "wide")

# %% [markdown]
# **Checkpoint.** A ready watcher Pod runs on every node.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("watcher.daemonset", points=2,
                   hint="kubectl -n k8s-assignment describe daemonset watcher; kubectl -n k8s-assignment logs daemonset/watcher")
def watcher_daemonset():
    if blocked := tasks.missing(nb, "watcher-rbac"):
        return blocked
    everywhere = checks.pods_on_every_node(eventlog.SELECTOR)
    if not everywhere.passed:
        return everywhere
    return checks.ok("a ready watcher Pod runs on every node", everywhere.uids)


# %% [markdown]
# ## Step 3: the first lines: a snapshot
#
# A starting watcher *lists* the Pods of its node and prints each as a `SNAPSHOT` line, then a
# `WATCHER` status line with the list's `resourceVersion`, and watches from there.
#
# ```bash
# kubectl -n k8s-assignment logs daemonset/watcher --tail=5
# ```

# %%
# NBVAL_IGNORE_OUTPUT
if watching:
    display(nb.kubectl("logs", "daemonset/watcher", "--tail=3"))

# %% [markdown]
# `eventlog.load_events` reads every watcher Pod's log through the API and parses the lines into a
# DataFrame with proper types: times as UTC datetimes, repeated strings as categories, `ready` as a
# nullable boolean. One row per line, duplicates removed.

# %%
# NBVAL_IGNORE_OUTPUT
if watching:
    events = eventlog.load_events(nb.target)
    print(events.dtypes.to_string())
    display(events[["time", "type", "pod", "phase", "node", "ready", "resource_version", "watcher_node"]].tail(8))

# %% [markdown]
# **Checkpoint.** The watchers' lines mention every Pod that runs in the namespace now.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("watcher.snapshot", points=1,
                   hint="kubectl -n k8s-assignment logs daemonset/watcher; a Pod missing from every watcher's log means a watcher does not see its node")
def watcher_snapshot():
    if blocked := tasks.missing(nb, "watcher", "web"):
        return blocked
    seen = set(eventlog.pod_events(eventlog.load_events(nb.target))["uid"].dropna())
    running = [p for p in core.list_namespaced_pod(nb.namespace, _request_timeout=10).items
               if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]
    missing = sorted(p.metadata.name for p in running if p.metadata.uid not in seen)
    if missing:
        return checks.fail(f"no watcher line about: {', '.join(missing)}")
    return checks.ok("every running Pod of the namespace appears in the watchers' lines")


# %% [markdown]
# ## Step 4: make something happen
#
# Three things a Deployment does every day, while the watchers write:
#
# 1. scale `web` from 3 to 5 replicas (two new Pods),
# 2. delete one web Pod (the ReplicaSet replaces it),
# 3. scale back to 3 (two Pods are terminated).
#
# ```bash
# kubectl -n k8s-assignment scale deployment web --replicas=5
# kubectl -n k8s-assignment delete pod <one web Pod>
# kubectl -n k8s-assignment scale deployment web --replicas=3
# ```
#
# After each command we wait for the result, never for a fixed time.

# %%
# NBVAL_IGNORE_OUTPUT
if watching:
    started = pd.Timestamp.now(tz="UTC").floor("s")
    before = {p.metadata.uid for p in core.list_namespaced_pod(nb.namespace, label_selector=WEB, _request_timeout=10).items}


    def web_pods():
        return [p for p in core.list_namespaced_pod(nb.namespace, label_selector=WEB, _request_timeout=10).items]


    def web_settled(replicas):
        """`replicas` ready web Pods and no others (terminating ones gone)."""
        def check():
            result = checks.deployment_ready("web", replicas=replicas)
            pods = web_pods()
            if result.passed and len(pods) != replicas:
                return checks.fail(f"{len(pods)} web Pods, waiting for {len(pods) - replicas} to terminate")
            return result
        return check


    nb.kubectl("scale", "deployment", "web", "--replicas=5")
    nb.wait_for(web_settled(5), "5 web Pods", timeout=180)

    victim = min(web_pods(), key=lambda p: p.metadata.creation_timestamp)
    victim_uid = victim.metadata.uid
    nb.kubectl("delete", "pod", victim.metadata.name, "--wait=false")


    def replaced():
        if victim_uid in {p.metadata.uid for p in web_pods()}:
            return checks.fail(f"{victim.metadata.name} is still there (terminating)")
        return web_settled(5)()


    nb.wait_for(replaced, "the replacement of the deleted Pod", timeout=180)

    nb.kubectl("scale", "deployment", "web", "--replicas=3")
    nb.wait_for(web_settled(3), "3 web Pods", timeout=180)
    after = {p.metadata.uid for p in web_pods()}
    print(f"web Pods before: {len(before)}, after: {len(after)}, kept all along: {len(before & after)}")

# %% [markdown]
# Every Pod that existed at some point in this step was either there before, or created in it;
# every Pod gone at the end was deleted in it. The watchers saw all of that; we wait until their
# logs show every deletion (a watcher writes the line when the API server tells it, a moment after
# the Pod is gone).

# %%
# NBVAL_IGNORE_OUTPUT
if watching:
    def step_events():
        return eventlog.load_events(nb.target, since=started.isoformat())


    def deletions_logged():
        pods = eventlog.pod_events(step_events())
        web = pods[pods["pod"].str.startswith("web-")]
        created = set(web.loc[web["type"] == "ADDED", "uid"])
        deleted = set(web.loc[eventlog.is_deletion(web), "uid"])
        expected_gone = (before | created) - after
        missing = expected_gone - deleted
        if victim_uid not in deleted or missing:
            return checks.fail(f"{len(missing | ({victim_uid} - deleted))} deletion(s) not logged yet")
        return checks.ok(f"{len(created)} web Pods created and {len(deleted)} deleted, all logged")


    nb.wait_for(deletions_logged, "the watchers' lines about this step", timeout=120, interval=1)
    events = step_events()
    web_events = eventlog.pod_events(events)[eventlog.pod_events(events)["pod"].str.startswith("web-")]
    print(f"{len(events)} lines since {started}, {len(web_events)} about web Pods")

# %% [markdown]
# **Checkpoint.** The watchers logged each new web Pod's creation exactly once and each removed web
# Pod's deletion exactly once, the deleted Pod among them.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("watcher.events", points=2,
                   hint="run step 4 again; kubectl -n k8s-assignment logs daemonset/watcher | grep DELETED")
def watcher_events():
    if blocked := tasks.missing(nb, "watcher", "web"):
        return blocked
    pods = eventlog.pod_events(step_events())
    web = pods[pods["pod"].str.startswith("web-")]
    added = web[web["type"] == "ADDED"].groupby("uid").size()
    deleted = web[eventlog.is_deletion(web)].groupby("uid").size()
    if len(added) < 3:
        return checks.fail(f"{len(added)} web Pods created in step 4; expected at least 3 (2 by scaling, 1 replacement)")
    if (added > 1).any() or (deleted > 1).any():
        return checks.fail("a Pod's creation or deletion was logged more than once")
    if victim_uid not in deleted.index:
        return checks.fail("the deleted web Pod's deletion is not in the watchers' lines")
    if not set(deleted.index) >= (before | set(added.index)) - after:
        return checks.fail("a web Pod that is gone has no deletion line")
    return checks.ok("each new web Pod's ADDED and each removed one's DELETED logged exactly once")


# %% [markdown]
# ## Step 5: the events in pandas: lifecycles and a timeline
#
# What kinds of lines, from which node's watcher? `MODIFIED` dominates: a Pod changes many times on
# its way to Ready (scheduled, initialized, containers ready, ready, IP assigned ...).

# %%
# NBVAL_IGNORE_OUTPUT
if watching:
    display(pd.crosstab(events["type"], events["watcher_node"], margins=True))

# %% [markdown]
# One Pod's story, line by line: the deleted web Pod.

# %%
# NBVAL_IGNORE_OUTPUT
if watching:
    story = events[events["uid"] == victim_uid]
    display(story[["time", "type", "phase", "ready", "scheduled_at", "ready_at", "deleting", "resource_version"]])

# %% [markdown]
# From lines to **lifecycles**: `eventlog.lifecycles` makes one row per Pod with the time it was
# created, scheduled, initialized, ready, asked to be deleted and gone, and the seconds from
# creation to each.

# %%
# NBVAL_IGNORE_OUTPUT
if watching:
    lifecycles = eventlog.lifecycles(events)
    web_lives = lifecycles[lifecycles["pod"].str.startswith("web-")]
    display(web_lives[["pod", "node", "phase", "created", "ready", "deletion_requested", "deleted", "to_scheduled_s", "to_ready_s",
           "lifetime_s"]])

# %% [markdown]
# The same as a **timeline**: one bar per Pod from creation to deletion, coloured by stage
# (pending, starting, ready, terminating); the ticks are the watcher lines. The scale-up, the
# replacement and the scale-down are easy to spot.

# %%
# NBVAL_IGNORE_OUTPUT
if watching:
    from matplotlib import dates as mdates

    figure = eventlog.timeline(web_lives, events, title="web Pods during step 4")
    figure.axes[0].set_xlim(mdates.date2num((started - pd.Timedelta(seconds=2)).tz_convert(None)),
                            mdates.date2num((events["time"].max() + pd.Timedelta(seconds=2)).tz_convert(None)))
    display(figure)

# %% [markdown]
# **Checkpoint.** Every web Pod created in step 4 has a lifecycle in the right order: created, then
# scheduled, then ready.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("watcher.lifecycles", points=2,
                   hint="eventlog.lifecycles(events) needs the events of step 4 (events = step_events())")
def watcher_lifecycles():
    if blocked := tasks.missing(nb, "watcher", "web"):
        return blocked
    lives = eventlog.lifecycles(step_events())
    new = lives[lives["pod"].str.startswith("web-") & lives["created"].ge(started)]
    if len(new) < 3:
        return checks.fail(f"{len(new)} lifecycles of web Pods created in step 4; expected at least 3")
    bad = new[~((new["created"] <= new["scheduled"]) & (new["scheduled"] <= new["ready"]))]
    if len(bad):
        return checks.fail(f"lifecycles out of order (or never ready): {', '.join(bad['pod'])}")
    return checks.ok("every web Pod created in step 4 was created, then scheduled, then ready")


# %% [markdown]
# ## Exercise: how long does a web Pod take to start?
#
# From `events` (or `lifecycles`), compute for every web Pod **created in step 4** the seconds from
# its creation to Ready, as a pandas Series `to_ready` indexed by Pod name. Note that the API gives
# condition times in whole seconds. Which step takes most of that time? (Compare `to_scheduled_s`.)

# %%
# NBVAL_IGNORE_OUTPUT
to_ready = pd.Series(dtype=float)
# BEGIN SOLUTION NO PROMPT
created_here = lifecycles[lifecycles["pod"].str.startswith("web-") & lifecycles["created"].ge(started)]
to_ready = created_here.set_index("pod")["to_ready_s"]
# END SOLUTION
# BEGIN PROMPT
# TODO: to_ready = ... (a Series: Pod name -> seconds from created to ready, for the web Pods created in step 4)
# END PROMPT
to_ready.describe()

# %% [markdown]
# **Checkpoint.** `to_ready` has one value per web Pod created in step 4, each the seconds from its
# creation to Ready.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("watcher.to-ready", points=2,
                   hint="filter lifecycles to web Pods with created >= started, then .set_index('pod')['to_ready_s']")
def watcher_to_ready():
    if blocked := tasks.missing(nb, "watcher", "web"):
        return blocked
    lives = eventlog.lifecycles(step_events())
    new = lives[lives["pod"].str.startswith("web-") & lives["created"].ge(started)].set_index("pod")["to_ready_s"]
    if len(to_ready) == 0:
        return checks.fail("to_ready is empty: compute it in the exercise cell")
    if sorted(map(str, to_ready.index)) != sorted(map(str, new.index)):
        return checks.fail(f"to_ready has Pods {sorted(map(str, to_ready.index))}; expected {sorted(map(str, new.index))}")
    off = (to_ready.astype(float) - new.reindex(to_ready.index).astype(float)).abs()
    if off.isna().any() or (off > 1).any():
        return checks.fail("some values are not the seconds from created to ready")
    return checks.ok("to_ready holds each new web Pod's seconds from creation to Ready")


# %% [markdown]
# ## Step 6: list + watch by hand, resourceVersion and 410 Gone
#
# What the watcher does, in a few lines of Python (`kubernetes.watch` wraps `GET ...?watch=true`):
#
# 1. **list** the web Pods and remember the list's `resourceVersion`,
# 2. change one Pod (an annotation) *after* the list,
# 3. **watch from that version**: the change arrives at once, although it happened before the watch
#    started: nothing falls between the list and the watch,
# 4. watch from a version long compacted away (`1`): the server answers **410 Gone**, and the only
#    way on is a new list.
#
# ```bash
# kubectl -n k8s-assignment get pods -l app.kubernetes.io/component=web -o jsonpath='{.metadata.resourceVersion}'
# kubectl get --raw "/api/v1/namespaces/k8s-assignment/pods?watch=1&resourceVersion=<RV>&allowWatchBookmarks=true&timeoutSeconds=3"
# ```

# %%
# NBVAL_IGNORE_OUTPUT
if watching:
    from kubernetes import watch as k8s_watch
    from kubernetes.client.exceptions import ApiException

    listed = core.list_namespaced_pod(nb.namespace, label_selector=WEB, _request_timeout=10)
    list_rv = listed.metadata.resource_version
    target = listed.items[0].metadata.name
    marker = pd.Timestamp.now(tz="UTC").isoformat()
    nb.kubectl("annotate", "pod", target, f"k8s-lab/touched={marker}", "--overwrite")

    seen = []
    for event in k8s_watch.Watch().stream(core.list_namespaced_pod, nb.namespace, label_selector=WEB,
                                          resource_version=list_rv, allow_watch_bookmarks=True, timeout_seconds=3):
        meta = event["raw_object"].get("metadata") or {}  # a BOOKMARK carries only a resourceVersion
        seen.append({"type": event["type"], "pod": meta.get("name", "-"), "resourceVersion": meta.get("resourceVersion"),
                     "touched": (meta.get("annotations") or {}).get("k8s-lab/touched") == marker})
    print(f"list at resourceVersion {list_rv}; the watch from it delivered:")
    watched = pd.DataFrame(seen, columns=["type", "pod", "resourceVersion", "touched"])
    print(watched.to_string(index=False))

    try:
        for event in k8s_watch.Watch().stream(core.list_namespaced_pod, nb.namespace, resource_version="1",
                                              timeout_seconds=3):
            pass
        gone = None
    except ApiException as error:
        gone = error
    print("\nwatch from resourceVersion 1:", f"{gone.status} {gone.reason}" if gone else "no error (a very young cluster?)")

# %% [markdown]
# The watcher met the same situations by itself: its `WATCHER` status lines record when it started,
# took its snapshot, had a watch expire (`expired`, after a 410) and listed again (`relisted`, with
# `RESYNC` lines for what changed meanwhile). Bookmarks keep its version fresh, so on a healthy
# cluster `expired` is rare.

# %%
# NBVAL_IGNORE_OUTPUT
if watching:
    status_lines = eventlog.load_events(nb.target)
    status_lines = status_lines[status_lines["type"] == eventlog.STATUS_TYPE]
    display(status_lines.groupby(["watcher_node", "status"], observed=True).size().unstack(fill_value=0))

# %% [markdown]
# **Checkpoint.** The watch from the list's version delivered the annotation made after the list,
# and the watch from version 1 was refused with 410 Gone.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("watcher.list-watch", points=2,
                   hint="run the cell above again: it lists, annotates one web Pod, watches from the list's resourceVersion, then from 1")
def watcher_list_watch():
    if blocked := tasks.missing(nb, "watcher", "web"):
        return blocked
    if not watched["touched"].any():
        return checks.fail("the watch from the list's resourceVersion did not deliver the annotated Pod")
    if gone is None or gone.status != 410:
        return checks.fail(f"the watch from resourceVersion 1 was not refused with 410: {gone.status if gone else 'no error'}")
    pod = core.read_namespaced_pod(target, nb.namespace, _request_timeout=10)
    if (pod.metadata.annotations or {}).get("k8s-lab/touched") != marker:
        return checks.fail(f"Pod {target} lacks the annotation made in this run")
    return checks.ok("watch from the list's resourceVersion replayed the change; resourceVersion 1 gave 410 Gone",
                     {f"Pod/{nb.namespace}/{target}": pod.metadata.uid})


# %% [markdown]
# ## Step 7: the same watcher in Go, on a client-go informer
#
# Controllers written in Go (the kubelet, the scheduler, operators) do not write list + watch by
# hand: they use client-go's **SharedInformer**. `images/watcher-go/main.go` is our watcher built on
# one, with a field selector for its node, and it prints **the same JSON lines**. What the informer
# brings over the raw watch of step 6:
#
# | | raw list + watch (Python watcher, step 6) | SharedInformer (Go watcher) |
# | --- | --- | --- |
# | list, then watch from its `resourceVersion`, bookmarks | written by hand | the informer's *reflector* |
# | `410 Gone` → list again and compare | written by hand (`relist_diff`) | the reflector re-lists; the *cache* tells what changed |
# | errors | own backoff | backoff 0.8 s doubling to 30 s |
# | state | a dict of the last printed Pod per uid | a thread-safe **cache** (store, indexers, listers) |
# | periodic **resync** | none | every cached Pod re-delivered now and then (the Go watcher counts them, prints nothing: nothing changed) |
# | reacting | one loop | **event handlers** `OnAdd` / `OnUpdate(old, new)` / `OnDelete` |
#
# The chart switches with one value, `watcher.implementation: go`, the manifests with
# `kubectl apply -f manifests/05-watcher/go/`. Here we run the Go watcher **beside** the Python one
# for a moment, as a second DaemonSet `watcher-go` under the same ServiceAccount, delete one web
# Pod, and compare what the two logged.

# %%
# NBVAL_IGNORE_OUTPUT
import yaml

python_seen, go_seen = set(), set()
if watching:  # the Go watcher runs under the same ServiceAccount and Role as yours
    GO_COMPONENT = "watcher-go"
    GO_SELECTOR = f"app.kubernetes.io/component={GO_COMPONENT}"
    if deploy.missing_images(nb.target, [eventlog.WATCHER_GO_IMAGE]) and not nb.in_classroom("images"):
        eventlog.ensure_image(nb.mode, load_into=nb.target, implementation="go")
    [go_daemonset] = [o for o in eventlog.watcher_objects(nb.namespace, implementation="go") if o["kind"] == "DaemonSet"]
    go_daemonset["metadata"]["name"] = GO_COMPONENT
    for labels in (go_daemonset["metadata"]["labels"], go_daemonset["spec"]["selector"]["matchLabels"],
                   go_daemonset["spec"]["template"]["metadata"]["labels"]):
        labels["app.kubernetes.io/component"] = GO_COMPONENT  # not the Python watcher's Pods
    nb.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(go_daemonset))
    nb.kubectl("rollout", "status", f"daemonset/{GO_COMPONENT}", "--timeout=180s")


    def go_lines():
        lines = []
        for pod in core.list_namespaced_pod(nb.namespace, label_selector=GO_SELECTOR, _request_timeout=10).items:
            log = core.read_namespaced_pod_log(pod.metadata.name, nb.namespace, container=eventlog.CONTAINER, _request_timeout=30)
            lines += log.splitlines()
        return eventlog.parse_lines(lines)


    nb.wait_for(lambda: (go_lines()["status"] == "snapshot").any(), "the Go watcher's snapshot", timeout=120, interval=1)
    compared_from = pd.Timestamp.now(tz="UTC")
    second_victim = min(web_pods(), key=lambda p: p.metadata.creation_timestamp)
    nb.kubectl("delete", "pod", second_victim.metadata.name, "--wait=false")


    def replaced_again():
        if second_victim.metadata.uid in {p.metadata.uid for p in web_pods()}:
            return checks.fail(f"{second_victim.metadata.name} is still there (terminating)")
        return web_settled(3)()


    nb.wait_for(replaced_again, "the replacement of the deleted Pod", timeout=180)


    def transitions(events):
        """(Pod, type, resourceVersion) of the web Pods' changes since the comparison began."""
        rows = eventlog.pod_events(events)
        rows = rows[rows["pod"].str.startswith("web-") & (rows["time"] >= compared_from) & rows["type"].isin(["ADDED", "MODIFIED", "DELETED"])]
        return set(zip(rows["pod"].astype(str), rows["type"].astype(str), rows["resource_version"].astype(str)))


    def both_logged_the_deletion():
        """Both logs have the deletion, and the same lines (a watcher may trail the other by a moment)."""
        global python_seen, go_seen
        python_seen = transitions(eventlog.load_events(nb.target))
        go_seen = transitions(go_lines())
        for name, found in (("python", python_seen), ("go", go_seen)):
            if (second_victim.metadata.name, "DELETED") not in {(pod, kind) for pod, kind, _ in found}:
                return checks.fail(f"the {name} watcher has not logged the deletion yet")
        if python_seen != go_seen:
            return checks.fail(f"{len(python_seen ^ go_seen)} transition(s) in one log only, so far")
        return checks.ok("both watchers logged the deletion and the same transitions")


    nb.wait_for(both_logged_the_deletion, "both watchers' lines", timeout=120, interval=1)
    comparison = pd.DataFrame(sorted(python_seen | go_seen), columns=["pod", "type", "resource_version"])
    comparison["python"] = [t in python_seen for t in zip(comparison["pod"], comparison["type"], comparison["resource_version"])]
    comparison["go"] = [t in go_seen for t in zip(comparison["pod"], comparison["type"], comparison["resource_version"])]
    display(comparison.sort_values("resource_version", key=lambda v: v.astype(int)))
else:
    print("step 7 needs the watcher of steps 1 and 2 (your Role and RoleBinding): finish them first")

# %% [markdown]
# Every transition, with the same `resourceVersion`, in both logs: the contract holds. The Go
# watcher's own status lines say what the informer did (`started` names the implementation and the
# resync period). We remove the second DaemonSet again: the lab keeps the Python watcher.

# %%
# NBVAL_IGNORE_OUTPUT
if watching:
    go_status = go_lines()
    print(go_status.loc[go_status["type"] == eventlog.STATUS_TYPE, ["time", "status", "scope", "watcher"]].to_string(index=False))
    nb.kubectl("delete", "daemonset", GO_COMPONENT, "--wait=false")

# %% [markdown]
# **Checkpoint.** The Go and the Python watcher logged the same transitions of the web Pods.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("watcher.go", points=1,
                   hint="run the cells of step 7 again: they start the Go watcher beside the Python one and delete a web Pod")
def watcher_go():
    needed = tasks.missing(nb, "watcher", "web")
    if needed is not None:
        return needed
    if not python_seen:
        return checks.fail("the Python watcher logged no web Pod transitions since the comparison began")
    if python_seen != go_seen:
        return checks.fail(f"only Python: {sorted(python_seen - go_seen)}; only Go: {sorted(go_seen - python_seen)}")
    return checks.ok(f"both watchers logged the same {len(go_seen)} transitions")


# %% [markdown]
# ## Summary
#
# - The watcher runs as a DaemonSet (one Pod per node) under a ServiceAccount that may only get,
#   list and watch Pods.
# - list + watch: a list gives a `resourceVersion`, a watch from it delivers every later change;
#   a version that is too old gives `410 Gone` and calls for a new list; bookmarks keep the version
#   fresh.
# - The watchers' JSON lines became a typed DataFrame; grouped by Pod they gave lifecycles
#   (created, scheduled, ready, deleted) and a timeline of scaling up, a replacement and scaling
#   down.
# - A client-go SharedInformer does list + watch, re-lists, backoff, a cache, resyncs and event
#   handlers for you; the Go watcher on one prints the very same lines
#   (`watcher.implementation: go`).

# %%
# NBVAL_CHECK_OUTPUT
checks.summary()

# %% [markdown]
# ## Clean-up
#
# Keep the watcher running: it records everything that happens in the next notebooks, and notebook
# 09 checks it on every node. `web` is back at 3 replicas. To remove the watcher (do **not** run
# it now):
#
# ```bash
# kubectl -n k8s-assignment delete daemonset watcher
# kubectl delete -f manifests/05-watcher/
# ```
#
# `lab events --since 10m` prints the same lifecycles from the shell at any time.
#
# Next: **07-helm**.
