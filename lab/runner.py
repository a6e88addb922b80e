"""The one way the lab starts an external command (kubectl, helm, kind, docker, go, gzip, ...).

Every command gets a timeout that ends in a :class:`LabError` naming the command, how long it ran
and what to look at; a failure's message carries the tail of its stderr with the caller's
secrets blanked out. Long commands can report each output line to a progress step as it comes.
No other module of the lab imports :mod:`subprocess`.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import threading
from pathlib import Path
from typing import IO, Callable, Iterable, Mapping, Sequence

from lab import timing
from lab.errors import LabError

Result = subprocess.CompletedProcess
Process = subprocess.Popen
PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

DEFAULT_TIMEOUT_S = 300
REDACTED = "***"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret value replaced, longest first (a secret may contain another)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def describe(argv: Sequence[object], words: int = 4) -> str:
    """How a command is named in messages: the program's name and its first few arguments."""
    shown = [Path(str(argv[0])).name, *map(str, argv[1:words])]
    return shlex.join(shown) + (" …" if len(argv) > words else "")


def run(argv: Sequence[object], *, what: str | None = None, input: str | bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S, check: bool = True, hint: str | None = None,
        cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (), text: bool = True, stdout: int | IO | None = PIPE,
        on_line: Callable[[str], None] | None = None) -> Result:
    """Run `argv` to the end and return its result (output captured unless `stdout` says otherwise).

    `on_line` receives each line of stdout and stderr as it appears (a Go build's packages, helm's
    waits); the captured output is still returned. With `check`, a non-zero exit is a LabError.
    """
    argv = [str(arg) for arg in argv]
    with timing.command(argv):
        return _run(argv, what or describe(argv), input, timeout, check, hint, cwd, env, tuple(secrets),
                    text, stdout, on_line)


def _run(argv: list[str], what: str, input: str | bytes | None, timeout: float | None, check: bool,
         hint: str | None, cwd: str | Path | None, env: Mapping[str, str] | None, secrets: tuple[str, ...],
         text: bool, stdout: int | IO | None, on_line: Callable[[str], None] | None) -> Result:
    try:
        if on_line is None:
            result = subprocess.run(argv, input=input, stdout=stdout, stderr=PIPE, text=text,
                                    timeout=timeout, cwd=cwd, env=_env(env))
        else:
            result = _run_streaming(argv, input, timeout, cwd, _env(env), on_line)
    except subprocess.TimeoutExpired as error:
        raise LabError(f"`{what}` did not finish within {timeout:g}s",
                       hint=hint or "the command may be waiting on the cluster or the network; "
                                    "run it by hand to see where it stops") from error
    except FileNotFoundError as error:
        raise LabError(f"`{what}` cannot start: {argv[0]} is not installed",
                       hint=hint or "`lab doctor` lists what the lab needs") from error
    except OSError as error:
        raise LabError(f"`{what}` cannot start: {error}", hint=hint) from error
    if check and result.returncode != 0:
        raise failure(result, what, hint=hint, secrets=secrets)
    return result


def failure(result: Result, what: str, *, hint: str | None = None, secrets: Iterable[str] = ()) -> LabError:
    """The LabError for a finished command that failed: its exit code and the end of its stderr."""
    detail = result.stderr or ""
    if isinstance(detail, bytes):
        detail = detail.decode(errors="replace")
    detail = redact(detail.strip(), secrets)[-2000:]
    return LabError(f"`{what}` failed (exit {result.returncode})" + (f": {detail}" if detail else ""),
                    hint=hint)


def start(argv: Sequence[object], *, stdin: int | IO | None = None, stdout: int | IO | None = PIPE,
          stderr: int | IO | None = PIPE, text: bool = False, cwd: str | Path | None = None,
          env: Mapping[str, str] | None = None) -> Process:
    """Start `argv` without waiting, for streams (a dump piped to a file, logs followed live).

    The caller owns the process: it reads, writes and waits with its own deadline, and ends it with
    :func:`stop`.
    """
    argv = [str(arg) for arg in argv]
    try:
        return _TimedProcess(argv, stdin=stdin, stdout=stdout, stderr=stderr, text=text, cwd=cwd, env=_env(env))
    except FileNotFoundError as error:
        raise LabError(f"`{describe(argv)}` cannot start: {argv[0]} is not installed",
                       hint="`lab doctor` lists what the lab needs") from error


class _TimedProcess(subprocess.Popen):
    """A started command whose caller waits for it (a dump streamed to a file): the waiting is
    booked in lab.timing like a command run to the end."""

    def wait(self, timeout: float | None = None):
        with timing.command(self.args):
            return super().wait(timeout)

    def communicate(self, input=None, timeout: float | None = None):
        with timing.command(self.args):
            return super().communicate(input, timeout)


def stop(process: Process, grace: float = 5) -> None:
    """End a started process: politely first, then for good."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def pipe(producer: Sequence[object], consumer: Sequence[object], *, what: str,
         timeout: float | None = DEFAULT_TIMEOUT_S, hint: str | None = None) -> None:
    """`producer | consumer` without holding the stream in memory; either failing is a LabError."""
    with timing.command(producer):
        _pipe(producer, consumer, what, timeout, hint)


def _pipe(producer: Sequence[object], consumer: Sequence[object], what: str, timeout: float | None,
          hint: str | None) -> None:
    first = start(producer, stdout=PIPE, stderr=PIPE)
    try:
        second = subprocess.run([str(a) for a in consumer], stdin=first.stdout, capture_output=True,
                                timeout=timeout, env=None)
        first.stdout.close()
        first.wait(timeout)  # the consumer has read to the end: the producer is finishing
    except subprocess.TimeoutExpired as error:
        stop(first)
        raise LabError(f"`{what}` did not finish within {timeout:g}s", hint=hint) from error
    produced = first.stderr.read().decode(errors="replace")
    if first.returncode != 0 or second.returncode != 0:
        raise LabError(f"`{what}` failed: {produced.strip()[-1000:]} "
                       f"{second.stderr.decode(errors='replace').strip()[-2000:]}".strip(), hint=hint)


def _env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    return None if env is None else dict(env)


def _run_streaming(argv: list[str], input: str | bytes | None, timeout: float | None,
                   cwd: str | Path | None, env: dict[str, str] | None,
                   on_line: Callable[[str], None]) -> Result:
    process = subprocess.Popen(argv, stdin=PIPE if input is not None else DEVNULL, stdout=PIPE,
                               stderr=PIPE, text=True, cwd=cwd, env=env)
    captured: dict[str, list[str]] = {"stdout": [], "stderr": []}

    def pump(name: str, stream: IO[str]) -> None:
        for line in stream:
            captured[name].append(line)
            on_line(line.rstrip("\n"))

    readers = [threading.Thread(target=pump, args=(name, getattr(process, name)), daemon=True)
               for name in captured]
    for reader in readers:
        reader.start()
    if input is not None:
        process.stdin.write(input if isinstance(input, str) else input.decode())
        process.stdin.close()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        raise
    for reader in readers:
        reader.join()
    return Result(argv, process.returncode, "".join(captured["stdout"]), "".join(captured["stderr"]))


def environment(path_first: Iterable[str | Path] = (), **extra: str) -> dict[str, str]:
    """The current environment with `path_first` directories at the head of PATH."""
    dirs = list(dict.fromkeys(str(d) for d in path_first))
    env = dict(os.environ, **extra)
    env["PATH"] = os.pathsep.join([*dirs, os.environ.get("PATH", "")])
    return env
