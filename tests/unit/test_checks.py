"""The checkpoint API: records, the hash chain, display, strictness, and the verification library
against fake Kubernetes API objects (no cluster)."""
from __future__ import annotations

import base64
import json
import types

import nbformat
import pandas as pd
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lab import checks
from lab.system import helm_records
from lab.errors import LabError

IDENTITY = {"context": "kind-k8s-lab", "kube_system_uid": "cluster-test-uid"}


@pytest.fixture(autouse=True)
def isolated(monkeypatch):
    """Fresh settings and session per test; a fixed cluster identity, so nothing reaches a cluster."""
    monkeypatch.setattr(checks, "settings", checks.Settings(namespace="ns", identity=dict(IDENTITY)))
    monkeypatch.setattr(checks, "_session", checks.Session())
    yield


# ------------------------------------------------------------------------------ fake cluster


def not_found(*args, **kwargs):
    raise ApiException(status=404, reason="Not Found")


def meta(name, uid=None, namespace="ns", labels=None, generation=1):
    return client.V1ObjectMeta(name=name, uid=uid or f"uid-{name}", namespace=namespace, labels=labels,
                               generation=generation)


def ready_pod(name, node="node-1", ready=True, waiting=None, labels=None):
    statuses = None
    if waiting:
        statuses = [client.V1ContainerStatus(name="c", image="i", image_id="", ready=False, restart_count=2,
                                             state=client.V1ContainerState(
                                                 waiting=client.V1ContainerStateWaiting(reason=waiting)))]
    return client.V1Pod(
        metadata=meta(name, labels=labels or {"app": name.rsplit("-", 1)[0]}),
        spec=client.V1PodSpec(containers=[], node_name=node),
        status=client.V1PodStatus(phase="Running", container_statuses=statuses,
                                  conditions=[client.V1PodCondition(type="Ready", status="True" if ready else "False")]),
    )


def node(name):
    return client.V1Node(metadata=client.V1ObjectMeta(name=name, uid=f"uid-{name}"))


def install(monkeypatch, **groups):
    """checks._apis() returns namespaces of fake methods: install(core={...}, apps={...})."""
    fake = types.SimpleNamespace(kube_system_uid=None,
                                 **{g: types.SimpleNamespace(**methods) for g, methods in groups.items()})
    monkeypatch.setattr(checks, "_apis", lambda context=None: fake)
    return fake


def listing(items):
    """A list call: the models, or the API server's JSON when asked with _preload_content=False."""
    def answer(*args, **options):
        if options.get("_preload_content", True):
            return types.SimpleNamespace(items=list(items))
        return types.SimpleNamespace(data=json.dumps(
            {"items": [client.ApiClient().sanitize_for_serialization(item) for item in items]}))
    return answer


# ------------------------------------------------------------------------- records and hashes


def test_records_chain_within_a_session_and_hash_their_canonical_json():
    session = checks.Session("s1")
    first = checks.make_record("a.one", 2, checks.ok("fine", {"Pod/ns/p": "u1"}), session=session, cluster=IDENTITY)
    second = checks.make_record("a.two", 1.0, checks.fail("broken"), session=session, cluster=IDENTITY)
    assert (first["seq"], first["prev_hash"]) == (1, checks.GENESIS_HASH)
    assert (second["seq"], second["prev_hash"]) == (2, first["hash"])
    assert first["hash"] == checks.record_hash(first)
    assert second["points"] == 1 and isinstance(second["points"], int)  # 1.0 would not survive a browser
    assert (second["passed"], second["earned"]) == (False, 0)
    assert first["objects"] == {"Pod/ns/p": "u1"} and first["cluster"]["kube_system_uid"] == "cluster-test-uid"
    # any change to the content changes the hash; key order does not
    assert checks.record_hash(dict(first, passed=False)) != first["hash"]
    assert checks.record_hash(dict(reversed(list(first.items())))) == first["hash"]


def test_evidence_survives_a_notebook_round_trip():
    record = checks.make_record("a.one", 2, checks.ok("fine ✓"), cluster=IDENTITY, cell_source="x = 1\n")
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.outputs = [checks.evidence_output(record)]
    nb.cells.append(cell)
    back = nbformat.reads(nbformat.writes(nb), as_version=4)
    data = back.cells[0].outputs[0]["data"]
    assert isinstance(data[checks.MIME_TYPE], dict)
    assert checks.record_hash(data[checks.MIME_TYPE]) == record["hash"]
    assert data["text/plain"] == checks.render_text(record)
    assert record["cell_sha256"] == checks.source_hash(back.cells[0].source)


def test_bad_check_ids_and_points_are_refused():
    with pytest.raises(ValueError):
        checks.make_record("Bad Id", 1, checks.ok("x"))
    with pytest.raises(ValueError):
        checks.make_record("a.b", -1, checks.ok("x"))


# ------------------------------------------------------------------------------- checkpoint()


def test_a_failed_checkpoint_prints_reason_and_hint_and_does_not_raise(capsys):
    rec = checks.checkpoint("db.ready", points=2, hint="kubectl describe sts database",
                            verify=lambda: checks.fail("StatefulSet database: 0/1 replicas ready"))
    out = capsys.readouterr().out
    assert "FAIL db.ready (0/2 points): StatefulSet database: 0/1 replicas ready" in out
    assert "hint: kubectl describe sts database" in out
    assert not rec and rec.earned == 0 and rec.data["hint"] == "kubectl describe sts database"


def test_a_check_that_does_not_apply_says_so_and_counts_for_nothing(capsys):
    rec = checks.checkpoint("storage.namespace", points=1, hint="kubectl apply -f ...",
                            verify=lambda: checks.not_applicable("classroom: your instructor made namespace student-ann"))
    out = capsys.readouterr().out
    assert "N/A storage.namespace (not applicable, no points): classroom: your instructor made namespace student-ann" in out
    assert "hint" not in out and "PASS" not in out and "FAIL" not in out
    assert (rec.passed, rec.earned, rec.points, rec.applicable) == (False, 0, 1, False)
    assert rec.data["applicable"] is False and rec.data["hash"] == checks.record_hash(rec.data)
    # a check that applies keeps the record it always had
    assert "applicable" not in checks.checkpoint("a.b", points=1, verify=lambda: checks.ok("fine")).data
    checks.checkpoint("c.d", points=2, verify=lambda: checks.fail("broken"))
    checks.summary()
    assert capsys.readouterr().out.splitlines()[-1] == "total: 1/3 points from 2 checkpoint(s); 1 not applicable"


def test_a_not_applicable_record_cannot_also_be_passed():
    from lab import evidence

    record = checks.make_record("a.one", 2, checks.not_applicable("not yours"), cluster=IDENTITY)
    assert evidence.problems(record) == []
    assert any("did not apply" in p for p in evidence.problems({**record, "passed": True, "earned": 2}))
    assert any("applicable is true" in p for p in evidence.problems({**record, "applicable": True}))


def test_strict_raises_after_recording():
    with pytest.raises(checks.CheckpointFailed) as failure:
        checks.checkpoint("db.ready", points=2, hint="look", verify=lambda: (False, "nope"), strict=True)
    assert isinstance(failure.value, LabError) and failure.value.hint == "look"
    assert checks.session().records[-1]["check_id"] == "db.ready"


def test_a_crashing_verification_is_a_failed_check():
    def boom():
        raise RuntimeError("connection refused")

    rec = checks.checkpoint("db.ready", points=1, verify=boom)
    assert not rec.passed and "could not verify: RuntimeError: connection refused" in rec.message


@pytest.mark.parametrize("value, passed, message", [
    (True, True, "passed"), (False, False, "failed"), ((True, "ok"), True, "ok"),
    ((False, "bad", {"Pod/ns/p": "u"}), False, "bad"), (None, False, "the verification returned NoneType"),
])
def test_verify_may_return_a_result_a_tuple_or_a_bool(value, passed, message):
    rec = checks.checkpoint("x.y", verify=lambda: value)
    assert rec.passed is passed and rec.message.startswith(message)


def test_decorator_form_runs_at_once():
    @checks.checkpoint("web.replicas", points=3, hint="h")
    def web_replicas():
        return checks.ok("3/3 ready", {"Deployment/ns/web": "u"})

    assert isinstance(web_replicas, checks.Record) and web_replicas.passed and web_replicas.earned == 3
    assert web_replicas.uids == {"Deployment/ns/web": "u"}


def test_display_bundle_carries_evidence_and_is_not_shown_twice(monkeypatch, capsys):
    shown = []
    fake_ip = types.SimpleNamespace(user_ns={}, execution_count=4,
                                    history_manager=types.SimpleNamespace(input_hist_raw=["", "cell src"]))
    monkeypatch.setattr(checks, "_ipython", lambda: fake_ip)
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append((obj, raw)))
    rec = checks.checkpoint("x.y", points=1, verify=lambda: True)
    [(bundle, raw)] = shown
    assert raw and bundle[checks.MIME_TYPE]["hash"] == rec.data["hash"]
    assert bundle["text/plain"].startswith("✔ PASS x.y") and "PASS" in bundle["text/html"]
    assert rec.data["cell_sha256"] == checks.source_hash("cell src")
    rec._ipython_display_()  # the cell's value: nothing more is displayed
    assert len(shown) == 1 and capsys.readouterr().out == ""
    fake_ip.execution_count = 5  # shown again from a later cell: just the line, no second record
    rec._ipython_display_()
    assert len(shown) == 1 and capsys.readouterr().out.startswith("✔ PASS x.y")


def test_configure_sets_namespace_and_rejects_unknown_settings():
    checks.configure(namespace="student-7", notebook="notebooks/02-db.ipynb")
    rec = checks.checkpoint("x.y", verify=lambda: True)
    assert (rec.data["namespace"], rec.data["notebook"]) == ("student-7", "02-db.ipynb")
    with pytest.raises(LabError):
        checks.configure(namspace="typo")


def test_cluster_identity_never_raises_without_a_cluster(monkeypatch):
    checks.configure(identity=None)

    def no_cluster(context=None):
        raise LabError("no kubeconfig context 'nowhere'")

    monkeypatch.setattr(checks, "_apis", no_cluster)
    identity = checks.cluster_identity("nowhere")
    assert identity == {"context": "nowhere", "error": "no kubeconfig context 'nowhere'"}


def test_cluster_identity_reads_uid_version_and_nodes(monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path))
    checks.configure(identity=None)
    checks._identity_cache.clear()
    info = client.V1NodeSystemInfo(architecture="amd64", boot_id="", container_runtime_version="containerd://1",
                                   kernel_version="6", kube_proxy_version="", kubelet_version="v1.34.4",
                                   machine_id="", operating_system="linux", os_image="Debian", system_uuid="")
    n = client.V1Node(metadata=client.V1ObjectMeta(name="cp", uid="node-uid"), status=client.V1NodeStatus(node_info=info))
    install(monkeypatch,
            core={"read_namespace": lambda name, **k: client.V1Namespace(metadata=client.V1ObjectMeta(uid="ks-uid")),
                  "list_node": listing([n])},
            version={"get_code": lambda **k: types.SimpleNamespace(git_version="v1.34.4")})
    monkeypatch.setattr(checks, "_node_images", lambda names: {"cp": "k8s-lab/node:v1.34.4"})
    monkeypatch.setattr(checks, "_tool_versions", lambda: {"kubectl": "v1.34.4"})
    identity = checks.cluster_identity()
    assert identity["kube_system_uid"] == "ks-uid" and identity["server_version"] == "v1.34.4"
    assert identity["nodes"] == [{"name": "cp", "uid": "node-uid", "os_image": "Debian", "kubelet": "v1.34.4",
                                  "runtime": "containerd://1", "node_image": "k8s-lab/node:v1.34.4"}]


def test_a_nodes_image_is_asked_of_docker_once_per_node(monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path))
    asked = []

    def inspect(names):
        asked.append(sorted(names))
        return {name: f"image-of-{name}" for name in names}

    monkeypatch.setattr(checks, "_node_images", inspect)
    nodes = [{"name": "cp", "uid": "u-cp"}, {"name": "w1", "uid": "u-w1"}]
    assert checks._node_images_by_uid(nodes) == {"u-cp": "image-of-cp", "u-w1": "image-of-w1"}
    assert checks._node_images_by_uid(nodes) == {"u-cp": "image-of-cp", "u-w1": "image-of-w1"}
    recreated = [{"name": "cp", "uid": "u-cp2"}, {"name": "w1", "uid": "u-w1"}]  # a new node, same name
    assert checks._node_images_by_uid(recreated)["u-cp2"] == "image-of-cp"
    assert asked == [["cp", "w1"], ["cp"]]


def test_the_kube_system_uid_is_read_once_per_client(monkeypatch):
    """Every checkpoint records the cluster's identity; the UID costs an API call, so it is read
    once per client. A recreated cluster means a new kubeconfig entry, hence a new client."""
    checks.configure(identity=None)
    reads = []

    def client(uid):
        return types.SimpleNamespace(kube_system_uid=None, core=types.SimpleNamespace(
            read_namespace=lambda name, **k: reads.append(uid) or client_namespace(uid),
            list_node=listing([])), version=types.SimpleNamespace(get_code=lambda **k: types.SimpleNamespace(git_version="v1")))

    def client_namespace(uid):
        return types.SimpleNamespace(metadata=types.SimpleNamespace(uid=uid))

    monkeypatch.setattr(checks, "_node_images_by_uid", lambda nodes: {})
    monkeypatch.setattr(checks, "_tool_versions", lambda: {})
    first = client("uid-1")
    monkeypatch.setattr(checks, "_apis", lambda context=None: first)
    assert [checks.cluster_identity()["kube_system_uid"] for _ in range(3)] == ["uid-1"] * 3
    assert reads == ["uid-1"]
    recreated = client("uid-2")
    monkeypatch.setattr(checks, "_apis", lambda context=None: recreated)
    assert checks.cluster_identity()["kube_system_uid"] == "uid-2" and reads == ["uid-1", "uid-2"]


def test_checks_share_one_set_of_api_groups_per_client(monkeypatch):
    from lab.cluster import kube

    class Client:  # an ApiClient's stand-in: any object a weak reference can point to
        pass

    clients = [Client()]
    monkeypatch.setattr(kube, "api_client", lambda target: clients[-1])
    assert checks._apis("kind-x") is checks._apis("kind-x")
    clients.append(Client())  # the kubeconfig changed: a new client
    assert checks._apis("kind-x")._api is clients[-1]


# ------------------------------------------------------------------------------ registry


def test_check_runs_a_registered_check_with_its_points_and_hint(monkeypatch):
    monkeypatch.setattr(checks, "_REGISTRY", dict(checks._REGISTRY))

    @checks.register("t.registered", points=4, hint="the hint")
    def _t(namespace, context):
        return checks.ok(f"looked in {namespace}")

    rec = checks.check("t.registered", namespace="elsewhere")
    assert (rec.points, rec.hint, rec.message) == (4, "the hint", "looked in elsewhere")
    with pytest.raises(LabError):
        checks.check("t.unknown")


def test_run_registered_includes_instructor_only_checks_and_keeps_the_session(monkeypatch):
    monkeypatch.setattr(checks, "_REGISTRY", {})

    @checks.register("t.student", points=1)
    def _s(namespace, context):
        return True

    @checks.register("t.secret", points=2, instructor_only=True)
    def _i(namespace, context):
        return False

    before = checks.session()
    records = checks.run_registered()
    assert [(r["check_id"], r["kind"], r["passed"]) for r in records] == [
        ("t.student", "grader", True), ("t.secret", "instructor", False)]
    assert checks.session() is before and not before.records
    assert [c.check_id for c in checks.registry(include_instructor_only=False)] == ["t.student"]


def test_the_builtin_registry_covers_the_deployed_system():
    ids = {c.check_id: c for c in checks.registry()}
    assert {"system.database-ready", "system.web-nodeport", "system.network-policies"} <= set(ids)
    assert any(c.instructor_only for c in ids.values())


# ---------------------------------------------------------------------- verification library


def test_secret_has_keys_never_records_values(monkeypatch):
    secret = client.V1Secret(metadata=meta("db"), data={"password": base64.b64encode(b"hunter2-s3cret").decode(),
                                                        "username": base64.b64encode(b"lab").decode(), "empty": ""})
    install(monkeypatch, core={"read_namespaced_secret": lambda name, ns, **k: secret})
    rec = checks.checkpoint("db.secret", verify=lambda: checks.secret_has_keys("db", ["password", "username"]))
    assert rec.passed
    missing = checks.checkpoint("db.secret2", verify=lambda: checks.secret_has_keys("db", ["password", "root", "empty"]))
    assert not missing.passed and "lacks key(s) root" in missing.message
    blob = json.dumps(checks.session().records)
    assert "hunter2" not in blob and base64.b64encode(b"hunter2-s3cret").decode() not in blob
    assert "empty key(s) empty" in checks.secret_has_keys("db", ["empty"]).message


def test_deployment_ready_reports_replicas_and_pod_trouble(monkeypatch):
    dep = client.V1Deployment(
        metadata=meta("web"), spec=client.V1DeploymentSpec(
            replicas=3, selector=client.V1LabelSelector(match_labels={"app": "web"}), template=client.V1PodTemplateSpec()),
        status=client.V1DeploymentStatus(ready_replicas=2, updated_replicas=3, observed_generation=1))
    # The namespace's other Pods are listed too; only the Deployment's selector picks.
    pods = [ready_pod("database-0", ready=False, waiting="CrashLoopBackOff"), ready_pod("web-1"),
            ready_pod("web-2"), ready_pod("web-3", ready=False, waiting="ImagePullBackOff"), ready_pod("probe-x")]
    install(monkeypatch, apps={"read_namespaced_deployment": lambda n, ns, **k: dep},
            core={"list_namespaced_pod": listing(pods)})
    result = checks.deployment_ready("web", replicas=3)
    assert not result.passed and "2/3 replicas ready" in result.message and "ImagePullBackOff" in result.message
    assert set(result.uids) == {"Deployment/ns/web", "Pod/ns/web-1", "Pod/ns/web-2"}
    assert "asks for 3 replicas, expected 2" in checks.deployment_ready("web", replicas=2).message
    dep.status.ready_replicas = 3
    assert checks.deployment_ready("web", replicas=3).passed


def test_missing_objects_fail_with_their_namespace(monkeypatch):
    install(monkeypatch, apps={"read_namespaced_stateful_set": not_found},
            core={"read_namespaced_persistent_volume_claim": not_found, "read_namespace": not_found},
            networking={"read_namespaced_network_policy": not_found})
    checks.configure(namespace="student-1")
    assert checks.statefulset_ready("database") == (False, "StatefulSet database not found in namespace student-1", {})
    assert "PersistentVolumeClaim data not found" in checks.pvc_bound("data").message
    assert "NetworkPolicy deny not found" in checks.networkpolicy_exists("deny").message
    assert checks.namespace_exists().message == "namespace student-1 does not exist"


def test_service_has_port_checks_port_and_node_port(monkeypatch):
    svc = client.V1Service(metadata=meta("web"), spec=client.V1ServiceSpec(
        type="NodePort", ports=[client.V1ServicePort(port=80, node_port=30080, protocol="TCP", target_port=8080)]))
    install(monkeypatch, core={"read_namespaced_service": lambda n, ns, **k: svc})
    assert checks.service_has_port("web", 80, node_port=30080).passed
    assert "nodePort 30080, expected 30081" in checks.service_has_port("web", 80, node_port=30081).message
    assert "expected port 443/TCP" in checks.service_has_port("web", 443).message
    assert not checks.service_has_port("web", 80, target_port=80).passed
    svc.spec.type = "ClusterIP"
    assert "needs type NodePort" in checks.service_has_port("web", 80, node_port=30080).message


def test_pvc_configmap_and_policy_types(monkeypatch):
    pvc = client.V1PersistentVolumeClaim(metadata=meta("data"), spec=client.V1PersistentVolumeClaimSpec(
        storage_class_name="manual"), status=client.V1PersistentVolumeClaimStatus(phase="Pending"))
    cm = client.V1ConfigMap(metadata=meta("cfg"), data={"default.conf": "listen 80;"})
    pol = client.V1NetworkPolicy(metadata=meta("deny"), spec=client.V1NetworkPolicySpec(
        pod_selector=client.V1LabelSelector(), policy_types=["Ingress"]))
    install(monkeypatch, core={"read_namespaced_persistent_volume_claim": lambda n, ns, **k: pvc,
                               "read_namespaced_config_map": lambda n, ns, **k: cm,
                               "read_persistent_volume": not_found},
            networking={"read_namespaced_network_policy": lambda n, ns, **k: pol})
    assert checks.pvc_bound("data").message == "PersistentVolumeClaim data is Pending (storage class manual)"
    pvc.status.phase, pvc.spec.volume_name = "Bound", "pv-1"
    assert checks.pvc_bound("data").passed
    assert checks.configmap_has_key("cfg", "default.conf", contains="listen 80").passed
    assert "no key 'nginx.conf' (keys: default.conf)" in checks.configmap_has_key("cfg", "nginx.conf").message
    assert checks.networkpolicy_exists("deny", policy_types=["Ingress"]).passed
    assert "missing Egress" in checks.networkpolicy_exists("deny", policy_types=["Ingress", "Egress"]).message


def test_pods_on_every_node_names_the_uncovered_nodes(monkeypatch):
    install(monkeypatch, core={"list_node": listing([node("cp"), node("w1")]),
                               "list_namespaced_pod": listing([ready_pod("watcher-a", node="cp")])})
    result = checks.pods_on_every_node({"app": "watcher"})
    assert not result.passed and "on node(s) w1 (1/2 nodes covered)" in result.message
    assert result.uids == {"Pod/ns/watcher-a": "uid-watcher-a"}


@pytest.mark.parametrize("labels, passed, text", [
    ([{"version": "1", "status": "superseded"}, {"version": "2", "status": "deployed"}], True, "revision 2 is deployed"),
    ([{"version": "1", "status": "deployed"}, {"version": "2", "status": "failed"}], False, "revision 2 is failed"),
    ([], False, "no Helm release k8s-lab in namespace ns"),
])
def test_helm_release_deployed_reads_the_latest_revision(monkeypatch, labels, passed, text):
    # What the API server answers a metadata-only list (PartialObjectMetadataList) with.
    secrets = [{"metadata": {"name": f"sh.helm.release.v1.k8s-lab.v{l['version']}", "uid": f"uid-{l['version']}",
                             "labels": {"owner": "helm", "name": "k8s-lab", **l}}} for l in labels]

    def metadata_list(namespace, **options):
        assert "PartialObjectMetadataList" in options["_headers"]["Accept"] and not options["_preload_content"]
        return types.SimpleNamespace(data=json.dumps({"kind": "PartialObjectMetadataList", "items": secrets}))

    core = types.SimpleNamespace(list_namespaced_secret=metadata_list,
                                 list_namespaced_config_map=lambda namespace, **options: types.SimpleNamespace(data="{}"))
    monkeypatch.setattr(helm_records.kube, "core", lambda target: core)
    checks.configure(namespace="ns")
    result = checks.helm_release_deployed("k8s-lab")
    assert result.passed is passed and text in result.message


def test_system_ready_asks_its_three_questions_at_once_and_answers_with_the_first_failure(monkeypatch):
    import threading

    together = threading.Barrier(3, timeout=10)  # broken unless all three are asked at the same time

    def answer(result):
        def ask(*args, **kwargs):
            together.wait()
            if isinstance(result, Exception):
                raise result
            return result
        return ask

    monkeypatch.setattr(checks, "helm_release_deployed", answer(checks.ok("deployed", {"Secret/ns/r": "u1"})))
    monkeypatch.setattr(checks, "statefulset_ready", answer(checks.fail("database 0/1", {"StatefulSet/ns/d": "u2"})))
    monkeypatch.setattr(checks, "deployment_ready", answer(RuntimeError("never looked at: an earlier one failed")))
    result = checks.system_ready()
    assert not result.passed and result.message == "database 0/1"
    assert result.uids == {"Secret/ns/r": "u1", "StatefulSet/ns/d": "u2"}

    together.reset()
    monkeypatch.setattr(checks, "statefulset_ready", answer(checks.ok("database 1/1", {"StatefulSet/ns/d": "u2"})))
    monkeypatch.setattr(checks, "deployment_ready", answer(checks.ok("web 3/3", {"Deployment/ns/w": "u3"})))
    result = checks.system_ready()
    assert result.passed and set(result.uids) == {"Secret/ns/r", "StatefulSet/ns/d", "Deployment/ns/w"}


def test_probe_matrix_clean_accepts_a_dataframe_with_a_correct_column():
    frame = pd.DataFrame({"source": ["web", "other", "web"], "target": ["database"] * 3, "port": [3306] * 3,
                          "expected": [True, False, True], "reachable": [True, True, True],
                          "correct": [True, False, True]})
    result = checks.probe_matrix_clean(frame)
    assert not result.passed and "1 of 3 probes differ" in result.message and "source=other" in result.message
    assert checks.probe_matrix_clean(frame[frame.correct]).passed
    assert "no 'correct' column" in checks.probe_matrix_clean(frame.drop(columns="correct")).message
    assert "empty" in checks.probe_matrix_clean(frame.iloc[0:0]).message
    assert checks.probe_matrix_clean([{"source": "a", "correct": True}]).passed


def test_file_exists_on_host_relative_to_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path))
    (tmp_path / "backups").mkdir()
    assert not checks.file_exists_on_host("backups/*.sql.gz").passed
    (tmp_path / "backups" / "empty.sql.gz").write_bytes(b"")
    assert "all empty" in checks.file_exists_on_host("backups/*.sql.gz").message
    (tmp_path / "backups" / "db-1.sql.gz").write_bytes(b"data")
    result = checks.file_exists_on_host("backups/*.sql.gz")
    assert result.passed and "2 file(s)" in result.message and len(result.uids) == 2
    assert checks.file_exists_on_host(tmp_path / "backups" / "db-1.sql.gz").passed


# ------------------------------------------------------------------------- reading records back


def test_a_genuine_record_has_no_problems_and_each_bad_field_is_named():
    from lab import evidence

    record = checks.make_record("a.one", 2, checks.ok("fine", {"Pod/ns/p": "u1"}), cluster=IDENTITY)
    assert evidence.problems(record) == []
    for change, words in (({"check_id": ["x"]}, 'check_id is ["x"]'), ({"points": float("nan")}, "points is"),
                          ({"passed": 1}, "passed is 1, not true or false"), ({"seq": 0}, "seq is 0"),
                          ({"hash": "abc"}, "hash is \"abc\""), ({"objects": {"a": 1}}, "objects is"),
                          ({"earned": 1}, "earned is 1, neither 0 nor the 2 points")):
        assert any(words in p for p in evidence.problems({**record, **change})), change
    assert evidence.problems("text") == ["the record is str, not a JSON object"]


def test_the_grader_reads_helm_history_from_the_release_secrets(monkeypatch):
    import base64
    import gzip

    from lab.grading import grader_checks

    def release(version, status, description):
        payload = json.dumps({"version": version, "info": {"status": status, "description": description}}).encode()
        helm_encoded = base64.b64encode(gzip.compress(payload))  # Helm's own encoding of the release
        return client.V1Secret(metadata=meta(f"sh.helm.release.v1.k8s-lab.v{version}"),
                               data={"release": base64.b64encode(helm_encoded).decode()})  # the API's base64

    secrets = [release(3, "deployed", "Rollback to 1"), release(1, "superseded", "Install complete"),
               release(2, "superseded", "Upgrade complete")]
    install(monkeypatch, core={"list_namespaced_secret": listing(secrets)})
    revisions = grader_checks.helm_revisions("ns", "ctx")
    assert [(r["revision"], r["status"], r["description"]) for r in revisions] == [
        (1, "superseded", "Install complete"), (2, "superseded", "Upgrade complete"), (3, "deployed", "Rollback to 1")]
    assert checks._registered("helm.history").verify(namespace="ns", context="ctx").passed
