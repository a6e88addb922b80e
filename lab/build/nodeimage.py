"""The offline kind node image, assembled from Go modules and Debian packages.

Mirrors what `kind build node-image` does (base container, Kubernetes binaries in /usr/bin,
images imported into the node's containerd, `docker commit` with kind's entrypoint), except that
every image comes from this machine instead of a registry. Each stage is keyed by its inputs, so a
second build reuses everything.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from lab import config, runner
from lab.host import docker
from lab.host import gobuild
from lab.errors import LabError
from lab.host.gobuild import GoBuild
from lab.build.images import debian_base
from lab.progress import info, step

KUBE_BINARIES = ("kubeadm", "kubectl", "kubelet", "kube-apiserver", "kube-controller-manager",
                 "kube-scheduler", "kube-proxy")
# Control-plane images that are one static binary; upstream ships them distroless.
STATIC_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
# Free disk needed in Docker's data root and the cache for a cold build, measured with headroom.
REQUIRED_FREE_GIB = 15
INPUTS_LABEL = "k8s-lab.inputs"


def kind_source() -> Path:
    return gobuild.module_dir("sigs.k8s.io/kind", config.KIND_VERSION)


# ---------------------------------------------------------------------------------------------
# Go builds


def kubernetes_build() -> GoBuild:
    """k8s.io/kubernetes through a wrapper module: its staging modules are replaced by the
    published k8s.io/* modules of the same release, and version ldflags make every binary
    report the pinned version."""
    version = config.KUBERNETES_VERSION
    staging_version = "v0" + version[2:]  # v1.34.4 -> v0.34.4
    gomod = gobuild.module_dir("k8s.io/kubernetes", version) / "go.mod"
    staged = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", gomod.read_text(), re.M)
    major, minor = version[1:].split(".")[:2]
    ldflags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ldflags += [f"-X {package}.gitVersion={version}", f"-X {package}.gitMajor={major}",
                    f"-X {package}.gitMinor={minor}", f"-X {package}.gitTreeState=clean"]
    return GoBuild(
        name=f"kubernetes-{version}",
        packages=tuple(f"k8s.io/kubernetes/cmd/{b}" for b in KUBE_BINARIES),
        requires=(("k8s.io/kubernetes", version),),
        replaces=tuple((m, f"{m} {staging_version}") for m in staged),
        ldflags=" ".join(ldflags),
    )


def addon_builds() -> dict[str, GoBuild]:
    return {
        "etcd": GoBuild(name=f"etcd-{config.ETCD_VERSION}", packages=(".",), outputs=("etcd",),
                        source=gobuild.kit_source("etcd"),
                        requires=(("go.etcd.io/etcd/server/v3", config.ETCD_VERSION),)),
        "coredns": GoBuild(name=f"coredns-{config.COREDNS_VERSION}",
                           packages=("github.com/coredns/coredns",),
                           requires=(("github.com/coredns/coredns", config.COREDNS_VERSION),)),
        "local-path-provisioner": GoBuild(
            name=f"local-path-provisioner-{config.LOCAL_PATH_PROVISIONER_VERSION}",
            packages=("github.com/rancher/local-path-provisioner",),
            requires=(("github.com/rancher/local-path-provisioner",
                       config.LOCAL_PATH_PROVISIONER_VERSION),)),
        "crictl": GoBuild(name=f"crictl-{config.CRICTL_VERSION}",
                          packages=("sigs.k8s.io/cri-tools/cmd/crictl",),
                          requires=(("sigs.k8s.io/cri-tools", config.CRICTL_VERSION),)),
        "cni": GoBuild(name=f"cni-plugins-{config.CNI_PLUGINS_VERSION}",
                       packages=tuple(f"github.com/containernetworking/plugins/plugins/{p}"
                                      for p in ("main/ptp", "main/loopback", "ipam/host-local",
                                                "meta/portmap")),
                       requires=(("github.com/containernetworking/plugins",
                                  config.CNI_PLUGINS_VERSION),)),
        # runc at the version kind's base image pins (Debian's is 1.1.5), linked statically
        # with libseccomp so it runs in any node base.
        "runc": GoBuild(name=f"runc-{config.RUNC_VERSION}", packages=("github.com/opencontainers/runc",),
                        requires=(("github.com/opencontainers/runc", config.RUNC_VERSION),),
                        cgo=True, tags=("seccomp", "netgo", "osusergo"),
                        ldflags=f"-s -w -X main.version={config.RUNC_VERSION[1:]} "
                                "-linkmode external -extldflags -static"),
        "kindnetd": GoBuild(name="kindnetd", packages=(".",), outputs=("kindnetd",),
                            source=gobuild.kit_source("kindnetd")),
    }


def build_pause() -> Path:
    """The sandbox binary, compiled statically with the host's C compiler."""
    source = gobuild.kit_source("pause") / "pause.c"
    key = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    out = config.cache_dir() / "bin" / f"pause-{key}" / "pause"
    if out.is_file():
        return out
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise LabError("building the pause binary needs a C compiler",
                       hint="install Debian's build-essential (gcc and libc6-dev)")
    out.parent.mkdir(parents=True, exist_ok=True)
    runner.run([compiler, "-static", "-Os", "-o", out, source], timeout=120)
    return out


# ---------------------------------------------------------------------------------------------
# What kind and kubeadm expect inside the node


def kind_constants(source: Path) -> dict[str, str]:
    """String constants of kind's node-image builder, with `a + b` concatenations resolved:
    image tags and the default CNI and storage manifests, exactly as kind ships them."""
    text = "\n".join(p.read_text() for p in sorted((source / "pkg/build/nodeimage").glob("const*.go")))
    token = r'(?:`[^`]*`|"(?:[^"\\]|\\.)*"|[A-Za-z_]\w*)'
    values: dict[str, str] = {}
    for name, expr in re.findall(rf"^const (\w+)\s*=\s*({token}(?:\s*\+\s*{token})*)", text, re.M):
        parts = re.findall(token, expr)
        values[name] = "".join(
            p[1:-1] if p[0] in "`\"" else values[p] for p in parts)
    return values


def required_images(kubeadm: Path, kind_consts: dict[str, str], sandbox: str) -> dict[str, str]:
    """Map each component to the exact image reference the node must hold."""
    listed = runner.run([kubeadm, "config", "images", "list", "--kubernetes-version",
                         config.KUBERNETES_VERSION], timeout=60)
    refs: dict[str, str] = {}
    for ref in listed.stdout.split():
        name = ref.rsplit("/", 1)[-1].split(":")[0]
        refs[name] = ref
    refs["pause"] = refs.get("pause", sandbox)
    refs["sandbox"] = sandbox
    refs["kindnetd"] = kind_consts["kindnetdImage"]
    refs["local-path-provisioner"] = kind_consts["storageProvisionerImage"]
    refs["local-path-helper"] = kind_consts["storageHelperImage"]
    return refs


def sandbox_image(source: Path) -> str:
    match = re.search(r'sandbox_image\s*=\s*"([^"]+)"',
                      (source / "images/base/files/etc/containerd/config.toml").read_text())
    if not match:
        raise LabError("cannot find sandbox_image in kind's containerd config",
                       hint=f"kind {config.KIND_VERSION} changed its base files; update lab/nodeimage.py")
    return match.group(1)


# ---------------------------------------------------------------------------------------------
# Images


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def import_static_image(tags: list[str], binary: Path, entrypoint: list[str] | None,
                        path_in_image: str) -> None:
    """An image holding one static binary, made with `docker import` (no registry, no base)."""
    inputs = _key(tags, _file_digest(binary), entrypoint, path_in_image)
    if docker.image_label(tags[0], INPUTS_LABEL) == inputs:
        return
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in Path(path_in_image).parents:
            if str(directory) not in ("/", "."):
                entry = tarfile.TarInfo(str(directory).lstrip("/"))
                entry.type, entry.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(entry)
        tar.add(binary, arcname=path_in_image.lstrip("/"))
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
    changes = ["ENV PATH=/usr/local/bin:/usr/bin:/bin", f"LABEL {INPUTS_LABEL}={inputs}"]
    if entrypoint:
        changes.append("ENTRYPOINT " + json.dumps(entrypoint))
    docker.import_tar(buffer.getvalue(), tags, changes)


def build_image(tags: list[str], dockerfile: Path, context: Path, build_args: dict[str, str]) -> None:
    inputs = _key(tags, build_args, {p.relative_to(context).as_posix(): _file_digest(p)
                                     for p in sorted(context.rglob("*")) if p.is_file()},
                  dockerfile.read_text())
    if docker.image_label(tags[0], INPUTS_LABEL) == inputs:
        return
    docker.build(tags, dockerfile, context, {**build_args}, labels={INPUTS_LABEL: inputs})


def _context(name: str, files: dict[str, Path]) -> Path:
    """A fresh build context holding exactly `files` (destination -> source)."""
    context = config.cache_dir() / "build" / "contexts" / name
    shutil.rmtree(context, ignore_errors=True)
    for destination, source in files.items():
        target = context / destination
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    context.mkdir(parents=True, exist_ok=True)
    return context


def build_node_base(kind_src: Path, base: str, crictl: Path, runc: Path, cni: Path) -> str:
    files = {"files": kind_src / "images/base/files", "bin/crictl": crictl, "sbin/runc": runc}
    files.update({f"cni/{p.name}": p for p in cni.iterdir()})
    context = _context("node-base", files)
    tag = f"k8s-lab/node-base:{config.KIND_VERSION}"
    with step(f"node base image {tag}"):
        build_image([tag], gobuild.kit_source("base") / "Dockerfile", context,
                    {"DEBIAN_BASE": base})
    return tag


def build_component_images(refs: dict[str, str], kube: Path, bins: dict[str, Path],
                           pause: Path, base: str) -> list[str]:
    """Every image kubeadm and kind will ask the node's containerd for, tagged as they expect."""
    with step("control-plane and add-on images"):
        for component in STATIC_COMPONENTS:
            import_static_image([refs[component]], kube / component, None,
                                f"/usr/local/bin/{component}")
        import_static_image([refs["etcd"]], bins["etcd"] / "etcd", None, "/usr/local/bin/etcd")
        import_static_image([refs["coredns"]], bins["coredns"] / "coredns", ["/coredns"], "/coredns")
        import_static_image(sorted({refs["pause"], refs["sandbox"]}), pause, ["/pause"], "/pause")
        import_static_image([refs["local-path-provisioner"]],
                            bins["local-path-provisioner"] / "local-path-provisioner", None,
                            "/usr/local/bin/local-path-provisioner")
        debian_dockerfile = gobuild.kit_source("images") / "debian.Dockerfile"
        build_image([refs["kube-proxy"]], debian_dockerfile,
                    _context("kube-proxy", {"bin/kube-proxy": kube / "kube-proxy"}),
                    {"DEBIAN_BASE": base, "PACKAGES": "iptables conntrack ipset"})
        build_image([refs["local-path-helper"]], debian_dockerfile,
                    _context("local-path-helper", {"bin": Path(tempfile.mkdtemp())}),
                    {"DEBIAN_BASE": base, "PACKAGES": ""})
        build_image([refs["kindnetd"]], gobuild.kit_source("kindnetd") / "Dockerfile",
                    _context("kindnetd", {"kindnetd": bins["kindnetd"] / "kindnetd"}),
                    {"DEBIAN_BASE": base})
    return sorted(set(refs.values()))


def node_image_inputs() -> str:
    """A key over everything that goes into the node image."""
    return _key(config.KUBERNETES_VERSION, config.KIND_VERSION, config.ETCD_VERSION,
                config.COREDNS_VERSION, config.CRICTL_VERSION, config.CNI_PLUGINS_VERSION,
                config.LOCAL_PATH_PROVISIONER_VERSION, config.RUNC_VERSION,
                kubernetes_build().key(), {n: b.key() for n, b in addon_builds().items()},
                _file_digest(gobuild.kit_source("pause") / "pause.c"),
                _file_digest(gobuild.kit_source("base") / "Dockerfile"),
                _file_digest(gobuild.kit_source("images") / "debian.Dockerfile"),
                _file_digest(Path(__file__)))


def build(force: bool = False) -> str:
    """Build (or reuse) the offline node image and return its tag."""
    target = config.OFFLINE_NODE_IMAGE
    inputs = node_image_inputs()
    if not force and docker.image_label(target, INPUTS_LABEL) == inputs:
        info(f"node image {target} is up to date")
        return target
    docker.require_free_space(REQUIRED_FREE_GIB, config.cache_dir())
    kind_src = kind_source()
    kube = gobuild.build(kubernetes_build())
    bins = {name: gobuild.build(spec) for name, spec in addon_builds().items()}
    pause = build_pause()
    base = debian_base()
    node_base = build_node_base(kind_src, base, bins["crictl"] / "crictl", bins["runc"] / "runc",
                                bins["cni"])
    consts = kind_constants(kind_src)
    refs = required_images(kube / "kubeadm", consts, sandbox_image(kind_src))
    images = build_component_images(refs, kube, bins, pause, base)
    with step(f"assemble {target}"):
        _assemble(node_base, kube, consts, images, target, inputs)
    return target


def _assemble(node_base: str, kube: Path, consts: dict[str, str], images: list[str],
              target: str, inputs: str) -> None:
    container = docker.run_detached(node_base, ["infinity"], entrypoint="sleep",
                                    extra=["--security-opt", "seccomp=unconfined"])
    try:
        for binary in ("kubeadm", "kubectl", "kubelet"):
            docker.copy_into(container, kube / binary, f"/usr/bin/{binary}")
        docker.exec_(container, ["chown", "root:root", "/usr/bin/kubeadm", "/usr/bin/kubectl",
                                 "/usr/bin/kubelet"])
        docker.write_file(container, "/kind/version", config.KUBERNETES_VERSION)
        docker.write_file(container, "/kind/manifests/default-cni.yaml", consts["defaultCNIManifest"])
        docker.write_file(container, "/kind/manifests/default-storage.yaml",
                          consts["defaultStorageManifest"])
        docker.exec_(container, ["bash", "-c", "nohup containerd >/var/log/containerd-build.log 2>&1 &"])
        docker.exec_(container, ["bash", "-c", "for i in $(seq 50); do ctr version >/dev/null 2>&1 "
                                 "&& exit 0; sleep 0.2; done; cat /var/log/containerd-build.log; exit 1"])
        info(f"importing {len(images)} images into the node's containerd")
        docker.pipe_save_into(images, container,
                              ["ctr", "--namespace=k8s.io", "images", "import",
                               "--label=io.cri-containerd.pinned=pinned", "--all-platforms",
                               "--no-unpack", "--digests", "-"])
        present = set(docker.exec_(container, ["ctr", "--namespace=k8s.io", "images", "list", "-q"]).split())
        missing = [image for image in images if image not in present
                   and f"docker.io/{image}" not in present]
        if missing:
            raise LabError(f"images missing from the node after import: {missing}",
                           hint="rebuild with `lab images build --node --force`")
        docker.exec_(container, ["pkill", "containerd"])
        # `sleep` is PID 1 and reaps nothing, so a stopped containerd lingers as a zombie: wait
        # until no live (non-Z) containerd is left.
        docker.exec_(container, ["bash", "-c", "for i in $(seq 100); do ps -o stat= -C containerd "
                                 "| grep -qv Z || exit 0; sleep 0.2; done; exit 1"])
        docker.commit(container, target, [
            'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]',
            'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""',
            f"LABEL {INPUTS_LABEL}={inputs}",
        ])
    finally:
        docker.remove(container)
