"""binder/ installs exactly what pyproject.toml declares (dependencies + local + jupyter extras)."""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
EXTRAS = ("local", "jupyter")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def normalized(spec: str) -> tuple[str, str, str]:
    requirement = Requirement(spec)
    return (
        canonicalize_name(requirement.name),
        str(requirement.specifier),
        str(requirement.marker) if requirement.marker else "",
    )


def binder_requirements() -> list[str]:
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    return [line.split(" #")[0].strip() for line in lines if line.strip() and not line.startswith("#")]


def test_binder_requirements_match_pyproject_exactly():
    project = pyproject()
    declared = list(project["dependencies"])
    for extra in EXTRAS:
        declared += project["optional-dependencies"][extra]
    binder = binder_requirements()
    assert len(binder) == len(set(binder)), "binder/requirements.txt lists a package twice"
    assert sorted(map(normalized, binder)) == sorted(map(normalized, set(declared)))


def test_postbuild_installs_the_package_and_nothing_else():
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    installs = [line.strip() for line in post_build.read_text().splitlines() if "pip install" in line]
    assert installs == ["pip install --no-deps -e ."]


def test_binder_python_satisfies_requires_python():
    version = (BINDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", version)
    assert SpecifierSet(pyproject()["requires-python"]).contains(version.removeprefix("python-") + ".0")


def notebook_imports(path: Path) -> set[str]:
    """Top-level modules imported by a notebook's code cells (magics and shell lines skipped)."""
    cells = json.loads(path.read_text())["cells"]
    modules: set[str] = set()
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if source.lstrip().startswith("%%"):
            continue
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    return modules


def test_every_notebook_import_is_installed_by_binder():
    installed = {normalized(spec)[0] for spec in binder_requirements()}
    owners = packages_distributions()
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for notebook in notebooks:
        for module in notebook_imports(notebook):
            if module in sys.stdlib_module_names or module == "oxen_notebook":
                continue
            distributions = {canonicalize_name(d) for d in owners.get(module, [module])}
            assert distributions & installed, (
                f"{notebook.name} imports {module}, which binder does not install"
            )
