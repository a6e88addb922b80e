"""Browser tests: JupyterLab served on loopback, used through Debian's Chromium with Playwright.

They need the [browser] extra (JupyterLab, Playwright) and Chromium (`bash scripts/setup-host
--browser`); `make test-browser` brings both. Without them the tests FAIL with what to install,
they never skip. Screenshots go to runs/browser/ (ignored by git, removed by `make clean`).
"""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
ARTIFACTS = HERE.parents[1] / "runs" / "browser"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives JupyterLab in a real Chromium (no cluster unless a task says so)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is not installed: `make test-browser` installs the [browser] extra", pytrace=False)
    from tests.browser.jupyterlab import launch_chromium

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium):
    """A fresh browser context per test (no shared storage), at a laptop's screen size."""
    contexts = []

    def make():
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
