"""`skyvault ls`, `diff`, `find` and `stats` end to end, through the real CLI on the local stack:
a copy of a real directory backed up, changed as `make demo` changes it (skyvault/demo.py:
one file edited, one added, one deleted), backed up again, then looked inside."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from skyvault import cli, demo, exitcodes

SOURCE = Path(__file__).resolve().parents[2] / "skyvault"  # a real tree of a few hundred KiB


@pytest.fixture(scope="module")
def registered(stack, tmp_path_factory):
    creds = tmp_path_factory.mktemp("creds") / "inspect.credentials.json"
    assert cli.main(["vault", "create", "inspect", "--tenant", "contoso", "--redundancy", "LRS",
                     "--out", str(creds)]) == exitcodes.OK
    assert cli.main(["register", str(creds)]) == exitcodes.OK


def backup(data: Path, capsys) -> str:
    assert cli.main(["backup", str(data), "--item", "demo"]) == exitcodes.OK
    return demo.point_id(capsys.readouterr().out)


def json_lines(capsys, argv: list[str]) -> list[dict]:
    assert cli.main([*argv, "--json"]) == exitcodes.OK
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def tree_paths(data: Path) -> dict[str, str]:
    """Manifest path -> entry type of the files and directories on disk (no links in it)."""
    paths = {"data": "dir"}
    for parent, dirs, files in os.walk(data):
        rel = "data" + parent[len(str(data)):]
        paths.update({f"{rel}/{d}": "dir" for d in dirs})
        paths.update({f"{rel}/{f}": "file" for f in files})
    return paths


def test_the_demo_change_seen_by_ls_diff_find_and_stats(registered, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(SOURCE, data, ignore=shutil.ignore_patterns("__pycache__"))
    first = backup(data, capsys)
    before = tree_paths(data)
    change = demo.change_copy(data)
    edited, deleted = re.fullmatch(r"edited (.+), added added-by-demo.txt, deleted (.+)", change).groups()
    second = backup(data, capsys)
    after = tree_paths(data)

    lines = json_lines(capsys, ["diff", first, second])
    changes = [line for line in lines if line["type"] == "change"]
    content = {(c["marker"], c["path"]) for c in changes if c["change"] != "metadata"}
    assert content == {("M", f"data/{edited}"), ("+", "data/added-by-demo.txt"), ("-", f"data/{deleted}")}
    assert {c["entry_type"] for c in changes if c["change"] == "metadata"} <= {"dir"}, \
        "only the directories that gained or lost an entry changed otherwise (their mtime)"
    summary = lines[-1]
    assert (summary["type"], summary["added"], summary["removed"], summary["modified"]) == ("summary", 1, 1, 1)

    listed = {e["path"]: e["entry_type"] for e in json_lines(capsys, ["ls", second]) if e["type"] == "entry"}
    assert listed == after
    entries = [e for e in json_lines(capsys, ["ls", first, f"data/{deleted}"]) if e["type"] == "entry"]
    assert [(e["path"], e["size"]) for e in entries] == [(f"data/{deleted}", (SOURCE / deleted).stat().st_size)]

    found = [m for m in json_lines(capsys, ["find", "added-by-demo.txt"]) if m["type"] == "match"]
    assert [(m["point_id"], m["path"]) for m in found] == [(second, "data/added-by-demo.txt")]
    found = [m for m in json_lines(capsys, ["find", f"/data/{deleted}", "--item", "demo"]) if m["type"] == "match"]
    assert [m["point_id"] for m in found] == [first]

    stats = json_lines(capsys, ["stats", second])[-1]
    files = [p for p, kind in after.items() if kind == "file"]
    assert (stats["files"], stats["dirs"]) == (len(files), len(after) - len(files))
    assert stats["bytes"] == sum((data / p.removeprefix("data/")).stat().st_size for p in files)
    assert stats["stored_bytes"] > 0 and stats["chunks"] > 0
    everything = json_lines(capsys, ["stats"])[-1]
    assert everything["points"] == 2 and everything["chunks"] >= stats["chunks"]
    assert everything["files"] == len(files) + sum(1 for kind in before.values() if kind == "file")
