"""Restores that cannot escape their target (Skyvault issue 12): no link in the target is
followed, a manifest out of walk order is refused before anything is written, an extent past
its chunk fails its file, a type change in an existing target replaces the old entry, and a
restore that could not write some files keeps the others. On the in-process vault (fakes)."""
from __future__ import annotations

import os
import stat

import pytest
import zstandard

from shared import crypto
from shared.messages import ManifestEntry
from skyvault.backup import Backup, walk
from skyvault.backup.manifest import ManifestWriter
from skyvault.chunker import CDC_PARAMS
from skyvault.restore import PartialRestore, Restore, RestoreFailed, WalkOrder


def snapshot(root) -> dict:
    """Every path below `root` with its type, mode and content: to show that nothing changed."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            content = open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None
            found[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), content)
    return {".": stat.S_IMODE(os.lstat(root).st_mode), **found}


@pytest.fixture
def outside(tmp_path):
    """A directory outside every restore target, which a restore must never touch."""
    place = tmp_path / "outside"
    place.mkdir(mode=0o755)
    (place / "keep.txt").write_text("outside\n")
    os.chmod(place, 0o755)
    return place


def crafted_backup(vault, cache, tmp_path, monkeypatch, docs: list[dict]) -> str:
    """A point whose manifest holds exactly `docs`, written by the backup's own stages: the walk
    is replaced by these entries, a file's bytes read from a scratch file of its size."""
    entries = []
    for i, doc in enumerate(docs):
        if doc["type"] == "file":
            source = tmp_path / f"source-{i}"
            source.write_bytes(os.urandom(doc["size"]))
            entries.append(walk.Entry(dict(doc), str(source), f"crafted:{i}", complete=False))
        else:
            entries.append(walk.Entry(dict(doc)))
    monkeypatch.setattr(walk.Walk, "entries", lambda self, roots, previous=None: iter(entries))
    report = Backup(vault, cache, "crafted").run([str(tmp_path)])
    monkeypatch.undo()
    assert report.state == "committed"
    return report.point_id


def test_a_symlink_of_an_earlier_restore_is_replaced_not_followed(vault, cache, tmp_path, outside):
    """Point A has `lib` as a symlink to a directory outside the target, point B has `lib` as a
    directory with files; B restored over A writes B's files inside the target, and leaves the
    outside directory's contents and mode as they were (today's code wrote into it)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "lib").symlink_to(outside)
    point_a = Backup(vault, cache, "app").run([str(data)]).point_id
    (data / "lib").unlink()
    (data / "lib").mkdir(mode=0o700)
    (data / "lib" / "module.py").write_text("print('B')\n")
    os.chmod(data / "lib", 0o700)
    point_b = Backup(vault, cache, "app").run([str(data)]).point_id
    before = snapshot(outside)

    target = tmp_path / "target"
    Restore(vault).run(point_a, str(target))
    assert os.readlink(target / "data" / "lib") == str(outside)
    Restore(vault).run(point_b, str(target))
    assert snapshot(outside) == before
    lib = target / "data" / "lib"
    assert not lib.is_symlink() and lib.is_dir() and stat.S_IMODE(lib.stat().st_mode) == 0o700
    assert (lib / "module.py").read_text() == "print('B')\n"


def test_a_crafted_file_below_a_symlink_is_refused_and_nothing_is_written(vault, cache, tmp_path, monkeypatch,
                                                                            outside):
    """A manifest holding `x -> outside` then `x/evil` (setuid): refused before anything is
    written; today's code created the setuid file in the outside directory."""
    point = crafted_backup(vault, cache, tmp_path, monkeypatch, [
        {"path": "data", "mode": 0o755, "mtime": 0, "type": "dir"},
        {"path": "data/x", "mode": 0o777, "mtime": 0, "type": "symlink", "target": str(outside)},
        {"path": "data/x/evil", "mode": 0o4755, "mtime": 0, "type": "file", "size": 100}])
    before = snapshot(outside)
    with pytest.raises(RestoreFailed, match="'data/x/evil' comes without its directory 'data/x'"):
        Restore(vault).run(point, str(tmp_path / "target"))
    assert snapshot(outside) == before
    assert not (tmp_path / "target").exists()


def test_an_unselected_directory_that_is_a_symlink_in_the_target_is_replaced(vault, cache, tmp_path, outside):
    """`--include '*/evil'` selects `x/evil` but not its directory `x`, which the restore makes
    on the way; a symlink already there is replaced by it, not followed."""
    data = tmp_path / "data"
    (data / "x").mkdir(parents=True)
    (data / "x" / "evil").write_text("inside\n")
    point = Backup(vault, cache, "app").run([str(data)]).point_id
    target = tmp_path / "target"
    (target / "data").mkdir(parents=True)
    (target / "data" / "x").symlink_to(outside)
    before = snapshot(outside)
    Restore(vault).run(point, str(target), include=["*/evil"])
    assert snapshot(outside) == before
    assert not (target / "data" / "x").is_symlink()
    assert (target / "data" / "x" / "evil").read_text() == "inside\n"


def entry(path: str, kind: str = "file", **fields) -> ManifestEntry:
    return ManifestEntry(path, kind, 0o644, 0, **fields)


@pytest.mark.parametrize("entries, error", [
    ([entry("a.txt"), entry("a", "dir"), entry("a/b"), entry("a0")], None),
    ([entry("a", "dir"), entry("a.txt")], "'a.txt' comes out of walk order"),
    ([entry("a"), entry("a")], "'a' comes out of walk order, or twice"),
    ([entry("a"), entry("a.txt"), entry("a", "dir")], "'a' is both a directory and another entry"),
    ([entry("a", "dir"), entry("b/c")], "'b/c' comes without its directory 'b'"),
    ([entry("a", "dir"), entry("a/b", "dir"), entry("a/b/c"), entry("a/d/e")], "'a/d/e' comes without"),
    ([entry("a", "dir"), entry("a/b", "hardlink", target="a/c"), entry("a/c")], "links to 'a/c', which does not"),
])
def test_walk_order_is_checked(entries, error):
    order = WalkOrder("p")
    if error is None:
        for e in entries:
            order.check(e)
        return
    with pytest.raises(RestoreFailed, match=error):
        for e in entries:
            order.check(e)


def test_an_extent_past_its_chunk_fails_its_file_and_the_others_are_restored(vault, cache, tmp_path, monkeypatch):
    """An extent that claims 10 bytes more than its chunk holds: today's code wrote a short file
    without a word."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "good.bin").write_bytes(os.urandom(1000))
    (data / "short.bin").write_bytes(os.urandom(1000))
    assign = ManifestWriter._assign_extents

    def overlong(self, cid, offset, length):
        assign(self, cid, offset, length)
        for waiting in self._order:  # entries not written yet, the file among them
            if waiting.doc["path"].endswith("short.bin") and waiting.complete:
                waiting.doc["extents"][-1][2] += 10
                waiting.doc["size"] += 10

    monkeypatch.setattr(ManifestWriter, "_assign_extents", overlong)
    point = Backup(vault, cache, "app").run([str(data)]).point_id
    monkeypatch.undo()
    with pytest.raises(PartialRestore, match="short.bin: extent .* ends past the end of its chunk") as failed:
        Restore(vault).run(point, str(tmp_path / "r"))
    assert failed.value.report.errors == [failed.value.report.errors[0]] and failed.value.report.files == 1
    assert not (tmp_path / "r" / "data" / "short.bin").exists()
    assert (tmp_path / "r" / "data" / "good.bin").read_bytes() == (data / "good.bin").read_bytes()
    assert not [p for p in (tmp_path / "r" / "data").iterdir() if p.name.startswith(".skyvault-")]


def test_type_changes_in_an_existing_target_replace_the_old_entry(vault, cache, tmp_path, outside):
    """dir → file, file → dir, symlink → dir, file → symlink, dir → symlink: each old entry is
    replaced (a directory removed without following the links in it); today's code raised an
    uncaught OSError."""
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "a" / "inner.txt").write_text("old\n")
    (data / "a" / "escape").symlink_to(outside)
    (data / "b").write_text("old b\n")
    (data / "c").symlink_to(outside)
    (data / "d").write_text("old d\n")
    (data / "e").mkdir()
    first = Backup(vault, cache, "app").run([str(data)]).point_id
    (data / "a" / "escape").unlink()
    (data / "a" / "inner.txt").unlink()
    (data / "a").rmdir()
    (data / "a").write_text("a is a file now\n")
    (data / "b").unlink()
    (data / "b").mkdir()
    (data / "b" / "f.txt").write_text("in b\n")
    (data / "c").unlink()
    (data / "c").mkdir()
    (data / "c" / "g.txt").write_text("in c\n")
    (data / "d").unlink()
    (data / "d").symlink_to("a")
    (data / "e").rmdir()
    (data / "e").symlink_to("b")
    second = Backup(vault, cache, "app").run([str(data)]).point_id
    before = snapshot(outside)
    target = tmp_path / "target"
    Restore(vault).run(first, str(target))
    Restore(vault).run(second, str(target))
    assert snapshot(outside) == before
    assert snapshot(target / "data") == snapshot(data)


def test_a_zstd_frame_is_capped_at_the_largest_chunk():
    assert crypto.MAX_PLAINTEXT_BYTES == CDC_PARAMS["max_size"]
    at_cap = bytes([crypto.FRAME_ZSTD]) + zstandard.ZstdCompressor().compress(bytes(crypto.MAX_PLAINTEXT_BYTES))
    assert crypto.unframe(at_cap) == bytes(crypto.MAX_PLAINTEXT_BYTES)
    # 8 MiB + 1 of zeros compress to a few hundred bytes, and would decompress to all of it.
    bomb = bytes([crypto.FRAME_ZSTD]) + zstandard.ZstdCompressor().compress(bytes(crypto.MAX_PLAINTEXT_BYTES + 1))
    with pytest.raises(crypto.BadEnvelope, match="frame of 8388609 bytes of plaintext: over the largest chunk"):
        crypto.unframe(bomb)
    unsized = bytes([crypto.FRAME_ZSTD]) + zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 100)
    with pytest.raises(crypto.BadEnvelope, match="without its content size"):
        crypto.unframe(unsized)
    with pytest.raises(crypto.BadEnvelope, match="over the largest chunk"):
        crypto.unframe(bytes([crypto.FRAME_RAW]) + bytes(crypto.MAX_PLAINTEXT_BYTES + 1))
