"""The deployment package (infra/package.py) holds the function app whole and nothing else: unzipped
alone, it imports and registers every function the repository's app does."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

from infra import package
from tests.infra import app_functions


def test_the_package_imports_alone_and_registers_every_function(tmp_path):
    output = tmp_path / "app.zip"
    names = package.build(output)
    assert zipfile.ZipFile(output).namelist() == names
    unpacked = tmp_path / "wwwroot"
    zipfile.ZipFile(output).extractall(unpacked)
    # The unpacked app alone on the path, with the installed dependencies (what the remote build gives).
    # The editable install puts the repository on the path too: every module of the app must come
    # from the package, none from the repository.
    listed = subprocess.run(
        [sys.executable, "-I", "-c",
         "import sys, json, os; sys.path.insert(0, os.getcwd()); import function_app; "
         "print(json.dumps({'functions': sorted(f.get_function_name() for f in function_app.app.get_functions()), "
         "'files': sorted(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None) "
         "and m.__name__.split('.')[0] in ('function_app', 'functions', 'shared'))}))"],
        cwd=unpacked, capture_output=True, text=True, check=True)
    loaded = json.loads(listed.stdout)
    assert loaded["functions"] == sorted(f.get_function_name() for f in app_functions())
    assert loaded["files"] and all(f.startswith(str(unpacked)) for f in loaded["files"])


def test_the_package_holds_the_app_and_nothing_of_the_agent_tests_or_stack(tmp_path):
    names = package.build(tmp_path / "app.zip")
    assert {"host.json", "function_app.py", "requirements.txt", "shared/prices/2026-12.json"} <= set(names)
    assert all(n.split("/", 1)[0] in package.APP_PATHS for n in names)
    assert not [n for n in names if "__pycache__" in n or n.startswith(("skyvault/", "tests/", "funchost/"))]


def test_the_same_tree_makes_the_same_bytes(tmp_path):
    package.build(tmp_path / "a.zip")
    package.build(tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
