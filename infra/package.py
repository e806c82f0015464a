"""Build the function app's deployment package: the zip `az functionapp deployment source
config-zip --build-remote true` uploads to a Flex Consumption app, whose build installs
requirements.txt. It holds the app and what it imports, and nothing of the agent, the tests or
the local stack: the files git tracks under APP_PATHS, so a stray local file never ships.

usage: python -m infra.package [OUTPUT]   (default dist/skyvault-functions.zip)
"""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATHS = ("host.json", "function_app.py", "requirements.txt", "functions", "shared")
DEFAULT_OUTPUT = REPO_ROOT / "dist" / "skyvault-functions.zip"
# A fixed time for every entry, so the same tree always makes the same bytes.
ENTRY_TIME = (2026, 1, 1, 0, 0, 0)


def app_files(root: Path = REPO_ROOT) -> list[str]:
    """The tracked files of the app, sorted."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", *APP_PATHS],
                            check=True, capture_output=True).stdout.decode()
    return sorted(name for name in listed.split("\0") if name)


def build(output: Path = DEFAULT_OUTPUT, root: Path = REPO_ROOT) -> list[str]:
    """Write the package to `output`; return the names it holds."""
    names = app_files(root)
    missing = [path for path in APP_PATHS if not any(n == path or n.startswith(path + "/") for n in names)]
    if missing:
        raise SystemExit(f"package: {', '.join(missing)} not tracked by git in {root}")
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            entry = zipfile.ZipInfo(name, ENTRY_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, (root / name).read_bytes())
    return names


def main(argv: list[str]) -> int:
    output = Path(argv[0]) if argv else DEFAULT_OUTPUT
    names = build(output)
    print(f"{output}: {len(names)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
