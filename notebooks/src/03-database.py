# Source of notebooks/03-database.ipynb (build with: python notebooks/src/build.py)

# %% [markdown]
# # 03 · A database that keeps its data: Secret, ConfigMap, Services, StatefulSet
#
# A database is the classic *stateful* application: it must keep its files, and clients must find
# it under a stable name. In this notebook we give it credentials (a **Secret**), settings (a
# **ConfigMap**), addresses (two **Services**) and finally run it as a **StatefulSet** on the volume
# from notebook 02. Then we write a row, kill the Pod, and read the row back.

# %% [markdown]
# ## Learning objectives
#
# After this notebook you can
#
# - keep credentials in a Secret and settings in a ConfigMap, and mount both into a container,
# - explain the difference between a normal (ClusterIP) and a *headless* Service,
# - run a StatefulSet and explain what it guarantees that a Deployment does not (stable Pod name,
#   stable storage through `volumeClaimTemplates`, ordered start),
# - wait for readiness instead of sleeping, and read why a Pod is not ready,
# - run SQL in the Pod with `kubectl exec`, using the password from the Secret without ever
#   printing it.

# %% [markdown]
# ## Concepts
#
# - A **Secret** holds small confidential values (base64-encoded in the API: an *encoding*, not
#   encryption; what protects a Secret is who may read it). A **ConfigMap** holds configuration that
#   is not secret. Both can become environment variables or files in a container; files are better
#   for credentials (they do not show up in `kubectl describe pod` or in a process listing).
# - A **Service** gives a set of Pods (chosen by labels) one name and one virtual IP; kube-proxy
#   spreads connections over the Pods that are *ready*. A **headless** Service (`clusterIP: None`)
#   has no virtual IP: its DNS name returns the Pods' own addresses, and each Pod of a StatefulSet
#   gets a name of its own, `database-0.database-headless.<namespace>.svc.cluster.local`.
# - A **StatefulSet** names its Pods `<name>-0`, `<name>-1`, ... and gives each one its own
#   PersistentVolumeClaim from a template (`data-database-0`). When the Pod dies, the new one gets
#   the same name and the same claim, so the same files.
# - **Probes.** The kubelet asks the container "are you alive?" (liveness: restart it if not) and
#   "can you serve?" (readiness: take it out of the Service if not). A database that is still
#   initializing is alive but not ready.

# %% tags=["parameters"]
cluster = "k8s-lab"  # the kind cluster: kubeconfig context kind-<cluster>
namespace = "k8s-assignment"  # where the lab's objects go
mode = "auto"  # images: "auto" | "online" | "offline"
solutions = True  # True runs the reference solutions; False leaves the exercises to you

# %%
# NBVAL_CHECK_OUTPUT
from lab import checks, notebook

nb = notebook.start("03-database.ipynb", cluster=cluster, namespace=namespace, mode=mode, solutions=solutions,
                    requires=("01", "02"))

# %% [markdown]
# The database image depends on the mode: online it is the official `mysql:8.4`, offline the lab's
# own MariaDB built from Debian packages. Both speak the same protocol and read the same settings.

# %%
# NBVAL_IGNORE_OUTPUT
print(f"mode {nb.mode} -> {nb.image_mode}; database image: {nb.images()['database']}")

# %% [markdown]
# ## Step 1: the credentials (Secret)
#
# ```bash
# kubectl apply -f manifests/02-database/secret.yaml
# kubectl -n k8s-assignment describe secret database-credentials     # shows sizes, never values
# ```
#
# The values in the file are lab-only defaults, committed so that everyone's database works; in a
# real system a Secret would come from a vault, never from git. We never print them: below we
# list the keys and how long each value is.

# %%
# NBVAL_IGNORE_OUTPUT
nb.apply("02-database/secret.yaml");

# %%
# NBVAL_CHECK_OUTPUT
import base64

secret = nb.read("Secret", "database-credentials")
for key, value in sorted((secret.data or {}).items()):
    print(f"{key:14} {len(base64.b64decode(value))} bytes")
del secret  # keep the values out of the notebook's variables

# %% [markdown]
# **Checkpoint.** The Secret has the three keys the database reads.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "db.secret", points=1,
    hint="kubectl apply -f manifests/02-database/secret.yaml; kubectl -n k8s-assignment describe secret database-credentials",
    verify=lambda: checks.secret_has_keys("database-credentials", ["root-password", "username", "password"]),
)

# %% [markdown]
# ## Step 2: the settings (ConfigMap)
#
# The ConfigMap's key `my.cnf` becomes the file `/etc/mysql/conf.d/my.cnf` in the container; the
# server reads it at start. A change to the ConfigMap reaches the file after a while, but the server
# only reads it again when it restarts.

# %%
# NBVAL_IGNORE_OUTPUT
nb.apply("02-database/configmap.yaml");

# %%
# NBVAL_CHECK_OUTPUT
print(nb.read("ConfigMap", "database-config").data["my.cnf"])

# %% [markdown]
# **Checkpoint.** The ConfigMap has `my.cnf` with a `[mysqld]` section.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "db.config", points=1,
    hint="kubectl apply -f manifests/02-database/configmap.yaml; kubectl -n k8s-assignment get configmap database-config -o yaml",
    verify=lambda: checks.configmap_has_key("database-config", "my.cnf", contains="[mysqld]"),
)

# %% [markdown]
# ## Step 3: two Services
#
# Both select the Pods labelled `app.kubernetes.io/component=database` (and name/instance
# `k8s-lab`). `database` has a virtual IP for clients; `database-headless` has none and gives the
# StatefulSet's Pods their DNS names. It also lists Pods that are not ready yet
# (`publishNotReadyAddresses`), so that the name resolves while the database starts.

# %%
# NBVAL_IGNORE_OUTPUT
nb.apply("02-database/services.yaml")
nb.kubectl("get", "services", "-l", "app.kubernetes.io/component=database", "-o", "wide");

# %%
# NBVAL_CHECK_OUTPUT
for name in ("database", "database-headless"):
    svc = nb.read("Service", name)
    ports = ", ".join(f"{p.port}->{p.target_port}/{p.protocol}" for p in svc.spec.ports)
    kind = "headless (no cluster IP)" if svc.spec.cluster_ip == "None" else "ClusterIP (a virtual IP)"
    print(f"{name:18} {kind:26} ports {ports}; selects {svc.spec.selector['app.kubernetes.io/component']} Pods")

# %% [markdown]
# **Checkpoint.** Both Services exist, on port 3306, and `database-headless` is headless.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("db.services", points=1,
                   hint="kubectl apply -f manifests/02-database/services.yaml; kubectl -n k8s-assignment get svc -o wide")
def db_services():
    uids = {}
    for name in ("database", "database-headless"):
        result = checks.service_has_port(name, 3306)
        if not result.passed:
            return result
        uids.update(result.uids)
    if nb.read("Service", "database-headless").spec.cluster_ip != "None":
        return checks.fail("Service database-headless has a cluster IP: set clusterIP: None", uids)
    return checks.ok("Services database (ClusterIP) and database-headless (headless) listen on 3306", uids)


# %% [markdown]
# ## Step 4: the StatefulSet
#
# Read the manifest: the init container hands the data directory to the database user, the
# `*_FILE` variables point at the mounted Secret, the probes log in with `mysqladmin ping`, and
# `volumeClaimTemplates` asks for the claim `data-database-0` of class `manual`.
#
# ```bash
# kubectl apply -f manifests/02-database/statefulset.yaml
# kubectl -n k8s-assignment rollout status statefulset/database --timeout=10m
# ```
#
# We do not sleep and hope: we wait on the condition "1 of 1 replicas ready", print what changes
# while we wait, and give up with the reason after ten minutes. The first start initializes the
# database and takes a minute; later starts reuse the files on the volume.

# %%
# NBVAL_IGNORE_OUTPUT
nb.apply("02-database/statefulset.yaml")
nb.wait_for(lambda: checks.statefulset_ready("database", replicas=1), "StatefulSet database", timeout=600,
            hint="kubectl -n k8s-assignment describe pod database-0; kubectl -n k8s-assignment logs database-0 -c database")
nb.pods("app.kubernetes.io/component=database")

# %% [markdown]
# **Checkpoint.** The StatefulSet's one replica is ready.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "db.statefulset-ready", points=2,
    hint="kubectl -n k8s-assignment describe statefulset database; kubectl -n k8s-assignment describe pod database-0",
    verify=lambda: checks.statefulset_ready("database", replicas=1),
)

# %% [markdown]
# ## Step 5: the claim and the volume
#
# The StatefulSet made the claim `data-database-0` from its template; the control plane bound it to
# the volume reserved for it in notebook 02. Now the volume is `Bound`, and the files are on your
# machine.
#
# ```bash
# kubectl -n k8s-assignment get pvc
# kubectl get pv k8s-lab-database-data
# ```

# %%
# NBVAL_IGNORE_OUTPUT
nb.kubectl("get", "persistentvolumeclaims")
nb.kubectl("get", "persistentvolume", nb.pv_name, namespaced=False)
print(f"\nfiles on this machine: {nb.pv_host_path}")
print(sorted(p.name for p in nb.pv_host_path.iterdir())[:12] if nb.pv_host_path.exists() else "(not readable here)")

# %% [markdown]
# **Checkpoint.** The claim is bound to the lab's volume.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("db.claim-bound", points=1,
                   hint="kubectl -n k8s-assignment describe pvc data-database-0 (its events say why it waits); is the PV from notebook 02 there?")
def db_claim_bound():
    result = checks.pvc_bound("data-database-0")
    if result.passed and nb.pv_name not in result.message:
        return checks.fail(f"{result.message}, not to {nb.pv_name}", result.uids)
    return result


# %% [markdown]
# ## Step 6: stable names
#
# Inside the cluster, the headless Service gives the Pod a DNS name of its own. Ask the Pod's
# resolver (every Pod gets the cluster DNS, CoreDNS, in `/etc/resolv.conf`):
#
# ```bash
# kubectl -n k8s-assignment exec database-0 -c database -- getent hosts database-0.database-headless database
# ```

# %%
# NBVAL_IGNORE_OUTPUT
nb.kubectl("exec", "database-0", "-c", "database", "--", "getent", "hosts",
           f"database-0.database-headless.{nb.namespace}.svc.cluster.local")
nb.kubectl("exec", "database-0", "-c", "database", "--", "getent", "hosts", f"database.{nb.namespace}.svc.cluster.local");

# %% [markdown]
# The first name resolves to the Pod's own IP, the second to the Service's virtual IP.
#
# **Checkpoint.** `database-0.database-headless` resolves to the Pod's IP.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("db.stable-name", points=1,
                   hint="the StatefulSet's serviceName must be database-headless; kubectl -n k8s-assignment get endpointslices")
def db_stable_name():
    pod = nb.read("Pod", "database-0")
    if pod is None or not pod.status.pod_ip:
        return checks.fail("Pod database-0 has no IP yet")
    answer = nb.kubectl("exec", "database-0", "-c", "database", "--", "getent", "hosts",
                        f"database-0.database-headless.{nb.namespace}.svc.cluster.local", show=False, check=False)
    resolved = answer.stdout.split()[0] if answer.ok and answer.stdout.split() else None
    if resolved != pod.status.pod_ip:
        return checks.fail(f"database-0.database-headless resolves to {resolved or 'nothing'}, the Pod's IP is {pod.status.pod_ip}")
    return checks.ok("database-0.database-headless resolves to the Pod's IP", {f"Pod/{nb.namespace}/database-0": pod.metadata.uid})


# %% [markdown]
# ## Exercise: write a row, read it back
#
# Log in as the application user and store one row in a table `notes` of the schema `lab`:
#
# ```sql
# CREATE TABLE IF NOT EXISTS notes (id INT PRIMARY KEY, author VARCHAR(64), note VARCHAR(255));
# REPLACE INTO notes (id, author, note) VALUES (1, '<you>', '<anything>');
# ```
#
# The password is in the Secret. Never print it and never put it on a command line (other users of
# the machine can see command lines). `nb.mysql(SQL)` does it like this shell would:
#
# ```bash
# PW=$(kubectl -n k8s-assignment get secret database-credentials -o jsonpath='{.data.password}' | base64 -d)
# { printf '%s\n' "$PW"; echo "SELECT 1;"; } | kubectl -n k8s-assignment exec -i database-0 -c database -- \
#     sh -c 'IFS= read -r MYSQL_PWD && export MYSQL_PWD && exec mysql --batch --user=lab lab'
# ```
#
# The shell in the Pod reads the first line of its input into `MYSQL_PWD` (the variable the mysql
# client takes a password from); the rest of the input is the SQL.

# %%
# NBVAL_CHECK_OUTPUT
# BEGIN SOLUTION NO PROMPT
nb.mysql("""
    CREATE TABLE IF NOT EXISTS notes (id INT PRIMARY KEY, author VARCHAR(64), note VARCHAR(255));
    REPLACE INTO notes (id, author, note) VALUES (1, 'reference solution', 'hello from notebook 03');
""")
# END SOLUTION
# BEGIN PROMPT
# TODO: nb.mysql("...") with the CREATE TABLE and REPLACE statements above, your name as author
# END PROMPT

# %% [markdown]
# Read it back:

# %%
# NBVAL_CHECK_OUTPUT
nb.mysql("SELECT id, author, note FROM notes WHERE id = 1;", check=False);

# %% [markdown]
# **Checkpoint.** The table `lab.notes` has the row with `id = 1`.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("db.row-written", points=2,
                   hint="run the CREATE TABLE and REPLACE statements with nb.mysql(...) in the exercise cell")
def db_row_written():
    answer = nb.mysql("SELECT COUNT(*) FROM notes WHERE id = 1;", show=False, check=False)
    if not answer.ok:
        return checks.fail(f"the query failed: {answer.output.strip().splitlines()[-1] if answer.output.strip() else answer.returncode}")
    lines = answer.stdout.split()
    if lines[-1:] != ["1"]:
        return checks.fail("table lab.notes has no row with id 1")
    return checks.ok("table lab.notes has the row with id 1")


# %% [markdown]
# ## Step 7: kill the Pod, keep the data
#
# Delete the Pod. The StatefulSet notices that `database-0` is missing and makes a new one, with
# the **same name** and the **same claim**, so the new server opens the same files.
#
# ```bash
# kubectl -n k8s-assignment delete pod database-0
# kubectl -n k8s-assignment rollout status statefulset/database
# ```

# %%
# NBVAL_IGNORE_OUTPUT
old_uid = nb.read("Pod", "database-0").metadata.uid
nb.kubectl("delete", "pod", "database-0", "--wait=true")


def replaced_and_ready():
    pod = nb.read("Pod", "database-0")
    if pod is None or pod.metadata.uid == old_uid:
        return checks.fail("waiting for the StatefulSet to create a new database-0")
    return checks.statefulset_ready("database", replicas=1)


nb.wait_for(replaced_and_ready, "the new database-0", timeout=600,
            hint="kubectl -n k8s-assignment describe pod database-0");

# %% [markdown]
# The same query on the new Pod:

# %%
# NBVAL_CHECK_OUTPUT
nb.mysql("SELECT id, author, note FROM notes WHERE id = 1;", check=False);

# %% [markdown]
# **Checkpoint.** `database-0` is a new Pod (a new UID), ready, and still bound to the same claim.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("db.survives-restart", points=2,
                   hint="kubectl -n k8s-assignment get pod database-0 -o wide; kubectl -n k8s-assignment describe statefulset database")
def db_survives_restart():
    pod = nb.read("Pod", "database-0")
    if pod is None:
        return checks.fail("Pod database-0 does not exist")
    if pod.metadata.uid == old_uid:
        return checks.fail("database-0 is still the old Pod: delete it (step 7) and let the StatefulSet replace it")
    claims = [v.persistent_volume_claim.claim_name for v in pod.spec.volumes if v.persistent_volume_claim]
    if claims != ["data-database-0"]:
        return checks.fail(f"the new database-0 mounts claims {claims}, expected data-database-0")
    ready = checks.statefulset_ready("database", replicas=1)
    if not ready.passed:
        return ready
    return checks.ok("a new database-0 runs on the same claim data-database-0", ready.uids)


# %% [markdown]
# ## Summary
#
# - Credentials live in the Secret `database-credentials`, settings in the ConfigMap
#   `database-config`; both are mounted as files.
# - `database` (ClusterIP) is for clients, `database-headless` gives the StatefulSet's Pod the
#   stable name `database-0.database-headless`.
# - The StatefulSet's Pod `database-0` always gets the claim `data-database-0`, bound to the
#   volume of notebook 02: deleting the Pod loses nothing.
# - We waited on conditions (ready replicas, a new UID), never on the clock.

# %%
# NBVAL_CHECK_OUTPUT
checks.summary()

# %% [markdown]
# ## Clean-up
#
# Keep the database: notebook 07 hands it over to Helm and notebook 08 backs it up. To remove it
# later (do **not** run it now):
#
# ```bash
# kubectl delete -f manifests/02-database/            # the claim stays: StatefulSets never delete claims
# kubectl -n k8s-assignment delete pvc data-database-0   # the volume becomes Released; Retain keeps the files
# ```
#
# Next: **04-web-server**.
