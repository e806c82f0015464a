"""requirements.txt, what the Functions Python worker installs in Azure, holds every package the
function app imports (function_app.py, functions/, shared/; lazy imports too), pinned to the
version pyproject.toml pins: a package missing there fails every invocation in Azure alone."""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWN = {"function_app", "functions", "shared", "skyvault", "funchost"}


def _imported_top_level_modules() -> set[str]:
    files = [ROOT / "function_app.py", *(ROOT / "functions").rglob("*.py"), *(ROOT / "shared").rglob("*.py")]
    found = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in OWN}


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        if m := re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==(\S+)\s*", line.split("#")[0]):
            pins[m[1].lower().replace("_", "-")] = m[2]
    return pins


def test_every_package_the_function_app_imports_is_pinned_in_requirements_txt_as_in_pyproject():
    requirements = _pins((ROOT / "requirements.txt").read_text().splitlines())
    project = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    distributions = importlib.metadata.packages_distributions()
    needed = set()
    for module in _imported_top_level_modules():
        # `azure` is a namespace: every azure-* distribution the project depends on serves it.
        names = {d.lower() for d in distributions.get(module, [module])}
        needed |= {n for n in names if n in project} if module == "azure" else names
    assert needed - set(requirements) == set(), "imported by the function app, missing from requirements.txt"
    assert {n: requirements[n] for n in needed} == {n: project[n] for n in needed}
