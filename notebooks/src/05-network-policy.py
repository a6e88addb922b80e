# Source of notebooks/05-network-policy.ipynb (build with: python notebooks/src/build.py)

# %% [markdown]
# # 05 · Who may talk to whom: NetworkPolicy and the probe matrix
#
# Inside a Kubernetes cluster every Pod can open a connection to every other Pod: the network is
# flat and open by default. Our database answers anybody who knows its address, not only the web
# server. **NetworkPolicies** close the doors that should be closed. But a policy is only a wish
# written in YAML: whether the cluster *enforces* it, and whether it says what we meant, we only
# know when we **measure**. In this notebook we prove that the cluster enforces policies at all
# (the *canary*), measure who can reach whom before and after the lab's policies (the *probe
# matrix*: expected against observed), and then break a policy on purpose to see that the
# measurement points at exactly what broke.

# %% [markdown]
# ## Learning objectives
#
# After this notebook you can
#
# - explain why a Pod network is open by default and what makes a Pod *isolated* for ingress,
# - read a NetworkPolicy: `podSelector`, `policyTypes`, `ingress.from`, `ports`, and egress rules,
# - prove with a canary that a cluster enforces NetworkPolicy (a policy on a cluster that ignores
#   it is worse than none: it looks like protection),
# - measure a connectivity matrix (sources x destinations x ports), compare it with what the policy
#   should allow, and read it as a heatmap,
# - find a broken policy from the cells of the matrix that are wrong, and reproduce one cell with
#   a single `kubectl exec`.

# %% [markdown]
# ## Concepts
#
# - **Isolation.** A Pod that no NetworkPolicy selects accepts everything. As soon as one policy
#   with `policyTypes: [Ingress]` selects it, the Pod accepts only what some policy's `ingress`
#   rules allow. Policies only *add* allowed traffic; there is no "deny" rule. The lab's
#   `default-deny-ingress` selects every Pod (`podSelector: {}`) and allows nothing, so the other
#   two policies open exactly the doors we want: HTTP to the web Pods, and 3306 to the database
#   from Pods labelled as web server or backup.
# - **Who enforces them.** The API server only stores policies. The network plugin (CNI) on each
#   node turns them into packet filters. On kind that is **kindnetd**; a plugin without policy
#   support accepts the objects and ignores them, silently. Hence the canary.
# - **Dropped, not refused.** A connection a policy blocks gets no answer at all: the client waits
#   until its own timeout (`timeout`). Nobody listening on an allowed port answers with a reset
#   (`refused`). The probe tells the two apart.
# - **Policies act on new connections, asynchronously.** The plugin needs a moment to apply a
#   change; the probe therefore measures again, for a few seconds, every cell that does not match
#   yet, and always uses new connections from long-lived Pods.

# %% tags=["parameters"]
cluster = "k8s-lab"  # the kind cluster: kubeconfig context kind-<cluster>
namespace = "k8s-assignment"  # where the lab's objects go
mode = "auto"  # images: "auto" | "online" | "offline"
solutions = True  # True runs the reference solutions; False leaves the exercises to you
kubeconfig = ""  # "": $KUBECONFIG or ~/.kube/config; in a classroom, the file your instructor gave you

# %%
# NBVAL_CHECK_OUTPUT
from lab import checks, notebook

nb = notebook.start("05-network-policy.ipynb", cluster=cluster, namespace=namespace, mode=mode, solutions=solutions,
                    kubeconfig=kubeconfig, requires=("01", "02", "03", "04"))

# %% [markdown]
# ## Step 1: does this cluster enforce NetworkPolicy? The canary
#
# In a namespace of its own (`k8s-lab-canary`) the canary starts a small server and a client, and
# checks three things in a row: the client connects; under a deny-all ingress policy on the server
# it does **not**; with the policy deleted it connects again. Then it removes everything it made.
# `lab probe --canary` runs the same test from the shell; by hand it would be:
#
# ```bash
# kubectl create namespace k8s-lab-canary
# kubectl -n k8s-lab-canary run server --image=k8s-lab/probe:1 --labels=role=server -- nc -lk -p 8080
# kubectl -n k8s-lab-canary run client --image=k8s-lab/probe:1 -- sleep infinity
# kubectl -n k8s-lab-canary exec client -- bash -c 'timeout 2 bash -c "exec 3<>/dev/tcp/<server IP>/8080" && echo connected'
# kubectl -n k8s-lab-canary apply -f - <<'EOF'      # deny all ingress to the server ... and connect again
# apiVersion: networking.k8s.io/v1
# kind: NetworkPolicy
# metadata: {name: deny-server}
# spec: {podSelector: {matchLabels: {role: server}}, policyTypes: [Ingress]}
# EOF
# ```

# %%
# NBVAL_IGNORE_OUTPUT
%matplotlib inline
import pandas as pd

from lab.ops import probe


# the lab's canary namespace; a notebook run in another namespace (lab grade --execute) gets its own
CANARY_NS = probe.CANARY_NAMESPACE if nb.default_namespace else f"{probe.CANARY_NAMESPACE}-{nb.namespace}"[:63].rstrip("-")
CANARY_DENY = "ingress"
if nb.in_classroom("canary"):
    CANARY_NS, CANARY_DENY = nb.namespace, "egress"


def canary_namespace_free():
    """An earlier canary deletes its namespace without waiting; a new one needs it gone."""
    ns = nb.read("Namespace", CANARY_NS)
    if ns is not None and ns.status.phase == "Terminating":
        return checks.fail(f"namespace {CANARY_NS} of an earlier canary is still terminating")
    return checks.ok(f"namespace {CANARY_NS} is free")


nb.wait_for(canary_namespace_free, "the canary's namespace", timeout=120)
canary = probe.canary(CANARY_NS, target=nb.target, deny=CANARY_DENY)
print(canary.message)
pd.DataFrame([
    {"step": "1. no policy", "client -> server:8080": canary.before},
    {"step": "2. deny-all ingress on the server", "client -> server:8080": canary.blocked},
    {"step": "3. policy deleted again", "client -> server:8080": canary.restored},
])

# %% [markdown]
# **Checkpoint.** The canary connected, was blocked by the policy, and connected again.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("netpol.canary", points=2,
                   hint="kind enforces NetworkPolicy with kindnetd: kubectl -n kube-system get pods -l app=kindnet; `lab probe --canary` repeats the test")
def netpol_canary():
    seen = (canary.before, canary.blocked, canary.restored)
    if not canary.enforced or seen != ("connected", "timeout", "connected"):
        return checks.fail(f"the canary saw {' -> '.join(seen)}, expected connected -> timeout -> connected")
    return checks.ok("NetworkPolicy is enforced: connected -> timeout under deny-all -> connected again")


# %% [markdown]
# ## Step 2: the open namespace
#
# To see what Kubernetes does without any policy, we first remove the lab's policies, in case an
# earlier run (or `lab deploy`) created them. Then we measure the **probe matrix**:
#
# - **sources** (rows): the three web Pods, and long-lived *probe Pods* that the probe starts
#   and reuses: `probe-other-0` (labelled like nothing of ours), `probe-backup-0` (labelled
#   `app.kubernetes.io/component: backup`, like the database backup Jobs of notebook 08) and
#   `probe-outside-0`, labelled **exactly like a web Pod but in another namespace**,
# - **destinations** (columns): the Services `database` (port 3306) and `web` (port 80), and the
#   database Pod itself on a port nothing listens on (8080: without a policy it is `refused`),
# - each cell is one TCP connect from inside the source Pod, with a 1.5 s timeout.
#
# In a classroom, the cells below say what changes there: no namespace of your own for the
# outsider, and your instructor's policies, which stand in for an open namespace until yours
# take over.
#
# ```bash
# kubectl -n k8s-assignment delete networkpolicy default-deny-ingress web-allow-http database-allow-clients --ignore-not-found
# kubectl -n k8s-assignment get networkpolicies
# ```

# %%
# NBVAL_IGNORE_OUTPUT
import json

from lab import tasks
from lab.cluster import classroom

POLICIES = ("default-deny-ingress", "web-allow-http", "database-allow-clients")
nb.kubectl("delete", "networkpolicy", *POLICIES, "--ignore-not-found")
if nb.in_classroom("open-namespace"):
    labels = nb.read("Namespace", nb.namespace).metadata.labels or {}
    nb.kubectl("apply", "-f", "-", stdin=json.dumps(classroom.open_policy(nb.namespace, labels)))
nb.kubectl("get", "networkpolicies")
# the outside source's namespace (a namespace of its own per lab namespace)
OUTSIDE_NS = f"{nb.namespace}-outside"[:63]
outside = not nb.in_classroom("other-namespace")
if outside:
    nb.kubectl("get", "namespace", OUTSIDE_NS, namespaced=False, check=False, show=False).ok or \
        nb.kubectl("create", "namespace", OUTSIDE_NS, namespaced=False)
measurable = tasks.have(nb, "database", "web", "web-service")

# %% [markdown]
# What we *want* is written down as a function (source group, destination, port) -> outcome. The
# lab's own (`probe.lab_expected`, what `lab probe` checks) covers the web Pods and "other"; we add
# the backup source:

# %%
# NBVAL_CHECK_OUTPUT
BACKUP_LABELS = {"app.kubernetes.io/name": "k8s-lab", "app.kubernetes.io/component": "backup",
                 # not the instance label: no Service or Job selects this Pod
                 "app.kubernetes.io/instance": "probe"}
WEB_LABELS = dict(kv.split("=") for kv in probe.LAB_WEB_SELECTOR.split(","))
SOURCES = [*probe.lab_sources(), probe.Source.probe("backup", BACKUP_LABELS)]
if outside:
    SOURCES.append(probe.Source.probe("outside", {**WEB_LABELS, "app.kubernetes.io/instance": "probe"}, namespace=OUTSIDE_NS))
DATABASE_POD = "app.kubernetes.io/instance=k8s-lab,app.kubernetes.io/component=database"
DESTINATIONS = [*probe.lab_destinations(), probe.Destination.pods("database-pod", DATABASE_POD, ports=(8080,))]
CELLS = (("database", 3306), ("web", 80), ("database-pod", 8080))


def wanted(source, destination, port):
    """What the lab's policy allows: everybody reaches web on 80; only web and backup Pods of this
    namespace reach the database, on 3306; nothing else reaches the database."""
    if source in ("web", "backup") and destination == "database" and port == 3306:
        return "connected"
    if destination == "web" and port == 80:
        return "connected"
    return "timeout"


def without_policy(source, destination, port):
    """Without any policy: everything connects, except a port nobody listens on."""
    return "refused" if destination == "database-pod" else "connected"


for source in ("web", "backup", "other", "outside"):
    print(f"{source:8}", "  ".join(f"{d}:{p} {wanted(source, d, p):9}" for d, p in CELLS))

# %% [markdown]
# Without policies we expect every cell to connect. The matrix has a column for what we expected
# (here: `connected` everywhere) and one for what was observed:

# %%
# NBVAL_IGNORE_OUTPUT
def measure(expected):
    return probe.matrix(nb.namespace, SOURCES, DESTINATIONS, ports=probe.LAB_PORTS, expected=expected,
                        target=nb.target)


open_df = None
if measurable:
    open_df = measure(without_policy)
    open_df["policy wants"] = [wanted(r.source_group, r.destination, r.port) for r in open_df.itertuples()]
    print(f"{len(open_df)} cells in {open_df.attrs['seconds']} s")
    display(open_df[["source", "source_group", "destination", "port", "expected", "observed", "policy wants"]])

# %% [markdown]
# Everything connects, including `probe-other-0` and the outsider to the database: the cells where the observed
# outcome differs from `policy wants` are what the policy has to change.
#
# **Checkpoint.** No policy in the namespace, and every source reached the database and the web
# server.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("netpol.open", points=1,
                   hint="kubectl -n k8s-assignment get networkpolicies must list none; probe.report(open_df) shows the cells that did not connect")
def netpol_open():
    from lab.cluster import kube
    from kubernetes import client

    if blocked := tasks.missing(nb, "database", "web", "web-service"):
        return blocked
    left = [p for p in client.NetworkingV1Api(kube.api_client(nb.target)).list_namespaced_network_policy(
        nb.namespace, _request_timeout=10).items if not checks.classroom_made(p)]  # a classroom's are not yours
    if left:
        return checks.fail(f"NetworkPolicies still in the namespace: {', '.join(p.metadata.name for p in left)}")
    result = checks.probe_matrix_clean(open_df)
    if not result.passed:
        return result
    return checks.ok("no NetworkPolicy: every source connects to database:3306 and web:80 (8080 is refused)")


# %% [markdown]
# ## Step 3: the policies (you write the database's)
#
# Two of the three policies are given in `manifests/04-network-policy/`: `default-deny-ingress`
# isolates every Pod of the namespace and `web-allow-http` opens port 80 of the web Pods to
# everybody. Read them.
#
# **Your part:** `database-allow-clients`. Its `podSelector` isolates the database Pod and its
# egress rule lets the database resolve names (DNS) and nothing else; both are written. Write its
# `ingress` rule: the database accepts **TCP 3306** from the **web Pods** and from the **backup
# Pods** of this namespace (labels `app.kubernetes.io/name: k8s-lab` and
# `app.kubernetes.io/component: web` or `backup`), and nothing else. Items of a `from` list are
# alternatives; `ports` applies to all of them. The probe matrix of step 4 grades it, cell by cell.
#
# ```bash
# kubectl apply -f manifests/04-network-policy/default-deny-ingress.yaml -f manifests/04-network-policy/web-allow-http.yaml
# kubectl apply -f work/database-policy.yaml
# ```

# %%
# NBVAL_IGNORE_OUTPUT
%%writefile work/database-policy.yaml
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: database-allow-clients
  namespace: k8s-assignment
  labels:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/part-of: k8s-lab
    app.kubernetes.io/component: database
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/name: k8s-lab
      app.kubernetes.io/instance: k8s-lab
      app.kubernetes.io/component: database
  policyTypes:
    - Ingress
    - Egress
  ingress:
# BEGIN SOLUTION
    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: k8s-lab
              app.kubernetes.io/component: web
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: k8s-lab
              app.kubernetes.io/component: backup
      ports:
        - protocol: TCP
          port: 3306
# END SOLUTION
# BEGIN PROMPT
    # TODO: who may connect, and to which port
# END PROMPT
  egress:
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: kube-system
          podSelector:
            matchLabels:
              k8s-app: kube-dns
      ports:
        - protocol: UDP
          port: 53
        - protocol: TCP
          port: 53

# %%
# NBVAL_IGNORE_OUTPUT
from lab.cluster import classroom

nb.apply("04-network-policy/default-deny-ingress.yaml")
nb.apply("04-network-policy/web-allow-http.yaml")
tasks.apply(nb, "work/database-policy.yaml", "NetworkPolicy")
if nb.in_classroom("open-policy"):
    nb.kubectl("delete", "networkpolicy", classroom.OPEN_POLICY, "--ignore-not-found")
nb.kubectl("describe", "networkpolicy", "database-allow-clients", check=False);

# %% [markdown]
# **Checkpoint.** The three policies exist, the database's with both policy types.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("netpol.applied", points=1,
                   hint="apply the two given policies and work/database-policy.yaml; kubectl -n k8s-assignment get networkpolicies")
def netpol_applied():
    uids = {}
    for name, types in (("default-deny-ingress", ["Ingress"]), ("web-allow-http", ["Ingress"]),
                        ("database-allow-clients", ["Ingress", "Egress"])):
        result = checks.networkpolicy_exists(name, policy_types=types)
        if not result.passed:
            return result
        uids.update(result.uids)
    return checks.ok("default-deny-ingress, web-allow-http and database-allow-clients exist", uids)


# %% [markdown]
# ## Step 4: the matrix under the policy, and its heatmap
#
# Now the expectation is the policy's (`wanted`). Cells that do not match yet are measured again
# for a few seconds while kindnetd applies the policy.
#
# ```bash
# lab probe          # the same matrix for the web and "other" sources, from the shell
# ```

# %%
# NBVAL_IGNORE_OUTPUT
policy_df = None
if measurable:
    policy_df = measure(wanted)
    print(f"{len(policy_df)} cells in {policy_df.attrs['seconds']} s, {policy_df.attrs['passes']} pass(es)")
    display(policy_df[["source", "source_group", "destination", "port", "expected", "observed", "correct", "attempts"]])

# %% [markdown]
# The same as a picture: one row per source Pod, one column per destination and port, coloured by
# what was observed. A cell that differs from the expectation would be hatched and say what was
# expected.

# %%
# NBVAL_IGNORE_OUTPUT
if measurable:
    display(probe.heatmap(policy_df, title="under the lab's policies: observed (colour) vs expected"))
    probe.report(policy_df)

# %% [markdown]
# **Checkpoint.** Every cell of the matrix is as the policy intends: web and backup reach the
# database, "other" does not, everybody reaches web on port 80.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "netpol.matrix", points=3,
    hint="probe.report(policy_df) lists each wrong cell with the kubectl command that reproduces it; compare the policy's selectors with the Pods' labels (kubectl get pods --show-labels)",
    verify=lambda: tasks.missing(nb, "database", "web", "web-service") or checks.probe_matrix_clean(policy_df),
)

# %% [markdown]
# ## Exercise: break the policy on purpose
#
# A policy that selects the wrong labels is a very common mistake, and kubectl accepts it without
# a word. Make one: change `database-allow-clients` so that its first `from` entry allows Pods with
# `app.kubernetes.io/component: frontend` instead of `web` (there are no such Pods). A JSON patch
# does it in one command (`~1` stands for `/` in a JSON-pointer path):
#
# ```bash
# kubectl -n k8s-assignment patch networkpolicy database-allow-clients --type=json -p \
#   '[{"op": "replace", "path": "/spec/ingress/0/from/0/podSelector/matchLabels/app.kubernetes.io~1component", "value": "frontend"}]'
# ```
#
# **Predict first**, before you run it: which cells of the matrix will turn wrong, and what will be
# observed in them? Write your prediction as a set of `(source group, destination, port, observed)`
# in `predicted_wrong`; the checkpoint compares it with the measurement.

# %%
# NBVAL_CHECK_OUTPUT
predicted_wrong = {("web", "database", 3306, "timeout")}  # SOLUTION

# %%
# NBVAL_IGNORE_OUTPUT
import json

if measurable:
    # BEGIN SOLUTION NO PROMPT
    broken_patch = [{"op": "replace", "path": "/spec/ingress/0/from/0/podSelector/matchLabels/app.kubernetes.io~1component",
                     "value": "frontend"}]
    nb.kubectl("patch", "networkpolicy", "database-allow-clients", "--type=json", "-p", json.dumps(broken_patch))
    # END SOLUTION
    # BEGIN PROMPT
    # TODO: nb.kubectl("patch", "networkpolicy", "database-allow-clients", "--type=json", "-p", ...)
    pass
    # END PROMPT

# %% [markdown]
# Measure again with the *same* expectation. A change that removes access needs care: a cell that
# still connects looks correct, so we first wait until the web Pods' connections to the database
# are really dropped (only when the policy in the cluster no longer allows the web Pods).

# %%
# NBVAL_IGNORE_OUTPUT
from kubernetes import client

from lab.cluster import kube

networking = client.NetworkingV1Api(kube.api_client(nb.target))


def web_allowed_to_database():
    policy = networking.read_namespaced_network_policy("database-allow-clients", nb.namespace, _request_timeout=10)
    return any((peer.pod_selector.match_labels or {}).get("app.kubernetes.io/component") == "web"
               for rule in policy.spec.ingress or [] for peer in rule._from or [] if peer.pod_selector)


def web_to_database_dropped():
    df = probe.matrix(nb.namespace, [probe.lab_sources()[0]], [probe.Destination.service("database")],
                      expected="timeout", retry_s=0, target=nb.target)
    return checks.ok("web -> database: dropped") if (df["observed"] == "timeout").all() else \
        checks.fail("web -> database: " + ", ".join(sorted(set(df["observed"]))))


broken_df = None
if measurable:
    if not web_allowed_to_database():
        nb.wait_for(web_to_database_dropped, "the changed policy in the data plane", timeout=60, interval=1)
    broken_df = measure(wanted)
    probe.report(broken_df)

# %%
# NBVAL_IGNORE_OUTPUT
if measurable:
    display(probe.heatmap(broken_df, title="database-allow-clients with a wrong label"))

# %% [markdown]
# Exactly the web Pods' cells to `database:3306` are wrong: expected `connected`, observed
# `timeout`. Everything else is unchanged: "other" is still kept out (that the policy still
# *isolates* the database is why a wrong label is so easy to miss), backup still gets in, and
# `web:80` is untouched. Each wrong cell comes with the one `kubectl exec` that reproduces it.
#
# **Checkpoint.** The policy in the cluster no longer allows the web Pods, the probe found
# exactly the web -> database:3306 cells wrong, and your prediction says the same.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("netpol.break-detected", points=2,
                   hint="run the patch of the exercise, then the measuring cell; the wrong cells must be exactly web -> database:3306")
def netpol_break_detected():
    if blocked := tasks.missing(nb, "database", "web", "web-service"):
        return blocked
    if web_allowed_to_database():
        return checks.fail("database-allow-clients still allows app.kubernetes.io/component=web: patch it (exercise)")
    bad = probe.wrong(broken_df)
    cells = sorted(set(zip(bad["source_group"], bad["destination"], bad["port"], bad["observed"])))
    web_pods = broken_df.loc[broken_df["source_group"] == "web", "source"].nunique()
    if cells != [("web", "database", 3306, "timeout")] or len(bad) != web_pods:
        return checks.fail(f"wrong cells: {cells or 'none'}; expected the {web_pods} web -> database:3306 cells, observed timeout")
    if not isinstance(predicted_wrong, (set, frozenset, list, tuple)):
        return checks.fail(f"predicted_wrong is {tasks.described(predicted_wrong)}: write a set of (source group, destination, port, observed)")
    predicted = {tuple(c) if isinstance(c, (list, tuple)) else c for c in predicted_wrong}
    if predicted != set(cells):
        return checks.fail(f"your prediction has {len(predicted - set(cells))} cell(s) the probe did not find wrong "
                           f"and misses {len(set(cells) - predicted)} it did: compare it with probe.report(broken_df)")
    return checks.ok("the probe reports exactly the web -> database:3306 cells as wrong (timeout instead of connected)")


# %% [markdown]
# ## Step 5: restore the policy
#
# Your file is the truth: apply it again, and `kubectl apply` puts the label back. This time
# the wrong cells are measured again until they connect.
#
# ```bash
# kubectl apply -f work/database-policy.yaml
# lab probe
# ```

# %%
# NBVAL_IGNORE_OUTPUT
tasks.apply(nb, "work/database-policy.yaml", "NetworkPolicy")
restored_df = None
if measurable:
    restored_df = measure(wanted)
    probe.report(restored_df)

# %%
# NBVAL_IGNORE_OUTPUT
if measurable:
    display(probe.heatmap(restored_df, title="restored"))

# %% [markdown]
# **Checkpoint.** The policy allows the web Pods again and the whole matrix matches.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("netpol.restored", points=2,
                   hint="kubectl apply -f work/database-policy.yaml; then measure again: restored_df = measure(wanted)")
def netpol_restored():
    if blocked := tasks.missing(nb, "database", "web", "web-service"):
        return blocked
    if not web_allowed_to_database():
        return checks.fail("database-allow-clients still does not allow app.kubernetes.io/component=web")
    return checks.probe_matrix_clean(restored_df)


# %% [markdown]
# ## Summary
#
# - The canary proved that this cluster enforces NetworkPolicy (kindnetd); without that proof a
#   policy is only decoration.
# - Without policies every Pod reached the database. `default-deny-ingress` isolates every Pod;
#   `web-allow-http` and `database-allow-clients` open exactly HTTP to the web Pods and 3306 to the
#   database from web and backup Pods.
# - The probe matrix compares expected with observed for every source Pod x destination x port;
#   blocked connections *time out* rather than being refused.
# - A wrong label is accepted silently, keeps the database isolated, and breaks the web tier: the
#   matrix pointed at exactly the cells it broke, each with a command that reproduces it.

# %%
# NBVAL_CHECK_OUTPUT
checks.summary()

# %% [markdown]
# ## Clean-up
#
# Keep the policies: the system is meant to run with them, and notebook 07 hands them to Helm. The
# probe Pods `probe-other-0` and `probe-backup-0` stay too (the next measurement reuses them);
# the canary removed its own namespace. To remove them (do **not** run it now):
#
# ```bash
# kubectl -n k8s-assignment delete pod -l k8s-lab.probe/managed=true
# kubectl -n k8s-assignment delete networkpolicy --all   # the database is open again
# ```
#
# Next: **06-pod-watcher**.
