"""`lab cluster verify`: Kubernetes' own end-to-end tests (upstream `e2e.test`) against a cluster.

e2e.test runs on this host with the cluster's admin kubeconfig, as upstream's CI runs it against
a kind cluster. What runs is a curated selection, per area the lab relies on, of upstream test
names; `--focus`/`--skip` choose another. The selection is resolved here against the names that
`e2e.test --list-tests` prints, and ginkgo is handed exactly those names, so what the table shows
is what was asked for: a selected test that did not run, or skipped itself, never reads as passed.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from lab import config, runner
from lab.build import e2e
from lab.cluster import kind, kube
from lab.errors import LabError
from lab.host import tools
from lab.progress import info, step
from lab.target import Target, kubeconfig_paths

# Trailing tags of a test name ([Conformance], [Feature:NetworkPolicy], [LinuxOnly], ...) that a
# curated name leaves out; everything before them must match exactly.
_TAGS = r"(?: \[[^\]]+\])*"
# Ginkgo's own timeout for the whole run: the full selection on 2 cores takes well under it.
SUITE_TIMEOUT_S = 3 * 3600
# Ginkgo matches each focus regex against the whole list; past this the command line is too long.
MAX_FOCUS_CHARS = 100_000
# Tests that harm the cluster they run on, that upstream itself calls unreliable, or that need one
# cloud provider's cluster (a curated name's [Provider:GCE] twin, say).
DEFAULT_SKIP = (r"\[Disruptive\]", r"\[Flaky\]", r"\[Provider:")


@dataclass(frozen=True)
class Area:
    """Upstream tests that cover one thing the lab relies on: names under a common prefix."""

    name: str
    prefix: str
    tests: tuple[str, ...]
    # Schedulable nodes the tests insist on (they fail, not skip, on fewer).
    min_nodes: int = 1

    def names(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix} {test}" for test in self.tests)

    def patterns(self) -> tuple[str, ...]:
        return tuple(curated_pattern(name) for name in self.names())


def curated_pattern(name: str) -> str:
    return f"^{re.escape(name)}{_TAGS}$"


NETPOL = "[sig-network] Netpol NetworkPolicy between server and client"
STATEFULSET = "[sig-apps] StatefulSet Basic StatefulSet functionality [StatefulSetBasic]"
LOCAL_PV = "[sig-storage] PersistentVolumes-local [Volume type: dir]"

DEFAULT_AREAS = (
    Area("NetworkPolicy", NETPOL, (
        "should support a 'default-deny-ingress' policy",
        "should support a 'default-deny-all' policy",
        "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
        "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
        "should enforce policy based on Ports",
        "should allow ingress access on one named port",
        "should allow egress access on one named port",
        "should deny egress from all pods in a namespace",
        "should enforce egress policy allowing traffic to a server in a different namespace based on "
        "PodSelector and NamespaceSelector",
        "should work with Ingress, Egress specified together",
        "should stop enforcing policies after they are deleted",
    )),
    Area("Services", "[sig-network] Services", (
        "should serve a basic endpoint from pods",
        "should serve multiport endpoints from pods",
        "should be able to create a functioning NodePort service",
        "should be able to change the type from ExternalName to NodePort",
        "should preserve source pod IP for traffic thru service cluster IP",
    )),
    Area("DNS", "[sig-network] DNS", (
        "should provide DNS for the cluster",
        "should provide DNS for services",
        "should resolve DNS of partial qualified names for services",
        "should provide DNS for pods for Hostname",
        "should provide DNS for pods for Subdomain",
        "should provide /etc/hosts entries for the cluster",
    )),
    Area("StatefulSet", STATEFULSET, (
        "should provide basic identity",
        "should adopt matching orphans and release non-matching pods",
        "should perform rolling updates and roll backs of template modifications",
        "should implement legacy replacement when the update strategy is OnDelete",
        "should have a working scale subresource",
        "should list, patch and delete a collection of StatefulSets",
    )),
    Area("DaemonSet", "[sig-apps] Daemon set [Serial]", (
        "should run and stop simple daemon",
        "should run and stop complex daemon",
        "should retry creating failed daemon pods",
        "should update pod when spec was updated and update strategy is RollingUpdate",
    )),
    # Conformance asserts two schedulable nodes for this one: on a 1-node lab it is held back.
    Area("DaemonSet across nodes", "[sig-apps] Daemon set [Serial]", (
        "should rollback without unnecessary restarts",
    ), min_nodes=2),
    Area("ConfigMap volumes", "[sig-storage] ConfigMap", (
        "should be consumable from pods in volume",
        "should be consumable from pods in volume with mappings",
        "updates should be reflected in volume",
        "optional updates should be reflected in volume",
    )),
    Area("Secret volumes", "[sig-storage] Secrets", (
        "should be consumable from pods in volume",
        "should be consumable from pods in volume with mappings",
        "optional updates should be reflected in volume",
    )),
    Area("downward API", "[sig-node] Downward API", (
        "should provide pod name, namespace and IP address as env vars",
        "should provide container's limits.cpu/memory and requests.cpu/memory as env vars",
    )),
    Area("downward API volume", "[sig-storage] Downward API volume", (
        "should provide podname only",
        "should update labels on modification",
        "should provide container's memory limit",
    )),
    Area("hostPath PersistentVolumes", "[sig-storage] PersistentVolumes CSI Conformance", (
        "should run through the lifecycle of a PV and a PVC",
    )),
    Area("node-directory PersistentVolumes", LOCAL_PV, (
        "One pod requesting one prebound PVC should be able to mount volume and read from pod1",
        "One pod requesting one prebound PVC should be able to mount volume and write from pod1",
        "Two pods mounting a local volume at the same time should be able to write from pod1 and read from pod2",
    )),
    Area("hostPath volumes", "[sig-storage] HostPath", (
        "should support r/w",
        "should support subPath",
    )),
)

# One quick test per area for `make test`: minutes, not the half hour of the full selection.
QUICK_AREAS = (
    Area("NetworkPolicy", NETPOL, ("should support a 'default-deny-ingress' policy",)),
    Area("Services", "[sig-network] Services", ("should serve a basic endpoint from pods",)),
    Area("DNS", "[sig-network] DNS", ("should provide DNS for services",)),
    Area("StatefulSet", STATEFULSET, ("should have a working scale subresource",)),
    Area("DaemonSet", "[sig-apps] Daemon set [Serial]", ("should run and stop simple daemon",)),
    Area("ConfigMap volumes", "[sig-storage] ConfigMap", ("should be consumable from pods in volume",)),
    Area("downward API", "[sig-node] Downward API",
         ("should provide pod name, namespace and IP address as env vars",)),
    Area("node-directory PersistentVolumes", LOCAL_PV,
         ("One pod requesting one prebound PVC should be able to mount volume and write from pod1",)),
)


@dataclass(frozen=True)
class Selection:
    """Which upstream tests run: names matching a focus regex and no skip regex (Python regular
    expressions, searched in the full names `e2e.test --list-tests` prints)."""

    focus: tuple[str, ...]
    skip: tuple[str, ...] = DEFAULT_SKIP
    # Curated: every focus regex names tests that must exist (none matching means upstream renamed one).
    curated: bool = False
    # (focus regex, schedulable nodes its tests need) where that is more than one.
    min_nodes: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, focus: str | None = None, skip: str | None = None, quick: bool = False) -> "Selection":
        """The CLI's choice: --focus replaces the curated selection, --skip the default skips."""
        if focus and quick:
            raise LabError("--quick and --focus both choose the tests", hint="use one of them")
        skips = (skip,) if skip else DEFAULT_SKIP
        if focus:
            return cls((focus,), skips)
        areas = QUICK_AREAS if quick else DEFAULT_AREAS
        return cls(tuple(p for area in areas for p in area.patterns()), skips, curated=True,
                   min_nodes=tuple((p, a.min_nodes) for a in areas if a.min_nodes > 1 for p in a.patterns()))

    def held_back(self, names: Iterable[str], schedulable: int) -> dict[str, str]:
        """Picked names whose tests need more schedulable nodes than the cluster has, with why:
        they would fail on the cluster's size, not on the kit."""
        held = {}
        for name in names:
            needed = max((n for p, n in self.min_nodes if re.search(p, name)), default=1)
            if needed > schedulable:
                held[name] = f"needs {needed} schedulable nodes, the cluster has {schedulable}"
        return held

    def pick(self, names: Iterable[str]) -> list[str]:
        names = list(names)
        try:
            focus = [re.compile(p) for p in self.focus]
            skip = [re.compile(p) for p in self.skip]
        except re.error as error:
            raise LabError(f"invalid regular expression {error.pattern!r}: {error}",
                           hint="--focus and --skip take Python regular expressions") from error
        if self.curated:
            unmatched = [_curated_name(f.pattern) for f in focus if not any(f.search(n) for n in names)]
            if unmatched:
                raise LabError(f"{len(unmatched)} curated test(s) are not in this e2e.test: "
                               + "; ".join(unmatched),
                               hint="upstream renamed them: find the new names with "
                                    "`e2e.test --list-tests` and update lab/cluster/verify.py")
        picked = [n for n in names if any(f.search(n) for f in focus) and not any(s.search(n) for s in skip)]
        if not picked:
            raise LabError(f"no upstream test matches --focus {self.focus[0]!r}"
                           + (f" and not --skip {'|'.join(self.skip)!r}" if self.skip else ""),
                           hint="the names are those `lab cluster verify --list` prints")
        return picked


def _curated_name(pattern: str) -> str:
    """The test name a curated pattern was made from (for messages)."""
    return re.sub(r"\\(.)", r"\1", pattern.removeprefix("^").removesuffix(f"{_TAGS}$"))


def parse_listing(text: str) -> list[str]:
    """Test names from `e2e.test --list-tests`: indented `file.go:LINE: NAME` lines."""
    names = []
    for line in text.splitlines():
        match = re.match(r"^\s+\S+\.go:\d+: (.+)$", line)
        if match:
            names.append(match.group(1).strip())
    return names


def ginkgo_focus(names: Sequence[str]) -> str:
    """One regex (Go's RE2) that matches exactly `names`: ginkgo matches it against
    "<suite description> <name>", so each name is anchored after a space and at the end."""
    if not names:
        raise LabError("no test to hand to ginkgo (an empty focus would run every test)",
                       hint="check the selection with `lab cluster verify --list`")
    focus = r" (?:" + "|".join(re.escape(n) for n in names) + r")$"
    if len(focus) > MAX_FOCUS_CHARS:
        raise LabError(f"{len(names)} tests selected, too many to name on one command line",
                       hint="narrow --focus (a few hundred tests at most per run)")
    return focus


# ------------------------------------------------------------------------------------- results


@dataclass
class Result:
    name: str
    status: str  # ginkgo's state: passed, failed, skipped, timedout, panicked, ...; or "not run"
    seconds: float
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def skipped(self) -> bool:
        return self.status in ("skipped", "pending")

    @property
    def failed(self) -> bool:
        return not (self.passed or self.skipped)


def parse_junit(xml: str | Path, selected: Sequence[str]) -> list[Result]:
    """The selected tests' results from e2e.test's JUnit report, in the order selected. The report
    lists every test of the suite (the unselected as skipped); suite-level steps that failed
    (a BeforeSuite, say) come first, and a selected test missing from it is "not run"."""
    text = Path(xml).read_text() if isinstance(xml, Path) else xml
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise LabError(f"the JUnit report cannot be read: {error}",
                       hint="e2e.test stopped while writing it; its log is beside it") from error
    found: dict[str, Result] = {}
    suite_failures = []
    for case in root.iter("testcase"):
        name = case.get("name", "")
        test = name.removeprefix("[It] ")
        status = case.get("status") or _status_from_children(case)
        result = Result(test, status, float(case.get("time") or 0), _message(case))
        if test != name:
            found[test] = result
        elif result.failed:
            suite_failures.append(result)
    return suite_failures + [found.get(n) or Result(n, "not run", 0.0, "missing from the JUnit report")
                             for n in selected]


def _status_from_children(case: ET.Element) -> str:
    for tag, status in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
        if case.find(tag) is not None:
            return status
    return "passed"


def _message(case: ET.Element) -> str:
    """The first line that says why: a skip's reason, a failure's [FAILED] line."""
    skipped = case.find("skipped")
    if skipped is not None:
        return (skipped.get("message") or "").removeprefix("skipped").strip(" -")
    for tag in ("failure", "error"):
        element = case.find(tag)
        if element is not None:
            lines = [l.strip() for l in (element.get("message") or element.text or "").splitlines() if l.strip()]
            flagged = [l for l in lines if l.startswith("[")]
            return (flagged or lines or [element.get("type") or tag])[0]
    return ""


@dataclass
class Report:
    target: str
    nodes: int
    out_dir: Path
    results: list[Result]
    seconds: float
    selected: int
    log: Path
    junit: Path
    exit_code: int = 0
    images: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"passed": sum(r.passed for r in self.results), "failed": sum(r.failed for r in self.results),
                "skipped": sum(r.skipped for r in self.results)}

    @property
    def ok(self) -> bool:
        """No selected test failed and e2e.test agrees (it exits non-zero on a suite-level failure too)."""
        return self.counts()["failed"] == 0 and self.exit_code == 0

    def write(self) -> Path:
        path = self.out_dir / "results.json"
        path.write_text(json.dumps({
            "target": self.target, "nodes": self.nodes, "seconds": round(self.seconds, 1),
            "selected": self.selected, "exit_code": self.exit_code, **self.counts(),
            "images": self.images, "junit": str(self.junit), "log": str(self.log),
            "results": [asdict(r) for r in self.results]}, indent=2) + "\n")
        return path


# ----------------------------------------------------------------------------------- running


class _Progress:
    """Reads ginkgo's verbose stream: a spec starts after a delimiter line with its name, and
    ends on a line that starts with its state ("• [12.3 seconds]", "• [FAILED] ...", "S [SKIPPED] ...")."""

    _END = re.compile(r"^(?:•|S|P)(?: \[(FAILED|SKIPPED|PENDING|TIMEDOUT|PANICKED|INTERRUPTED|ABORTED)\])?"
                      r"(?: \[[\d.]+ seconds\])?$")

    def __init__(self, total: int, log, show: Callable[[str], None]):
        self.total, self.log, self.show = total, log, show
        self.done = self.failed = 0
        self.current = ""
        self._after_delimiter = False

    def __call__(self, line: str) -> None:
        self.log.write(line + "\n")
        stripped = line.strip()
        if stripped.startswith("-----------------"):
            self._after_delimiter = True
            return
        if self._after_delimiter and stripped:
            self._after_delimiter = False
            if stripped.startswith("["):
                self.current = stripped
        match = self._END.match(stripped)
        if match:
            self.done += 1
            self.failed += match.group(1) not in (None, "SKIPPED", "PENDING")
        failed = f", {self.failed} failed" if self.failed else ""
        # An interrupted run prints more end lines than it had tests; the count never passes the total.
        self.show(f"{min(self.done, self.total)}/{self.total} done{failed}; {self.current[:120]}")


def default_out_dir() -> Path:
    return config.REPO_ROOT / "runs" / f"verify-{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%SZ}"


def list_tests(e2e_test: Path) -> list[str]:
    result = runner.run([e2e_test, "--list-tests"], timeout=300)
    names = parse_listing(result.stdout)
    if not names:
        raise LabError("`e2e.test --list-tests` listed no tests", hint=f"run {e2e_test} --list-tests by hand")
    return names


def prepare(target: Target, load: bool = True) -> tuple[Path, list[str]]:
    """e2e.test and the test images, built or reused, and the images loaded into a kind cluster's
    nodes; returns e2e.test and the image tags."""
    e2e_test = e2e.e2e_binary()
    tags = e2e.build_images(e2e_test)
    if load and target.is_kind:
        kind.load_images(target, tags)
    elif load:
        info(f"not a kind cluster: the nodes of {target.kube_context} must already hold {', '.join(tags)}")
    return e2e_test, tags


def run(target: Target, selection: Selection, out_dir: Path | None = None) -> Report:
    """Run the selected upstream tests against `target`; the report's results are per selected test."""
    target.require()
    if target.is_kind:
        kind.require(target)
    e2e_test, tags = prepare(target)
    names = selection.pick(list_tests(e2e_test))
    out = out_dir or default_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    all_nodes = kube.core(target).list_node(_request_timeout=30).items
    nodes = len(all_nodes)
    held = selection.held_back(names, schedulable_nodes(all_nodes))
    to_run = [n for n in names if n not in held]
    if not to_run:
        raise LabError(f"every selected test needs more schedulable nodes: {next(iter(held.values()))}",
                       hint="run them on a bigger cluster: `LAB_CLUSTER=NAME lab cluster up --workers 2`")
    log_path = out / "e2e.log"
    with _admin_kubeconfig(target) as kubeconfig, open(log_path, "w") as log:
        argv = [e2e_test, f"--kubeconfig={kubeconfig}", f"--context={target.kube_context}",
                "--provider=skeleton", f"--report-dir={out}", f"--kubectl-path={tools.ensure('kubectl')}",
                f"--ginkgo.focus={ginkgo_focus(to_run)}", "--ginkgo.v", "--ginkgo.no-color",
                f"--ginkgo.timeout={SUITE_TIMEOUT_S}s",
                # Test namespaces and their data land here, not in /tmp of whoever runs it.
                f"--e2e-output-dir={out}"]
        started = time.monotonic()
        with step(f"e2e.test: {len(to_run)} upstream tests on {target.kube_context} ({nodes} nodes)") as progress:
            result = runner.run(argv, timeout=SUITE_TIMEOUT_S + 600, check=False, cwd=out,
                                env=tools.env_with_tools(), on_line=_Progress(len(to_run), log, progress.update),
                                hint=f"the log so far is {log_path}")
    junit = out / "junit_01.xml"
    if not junit.is_file():
        raise LabError(f"e2e.test wrote no JUnit report (exit {result.returncode}): "
                       + (result.stderr.strip().splitlines() or ["no output"])[-1],
                       hint=f"its output is in {log_path}")
    results = parse_junit(junit, to_run) + [Result(n, "skipped", 0.0, why) for n, why in held.items()]
    report = Report(target.kube_context, nodes, out, results, time.monotonic() - started,
                    len(names), log_path, junit, result.returncode, tags)
    report.write()
    return report


def schedulable_nodes(nodes) -> int:
    """Nodes a test's Pods can land on: not cordoned, no NoSchedule taint (kind's control plane
    keeps one when the cluster has workers)."""
    return sum(1 for node in nodes if not node.spec.unschedulable
               and not any(t.effect == "NoSchedule" for t in node.spec.taints or []))


class _admin_kubeconfig:
    """A kind cluster's admin kubeconfig in a private temporary file (it holds the admin's key),
    or the kubeconfig file another cluster's target names."""

    def __init__(self, target: Target):
        self.target = target
        self.directory: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Path:
        if not self.target.is_kind:
            paths = kubeconfig_paths(self.target.kubeconfig)
            return paths[0]
        self.directory = tempfile.TemporaryDirectory(prefix="lab-verify-")
        path = Path(self.directory.name) / "kubeconfig"
        text = tools.run("kind", "get", "kubeconfig", "--name", self.target.cluster, timeout=60).stdout
        path.touch(mode=0o600)
        path.write_text(text)
        return path

    def __exit__(self, *exc) -> None:
        if self.directory is not None:
            self.directory.cleanup()
