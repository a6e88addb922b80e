# Source of notebooks/04-web-server.ipynb (build with: python notebooks/src/build.py)

# %% [markdown]
# # 04 · A web server in three copies: Deployment, init container, NodePort
#
# The web tier is *stateless*: any copy can answer any request, so we run three of them with a
# **Deployment** and put a **Service** in front that spreads the requests. An **init container**
# prepares each copy's page before nginx starts, and a **NodePort** makes the Service reachable from
# your machine at <http://127.0.0.1:30080/>. At the end we send a few dozen requests and plot which
# Pod answered each.

# %% [markdown]
# ## Learning objectives
#
# After this notebook you can
#
# - configure nginx from a ConfigMap mounted as a file,
# - run a Deployment with 3 replicas and explain how it differs from the StatefulSet of notebook 03,
# - use an init container and the downward API to give each Pod its own content,
# - expose a Deployment with a NodePort Service and follow a request: host port -> node port ->
#   Service -> one of the Pods (its *endpoints*),
# - measure how the Service spreads requests over the Pods, and plot it.

# %% [markdown]
# ## Concepts
#
# - A **Deployment** keeps N interchangeable Pods running (through a ReplicaSet). Its Pods get random
#   names (`web-<template hash>-<random>`) and no storage of their own: unlike a StatefulSet, any
#   Pod may be replaced by any other. A change to the Pod template rolls out gradually
#   (`maxSurge: 1, maxUnavailable: 0`: one new Pod first, then one old Pod goes, and so on).
# - **Init containers** run to completion, one after the other, before the Pod's main containers
#   start. Here `render-page` (same image as nginx) writes the whole page into an `emptyDir` volume;
#   the nginx container then only serves it, as files.
# - The **downward API** hands a Pod facts about itself (its name, IP, node) as environment
#   variables or files, without asking the API server.
# - A **Service** of type **NodePort** opens the same port (30080) on every node; kind maps the
#   control-plane node's port 30080 to `127.0.0.1:30080` on your machine. kube-proxy picks one ready
#   endpoint (Pod) per *connection*, at random: many short connections spread evenly, one
#   keep-alive connection sticks to one Pod.

# %% tags=["parameters"]
cluster = "k8s-lab"  # the kind cluster: kubeconfig context kind-<cluster>
namespace = "k8s-assignment"  # where the lab's objects go
mode = "auto"  # images: "auto" | "online" | "offline"
solutions = True  # True runs the reference solutions; False leaves the exercises to you
kubeconfig = ""  # "": $KUBECONFIG or ~/.kube/config; in a classroom, the file your instructor gave you

# %%
# NBVAL_CHECK_OUTPUT
from lab import checks, notebook

nb = notebook.start("04-web-server.ipynb", cluster=cluster, namespace=namespace, mode=mode, solutions=solutions,
                    kubeconfig=kubeconfig, requires=("01", "02"))

# %% [markdown]
# ## Step 1: the nginx configuration (ConfigMap)
#
# ```bash
# kubectl apply -f manifests/03-web/configmap.yaml
# ```
#
# The ConfigMap `web-nginx` holds one file, `default.conf`, which replaces nginx's default server.
# Note `/healthz` (for the probes) and the header `X-Served-By`. nginx changes nothing in the page:
# it serves the files the init container wrote, every field included.

# %%
# NBVAL_IGNORE_OUTPUT
nb.apply("03-web/configmap.yaml");

# %%
# NBVAL_CHECK_OUTPUT
print(nb.read("ConfigMap", "web-nginx").data["default.conf"])

# %% [markdown]
# **Checkpoint.** `web-nginx` has `default.conf` with the health endpoint.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "web.config", points=1,
    hint="kubectl apply -f manifests/03-web/configmap.yaml; kubectl -n k8s-assignment get configmap web-nginx -o yaml",
    verify=lambda: checks.configmap_has_key("web-nginx", "default.conf", contains="location = /healthz"),
)

# %% [markdown]
# ## Step 2: the Deployment (you write its init container's input)
#
# Three nginx Pods serve the page. Before nginx starts, the init container `render-page` (same
# image) writes `index.html` and `whoami.json` into the `emptyDir` volume `html`, which nginx
# mounts read-only. The page shows the Pod's **own** name, IP and node, and the **serving host**:
# the Pod whose nginx serves the page. `render-page` reads them from four environment variables,
# `POD_NAME`, `POD_IP`, `NODE_NAME` and `SERVING_HOST`, and writes `unknown` for any it lacks.
#
# **Your part:** a container does not know these facts; the kubelet can hand them over through the
# **downward API**. Give `render-page` the first three variables, each `valueFrom.fieldRef` with the
# `fieldPath` of the Pod's name, its IP and the name of the node it runs on
# (`kubectl explain pod.spec.containers.env.valueFrom.fieldRef` lists the paths). Then complete
# `SERVING_HOST`'s `valueFrom`: which Pod serves this page? The `emptyDir` belongs to one Pod, so
# every request for this page is answered by the Pod whose init container wrote it. `POD_NAMESPACE`
# below shows the shape.
#
# ```bash
# kubectl apply -f work/web.yaml
# kubectl -n k8s-assignment rollout status deployment/web --timeout=5m
# ```

# %%
# NBVAL_IGNORE_OUTPUT
%%writefile work/web.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: k8s-assignment
  labels:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/part-of: k8s-lab
    app.kubernetes.io/component: web
spec:
  replicas: 3
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  selector:
    matchLabels:
      app.kubernetes.io/name: k8s-lab
      app.kubernetes.io/instance: k8s-lab
      app.kubernetes.io/component: web
  template:
    metadata:
      labels:
        app.kubernetes.io/name: k8s-lab
        app.kubernetes.io/instance: k8s-lab
        app.kubernetes.io/part-of: k8s-lab
        app.kubernetes.io/component: web
      annotations:
        checksum/config: c2692bbfe6c4b761bf8a4b689ddaef72c866a1db15149bc9ee2435644399280f
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 30
      securityContext:
        runAsNonRoot: true
        runAsUser: 101
        runAsGroup: 101
        seccompProfile:
          type: RuntimeDefault
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              app.kubernetes.io/name: k8s-lab
              app.kubernetes.io/instance: k8s-lab
              app.kubernetes.io/component: web
          matchLabelKeys:
            - pod-template-hash
      initContainers:
        - name: render-page
          image: k8s-lab/web:1
          imagePullPolicy: IfNotPresent
          command: [render-page]
          env:
# BEGIN SOLUTION
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: POD_IP
              valueFrom:
                fieldRef:
                  fieldPath: status.podIP
            - name: NODE_NAME
              valueFrom:
                fieldRef:
                  fieldPath: spec.nodeName
# END SOLUTION
# BEGIN PROMPT
            # TODO: POD_NAME, POD_IP and NODE_NAME from the downward API
# END PROMPT
            - name: SERVING_HOST
              valueFrom: {fieldRef: {fieldPath: metadata.name}}  # SOLUTION
            - name: POD_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            - name: OUTPUT_DIR
              value: /usr/share/nginx/html
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop:
                - ALL
          resources:
            requests:
              cpu: 10m
              memory: 16Mi
            limits:
              cpu: 100m
              memory: 32Mi
          volumeMounts:
            - name: html
              mountPath: /usr/share/nginx/html
      containers:
        - name: nginx
          image: k8s-lab/web:1
          imagePullPolicy: IfNotPresent
          ports:
            - name: http
              containerPort: 8080
              protocol: TCP
          readinessProbe:
            httpGet:
              path: /
              port: http
            periodSeconds: 2
            timeoutSeconds: 2
            failureThreshold: 2
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            initialDelaySeconds: 5
            periodSeconds: 15
            timeoutSeconds: 2
            failureThreshold: 3
          lifecycle:
            preStop:
              sleep:
                seconds: 5
          resources:
            requests:
              cpu: 50m
              memory: 32Mi
            limits:
              cpu: 200m
              memory: 128Mi
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop:
                - ALL
          volumeMounts:
            - name: html
              mountPath: /usr/share/nginx/html
              readOnly: true
            - name: nginx-config
              mountPath: /etc/nginx/conf.d
              readOnly: true
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: html
          emptyDir:
            sizeLimit: 16Mi
        - name: nginx-config
          configMap:
            name: web-nginx
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi

# %%
# NBVAL_IGNORE_OUTPUT
from lab import tasks

tasks.apply(nb, "work/web.yaml", "Deployment")
tasks.wait_built(nb, "web", lambda: checks.deployment_ready("web", replicas=3), "Deployment web", timeout=300)
nb.pods("app.kubernetes.io/component=web")

# %% [markdown]
# **Checkpoint.** `render-page` gets the Pod's name, IP and node from the downward API, and the
# page it wrote in every web Pod names that Pod as the serving host.

# %%
# NBVAL_CHECK_OUTPUT
checks.check("build.web-init")

# %% [markdown]
# **Checkpoint.** Three replicas are ready and up to date.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "web.deployment-ready", points=2,
    hint="kubectl -n k8s-assignment describe deployment web; kubectl -n k8s-assignment describe pod <a web Pod>",
    verify=lambda: tasks.missing(nb, "web") or checks.deployment_ready("web", replicas=3),
)

# %% [markdown]
# ## Step 3: what the init container did
#
# Each Pod's status remembers how its init container ended. `Completed` with exit code 0 means the
# page was written; only then did nginx start.
#
# ```bash
# kubectl -n k8s-assignment get pods -l app.kubernetes.io/component=web \
#   -o custom-columns='POD:.metadata.name,INIT:.status.initContainerStatuses[0].state.terminated.reason'
# ```

# %%
# NBVAL_IGNORE_OUTPUT
import pandas as pd

from lab.cluster import kube


def web_pods():
    return [p for p in kube.core(nb.target).list_namespaced_pod(
        nb.namespace, label_selector="app.kubernetes.io/component=web", _request_timeout=10).items
        if p.metadata.deletion_timestamp is None]


rows = []
for pod in web_pods():
    init = (pod.status.init_container_statuses or [None])[0]
    done = init.state.terminated if init and init.state else None
    rows.append({"pod": pod.metadata.name, "node": pod.spec.node_name, "pod IP": pod.status.pod_ip,
                 "init container": init.name if init else None,
                 "ended": done.reason if done else None, "exit code": done.exit_code if done else None})
pd.DataFrame(rows)

# %% [markdown]
# **Checkpoint.** `render-page` completed (exit code 0) in every web Pod.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("web.init-container", points=1,
                   hint="kubectl -n k8s-assignment logs <web Pod> -c render-page shows what render-page said")
def web_init_container():
    if blocked := tasks.missing(nb, "web"):
        return blocked
    pods = web_pods()
    bad = []
    for pod in pods:
        init = next((s for s in pod.status.init_container_statuses or [] if s.name == "render-page"), None)
        done = init.state.terminated if init and init.state else None
        if done is None or done.exit_code != 0:
            bad.append(pod.metadata.name)
    if not pods:
        return checks.fail("no web Pods")
    if bad:
        return checks.fail(f"render-page did not complete in: {', '.join(bad)}")
    return checks.ok(f"render-page completed in all {len(pods)} web Pods",
                     {f"Pod/{nb.namespace}/{p.metadata.name}": p.metadata.uid for p in pods})


# %% [markdown]
# ## Step 4: the Service on port 30080 (you write it)
#
# The kind config of notebook 01 maps port **30080** of the control-plane node to `127.0.0.1:30080`
# on this machine. Complete the Service `web` so that it is reachable there: a `type` that opens
# the same port on every node, and that port as the `nodePort` of the HTTP port 80.
#
# ```bash
# kubectl apply -f work/web-service.yaml
# curl http://127.0.0.1:30080/whoami.json
# ```

# %%
# NBVAL_IGNORE_OUTPUT
%%writefile work/web-service.yaml
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: k8s-assignment
  labels:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/part-of: k8s-lab
    app.kubernetes.io/component: web
spec:
  type: NodePort  # SOLUTION
  selector:
    app.kubernetes.io/name: k8s-lab
    app.kubernetes.io/instance: k8s-lab
    app.kubernetes.io/component: web
  ports:
    - name: http
      port: 80
      targetPort: http
      nodePort: 30080  # SOLUTION
      protocol: TCP

# %%
# NBVAL_IGNORE_OUTPUT
tasks.apply(nb, "work/web-service.yaml", "Service")
nb.kubectl("get", "service", "web", "-o", "wide", check=False);

# %% [markdown]
# **Checkpoint.** Your Service exposes port 80 inside the cluster and the node port outside.

# %%
# NBVAL_CHECK_OUTPUT
checks.check("build.web-service")


# %% [markdown]
# A new Service takes a moment until kube-proxy has programmed every node (until then the port
# resets connections), so we wait until it answers, then look at one answer. Every field of it,
# `serving_host` included, was written by `render-page` before nginx started.

# %%
# NBVAL_IGNORE_OUTPUT
import json

url = None
if tasks.have(nb, "web", "web-service"):
    url = nb.web_url("/whoami.json")
    first = nb.wait_http(url, "Service web on its node port")
    print(json.dumps(first, indent=2))

# %% [markdown]
# ## Exercise: the Service's endpoints
#
# A Service does not know Pods by name: its *selector* matches labels, and the control plane keeps
# the list of matching **ready** Pods' addresses in EndpointSlices.
#
# ```bash
# kubectl -n k8s-assignment get endpointslices -l kubernetes.io/service-name=web -o wide
# ```
#
# Set `endpoint_ips` to the **sorted list** of the IP addresses behind Service `web`.
# (`kube.api_client(nb.target)` with `kubernetes.client.DiscoveryV1Api` lists EndpointSlices; or
# run the command above through `nb.kubectl(...)` and read its output.)

# %%
# NBVAL_IGNORE_OUTPUT
endpoint_ips = []
# BEGIN SOLUTION NO PROMPT
from kubernetes import client

slices = client.DiscoveryV1Api(kube.api_client(nb.target)).list_namespaced_endpoint_slice(
    nb.namespace, label_selector="kubernetes.io/service-name=web", _request_timeout=10).items
endpoint_ips = sorted(address for s in slices for ep in s.endpoints or [] for address in ep.addresses
                      if ep.conditions is None or ep.conditions.ready is not False)
# END SOLUTION
# BEGIN PROMPT
# TODO: set endpoint_ips to the sorted list of ready endpoint addresses of Service web
# END PROMPT
print(endpoint_ips)

# %% [markdown]
# **Checkpoint.** Your list is exactly the ready web Pods' IPs.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("web.endpoints", points=2,
                   hint="the endpoints are the IPs of the ready Pods whose labels match the Service's selector: kubectl -n k8s-assignment get pods -o wide")
def web_endpoints():
    if blocked := tasks.missing(nb, "web", "web-service"):
        return blocked
    served = checks.service_has_endpoints("web", minimum=3)
    if not served.passed:
        return served
    ready_ips = sorted(p.status.pod_ip for p in web_pods()
                       if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []))
    if list(endpoint_ips) != ready_ips:
        return checks.fail(f"endpoint_ips is {list(endpoint_ips)}; the ready web Pods have {ready_ips}", served.uids)
    return checks.ok(f"Service web sends traffic to the {len(ready_ips)} ready web Pods", served.uids)


# %% [markdown]
# ## Step 5: who answers? The spread of requests
#
# Send 60 requests, each on a new connection (as `curl` in a loop would), and count which Pod
# answered (`pod_name` in `whoami.json`).
#
# ```bash
# for i in $(seq 60); do curl -s http://127.0.0.1:30080/whoami.json | jq -r .pod_name; done | sort | uniq -c
# ```

# %%
# NBVAL_IGNORE_OUTPUT
REQUESTS = 60
answers = []
for i in range(REQUESTS if url else 0):
    answers.append(nb.get_json(url))  # a new TCP connection each time
requests_df = pd.DataFrame(answers, columns=["pod_name", "pod_ip", "node_name", "serving_host"])
counts = requests_df.groupby("pod_name").size().rename("requests").sort_index()
counts.to_frame()

# %%
# NBVAL_IGNORE_OUTPUT
import matplotlib.pyplot as plt

if len(counts):
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bars = ax.bar(counts.index, counts.values, color="#326ce5")
    ax.bar_label(bars)
    ax.axhline(REQUESTS / len(counts), color="grey", linestyle="--", label=f"even share ({REQUESTS / len(counts):.0f})")
    ax.set_xlabel("web Pod that answered")
    ax.set_ylabel("requests")
    ax.set_title(f"{REQUESTS} requests to {url}")
    ax.set_ylim(0, max(counts.max(), REQUESTS / len(counts)) * 1.3)
    ax.legend(loc="upper right")
    plt.xticks(rotation=15)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# The bars are not equal: kube-proxy chooses at random for every new connection, so 60 requests
# land roughly, not exactly, 20 per Pod. Run the two cells again and the picture changes.
#
# **Checkpoint.** Every ready web Pod answered at least one request.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("web.load-spread", points=2,
                   hint="run the request cell again; a Pod that never answers may not be ready: kubectl -n k8s-assignment get endpointslices")
def web_load_spread():
    if blocked := tasks.missing(nb, "web", "web-service"):
        return blocked
    ready = {p.metadata.name: p.metadata.uid for p in web_pods()
             if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])}
    answered = set(requests_df["pod_name"]) if len(requests_df) else set()
    silent = sorted(set(ready) - answered)
    if not ready:
        return checks.fail("no ready web Pods")
    if silent:
        return checks.fail(f"these ready Pods answered none of the {len(requests_df)} requests: {', '.join(silent)}")
    return checks.ok(f"all {len(ready)} web Pods answered ({len(requests_df)} requests)",
                     {f"Pod/{nb.namespace}/{n}": u for n, u in ready.items()})


# %% [markdown]
# Each answer names the Pod that wrote the page and the Pod that serves it (the same one: a Pod
# serves its own `emptyDir`). The API knows the truth about every Pod: compare.
#
# **Checkpoint.** Every answer's `pod_name`, `pod_ip`, `node_name` and `serving_host` are those of
# the Pod the API knows by that name.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("web.pages-match-api", points=2,
                   hint="render-page writes what its environment says: kubectl -n k8s-assignment get pods -o wide, then compare with curl http://127.0.0.1:30080/whoami.json")
def web_pages_match_api():
    if blocked := tasks.missing(nb, "web", "web-service"):
        return blocked
    pods = {p.metadata.name: p for p in web_pods()}
    wrong = set()
    for answer in requests_df.drop_duplicates().itertuples():
        pod = pods.get(answer.pod_name)
        facts = (pod.metadata.name, pod.status.pod_ip, pod.spec.node_name, pod.metadata.name) if pod else None
        if facts != (answer.pod_name, answer.pod_ip, answer.node_name, answer.serving_host):
            wrong.add(answer.pod_name)
    if not len(requests_df):
        return checks.fail("no answers to compare: run the request cell of step 5")
    if wrong:
        return checks.fail(f"{len(wrong)} page(s) do not show their own Pod's name, IP, node and serving host")
    return checks.ok("every page shows its own Pod's name, IP, node and serving host, as the API says",
                     {f"Pod/{nb.namespace}/{n}": p.metadata.uid for n, p in pods.items()})


# %% [markdown]
# ## Summary
#
# - `web` is a Deployment of 3 interchangeable nginx Pods; the init container `render-page` wrote
#   each Pod's page, the serving host included, from downward-API facts before nginx started;
#   nginx only serves it.
# - nginx's configuration comes from the ConfigMap `web-nginx`.
# - The NodePort Service `web` (30080) is reachable from this machine; its endpoints are the ready
#   Pods' IPs, and kube-proxy picks one at random per connection.

# %%
# NBVAL_CHECK_OUTPUT
checks.summary()

# %% [markdown]
# ## Clean-up
#
# Keep the web server: the next notebooks (network policy, the watcher, Helm) use it. To remove it
# (do **not** run it now): `kubectl delete -f manifests/03-web/`.
#
# Next: **05-network-policy**.
