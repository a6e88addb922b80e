"""Where the lab acts: one kind cluster, the kubeconfig context that reaches it, and a namespace.

A :class:`Target` is built once, at the edge (the CLI's options, a notebook's parameters, a test's
fixture), and passed to every function that touches a cluster. Nothing below that edge falls back
to the lab's own cluster, so a command pointed at a second cluster can never act on the first.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from lab import config, yamldoc
from lab.errors import LabError

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Target:
    cluster: str
    namespace: str = config.NAMESPACE
    # A kubeconfig context other than kind's own `kind-<cluster>` (a classroom's or a real cluster's).
    context: str | None = None
    kubeconfig: Path | None = None

    def __post_init__(self) -> None:
        for what, value in (("cluster", self.cluster), ("namespace", self.namespace)):
            if not isinstance(value, str) or not _NAME.match(value) or len(value) > 63:
                raise LabError(f"{what} {value!r} is not a valid name",
                               hint="use lower-case letters, digits and '-', starting and ending "
                                    "with a letter or digit (at most 63 characters)")

    @classmethod
    def of(cls, cluster: str | None = None, namespace: str | None = None, context: str | None = None,
           kubeconfig: str | Path | None = None) -> "Target":
        """The target an edge asked for, with the lab's defaults (and LAB_CLUSTER) for the rest."""
        return cls(cluster=cluster or config.CLUSTER_NAME, namespace=namespace or config.NAMESPACE,
                   context=context or None, kubeconfig=Path(kubeconfig) if kubeconfig else None)

    @classmethod
    def for_context(cls, context: str, namespace: str = config.NAMESPACE) -> "Target":
        """A target named by its kubeconfig context alone (how the grader and a classroom name it)."""
        name = context.removeprefix("kind-")
        cluster = name if context.startswith("kind-") and _NAME.match(name) else config.DEFAULT_CLUSTER
        return cls(cluster, namespace, None if context == f"kind-{cluster}" else context)

    @property
    def kube_context(self) -> str:
        return self.context or f"kind-{self.cluster}"

    @property
    def is_kind(self) -> bool:
        """Whether the lab made this cluster (and may add nodes, load images or delete it)."""
        return self.context is None or self.context == f"kind-{self.cluster}"

    @property
    def data_dir(self) -> Path:
        """The host directory this cluster's nodes mount for volumes and backups."""
        return config.data_dir(self.cluster)

    def in_namespace(self, namespace: str) -> "Target":
        return replace(self, namespace=namespace)

    def kubectl_flags(self) -> list[str]:
        return [*self._kubeconfig_flag(), "--context", self.kube_context]

    def helm_flags(self) -> list[str]:
        return [*self._kubeconfig_flag(), "--kube-context", self.kube_context]

    def _kubeconfig_flag(self) -> list[str]:
        return ["--kubeconfig", str(self.kubeconfig)] if self.kubeconfig else []

    def describe(self) -> str:
        where = f"cluster {self.cluster}" if self.is_kind else f"context {self.kube_context}"
        return f"{where}, namespace {self.namespace}"

    def require(self) -> None:
        """Fail with one line naming the missing context (and how to make it) before any work."""
        contexts = kubeconfig_contexts(self.kubeconfig)
        if self.kube_context not in contexts:
            make = ("`lab cluster up`" if self.cluster == config.CLUSTER_NAME
                    else f"`LAB_CLUSTER={self.cluster} lab cluster up`")
            raise LabError(f"no kubeconfig context {self.kube_context!r} "
                           f"(known: {', '.join(sorted(contexts)) or 'none'})",
                           hint=f"create the cluster with {make}" if self.is_kind
                           else "pass the kubeconfig that has this context with --kubeconfig")


def kubeconfig_paths(kubeconfig: Path | None = None) -> list[Path]:
    """The files the client library reads: the one named, else KUBECONFIG's, else ~/.kube/config."""
    if kubeconfig:
        return [kubeconfig]
    return [Path(p) for p in os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config")).split(os.pathsep) if p]


def kubeconfig_contexts(kubeconfig: Path | None = None) -> set[str]:
    """Context names in the kubeconfig the client library would read."""
    names: set[str] = set()
    for path in kubeconfig_paths(kubeconfig):
        try:
            document = yamldoc.load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        names.update(c.get("name") for c in document.get("contexts") or [] if isinstance(c, dict))
    return names
