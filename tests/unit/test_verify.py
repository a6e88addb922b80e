"""`lab cluster verify` without a cluster: choosing upstream tests, reading e2e.test's listing and
JUnit report, following its output, and the table."""
from __future__ import annotations

import io
import re

import pytest
from click.testing import CliRunner
from rich.console import Console

from lab import cli
from lab.build import e2e
from lab.cluster import verify
from lab.errors import LabError
from lab.host import gobuild

DNS = "[sig-network] DNS should provide DNS for services [Conformance]"
DENY = ("[sig-network] Netpol NetworkPolicy between server and client should support a "
        "'default-deny-ingress' policy [Feature:NetworkPolicy]")
DENY_UDP = ("[sig-network] Netpol [LinuxOnly] NetworkPolicy between server and client using UDP should "
            "support a 'default-deny-ingress' policy [Feature:NetworkPolicy]")
ROLLING = ("[sig-apps] StatefulSet Basic StatefulSet functionality [StatefulSetBasic] should perform "
           "rolling updates and roll backs of template modifications [Conformance]")
ROLLING_PVC = ("[sig-apps] StatefulSet Basic StatefulSet functionality [StatefulSetBasic] should perform "
               "rolling updates and roll backs of template modifications with PVCs")
DISRUPTIVE = "[sig-network] DNS should survive a restart [Disruptive]"
NAMES = [DNS, DENY, DENY_UDP, ROLLING, ROLLING_PVC, DISRUPTIVE]

LISTING = "I1201 12:00:00.000000 1 test_context.go:560] some klog line\n" \
          "The following spec names can be used with 'ginkgo run --focus/skip':\n" + "".join(
              f"    k8s.io/kubernetes/test/e2e/x/file_{i}.go:{10 + i}: {name}\n" for i, name in enumerate(NAMES)) + "\n"


def test_listing_yields_every_name_and_nothing_else():
    assert verify.parse_listing(LISTING) == NAMES


def test_a_curated_area_matches_its_names_exactly_with_any_trailing_tags():
    area = verify.Area("x", "[sig-apps] StatefulSet Basic StatefulSet functionality [StatefulSetBasic]",
                       ("should perform rolling updates and roll backs of template modifications",))
    selection = verify.Selection(area.patterns(), curated=True)
    # The variant "... with PVCs" is another test: a curated name never takes its longer relatives.
    assert selection.pick(NAMES) == [ROLLING]


def test_the_netpol_area_takes_the_tcp_test_not_its_udp_twin():
    selection = verify.Selection(verify.Area("np", verify.NETPOL, ("should support a 'default-deny-ingress' policy",))
                                 .patterns(), curated=True)
    assert selection.pick(NAMES) == [DENY]


def test_a_curated_name_leaves_out_its_cloud_provider_twin():
    gce = "[sig-network] DNS should provide DNS for services [Provider:GCE]"
    selection = verify.Selection.of(quick=True)
    names = [n for n in selection.pick([*NAMES, gce, *_quick_names()])]
    assert DNS in names and gce not in names


def _quick_names() -> list[str]:
    return [name for area in verify.QUICK_AREAS for name in area.names()]


def test_a_curated_name_that_upstream_renamed_is_an_error_naming_it():
    selection = verify.Selection(verify.Area("dns", "[sig-network] DNS", ("should provide DNS for the moon",))
                                 .patterns(), curated=True)
    with pytest.raises(LabError, match="moon") as raised:
        selection.pick(NAMES)
    assert "--list-tests" in raised.value.hint


def test_focus_replaces_the_selection_and_default_skips_stay():
    assert verify.Selection.of(focus="DNS").pick(NAMES) == [DNS]
    assert verify.Selection.of(focus="DNS", skip="Conformance").pick(NAMES) == [DISRUPTIVE]


def test_focus_matching_nothing_or_a_bad_regex_is_an_error():
    with pytest.raises(LabError, match="no upstream test matches"):
        verify.Selection.of(focus="nothing like this").pick(NAMES)
    with pytest.raises(LabError, match="invalid regular expression"):
        verify.Selection.of(focus="(").pick(NAMES)
    with pytest.raises(LabError, match="--quick and --focus"):
        verify.Selection.of(focus="DNS", quick=True)


def test_quick_is_one_test_per_area_and_every_quick_test_is_in_the_default_selection():
    default = set(verify.Selection.of().focus)
    quick = verify.Selection.of(quick=True)
    assert quick.curated and set(quick.focus) <= default
    assert len({a.name for a in verify.QUICK_AREAS}) == len(verify.QUICK_AREAS) == len(quick.focus)


def test_the_default_selection_covers_every_area_the_lab_relies_on():
    areas = {a.name for a in verify.DEFAULT_AREAS}
    assert {"NetworkPolicy", "Services", "DNS", "StatefulSet", "DaemonSet", "ConfigMap volumes",
            "Secret volumes", "downward API", "hostPath PersistentVolumes"} <= areas
    netpol = next(a for a in verify.DEFAULT_AREAS if a.name == "NetworkPolicy").tests
    assert any("ingress" in t for t in netpol) and any("egress" in t for t in netpol)


def test_the_ginkgo_focus_matches_exactly_the_selected_names_as_ginkgo_sees_them():
    focus = re.compile(verify.ginkgo_focus([ROLLING, DENY]))
    # ginkgo matches "<suite description> <full name>"
    seen = [n for n in NAMES if focus.search(f"Kubernetes e2e suite {n}")]
    assert seen == [DENY, ROLLING]


def test_tests_that_need_more_nodes_are_held_back_on_a_small_cluster_and_say_why():
    rollback = "[sig-apps] Daemon set [Serial] should rollback without unnecessary restarts [Conformance]"
    simple = "[sig-apps] Daemon set [Serial] should run and stop simple daemon [Conformance]"
    selection = verify.Selection.of()
    assert selection.held_back([rollback, simple, DNS], schedulable=1) == {
        rollback: "needs 2 schedulable nodes, the cluster has 1"}
    assert selection.held_back([rollback, simple, DNS], schedulable=2) == {}
    # --focus is the user's choice: nothing is held back.
    assert verify.Selection.of(focus="Daemon").held_back([rollback], schedulable=1) == {}


def test_schedulable_nodes_leave_out_cordoned_and_no_schedule_tainted_ones():
    from kubernetes import client

    def node(unschedulable=None, taints=()):
        return client.V1Node(spec=client.V1NodeSpec(unschedulable=unschedulable, taints=[
            client.V1Taint(key=k, effect=e) for k, e in taints] or None))

    nodes = [node(taints=[("node-role.kubernetes.io/control-plane", "NoSchedule")]), node(),
             node(taints=[("example.com/slow", "PreferNoSchedule")]), node(unschedulable=True)]
    assert verify.schedulable_nodes(nodes) == 2


def test_an_empty_focus_is_refused_rather_than_running_every_test():
    with pytest.raises(LabError, match="every test"):
        verify.ginkgo_focus([])


def test_a_selection_too_long_for_one_command_line_is_refused():
    with pytest.raises(LabError, match="too many"):
        verify.ginkgo_focus([f"[sig-x] test number {i} " + "x" * 200 for i in range(1000)])


JUNIT = f"""<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="6" disabled="3" errors="0" failures="1" time="100.5">
  <testsuite name="Kubernetes e2e suite" package="/tmp" tests="6" disabled="0" skipped="3" errors="0" failures="1" time="100.5" timestamp="2026-12-01T12:00:00">
    <testcase name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="1.2"></testcase>
    <testcase name="[It] {DNS}" classname="Kubernetes e2e suite" status="passed" time="12.5"></testcase>
    <testcase name="[It] {DENY}" classname="Kubernetes e2e suite" status="failed" time="80.25">
      <failure message="" type="failed">[FAILED] probes failed: 3 of 81 wrong
In [It] at: k8s.io/kubernetes/test/e2e/network/netpol/test_helper.go:143 @ 12/01/26 12:01:00.000
</failure>
      <system-err>timeline</system-err>
    </testcase>
    <testcase name="[It] {ROLLING}" classname="Kubernetes e2e suite" status="skipped" time="0.5">
      <skipped message="skipped - Requires at least 2 nodes (not 1)"></skipped>
    </testcase>
    <testcase name="[It] {ROLLING_PVC}" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
    <testcase name="[ReportAfterSuite] Kubernetes e2e JUnit report" classname="Kubernetes e2e suite" status="passed" time="0.01"></testcase>
  </testsuite>
</testsuites>
"""


def test_junit_gives_the_selected_tests_in_order_with_why_they_failed_or_skipped():
    results = verify.parse_junit(JUNIT, [DENY, DNS, ROLLING, DENY_UDP])
    assert [(r.name, r.status) for r in results] == [
        (DENY, "failed"), (DNS, "passed"), (ROLLING, "skipped"), (DENY_UDP, "not run")]
    deny, dns, rolling, udp = results
    assert deny.seconds == pytest.approx(80.25) and deny.message == "[FAILED] probes failed: 3 of 81 wrong"
    assert rolling.message == "Requires at least 2 nodes (not 1)"
    # A skip is never a pass, and a selected test missing from the report is a failure.
    assert (dns.passed, rolling.passed, rolling.skipped, rolling.failed) == (True, False, True, False)
    assert udp.failed


def test_a_failed_suite_step_comes_first_as_a_failure():
    broken = JUNIT.replace('name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="1.2">',
                           'name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="failed" time="1.2">'
                           '<failure type="failed">[FAILED] there are not ready nodes</failure>')
    results = verify.parse_junit(broken, [DNS])
    assert [(r.name, r.status, r.message) for r in results][0] == (
        "[SynchronizedBeforeSuite]", "failed", "[FAILED] there are not ready nodes")


def test_an_unreadable_junit_report_says_where_the_log_is():
    with pytest.raises(LabError, match="cannot be read") as raised:
        verify.parse_junit("<testsuites><testsuite>", [DNS])
    assert "log" in raised.value.hint


def test_report_is_ok_only_without_failures_and_with_e2e_test_agreeing(tmp_path):
    def report(statuses, exit_code=0):
        results = [verify.Result(f"t{i}", s, 1.0) for i, s in enumerate(statuses)]
        return verify.Report("kind-x", 1, tmp_path, results, 3.0, len(results), tmp_path / "log",
                             tmp_path / "junit.xml", exit_code)

    assert report(["passed", "skipped"]).ok
    assert not report(["passed", "failed"], exit_code=1).ok
    assert not report(["passed", "not run"]).ok
    assert not report(["passed"], exit_code=1).ok
    assert report(["passed", "skipped", "timedout"]).counts() == {"passed": 1, "failed": 1, "skipped": 1}


GINKGO_STREAM = f"""Running Suite: Kubernetes e2e suite - /root
Will run 3 of 7000 specs
------------------------------
{DNS}
k8s.io/kubernetes/test/e2e/network/dns.go:137
  STEP: Creating a kubernetes client @ 12/01/26 12:00:00.1
• [12.500 seconds]
------------------------------
{DENY}
k8s.io/kubernetes/test/e2e/network/netpol/network_policy.go:121
  STEP: probing @ 12/01/26 12:00:13.1
• [FAILED] [80.250 seconds]
{DENY}
------------------------------
{ROLLING}
S [SKIPPED] [0.500 seconds]
"""


def test_progress_counts_finished_specs_and_names_the_running_one():
    shown, log = [], io.StringIO()
    follow = verify._Progress(3, log, shown.append)
    for line in GINKGO_STREAM.splitlines():
        follow(line)
    assert (follow.done, follow.failed) == (3, 1)
    assert shown[-1].startswith("3/3 done, 1 failed; ") and ROLLING[:100] in shown[-1]
    assert any(s.startswith("1/3 done; ") and DENY[:100] in s for s in shown)
    assert log.getvalue() == GINKGO_STREAM


def test_the_table_shows_each_test_whole_with_its_result_and_seconds():
    results = [verify.Result(DENY, "failed", 80.25, "x"), verify.Result(DNS, "passed", 12.5),
               verify.Result(ROLLING, "skipped", 0.5, "needs 2 nodes")]
    console = Console(width=100_000, record=True, color_system=None)  # as print_whole prints piped output
    console.print(cli.verify_table(results, "lab cluster verify"), crop=False)
    lines = console.export_text().splitlines()
    rows = {name: next(l for l in lines if name in l) for name in (DENY, DNS, ROLLING)}
    assert re.search(r"failed\s+80\.2\s*$", rows[DENY]) or re.search(r"failed\s+80\.3\s*$", rows[DENY])
    assert re.search(r"passed\s+12\.5\s*$", rows[DNS])
    assert re.search(r"skipped\s+0\.5\s*$", rows[ROLLING])


def test_cli_refuses_quick_with_focus_before_building_anything(monkeypatch):
    monkeypatch.setattr(e2e, "e2e_binary", lambda: pytest.fail("built e2e.test"))
    result = CliRunner().invoke(cli.cli, ["cluster", "verify", "--quick", "--focus", "DNS"])
    assert result.exit_code == 1 and "--quick and --focus" in result.output


def test_cli_list_prints_the_selected_names(monkeypatch, tmp_path):
    monkeypatch.setattr(e2e, "e2e_binary", lambda: tmp_path / "e2e.test")
    monkeypatch.setattr(verify, "list_tests", lambda path: NAMES)
    result = CliRunner().invoke(cli.cli, ["cluster", "verify", "--list", "--focus", "StatefulSet"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [ROLLING, ROLLING_PVC]


# ------------------------------------------------------------------------------------ the build


IMAGES = """registry.k8s.io/e2e-test-images/agnhost:2.56
gcr.io/k8s-authenticated-test/agnhost:2.6
registry.k8s.io/e2e-test-images/busybox:1.37.0-1
registry.k8s.io/e2e-test-images/httpd:2.4.38-4
registry.k8s.io/e2e-test-images/httpd:2.4.39-4
registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7
registry.k8s.io/e2e-test-images/nginx:1.14-4
registry.k8s.io/e2e-test-images/volume/nfs:1.4
invalid.registry.k8s.io/invalid/alpine:3.1
registry.k8s.io/pause:3.10.1
"""


def test_image_list_is_read_from_e2e_test_output_and_grouped_by_dockerfile():
    listed = e2e.parse_image_list("I1201 klog noise: something\n" + IMAGES)
    assert len(listed) == 10
    assert e2e.plan(listed) == {
        "agnhost": ["registry.k8s.io/e2e-test-images/agnhost:2.56"],
        "httpd": ["registry.k8s.io/e2e-test-images/httpd:2.4.38-4", "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"],
        "tools": ["registry.k8s.io/e2e-test-images/busybox:1.37.0-1",
                  "registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7"],
    }


def test_a_manifest_without_an_image_the_lab_builds_is_an_error():
    listed = e2e.parse_image_list(IMAGES.replace("registry.k8s.io/e2e-test-images/httpd", "elsewhere.io/x/httpd"))
    with pytest.raises(LabError, match="names no httpd image"):
        e2e.plan(listed)


def test_e2e_test_is_a_go_test_binary_with_the_node_image_kubernetes_flags(monkeypatch, tmp_path):
    monkeypatch.setattr(gobuild, "go_version", lambda: "go1.24.0")
    monkeypatch.setattr(gobuild, "module_dir", lambda module, version: tmp_path)
    (tmp_path / "go.mod").write_text("module k8s.io/kubernetes\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n)\n")
    spec = e2e.e2e_build()
    assert spec.test and spec.packages == ("k8s.io/kubernetes/test/e2e",) and spec.binary_names() == ("e2e.test",)
    assert gobuild.build_verb(spec) == ["test", "-c", "-vet=off", "-x"]
    assert ("k8s.io/api", "k8s.io/api v0.34.4") in spec.replaces and "gitVersion=v1.34.4" in spec.ldflags
    assert not e2e.agnhost_build().test and gobuild.build_verb(e2e.agnhost_build()) == ["build", "-v"]
    # A test binary is a separate cache entry; every other build keeps the key it had.
    assert spec.key() != gobuild.GoBuild(**{**spec.__dict__, "test": False}).key()


def test_build_progress_names_packages_from_go_build_v_and_from_go_test_x():
    compile_line = ("/usr/local/go/pkg/tool/linux_amd64/compile -o $WORK/b123/_pkg_.a -trimpath \"$WORK/b123=>\" "
                    "-p k8s.io/api/core/v1 -lang=go1.24 -complete -buildid x/y -c=2 ./types.go")
    assert gobuild.compiled_package(compile_line, test=True) == "k8s.io/api/core/v1"
    assert gobuild.compiled_package("packagefile k8s.io/api/core/v1=/root/.cache/go-build/aa", test=True) is None
    assert gobuild.compiled_package("k8s.io/api/core/v1", test=False) == "k8s.io/api/core/v1"
    assert gobuild.compiled_package("# k8s.io/api/core/v1", test=False) is None
    with pytest.raises(LabError, match="exactly one package"):
        gobuild.build_verb(gobuild.GoBuild(name="x", packages=("a", "b"), test=True))
