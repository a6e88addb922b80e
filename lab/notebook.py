"""What the lab's notebooks share: parameter validation, prerequisites, and running kubectl/helm.

Every notebook has a cell tagged ``parameters`` (papermill and ``lab run -p NAME=VALUE`` change
it) followed by one cell that hands the values to :func:`start`::

    cluster = "k8s-lab"            # the kind cluster (kubeconfig context kind-<cluster>)
    namespace = "k8s-assignment"   # where the lab's objects go
    mode = "auto"                  # images: "auto" | "online" | "offline"
    solutions = True               # run the reference solutions of the exercises
    kubeconfig = ""                # the kubeconfig file ("": $KUBECONFIG or ~/.kube/config)

    from lab import notebook
    nb = notebook.start("03-database.ipynb", cluster=cluster, namespace=namespace, mode=mode,
                        solutions=solutions, kubeconfig=kubeconfig, requires=("01", "02"))

:func:`start` checks the values (a wrong type, an unknown cluster, a malformed namespace is a
:class:`~lab.errors.LabError` with a hint, shown as two short lines instead of a traceback),
points :mod:`lab.checks` at the cluster and namespace, and checks that the notebooks this one
builds on have run: ``requires=("02",)`` fails with "run 02-storage.ipynb first" when what 02
leaves behind is missing. What each notebook leaves behind is in :data:`STAGES`; a later notebook
adds its own entry there (or passes ``(file name, verify)`` pairs to ``requires``).

The returned :class:`Lab` runs the real tools (the kubectl and helm the lab resolved, never
whatever is on PATH) and prints each command the way a student would type it::

    nb.kubectl("get", "pods", "-o", "wide")     # $ kubectl --context kind-k8s-lab -n k8s-assignment get pods -o wide
    nb.apply("02-database/secret.yaml")         # kubectl apply of one manifest (or a whole layer)
    nb.wait_for(lambda: checks.statefulset_ready("database", replicas=1), "the database")
    nb.helm("history", "k8s-lab")

Objects go to ``namespace``. With the default namespace everything is exactly what
``lab deploy --manifests`` applies; in another namespace (``lab grade --execute`` uses
``grade-<student>``) the manifests are rewritten for it, and the two cluster-wide things get
their own: the PersistentVolume ``k8s-lab-database-data-<namespace>`` (host directory
``pv/database-<namespace>``) and a node port Kubernetes picks instead of 30080.

Notebooks never sleep for a fixed time: :meth:`Lab.wait_for` polls a condition, prints progress
when it changes, and fails after a timeout with what is still wrong.

**Classroom mode.** With a student's kubeconfig from ``lab classroom up`` (the ``kubeconfig``
parameter, or $KUBECONFIG) the notebook works in the student's namespace ``student-<id>`` of the
instructor's cluster, where the student may not create namespaces, PersistentVolumes or label
nodes. :attr:`Lab.classroom` tells; :meth:`Lab.in_classroom` leaves such a step out with one
line saying why (the instructor made the namespace, its quota and limits, and the volumes), and
the checks of those steps say *not applicable* (:func:`lab.checks.not_applicable`), not PASS.
"""
from __future__ import annotations

import base64
import datetime as _dt
import re
import shlex
import sys
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from lab import config, runner, timing, yamldoc
from lab.errors import LabError
from lab.progress import step
from lab.system.deploy import _CLUSTER_SCOPED, DEFAULT_PV, MANIFESTS_DIR, rewrite_namespace  # noqa: F401 - the notebooks' names
from lab.target import Target

NODE_DATA_PATH = config.NODE_DATA_PATH

PARAMETERS = ("cluster", "namespace", "mode", "solutions", "kubeconfig")
DEFAULTS: dict[str, Any] = {
    "cluster": config.CLUSTER_NAME,
    "namespace": config.NAMESPACE,
    "mode": "auto",
    "solutions": True,
    "kubeconfig": "",
}
MODES = ("auto", "online", "offline")
RELEASE = "k8s-lab"
CHART_DIR = config.REPO_ROOT / "chart"
NOTEBOOKS_DIR = config.REPO_ROOT / "notebooks"
DEFAULT_TIMEOUT_S = 600
WORK_DIR = "work"  # the student's folder for the build tasks, next to the notebooks
HELM_HISTORY_MAX = 5
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RESERVED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "local-path-storage")


# ============================================================================================
# Parameters
# ============================================================================================


@dataclass(frozen=True)
class Parameters:
    cluster: str
    namespace: str
    mode: str
    solutions: bool
    kubeconfig: str = ""  # "": $KUBECONFIG or ~/.kube/config

    @property
    def context(self) -> str:
        return f"kind-{self.cluster}"


def _kind_contexts(kubeconfig: str = "") -> set[str]:
    """Cluster names of the kind contexts in the kubeconfig (``kind-NAME`` -> ``NAME``)."""
    from lab.target import kubeconfig_paths

    # Read the files directly: the client library refuses a kubeconfig without current-context,
    # which kind leaves unset when another tool cleared it.
    names: set[str] = set()
    for path in kubeconfig_paths(Path(kubeconfig) if kubeconfig else None):
        try:
            document = yamldoc.load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        for context in document.get("contexts") or []:
            name = str((context or {}).get("name", ""))
            if name.startswith("kind-"):
                names.add(name[len("kind-"):])
    return names


def known_clusters(kubeconfig: str = "") -> set[str]:
    """The clusters a notebook may name: the lab's own (which notebook 01 creates) and every kind
    cluster in the kubeconfig."""
    return {config.CLUSTER_NAME} | _kind_contexts(kubeconfig)


def _type_error(name: str, value: Any, wanted: str, example: str) -> LabError:
    return LabError(f"parameter {name} must be {wanted}, not {type(value).__name__} {value!r}",
                    hint=f"set it in the parameters cell, e.g. {name} = {example} "
                         f"(with lab run: -p {name}={example.strip(chr(34))})")


def validate_parameters(cluster: Any = DEFAULTS["cluster"], namespace: Any = DEFAULTS["namespace"],
                        mode: Any = DEFAULTS["mode"], solutions: Any = DEFAULTS["solutions"],
                        kubeconfig: Any = DEFAULTS["kubeconfig"], *, clusters: Iterable[str] | None = None) -> Parameters:
    """Check the notebook parameters; a :class:`LabError` with a hint says what is wrong.

    ``clusters`` are the known cluster names (default: :func:`known_clusters` of the kubeconfig).
    """
    if not isinstance(cluster, str):
        raise _type_error("cluster", cluster, "text (the kind cluster's name)", f'"{config.CLUSTER_NAME}"')
    if not isinstance(namespace, str):
        raise _type_error("namespace", namespace, "text (a namespace name)", f'"{config.NAMESPACE}"')
    if not isinstance(mode, str):
        raise _type_error("mode", mode, f"one of {', '.join(map(repr, MODES))}", '"auto"')
    if not isinstance(solutions, bool):
        hint = ("write True or False without quotes (with lab run: -p solutions=false)"
                if isinstance(solutions, str) else "True runs the reference solutions, False leaves the exercises to you")
        raise LabError(f"parameter solutions must be True or False, not {type(solutions).__name__} {solutions!r}",
                       hint=hint)
    if not isinstance(kubeconfig, str):
        raise _type_error("kubeconfig", kubeconfig, "text (a kubeconfig file, or \"\" for the default)",
                          '"classroom/ann/kubeconfig"')
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise LabError(f"kubeconfig {kubeconfig!r}: there is no such file",
                           hint="name the file your instructor gave you (lab classroom up writes OUT/<id>/kubeconfig), "
                                "or leave kubeconfig = \"\" for $KUBECONFIG or ~/.kube/config")
        kubeconfig = str(path.resolve())
    if mode not in MODES:
        raise LabError(f"unknown mode {mode!r}",
                       hint="mode is \"auto\" (online when a registry answers), \"online\" or \"offline\"")
    if len(namespace) > 63 or not _NAME.match(namespace):
        raise LabError(f"{namespace!r} is not a valid namespace name",
                       hint="lower-case letters, digits and '-', starting and ending with a letter or digit, "
                            f"at most 63 characters, e.g. {config.NAMESPACE!r}")
    if namespace in _RESERVED_NAMESPACES:
        raise LabError(f"namespace {namespace!r} belongs to the cluster itself",
                       hint=f"use a namespace of your own, e.g. {config.NAMESPACE!r}")
    if not _NAME.match(cluster):
        raise LabError(f"{cluster!r} is not a valid cluster name",
                       hint=f"kind cluster names are lower-case letters, digits and '-', e.g. {config.CLUSTER_NAME!r}")
    known = set(known_clusters(kubeconfig) if clusters is None else clusters)
    if cluster not in known:
        raise LabError(f"unknown cluster {cluster!r}: there is no kubeconfig context kind-{cluster}",
                       hint=f"known clusters: {', '.join(sorted(known)) or '(none)'}; the lab's own cluster is "
                            f"{config.CLUSTER_NAME!r} (notebook 01 or `lab cluster up` creates it)")
    return Parameters(cluster, namespace, mode, solutions, kubeconfig)


# ============================================================================================
# Readable errors in notebooks
# ============================================================================================


def error_lines(error: BaseException) -> list[str]:
    """What a notebook shows for a LabError: the message and the hint, no traceback."""
    message = getattr(error, "message", None) or str(error)
    lines = [f"\x1b[1;31m{type(error).__name__}:\x1b[0m {message}"]
    hint = getattr(error, "hint", None)
    if hint:
        lines.append(f"\x1b[33mhint: {hint}\x1b[0m")
    return lines


def _show_lab_error(shell, etype, value, tb, tb_offset=None):  # noqa: ANN001 - IPython's handler signature
    lines = error_lines(value)
    show = getattr(shell, "_showtraceback", None)
    if show is not None:
        show(etype, value, lines)  # an `error` output: ename LabError, evalue, these lines
    else:  # pragma: no cover - a shell without it
        print("\n".join(lines), file=sys.stderr)
    return lines


def install_error_display() -> bool:
    """Show LabErrors (and CheckpointFailed) as message + hint in this IPython kernel."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc((LabError,), _show_lab_error)
    return True


# ============================================================================================
# Prerequisites: what each notebook leaves behind
# ============================================================================================


@dataclass(frozen=True)
class Stage:
    number: str
    notebook: str
    leaves: str  # what the notebook sets up, in words
    verify: Callable[["Lab"], Any]  # -> checks.Result


def _all(*results):
    from lab import checks

    for result in results:
        if not result.passed:
            return result
    return checks.ok("; ".join(r.message for r in results))


def _cluster_answers(lab: "Lab"):
    from lab import checks
    from lab.cluster import kube

    if lab.cluster not in _kind_contexts(lab.params.kubeconfig):
        return checks.fail(f"there is no kubeconfig context {lab.context}: the cluster does not exist")
    try:
        nodes = kube.core(lab.target).list_node(_request_timeout=10).items
    except Exception as error:  # noqa: BLE001 - refused, timed out, TLS
        return checks.fail(f"the API server of {lab.context} does not answer ({type(error).__name__})")
    not_ready = [n.metadata.name for n in nodes if not kube.node_ready(n)]
    if not nodes or not_ready:
        return checks.fail(f"nodes not Ready: {', '.join(not_ready) or 'no nodes'}")
    return checks.ok(f"{len(nodes)} node(s) Ready")


# What the students build themselves (the PersistentVolume, the database, the web server) is not a
# prerequisite: a notebook runs without it, and each step that needs it says "finish step N of NN
# first" (lab.tasks.missing). A prerequisite is what the notebook itself set up.
def _storage_ready(lab: "Lab"):
    from lab import checks

    quota = lab.read("ResourceQuota", lab.quota_name)
    return _all(checks.namespace_exists(lab.namespace),
                checks.ok("quota found") if quota is not None else checks.fail(f"ResourceQuota {lab.quota_name} does not exist"))


def _database_ready(lab: "Lab"):
    from lab import checks

    return checks.secret_has_keys("database-credentials", ["root-password", "username", "password"])


def _web_ready(lab: "Lab"):
    from lab import checks

    return checks.configmap_has_key("web-nginx", "default.conf")


def _helm_ready(lab: "Lab"):
    from lab import checks

    return checks.helm_release_deployed(RELEASE)


STAGES: dict[str, Stage] = {s.number: s for s in (
    Stage("01", "01-kind-cluster.ipynb", "a running kind cluster", _cluster_answers),
    Stage("02", "02-storage.ipynb", "the namespace, its quota and limits",
          _storage_ready),
    Stage("03", "03-database.ipynb", "the database's Secret and settings", _database_ready),
    Stage("04", "04-web-server.ipynb", "the web server's nginx settings", _web_ready),
    Stage("07", "07-helm.ipynb", "the Helm release k8s-lab", _helm_ready),
)}


# ============================================================================================
# The notebook session
# ============================================================================================

# helm commands that read only local files: the same files give the same answer, so a checkpoint
# asking again what the cell above it just ran is answered from memory (half a second each).
_OFFLINE_HELM = frozenset({"lint", "template"})


def _files_stamp(args: Sequence[str]) -> tuple:
    """Every file under the arguments that name local paths (a chart, a values file): path, size,
    modification time. A student's edit to any of them changes the stamp."""
    stamp = []
    for arg in args:
        path = Path(arg)
        if not arg.startswith("-") and path.exists():
            files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
            for file in files:
                info = file.stat()
                stamp.append((str(file), info.st_size, info.st_mtime_ns))
    return tuple(stamp)


@dataclass
class Command:
    """A finished kubectl/helm/docker command: what ran (as shown), its exit code and output."""

    shown: str
    returncode: int
    stdout: str
    stderr: str
    printed: bool = False  # the output was printed when the command ran

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def _ipython_display_(self) -> None:
        # As a cell's value, show the output only if it was not printed already (nbval runs cells
        # without history, where a trailing `;` does not suppress the value).
        if not self.printed:
            print(f"$ {self.shown}\n{self.output.rstrip()}")

    @property
    def output(self) -> str:
        return (self.stdout or "") + (self.stderr or "")


class Lab:
    """One notebook's view of the lab: its parameters and the tools, scoped to cluster and namespace."""

    def __init__(self, notebook: str, params: Parameters):
        self.notebook = notebook
        self.params = params
        self._secrets: set[str] = set()
        self._offline_helm: dict[tuple, Command] = {}

    # ---------------------------------------------------------------------------- parameters

    cluster = property(lambda self: self.params.cluster)
    namespace = property(lambda self: self.params.namespace)
    mode = property(lambda self: self.params.mode)
    solutions = property(lambda self: self.params.solutions)
    context = property(lambda self: self.params.context)

    @property
    def target(self) -> Target:
        """Where this notebook acts, for every lab function it calls."""
        kubeconfig = self.params.kubeconfig
        return Target(self.cluster, self.namespace, kubeconfig=Path(kubeconfig) if kubeconfig else None)

    def _flags(self, context_flag: str) -> list[str]:
        """kubectl's (``--context``) or helm's (``--kube-context``) flags for this notebook's cluster."""
        kubeconfig = ["--kubeconfig", self.params.kubeconfig] if self.params.kubeconfig else []
        return [*kubeconfig, context_flag, self.context]

    @property
    def default_namespace(self) -> bool:
        return self.namespace == config.NAMESPACE

    @property
    def image_mode(self) -> str:
        """``online`` or ``offline`` (``auto`` asks whether a registry answers, once)."""
        from lab.build.images import resolve_mode

        return resolve_mode(self.mode)

    def images(self) -> dict[str, str]:
        from lab.build.images import image_names

        return image_names(self.image_mode)

    @property
    def pv_name(self) -> str:
        return DEFAULT_PV if self.default_namespace else f"{DEFAULT_PV}-{self.namespace}"

    @property
    def pv_node_path(self) -> str:
        """The database's hostPath inside the kind nodes."""
        suffix = "" if self.default_namespace else f"-{self.namespace}"
        return f"{NODE_DATA_PATH}/pv/database{suffix}"

    @property
    def pv_host_path(self) -> Path:
        """The same directory on this machine (the nodes mount the lab data directory)."""
        return self.target.data_dir / Path(self.pv_node_path).relative_to(NODE_DATA_PATH)

    @property
    def classroom(self) -> str | None:
        """The student's namespace when the kubeconfig is a classroom's (`lab classroom up`): the
        notebook then skips what acts on the cluster itself and does the namespaced part."""
        from lab.cluster import classroom

        return classroom.detect(self.context, self.params.kubeconfig or None)

    @property
    def quota_name(self) -> str:
        """The namespace's ResourceQuota: the lab's (notebook 02), or in a classroom the instructor's."""
        from lab.cluster import classroom

        return classroom.QUOTA_NAME if self.classroom else "lab-quota"

    @property
    def limits_name(self) -> str:
        """The namespace's LimitRange: the lab's (notebook 02), or in a classroom the instructor's."""
        from lab.cluster import classroom

        return classroom.LIMITS_NAME if self.classroom else "lab-limits"

    def in_classroom(self, what: str) -> bool:
        """Whether this notebook runs in a classroom, where the step ``what`` (a key of
        :data:`CLASSROOM_NOTES`: something that acts on the cluster itself) is left out or done
        another way; if so, after one line saying why. ``if not nb.in_classroom("pv"): ...``"""
        note = classroom_note(what, self)
        if self.classroom is None:
            return False
        print(f"classroom: {note}")
        return True

    def __repr__(self) -> str:
        return (f"<lab notebook {self.notebook}: cluster {self.cluster}, namespace {self.namespace}, "
                f"mode {self.mode}, solutions {self.solutions}>")

    # -------------------------------------------------------------------------------- tools

    def _tool(self, name: str) -> Path:
        from lab.host import tools

        path = tools.find(name)
        if path is None:
            raise LabError(f"{name} is not available yet",
                           hint="run 01-kind-cluster.ipynb (or `lab cluster up`), which provides kind, kubectl and helm")
        return path

    def remember_secret(self, *values: str) -> None:
        """Values that must never appear in printed output (replaced by runner.REDACTED)."""
        self._secrets |= {v for v in values if v and len(v) >= 4}

    def redact(self, text: str) -> str:
        secrets = set(self._secrets)
        try:
            from lab.system import deploy

            secrets |= deploy._known_secrets(self.target)
        except Exception:  # noqa: BLE001 - redaction of the committed defaults is a courtesy
            pass
        return runner.redact(text, secrets)

    def run(self, argv: Sequence[str], shown: str, *, stdin: str | None = None, check: bool = True,
            show: bool = True, timeout: float = 120, what: str | None = None) -> Command:
        """Run a command, print ``$ shown`` and its (redacted) output; LabError when it fails and
        ``check`` is set."""
        from lab.host import tools

        if show:
            print(f"$ {shown}")
        proc = runner.run(argv, what=shown, input=stdin, timeout=timeout, check=False, env=tools.env_with_tools(),
                          hint="is the cluster busy or down? `lab cluster status`")
        result = Command(shown, proc.returncode, self.redact(proc.stdout or ""), self.redact(proc.stderr or ""), show)
        return self._present(result, show=show, check=check, what=what, announced=show)

    def _present(self, result: Command, *, show: bool, check: bool, what: str | None = None,
                 announced: bool = False) -> Command:
        """Print a finished command's output (and ``$ shown`` unless ``announced``); LabError when it
        failed and ``check`` is set."""
        if show:
            if not announced:
                print(f"$ {result.shown}")
            text = result.output.rstrip("\n")
            if text:
                print(text)
        if check and not result.ok:
            raise LabError(f"{what or result.shown} failed (exit {result.returncode})"
                           + ("" if show else f":\n{result.output.strip()[-2000:]}"),
                           hint=f"look at the output above; `kubectl --context {self.context} -n {self.namespace} "
                                "get events --sort-by=.lastTimestamp` shows what the cluster did")
        return result

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True, show: bool = True,
                namespaced: bool = True, timeout: float = 120) -> Command:
        """The lab's kubectl against this notebook's cluster (and namespace, unless ``namespaced=False``)."""
        scope = ["--namespace", self.namespace] if namespaced else []
        argv = [self._tool("kubectl"), *self._flags("--context"), *scope, *args]
        shown = " ".join(["kubectl", *self._flags("--context"), *(["-n", self.namespace] if namespaced else []),
                          *map(shlex.quote, args)])
        return self.run(argv, shown, stdin=stdin, check=check, show=show, timeout=timeout)

    def helm(self, *args: str, check: bool = True, show: bool = True, timeout: float = DEFAULT_TIMEOUT_S + 60,
             progress: bool = False) -> Command:
        """The lab's helm against this notebook's cluster and namespace. With ``progress`` the
        workloads' readiness is printed while helm waits."""
        argv = [self._tool("helm"), *self._flags("--kube-context"), "--namespace", self.namespace, *args]
        shown = " ".join(["helm", *self._flags("--kube-context"), "-n", self.namespace, *map(shlex.quote, args)])
        shown = shown.replace(str(config.REPO_ROOT) + "/", "")  # chart/ as typed from the repository root
        if not progress and args and args[0] in _OFFLINE_HELM and "--validate" not in args:
            key = (tuple(argv), _files_stamp(argv[1:]))
            if key not in self._offline_helm:
                self._offline_helm[key] = self.run(argv, shown, check=False, show=False, timeout=timeout)
            cached = self._offline_helm[key]
            return self._present(dataclasses.replace(cached, printed=show), show=show, check=check)
        if not progress:
            return self.run(argv, shown, check=check, show=show, timeout=timeout)
        from lab.host import tools
        from lab.system import deploy

        if show:
            print(f"$ {shown}")
        # helm is silent while it waits: the progress line shows the workloads' readiness instead.
        with step(f"helm {args[0]}") as waiting, waiting.following(lambda: deploy.summary(self.target)):
            proc = runner.run(argv, what=shown, timeout=timeout, check=False, env=tools.env_with_tools(),
                              hint=f"kubectl --context {self.context} -n {self.namespace} get pods")
        out, err = proc.stdout, proc.stderr
        result = Command(shown, proc.returncode, self.redact(out or ""), self.redact(err or ""), show)
        if show and result.output.strip():
            print(result.output.rstrip("\n"))
        if check and not result.ok:
            raise LabError(f"{shown} failed (exit {result.returncode})",
                           hint=f"look at the output above; kubectl --context {self.context} -n {self.namespace} "
                                "get pods,events")
        return result

    def helm_upgrade(self, *values: str, install: bool = False, timeout: int = 300, check: bool = True,
                     chart: str | Path = CHART_DIR) -> Command:
        """``helm upgrade [--install]`` of the lab's release from ``chart`` (chart/, or a student's
        copy of it) with the options every upgrade passes (``helm_set_args``) plus ``values`` (e.g.
        ``"--set", "web.replicas=6"``), waiting for every workload and printing their readiness meanwhile."""
        # A classroom's student may not even try to create the namespace (it is there: the instructor's).
        create = () if self.classroom else ("--create-namespace",)
        first = ("--install", RELEASE, str(chart), *create) if install else (RELEASE, str(chart))
        # The chart's NOTES once, at the install; each upgrade would print them again.
        first += () if install else ("--hide-notes",)
        from lab.system import deploy

        # The namespace's Pod Security labels and the volumes' host directories, as `lab deploy --helm`
        # (from chart/: a student's copy changes templates, not the namespace or the volumes); in a
        # classroom both are the instructor's.
        if self.classroom is None:
            try:
                deploy.prepare_for_helm(self.target, [*helm_set_args(self), *values])
            except LabError:
                pass  # a values file helm cannot render: the upgrade below shows helm's own message
        return self.helm("upgrade", *first, "--history-max", str(HELM_HISTORY_MAX), *helm_set_args(self), *values,
                         "--wait", "--timeout", f"{timeout}s", timeout=timeout + 60, progress=True, check=check)

    def docker(self, *args: str, check: bool = True, show: bool = True, timeout: float = 60) -> Command:
        from lab.host import docker

        return self.run([docker.executable(), *args], " ".join(["docker", *map(shlex.quote, args)]),
                        check=check, show=show, timeout=timeout)

    # ----------------------------------------------------------------------------- manifests

    def render(self, path: str | Path) -> str:
        """The YAML that :meth:`apply` applies for ``path`` (a layer such as ``02-database`` or one
        file such as ``02-database/secret.yaml``, relative to manifests/): the mode's images, and
        for another namespace, rewritten for it."""
        from lab.system import deploy

        full = Path(path) if Path(path).is_absolute() else MANIFESTS_DIR / path
        if not full.exists():
            raise LabError(f"no manifest {path} in {MANIFESTS_DIR}", hint="is this a complete checkout?")
        if full.is_dir():
            text = deploy.render_layer(full, self.image_mode)
        else:
            text = deploy.substitute_images(full.read_text(), deploy.image_substitutions(self.image_mode))
        from lab.system import credentials

        return credentials.fill(rewrite_namespace(text, self.namespace), self.target)

    def apply(self, path: str | Path) -> Command:
        """``kubectl apply`` of a manifest layer or file; prints the command a student would type."""
        text = self.render(path)
        from lab.system import hostdirs
        from lab.system import deploy

        documents = [d for d in yamldoc.load_all(text) if d]
        self.remember_secret(*deploy._secret_values(documents))
        hostdirs.prepare(documents, self.cluster)
        rel = Path(path)
        shown_path = f"manifests/{rel}" + ("/" if (MANIFESTS_DIR / rel).is_dir() else "")
        print(f"$ kubectl {' '.join(self._flags('--context'))} apply -f {shown_path}"
              + ("" if self.default_namespace else f"   # rewritten for namespace {self.namespace}"))
        argv = [self._tool("kubectl"), *self._flags("--context"), "apply", "-f", "-"]
        result = self.run(argv, f"kubectl apply -f {shown_path}", stdin=text, show=False, check=False)
        if result.output.strip():
            print(result.output.rstrip("\n"))
        result.printed = True
        if not result.ok:
            raise LabError(f"kubectl apply -f {shown_path} failed (exit {result.returncode})",
                           hint="read kubectl's message above; `kubectl explain KIND.FIELD` explains a field")
        return result

    # ------------------------------------------------------------------------------ cluster

    def node_containers(self) -> list[str]:
        """The Docker containers that are this cluster's nodes (stopped ones included)."""
        from lab.host import docker

        try:
            listed = docker.run(["ps", "-a", "--filter", f"label=io.x-k8s.kind.cluster={self.cluster}",
                                 "--format", "{{.Names}}"], check=False, timeout=30)
        except LabError:  # no Docker at all
            return []
        return sorted(listed.stdout.decode().split()) if listed.returncode == 0 else []

    def cluster_up(self):
        """The lab's ``lab cluster up``: reuse the running cluster (same number of nodes, stopped
        node containers restarted), create it when there is none. Never deletes or recreates.
        Another kind cluster named by the ``cluster`` parameter is only checked, not created."""
        from lab.cluster import kind as lab_cluster

        if self.cluster != config.CLUSTER_NAME:
            healthy, reason, names = lab_cluster.health(self.target)
            if not healthy:
                raise LabError(f"cluster {self.cluster} is not usable: {reason}",
                               hint=f"the lab creates and repairs only its own cluster {config.CLUSTER_NAME!r}")
            from lab.host import docker

            image = docker.output(["inspect", "--format", "{{.Config.Image}}", f"{self.cluster}-control-plane"])
            return lab_cluster.ClusterInfo(self.cluster, self.context, image, names, created=False)
        return lab_cluster.up(self.target, mode=self.mode, recreate=False)

    # -------------------------------------------------------------------------------- state

    def read(self, kind: str, name: str, namespace: str | None = None):
        """One object through the API, or None when it does not exist (Pod, Service, Secret,
        ConfigMap, PersistentVolume, PersistentVolumeClaim, Deployment, StatefulSet, Namespace...)."""
        from kubernetes.client.exceptions import ApiException

        from lab.cluster import kube

        core, apps = kube.core(self.target), kube.apps(self.target)
        ns = namespace or self.namespace
        readers = {
            "Namespace": lambda: core.read_namespace(name, _request_timeout=10),
            "PersistentVolume": lambda: core.read_persistent_volume(name, _request_timeout=10),
            "Node": lambda: core.read_node(name, _request_timeout=10),
            "Pod": lambda: core.read_namespaced_pod(name, ns, _request_timeout=10),
            "Service": lambda: core.read_namespaced_service(name, ns, _request_timeout=10),
            "Secret": lambda: core.read_namespaced_secret(name, ns, _request_timeout=10),
            "ConfigMap": lambda: core.read_namespaced_config_map(name, ns, _request_timeout=10),
            "PersistentVolumeClaim": lambda: core.read_namespaced_persistent_volume_claim(name, ns, _request_timeout=10),
            "ResourceQuota": lambda: core.read_namespaced_resource_quota(name, ns, _request_timeout=10),
            "LimitRange": lambda: core.read_namespaced_limit_range(name, ns, _request_timeout=10),
            "Deployment": lambda: apps.read_namespaced_deployment(name, ns, _request_timeout=10),
            "StatefulSet": lambda: apps.read_namespaced_stateful_set(name, ns, _request_timeout=10),
        }
        if kind not in readers:
            raise LabError(f"cannot read kind {kind!r}", hint=f"one of {', '.join(readers)}")
        try:
            return readers[kind]()
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def pods(self, selector: str = "") -> "Any":
        """The namespace's Pods (matching a label selector) as a table: name, phase, ready,
        restarts, node, IP."""
        import pandas as pd

        from lab.cluster import kube

        items = kube.core(self.target).list_namespaced_pod(self.namespace, label_selector=selector,
                                                           _request_timeout=10).items
        rows = []
        for pod in sorted(items, key=lambda p: p.metadata.name):
            statuses = pod.status.container_statuses or []
            rows.append({
                "pod": pod.metadata.name,
                "phase": pod.status.phase,
                "ready": f"{sum(1 for s in statuses if s.ready)}/{len(pod.spec.containers)}",
                "restarts": sum(s.restart_count for s in statuses),
                "node": pod.spec.node_name,
                "ip": pod.status.pod_ip,
            })
        return pd.DataFrame(rows, columns=["pod", "phase", "ready", "restarts", "node", "ip"])

    def secret_value(self, name: str, key: str) -> str:
        """One value of a Secret, decoded, for use (never print it): it is remembered and redacted
        from everything this session prints."""
        secret = self.read("Secret", name)
        if secret is None:
            raise LabError(f"Secret {name} not found in namespace {self.namespace}",
                           hint="run 03-database.ipynb first (it creates the Secret)")
        data = secret.data or {}
        if key not in data:
            raise LabError(f"Secret {name} has no key {key!r}", hint=f"keys: {', '.join(sorted(data)) or 'none'}")
        value = base64.b64decode(data[key]).decode()
        self.remember_secret(value)
        return value

    def mysql(self, sql: str, *, user_key: str = "username", password_key: str = "password",
              database: str = "lab", pod: str = "database-0", show: bool = True, check: bool = True) -> Command:
        """Run SQL in the database Pod with ``kubectl exec``, logging in with the credentials of
        the Secret database-credentials. The password travels on kubectl's stdin (the first line,
        read by the shell in the Pod into MYSQL_PWD): it is never on a command line, never printed."""
        import textwrap

        from lab.ops.database import Database

        sql = textwrap.dedent(sql).strip()
        # A checkpoint usually follows the student's SQL and asks its own (``query``): its session
        # opens while kubectl runs.
        Database(self.target).prepare(database)
        user = self.secret_value("database-credentials", user_key) if user_key != "root" else "root"
        password = self.secret_value("database-credentials", password_key)
        if user_key != "root":
            self._secrets.discard(user)  # a user name is not a secret
        script = 'IFS= read -r MYSQL_PWD && export MYSQL_PWD && exec mysql --batch --user="$1" "$2"'
        args = ["exec", "-i", pod, "-c", "database", "--", "sh", "-c", script, "sh", user, database]
        if show:
            print(f"$ kubectl --context {self.context} -n {self.namespace} exec -i {pod} -c database -- "
                  f"mysql --batch --user={user} {database}   # password from Secret database-credentials, via stdin")
            for line in sql.strip().splitlines():
                print(f"  {line}")
        result = self.kubectl(*args, stdin=f"{password}\n{sql}\n", show=False, check=False)
        if show and result.output.strip():
            print(result.output.rstrip("\n"))
        result.printed = show
        if check and not result.ok:
            raise LabError(f"the SQL failed in {pod} (exit {result.returncode})",
                           hint=f"is the database ready? kubectl -n {self.namespace} logs {pod} -c database")
        return result

    def exec_in_pod(self, pod: str, *command: str, container: str | None = None, timeout: float = 30):
        """Run ``command`` in a container of ``pod`` and return what it printed (``.stdout``,
        ``.stderr``, ``.exit_code``, ``.ok``): ``kubectl exec`` without the kubectl, for checks
        that look inside a Pod."""
        from lab.cluster import kube

        return kube.exec_in_pod(self.target, pod, command, container=container, timeout=timeout)

    def query(self, sql: str, database: str = "lab") -> list[list[str]]:
        """The rows ``sql`` returns (lists of column values, no header), run as the database's root
        user: what checkpoints ask. It goes down the lab's own client session (lab.ops.database),
        not a kubectl and a login per question; a failure raises LabError with the server's error."""
        from lab.ops.database import Database

        return Database(self.target).sql(sql, database=database, timeout=60)

    def web_url(self, path: str = "/") -> str:
        """The web Service from this machine: http://127.0.0.1:30080 (the kind port mapping), or a
        node's address and the Service's node port outside the default namespace."""
        svc = self.read("Service", "web")
        if svc is None:
            raise LabError(f"Service web not found in namespace {self.namespace}", hint="run 04-web-server.ipynb first")
        port = next((p.node_port for p in svc.spec.ports or [] if p.node_port), None)
        if port is None:
            raise LabError("Service web has no node port", hint="it must be of type NodePort")
        # kind publishes the control-plane node's port 30080 on the host (127.0.0.1:30080, or
        # $LAB_WEB_HOST_PORT for a second cluster): ask Docker where.
        from lab.host import docker

        mapped = docker.run(["port", f"{self.cluster}-control-plane", f"{port}/tcp"], check=False)
        lines = mapped.stdout.decode().split() if mapped.returncode == 0 and mapped.stdout else []
        if lines:
            host, _, host_port = lines[0].rpartition(":")
            return f"http://{host.strip('[]') or '127.0.0.1'}:{host_port}{path}"
        from lab.cluster import kube

        node = kube.core(self.target).list_node(_request_timeout=10).items[0]
        address = next(a.address for a in node.status.addresses if a.type == "InternalIP")
        return f"http://{address}:{port}{path}"

    def get_json(self, url: str, timeout: float = 5) -> Any:
        """GET ``url`` on a new connection and decode its JSON body."""
        import json
        import urllib.request

        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)

    def wait_http(self, url: str, what: str | None = None, timeout: float = 120) -> Any:
        """Wait until ``url`` answers with JSON (a new Service takes a moment until kube-proxy on
        every node knows it) and return the first answer."""
        from lab import checks

        answer: dict[str, Any] = {}

        def answers():
            try:
                answer["body"] = self.get_json(url)
            except Exception as error:  # noqa: BLE001 - refused, reset, timed out: not yet
                return checks.fail(f"GET {url}: {type(error).__name__}: {getattr(error, 'reason', error)}")
            return checks.ok(f"GET {url}: answered")

        self.wait_for(answers, what or url, timeout=timeout, interval=1,
                      hint=f"kubectl --context {self.context} -n {self.namespace} get service,endpointslices")
        return answer["body"]

    def workload_summary(self) -> str:
        """One line: ready/wanted per Deployment, StatefulSet and DaemonSet of the namespace."""
        from lab.system import deploy

        try:
            return deploy.summary(self.target)
        except Exception as error:  # noqa: BLE001 - progress output must not break the wait
            return f"(the API server did not answer: {type(error).__name__})"

    # -------------------------------------------------------------------------------- waiting

    def wait_for(self, verify: Callable[[], Any], what: str, timeout: float = 300, interval: float = 2,
                 hint: str | None = None) -> Any:
        """Poll ``verify`` (a checks.* verification: returns ``Result``/bool/tuple) until it
        passes. Prints the state whenever it changes, with the seconds waited; a LabError with the
        last state and a hint when ``timeout`` passes. Returns the passing result."""
        with timing.measure(timing.WAIT):
            return self._poll(verify, what, timeout, interval, hint)

    def _poll(self, verify: Callable[[], Any], what: str, timeout: float, interval: float,
              hint: str | None) -> Any:
        from lab import checks

        began = time.monotonic()
        last = None
        while True:
            try:
                result = checks._as_result(verify())
            except Exception as error:  # noqa: BLE001 - a transient API error: keep waiting
                result = checks.fail(f"{type(error).__name__}: {error}"[:300])
            elapsed = time.monotonic() - began
            if result.message != last:
                print(f"  [{elapsed:4.0f}s] {result.message}")
                last = result.message
            if result.passed:
                print(f"{what}: ready after {elapsed:.0f}s")
                return result
            if elapsed > timeout:
                raise LabError(f"{what} not ready after {timeout:.0f}s: {result.message}",
                               hint=hint or f"kubectl --context {self.context} -n {self.namespace} get pods,events")
            time.sleep(interval)

    # -------------------------------------------------------------------------- prerequisites

    def require(self, *stages: str | tuple[str, Callable[[], Any]]) -> None:
        """Check that the notebooks this one builds on have run, in order; the first whose state
        is missing is named in a LabError ("run 02-storage.ipynb first").

        A stage is a notebook number from :data:`STAGES` or a pair (notebook file, verify)."""
        for stage in stages:
            if isinstance(stage, tuple):
                name, verify, leaves = stage[0], stage[1], "what it sets up"
                result = verify()
            else:
                known = STAGES.get(str(stage).zfill(2))
                if known is None:
                    raise LabError(f"unknown prerequisite {stage!r}", hint=f"known: {', '.join(STAGES)}")
                name, leaves = known.notebook, known.leaves
                try:
                    result = known.verify(self)
                except LabError as error:
                    result = (False, error.message)
                except Exception as error:  # noqa: BLE001 - an unreachable cluster, a missing kubeconfig
                    result = (False, f"{type(error).__name__}: {error}"[:300])
            from lab import checks

            result = checks._as_result(result)
            if not result.passed:
                extra = "" if self.default_namespace else f" -p namespace={self.namespace}"
                raise LabError(f"{self.notebook} builds on {name}, which sets up {leaves}: {result.message}",
                               hint=f"run {name} first (headless: `lab run {name[:2]}{extra}`), then this notebook again")
            print(f"prerequisite {name}: ok")


def start(notebook: str, *, cluster: Any = DEFAULTS["cluster"], namespace: Any = DEFAULTS["namespace"],
          mode: Any = DEFAULTS["mode"], solutions: Any = DEFAULTS["solutions"], kubeconfig: Any = DEFAULTS["kubeconfig"],
          requires: Sequence[str | tuple[str, Callable[[], Any]]] = ()) -> Lab:
    """Validate the parameters, point lab.checks at the cluster and namespace, check the
    prerequisites and return the notebook's :class:`Lab`. Call it in the cell after ``parameters``."""
    install_error_display()
    params = validate_parameters(cluster, namespace, mode, solutions, kubeconfig)
    from lab import checks

    checks.configure(namespace=params.namespace, context=params.context, notebook=Path(notebook).name,
                     kubeconfig=params.kubeconfig or None)
    lab = Lab(Path(notebook).name, params)
    check_classroom_namespace(lab.classroom, params.namespace)
    print(f"{lab.notebook}: cluster {params.cluster} (context {params.context}), namespace {params.namespace}, "
          f"mode {params.mode}, solutions {'shown' if params.solutions else 'left to you'}"
          + (f"; classroom: only namespace {lab.classroom} is yours" if lab.classroom else ""))
    lab.require(*requires)
    work_dir()
    # The client library builds the core API group's few hundred model classes when it is first
    # used (over half a second), and every checkpoint's record names the cluster (its UID, version
    # and nodes, read once per kernel): both here, rather than in the first checkpoint a student runs.
    import kubernetes.client.api.core_v1_api  # noqa: F401
    checks.cluster_identity()
    return lab


def check_classroom_namespace(classroom: str | None, namespace: str) -> None:
    """A classroom kubeconfig works in one namespace: the ``namespace`` parameter must name it."""
    if classroom is not None and classroom != namespace:
        raise LabError(f"your classroom kubeconfig works in namespace {classroom}, not {namespace}",
                       hint=f'set namespace = "{classroom}" in the parameters cell (with lab run: -p namespace={classroom})')


# What a classroom's student may not do, and the line a notebook prints where it leaves the step
# out or does it another way (Lab.in_classroom).
CLASSROOM_NOTES = {
    "namespace": "your instructor created the namespace {namespace}",
    "quota": "your instructor set the namespace's quota and limits ({quota}, {limits}); the steps below read those",
    "pv": "your instructor created the PersistentVolume {pv} (and its host directory)",
    "nodes": "the cluster's nodes are your instructor's: looking inside them needs the host's Docker",
    "images": "the nodes lack an image the next step needs: ask your instructor to load it (lab images build)",
    "canary": "the canary may not have a namespace of its own, so it runs in {namespace}; your instructor's "
              "policy {open} admits every Pod there, and policies only ever add what they allow, so the canary "
              "denies its client's egress instead of its server's ingress",
    "open-namespace": "inside {namespace} your instructor's policies make an open namespace: {isolation} keeps the "
                      "other students out, {open} lets your Pods reach each other (step 3 replaces it; applied "
                      "again here for a run after that)",
    "other-namespace": "you may not create another namespace, so the source \"outside\" is left out; "
                       "your instructor's policy {isolation} keeps every other namespace of the class out",
    "open-policy": "your instructor's policy {open} admits every Pod of {namespace}, as a namespace without "
                   "policies would; while it is there no policy of yours can keep one out, so it goes "
                   "({isolation} stays and keeps the other students out)",
    "delete-namespace": "deleting {namespace} would delete your own access with it (your Role is in it): "
                        "this stage is left out",
}


def classroom_note(what: str, lab: "Lab") -> str:
    """The line :meth:`Lab.in_classroom` prints for ``what`` (a key of :data:`CLASSROOM_NOTES`)."""
    from lab.cluster import classroom

    if what not in CLASSROOM_NOTES:
        raise LabError(f"unknown classroom step {what!r}", hint=f"one of {', '.join(CLASSROOM_NOTES)}")
    return CLASSROOM_NOTES[what].format(namespace=lab.namespace, pv=lab.pv_name, quota=classroom.QUOTA_NAME,
                                        limits=classroom.LIMITS_NAME, open=classroom.OPEN_POLICY,
                                        isolation=classroom.ISOLATION_POLICY)


def work_dir() -> Path:
    """The folder the build tasks' %%writefile cells write to (next to the notebook)."""
    path = Path.cwd() / WORK_DIR
    path.mkdir(exist_ok=True)
    return path


# ============================================================================================
# Manifests for another namespace
# ============================================================================================


# ============================================================================================
# Helm
# ============================================================================================


def helm_set_args(lab: Lab) -> list[str]:
    """The ``--set`` arguments every helm install/upgrade of the notebooks passes: the mode's images
    (as ``lab deploy --helm`` does) and, outside the default namespace, that namespace's
    PersistentVolume, host directory and node port (the one the web Service already has)."""
    from lab.system import deploy

    from lab.ops import backup

    args = deploy.helm_image_args(lab.image_mode)
    if not lab.default_namespace:
        args += ["--set", f"storage.persistentVolumeName={lab.pv_name}", "--set", f"storage.hostPath={lab.pv_node_path}",
                 "--set", f"backup.persistentVolumeName=k8s-lab-backups-{lab.namespace}",
                 "--set", f"backup.hostPath={backup.node_backup_dir(lab.namespace)}"]
    if lab.classroom:
        # The instructor made the volumes, the quota and the limits (lab classroom up).
        args += ["--set", "storage.enabled=false", "--set", "namespace.quota.enabled=false",
                 "--set", "namespace.limitRange.enabled=false"]
        svc = lab.read("Service", "web")
        port = next((p.node_port for p in (svc.spec.ports if svc else None) or [] if p.node_port), None)
        if port:
            args += ["--set", f"web.nodePort={port}"]
    return args


def chart_objects(lab: Lab, extra: Sequence[str] = ()) -> list[dict]:
    """The objects ``helm template`` renders for this notebook's release (hooks and tests left out):
    [{"kind", "name", "api_version", "namespace" (None when cluster-scoped)}].

    Remembered in the lab cache (lab.memo) by the chart's files, helm's version, the namespace and
    the arguments: the same chart renders the same objects, and checkpoints asked for them again
    and again, each time a helm process (about 100 ms). An edited chart file is a new key."""
    import hashlib
    import json

    from lab import memo

    args = [*helm_set_args(lab), *extra]
    files = sorted(f"{path.relative_to(CHART_DIR)}={memo.file_key(path)}"
                   for path in CHART_DIR.rglob("*") if path.is_file())
    key = hashlib.sha256(json.dumps([config.HELM_VERSION, RELEASE, lab.namespace, args, files]).encode()).hexdigest()
    return memo.recall_one("chart-objects", key, lambda: _rendered_objects(lab, args))


def _rendered_objects(lab: Lab, args: Sequence[str]) -> list[dict]:
    result = lab.helm("template", RELEASE, str(CHART_DIR), *args, show=False)
    objects = []
    for doc in yamldoc.load_all(result.stdout):
        if not doc:
            continue
        meta = doc.get("metadata") or {}
        if "helm.sh/hook" in (meta.get("annotations") or {}):
            continue
        kind = doc.get("kind")
        objects.append({"kind": kind, "name": meta.get("name"), "api_version": doc.get("apiVersion"),
                        "namespace": None if kind in _CLUSTER_SCOPED else (meta.get("namespace") or lab.namespace)})
    return objects


def ownership(lab: Lab, objects: Iterable[Mapping[str, Any]]) -> list[dict]:
    """For each object: does it exist, and does Helm's ownership metadata name this release?"""
    from concurrent.futures import ThreadPoolExecutor

    from lab.cluster import kube

    def kind_of(obj: Mapping[str, Any]) -> tuple:
        return obj["kind"], obj["namespace"], obj.get("api_version")

    objects = list(objects)
    kinds = sorted({kind_of(obj) for obj in objects}, key=str)
    # Metadata only, one list per kind, eight at a time: the chart's two dozen objects are about
    # sixteen kinds; a kubectl per check (its start-up and discovery) cost more than all of them.
    # (The client keeps up to ten connections to the API server.)
    with ThreadPoolExecutor(max_workers=8) as pool:
        by_kind = dict(zip(kinds, pool.map(lambda kind: kube.metadata_by_name(lab.target, *kind), kinds)))
    rows = []
    for obj in objects:
        meta = by_kind[kind_of(obj)].get(obj["name"])
        if meta is None:
            rows.append({**obj, "exists": False, "managed_by": None, "release": None, "state": "to create"})
            continue
        labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
        owned = (labels.get("app.kubernetes.io/managed-by") == "Helm"
                 and notes.get("meta.helm.sh/release-name") == RELEASE
                 and notes.get("meta.helm.sh/release-namespace") == lab.namespace)
        rows.append({**obj, "exists": True, "managed_by": labels.get("app.kubernetes.io/managed-by"),
                     "release": notes.get("meta.helm.sh/release-name"),
                     "state": "owned by the release" if owned else "to adopt"})
    return rows


def release_revisions(lab: Lab) -> list[dict]:
    """The release's revisions, oldest first, as [{"revision", "status", ...}]: what ``helm
    history`` says of them, read from Helm's release records through the API (no helm to start).
    Empty when there is no release."""
    from lab.system import helm_records

    return helm_records.revisions(lab.target, RELEASE)


def release_record(lab: Lab, revision: int | None = None) -> dict | None:
    """The release at ``revision`` (default: the latest) as Helm stored it: ``info["description"]``
    and ``info["status"]``, ``config`` (what ``helm get values`` prints), ``manifest``. None when
    there is no such release. Read through the API (lab.system.helm_records), no helm to start."""
    from lab.system import helm_records

    return helm_records.record(lab.target, RELEASE, revision)


def helm_history(lab: Lab) -> list[dict]:
    """``helm history`` of the release as a list of dicts (revision, status, description, ...)."""
    import json

    result = lab.helm("history", RELEASE, "--output", "json", show=False, check=False)
    if not result.ok:
        if "not found" in result.output:
            return []
        raise LabError(f"helm history failed: {result.output.strip()[-500:]}")
    return json.loads(result.stdout or "[]")


# ============================================================================================
# nbval: compare what a student sees, not the evidence record
# ============================================================================================


def nbval_skip_checkpoint_records(items: Iterable[Any]) -> int:
    """Make nbval skip the checkpoint evidence (MIME application/vnd.k8s-lab.checkpoint+json: a
    JSON record with timestamps, UIDs and hashes, different on every run) when it compares a cell's
    outputs; the PASS/FAIL line (text/plain and text/html) is still compared. Called from
    notebooks/conftest.py. Returns how many notebooks were changed."""
    from lab.checks import MIME_TYPE

    changed = set()
    for item in items:
        parent = getattr(item, "parent", None)
        skip = getattr(parent, "skip_compare", None)
        if isinstance(skip, tuple) and MIME_TYPE not in skip:
            parent.skip_compare = (*skip, MIME_TYPE)
            changed.add(id(parent))
    return len(changed)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
