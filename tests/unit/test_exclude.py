"""Exclusions (skyvault.backup.exclude) through the real walk: golden cases of patterns against
a tree, tag files, sizes, another file system; then a backup with exclusions on fakes, restored."""
from __future__ import annotations

import argparse
import os
import subprocess

import pytest

from skyvault.backup import Backup
from skyvault.backup.exclude import CACHEDIR_SIGNATURE, ExclusionRules, parse_size
from skyvault.backup.report import BackupReport
from skyvault.backup.walk import Scan, Walk
from skyvault.commands.backup import _size
from skyvault.restore import Restore
from skyvault.vaultclient import AgentError

# Below the root `data`; a trailing "/" makes a directory.
TREE = ["a.txt", "a.tmp", "keep.tmp", "README.MD", "build/", "build/out.o", "build/keep.o", "src/", "src/main.c",
        "src/lib.tmp", "src/build/", "src/build/x.o", "src/sub/", "src/sub/main.c", "node_modules/",
        "node_modules/pkg/", "node_modules/pkg/i.js", "web/", "web/node_modules/", "web/node_modules/m.js",
        "docs/", "docs/a.pdf", "docs/x/", "docs/x/b.pdf", "docs/x/c.txt", "logs/", "logs/1.log", "logs/keep",
        "logs/old/", "logs/old/2.log", "tools/", "tools/build"]
ALL = {p.rstrip("/") for p in TREE}


def make(root, paths=TREE):
    root.mkdir(exist_ok=True)
    for p in paths:
        if p.endswith("/"):
            (root / p).mkdir()
        else:
            (root / p).write_bytes(p.encode())
    return root


def walked(root, rules: ExclusionRules) -> tuple[set[str], BackupReport]:
    """The paths below `root` the walk keeps, and its report."""
    report, warnings = BackupReport(point_id="p", item="i"), []
    paths = {e.doc["path"] for e in Walk(report, warnings.append, rules.compile()).entries([root])}
    assert warnings == []
    prefix = root.name + "/"
    return {p[len(prefix):] for p in paths if p.startswith(prefix)}, report


def without(*gone: str) -> set[str]:
    """ALL but `gone` and everything below them."""
    return {p for p in ALL if not any(p == g or p.startswith(g + "/") for g in gone)}


GOLDEN = [
    # unanchored: a name at any depth
    (["*.tmp"], without("a.tmp", "keep.tmp", "src/lib.tmp")),
    (["build"], without("build", "src/build", "tools/build")),
    (["node_modules"], without("node_modules", "web/node_modules")),
    # anchored: a leading or middle slash is relative to the root's top
    (["/build"], without("build")),
    (["src/*.c"], without("src/main.c")),
    (["/src/build/x.o"], without("src/build/x.o")),
    # ** at the start, in the middle, at the end
    (["**/node_modules"], without("node_modules", "web/node_modules")),
    (["**/main.c"], without("src/main.c", "src/sub/main.c")),
    (["docs/**/*.pdf"], without("docs/a.pdf", "docs/x/b.pdf")),
    (["logs/**"], without("logs/1.log", "logs/keep", "logs/old")),  # logs/ itself is kept
    # a trailing slash: directories only (tools/build is a file)
    (["build/"], without("build", "src/build")),
    # negation: a later one re-includes; nothing below an excluded directory can be
    (["*.tmp", "!keep.tmp"], without("a.tmp", "src/lib.tmp")),
    (["!keep.tmp", "*.tmp"], without("a.tmp", "keep.tmp", "src/lib.tmp")),
    (["build/", "!build/keep.o"], without("build", "src/build")),
    (["build/*", "!build/keep.o"], without("build/out.o")),
    (["logs/**", "!logs/keep"], without("logs/1.log", "logs/old/2.log")),
    # case
    (["readme.md"], ALL),
]


@pytest.mark.parametrize("patterns, expected", GOLDEN, ids=[" ".join(p) for p, _ in GOLDEN])
def test_patterns_leave_out_what_gitignore_would(tmp_path, patterns, expected):
    kept, report = walked(make(tmp_path / "data"), ExclusionRules(patterns=tuple(patterns)))
    assert kept == expected
    if patterns == ["logs/**"]:  # logs/ kept without its contents, which are not listed
        assert (report.excluded_files, report.excluded_dirs) == (0, 1)
        return
    left_out = ALL - expected
    # Counted: the entries the walk met and left out; what is below a directory left out is not.
    met = {p for p in left_out if not any(p.startswith(d + "/") for d in left_out)}
    files = [p for p in met if not (tmp_path / "data" / p).is_dir()]
    assert report.excluded_files == len(files)
    assert report.excluded_bytes == sum(len(p) for p in files)


def test_ignore_case_matches_patterns_and_paths_without_case(tmp_path):
    root = make(tmp_path / "data")
    assert walked(root, ExclusionRules(patterns=("readme.md", "BUILD/"), ignore_case=True))[0] == \
        without("README.MD", "build", "src/build")
    assert walked(root, ExclusionRules(patterns=("*.TMP", "!KEEP.tmp"), ignore_case=True))[0] == \
        without("a.tmp", "src/lib.tmp")


def test_a_root_itself_is_never_excluded(tmp_path):
    root = make(tmp_path / "data", ["a.txt"])
    report = BackupReport(point_id="p", item="i")
    entries = list(Walk(report, print, ExclusionRules(patterns=("data", "*.txt")).compile()).entries([root]))
    assert [e.doc["path"] for e in entries] == ["data"]


def test_an_exclude_file_has_a_pattern_a_line_with_comments_and_blank_lines(tmp_path):
    patterns = tmp_path / "excludes"
    patterns.write_text("# build output\n/build\n\n   \n*.tmp\n  # indented comment\n!keep.tmp\n")
    rules = ExclusionRules(patterns=("node_modules/",), pattern_files=(str(patterns),))
    assert walked(make(tmp_path / "data"), rules)[0] == \
        without("build", "a.tmp", "src/lib.tmp", "node_modules", "web/node_modules")


@pytest.mark.parametrize("content, words", [
    (None, "cannot read exclude file"),
    (b"\xff\xfe*.tmp\n", "is not UTF-8 text"),
])
def test_an_exclude_file_that_cannot_be_read_is_a_clear_error(tmp_path, content, words):
    path = tmp_path / "excludes"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AgentError, match=words) as e:
        ExclusionRules(pattern_files=(str(path),)).compile()
    assert str(path) in str(e.value)


def test_a_pattern_that_is_not_one_is_named(tmp_path):
    with pytest.raises(AgentError, match=r"exclude pattern '!' is not a valid pattern"):
        ExclusionRules(patterns=("*.tmp", "!")).compile()


def tag(directory, content: bytes, name="CACHEDIR.TAG"):
    (directory / name).write_bytes(content)


@pytest.mark.parametrize("content, kept", [
    (CACHEDIR_SIGNATURE + b"\n# This file is a cache directory tag.\n", {"cache", "cache/CACHEDIR.TAG"}),
    (CACHEDIR_SIGNATURE, {"cache", "cache/CACHEDIR.TAG"}),  # exactly the signature
    (CACHEDIR_SIGNATURE[:-1] + b"6\n", None),  # one digit off: not a tag
    (b"Signature: 8a477f59", None),  # too short
    (b"", None),
])
def test_a_cache_directory_keeps_only_its_valid_tag(tmp_path, content, kept):
    root = make(tmp_path / "data", ["a.txt", "cache/", "cache/blob", "cache/sub/", "cache/sub/blob2"])
    tag(root / "cache", content)
    everything = {"a.txt", "cache", "cache/blob", "cache/sub", "cache/sub/blob2", "cache/CACHEDIR.TAG"}
    found, report = walked(root, ExclusionRules(exclude_caches=True))
    assert found == ({"a.txt"} | kept if kept else everything)
    assert report.excluded_dirs == (1 if kept else 0)
    assert walked(root, ExclusionRules())[0] == everything


def test_a_cachedir_tag_through_a_link_is_not_one(tmp_path):
    root = make(tmp_path / "data", ["cache/", "cache/blob"])
    tag(tmp_path, CACHEDIR_SIGNATURE)
    (root / "cache" / "CACHEDIR.TAG").symlink_to(tmp_path / "CACHEDIR.TAG")
    assert walked(root, ExclusionRules(exclude_caches=True))[0] == {"cache", "cache/blob", "cache/CACHEDIR.TAG"}


def test_exclude_if_present_keeps_the_directory_and_its_marker(tmp_path):
    root = make(tmp_path / "data", ["a/", "a/.nobackup", "a/big", "a/sub/", "a/sub/x", "b/", "b/y", "c/",
                                    "c/.skip", "c/z"])
    found, report = walked(root, ExclusionRules(if_present=(".nobackup", ".skip")))
    assert found == {"a", "a/.nobackup", "b", "b/y", "c", "c/.skip"}
    assert report.excluded_dirs == 2


@pytest.mark.parametrize("text, size", [("0", 0), ("4096", 4096), ("512K", 512 << 10), ("100M", 100 << 20),
                                        ("2G", 2 << 30), ("1T", 1 << 40), ("3k", 3072), ("10MiB", 10 << 20),
                                        ("10MB", 10 << 20), (" 7 ", 7)])
def test_sizes_take_binary_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "1.5G", "-1", "10X", "1 GB extra", "0x10"])
def test_a_bad_size_is_an_argparse_error_naming_it(text):
    with pytest.raises(argparse.ArgumentTypeError, match="is not a size"):
        _size(text)


def test_larger_than_keeps_a_file_of_exactly_the_size(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for name, n in (("under", 1023), ("exact", 1024), ("over", 1025), ("huge", 5000)):
        (root / name).write_bytes(b"x" * n)
    (root / "dir").mkdir()
    found, report = walked(root, ExclusionRules(larger_than=1024))
    assert found == {"under", "exact", "dir"}
    assert (report.excluded_files, report.excluded_bytes) == (2, 1025 + 5000)


def test_one_file_system_keeps_a_mount_point_empty(tmp_path):
    root = make(tmp_path / "data", ["a.txt", "mnt/"])
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "skyvault-test", str(root / "mnt")],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        (root / "mnt" / "inside").mkdir()
        (root / "mnt" / "inside" / "f").write_bytes(b"on another file system")
        assert walked(root, ExclusionRules())[0] == {"a.txt", "mnt", "mnt/inside", "mnt/inside/f"}
        found, report = walked(root, ExclusionRules(one_file_system=True))
        assert found == {"a.txt", "mnt"}
        assert report.excluded_dirs == 1
        files, size = [], []
        scan = Scan([root], ExclusionRules(one_file_system=True).compile(), lambda f, b: files.append(f) or size.append(b))
        scan.start()
        scan.join()
        assert files == [1] and size == [len(b"a.txt")]
    finally:
        subprocess.run(["umount", str(root / "mnt")], check=True)


def test_the_scan_counts_what_the_walk_keeps(tmp_path):
    root = make(tmp_path / "data")
    tag(root / "docs", CACHEDIR_SIGNATURE)
    os.link(root / "a.txt", root / "src" / "a-again.txt")
    rules = ExclusionRules(patterns=("*.tmp", "node_modules/"), exclude_caches=True)
    report = BackupReport(point_id="p", item="i")
    entries = list(Walk(report, print, rules.compile()).entries([root]))
    files = [e for e in entries if e.doc["type"] == "file"]
    totals = []
    scan = Scan([root], rules.compile(), lambda f, b: totals.append((f, b)))
    scan.start()
    scan.join()
    assert totals == [(len(files), sum(e.doc["size"] for e in files))]


def restored_paths(target) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(target):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), target))
    return found


def test_a_backup_with_exclusions_restores_exactly_the_tree_it_kept(vault, cache, tmp_path):
    root = make(tmp_path / "data")
    tag(root / "docs", CACHEDIR_SIGNATURE)
    (root / "big.iso").write_bytes(os.urandom(300_000))
    rules = ExclusionRules(patterns=("*.tmp", "!keep.tmp", "node_modules/", "/build"), exclude_caches=True,
                           larger_than=100_000)
    report = Backup(vault, cache, "laptop", exclusions=rules.compile()).run([str(root)])
    assert report.state == "committed" and report.warnings == []
    kept = without("a.tmp", "src/lib.tmp", "node_modules", "web/node_modules", "build", "docs/a.pdf", "docs/x")
    kept |= {"docs/CACHEDIR.TAG"}
    Restore(vault).run(report.point_id, str(tmp_path / "r"))
    assert restored_paths(tmp_path / "r" / "data") == kept
    for p in kept:
        if (root / p).is_file():
            assert (tmp_path / "r" / "data" / p).read_bytes() == (root / p).read_bytes()
    # a.tmp, src/lib.tmp, big.iso; node_modules twice, build; docs kept without its contents
    assert (report.excluded_files, report.excluded_dirs) == (3, 4)
    assert report.excluded_bytes == len(b"a.tmp") + len(b"src/lib.tmp") + 300_000


def test_an_unchanged_file_newly_excluded_leaves_the_next_point_and_the_cache(vault, cache, tmp_path):
    root = make(tmp_path / "data", ["a.txt", "b.tmp", "sub/", "sub/c.tmp"])
    first = Backup(vault, cache, "laptop").run([str(root)])
    assert first.files == 3
    second = Backup(vault, cache, "laptop", exclusions=ExclusionRules(patterns=("*.tmp",)).compile()).run([str(root)])
    assert (second.files, second.files_unchanged, second.excluded_files) == (1, 1, 2)
    Restore(vault).run(second.point_id, str(tmp_path / "r2"))
    assert restored_paths(tmp_path / "r2" / "data") == {"a.txt", "sub"}
    assert cache.previous_file(vault.vault_id, "laptop", "data/b.tmp") is None
    assert cache.previous_file(vault.vault_id, "laptop", "data/a.txt") is not None
    # Included again, it is read again (the cache forgot it) and comes back.
    third = Backup(vault, cache, "laptop").run([str(root)])
    assert (third.files, third.files_read, third.files_unchanged) == (3, 2, 1)
    Restore(vault).run(third.point_id, str(tmp_path / "r3"))
    assert restored_paths(tmp_path / "r3" / "data") == {"a.txt", "b.tmp", "sub", "sub/c.tmp"}


def test_the_scan_for_progress_totals_runs_only_when_the_progress_shows_them(vault, cache, tmp_path, monkeypatch):
    from skyvault.backup import walk
    from skyvault.meter import Unmetered

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    scans = []
    real_scan = walk.Scan
    monkeypatch.setattr(walk, "Scan", lambda *a: scans.append(a) or real_scan(*a))
    Backup(vault, cache, "quiet").run([str(data)])  # no progress shown: a second walk would be for nothing
    assert scans == []

    class Shown(Unmetered):
        shown = True

        def __init__(self):
            self.got = []

        def set_totals(self, files=None, bytes_=None) -> None:
            self.got.append((files, bytes_))

    shown = Shown()
    Backup(vault, cache, "shown", meter=shown).run([str(data)])
    assert len(scans) == 1 and shown.got == [(1, 1)]


def test_a_tree_too_deep_for_the_scans_recursion_ends_the_scan_quietly(tmp_path, monkeypatch):
    import sys
    import threading

    raised = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_type))

    deep = path = tmp_path / "root"
    deep.mkdir()
    levels = [deep]
    try:
        for _ in range(sys.getrecursionlimit() + 50):  # one level at a time: os.makedirs recurses too
            path = path / "d"
            path.mkdir()
            levels.append(path)
        totals = []
        scan = Scan([deep], ExclusionRules().compile(), lambda f, b: totals.append((f, b)))
        scan.start()
        scan.join()
        assert totals == [] and raised == []  # no totals, and no exception out of the thread
    finally:
        for level in reversed(levels):  # deepest first: pytest's clean-up (shutil.rmtree) recurses too
            level.rmdir()


def test_a_walk_stopped_at_any_entry_leaves_no_descriptor_open(tmp_path):
    """The walk holds a descriptor per level of its path, and the one of the directory it just
    yielded (opened to read its attributes, listed next): a backup that stops mid-walk closes
    them all."""
    root = make(tmp_path / "data")
    before = set(os.listdir("/proc/self/fd"))
    count = sum(1 for _ in Walk(BackupReport(point_id="p", item="i"), print).entries([root]))
    for stop_after in range(1, count + 1):
        entries = Walk(BackupReport(point_id="p", item="i"), print).entries([root])
        for n, entry in enumerate(entries, 1):
            if n == stop_after:
                break
        entries.close()
        assert set(os.listdir("/proc/self/fd")) == before, f"stopped after {stop_after} ({entry.doc['path']})"
