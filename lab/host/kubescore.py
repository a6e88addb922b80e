"""kube-score, the static checker of Kubernetes objects, built from the Go module proxy into the
lab cache (like the kit's tools), and a parser for its CI output.

``kube-score score --output-format ci`` prints one line per check and object::

    [CRITICAL] apps/v1/Deployment web in k8s-assignment: (nginx) Container Security Context ...
    [WARNING] ...   [OK] ...   [SKIPPED] ...

:func:`findings` runs it on YAML text and returns the CRITICAL and WARNING lines as
:class:`Finding` rows; switching a check off (``--ignore-test NAME``) is the caller's decision
and should come with a reason.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lab import runner
from lab.errors import LabError
from lab.host import gobuild
from lab.host.gobuild import GoBuild

VERSION = "v1.20.0"
MODULE = "github.com/zegl/kube-score"
_LINE = re.compile(r"^\[(?P<grade>CRITICAL|WARNING)\] (?P<object>.+?): (?P<message>.*)$")


@dataclass(frozen=True)
class Finding:
    grade: str  # CRITICAL or WARNING
    object: str
    message: str

    def __str__(self) -> str:
        return f"[{self.grade}] {self.object}: {self.message}"


def go_build() -> GoBuild:
    return GoBuild(name=f"kube-score-{VERSION}", packages=(f"{MODULE}/cmd/kube-score",),
                   requires=((MODULE, VERSION),))


def find() -> Path | None:
    """kube-score when it is built already; never builds."""
    built = gobuild.cached(go_build())
    return built / "kube-score" if built else None


def ensure() -> Path:
    """kube-score, built from Go modules on first use (about a minute)."""
    return gobuild.build(go_build()) / "kube-score"


def parse(output: str) -> list[Finding]:
    return [Finding(m["grade"], m["object"], m["message"])
            for m in map(_LINE.match, output.splitlines()) if m]


def findings(yaml_text: str, ignore: Sequence[str] = (), binary: Path | None = None) -> list[Finding]:
    """The CRITICAL and WARNING results of ``kube-score score`` on ``yaml_text``, with the
    checks named in ``ignore`` switched off."""
    binary = binary or ensure()
    cmd = [str(binary), "score", "--output-format", "ci"]
    for test in ignore:
        cmd += ["--ignore-test", test]
    result = runner.run([*cmd, "-"], input=yaml_text, timeout=120, check=False)
    # kube-score exits 1 when something is CRITICAL; anything else non-zero is a failure to run.
    if result.returncode not in (0, 1) or (result.returncode == 1 and not parse(result.stdout)):
        raise LabError(f"kube-score failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}",
                       hint="is the input valid Kubernetes YAML?")
    return parse(result.stdout)
