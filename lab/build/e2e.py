"""Kubernetes' own end-to-end tests for the lab's cluster: `e2e.test` and `agnhost` from the
k8s.io/kubernetes module at the cluster's version, and the test images the lab's selection runs.

The binaries go through the same wrapper module as the node image's Kubernetes (its staging
modules replaced by the published ones, the same version ldflags), so they share its Go build
cache. The images are built from the lab's Debian base and tagged exactly as the image manifest
compiled into e2e.test names them (`e2e.test --list-images`), so the tests find them in the
nodes and never ask a registry.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

from lab import config, runner
from lab.build import nodeimage
from lab.build.images import INPUTS_LABEL, debian_base
from lab.errors import LabError
from lab.host import docker, gobuild
from lab.host.gobuild import GoBuild
from lab.progress import step

E2E_PACKAGE = "k8s.io/kubernetes/test/e2e"
AGNHOST_PACKAGE = "k8s.io/kubernetes/test/images/agnhost"
E2E_BINARY = "e2e.test"
KIT = gobuild.kit_source("e2e")
E2E_REGISTRY = "registry.k8s.io/e2e-test-images/"
TOOLS_IMAGE = f"k8s-lab/e2e-tools:{config.DEBIAN_SUITE}"
# Which kit Dockerfile makes each image of the manifest that the lab builds (by repository name).
# The manifest's other images (nginx, nonroot, volume servers, ...) belong to tests the lab's
# selection leaves out; a test that needs one fails to pull it and says which.
DOCKERFILES = {"agnhost": "agnhost", "httpd": "httpd", "busybox": "tools", "jessie-dnsutils": "tools"}


def e2e_build() -> GoBuild:
    """upstream's e2e.test: the test binary of test/e2e, as `make WHAT=test/e2e/e2e.test` makes it."""
    return dataclasses.replace(nodeimage.kubernetes_build(), name=f"e2e-{config.KUBERNETES_VERSION}",
                               packages=(E2E_PACKAGE,), outputs=(E2E_BINARY,), test=True)


def agnhost_build() -> GoBuild:
    return dataclasses.replace(nodeimage.kubernetes_build(), name=f"agnhost-{config.KUBERNETES_VERSION}",
                               packages=(AGNHOST_PACKAGE,), outputs=("agnhost",))


def e2e_binary() -> Path:
    """e2e.test, built unless the lab cache has it."""
    return gobuild.build(e2e_build()) / E2E_BINARY


def list_images(e2e_test: Path) -> list[str]:
    """The image references the e2e framework uses, as it prints them."""
    return parse_image_list(runner.run([e2e_test, "--list-images"], timeout=120).stdout)


def parse_image_list(text: str) -> list[str]:
    """The image references in `e2e.test --list-images` output (one per line; nothing else is
    both one word and `registry/name:tag` shaped)."""
    return sorted({line.strip() for line in text.splitlines()
                   if re.fullmatch(r"[\w.-]+(:\d+)?(/[\w.-]+)+:[\w.-]+", line.strip())})


def plan(manifest: list[str]) -> dict[str, list[str]]:
    """The manifest's references grouped by the kit Dockerfile that makes them."""
    # Only the promoted test images: the manifest also names private and deliberately invalid
    # registries (agnhost among them) for tests of pulling that must fail or need credentials.
    repository = {ref: ref.removeprefix(E2E_REGISTRY).rsplit(":", 1)[0]
                  for ref in manifest if ref.startswith(E2E_REGISTRY)}
    missing = sorted(set(DOCKERFILES) - set(repository.values()))
    if missing:
        raise LabError(f"e2e.test --list-images names no {', '.join(missing)} image",
                       hint="the e2e framework's image manifest changed; update "
                            "lab/build/e2e.py DOCKERFILES to what `e2e.test --list-images` prints")
    grouped: dict[str, list[str]] = {name: [] for name in sorted(set(DOCKERFILES.values()))}
    for ref, name in repository.items():
        if name in DOCKERFILES:
            grouped[DOCKERFILES[name]].append(ref)
    return grouped


def build_images(e2e_test: Path) -> list[str]:
    """agnhost and the other test images the lab's selection runs, built unless up to date;
    returns every tag that goes into the nodes."""
    grouped = plan(list_images(e2e_test))
    agnhost = gobuild.build(agnhost_build()) / "agnhost"
    coredns = gobuild.build(nodeimage.addon_builds()["coredns"]) / "coredns"
    porter = gobuild.module_dir("k8s.io/kubernetes", config.KUBERNETES_VERSION) / "test/images/agnhost/porter"
    base = debian_base()
    with step(f"e2e test images ({sum(map(len, grouped.values()))} tags)") as progress:
        progress.update(TOOLS_IMAGE)
        _build("tools", [TOOLS_IMAGE, *grouped["tools"]], base, {})
        progress.update(", ".join(grouped["httpd"]))
        _build("httpd", grouped["httpd"], TOOLS_IMAGE, {})
        progress.update(", ".join(grouped["agnhost"]))
        _build("agnhost", grouped["agnhost"], TOOLS_IMAGE, {
            "agnhost": agnhost, "coredns": coredns,
            "porter/localhost.crt": porter / "localhost.crt", "porter/localhost.key": porter / "localhost.key"})
    return sorted(tag for tags in grouped.values() for tag in tags)


def _build(name: str, tags: list[str], base: str, files: dict[str, Path]) -> None:
    """One kit Dockerfile FROM `base`, with `files` (destination -> source) as its context."""
    context = config.cache_dir() / "build" / "contexts" / f"e2e-{name}"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    for destination, source in files.items():
        (context / destination).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, context / destination)
    # The base's own inputs go in too: a rebuilt base rebuilds what stands on it.
    nodeimage.build_image(tags, KIT / f"{name}.Dockerfile", context,
                          {"BASE_IMAGE": base, "BASE_INPUTS": docker.image_label(base, INPUTS_LABEL) or ""})
