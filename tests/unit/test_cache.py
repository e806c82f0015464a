"""The agent's local cache: file entries across generations, reference lists, and a cache
left by an older agent."""
from __future__ import annotations

import sqlite3

from skyvault.cache import Cache


def test_a_file_entry_is_current_only_once_its_generation_is(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    line = b'{"path":"d/a","extents":[["' + b"ab" * 32 + b'",0,3]]}\n'
    cache.record_file("v", "laptop", "g1", "d/a", "3:1:1:7", line, ["ab" * 32])
    assert cache.previous_file("v", "laptop", "d/a") is None, "g1 is not current yet"
    cache.make_current("v", "laptop", "g1")
    previous = cache.previous_file("v", "laptop", "d/a")
    assert (previous.signature, previous.line, previous.ids) == ("3:1:1:7", line, ["ab" * 32])
    assert previous.extents == [["ab" * 32, 0, 3]]
    cache.record_file("v", "laptop", "g2", "d/b", "4:1:1:8", b"{}\n", [])
    cache.drop_generation("v", "laptop", "g2")
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


def test_an_older_agents_file_table_is_dropped_not_misread(tmp_path):
    path = tmp_path / "cache.sqlite"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE files (vault TEXT, item TEXT, generation TEXT, path TEXT, signature TEXT, extents TEXT,
                            PRIMARY KEY (vault, item, generation, path)) WITHOUT ROWID;
        CREATE TABLE current (vault TEXT, item TEXT, generation TEXT, PRIMARY KEY (vault, item));
        CREATE TABLE known (vault TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (vault, id)) WITHOUT ROWID;
        INSERT INTO files VALUES ('v', 'laptop', 'g1', 'd/a', '3:1:1:7', '[]');
        INSERT INTO current VALUES ('v', 'laptop', 'g1');
        INSERT INTO known VALUES ('v', 'abcd');
    """)
    old.commit()
    old.close()
    cache = Cache(path)
    assert cache.previous_file("v", "laptop", "d/a") is None, "the file is read again"
    assert cache.known("v", ["abcd"]) == {"abcd"}, "what the service holds is still known"
    cache.record_file("v", "laptop", "g2", "d/a", "3:1:1:7", b"{}\n", [])
    cache.make_current("v", "laptop", "g2")
    assert cache.previous_file("v", "laptop", "d/a").line == b"{}\n"
    cache.close()
