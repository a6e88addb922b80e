"""Helm's release records as the lab reads them (lab.system.helm_records). The cluster suite
compares them with what helm itself prints (tests/cluster/test_checks.py)."""
from __future__ import annotations

import base64
import gzip
import json
import types

import pytest

from lab.errors import LabError
from lab.system import helm_records
from lab.target import Target

RELEASE = {"name": "k8s-lab", "version": 3, "info": {"status": "deployed", "description": "Rollback to 1"},
           "config": {"web": {"replicas": 3}}}


def stored_secret(release: dict, compress: bool = True) -> str:
    """A record's ``release`` key as the API returns a Secret's data: Helm's base64 of the gzipped
    JSON, base64-encoded once more by the Secret."""
    payload = json.dumps(release).encode()
    helm_encoded = base64.b64encode(gzip.compress(payload) if compress else payload)
    return base64.b64encode(helm_encoded).decode()


def fake_core(monkeypatch, secrets: dict[int, str], configmaps: dict[int, str] | None = None):
    def listing(records):
        def metadata_list(namespace, **options):
            items = [{"metadata": {"name": f"sh.helm.release.v1.k8s-lab.v{n}", "uid": f"uid-{n}",
                                   "labels": {"owner": "helm", "name": "k8s-lab", "version": str(n),
                                              "status": "deployed"}}} for n in records]
            return types.SimpleNamespace(data=json.dumps({"items": items}))
        return metadata_list

    def reader(records):
        def read(name, namespace, **options):
            return types.SimpleNamespace(data={"release": records[int(name.rsplit(".v", 1)[1])]})
        return read

    configmaps = configmaps or {}
    core = types.SimpleNamespace(list_namespaced_secret=listing(secrets), read_namespaced_secret=reader(secrets),
                                 list_namespaced_config_map=listing(configmaps),
                                 read_namespaced_config_map=reader(configmaps))
    monkeypatch.setattr(helm_records.kube, "core", lambda target: core)


def test_the_latest_record_is_decoded_as_helm_wrote_it(monkeypatch):
    fake_core(monkeypatch, {2: stored_secret({**RELEASE, "version": 2, "config": {}}), 3: stored_secret(RELEASE)})
    target = Target("demo", namespace="ns")
    assert helm_records.record(target, "k8s-lab") == RELEASE
    assert helm_records.record(target, "k8s-lab", revision=2)["config"] == {}
    assert helm_records.record(target, "k8s-lab", revision=9) is None
    assert [r["revision"] for r in helm_records.revisions(target, "k8s-lab")] == [2, 3]


def test_configmap_records_and_uncompressed_payloads_are_read_too(monkeypatch):
    helm_encoded = base64.b64encode(json.dumps(RELEASE).encode()).decode()  # a ConfigMap: no second base64
    fake_core(monkeypatch, {}, {3: helm_encoded})
    assert helm_records.record(Target("demo", namespace="ns"), "k8s-lab")["info"]["description"] == "Rollback to 1"


def test_no_release_is_none_and_a_damaged_record_says_which(monkeypatch):
    fake_core(monkeypatch, {})
    assert helm_records.record(Target("demo", namespace="ns"), "k8s-lab") is None
    fake_core(monkeypatch, {1: base64.b64encode(b"not base64 of gzip!").decode()})
    with pytest.raises(LabError, match="sh.helm.release.v1.k8s-lab.v1 cannot be read"):
        helm_records.record(Target("demo", namespace="ns"), "k8s-lab")
