"""`skyvault ls`, `diff`, `find` and `stats` (skyvault.inspect) on the real agent and the
in-process service (tests/unit/agentworld.py): two points of a tree with an edit, an
addition, a deletion, a chmod-only change, a symlink and a hard link, looked inside through
skyvault.cli.main on a state folder of its own, and through the library."""
from __future__ import annotations

import grp
import json
import os
import pwd
import tempfile
from datetime import datetime

import pytest

from shared.domain import JobKind, JobStatus, container_name
from skyvault import cli, exitcodes, inspect
from skyvault.commands import common
from skyvault.restore import Restore
from skyvault.vaultclient import AgentVault
from tests.unit.agentworld import world  # noqa: F401 (a fixture)

ENTRY = {"path": str, "entry_type": str, "size": int, "mode": int, "mode_string": str, "mtime": str, "mtime_ns": int,
         "uid": (int, type(None)), "gid": (int, type(None)), "user": (str, type(None)),
         "group": (str, type(None)), "target": (str, type(None)), "xattrs": list, "device": (list, type(None))}
# The fields docs/design.md, "JSON output of ls, diff, find and stats", documents.
SCHEMAS = {
    "entry": {"point_id": str, **ENTRY},
    "change": {"change": str, "marker": str, "path": str, "entry_type": str,
               "old_entry_type": (str, type(None)),
               "old_size": (int, type(None)), "new_size": (int, type(None)), "fields": list},
    "match": {"point_id": str, "item": str, "created_at": str, **ENTRY},
    "summary ls": {"command": str, "point_id": str, "entries": int, "files": int, "bytes": int},
    "summary diff": {"command": str, "point_a": str, "point_b": str, "added": int, "removed": int,
                     "modified": int, "metadata": int, "added_bytes": int, "removed_bytes": int,
                     "chunks_read": int},
    "summary find": {"command": str, "pattern": str, "points_searched": int, "points_matching": int,
                     "matches": int},
    "summary stats": {"command": str, "point_id": (str, type(None)), "item": (str, type(None)), "points": int,
                      "files": int, "dirs": int, "symlinks": int, "hardlinks": int, "specials": int, "bytes": int,
                      "chunks": int, "stored_bytes": int, "dedup_ratio": (float, type(None))},
}


SCRIPT = b"#!/bin/sh\necho chmod only\n"


@pytest.fixture
def spool_dir(tmp_path, monkeypatch):
    """Where the manifests are spooled: it must be empty again after each command."""
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def points(world, tmp_path, monkeypatch, spool_dir):
    """Two points of item `laptop`, and what changed between them. This machine's agent (for
    cli.main) is the world's, its state folder a new one."""
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(common, "agent", lambda **_: world.agent)
    data = tmp_path / "src" / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_bytes(b"version one of a\n")
    (data / "gone.txt").write_bytes(b"deleted before the second backup\n")
    (data / "keep.txt").write_bytes(b"kept\n" * 1000)
    (data / "mode.sh").write_bytes(SCRIPT)
    (data / "mode.sh").chmod(0o644)
    (data / "sub" / "b.bin").write_bytes(os.urandom(700_000))
    (data / "link").symlink_to("a.txt")
    os.link(data / "keep.txt", data / "hard-keep.txt")  # the walk meets hard-keep.txt first
    os.link(data / "keep.txt", data / "sub" / "linked.txt")
    first_tree = on_disk(data)
    first = world.backup("laptop", data)
    world.clock.advance(60)

    (data / "a.txt").write_bytes(b"version two of a\n")  # the same size, other bytes
    (data / "gone.txt").unlink()
    (data / "new.txt").write_bytes(b"added for the second backup\n")
    (data / "mode.sh").chmod(0o755)
    os.utime(data, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    second_tree = on_disk(data)
    second = world.backup("laptop", data)
    return {"first": first, "second": second, "data": data, "trees": {first: first_tree, second: second_tree}}


def on_disk(data) -> dict:
    """The tree as a backup of it records it, counted from the disk: first paths of inodes only."""
    files, dirs, size, inodes = 0, 1, 0, set()
    for parent, names, filenames in os.walk(data):
        dirs += len(names)
        for name in filenames:
            st = os.lstat(os.path.join(parent, name))
            if os.path.islink(os.path.join(parent, name)) or st.st_ino in inodes:
                continue
            inodes.add(st.st_ino)
            files += 1
            size += st.st_size
    return {"files": files, "dirs": dirs, "bytes": size}


def json_lines(capsys, command: str) -> list[dict]:
    """Every stdout line is a JSON object with the documented fields of its type."""
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for line in lines:
        kind = line["type"] if line["type"] != "summary" else f"summary {command}"
        if kind not in SCHEMAS:
            assert kind in ("progress", "note", "warning"), line
            continue
        schema = SCHEMAS[kind]
        assert set(line) == {"type", *schema}, (kind, sorted(line))
        for name, types in schema.items():
            assert isinstance(line[name], types) and not isinstance(line[name], bool), (kind, name, line[name])
    return lines


def of_type(lines: list[dict], kind: str) -> list[dict]:
    return [line for line in lines if line["type"] == kind]


def local(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


def test_ls_lists_every_entry_with_its_long_fields(points, capsys, spool_dir):
    data = points["data"]
    assert cli.main(["ls", points["first"], "--json"]) == exitcodes.OK
    lines = json_lines(capsys, "ls")
    entries = {e["path"]: e for e in of_type(lines, "entry")}
    assert set(entries) == {"data", "data/a.txt", "data/gone.txt", "data/hard-keep.txt", "data/keep.txt",
                            "data/link", "data/mode.sh", "data/sub", "data/sub/b.bin", "data/sub/linked.txt"}
    assert [e["path"] for e in of_type(lines, "entry")][:2] == ["data", "data/a.txt"], "walk order"
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    script = entries["data/mode.sh"]
    assert (script["entry_type"], script["mode"], script["mode_string"], script["size"]) == ("file", 0o644, "-rw-r--r--",
                                                                                      len(SCRIPT))
    assert (script["uid"], script["gid"], script["user"], script["group"]) == (os.getuid(), os.getgid(), me, group)
    assert script["mtime_ns"] == os.stat(data / "mode.sh").st_mtime_ns
    assert script["mtime"] == local(script["mtime_ns"])
    assert entries["data"]["mode_string"].startswith("d") and entries["data"]["entry_type"] == "dir"
    assert (entries["data/link"]["entry_type"], entries["data/link"]["target"]) == ("symlink", "a.txt")
    assert entries["data/link"]["mode_string"].startswith("l")
    link = entries["data/keep.txt"]
    assert (link["entry_type"], link["target"], link["size"], link["user"]) == ("hardlink", "data/hard-keep.txt", 5000, me)
    summary = of_type(lines, "summary")[0]
    assert (summary["entries"], summary["files"], summary["command"]) == (10, 7, "ls")
    assert list(spool_dir.iterdir()) == [], "the spool is removed"

    assert cli.main(["ls", points["first"], "--long"]) == exitcodes.OK
    out = capsys.readouterr().out.splitlines()
    assert f"-rw-r--r-- {me:>8} {group:>8} {len(SCRIPT):>12} {script['mtime']} data/mode.sh" in out
    assert any(line.endswith("data/link -> a.txt") and line.startswith("lrwxrwxrwx") for line in out)
    assert any(line.endswith("data/keep.txt => data/hard-keep.txt") for line in out)


def test_ls_of_a_path_lists_it_and_its_entries_recursive_or_not(points, capsys):
    data = points["data"]
    assert cli.main(["ls", points["first"], "data/sub", "--long"]) == exitcodes.OK
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in listed[:2]] == ["data/sub", "data/sub/b.bin"]
    assert listed[2].endswith(" data/sub/linked.txt => data/hard-keep.txt") and len(listed) == 3
    assert listed[2].split()[3] == "5000", "a hard link's size is its first path's, outside PATH too"
    assert cli.main(["ls", points["first"], str(data)]) == exitcodes.OK  # the absolute path backed up
    listed = capsys.readouterr().out.splitlines()
    assert "data/sub" in listed and "data/sub/b.bin" not in listed
    assert cli.main(["ls", points["first"], str(data), "--recursive"]) == exitcodes.OK
    assert "data/sub/b.bin" in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("argv, words", [
    (["ls", "{first}", "data/nowhere"], "data/nowhere is not in recovery point"),
    (["ls", "20990101T000000Z-0badc0de"], "no recovery point 20990101T000000Z-0badc0de"),
    (["ls", "not-a-point"], "'not-a-point' is not a recovery point id"),
    (["diff", "{first}", "20990101T000000Z-0badc0de"], "no recovery point 20990101T000000Z-0badc0de"),
    (["stats", "nope"], "'nope' is not a recovery point id"),
])
def test_errors_name_the_problem(points, world, capsys, argv, words):
    jobs = world.services.index.list_jobs(world.agent.vault_id, JobKind.RESTORE, JobStatus.READY)
    assert cli.main([a.format(**points) for a in argv]) == exitcodes.FAILURE
    assert words in capsys.readouterr().err
    if "not in recovery point" not in words:
        assert world.services.index.list_jobs(world.agent.vault_id, JobKind.RESTORE, JobStatus.READY) == jobs, \
            "no restore job for a point that is not there"


def test_a_wrong_passphrase_is_named(points, world, capsys, monkeypatch):
    wrong = AgentVault(world.agent.creds, AgentVault.derive_keys(world.agent.creds, "not this vault's passphrase"),
                       clock=world.agent.clock, transport=world.agent.transport)
    monkeypatch.setattr(common, "agent", lambda **_: wrong)
    assert cli.main(["ls", points["first"]]) == exitcodes.FAILURE
    assert "wrong passphrase" in capsys.readouterr().err


def test_diff_lists_exactly_the_changes_with_their_markers(points, capsys, spool_dir):
    assert cli.main(["diff", points["first"], points["second"], "--json"]) == exitcodes.OK
    lines = json_lines(capsys, "diff")
    changes = {(c["marker"], c["path"]) for c in of_type(lines, "change")}
    assert changes == {("+", "data/new.txt"), ("-", "data/gone.txt"), ("M", "data/a.txt"), ("U", "data/mode.sh"),
                       ("U", "data")}
    by_path = {c["path"]: c for c in of_type(lines, "change")}
    assert by_path["data/a.txt"]["fields"][0] == "content" and by_path["data/mode.sh"]["fields"] == ["mode"]
    assert by_path["data/new.txt"]["change"] == "added" and by_path["data/gone.txt"]["change"] == "removed"
    summary = of_type(lines, "summary")[0]
    assert (summary["added"], summary["removed"], summary["modified"], summary["metadata"]) == (1, 1, 1, 2)
    assert summary["added_bytes"] == len(b"added for the second backup\n") + 17
    assert summary["removed_bytes"] == len(b"deleted before the second backup\n") + 17
    assert summary["chunks_read"] > 0, "a.txt has the same size and other extents: its bytes are compared"
    assert list(spool_dir.iterdir()) == []

    assert cli.main(["diff", points["first"], points["second"], "--no-read"]) == exitcodes.OK
    out = capsys.readouterr().out.splitlines()
    # mode.sh was read again (its ctime moved) but kept its extents (content reuse, skyvault.backup.changes):
    # even without reading, it is a change of metadata only; a.txt, of other extents, is modified.
    assert "U    data/mode.sh" in out and "M    data/a.txt" in out
    assert "+    data/new.txt" in out and "-    data/gone.txt" in out and "U    data/" in out


def test_diff_of_a_point_with_itself_is_empty(points, world):
    restore = Restore(world.agent)
    changes = list(inspect.diff(inspect.point_entries(restore, points["first"]),
                                inspect.point_entries(restore, points["first"])))
    assert changes == []


def test_diff_merges_streams_in_walk_order():
    from shared.messages import ManifestEntry

    def f(path, size=1, mode=0o644, kind="file"):
        return ManifestEntry(path, kind, mode, 0, size=size if kind == "file" else 0)

    old = [f("r", kind="dir"), f("r/a"), f("r/x"), f("r/x.txt"), f("r/z")]
    new = [f("r", kind="dir"), f("r/a", mode=0o600), f("r/x.txt", size=2), f("r/x", kind="dir"), f("r/x/y")]
    got = [(c.marker, c.path, c.fields) for c in inspect.diff(old, new)]
    # A file that became a directory sorts apart (r/x before r/x.txt before r/x/): removed, then added.
    assert got == [("U", "r/a", ("mode",)), ("-", "r/x", ()), ("M", "r/x.txt", ("size",)), ("+", "r/x", ()),
                   ("+", "r/x/y", ()), ("-", "r/z", ())]


def test_find_lists_the_points_that_hold_matches_newest_first(points, capsys):
    first, second = points["first"], points["second"]
    assert cli.main(["find", "*.txt", "--json"]) == exitcodes.OK
    lines = json_lines(capsys, "find")
    found = [(m["point_id"], m["path"]) for m in of_type(lines, "match")]
    assert [p for p, _ in found] == sorted((p for p, _ in found), reverse=True), "newest point first"
    assert {path for p, path in found if p == first} == {"data/a.txt", "data/gone.txt", "data/hard-keep.txt",
                                                         "data/keep.txt", "data/sub/linked.txt"}
    assert {path for p, path in found if p == second} == {"data/a.txt", "data/new.txt", "data/hard-keep.txt",
                                                          "data/keep.txt", "data/sub/linked.txt"}
    summary = of_type(lines, "summary")[0]
    assert (summary["points_searched"], summary["points_matching"], summary["matches"]) == (2, 2, 10)

    assert cli.main(["find", "gone.txt"]) == exitcodes.OK
    out = capsys.readouterr().out
    assert first in out and second not in out and "  data/gone.txt" in out
    assert cli.main(["find", "/data/sub/*.bin", "--item", "laptop"]) == exitcodes.OK
    assert capsys.readouterr().out.count("data/sub/b.bin") == 2
    assert cli.main(["find", "/sub/*.bin"]) == exitcodes.OK, "anchored at the backed-up directory's name"
    assert "no path of the 2 recovery points searched matches" in capsys.readouterr().out
    assert cli.main(["find", "new.txt", "--until", "2000-01-01"]) == exitcodes.OK
    assert "no path of the 0 recovery points searched" in capsys.readouterr().out


def test_find_matches_as_restic_does():
    assert inspect.matches("*.txt", "data/docs/a.txt")
    assert inspect.matches("docs/*.txt", "data/docs/a.txt")
    assert not inspect.matches("data/*.txt", "data/docs/a.txt"), "* does not cross a /"
    assert inspect.matches("/data/docs/a.txt", "data/docs/a.txt")
    assert not inspect.matches("/docs/a.txt", "data/docs/a.txt")
    assert inspect.matches("data", "data") and not inspect.matches("data", "data/docs")


def test_stats_of_a_point_and_of_the_vault_equal_sums_made_apart(points, world, capsys):
    container = world.services.primary.container(container_name(world.agent.vault_id))

    def stored(chunks) -> int:
        return sum(container.properties(f"chunks/{c[:2]}/{c}").size for c in chunks)

    for point in (points["first"], points["second"]):
        assert cli.main(["stats", point, "--json"]) == exitcodes.OK
        summary = of_type(json_lines(capsys, "stats"), "summary")[0]
        tree, refs = points["trees"][point], world.refs(point)
        assert (summary["files"], summary["dirs"], summary["bytes"]) == (tree["files"], tree["dirs"], tree["bytes"])
        assert (summary["symlinks"], summary["hardlinks"], summary["points"]) == (1, 2, 1)
        assert summary["chunks"] == len(refs)
        assert summary["stored_bytes"] == stored(refs)
        assert summary["dedup_ratio"] == round(tree["bytes"] / stored(refs), 2)

    assert cli.main(["stats", "--json"]) == exitcodes.OK
    summary = of_type(json_lines(capsys, "stats"), "summary")[0]
    union = world.refs(points["first"]) | world.refs(points["second"])
    trees = points["trees"].values()
    assert summary["points"] == 2 and summary["files"] == sum(t["files"] for t in trees)
    assert summary["bytes"] == sum(t["bytes"] for t in trees)
    assert (summary["chunks"], summary["stored_bytes"]) == (len(union), stored(union))
    assert summary["chunks"] < len(world.refs(points["first"])) + len(world.refs(points["second"])), "dedup"

    assert cli.main(["stats", "--item", "laptop"]) == exitcodes.OK
    assert f"2 recovery points of item laptop:\n  {summary['files']} files" in capsys.readouterr().out


def test_each_opened_point_is_one_restore_job_and_nothing_else_changes(points, world):
    index = world.services.index
    before = index.list_jobs(world.agent.vault_id, JobKind.RESTORE, JobStatus.READY)
    listed = list(inspect.point_entries(Restore(world.agent), points["second"]))
    assert [e.path for e in listed if e.type == "file"] == ["data/a.txt", "data/hard-keep.txt", "data/mode.sh",
                                                           "data/new.txt", "data/sub/b.bin"]
    after = index.list_jobs(world.agent.vault_id, JobKind.RESTORE, JobStatus.READY)
    assert len(after) == len(before) + 1
    (job,) = [j for j in after if j not in before]
    assert job.purpose == "inspect"


def test_looking_inside_points_is_not_metered_as_a_restore_and_a_restore_is(points, world, capsys, tmp_path):
    served = len(world.usage("restore_served"))
    assert cli.main(["ls", points["second"]]) == exitcodes.OK
    assert cli.main(["diff", points["first"], points["second"]]) == exitcodes.OK
    assert cli.main(["stats"]) == exitcodes.OK
    assert len(world.usage("restore_served")) == served
    Restore(world.agent).run(points["second"], str(tmp_path / "restored"))
    assert len(world.usage("restore_served")) == served + 1
