"""The few Docker operations the lab needs, as a thin layer over the `docker` CLI.

Image-producing operations write to a temporary tag first and retag only on success, so a failed
step never leaves a half-built image under a real name.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import BinaryIO, Callable

from lab import runner
from lab.errors import LabError


# Long enough for `docker build` steps that the lab times itself and for a big `docker save`.
TIMEOUT_S = 900
CHUNK = 1 << 20


def executable() -> str:
    path = shutil.which("docker")
    if path is None:
        raise LabError("the lab needs Docker, and `docker` is not on PATH",
                       hint="install Docker (Debian: apt-get install docker.io) or run scripts/setup-host")
    return path


def run(args: list[str], *, input: bytes | None = None, check: bool = True,
        timeout: float | None = TIMEOUT_S) -> runner.Result:
    result = runner.run([executable(), *args], input=input, text=False, check=False, timeout=timeout,
                        hint="is the Docker engine busy? `docker ps` and `docker info` say more")
    if check and result.returncode != 0:
        detail = (result.stderr or b"").decode(errors="replace").strip()
        raise LabError(f"`docker {' '.join(args[:3])} …` failed: {detail[-2000:]}",
                       hint=_hint_for(detail))
    return result


def _hint_for(detail: str) -> str | None:
    if "Cannot connect to the Docker daemon" in detail or "docker.sock" in detail:
        return "start Docker: `bash scripts/setup-host` (or `sudo systemctl start docker`)"
    if "unable to apply caps" in detail:
        return "this host lacks CAP_SYS_RESOURCE; `bash scripts/setup-host` installs the runtime wrapper"
    if "no space left" in detail:
        return "free disk space (docker system prune) and retry"
    return None


def engine_ready() -> bool:
    try:
        require_engine()
    except LabError:
        return False
    return True


def require_engine() -> None:
    """Fail before any work, with the engine's own complaint, when Docker does not answer."""
    try:
        result = run(["info", "--format", "{{.ServerVersion}}"], check=False, timeout=30)
    except LabError as error:
        complaint = error.message
    else:
        if result.returncode == 0:
            return
        complaint = result.stderr.decode(errors="replace").strip()[-500:]
    raise LabError(f"the Docker engine does not answer: {complaint}",
                   hint="install Docker (Debian: `apt-get install docker.io`) and start it, "
                        "or run `bash scripts/setup-host` as root")


def output(args: list[str]) -> str:
    return run(args).stdout.decode().strip()


def image_exists(ref: str) -> bool:
    return run(["image", "inspect", ref], check=False).returncode == 0


def image_label(ref: str, label: str) -> str | None:
    result = run(["image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', ref],
                 check=False)
    if result.returncode != 0:
        return None
    value = result.stdout.decode().strip()
    return None if value in ("", "<no value>") else value


def _temporary_tag(tag: str) -> str:
    # Next to the real name, so a build killed half-way leaves its leftover where it is seen.
    return f"{tag.rsplit(':', 1)[0]}:building-{uuid.uuid4().hex[:12]}"


def make_image(tags: list[str], make: Callable[[str], None]) -> None:
    """Let `make` create an image under a temporary tag, then give that image `tags`."""
    temporary = _temporary_tag(tags[0])
    try:
        make(temporary)
        for tag in tags:
            run(["tag", temporary, tag])
    finally:
        run(["rmi", "--no-prune", temporary], check=False)


def build(tags: list[str], dockerfile: Path, context: Path, build_args: dict[str, str],
          labels: dict[str, str] | None = None) -> None:
    def make(temporary: str) -> None:
        args = ["build", "-q", "-t", temporary, "-f", str(dockerfile)]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        run([*args, str(context)])

    make_image(tags, make)


def import_tar(data: bytes, tags: list[str], changes: list[str]) -> None:
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    make_image(tags, lambda temporary: run([*args, "-", temporary], input=data))


def commit(container: str, tag: str, changes: list[str]) -> None:
    args = ["commit"]
    for change in changes:
        args += ["--change", change]
    make_image([tag], lambda temporary: run([*args, container, temporary]))


def run_detached(image: str, command: list[str], *, entrypoint: str | None = None,
                 extra: list[str] | None = None) -> str:
    args = ["run", "-d", *(extra or [])]
    if entrypoint:
        args += ["--entrypoint", entrypoint]
    return output([*args, image, *command])


def exec_(container: str, command: list[str], input: bytes | None = None) -> str:
    args = ["exec", "-i", container, *command] if input is not None else ["exec", container, *command]
    return run(args, input=input).stdout.decode()


def exec_each(containers: list[str], command: list[str]) -> dict[str, str | None]:
    """``command`` in every container at once (each ``docker exec`` mostly waits on the runtime):
    its stdout per container, None where it failed."""
    from concurrent.futures import ThreadPoolExecutor

    def one(container: str) -> str | None:
        result = run(["exec", container, *command], check=False, timeout=60)
        return result.stdout.decode(errors="replace") if result.returncode == 0 else None

    with ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
        return dict(zip(containers, pool.map(one, containers)))


def copy_into(container: str, source: Path, destination: str) -> None:
    run(["cp", str(source), f"{container}:{destination}"])


def write_file(container: str, path: str, content: str) -> None:
    exec_(container, ["sh", "-c", f'mkdir -p "$(dirname "{path}")" && cat > "{path}"'],
          input=content.encode())


def pipe_save_into(images: list[str], container: str, command: list[str]) -> None:
    """`docker save IMAGES | docker exec -i CONTAINER COMMAND` without holding the archive in memory."""
    runner.pipe([executable(), "save", *images], [executable(), "exec", "-i", container, *command],
                what=f"moving images into {container}", timeout=TIMEOUT_S * 3)


def image_id(ref: str) -> str | None:
    result = run(["image", "inspect", "--format", "{{.Id}}", ref], check=False)
    return result.stdout.decode().strip() if result.returncode == 0 else None


def save(tags: list[str], sink: Callable[[bytes], None], timeout: float = TIMEOUT_S) -> None:
    """`docker save TAGS`, handed to `sink` a chunk at a time (a node image is a gigabyte)."""
    _stream([executable(), "save", *tags], f"docker save {' '.join(tags)}", timeout,
            lambda process: _drain(process.stdout, sink))


def load(archive: Path, on_bytes: Callable[[int], None], timeout: float = TIMEOUT_S) -> None:
    """`docker load` of an image archive (plain or gzipped), fed a chunk at a time so that
    `on_bytes` can show how far it got."""

    def feed(process: runner.Process) -> None:
        try:
            with open(archive, "rb") as source:
                while chunk := source.read(CHUNK):
                    process.stdin.write(chunk)
                    on_bytes(len(chunk))
            process.stdin.close()
        except BrokenPipeError:
            pass  # docker stopped reading: its exit code and output say why

    _stream([executable(), "load"], f"docker load -i {archive.name}", timeout, feed, stdin=runner.PIPE)


def _drain(stream: BinaryIO, sink: Callable[[bytes], None]) -> None:
    while chunk := stream.read(CHUNK):
        sink(chunk)


def _stream(argv: list[str], what: str, timeout: float, work: Callable[[runner.Process], None],
            stdin: int | None = None) -> None:
    """Start `argv`, let `work` stream through its pipes, and fail like runner.run: past `timeout`
    (a watchdog ends the command, which ends the stream) or on a non-zero exit."""
    with tempfile.TemporaryFile() as messages:
        process = runner.start(argv, stdin=stdin, stdout=runner.PIPE if stdin is None else messages,
                               stderr=messages)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            runner.stop(process)

        watchdog = threading.Timer(timeout, expire)
        watchdog.start()
        try:
            work(process)
            code = process.wait()
        except BaseException:
            runner.stop(process)
            raise
        finally:
            watchdog.cancel()
            if process.stdout is not None:
                process.stdout.close()
        messages.seek(0)
        detail = messages.read().decode(errors="replace").strip()
    if expired.is_set():
        raise LabError(f"`{what}` did not finish within {timeout:g}s",
                       hint="is the Docker engine busy? `docker ps` and `docker info` say more")
    if code != 0:
        raise LabError(f"`{what}` failed (exit {code}): {detail[-2000:]}", hint=_hint_for(detail))


def remove(container: str) -> None:
    run(["rm", "-f", "-v", container], check=False)


def data_root() -> Path:
    return Path(output(["info", "--format", "{{.DockerRootDir}}"]) or "/var/lib/docker")


def require_free_space(gib: float, *paths: Path) -> None:
    """Fail before a long build, not in the middle of it, when the engine's data root or one of
    ``paths`` (which need not exist yet) has less than ``gib`` GiB free."""
    root = data_root()
    # A remote engine's data root is not on this machine's disks.
    for path in [root, *paths] if root.exists() else paths:
        probe = path
        while not probe.exists():
            probe = probe.parent
        free = shutil.disk_usage(probe).free / 2**30
        if free < gib:
            raise LabError(f"{path} has {free:.1f} GiB free; this build needs {gib} GiB",
                           hint="free disk space (e.g. `docker system prune`) or set LAB_CACHE_DIR "
                                "to a larger disk")
