"""Host directories of hostPath PersistentVolumes, owned by the uid their Pod runs as.

Under Pod Security "restricted" no container may run as root, so none can ``chown`` the
directory the kubelet creates (root-owned) for a hostPath volume, and ``fsGroup`` does not apply
to hostPath. The lab prepares the directory instead, from outside the Pod: a PersistentVolume
whose hostPath lies in the lab's data directory (``/var/local/k8s-lab`` in every kind node) and
that carries the annotations ::

    k8s-lab/host-owner: "999:999"   # uid:gid
    k8s-lab/host-mode: "0750"       # optional

gets that directory made, owned and moded by :func:`prepare` before it is applied. It runs in a
node container (``docker exec``, as the node's root), so it works whoever runs the lab.
"""
from __future__ import annotations

import re
import shlex
from typing import Iterable

from lab.host import docker
from lab.config import NODE_DATA_PATH
from lab.errors import LabError

OWNER_ANNOTATION = "k8s-lab/host-owner"
MODE_ANNOTATION = "k8s-lab/host-mode"
_OWNER = re.compile(r"^\d+:\d+$")
_MODE = re.compile(r"^0?[0-7]{3}$")


def wanted(documents: Iterable[dict]) -> list[tuple[str, str, str | None]]:
    """(node path, uid:gid, mode or None) for every annotated hostPath PersistentVolume."""
    found = []
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") != "PersistentVolume":
            continue
        meta = doc.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        owner = annotations.get(OWNER_ANNOTATION)
        path = ((doc.get("spec") or {}).get("hostPath") or {}).get("path", "")
        if owner is None:
            continue
        mode = annotations.get(MODE_ANNOTATION)
        name = meta.get("name")
        if not _OWNER.match(str(owner)):
            raise LabError(f"PersistentVolume {name}: {OWNER_ANNOTATION}={owner!r} is not uid:gid",
                           hint='write it as "999:999"')
        if mode is not None and not _MODE.match(str(mode)):
            raise LabError(f"PersistentVolume {name}: {MODE_ANNOTATION}={mode!r} is not an octal mode",
                           hint='write it as "0750"')
        normal = path.rstrip("/")
        if not normal.startswith(NODE_DATA_PATH + "/") or "/../" in normal + "/":
            raise LabError(f"PersistentVolume {name}: hostPath {path!r} is outside {NODE_DATA_PATH}",
                           hint="the lab prepares only directories in its own data directory")
        found.append((normal, str(owner), None if mode is None else str(mode)))
    return found


def script(paths: Iterable[tuple[str, str, str | None]]) -> str:
    """The shell commands that make, own and mode the directories (only the top directory: what
    the server wrote into it already belongs to it)."""
    lines = []
    for path, owner, mode in paths:
        quoted = shlex.quote(path)
        lines.append(f"mkdir -p {quoted} && chown {owner} {quoted}"
                     + (f" && chmod {mode} {quoted}" if mode else ""))
    return " && ".join(lines)


def prepare(documents: Iterable[dict], cluster: str) -> list[str]:
    """Prepare the annotated PersistentVolumes' directories through the cluster's control-plane
    node; returns their node paths."""
    paths = wanted(documents)
    if paths:
        node = f"{cluster}-control-plane"
        try:
            docker.exec_(node, ["sh", "-c", script(paths)])
        except LabError as error:
            raise LabError(f"cannot prepare {', '.join(p for p, _, _ in paths)} in node {node}: {error.message}",
                           hint="is the cluster up (`lab cluster status`)?") from None
    return [p for p, _, _ in paths]
