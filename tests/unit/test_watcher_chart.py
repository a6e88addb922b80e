"""The watcher's implementation switch: chart value watcher.implementation (python | go) and
manifests/05-watcher/go/, with the same DaemonSet apart from image and command.

Renders the chart with the lab's helm (no cluster); without helm these tests FAIL, never skip.
"""
from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from lab import config
from lab.build import images
from lab.ops import eventlog
from lab.errors import LabError

CHART = config.REPO_ROOT / "chart"
LAYER = config.REPO_ROOT / "manifests" / "05-watcher"
DAEMONSET = "templates/watcher/daemonset.yaml"
HELM_ONLY_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}
PROGRAMS = {"python": ("k8s-lab/watcher:1", ["k8s-lab-watcher"]),
            "go": ("k8s-lab/watcher-go:1", ["k8s-lab-watcher-go"])}


def helm_template(helm, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(helm), "template", "k8s-lab", str(CHART), "--namespace", config.NAMESPACE,
                           "--show-only", DAEMONSET, *args], capture_output=True, text=True, timeout=120)


def daemonset(helm, *args: str) -> dict:
    result = helm_template(helm, *args)
    assert result.returncode == 0, result.stderr
    ds = yaml.safe_load(result.stdout)
    for meta in (ds["metadata"], ds["spec"]["template"]["metadata"]):
        for label in HELM_ONLY_LABELS:
            meta["labels"].pop(label, None)
    return ds


def container(ds: dict) -> dict:
    [main] = ds["spec"]["template"]["spec"]["containers"]
    return main


def without_program(ds: dict) -> dict:
    """The DaemonSet with its container's image and command blanked: what both programs share."""
    ds = copy.deepcopy(ds)
    container(ds).update(image=None, command=None)
    return ds


@pytest.mark.parametrize("implementation", ["python", "go"])
def test_the_implementation_picks_image_and_command_and_nothing_else(helm, implementation):
    ds = daemonset(helm, "--set", f"watcher.implementation={implementation}")
    image, command = PROGRAMS[implementation]
    assert (container(ds)["image"], container(ds)["command"]) == (image, command)
    assert without_program(ds) == without_program(daemonset(helm))


def test_the_default_is_python_as_in_the_notebooks_stored_outputs(helm):
    assert container(daemonset(helm))["image"] == "k8s-lab/watcher:1"
    assert yaml.safe_load((CHART / "values.yaml").read_text())["watcher"]["implementation"] == "python"


@pytest.mark.parametrize("implementation", ["python", "go"])
def test_the_manifests_are_the_chart_for_each_implementation(helm, implementation):
    path = LAYER / ("go/daemonset.yaml" if implementation == "go" else "daemonset.yaml")
    assert yaml.safe_load(path.read_text()) == daemonset(helm, "--set", f"watcher.implementation={implementation}")


def test_the_go_manifest_is_applied_only_on_request():
    from lab.system import deploy

    # `kubectl apply -f manifests/05-watcher/` (and lab deploy) take the folder's own files only.
    assert [p.name for p in deploy.layer_files(LAYER)] == ["daemonset.yaml", "rbac.yaml"]
    readme = (config.REPO_ROOT / "manifests" / "README.md").read_text()
    assert "kubectl --context kind-k8s-lab apply -f manifests/05-watcher/go/" in readme


@pytest.mark.parametrize("implementation", ["python", "go"])
def test_both_are_restricted_and_probed_for_liveness(helm, implementation):
    ds = daemonset(helm, "--set", f"watcher.implementation={implementation}")
    pod = ds["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    main = container(ds)
    assert main["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                       "capabilities": {"drop": ["ALL"]}}
    assert main["ports"] == [{"name": "health", "containerPort": 8081, "protocol": "TCP"}]
    probe = main["livenessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    assert probe["failureThreshold"] * probe["periodSeconds"] >= 30  # no restart on a short hiccup


@pytest.mark.parametrize("args, expected", [
    (["--set", "watcher.implementation=rust"], ["/watcher/implementation", "must be one of 'python', 'go'"]),
    (["--set", "watcher.implementation=Go"], ["/watcher/implementation", "must be one of"]),
    (["--set", "watcher.implementation="], ["/watcher/implementation", "must be one of"]),
    (["--set-json", "watcher.go.command=[]"], ["/watcher/go/command", "minItems"]),
    (["--set", "watcher.go.image=k8s-lab/watcher-go"], ["/watcher/go/image", "does not match pattern"]),
], ids=["unknown", "wrong-case", "empty", "no-go-command", "go-image-without-tag"])
def test_the_schema_rejects_bad_watcher_values(helm, args, expected):
    result = helm_template(helm, *args)
    assert result.returncode != 0, f"helm accepted {args}"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    for word in expected:
        assert word in result.stderr, result.stderr


def test_lab_watch_renders_either_implementation(helm):
    objects = {o["kind"]: o for o in eventlog.watcher_objects("somewhere", implementation="go",
                                                           env={"WATCH_TIMEOUT_SECONDS": "2"})}
    main = container(objects["DaemonSet"])
    assert (main["image"], main["command"]) == PROGRAMS["go"]
    assert {"name": "WATCH_TIMEOUT_SECONDS", "value": "2"} in main["env"]
    assert objects["DaemonSet"]["metadata"]["namespace"] == "somewhere"
    assert container({o["kind"]: o for o in eventlog.watcher_objects("x")}["DaemonSet"])["image"] == PROGRAMS["python"][0]
    with pytest.raises(LabError, match="unknown watcher implementation 'rust'"):
        eventlog.watcher_objects("x", implementation="rust")


def test_the_go_image_is_built_from_its_go_program_in_both_modes():
    for mode in ("online", "offline"):
        [spec] = [s for s in images.plan(mode) if s.tag == images.WATCHER_GO_IMAGE]
        assert spec.load and spec.go_binary == "k8s-lab-watcher-go" and spec.parent is None
    dockerfile = (images.IMAGES_DIR / "watcher-go" / "Dockerfile").read_text()
    assert "FROM scratch" in dockerfile and "USER 65534:65534" in dockerfile
    assert "COPY k8s-lab-watcher-go /usr/local/bin/k8s-lab-watcher-go" in dockerfile
