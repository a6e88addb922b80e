# Source of notebooks/07-helm.ipynb (build with: python notebooks/src/build.py)

# %% [markdown]
# # 07 · One package for the whole system: Helm
#
# So far we applied the system layer by layer with `kubectl apply`. That works, but nothing
# remembers *which* objects belong together, *which* version is installed, or how to go back.
# **Helm** packages all the objects as one **chart** with settings (**values**), installs it as a
# **release**, and keeps every **revision** so that an upgrade can be rolled back. In this notebook
# Helm takes over the objects we made by hand, then we upgrade, look at the history, roll back,
# watch the chart's schema refuse a bad value, and change a template of our own copy of the chart.

# %% [markdown]
# ## Learning objectives
#
# After this notebook you can
#
# - read a chart: templates, `values.yaml`, `values.schema.json`, and render it with `helm template`,
# - explain how Helm knows which objects it owns, and hand existing objects over to a release
#   (*adoption*),
# - install or upgrade idempotently with `helm upgrade --install ... --wait`,
# - change a value in an upgrade, read `helm history`, and `helm rollback` to an earlier revision,
# - let `values.schema.json` catch a wrong value before anything reaches the cluster,
# - change a template in a copy of the chart, with one of Helm's built-in objects, and upgrade from it.

# %% [markdown]
# ## Concepts
#
# - A **chart** (`chart/`) is a folder of templates plus default **values**. `helm template` renders
#   it to plain YAML: here exactly the objects of `manifests/` (a unit test checks that).
# - A **release** is one installation of a chart in a namespace (`k8s-lab` in `k8s-assignment`).
#   Helm stores each **revision** of it as a Secret in that namespace (`sh.helm.release.v1.k8s-lab.vN`):
#   the rendered manifest and the values used. `helm history` lists them; `helm rollback` renders an
#   old one again as a new revision.
# - **Ownership.** Helm only touches objects that carry its marks: the label
#   `app.kubernetes.io/managed-by=Helm` and the annotations `meta.helm.sh/release-name` and
#   `meta.helm.sh/release-namespace`. Our hand-made objects have none, so a plain install refuses to
#   overwrite them ("invalid ownership metadata"). We **adopt** them by adding the marks (Helm 3.17+
#   can also do it for you: `--take-ownership`). Objects that are not in the chart stay untouched.
# - **Values schema.** `chart/values.schema.json` is a JSON Schema for the values. Helm checks the
#   values against it before rendering: a node port of 80 or a negative replica count is refused,
#   and the cluster never sees it.
# - **Templates.** The files in `chart/templates/` are Kubernetes YAML with Go template actions
#   (`{{ ... }}`) that Helm fills in at every install, upgrade and rollback. Besides `.Values` they
#   see **built-in objects**: `.Release` (`Name`, `Namespace`, `Revision`, ...), `.Chart` (what
#   `Chart.yaml` says). Values change only what the chart's authors made configurable; anything
#   else is a change to a template.

# %% tags=["parameters"]
cluster = "k8s-lab"  # the kind cluster: kubeconfig context kind-<cluster>
namespace = "k8s-assignment"  # where the lab's objects go
mode = "auto"  # images: "auto" | "online" | "offline"
solutions = True  # True runs the reference solutions; False leaves the exercises to you
kubeconfig = ""  # "": $KUBECONFIG or ~/.kube/config; in a classroom, the file your instructor gave you

# %%
# NBVAL_CHECK_OUTPUT
from lab import checks, notebook

nb = notebook.start("07-helm.ipynb", cluster=cluster, namespace=namespace, mode=mode, solutions=solutions,
                    kubeconfig=kubeconfig, requires=("01", "02", "03", "04"))

# %% [markdown]
# ## Step 1: the chart
#
# ```bash
# helm lint chart/
# helm template k8s-lab chart/ -n k8s-assignment       # the YAML it would apply
# ```
#
# Every install and upgrade below passes the same `--set` options: the images of this mode (as
# `lab deploy --helm` does), so that Helm deploys what you already run. In a classroom they also
# leave out what your instructor made: the volumes (`storage.enabled=false`: the chart only claims
# them), the quota and the limits.

# %%
# NBVAL_IGNORE_OUTPUT
RELEASE = notebook.RELEASE
CHART = str(notebook.CHART_DIR)
SET = notebook.helm_set_args(nb)
print("values set on every install/upgrade:", " ".join(SET))
nb.helm("lint", CHART, *SET);

# %% [markdown]
# What the chart renders (hooks and the `helm test` Pod left out):

# %%
# NBVAL_CHECK_OUTPUT
import pandas as pd

chart_objects = notebook.chart_objects(nb)
print(pd.DataFrame(chart_objects)[["kind", "name"]].to_string(index=False))

# %% [markdown]
# Compare with `manifests/`: the same Quota, LimitRange, PersistentVolume, database, web server,
# NetworkPolicies, the watcher (its permissions and its DaemonSet) and the backup CronJob of the next
# notebook. Not the Namespace itself: Helm keeps its release records *in* the namespace, so it
# cannot own it (`--create-namespace` makes it when missing).
#
# **Checkpoint.** The chart passes `helm lint` and renders the lab's workloads.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("helm.chart", points=1, hint="helm lint chart/ shows what is wrong with the chart")
def helm_chart():
    lint = nb.helm("lint", CHART, *SET, show=False, check=False)
    if not lint.ok:
        return checks.fail("helm lint failed: " + lint.output.strip().splitlines()[-1])
    rendered = {(o["kind"], o["name"]) for o in notebook.chart_objects(nb)}
    wanted = {("StatefulSet", "database"), ("Deployment", "web"), ("Service", "web")}
    if nb.classroom is None:  # a classroom's volume is the instructor's (storage.enabled=false)
        wanted.add(("PersistentVolume", nb.pv_name))
    if not wanted <= rendered:
        return checks.fail(f"the chart does not render {sorted(wanted - rendered)}")
    return checks.ok("helm lint passes; the chart renders the database and the web server"
                     + ("" if nb.classroom else ", and the volume"))


# %% [markdown]
# ## Step 2: who owns what?
#
# For each object of the chart: does it exist already, and does it carry Helm's ownership marks?

# %%
# NBVAL_IGNORE_OUTPUT
owners = pd.DataFrame(notebook.ownership(nb, chart_objects))
owners[["kind", "name", "exists", "managed_by", "release", "state"]]

# %% [markdown]
# Objects marked `to adopt` were made by `kubectl apply` in notebooks 02-06. Ask the API server
# what an install would do, without changing anything (`--dry-run=server`; `--hide-secret` keeps
# the Secret out of the output). The first time through, this fails exactly because of the
# missing marks; once the release exists it is an ordinary upgrade and passes.

# %%
# NBVAL_IGNORE_OUTPUT
dry = nb.helm("upgrade", "--install", RELEASE, CHART, *SET, "--dry-run=server", "--hide-secret", show=False, check=False)
print("$", dry.shown)
print(dry.output.strip() if not dry.ok else dry.output.strip().splitlines()[0] + "\n... (the dry run would succeed)")

# %% [markdown]
# **Checkpoint.** The workloads of notebooks 03 and 04 exist, so Helm will take them over instead
# of creating new ones (and the database keeps its Pod and its data).

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("helm.ownership", points=1,
                   hint="run notebooks 03 and 04 first; kubectl -n k8s-assignment get statefulset,deployment")
def helm_ownership():
    from lab import tasks

    return tasks.missing(nb, "pv", "database", "web") or checks.ok(
        "the database, the web server and the volume exist: Helm takes them over, it does not create them")


# %% [markdown]
# ## Step 3: adopt the hand-made objects
#
# For every existing object without the marks:
#
# ```bash
# kubectl -n k8s-assignment label    deployment/web app.kubernetes.io/managed-by=Helm --overwrite
# kubectl -n k8s-assignment annotate deployment/web meta.helm.sh/release-name=k8s-lab \
#                                                   meta.helm.sh/release-namespace=k8s-assignment --overwrite
# ```
#
# (Cluster-scoped objects, like the PersistentVolume, get the same marks without `-n`.)

# %%
# NBVAL_IGNORE_OUTPUT
import textwrap


def adopt(rows, show):
    refs = [f"{row['kind'].lower()}/{row['name']}" for row in rows]
    scoped = rows[0]["namespace"] is not None
    nb.kubectl("label", *refs, "app.kubernetes.io/managed-by=Helm", "--overwrite", namespaced=scoped, show=show)
    nb.kubectl("annotate", *refs, f"meta.helm.sh/release-name={RELEASE}",
               f"meta.helm.sh/release-namespace={nb.namespace}", "--overwrite", namespaced=scoped, show=show)


to_adopt = [row for row in notebook.ownership(nb, chart_objects) if row["state"] == "to adopt"]
if to_adopt:
    # The two commands in full for the first object. kubectl label and annotate take many objects
    # at once: the others go in one pair of commands per scope, summed up in a line at the end.
    adopt(to_adopt[:1], show=True)
    for scoped in (True, False):
        if rows := [row for row in to_adopt[1:] if (row["namespace"] is not None) == scoped]:
            adopt(rows, show=False)
    print(textwrap.fill(f"adopted {len(to_adopt)} object(s) the same way: "
                        + ", ".join(f"{r['kind']}/{r['name']}" for r in to_adopt), width=100))
else:
    print("nothing to adopt: every existing object already belongs to the release")

# %% [markdown]
# **Checkpoint.** Every object of the chart that exists carries the release's marks.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("helm.adopted", points=2,
                   hint="label each object app.kubernetes.io/managed-by=Helm and annotate meta.helm.sh/release-name and meta.helm.sh/release-namespace")
def helm_adopted():
    rows = notebook.ownership(nb, chart_objects)
    stray = [f"{r['kind']}/{r['name']}" for r in rows if r["state"] == "to adopt"]
    if stray:
        return checks.fail(f"{len(stray)} object(s) lack Helm's ownership marks: {', '.join(stray[:6])}")
    return checks.ok("every existing object of the chart carries the release's ownership marks")


# %% [markdown]
# ## Step 4: install the release
#
# `helm upgrade --install` installs when there is no release and upgrades when there is one, so
# this cell can run any number of times. `--wait` returns only when every workload is ready (we
# print their state while waiting); `--history-max 5` keeps five revisions. This is what
# `lab deploy --helm` runs.

# %%
# NBVAL_IGNORE_OUTPUT
from lab.cluster import kube


def pod_uids():
    return {p.metadata.uid: p.metadata.name for p in kube.core(nb.target).list_namespaced_pod(nb.namespace, _request_timeout=10).items}


before_install = pod_uids()
nb.helm_upgrade(install=True, timeout=600)
replaced = sorted(name for uid, name in before_install.items() if uid not in pod_uids())
print(f"{len(replaced)} of {len(before_install)} Pods were replaced by the install" + (f": {', '.join(replaced)}" if replaced else ""))

# %% [markdown]
# Where the chart renders an object exactly as it was, nothing restarts: Helm only takes over the
# bookkeeping. Where the rendered Pod template differs from what ran (an object you wrote
# differently, one the chart adds, a value), Kubernetes rolls those Pods; the line above says which
# happened here. The release's revisions are Secrets of type `helm.sh/release.v1`:

# %%
# NBVAL_IGNORE_OUTPUT
nb.helm("list")
nb.kubectl("get", "secrets", "-l", f"owner=helm,name={RELEASE}");

# %% [markdown]
# **Checkpoint.** The release's latest revision is deployed.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "helm.release-deployed", points=2,
    hint="helm -n k8s-assignment status k8s-lab; helm -n k8s-assignment history k8s-lab",
    verify=lambda: checks.helm_release_deployed("k8s-lab"),
)

# %% [markdown]
# ## Step 5: an upgrade from your values file
#
# Values change a release without touching the chart. Write a values file `work/values.yaml`
# that scales the web server to **2 replicas** (`chart/values.yaml` shows the keys and their
# defaults; `chart/values.schema.json` what each may be), and upgrade with it, not with
# `kubectl scale`: the change is then recorded as a revision, and the next upgrade will not
# silently undo it.
#
# ```bash
# helm upgrade k8s-lab chart/ -n k8s-assignment -f work/values.yaml --wait
# ```

# %%
# NBVAL_IGNORE_OUTPUT
%%writefile work/values.yaml
web:
  replicas: 2  # SOLUTION

# %%
# NBVAL_IGNORE_OUTPUT
from lab import tasks

upgraded = tasks.helm_upgrade(nb, "work/values.yaml")

# %% [markdown]
# **Checkpoint.** The release's values come from your file, and the Deployment asks for, and has,
# 2 ready replicas.

# %%
# NBVAL_CHECK_OUTPUT
checks.checkpoint(
    "helm.upgrade-replicas", points=2,
    hint="helm -n k8s-assignment get values k8s-lab shows the values of the release; chart/values.yaml the keys",
    verify=lambda: tasks.helm_values_applied(nb, {"web": {"replicas": 2}},
                                             lambda: checks.deployment_ready("web", replicas=2)),
)

# %% [markdown]
# ## Step 6: the history
#
# ```bash
# helm history k8s-lab -n k8s-assignment
# helm get values k8s-lab -n k8s-assignment --revision N --all
# ```

# %%
# NBVAL_IGNORE_OUTPUT
nb.helm("history", RELEASE);

# %% [markdown]
# Every revision remembers its values. The web server's replicas per revision, as a picture:

# %%
# NBVAL_IGNORE_OUTPUT
import json

import matplotlib.pyplot as plt


def replicas_by_revision():
    rows = []
    for entry in notebook.helm_history(nb):
        values = json.loads(nb.helm("get", "values", RELEASE, "--revision", str(entry["revision"]), "--all",
                                    "--output", "json", show=False).stdout)
        rows.append({"revision": entry["revision"], "status": entry["status"],
                     "description": entry["description"], "web replicas": values["web"]["replicas"]})
    return pd.DataFrame(rows)


history = replicas_by_revision()
fig, ax = plt.subplots(figsize=(7, 3))
colours = ["#1a7f37" if s == "deployed" else "#8c959f" for s in history["status"]]
ax.bar(history["revision"].astype(str), history["web replicas"], color=colours)
ax.set_xlabel("revision (green: deployed)")
ax.set_ylabel("web replicas")
ax.yaxis.get_major_locator().set_params(integer=True)
ax.set_title(f"release {RELEASE}: web.replicas per revision")
plt.tight_layout()
plt.show()
history

# %% [markdown]
# **Checkpoint.** The release has a history: the latest revision is deployed, the earlier ones are
# superseded.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("helm.history", points=1, hint="helm -n k8s-assignment history k8s-lab")
def helm_history_check():
    entries = notebook.release_revisions(nb)
    if len(entries) < 2:
        return checks.fail(f"the release has {len(entries)} revision(s); upgrade it (step 5) to make a second")
    latest, earlier = entries[-1], entries[:-1]
    if latest["status"] != "deployed" or any(e["status"] not in ("superseded", "failed") for e in earlier):
        return checks.fail("statuses: " + ", ".join(f"{e['revision']}: {e['status']}" for e in entries))
    return checks.ok("the latest revision is deployed, the earlier ones are superseded")


# %% [markdown]
# ## Exercise: roll back
#
# Two replicas were a mistake. Roll the release back to the revision **before** the upgrade of
# step 5, and wait until the web server has 3 ready replicas again:
#
# ```bash
# helm rollback k8s-lab <REVISION> -n k8s-assignment --wait
# ```
#
# `notebook.helm_history(nb)` returns the history as a list of dicts (`revision`, `status`,
# `description`, ...), oldest first; `nb.helm("rollback", ...)` runs helm.

# %%
# NBVAL_IGNORE_OUTPUT
# BEGIN SOLUTION NO PROMPT
before_upgrade = notebook.helm_history(nb)[-2]["revision"]
nb.helm("rollback", RELEASE, str(before_upgrade), "--history-max", str(notebook.HELM_HISTORY_MAX),
        "--wait", "--timeout", "300s", progress=True)
# END SOLUTION
# BEGIN PROMPT
# TODO: find the revision before the upgrade and roll back to it with nb.helm("rollback", ...)
# END PROMPT

# %% [markdown]
# **Checkpoint.** The latest revision is a rollback and the web server runs 3 ready replicas again.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("helm.rollback", points=2,
                   hint="helm -n k8s-assignment history k8s-lab; then helm -n k8s-assignment rollback k8s-lab <the revision before the upgrade> --wait")
def helm_rollback():
    latest = notebook.release_record(nb)
    description = latest["info"].get("description", "") if latest else "no release"
    if not description.startswith("Rollback to"):
        return checks.fail(f"the latest revision is not a rollback: {description}")
    web = checks.deployment_ready("web", replicas=3)
    if not web.passed:
        return web
    return checks.ok(f"rolled back; {web.message}", web.uids)


# %% [markdown]
# ## Step 7: the schema refuses a bad value
#
# A NodePort must be between 30000 and 32767. Try 80:
#
# ```bash
# helm upgrade k8s-lab chart/ -n k8s-assignment --set web.nodePort=80
# ```

# %%
# NBVAL_CHECK_OUTPUT
revisions_before = [e["revision"] for e in notebook.release_revisions(nb)]
bad = nb.helm("upgrade", RELEASE, CHART, *SET, "--set", "web.nodePort=80", show=False, check=False)
print(f"exit code {bad.returncode}")
print(bad.stderr.strip())

# %% [markdown]
# Helm stopped before rendering: no new revision, nothing sent to the cluster. The rule that caught
# it is in `chart/values.schema.json`:

# %%
# NBVAL_CHECK_OUTPUT
schema = json.loads((notebook.CHART_DIR / "values.schema.json").read_text())
print(json.dumps(schema["properties"]["web"]["properties"]["nodePort"], indent=2))

# %% [markdown]
# **Checkpoint.** The bad value was refused by the schema and the release is unchanged.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("helm.schema-rejects", points=1,
                   hint="run the cell above: helm upgrade ... --set web.nodePort=80 must fail with a schema error")
def helm_schema_rejects():
    if bad.ok:
        return checks.fail("helm accepted web.nodePort=80: the schema did not stop it")
    if "schema" not in bad.stderr:
        return checks.fail(f"helm failed, but not because of the schema: {bad.stderr.strip()[:200]}")
    after = [e["revision"] for e in notebook.release_revisions(nb)]
    if after != revisions_before:
        return checks.fail(f"the release's revisions changed from {revisions_before} to {after}")
    deployed = checks.helm_release_deployed("k8s-lab")
    if not deployed.passed:
        return deployed
    return checks.ok("the schema refused web.nodePort=80; the release is unchanged and deployed", deployed.uids)


# %% [markdown]
# ## Step 8: change a template (you write it)
#
# Say you want the web Service to tell which upgrade of the release last wrote it: no value of the
# chart offers that, so it takes a change to a template. Never change `chart/` itself (the next
# notebooks and `lab deploy` install from it): work on your own copy. The next cell copies
# `chart/` to `work/chart/`, anew on every run.
#
# **Your part:** in your copy of the web Service's template, `templates/web/service.yaml`, give the
# Service an annotation `k8s-lab/revision` whose value is the number of the release revision that
# rendered it (a built-in object has it). Annotation values are strings, and YAML reads a bare
# `7` as a number: the API server would refuse it. Then upgrade the release from your copy:
#
# ```bash
# cp -r ../chart/. work/chart/                  # from the notebooks folder, like work/ itself
# helm upgrade k8s-lab work/chart -n k8s-assignment --wait
# kubectl -n k8s-assignment get service web -o jsonpath='{.metadata.annotations.k8s-lab/revision}'
# ```

# %%
# NBVAL_IGNORE_OUTPUT
import shutil

STUDENT_CHART = "work/chart"  # relative to this notebook, as you would type it
shutil.copytree(CHART, STUDENT_CHART, dirs_exist_ok=True)
print(f"copied chart/ to {STUDENT_CHART}/")

# %%
# NBVAL_IGNORE_OUTPUT
%%writefile work/chart/templates/web/service.yaml
{{- if .Values.web.enabled }}
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "k8s-lab.labels" (dict "root" . "component" "web") | nindent 4 }}
# BEGIN SOLUTION
  annotations:
    k8s-lab/revision: {{ .Release.Revision | quote }}
# END SOLUTION
# BEGIN PROMPT
  # TODO: the annotation k8s-lab/revision, the number of the revision that renders this template
# END PROMPT
spec:
  type: NodePort
  selector:
    {{- include "k8s-lab.selectorLabels" (dict "root" . "component" "web") | nindent 4 }}
  ports:
    - name: http
      port: {{ .Values.web.servicePort }}
      targetPort: http
      nodePort: {{ .Values.web.nodePort }}
      protocol: TCP
{{- end }}

# %%
# NBVAL_IGNORE_OUTPUT
template_upgraded = tasks.helm_upgrade(nb, chart=STUDENT_CHART)
nb.kubectl("get", "service", "web", "-o", "jsonpath={.metadata.annotations.k8s-lab/revision}", check=False)
nb.helm("history", RELEASE, "--max", "1");

# %% [markdown]
# **Checkpoint.** The live Service `web` carries `k8s-lab/revision`, and its value is the revision
# the release is at: your template, rendered by your upgrade.

# %%
# NBVAL_CHECK_OUTPUT
checks.check("helm.template-change")

# %% [markdown]
# Run the upgrade cell once more: the revision goes up by one, and so does the annotation. Helm
# renders every template anew for each revision; a number typed into the template could not
# follow. (The next notebook upgrades from `chart/` again, and the annotation goes.)

# %% [markdown]
# ## Step 9: the system, now managed by Helm
#
# Everything from notebooks 02-04 (and the layers of 05 and 06) runs as before, but now as one
# release. The following notebooks keep using it: the database backups of notebook 08 come from
# the chart's CronJob.

# %%
# NBVAL_IGNORE_OUTPUT
nb.helm("status", RELEASE)
nb.kubectl("get", "statefulsets,deployments,services,pvc");

# %% [markdown]
# **Checkpoint.** The database and the web server are ready, and the release owns them.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("helm.system-ready", points=2,
                   hint="helm -n k8s-assignment status k8s-lab; kubectl -n k8s-assignment get pods")
def helm_system_ready():
    system = checks.system_ready("k8s-lab")
    if not system.passed:
        return system
    uids = system.uids
    rows = {(r["kind"], r["name"]): r["state"] for r in notebook.ownership(nb, chart_objects)}
    for key in (("StatefulSet", "database"), ("Deployment", "web")):
        if rows.get(key) != "owned by the release":
            return checks.fail(f"{key[0]} {key[1]} is {rows.get(key)}", uids)
    return checks.ok("release deployed; database 1/1 and web 3/3 ready, owned by the release", uids)


# %% [markdown]
# ## Summary
#
# - A chart renders the same objects as the manifests; `helm template` and `helm lint` show it
#   without touching the cluster.
# - Helm owns only objects with its label and annotations; we adopted the hand-made ones, then
#   `helm upgrade --install --wait` made them one release.
# - Each upgrade is a revision with its values; `helm history` lists them, `helm rollback N` brings
#   one back (as a new revision).
# - `values.schema.json` rejects wrong values before anything reaches the cluster.
# - What no value offers is a template change, made in your own copy of the chart and upgraded from
#   it; built-in objects such as `.Release.Revision` are filled in at every render.

# %%
# NBVAL_CHECK_OUTPUT
checks.summary()

# %% [markdown]
# ## Clean-up
#
# Keep the release: the next notebooks build on it. Later, `lab deploy --delete` (or notebook 99)
# removes it. For reference, what that does (do **not** run it now):
#
# ```bash
# helm uninstall k8s-lab -n k8s-assignment       # every object of the release
# kubectl delete namespace k8s-assignment         # the claim, which was never the release's
# kubectl delete pv k8s-lab-database-data         # Retain: the files in the lab data directory stay
# ```
#
# Next: **08-backup**.
