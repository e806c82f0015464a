"""The agent's local cache: file entries and the changes of a backup under way, the scan of
the last backup, reference lists, and a cache left by an older agent."""
from __future__ import annotations

import sqlite3

import pytest

from skyvault.cache import Cache


def test_a_file_entry_is_current_only_once_its_run_is(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    line = b'{"path":"d/a","extents":[["' + b"ab" * 32 + b'",0,3]]}\n'
    cache.record_file("v", "laptop", "g1", "d/a", "3:1:1:7", line, ["ab" * 32])
    assert cache.previous_file("v", "laptop", "d/a") is None, "g1 is not current yet"
    cache.make_current("v", "laptop", "g1")
    previous = cache.previous_file("v", "laptop", "d/a")
    assert (previous.signature, previous.line, previous.ids) == ("3:1:1:7", line, ["ab" * 32])
    assert previous.extents == [["ab" * 32, 0, 3]]
    cache.record_file("v", "laptop", "g2", "d/b", "4:1:1:8", b"{}\n", [])
    cache.drop_run("v", "laptop", "g2")
    assert cache.previous_file("v", "laptop", "d/a").line == line
    assert cache.previous_file("v", "desktop", "d/a") is None
    cache.close()
    reopened = Cache(tmp_path / "cache.sqlite")
    assert reopened.previous_file("v", "laptop", "d/a").line == line
    reopened.close()


def test_references_are_distinct_and_sorted(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    cache.add_refs("run", ["cc", "aa", "aa", "bb"])
    cache.add_refs("run", ["cc"])
    assert cache.count_refs("run") == 3
    assert list(cache.refs("run")) == ["aa", "bb", "cc"]
    cache.drop_refs("run")
    assert cache.count_refs("run") == 0


@pytest.mark.parametrize("files", [
    """CREATE TABLE files (vault TEXT, item TEXT, generation TEXT, path TEXT, signature TEXT, extents TEXT,
                          PRIMARY KEY (vault, item, generation, path)) WITHOUT ROWID;
       INSERT INTO files VALUES ('v', 'laptop', 'g1', 'd/a', '3:1:1:7', '[]');""",
    # the same columns, but paths as text: such rows would never match the walk's byte keys
    """CREATE TABLE files (vault TEXT, item TEXT, generation TEXT, path TEXT, signature TEXT, line BLOB,
                          ids TEXT, PRIMARY KEY (vault, item, generation, path)) WITHOUT ROWID;
       INSERT INTO files VALUES ('v', 'laptop', 'g1', 'd/a', '3:1:1:7', X'7B7D0A', '');""",
], ids=["extents", "text-paths"])
def test_an_older_agents_file_table_is_dropped_not_misread(tmp_path, files):
    path = tmp_path / "cache.sqlite"
    old = sqlite3.connect(path)
    old.executescript(files + """
        CREATE TABLE current (vault TEXT, item TEXT, generation TEXT, PRIMARY KEY (vault, item));
        CREATE TABLE known (vault TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (vault, id)) WITHOUT ROWID;
        INSERT INTO current VALUES ('v', 'laptop', 'g1');
        INSERT INTO known VALUES ('v', 'abcd');
    """)
    old.commit()
    old.close()
    cache = Cache(path)
    assert cache.previous_file("v", "laptop", "d/a") is None, "the file is read again"
    # An older agent marked every chunk it uploaded known, a crashed run's too: asked again.
    assert cache.known("v", ["abcd"]) == set(), "an older agent's known chunks are forgotten"
    cache.record_file("v", "laptop", "g2", "d/a", "3:1:1:7", b"{}\n", [])
    cache.make_current("v", "laptop", "g2")
    assert cache.previous_file("v", "laptop", "d/a").line == b"{}\n"
    cache.close()


def _files(cache, item="laptop") -> dict[str, str]:
    return {path.decode("utf-8", "surrogateescape"): signature for path, signature in cache._db.execute(
        "SELECT path, signature FROM files WHERE vault='v' AND item=?", (item,))}


def _first_backup(cache, paths) -> None:
    for i, path in enumerate(paths):
        cache.record_file("v", "laptop", "g1", path, f"{i}:1:1:1", b"{}\n", [f"{i:02x}" * 32])
    cache.make_current("v", "laptop", "g1")


def test_the_scan_of_the_last_backup_answers_like_the_look_up_in_any_order(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    _first_backup(cache, [f"r/{name}" for name in ("a", "b/c", "b/d", "e", "f\udce9")])  # the last is not UTF-8
    cache.record_file("v", "laptop", "g2", "r/a", "new", b"{}\n", [])  # a backup under way
    asked = ["r/0", "r/a", "r/b/d", "r/b/dd", "r/a", "r/e", "r/e", "r/b/c", "r/f\udce9", "r/z"]
    with cache.previous_files("v", "laptop", "g3") as scan:
        answers = [scan.get(path) for path in asked]
    assert answers == [cache.previous_file("v", "laptop", path) for path in asked]
    assert [a.signature if a else None for a in answers] == [
        None, "0:1:1:1", "2:1:1:1", None, "0:1:1:1", "3:1:1:1", "3:1:1:1", "1:1:1:1", "4:1:1:1", None]
    with cache.previous_files("v", "desktop", "g4") as nothing:
        assert nothing.get("r/a") is None
    cache.close()


def test_a_backup_keeps_unchanged_rows_and_forgets_the_files_it_no_longer_finds(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    _first_backup(cache, ["r/a", "r/b/c", "r/b/d", "r/e", "r/g"])
    with cache.previous_files("v", "laptop", "g2") as scan:
        for path in ["r/a", "r/b/d", "r/f"]:  # r/b/c was deleted; r/e and r/g are gone with the walk's end
            scan.get(path)
        scan.finish()
    cache.record_file("v", "laptop", "g2", "r/f", "new", b"{}\n", [])  # the one file it read
    assert _files(cache) == {"r/a": "0:1:1:1", "r/b/c": "1:1:1:1", "r/b/d": "2:1:1:1", "r/e": "3:1:1:1",
                             "r/g": "4:1:1:1"}, "nothing changes before the run is made current"
    cache.make_current("v", "laptop", "g2")
    assert _files(cache) == {"r/a": "0:1:1:1", "r/b/d": "2:1:1:1", "r/f": "new"}
    assert cache.last_run("v", "laptop") == "g2"
    assert cache._db.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == 0
    cache.close()


def test_a_failed_backup_changes_nothing_and_an_unordered_walk_keeps_only_what_it_read(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    _first_backup(cache, ["r/a", "r/b", "r/c"])
    with cache.previous_files("v", "laptop", "g2") as scan:
        scan.get("r/c")
        scan.finish()
    cache.record_file("v", "laptop", "g2", "r/c", "new", b"{}\n", [])
    cache.drop_run("v", "laptop", "g2")
    assert _files(cache) == {"r/a": "0:1:1:1", "r/b": "1:1:1:1", "r/c": "2:1:1:1"}
    assert cache.last_run("v", "laptop") == "g1"
    with cache.previous_files("v", "laptop", "g3") as scan:
        assert [scan.get(p).signature for p in ("r/b", "r/a")] == ["1:1:1:1", "0:1:1:1"], "out of order"
        scan.finish()
    cache.record_file("v", "laptop", "g3", "r/d", "new", b"{}\n", [])
    cache.make_current("v", "laptop", "g3")
    assert _files(cache) == {"r/d": "new"}, "its tombstones were incomplete: the next backup reads again"
    cache.close()


def test_chunks_a_run_sent_are_known_to_that_run_and_to_all_once_its_point_commits(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    cache.add_known("v", ["aa"])
    cache.add_sent("v", "run1", ["bb"])
    assert cache.known("v", ["aa", "bb"], "run1") == {"aa", "bb"}
    assert cache.known("v", ["aa", "bb"], "run2") == {"aa"}, "an unconfirmed upload is not known to other runs"
    cache.make_current("v", "laptop", "run1", committed=False)  # a backup that did not wait
    assert cache.known("v", ["bb"], "run3") == set()
    cache.add_sent("v", "run3", ["bb"])
    cache.drop_run("v", "laptop", "run3")  # interrupted or failed
    assert cache.known("v", ["bb"], "run3") == set()
    cache.add_sent("v", "run4", ["bb", "cc"])
    cache.make_current("v", "laptop", "run4")
    assert cache.known("v", ["aa", "bb", "cc"]) == {"aa", "bb", "cc"}
    cache.close()


def test_a_new_chunk_epoch_forgets_known_chunks_and_last_files(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    assert cache.check_epoch("v", 0) is False, "the first epoch seen is recorded"
    cache.add_known("v", ["aa"])
    cache.add_known("w", ["aa"])
    cache.record_file("v", "laptop", "run1", "d/a", "3:1:1:7", b"{}\n", ["aa"])
    cache.make_current("v", "laptop", "run1")
    assert cache.check_epoch("v", 0) is False and cache.known("v", ["aa"]) == {"aa"}
    assert cache.check_epoch("v", 1) is True
    assert cache.known("v", ["aa"]) == set() and cache.previous_file("v", "laptop", "d/a") is None
    assert cache.last_run("v", "laptop") == "" and cache.known("w", ["aa"]) == {"aa"}
    cache.close()
