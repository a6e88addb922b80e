"""Everything under tests/unit is a unit test: no Docker, no cluster."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.unit)


def write_notebook(directory: Path, name: str, cells: list[str], parameters: str | None = None) -> Path:
    """Write a tiny notebook: an optional cell tagged `parameters`, then one code cell per source."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.extend(nbformat.v4.new_code_cell(src) for src in cells)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    nbformat.write(nb, str(path))
    return path


@pytest.fixture(scope="session")
def helm() -> Path:
    """The lab's helm binary; the tests that render the chart FAIL without it, they never skip."""
    from lab import config
    from lab.host import tools

    try:
        path = tools.find("helm")
    except Exception as error:  # noqa: BLE001 - a broken lookup is a failure too, with its reason
        pytest.fail(f"looking for helm failed: {type(error).__name__}: {error}", pytrace=False)
    if path is None:
        pytest.fail("helm is not installed: these tests need the helm binary "
                    f"({config.HELM_VERSION}); `lab tools` provides it (`make test` runs it first)",
                    pytrace=False)
    return path


@pytest.fixture
def notebook_writer():
    """`write_notebook` for test modules, which cannot import conftest (--import-mode=importlib)."""
    return write_notebook


@pytest.fixture
def make_notebook(tmp_path: Path):
    """make_notebook(name, cells, parameters=None) -> Path, in tmp_path/'notebooks'."""
    notebooks = tmp_path / "notebooks"

    def make(name: str, cells: list[str], parameters: str | None = None) -> Path:
        return write_notebook(notebooks, name, cells, parameters)

    make.dir = notebooks
    return make
