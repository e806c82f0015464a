"""Tests of the deployment: the trees under infra/ read and checked against the code, and the package."""
from __future__ import annotations

import sys
from pathlib import Path

from funchost.catalog import load_app

REPO_ROOT = Path(__file__).resolve().parents[2]


def app_functions() -> list:
    """The function app's functions from an app object of their own: an app indexes its functions
    once (tests/test_bindings.py indexes function_app's), so this one is imported afresh and then
    forgotten, leaving the next `import function_app` its own too."""
    try:
        return load_app(REPO_ROOT).get_functions()
    finally:
        sys.modules.pop("function_app", None)
