"""A Helm release as Helm's storage keeps it, read through the Kubernetes API.

Helm writes one record per revision into the release's namespace: a Secret named
``sh.helm.release.v1.<release>.v<revision>`` (or a ConfigMap with HELM_DRIVER=configmap), labelled
``owner=helm``, ``name``, ``version`` (the revision) and ``status``. Its ``release`` key holds the
release as JSON, gzipped and base64-encoded: the chart, the user-supplied values, the rendered
manifest and the revision's status and description.

Checkpoints ask these questions again and again (which revisions, which values, was the last one a
rollback); reading the records answers them without starting ``helm`` each time. Students still
type ``helm history`` and ``helm get values``: the notebooks show those commands.
"""
from __future__ import annotations

import base64
import gzip
import json

from kubernetes.client.exceptions import ApiException

from lab.cluster import kube
from lab.errors import LabError
from lab.target import Target

_GZIP_MAGIC = b"\x1f\x8b"


def revisions(target: Target, release: str, timeout: float = 30) -> list[dict]:
    """The release's revisions, oldest first: [{"revision", "status", "kind", "name", "uid"}], read
    from the records' labels (their metadata only: each record carries the whole release)."""
    core = kube.core(target)
    selector = f"owner=helm,name={release}"
    kind, items = "Secret", kube.list_metadata(core.list_namespaced_secret, target.namespace, selector, timeout)
    if not items:
        kind, items = "ConfigMap", kube.list_metadata(core.list_namespaced_config_map, target.namespace, selector,
                                                      timeout)
    found = []
    for meta in items:
        labels = meta.get("labels") or {}
        try:
            revision = int(labels.get("version", ""))
        except ValueError:
            continue  # labelled like a record, but not one Helm wrote
        found.append({"revision": revision, "status": labels.get("status", "unknown"), "kind": kind,
                      "name": meta["name"], "uid": meta["uid"]})
    return sorted(found, key=lambda r: r["revision"])


def record(target: Target, release: str, revision: int | None = None) -> dict | None:
    """The release at ``revision`` (default: the latest) as Helm stored it: ``info`` (status,
    description), ``config`` (the user-supplied values), ``chart``, ``manifest``, ``version``.
    None when the release (or that revision) does not exist."""
    known = revisions(target, release)
    if revision is not None:
        known = [r for r in known if r["revision"] == revision]
    if not known:
        return None
    latest = known[-1]
    core = kube.core(target)
    try:
        if latest["kind"] == "Secret":
            stored = core.read_namespaced_secret(latest["name"], target.namespace, _request_timeout=30).data
            encoded = base64.b64decode((stored or {}).get("release", ""))  # the Secret's own encoding
        else:
            stored = core.read_namespaced_config_map(latest["name"], target.namespace, _request_timeout=30).data
            encoded = ((stored or {}).get("release", "")).encode()
    except ApiException as error:
        if error.status == 404:
            return None  # deleted since it was listed (an upgrade prunes the history)
        raise
    return _decode(encoded, latest["name"])


def _decode(encoded: bytes, name: str) -> dict:
    try:
        data = base64.b64decode(encoded)
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
        return json.loads(data)
    except (ValueError, OSError, EOFError) as error:
        raise LabError(f"Helm's release record {name} cannot be read: {error}",
                       hint="helm history shows whether helm itself can read it") from error
