"""JupyterLab on loopback, and a student who uses it through Debian's Chromium.

:class:`JupyterLab` serves a folder headlessly on 127.0.0.1 (a free port, a random token) with a
user profile of its own, so nothing a developer clicked in their own JupyterLab (an answered news
prompt, a saved layout) hides what a student sees the first time. :class:`Student` drives the page
the way a person does: open a notebook from its URL, click into a cell, paste an answer, run the
cells with Shift+Enter, read the rendered output. How to wait (the kernel's "Idle" in the status
bar, each cell's execution count) follows JupyterLab's own UI-test helpers, Galata's ``NotebookHelper``.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Mapping

import pytest

CHROMIUM = Path(os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium"))
# No GPU on a headless host; Playwright's own switches already keep Chromium off the network in
# the background (no component updates, no first-run page).
CHROMIUM_ARGS = ["--disable-gpu"]
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """``python -m jupyterlab`` of this interpreter, serving ``root`` until :meth:`stop`.

    ``app_settings_dir`` replaces the installation's settings folder (where the lab's shipped
    overrides live); None keeps it. ``env`` is added to the server's (and so the kernels')
    environment."""

    def __init__(self, root: Path, profile: Path, *, app_settings_dir: Path | None = None,
                 env: Mapping[str, str] | None = None):
        self.root, self.profile = root, profile
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.log = profile / "jupyterlab.log"
        profile.mkdir(parents=True, exist_ok=True)
        dirs = {name: profile / name for name in ("config", "data", "runtime", "user-settings", "workspaces")}
        for d in dirs.values():
            d.mkdir(exist_ok=True)
        # The driver finds cells in the page, so it needs every cell rendered, not only those in
        # view (JupyterLab's default windowing); the user settings hold nothing else.
        tracker = dirs["user-settings"] / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
        tracker.parent.mkdir(parents=True, exist_ok=True)
        tracker.write_text('{"windowingMode": "none"}\n')
        self.env = {**os.environ, **(env or {}),
                    "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
                    "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
                    "JUPYTERLAB_SETTINGS_DIR": str(dirs["user-settings"]),
                    "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"])}
        self.args = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
            # The server itself never goes out for news or updates (the settings decide whether
            # the page asks; these only keep a test run off the network).
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if app_settings_dir is not None:
            self.args.append(f"--LabApp.app_settings_dir={app_settings_dir}")
        self.process: subprocess.Popen | None = None

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{sep}token={self.token}"

    def start(self) -> "JupyterLab":
        try:
            import jupyterlab  # noqa: F401
        except ImportError:
            pytest.fail(f"JupyterLab is not installed in {sys.prefix}: `make test-browser` installs "
                        "the [browser] extra", pytrace=False)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.root)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {self.process.returncode}:\n{self.tail()}", pytrace=False)
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"JupyterLab did not answer on port {self.port} within {START_TIMEOUT_S} s:\n{self.tail()}",
                    pytrace=False)

    def get_json(self, path: str):
        import json

        with urllib.request.urlopen(self.url(path), timeout=10) as response:
            return json.load(response)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def launch_chromium(playwright):
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `bash scripts/setup-host --browser` installs Debian's "
                    "(or set LAB_CHROMIUM)", pytrace=False)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


# The execution counts of the open notebook's code cells: "[3]:" -> 3, "[*]:" (queued or running)
# -> "*", "[ ]:" (never run, or skipped after an error) -> null.
_PROMPTS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')]
    .map(p => { const m = /\\[(\\d+|\\*)\\]/.exec(p.textContent);
                return m ? (m[1] === '*' ? '*' : Number(m[1])) : null; })"""


class Student:
    """One browser tab on a :class:`JupyterLab`."""

    def __init__(self, page, lab: JupyterLab):
        self.page, self.lab = page, lab

    def open(self, notebook: str, timeout_s: float = 60) -> None:
        """Open ``notebook`` (a path under the server's root) and wait until its kernel is idle."""
        from playwright.sync_api import expect

        self.page.goto(self.lab.url(f"lab/tree/{notebook}"))
        expect(self.page.locator(".jp-NotebookPanel")).to_be_visible(timeout=timeout_s * 1000)
        expect(self.page.locator("#jp-main-statusbar").get_by_text("Idle")).to_be_visible(timeout=timeout_s * 1000)

    def _code_cells(self):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")

    def _index(self, contains: str) -> int:
        sources = self._code_cells().locator(".jp-InputArea-editor").all_inner_texts()
        found = [i for i, text in enumerate(sources) if contains in text]
        assert len(found) == 1, f"{len(found)} code cells contain {contains!r}, expected exactly one"
        return found[0]

    def cell(self, contains: str):
        """The one code cell whose source contains ``contains`` (by position, so the locator still
        finds it once its text changes)."""
        return self._code_cells().nth(self._index(contains))

    def write(self, contains: str, source: str) -> None:
        """Replace the source of the cell that contains ``contains`` with ``source``, as a student
        who selects all and pastes does (typing key by key would let the editor re-indent YAML)."""
        from playwright.sync_api import expect

        cell = self.cell(contains)
        cell.scroll_into_view_if_needed()
        cell.locator(".cm-content").click()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.insert_text(source)
        expect(cell.locator(".cm-line"), "the cell holds the answer").to_have_text(source.split("\n"))

    def run_cells(self, *contains: str, timeout_s: float = 120) -> None:
        """Run these cells in order, as a student who clicks into each and presses Shift+Enter,
        each until it has finished: a new execution count (above every count from before). A
        cell that raised still gets one; its error is in :meth:`errors`."""
        for text in contains:
            index = self._index(text)
            before = self.page.evaluate(_PROMPTS_JS)
            last = max((n for n in before if isinstance(n, int)), default=0)
            cell = self._code_cells().nth(index)
            cell.scroll_into_view_if_needed()
            cell.locator(".cm-content").click()
            self.page.keyboard.press("Shift+Enter")
            try:
                self.page.wait_for_function(
                    f"() => {{ const n = ({_PROMPTS_JS})()[{index}]; return typeof n === 'number' && n > {last}; }}",
                    timeout=timeout_s * 1000)
            except Exception as error:  # noqa: BLE001 - playwright's TimeoutError: say what the page shows
                raise AssertionError(f"the cell with {text!r} did not finish within {timeout_s:.0f} s; execution "
                                     f"counts {self.page.evaluate(_PROMPTS_JS)} (before: {before})") from error

    def errors(self) -> list[str]:
        return self.page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()

    def popups(self) -> list[str]:
        """What interrupts a student: notification toasts, dialogs, and unread notifications behind
        the status bar's bell."""
        shown = [" ".join(t.split()) for t in self.page.locator(".Toastify__toast, .jp-Dialog").all_inner_texts()]
        unread = self.page.locator(".jp-Notification-Status").inner_text().strip()
        if unread not in ("", "0"):
            shown.append(f"{unread} unread notification(s) behind the status bar's bell")
        return shown
