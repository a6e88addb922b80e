"""lab.tasks without a cluster: what a student's file, command or answer gets as a message.

A bad file (not YAML, wrong kind, wrong namespace, missing name) is a message naming the line or
field, never an exception; a command that is not text or not the expected command is not run.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from lab import checks, notebook, tasks


@pytest.fixture
def lab():
    return notebook.Lab("x.ipynb", notebook.Parameters("k8s-lab", "k8s-assignment", "offline", False))


@pytest.mark.parametrize("text, message", [
    ("kind: Service\nmetadata:\n  name: web\n spec: {}\n", "is not valid YAML (line 4"),
    ("kind: Service\nmetadata: [web\n", "is not valid YAML (line 3"),
    ("", "is empty"),
    ("- just\n- a list\n", "document 1 is a list"),
    ("kind: Deployment\nmetadata: {name: web}\n", "this step wants Service, not 'Deployment'"),
    ("metadata: {name: web}\n", "kind is missing"),
    ("kind: Service\nmetadata: {namespace: k8s-assignment}\n", "metadata.name is missing"),
    ("kind: Service\nmetadata: {name: web, namespace: default}\n", "metadata.namespace is 'default'"),
])
def test_a_bad_file_gets_a_message_naming_the_problem(tmp_path, text, message):
    path = tmp_path / "web-service.yaml"
    path.write_text(text)
    problems = tasks.file_problems(path, ("Service",), "k8s-assignment")
    assert problems and any(message in p for p in problems), problems


def test_in_another_namespace_the_handouts_namespace_is_fine_and_another_is_not(tmp_path):
    """The handouts write k8s-assignment; in a classroom's namespace tasks.apply moves the object there."""
    path = tmp_path / "web-service.yaml"
    path.write_text("kind: Service\nmetadata: {name: web, namespace: k8s-assignment}\n")
    assert tasks.file_problems(path, ("Service",), "student-ann") == []
    path.write_text("kind: Service\nmetadata: {name: web, namespace: student-bob}\n")
    assert tasks.file_problems(path, ("Service",), "student-ann") == [
        f"{path}: Service web: metadata.namespace is 'student-bob', the lab works in 'student-ann'"]


def test_a_missing_file_says_which_cell_to_run(tmp_path):
    assert "run the %%writefile cell above first" in tasks.file_problems(tmp_path / "nope.yaml", ("Pod",), "ns")[0]


def test_a_good_file_has_no_problems(tmp_path):
    path = tmp_path / "rbac.yaml"
    path.write_text("kind: ServiceAccount\nmetadata: {name: watcher}\n---\nkind: Role\nmetadata: {name: r}\n"
                    "---\nkind: RoleBinding\nmetadata: {name: r, namespace: k8s-assignment}\n")
    assert tasks.file_problems(path, ("ServiceAccount", "Role", "RoleBinding"), "k8s-assignment") == []
    problems = tasks.file_problems(path, ("ServiceAccount", "Role", "RoleBinding", "Secret"), "k8s-assignment")
    assert problems == [f"{path}: there is no Secret in it"]


def test_apply_of_a_bad_file_prints_and_does_not_run_kubectl(tmp_path, lab, monkeypatch, capsys):
    monkeypatch.setattr(lab, "kubectl", lambda *a, **k: pytest.fail("kubectl must not run for a bad file"))
    path = tmp_path / "pv.yaml"
    path.write_text("kind: PersistentVolume\nmetadata:\n  name: pv\nspec:\n  capacity:\n  storage: 1Gi\n   x: 1\n")
    assert tasks.apply(lab, path, "PersistentVolume") is False
    out = capsys.readouterr().out
    assert "not valid YAML (line 7" in out and "run it and this cell again" in out


def test_fields_and_quantities():
    obj = {"spec": {"capacity": {"storage": "1Gi"}, "claimRef": None}}
    assert tasks.field(obj, "spec.capacity.storage") == "1Gi"
    assert tasks.field(obj, "spec.hostPath.path") is tasks.MISSING
    assert tasks.field(obj, "spec.claimRef.name") is tasks.MISSING
    assert tasks.quantity("1Gi") == 2**30 and tasks.quantity("500Mi") == 500 * 2**20 and tasks.quantity("100m") == 0.1
    assert tasks.quantity("lots") is None and tasks.quantity(None) is None


@pytest.mark.parametrize("command, subcommand, message", [
    (..., "backup create", "the command is still `...`; write it as text"),
    (42, "backup create", "the command is int 42"),
    ("lab backup create 'lab", "backup create", "is not a shell command line"),
    ("lab backup restore latest", "backup create", "is not a `lab backup create ...` command"),
    ("rm -rf /", "backup create", "is not a `lab backup create ...` command"),
])
def test_a_students_command_that_is_not_the_one_asked_for_is_not_run(lab, monkeypatch, capsys, command, subcommand, message):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("must not run"))
    run = tasks.run_lab(lab, command, subcommand)
    assert run.ok is False and message in capsys.readouterr().out


@pytest.mark.parametrize("command, message", [
    (None, "the command is NoneType None"),
    ("kubectl delete node x", "is not a `kubectl label node ...` command"),
    ("kubectl label node x a=b --context kind-other", "names a --context"),
])
def test_a_kubectl_command_is_checked_before_it_runs(lab, monkeypatch, capsys, command, message):
    monkeypatch.setattr(lab, "kubectl", lambda *a, **k: pytest.fail("must not run"))
    assert tasks.run_kubectl(lab, command, "label node") is False
    assert message in capsys.readouterr().out


def test_helm_values_are_compared_key_by_key():
    assert tasks._nested({"web": {"replicas": 2}}, {"web": {"replicas": 2}}) == []
    assert tasks._nested({"web": {"replicas": 3}}, {"web": {"replicas": 2}}) == ["web.replicas is 3"]
    assert tasks._nested({}, {"web": {"replicas": 2}}) == ["web.replicas is not set"]
    assert tasks._nested({"web": None}, {"web": {"replicas": 2}}) == ["web.replicas is not set"]


def test_a_values_file_that_is_not_a_mapping_is_not_used(tmp_path, lab, monkeypatch, capsys):
    monkeypatch.setattr(lab, "helm_upgrade", lambda *a, **k: pytest.fail("must not upgrade"))
    values = tmp_path / "values.yaml"
    values.write_text("- replicas: 2\n")
    assert tasks.helm_upgrade(lab, values) is False and "is not a mapping of values" in capsys.readouterr().out
    values.write_text("web:\n  replicas: 2\n replicas: 3\n")
    assert tasks.helm_upgrade(lab, values) is False and "is not valid YAML (line 3)" in capsys.readouterr().out


KIND_CONFIG = """kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    extraPortMappings: [{containerPort: 30080, hostPort: 30080, listenAddress: 127.0.0.1}]
    extraMounts: [{hostPath: LAB_DATA_DIR, containerPath: /var/local/k8s-lab}]
  - role: worker
    labels: {k8s-lab/database: "true"}
    extraMounts: [{hostPath: LAB_DATA_DIR, containerPath: /var/local/k8s-lab}]
  - role: worker
    extraMounts: [{hostPath: LAB_DATA_DIR, containerPath: /var/local/k8s-lab}]
"""


@pytest.mark.parametrize("change, message", [
    (None, None),
    (("listenAddress: 127.0.0.1", "listenAddress: 0.0.0.0"), "not on this machine only"),
    (("containerPort: 30080", "containerPort: 80"), "does not publish the web Service's node port"),
    (("labels: {k8s-lab/database: \"true\"}", "labels: {}"), "the database label is on nodes none"),
    (("  - role: worker\n    extraMounts", "  - role: worker\n    extraMountz"), "nodes[2].extraMounts does not mount"),
    ("one worker", "a control plane and 2 workers"),
    (("kind: Cluster", "kind: Config"), "are not kind's cluster configuration"),
])
def test_the_kind_configuration_check(tmp_path, lab, monkeypatch, change, message):
    from lab.host import docker

    if change == "one worker":
        text = KIND_CONFIG.rsplit("  - role: worker", 1)[0]
    else:
        text = KIND_CONFIG if change is None else KIND_CONFIG.replace(*change, 1)
    path = tmp_path / "kind-cluster.yaml"
    path.write_text(text)
    monkeypatch.setattr(docker, "run", _docker_with_a_running_cluster())
    result = tasks.kind_config(lab, path, workers=2)
    assert result.passed is (message is None), result.message
    if message:
        assert message in result.message
    else:
        assert result.message.endswith("the database label are right")


def _docker_with_a_running_cluster(port: bytes = b"127.0.0.1:30080\n"):
    """docker as it answers on a machine where the cluster k8s-lab runs and publishes ``port``."""
    def run(args, **kwargs):
        if args[:1] == ["inspect"]:
            running = args[-1] == "k8s-lab-control-plane"
            return subprocess.CompletedProcess(args, 0 if running else 1, b"true\n" if running else b"", b"")
        assert args[:2] == ["port", "k8s-lab-control-plane"], args
        return subprocess.CompletedProcess(args, 0 if port else 1, port, b"" if port else b"no public port")
    return run


def test_the_kind_configuration_is_compared_with_the_running_cluster(tmp_path, lab, monkeypatch):
    from lab.host import docker

    path = tmp_path / "kind-cluster.yaml"
    path.write_text(KIND_CONFIG)
    monkeypatch.setattr(docker, "run", _docker_with_a_running_cluster(port=b""))
    result = tasks.kind_config(lab, path, workers=2)
    assert not result.passed and "the running cluster does not publish that port" in result.message


@pytest.mark.parametrize("docker_answers", ["no container", "no docker"])
def test_without_a_running_cluster_the_kind_configuration_is_judged_alone(tmp_path, lab, monkeypatch, docker_answers):
    """No cluster to compare with (it failed to start, or the file came first): the file alone is
    judged, and the message says so; a wrong file still fails."""
    from lab.errors import LabError
    from lab.host import docker

    def run(args, **kwargs):
        if docker_answers == "no docker":
            raise LabError("the lab needs Docker, and `docker` is not on PATH")
        assert args[:1] == ["inspect"], "nothing but the node container is asked for"
        return subprocess.CompletedProcess(args, 1, b"", b"Error: No such object: k8s-lab-control-plane")

    monkeypatch.setattr(docker, "run", run)
    path = tmp_path / "kind-cluster.yaml"
    path.write_text(KIND_CONFIG)
    result = tasks.kind_config(lab, path, workers=2)
    assert result.passed and "(no cluster runs here to compare the port with)" in result.message, result.message
    path.write_text(KIND_CONFIG.replace("listenAddress: 127.0.0.1", "listenAddress: 0.0.0.0"))
    result = tasks.kind_config(lab, path, workers=2)
    assert not result.passed and "not on this machine only" in result.message


def test_missing_names_the_step_to_finish(lab, monkeypatch):
    monkeypatch.setitem(tasks.BUILT, "database", tasks.Built("03", 4, "the StatefulSet database", "StatefulSet",
                                                             "database", lambda lab: checks.fail("0/1 ready")))
    blocked = tasks.missing(lab, "database")
    assert not blocked.passed and "finish step 4 of 03 first" in blocked.message and "0/1 ready" in blocked.message
    monkeypatch.setitem(tasks.BUILT, "database", tasks.Built("03", 4, "x", "StatefulSet", "database",
                                                             lambda lab: checks.ok("ready")))
    assert tasks.missing(lab, "database") is None


def test_what_later_steps_need_is_looked_for_in_the_students_namespace(monkeypatch):
    """`lab grade --live` runs a check such as helm.template-change for each student's namespace
    in one grader process, whose checks default to the lab's namespace: each object a later step
    needs (tasks.BUILT) is looked for in the namespace being graded, never in that default."""
    asked = []

    def recorder(name):
        def check(*args, namespace=None, **kwargs):
            asked.append((name, namespace))
            return checks.ok("ready")
        return check

    for helper in ("statefulset_ready", "service_has_endpoints", "deployment_ready", "pods_on_every_node"):
        monkeypatch.setattr(checks, helper, recorder(helper))
    student = notebook.Lab("(check)", notebook.Parameters("k8s-lab", "student-ann", "offline", False))
    monkeypatch.setattr(notebook.Lab, "read", lambda self, kind, name: type("Svc", (), {
        "spec": type("Spec", (), {"ports": [type("Port", (), {"node_port": 30080})()]})()})())
    for name in ("database", "database-service", "web", "web-service", "watcher"):
        assert tasks.BUILT[name].verify(student).passed
    assert asked and {namespace for _, namespace in asked} == {"student-ann"}, asked


def test_a_helm_upgrade_that_lost_a_race_is_tried_once_more(tmp_path, lab, monkeypatch, capsys):
    values = tmp_path / "values.yaml"
    values.write_text("web:\n  replicas: 2\n")
    answers = [notebook.Command("helm upgrade", 1, "", "Operation cannot be fulfilled on resourcequotas \"lab-quota\": "
                                "the object has been modified"), notebook.Command("helm upgrade", 0, "upgraded", "")]
    monkeypatch.setattr(lab, "helm_upgrade", lambda *a, **k: answers.pop(0))
    assert tasks.helm_upgrade(lab, values) is True and answers == []
    refused = [notebook.Command("helm upgrade", 1, "", "values don't meet the specifications of the schema")] * 2
    monkeypatch.setattr(lab, "helm_upgrade", lambda *a, **k: refused.pop(0))
    assert tasks.helm_upgrade(lab, values) is False and len(refused) == 1, "a refusal is not retried"
    assert "not upgraded" in capsys.readouterr().out


@pytest.mark.parametrize("notebook_name, file, kind, name, wanted", [
    ("02-storage", "pv.yaml", "PersistentVolume", "k8s-lab-database-data", lambda o: tasks._empty(
        o, "spec.persistentVolumeReclaimPolicy", "spec.capacity.storage", "spec.storageClassName")),
    ("03-database", "database-service.yaml", "Service", "database", lambda o: tasks._empty(o, "spec.ports")),
    ("03-database", "database.yaml", "StatefulSet", "database", lambda o: tasks._empty(o, "spec.volumeClaimTemplates")),
    ("04-web-server", "web.yaml", "Deployment", "web", tasks._downward_env_unwritten),
    ("04-web-server", "web-service.yaml", "Service", "web", tasks._node_port_unwritten),
])
def test_the_handouts_files_leave_the_build_tasks_fields_empty(tmp_path, lab, monkeypatch, notebook_name, file, kind, name,
                                                               wanted):
    """The blanks of each build task, as the handout writes them, are what the check calls unwritten;
    the reference's file leaves nothing out (so a chart object in the cluster cannot pass for it)."""
    import nbformat

    from lab import config

    monkeypatch.chdir(tmp_path)
    notebook.work_dir()
    for product, found in (("notebooks", True), ("reference", False)):
        nb = nbformat.read(str(config.REPO_ROOT / product / f"{notebook_name}.ipynb"), as_version=4)
        cell = next(c for c in nb.cells if c.source.startswith(f"%%writefile work/{file}\n"))
        (tmp_path / "work" / file).write_text(cell.source.split("\n", 1)[1])
        problems = tasks.unwritten(lab, file, kind, name, wanted)
        assert bool(problems) is found, (product, problems)
        assert all(p.startswith(f"work/{file} leaves ") for p in problems)


# ---------------------------------------------------------------- 04: the web init container


def _web_deployment(change=None):
    """The lab's web Deployment (manifests/03-web) as the API returns it, optionally changed."""
    import yaml
    from kubernetes import client

    from lab import config

    doc = yaml.safe_load((config.REPO_ROOT / "manifests" / "03-web" / "deployment.yaml").read_text())
    doc["metadata"]["uid"] = "uid-web"
    if change:
        change(doc)
    return client.ApiClient()._ApiClient__deserialize(doc, "V1Deployment")


@pytest.fixture
def web_cluster(lab, monkeypatch, tmp_path):
    """Three running web Pods whose pages say what ``pages`` holds (pod name -> serving_host), for
    the check build.web-init; no work/web.yaml (as in `lab grade --live`)."""
    from types import SimpleNamespace

    from lab.cluster import kube

    monkeypatch.chdir(tmp_path)
    state = {"deployment": _web_deployment(), "pages": {name: name for name in ("web-a", "web-b", "web-c")}}
    monkeypatch.setattr(tasks, "_lab", lambda namespace, context: lab)
    monkeypatch.setattr(lab, "read", lambda kind, name, namespace=None: state["deployment"] if kind == "Deployment" else None)
    state["served"] = True  # nginx serves the page; False: only the file in the container has it
    nginx = SimpleNamespace(name="nginx", ports=[SimpleNamespace(container_port=8080)])
    pods = [SimpleNamespace(metadata=SimpleNamespace(name=n, uid=f"uid-{n}", deletion_timestamp=None),
                            spec=SimpleNamespace(containers=[nginx]), status=SimpleNamespace(phase="Running"))
            for n in state["pages"]]
    monkeypatch.setattr(kube, "core", lambda target: SimpleNamespace(
        list_namespaced_pod=lambda namespace, label_selector, _request_timeout: SimpleNamespace(items=pods)))

    def page(pod):
        host = state["pages"][pod]
        return None if host is None else json.dumps({"pod_name": pod, "serving_host": host})

    def http_get(target, pod, port, path):
        assert (port, path) == (8080, "whoami.json")
        return page(pod) if state["served"] else None

    def exec_in_pod(target, pod, command, container, timeout):
        assert (container, command) == ("nginx", ["cat", tasks.WEB_PAGE])
        text = page(pod)
        return kube.Exec(text or "", "" if text else "cat: No such file", 0 if text else 1)

    monkeypatch.setattr(kube, "pod_http_get", http_get)
    monkeypatch.setattr(kube, "exec_in_pod", exec_in_pod)
    return state


def test_web_init_passes_when_every_page_names_its_own_pod(web_cluster):
    result = tasks.check_web_init("k8s-assignment", "kind-k8s-lab")
    assert result.passed, result.message
    assert set(result.uids) == {"Deployment/k8s-assignment/web", *(f"Pod/k8s-assignment/web-{x}" for x in "abc")}


@pytest.mark.parametrize("pages, message", [
    ({"web-a": "unknown", "web-b": "unknown", "web-c": "unknown"},
     "serving-host is 'unknown' on web-a (and 2 more Pods): the init container has no value for it"),
    ({"web-a": "web-a", "web-b": "k8s-lab-worker", "web-c": "web-c"},
     "serving-host is 'k8s-lab-worker' on web-b: that is not the Pod that serves the page"),
])
def test_web_init_reads_the_serving_host_from_each_pods_page(web_cluster, pages, message):
    web_cluster["pages"].update(pages)
    result = tasks.check_web_init("k8s-assignment", "kind-k8s-lab")
    assert not result.passed and message in result.message, result.message
    assert "metadata.name" not in result.message  # what is wrong, not the answer


def test_web_init_reads_the_file_when_nginx_does_not_serve_it(web_cluster):
    """The page comes through the API server's Pod proxy; a student's nginx config that serves
    no whoami.json does not hide what the init container wrote."""
    web_cluster["served"] = False
    assert tasks.check_web_init("k8s-assignment", "kind-k8s-lab").passed
    web_cluster["pages"]["web-b"] = "unknown"
    result = tasks.check_web_init("k8s-assignment", "kind-k8s-lab")
    assert not result.passed and "serving-host is 'unknown' on web-b" in result.message, result.message


def test_web_init_without_a_page_to_read_says_so(web_cluster):
    web_cluster["pages"].update({"web-a": None, "web-b": None, "web-c": None})
    result = tasks.check_web_init("k8s-assignment", "kind-k8s-lab")
    assert not result.passed and "no running web Pod has a page to read serving-host from" in result.message


def test_web_init_names_a_missing_downward_api_variable(web_cluster):
    def drop_pod_ip(doc):
        init = doc["spec"]["template"]["spec"]["initContainers"][0]
        init["env"] = [e for e in init["env"] if e["name"] != "POD_IP"]

    web_cluster["deployment"] = _web_deployment(drop_pod_ip)
    result = tasks.check_web_init("k8s-assignment", "kind-k8s-lab")
    assert not result.passed and "env POD_IP is missing" in result.message, result.message


# ---------------------------------------------------------------- 07: one template change


def test_a_folder_that_is_no_chart_is_not_upgraded_from(tmp_path, lab, monkeypatch, capsys):
    monkeypatch.setattr(lab, "helm_upgrade", lambda *a, **k: pytest.fail("must not upgrade"))
    assert tasks.helm_upgrade(lab, chart=tmp_path / "chart") is False
    assert "is not a chart (it has no Chart.yaml): run the cell that copies chart/ first" in capsys.readouterr().out


def test_an_upgrade_from_the_students_chart_passes_the_chart(tmp_path, lab, monkeypatch):
    (tmp_path / "Chart.yaml").write_text("name: k8s-lab\n")
    calls = []
    monkeypatch.setattr(lab, "helm_upgrade", lambda *a, **k: calls.append((a, k)) or notebook.Command("helm", 0, "", ""))
    assert tasks.helm_upgrade(lab, chart=tmp_path) is True
    assert calls == [((), {"check": False, "chart": tmp_path})]


@pytest.fixture
def released(lab, monkeypatch):
    """Service web with the annotations in ``state``, the release at revision ``state["revision"]``."""
    from types import SimpleNamespace

    state = {"annotations": {}, "revision": 7}
    monkeypatch.setattr(tasks, "_lab", lambda namespace, context: lab)
    monkeypatch.setattr(tasks, "missing", lambda lab, *names: None)
    monkeypatch.setattr(notebook, "release_revisions", lambda lab: [
        {"revision": state["revision"] - 1, "status": "superseded"}, {"revision": state["revision"], "status": "deployed"}])
    monkeypatch.setattr(lab, "read", lambda kind, name, namespace=None: SimpleNamespace(
        metadata=SimpleNamespace(uid="uid-svc", annotations=state["annotations"])))
    return state


@pytest.mark.parametrize("annotations, message", [
    ({}, "Service web has no annotation k8s-lab/revision: revision 7 of the release was rendered from a Service "
         "template that does not write it"),
    ({"k8s-lab/revision": "6"}, "is '6', but the release's deployed revision is 7: the template does not write "
                                "the revision that renders it"),
    ({"k8s-lab/revision": "7"}, None),
])
def test_the_template_change_is_the_revision_that_rendered_it(released, annotations, message):
    released["annotations"] = annotations
    result = tasks.check_helm_template("k8s-assignment", "kind-k8s-lab")
    assert result.passed is (message is None), result.message
    assert message is None or message in result.message
    assert ".Release" not in result.message  # what is wrong, not the answer
    assert result.uids == {"Service/k8s-assignment/web": "uid-svc"}


def test_the_template_check_needs_the_web_service(lab, monkeypatch):
    monkeypatch.setattr(tasks, "_lab", lambda namespace, context: lab)
    monkeypatch.setattr(tasks, "missing", lambda lab, *names: checks.fail(f"{names} is not ready: finish step 4 of 04 first"))
    result = tasks.check_helm_template("k8s-assignment", "kind-k8s-lab")
    assert not result.passed and "finish step 4 of 04 first" in result.message
