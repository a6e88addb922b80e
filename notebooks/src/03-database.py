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
kubeconfig = ""  # "": $KUBECONFIG or ~/.kube/config; in a classroom, the file your instructor gave you

# %%
# NBVAL_CHECK_OUTPUT
from lab import checks, notebook
from lab.errors import LabError

nb = notebook.start("03-database.ipynb", cluster=cluster, namespace=namespace, mode=mode, solutions=solutions,
                    kubeconfig=kubeconfig, requires=("01", "02"))

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
# ## Step 3: two Services (you write one)
#
# Both select the Pods labelled `app.kubernetes.io/component=database` (and name/instance
# `k8s-lab`). `database-headless` has no virtual IP and gives the StatefulSet's Pods their DNS
# names; it also lists Pods that are not ready yet (`publishNotReadyAddresses`), so that the name
# resolves while the database starts. It is written for you below.
#
# **Your part:** complete the Service `database`, the one clients use. It needs a **virtual IP
# inside the cluster only** (its `type`) and listens on **MySQL's port 3306**, forwarding to the
# container port named `mysql` (`ports`: `name`, `port`, `targetPort`, `protocol`).

# %%
# NBVAL_IGNORE_OUTPUT
%%writefile work/database-service.yaml
apiVersion: v1
kind: Service
metadata:
  name: database-headless
  namespace: k8s-assignment
  labels:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/part-of: k8s-lab
    app.kubernetes.io/component: database
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/component: database
  ports:
    - name: mysql
      port: 3306
      targetPort: mysql
      protocol: TCP
---
apiVersion: v1
kind: Service
metadata:
  name: database
  namespace: k8s-assignment
  labels:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/part-of: k8s-lab
    app.kubernetes.io/component: database
spec:
  type: ClusterIP  # SOLUTION
  selector:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/component: database
# BEGIN SOLUTION
  ports:
    - name: mysql
      port: 3306
      targetPort: mysql
      protocol: TCP
# END SOLUTION
# BEGIN PROMPT
  # TODO: ports
# END PROMPT

# %%
# NBVAL_IGNORE_OUTPUT
from lab import tasks

tasks.apply(nb, "work/database-service.yaml", "Service")
nb.kubectl("get", "services", "-l", "app.kubernetes.io/component=database", "-o", "wide");

# %% [markdown]
# **Checkpoint.** The Service `database` is yours: a cluster IP, port 3306, the database Pods.

# %%
# NBVAL_CHECK_OUTPUT
checks.check("build.db-service")

# %% [markdown]
# ## Step 4: the StatefulSet (you write its claim)
#
# Read the manifest below: the init container hands the data directory to the database user, the
# `*_FILE` variables point at the mounted Secret, the probes log in with `mysqladmin ping`.
#
# **Your part:** the `volumeClaimTemplates`. The containers mount a volume named `data`, which is
# in no `volumes:` list: the StatefulSet makes it from a claim template, one claim per Pod
# (`data-database-0`). Write one template named like that volume, asking for the class, access
# mode and size of the PersistentVolume you wrote in notebook 02, so that the claim binds to it.
#
# Then we wait on the condition "1 of 1 replicas ready", print what changes while we wait, and give
# up with the reason after ten minutes. The first start initializes the database and takes a
# minute; later starts reuse the files on the volume.
#
# ```bash
# kubectl apply -f work/database.yaml
# kubectl -n k8s-assignment rollout status statefulset/database --timeout=10m
# ```

# %%
# NBVAL_IGNORE_OUTPUT
%%writefile work/database.yaml
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: database
  namespace: k8s-assignment
  labels:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/part-of: k8s-lab
    app.kubernetes.io/component: database
spec:
  replicas: 1
  serviceName: database-headless
  podManagementPolicy: OrderedReady
  updateStrategy:
    type: RollingUpdate
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app.kubernetes.io/name: k8s-lab
      app.kubernetes.io/instance: k8s-lab
      app.kubernetes.io/component: database
  template:
    metadata:
      labels:
        app.kubernetes.io/name: k8s-lab
        app.kubernetes.io/instance: k8s-lab
        app.kubernetes.io/part-of: k8s-lab
        app.kubernetes.io/component: database
      annotations:
        checksum/config: 8bac56615f432c4f56b63b8f5de13d3e5aee550d2dde59a4eafae36e089faa71
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 60
      securityContext:
        runAsNonRoot: true
        runAsUser: 999
        runAsGroup: 999
        fsGroup: 999
        fsGroupChangePolicy: OnRootMismatch
        seccompProfile:
          type: RuntimeDefault
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  - key: k8s-lab/database
                    operator: In
                    values:
                      - "true"
      containers:
        - name: database
          image: k8s-lab/mariadb:lab
          imagePullPolicy: IfNotPresent
          env:
            - name: MYSQL_ROOT_PASSWORD_FILE
              value: /etc/k8s-lab/database-credentials/root-password
            - name: MYSQL_USER_FILE
              value: /etc/k8s-lab/database-credentials/username
            - name: MYSQL_PASSWORD_FILE
              value: /etc/k8s-lab/database-credentials/password
            - name: MYSQL_DATABASE
              value: lab
            - name: MYSQL_ROOT_HOST
              value: localhost
          ports:
            - name: mysql
              containerPort: 3306
              protocol: TCP
          startupProbe:
            exec:
              command:
                - mysqladmin
                - ping
                - --protocol=tcp
                - --host=127.0.0.1
                - --connect-timeout=3
            periodSeconds: 5
            timeoutSeconds: 5
            failureThreshold: 60
          readinessProbe:
            exec:
              command:
                - sh
                - -c
                - MYSQL_PWD="$(cat /etc/k8s-lab/database-credentials/root-password)" exec mysql --user=root --protocol=socket --batch --execute="SELECT 1" --connect-timeout=3
            periodSeconds: 5
            timeoutSeconds: 5
            failureThreshold: 3
          livenessProbe:
            exec:
              command:
                - mysqladmin
                - ping
                - --protocol=socket
                - --connect-timeout=3
            periodSeconds: 15
            timeoutSeconds: 5
            failureThreshold: 4
          resources:
            requests:
              cpu: 100m
              memory: 256Mi
            limits:
              cpu: "1"
              memory: 1Gi
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop:
                - ALL
          volumeMounts:
            - name: data
              mountPath: /var/lib/mysql
            - name: run
              mountPath: /run/mysqld
            - name: tmp
              mountPath: /tmp
            - name: init
              mountPath: /docker-entrypoint-initdb.d
              readOnly: true
            - name: config
              mountPath: /etc/mysql/conf.d
              readOnly: true
            - name: credentials
              mountPath: /etc/k8s-lab/database-credentials
              readOnly: true
      volumes:
        - name: config
          configMap:
            name: database-config
            items:
              - key: my.cnf
                path: my.cnf
        - name: init
          configMap:
            name: database-config
            items:
              - key: 10-accounts.sh
                path: 10-accounts.sh
        - name: run
          emptyDir:
            sizeLimit: 16Mi
        - name: tmp
          emptyDir:
            sizeLimit: 256Mi
        - name: credentials
          secret:
            secretName: database-credentials
            defaultMode: 0440
  volumeClaimTemplates:
# BEGIN SOLUTION
    - metadata:
        name: data
        labels:
          app.kubernetes.io/name: k8s-lab
          app.kubernetes.io/instance: k8s-lab
          app.kubernetes.io/part-of: k8s-lab
          app.kubernetes.io/component: database
      spec:
        storageClassName: manual
        accessModes:
          - ReadWriteOnce
        resources:
          requests:
            storage: 1Gi
# END SOLUTION
# BEGIN PROMPT
    # TODO: the claim template (see the task above)
# END PROMPT

# %%
# NBVAL_IGNORE_OUTPUT
tasks.apply(nb, "work/database.yaml", "StatefulSet")
tasks.wait_built(nb, "database", lambda: checks.statefulset_ready("database", replicas=1), "StatefulSet database",
                 timeout=600)
nb.pods("app.kubernetes.io/component=database")

# %% [markdown]
# **Checkpoint.** Your claim template matches the volume of notebook 02.

# %%
# NBVAL_CHECK_OUTPUT
checks.check("build.db-claims")

# %% [markdown]
# **Checkpoint.** The StatefulSet's one replica is ready.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "db.statefulset-ready", points=2,
    hint="kubectl -n k8s-assignment describe statefulset database; kubectl -n k8s-assignment describe pod database-0",
    verify=lambda: tasks.missing(nb, "database") or checks.statefulset_ready("database", replicas=1),
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
nb.kubectl("get", "persistentvolume", nb.pv_name, namespaced=False, check=False)
print(f"\nfiles on this machine: {nb.pv_host_path}")
print(sorted(p.name for p in nb.pv_host_path.iterdir())[:12] if nb.pv_host_path.exists() else "(not readable here)")

# %% [markdown]
# **Checkpoint.** The claim is bound to the lab's volume.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("db.claim-bound", points=1,
                   hint="kubectl -n k8s-assignment describe pvc data-database-0 (its events say why it waits); is the PV from notebook 02 there?")
def db_claim_bound():
    if blocked := tasks.missing(nb, "pv", "database"):
        return blocked
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
if tasks.have(nb, "database"):
    nb.kubectl("exec", "database-0", "-c", "database", "--", "getent", "hosts",
               f"database-0.database-headless.{nb.namespace}.svc.cluster.local")
    nb.kubectl("exec", "database-0", "-c", "database", "--", "getent", "hosts", f"database.{nb.namespace}.svc.cluster.local")

# %% [markdown]
# The first name resolves to the Pod's own IP, the second to the Service's virtual IP.
#
# **Checkpoint.** `database-0.database-headless` resolves to the Pod's IP.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("db.stable-name", points=1,
                   hint="the StatefulSet's serviceName must be database-headless; kubectl -n k8s-assignment get endpointslices")
def db_stable_name():
    if blocked := tasks.missing(nb, "database"):
        return blocked
    pod = nb.read("Pod", "database-0")
    if pod is None or not pod.status.pod_ip:
        return checks.fail("Pod database-0 has no IP yet")
    answer = nb.exec_in_pod("database-0", "getent", "hosts", f"database-0.database-headless.{nb.namespace}.svc.cluster.local",
                            container="database")
    resolved = answer.stdout.split()[0] if answer.ok and answer.stdout.split() else None
    if resolved != pod.status.pod_ip:
        return checks.fail(f"database-0.database-headless resolves to {resolved or 'nothing'}, the Pod's IP is {pod.status.pod_ip}")
    return checks.ok("database-0.database-headless resolves to the Pod's IP", {f"Pod/{nb.namespace}/database-0": pod.metadata.uid})


# %% [markdown]
# ## Exercise: write a row, read it back
#
# Log in as the application user and store one row in a table `notes` of the schema `lab`, with
# your name as `author` and, as `note`, the text in `my_note` (the next cell makes it up for this run,
# so that a row left by an earlier run does not count):
#
# ```sql
# CREATE TABLE IF NOT EXISTS notes (id INT PRIMARY KEY, author VARCHAR(64), note VARCHAR(255));
# REPLACE INTO notes (id, author, note) VALUES (1, '<you>', '<my_note>');
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
# NBVAL_IGNORE_OUTPUT
import secrets

my_note = f"hello from notebook 03, run {secrets.token_hex(4)}"
print("my_note =", my_note)

# %%
# NBVAL_IGNORE_OUTPUT
if tasks.have(nb, "database"):
    # BEGIN SOLUTION NO PROMPT
    nb.mysql(f"""
        CREATE TABLE IF NOT EXISTS notes (id INT PRIMARY KEY, author VARCHAR(64), note VARCHAR(255));
        REPLACE INTO notes (id, author, note) VALUES (1, 'reference solution', '{my_note}');
    """)
    # END SOLUTION
    # BEGIN PROMPT
    # TODO: nb.mysql(f"...") with the CREATE TABLE and REPLACE statements above, your name as author
    pass
    # END PROMPT

# %% [markdown]
# Read it back:

# %%
# NBVAL_IGNORE_OUTPUT
if tasks.have(nb, "database"):
    nb.mysql("SELECT id, author, note FROM notes WHERE id = 1;", check=False)

# %% [markdown]
# **Checkpoint.** The table `lab.notes` has the row with `id = 1`, written in this run.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("db.row-written", points=2,
                   hint="run the CREATE TABLE and REPLACE statements with nb.mysql(...) in the exercise cell")
def db_row_written():
    if blocked := tasks.missing(nb, "database"):
        return blocked
    try:
        notes = nb.query("SELECT note FROM notes WHERE id = 1;")
    except LabError as error:
        return checks.fail(f"the query failed: {error.message}")
    if not notes:
        return checks.fail("table lab.notes has no row with id 1")
    if notes[0][0] != my_note:
        return checks.fail("the row with id 1 does not carry this run's my_note: it is from another run, or mistyped")
    return checks.ok("table lab.notes has the row with id 1, written in this run")


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
old_uid = None
if tasks.have(nb, "database"):
    old_uid = nb.read("Pod", "database-0").metadata.uid
    nb.kubectl("delete", "pod", "database-0", "--wait=true")


def replaced_and_ready():
    pod = nb.read("Pod", "database-0")
    if pod is None or pod.metadata.uid == old_uid:
        return checks.fail("waiting for the StatefulSet to create a new database-0")
    return checks.statefulset_ready("database", replicas=1)


if old_uid:
    nb.wait_for(replaced_and_ready, "the new database-0", timeout=600,
                hint="kubectl -n k8s-assignment describe pod database-0")

# %% [markdown]
# The same query on the new Pod:

# %%
# NBVAL_IGNORE_OUTPUT
if tasks.have(nb, "database"):
    nb.mysql("SELECT id, author, note FROM notes WHERE id = 1;", check=False)

# %% [markdown]
# **Checkpoint.** `database-0` is a new Pod (a new UID), ready, and still bound to the same claim.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("db.survives-restart", points=2,
                   hint="kubectl -n k8s-assignment get pod database-0 -o wide; kubectl -n k8s-assignment describe statefulset database")
def db_survives_restart():
    if blocked := tasks.missing(nb, "database"):
        return blocked
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
# The settings are live too: the server read `my.cnf` from the ConfigMap when it started.
#
# ```bash
# kubectl -n k8s-assignment exec -i database-0 -c database -- mysql ... -e "SHOW VARIABLES LIKE 'max_connections'"
# ```
#
# **Checkpoint.** The running server's `max_connections` is the ConfigMap's.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("db.config-live", points=1,
                   hint="the server reads my.cnf only when it starts: kubectl -n k8s-assignment rollout restart statefulset/database")
def db_config_live():
    import re

    if blocked := tasks.missing(nb, "database"):
        return blocked
    wanted = re.search(r"^\s*max_connections\s*=\s*(\d+)", nb.read("ConfigMap", "database-config").data["my.cnf"], re.MULTILINE)
    try:
        live = next((value for _, value in nb.query("SHOW VARIABLES LIKE 'max_connections';")), None)
    except LabError:
        live = None
    if wanted is None:
        return checks.fail("my.cnf in ConfigMap database-config sets no max_connections")
    if live != wanted.group(1):
        return checks.fail(f"the server runs with max_connections {live}, the ConfigMap says {wanted.group(1)}")
    return checks.ok("the server runs with the ConfigMap's max_connections")


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
