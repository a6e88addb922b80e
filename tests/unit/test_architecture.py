"""The shape of lab/: no import circles, one process runner, and no default cluster below the edge."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[2] / "lab"
RUNNER = LAB / "runner.py"


def _modules() -> dict[str, Path]:
    found = {}
    for path in LAB.rglob("*.py"):
        parts = path.relative_to(LAB.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The lab modules `path` imports, at any depth of its code (a function-level import is still
    an edge: it only moves the circle from import time to call time)."""
    package = ".".join(path.relative_to(LAB.parent).with_suffix("").parts[:-1])
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "lab":
                edges.add(name)
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    # A package's __init__ importing nothing is the norm here; edges to a package mean its __init__.
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_lab_has_no_import_circles():
    assert _cycles(_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _uses_subprocess(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "subprocess" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "subprocess":
            lines.append(node.lineno)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                and node.attr in ("system", "popen", "spawnv", "spawnvp", "execv", "execvp"):
            lines.append(node.lineno)
    return lines


def test_only_the_runner_starts_processes():
    offenders = {str(path.relative_to(LAB.parent)): lines for path in LAB.rglob("*.py")
                 if path != RUNNER and (lines := _uses_subprocess(path))}
    assert offenders == {}


def test_the_process_check_sees_subprocess(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def f():\n    import subprocess\n    return subprocess.run(['true'])\n")
    assert _uses_subprocess(sneaky) == [2]


# Below the edge (the CLI, the notebooks' Lab object, the tests), a function that touches a cluster
# takes a Target; a default of the lab's own cluster or context would let a command aimed at a
# second cluster act on the first.
_EDGE = {"lab.cli", "lab.config", "lab.target", "lab.notebook"}
_DEFAULTS = ("KUBE_CONTEXT", "CLUSTER_NAME")


@pytest.mark.parametrize("name", sorted(set(_modules()) - _EDGE))
def test_no_default_cluster_below_the_edge(name):
    path = _modules()[name]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if isinstance(default, ast.Attribute) and default.attr in _DEFAULTS:
                    found.append(f"{node.name}() defaults to config.{default.attr} (line {node.lineno})")
    assert found == []
