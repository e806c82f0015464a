"""`make demo`: the main job end to end through the real CLI on the local stack.

Stack up, create a vault, register, copy a real directory into a scratch
folder (the user's files are never touched), back it up, change the copy,
back it up again, restore both points, check both are byte-identical to what
was backed up, print what was stored and deduplicated, stack down.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from skyvault.treedigest import differences, tree_digest

DEMO_PASSPHRASE = "demo passphrase, not for real data"


def run(args: list[str], env: dict[str, str], echo: bool = True) -> str:
    result = subprocess.run([sys.executable, "-m", "skyvault.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE if not echo else subprocess.STDOUT)
    if echo:
        print(f"$ skyvault {' '.join(args)}", flush=True)
        print(result.stdout, end="", flush=True)
    if result.returncode not in (0, 4):  # 4: completed with warnings
        raise SystemExit(f"demo failed: `skyvault {' '.join(args)}` exited {result.returncode}")
    return result.stdout


def change_copy(data: Path) -> str:
    """A small, realistic change: edit one file, add one, delete one."""
    files = sorted(p for p in data.rglob("*") if p.is_file() and not p.is_symlink())
    texts = [p for p in files if p.suffix in (".py", ".txt", ".md")] or files
    edited, deleted = texts[len(texts) // 3], files[2 * len(files) // 3]
    with open(edited, "ab") as f:
        f.write(b"\n# changed by the Skyvault demo\n")
    (data / "added-by-demo.txt").write_text("a new file in the second backup\n")
    deleted.unlink()
    return f"edited {edited.relative_to(data)}, added added-by-demo.txt, deleted {deleted.relative_to(data)}"


def summarize(points: list[dict]) -> None:
    """What the vault stores for all points, against what was backed up."""
    backed_up = sum(p["stats"]["bytes_total"] for p in points)
    stored = sum(p["stats"]["bytes_uploaded"] for p in points)
    mib = 1024 * 1024
    print(f"{len(points)} backups of {backed_up / mib:.1f} MiB in all: the vault stores {stored / mib:.1f} MiB "
          f"after compression and deduplication ({backed_up / max(stored, 1):.1f}x less)", flush=True)
    for p in sorted(points, key=lambda p: p["createdAt"]):
        s = p["stats"]
        print(f"  {p['id']}: read {s['files_read']} of {s['files']} files, uploaded {s['chunks_uploaded']} chunks "
              f"({s['bytes_uploaded'] / mib:.2f} MiB)", flush=True)


def points_of(output: str) -> list[dict]:
    """The points `skyvault points --json` lists: its "point" objects, one a line."""
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    return [line["point"] for line in lines if line["type"] == "point"]


def point_id(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("recovery point "):
            return line.split()[2]
    raise SystemExit("demo failed: the backup printed no recovery point")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="directory to back up (a copy of it); default: this environment's packages")
    args = ap.parse_args()
    source = Path(args.data or sysconfig.get_paths()["purelib"]).resolve()
    if not source.is_dir():
        raise SystemExit(f"demo: {source} is not a directory")
    scratch = Path(tempfile.mkdtemp(prefix="skyvault-demo-"))
    env = {**os.environ, "SKYVAULT_HOME": str(scratch / "home"), "SKYVAULT_PASSPHRASE": DEMO_PASSPHRASE}
    data = scratch / "data"
    started = time.monotonic()
    try:
        print(f"copying {source} to {data}", flush=True)
        shutil.copytree(source, data, symlinks=True)
        run(["stack", "up"], env)
        run(["vault", "create", "demo", "--tenant", "contoso", "--redundancy", "GRS",
             "--out", str(scratch / "demo.credentials.json")], env)
        run(["register", str(scratch / "demo.credentials.json")], env)
        before = tree_digest(data)
        first = point_id(run(["backup", str(data), "--item", "demo"], env))
        print(f"changing the copy: {change_copy(data)}", flush=True)
        after = tree_digest(data)
        second = point_id(run(["backup", str(data), "--item", "demo"], env))
        run(["points"], env)
        summarize(points_of(run(["points", "--json"], env, echo=False)))
        for point, expected in ((first, before), (second, after)):
            target = scratch / f"restore-{point}"
            run(["restore", point, "--target", str(target)], env)
            diff = differences(expected, tree_digest(target / "data"))
            if diff:
                raise SystemExit("demo failed: the restore differs:\n  " + "\n  ".join(diff))
            print(f"restore of {point} is byte-identical: {len(expected)} entries", flush=True)
        print(f"demo passed in {time.monotonic() - started:.0f}s", flush=True)
        return 0
    finally:
        subprocess.run([sys.executable, "-m", "skyvault.cli", "stack", "down"], env=env)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
