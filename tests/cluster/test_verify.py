"""Kubernetes' own end-to-end tests against the cluster under test: `lab cluster verify --quick`,
one upstream test per area the lab relies on, as a student or CI runs it.

The first run on a machine builds e2e.test and agnhost (minutes; later runs reuse the lab cache).
The tests create their own namespaces and remove them; the lab's namespace is not touched.
"""
from __future__ import annotations

import json

import pytest

from lab.cluster import verify
from tests.support import TARGET, lab_cli, say

pytestmark = pytest.mark.cluster

# A cold build of e2e.test plus the quick selection; a warm run takes a few minutes.
TIMEOUT_S = 3600


def test_quick_selection_passes_every_upstream_test_and_reports_each(tmp_path):
    out = tmp_path / "verify"
    result = lab_cli("cluster", "verify", "--quick", "--cluster", TARGET.cluster, "--out", str(out),
                     timeout=TIMEOUT_S)
    say(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "no output")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-4000:]}"
    report = json.loads((out / "results.json").read_text())
    statuses = {r["name"]: r["status"] for r in report["results"]}
    # Every quick test ran and passed: a skip (say, a test that needs more nodes) is not a pass.
    assert len(statuses) == report["selected"] == len(verify.QUICK_AREAS)
    assert set(statuses.values()) == {"passed"}, statuses
    assert (out / "junit_01.xml").is_file()
    for name in statuses:
        row = next((line for line in result.stdout.splitlines() if name in line), "")
        assert "passed" in row, f"no table row for {name}"
    assert f"{len(statuses)} passed, 0 failed, 0 skipped" in result.stdout
