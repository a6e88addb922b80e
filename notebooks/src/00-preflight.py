# Source of notebooks/00-preflight.ipynb (build with: python notebooks/src/build.py)

# %% [markdown]
# # 00 · Preflight: is this machine ready for the lab?
#
# Before we build anything, we check the machine the lab runs on. Everything later happens on a
# *real* Kubernetes cluster that runs inside Docker on this machine, driven by three command-line
# tools. If one of them is missing or has the wrong version, later notebooks fail in confusing
# ways; here they fail early, with a hint.

# %% [markdown]
# ## Learning objectives
#
# After this notebook you can
#
# - run the lab's host checks (`lab doctor`) and read them as a table,
# - name the tools the lab drives (Docker, kind, kubectl, helm) and say what each one is for,
# - explain the kubectl **version skew** rule and why the `kubectl` on your `PATH` may be the wrong one.

# %% [markdown]
# ## Concepts
#
# - **Docker** runs containers. [kind](https://kind.sigs.k8s.io/) ("Kubernetes in Docker") runs
#   each Kubernetes *node* as one Docker container, so without a working Docker engine there is no
#   cluster.
# - **kind** creates and deletes such clusters. **kubectl** talks to a cluster's API server.
#   **helm** installs whole applications (charts) through the same API.
# - **Version skew.** Kubernetes supports a kubectl that is at most *one minor version* older or
#   newer than the API server. The lab pins Kubernetes v1.34, so it brings its own kubectl v1.34
#   (and kind and helm) in the lab cache instead of trusting whatever is on `PATH`. Every command in
#   these notebooks runs those resolved binaries, and prints the command line so that you can type
#   the same thing in a terminal.
# - **Online or offline.** With a container registry reachable the lab uses official images; without
#   one (an air-gapped classroom, CI) it builds everything itself from Go modules and Debian
#   packages. The `mode` parameter chooses: `auto` asks whether a registry answers.

# %% [markdown]
# ## Parameters
#
# The next cell is tagged `parameters`: `lab run -p NAME=VALUE` and papermill replace its values.
# Leave them as they are unless your instructor says otherwise.

# %% tags=["parameters"]
cluster = "k8s-lab"  # the kind cluster: kubeconfig context kind-<cluster>
namespace = "k8s-assignment"  # where the lab's objects go
mode = "auto"  # images: "auto" | "online" | "offline"
solutions = True  # True runs the reference solutions; False leaves the exercises to you
kubeconfig = ""  # "": $KUBECONFIG or ~/.kube/config; in a classroom, the file your instructor gave you

# %%
# NBVAL_CHECK_OUTPUT
from lab import checks, notebook

nb = notebook.start("00-preflight.ipynb", cluster=cluster, namespace=namespace, mode=mode, solutions=solutions,
                    kubeconfig=kubeconfig)

# %% [markdown]
# The cell above checked the parameters (a typo such as `solutions = "yes"` stops here with a hint),
# told the checkpoints where to look, and returned `nb`, the notebook's handle on the lab's tools.
#
# ## Step 1: the host checks
#
# `lab doctor` checks Docker, the three tools, Go (for the offline build), disk, memory, the Python
# packages and the Jupyter kernel. A failed *required* check means the lab cannot work here; a
# *warning* is something you can live with. The same checks, as a table:
#
# ```bash
# lab doctor
# ```

# %%
# NBVAL_IGNORE_OUTPUT
import pandas as pd

from lab.host import doctor

host_checks = doctor.run_checks(mode=mode)
pd.DataFrame([{"check": c.name, "status": c.status, "required": c.required, "detail": c.detail, "fix": c.fix}
              for c in host_checks])

# %% [markdown]
# **Checkpoint.** Every required check passes (warnings are fine).

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("preflight.doctor", points=1, hint="run `lab doctor` in a terminal and fix the rows marked FAIL")
def preflight_doctor():
    failed = doctor.failed_required(doctor.run_checks(mode=mode))
    if failed:
        return checks.fail("required host checks fail: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    return checks.ok("every required host check passes")


# %% [markdown]
# ## Step 2: Docker
#
# The cluster's nodes will be Docker containers. Docker consists of a *client* (the `docker`
# command) and an *engine* (a daemon that actually runs containers); both must answer.
#
# ```bash
# docker version --format '{{.Client.Version}} / {{.Server.Version}}'
# docker info --format '{{.CgroupVersion}} {{.CgroupDriver}} {{.Driver}}'
# ```

# %%
# NBVAL_IGNORE_OUTPUT
nb.docker("version", "--format", "client {{.Client.Version}}, engine {{.Server.Version}} ({{.Server.Os}}/{{.Server.Arch}})")
nb.docker("info", "--format", "cgroup v{{.CgroupVersion}} ({{.CgroupDriver}} driver), storage driver {{.Driver}}, {{.NCPU}} CPUs, {{.MemTotal}} bytes of memory");

# %% [markdown]
# *cgroups* are the kernel feature that limits a container's CPU and memory; the kubelet inside each
# kind node uses the same mechanism for every Pod. That is why the lab stays on Kubernetes 1.34: newer
# kubelets refuse cgroup v1 hosts.
#
# **Checkpoint.** The Docker engine answers.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("preflight.docker", points=1,
                   hint="start Docker (`bash scripts/setup-host` installs and starts it), then `docker info` must answer")
def preflight_docker():
    docker_check = doctor.check_docker()
    return checks.ok("the Docker engine answers") if docker_check.ok else checks.fail(docker_check.detail)


# %% [markdown]
# ## Step 3: the tools and their versions
#
# `lab.host.tools.ensure(NAME)` finds a tool at the pinned version: on `PATH` if the version there is
# compatible, else in the lab cache; if it is nowhere, it downloads the official release (online) or
# builds it from Go modules (offline). The first time this can take a while; afterwards it is instant.
#
# ```bash
# lab cluster up        # also resolves the tools; lab doctor shows where they are
# ```

# %%
# NBVAL_IGNORE_OUTPUT
from lab import config
from lab.host import tools

wanted = {"kind": config.KIND_VERSION, "kubectl": config.KUBERNETES_VERSION, "helm": config.HELM_VERSION}
resolved = {name: tools.ensure(name) for name in wanted}
pd.DataFrame([{"tool": name, "pinned": wanted[name], "found": tools.version(name), "path": str(path)}
              for name, path in resolved.items()])

# %% [markdown]
# The same binaries from a shell (the lab prints the full path, because `kubectl` alone would run
# whatever is first on your `PATH`):

# %%
# NBVAL_IGNORE_OUTPUT
nb.run([resolved["kubectl"], "version", "--client"], f"{resolved['kubectl']} version --client")
nb.run([resolved["helm"], "version", "--short"], f"{resolved['helm']} version --short")
nb.run([resolved["kind"], "version"], f"{resolved['kind']} version");

# %% [markdown]
# **Checkpoint.** kind, kubectl and helm are resolved at versions the lab supports.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("preflight.tools", points=1, hint="run `lab cluster up` (it downloads or builds kind, kubectl and helm)")
def preflight_tools():
    problems = []
    for name in ("kind", "kubectl", "helm"):
        path, version = tools.find(name), tools.version(name)
        if path is None or version is None:
            problems.append(f"{name} is not available")
        elif not tools._tool(name).compatible(version):
            problems.append(f"{name} {version} at {path} is not compatible with the pinned {tools._tool(name).version}")
    if problems:
        return checks.fail("; ".join(problems))
    return checks.ok("kind, kubectl and helm are available at supported versions")


# %% [markdown]
# ## Exercise: the kubectl on your PATH
#
# Kubernetes' version skew policy: kubectl works with an API server **one minor version older or
# newer** at most. Our API server will be `v1.34.x`.
#
# Find out which kubectl your shell would run (`shutil.which("kubectl")`, then `kubectl version
# --client`) and set `path_kubectl_usable` to
#
# - `True` if it may be used with a v1.34 API server,
# - `False` if it may not,
# - `None` if there is no kubectl on your `PATH` at all.
#
# (Hint: the minor version is the middle number: `v1.32.4` has minor 32.)

# %%
# NBVAL_IGNORE_OUTPUT
import re
import shutil
import subprocess

path_kubectl_usable = "TODO"
# BEGIN SOLUTION NO PROMPT
on_path = shutil.which("kubectl")
if on_path is None:
    path_kubectl_usable = None
else:
    text = subprocess.run([on_path, "version", "--client"], capture_output=True, text=True).stdout
    found = re.search(r"v(\d+)\.(\d+)\.(\d+)", text)
    print(f"{on_path}: {found.group(0) if found else 'no version'}")
    path_kubectl_usable = bool(found) and found.group(1) == "1" and abs(int(found.group(2)) - 34) <= 1
# END SOLUTION
# BEGIN PROMPT
# TODO: set path_kubectl_usable to True, False or None as described above
# END PROMPT
print("your answer:", path_kubectl_usable)

# %% [markdown]
# **Checkpoint.** Your answer matches the versions.

# %%
# NBVAL_CHECK_OUTPUT
@checks.checkpoint("preflight.version-skew", points=2,
                   hint="run `kubectl version --client` in a terminal and compare its minor version with 34")
def preflight_version_skew():
    on_path = shutil.which("kubectl")
    if on_path is None:
        truth, why = None, "there is no kubectl on PATH"
    else:
        found = tools._reported_version(on_path, tools._tool("kubectl"))
        truth = bool(found) and tools._kubectl_compatible(found)
        why = f"the kubectl on PATH is {found or 'of unknown version'}"
    if path_kubectl_usable == "TODO":
        return checks.fail("path_kubectl_usable is still 'TODO': set it to True, False or None")
    if path_kubectl_usable is not truth:
        return checks.fail(f"path_kubectl_usable is {path_kubectl_usable!r}, but {why} (server v1.34)")
    return checks.ok("your answer matches what the versions say")


# %% [markdown]
# That is why every command in these notebooks runs the lab's own kubectl by its full path. In a
# terminal, put it first on your `PATH`:
#
# ```bash
# export PATH="$(dirname "$(python -c 'from lab.host import tools; print(tools.find("kubectl"))')"):$PATH"
# ```

# %% [markdown]
# ## Summary
#
# - The lab needs a Docker engine (kind nodes are containers), and kind, kubectl and helm at pinned
#   versions, which it resolves itself (`lab.host.tools.ensure`).
# - A kubectl more than one minor version away from the API server is unsupported: do not trust
#   the `kubectl` on `PATH` blindly.
# - `lab doctor` shows all of this as a table; run it whenever something looks broken.
#
# Points so far:

# %%
# NBVAL_CHECK_OUTPUT
checks.summary()

# %% [markdown]
# ## Clean-up
#
# Nothing to clean up: this notebook only looked. The tools stay in the lab cache
# (`~/.cache/k8s-lab`, or `$LAB_CACHE_DIR`) for the next notebooks. Next: **01-kind-cluster**.
