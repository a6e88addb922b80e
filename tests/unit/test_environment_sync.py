"""pyproject.toml declares the Python dependencies once; environment.yml must mirror them and
constraints.txt lock them."""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]

# PyPI name -> conda-forge name, where they differ.
CONDA_NAMES = {"kubernetes": "python-kubernetes"}
# conda-only entries: the interpreter, pip, and command-line tools that have no PyPI package here.
CONDA_ONLY = {"python", "pip", "kubernetes-client", "kubernetes-helm"}

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*)")


def split(requirement: str) -> tuple[str, str]:
    """('pandas', '>=2.0') from 'pandas>=2.0' (or 'pandas >=2.0')."""
    m = _REQ.match(requirement)
    return m.group(1).lower().replace("_", "-"), m.group(3).replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    out = {}
    for r in reqs:
        name, spec = split(r)
        out[CONDA_NAMES.get(name, name)] = spec
    return out


def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def conda_requirements() -> dict[str, str]:
    return dict(split(d) for d in environment()["dependencies"] if isinstance(d, str))


def test_every_python_dependency_is_in_environment_yml_with_the_same_bounds():
    conda = conda_requirements()
    missing = {n: s for n, s in pyproject_requirements().items() if n not in conda}
    assert not missing, f"add to environment.yml: {missing}"
    differ = {n: (s, conda[n]) for n, s in pyproject_requirements().items() if conda[n] != s}
    assert not differ, f"version bounds differ (pyproject, environment.yml): {differ}"


def test_environment_yml_has_nothing_pyproject_does_not_declare():
    extra = set(conda_requirements()) - set(pyproject_requirements()) - CONDA_ONLY
    assert not extra, f"declare in pyproject.toml (or list as conda-only in this test): {sorted(extra)}"


def test_environment_yml_is_conda_forge_and_installs_the_lab_itself():
    env = environment()
    assert env["channels"] == ["conda-forge"]
    assert conda_requirements()["python"] == ">=3.10"
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip_sections == [["-e ."]]


def test_python_floor_matches():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == conda_requirements()["python"]


# constraints.txt locks an exact version of everything pyproject.toml asks for (all extras and the
# build backend), within its bounds; `make venv` installs with it everywhere.

def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version and not set(version) & set("<>=!~,; "), f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_every_declared_dependency_within_its_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = list(project["project"]["dependencies"]) + list(project["build-system"]["requires"])
    for extra in project["project"]["optional-dependencies"].values():
        declared += extra
    pins = constraints()
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in constraints.txt: `make constraints` refreshes it"
        assert requirement.specifier.contains(pins[name]), f"constraints.txt pins {name}=={pins[name]}, outside {text}"


def test_constraints_leave_out_the_lab_itself():
    assert "k8s-lab" not in constraints()


def test_every_pip_install_in_the_makefile_uses_the_constraints():
    lines = (ROOT / "Makefile").read_text().splitlines()
    # `make constraints` resolves afresh in a scratch venv: the one place without them.
    refresh = lines.index("constraints:")
    installs = [number for number, line in enumerate(lines) if "pip install" in line and
                not line.startswith("#") and not refresh < number < refresh + 8]
    assert installs and all("PIP_CONSTRAINT=" in lines[number] for number in installs), \
        [lines[number] for number in installs]
    assert sum("$(PIP_INSTALL)" in line for line in lines) == 3
