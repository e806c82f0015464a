"""`restore --exclude` beside `--include` (Skyvault issue 18): a golden table of pattern sets
and the paths each restores, on one point of the real agent and the in-process service
(tests/unit/agentworld.py); a hard link whose first path is excluded stands in for it; an
`--exclude` that matches nothing is a note, and one that leaves nothing is an error."""
from __future__ import annotations

import os

import pytest

from skyvault.restore import Restore, _matches, _selected
from skyvault.vaultclient import AgentError
from tests.unit.agentworld import World

EVERYTHING = {
    "data", "data/etc", "data/etc/original.txt", "data/home",
    "data/home/ada", "data/home/ada/.cache", "data/home/ada/.cache/x.bin", "data/home/ada/docs",
    "data/home/ada/docs/a.txt", "data/home/ada/docs/b.tmp", "data/home/ada/docs/sub",
    "data/home/ada/docs/sub/c.txt", "data/home/ada/link", "data/home/ada/notes.txt",
    "data/home/bob", "data/home/bob/docs", "data/home/bob/docs/d.txt", "data/home/bob/docs/link.txt",
    "data/home/bob/e.tmp", "data/home/bob/link2.txt"}
ADA = {p for p in EVERYTHING if p.startswith("data/home/ada/")}
ORIGINAL = b"one inode, three names\n"


@pytest.fixture(scope="module")
def point(tmp_path_factory):
    """One point of the tree EVERYTHING names: data/etc/original.txt is the first path of an
    inode that data/home/bob/docs/link.txt and data/home/bob/link2.txt link to."""
    place = tmp_path_factory.mktemp("exclude")
    world = World("restore-exclude", place)
    data = place / "data"
    for directory in ("etc", "home/ada/.cache", "home/ada/docs/sub", "home/bob/docs"):
        (data / directory).mkdir(parents=True)
    for path in ("home/ada/.cache/x.bin", "home/ada/docs/a.txt", "home/ada/docs/b.tmp", "home/ada/docs/sub/c.txt",
                 "home/ada/notes.txt", "home/bob/docs/d.txt", "home/bob/e.tmp"):
        (data / path).write_text(f"{path}\n")
    (data / "etc" / "original.txt").write_bytes(ORIGINAL)
    os.link(data / "etc" / "original.txt", data / "home" / "bob" / "docs" / "link.txt")
    os.link(data / "etc" / "original.txt", data / "home" / "bob" / "link2.txt")
    (data / "home" / "ada" / "link").symlink_to("docs")
    assert restored_paths(place) == EVERYTHING, "the tree is the one the table speaks of"
    point_id = world.backup("laptop", data)
    yield world, point_id
    world.cache.close()


def restored_paths(target) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(target):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), target))
    return {p for p in found if p == "data" or p.startswith("data/")}


def restore(point, tmp_path, include=(), exclude=(), said=None):
    world, point_id = point
    target = tmp_path / "target"
    report = Restore(world.agent, progress=(said if said is not None else []).append).run(
        point_id, str(target), list(include) or None, exclude=list(exclude) or None)
    return report, target


GOLDEN = [
    ((), (), EVERYTHING),
    ((), ("*.tmp",), EVERYTHING - {"data/home/ada/docs/b.tmp", "data/home/bob/e.tmp"}),
    # A directory leaves out everything below it; the symlink into it is its own entry.
    ((), ("data/home/ada/docs",), EVERYTHING - {p for p in ADA if p.startswith("data/home/ada/docs")}),
    ((), ("data/home/ada", "data/etc"), EVERYTHING - ADA - {"data/home/ada", "data/etc", "data/etc/original.txt"}),
    ((), ("*/.cache", "*/sub"), EVERYTHING - {"data/home/ada/.cache", "data/home/ada/.cache/x.bin",
                                              "data/home/ada/docs/sub", "data/home/ada/docs/sub/c.txt"}),
    # Nested: --include selects, --exclude leaves out of that; the first path of the selected
    # link (outside --include, not excluded) comes along with it, as without --exclude.
    (("data/home/*/docs",), ("*.tmp",), {"data", "data/home", "data/home/ada", "data/home/ada/docs",
                                         "data/home/ada/docs/a.txt", "data/home/ada/docs/sub",
                                         "data/home/ada/docs/sub/c.txt", "data/home/bob", "data/home/bob/docs",
                                         "data/home/bob/docs/d.txt", "data/home/bob/docs/link.txt",
                                         "data/etc", "data/etc/original.txt"}),
    (("data/home/ada",), ("*/docs/*",), {"data", "data/home", "data/home/ada", "data/home/ada/.cache",
                                         "data/home/ada/.cache/x.bin", "data/home/ada/docs",
                                         "data/home/ada/link", "data/home/ada/notes.txt"}),
    (("*.txt",), ("data/home/ada",), {"data", "data/etc", "data/etc/original.txt", "data/home", "data/home/bob",
                                      "data/home/bob/docs", "data/home/bob/docs/d.txt",
                                      "data/home/bob/docs/link.txt", "data/home/bob/link2.txt"}),
    # The first path excluded: its selected links are restored all the same (tested below).
    ((), ("data/etc",), EVERYTHING - {"data/etc", "data/etc/original.txt"}),
    (("data/home/bob/link2.txt",), ("data/etc",), {"data", "data/home", "data/home/bob", "data/home/bob/link2.txt"}),
    # A pattern that matches nothing leaves nothing out.
    ((), ("nothing-like-this", "*.bak"), EVERYTHING),
]


@pytest.mark.parametrize("include, exclude, expected", GOLDEN,
                         ids=[f"{'+'.join(i) or 'all'}-minus-{'+'.join(e) or 'none'}" for i, e, _ in GOLDEN])
def test_each_pattern_set_restores_exactly_its_paths(point, tmp_path, include, exclude, expected):
    report, target = restore(point, tmp_path, include, exclude)
    assert restored_paths(target) == expected
    assert report.errors == [] and report.warnings == []
    for path in expected:
        if (target / path).is_file():
            assert (target / path).read_bytes() == (point[0].tmp / path).read_bytes(), path


def test_a_link_whose_first_path_is_excluded_stands_in_for_it_and_the_others_link_to_it(point, tmp_path):
    """data/etc excluded: the first selected link gets the inode's content and metadata (it
    is written as a file), the later one is a link to it; nothing of data/etc is made."""
    report, target = restore(point, tmp_path, exclude=["data/etc"])
    stand_in, later = target / "data/home/bob/docs/link.txt", target / "data/home/bob/link2.txt"
    assert stand_in.read_bytes() == later.read_bytes() == ORIGINAL
    assert stand_in.stat().st_ino == later.stat().st_ino and stand_in.stat().st_nlink == 2
    source = (point[0].tmp / "data/etc/original.txt").stat()
    assert stand_in.stat().st_mtime_ns == source.st_mtime_ns and stand_in.stat().st_mode == source.st_mode
    assert not (target / "data" / "etc").exists()
    everything, _ = restore(point, tmp_path / "all")
    assert (report.files, report.hardlinks) == (everything.files, everything.hardlinks - 1)
    assert report.bytes_written == everything.bytes_written


def test_a_link_alone_with_its_first_path_excluded_is_written_as_that_file(point, tmp_path):
    report, target = restore(point, tmp_path, include=["data/home/bob/link2.txt"], exclude=["data/etc"])
    link2 = target / "data/home/bob/link2.txt"
    assert link2.read_bytes() == ORIGINAL and link2.stat().st_nlink == 1
    assert (report.files, report.hardlinks, report.bytes_written) == (1, 0, len(ORIGINAL))


def test_an_exclude_that_matches_nothing_is_said_in_a_note(point, tmp_path):
    said = []
    restore(point, tmp_path, exclude=["*.tmp", "*.bak"], said=said)
    assert [line for line in said if "--exclude" in line] == [
        f"--exclude *.bak matches nothing in {point[1]}: it leaves nothing out"]


@pytest.mark.parametrize("include, exclude", [((), ("*",)), ((), ("data",)),
                                              (("*/docs/*.txt",), ("*.txt",)),
                                              (("data/home/ada/docs",), ("data/home",))])
def test_excluding_everything_is_an_error_and_writes_nothing(point, tmp_path, include, exclude):
    with pytest.raises(AgentError, match="nothing left to restore: --exclude .* leaves out everything"):
        restore(point, tmp_path, include, exclude)
    assert not (tmp_path / "target").exists()


@pytest.mark.parametrize("include", [("nothing-like-this",), ("data/home/ada/nowhere",)])
def test_an_include_that_matches_nothing_stays_an_error(point, tmp_path, include):
    """A path below an existing directory too: that the directory leads to it is no match."""
    with pytest.raises(AgentError, match=f"nothing in {point[1]} matches {include[0]}"):
        restore(point, tmp_path, include, ("*.tmp",))
    assert not (tmp_path / "target").exists()


@pytest.mark.parametrize("path, patterns, excluded", [
    ("data/a/b.tmp", ["*.tmp"], True), ("data/a/b.tmp", ["data/a"], True), ("data/a", ["data/a/b.tmp"], False),
    ("data/ab", ["data/a"], False), ("data/a/b", ["/data/a/"], True), ("data/a/b", [], False)])
def test_a_pattern_matches_a_path_or_one_of_its_directories(path, patterns, excluded):
    assert _matches(path, patterns) is excluded


def test_include_still_selects_the_directories_leading_to_a_match():
    assert _selected("data/home", ["data/home/ada/docs"]) and not _selected("data/etc", ["data/home/ada/docs"])
