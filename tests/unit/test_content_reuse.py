"""A file read again whose bytes a file of the item's last backup had takes that file's extents
and stays out of the stream (skyvault.backup.changes.ContentReuse): touched, renamed, moved
files and a new release's unchanged files upload nothing; what changed is all that is stored;
every point restores byte for byte."""
from __future__ import annotations

import os
import shutil
import sqlite3

from shared.domain import container_name
from skyvault.backup import Backup
from skyvault.backup.changes import REUSE_MAX_BYTES
from skyvault.cache import Cache
from skyvault.restore import Restore
from skyvault.treedigest import differences, tree_digest


def release(root, files: int = 40, size: int = 30_000):
    """A source tree of small files: each chunk of its stream spans many of them."""
    root.mkdir(parents=True)
    for i in range(files):
        sub = root / f"pkg{i % 4}"
        sub.mkdir(exist_ok=True)
        (sub / f"module{i}.py").write_bytes(os.urandom(size))
    return root


def chunk_blobs(vault) -> set[str]:
    return {n for n in vault.services.primary.container(container_name(vault.vault_id)).list("chunks/")}


def restores(vault, point: str, source, tmp_path, expected=None) -> bool:
    target = tmp_path / f"restored-{point}"
    Restore(vault).run(point, str(target))
    return differences(expected or tree_digest(source), tree_digest(target / source.name)) == []


def test_touched_files_are_read_but_their_chunks_reused(vault, cache, tmp_path):
    data = release(tmp_path / "data")
    first = Backup(vault, cache, "src").run([str(data)])
    as_first = tree_digest(data)
    before = chunk_blobs(vault)
    for path in data.rglob("*.py"):
        os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    second = Backup(vault, cache, "src").run([str(data)])
    assert second.files_read == 40 and second.files_reused == 40 and second.bytes_reused == 40 * 30_000
    new = chunk_blobs(vault) - before
    assert len(new) == second.chunks_uploaded == 1  # the manifest (the mtimes changed), no data chunk
    assert restores(vault, second.point_id, data, tmp_path)
    assert restores(vault, first.point_id, data, tmp_path, as_first)


def test_a_new_release_stores_what_changed_not_the_chunks_it_shares_with_its_neighbours(vault, cache, tmp_path):
    v1 = release(tmp_path / "v1" / "project")
    Backup(vault, cache, "src").run([str(v1)])
    v2 = tmp_path / "v2" / "project"
    shutil.copytree(v1, v2)  # a new folder: every file new by its inode, read again
    changed = sorted(v2.rglob("*.py"))[::10]  # a few files all over the tree
    for path in changed:
        path.write_bytes(os.urandom(30_000))
    (v2 / "pkg0" / "module0.py").rename(v2 / "pkg3" / "moved.py")  # moved: same bytes, another path
    before = chunk_blobs(vault)
    second = Backup(vault, cache, "src").run([str(v2)])
    assert second.files_read == 40 and second.files_reused == 40 - len(changed)
    assert second.bytes_uploaded < (len(changed) + 1) * 30_000 * 1.1  # the changed files and the manifest
    assert len(chunk_blobs(vault) - before) == second.chunks_uploaded
    assert restores(vault, second.point_id, v2, tmp_path)


def test_without_reuse_the_same_change_stores_nearly_every_chunk(vault, cache, tmp_path, monkeypatch):
    """What reuse saves, measured on the same change: the stream alone re-stores most chunks."""
    from skyvault.backup import changes

    monkeypatch.setattr(changes, "REUSE_MAX_BYTES", -1)
    v1 = release(tmp_path / "v1" / "project")
    Backup(vault, cache, "src").run([str(v1)])
    v2 = tmp_path / "v2" / "project"
    shutil.copytree(v1, v2)
    for path in sorted(v2.rglob("*.py"))[::10]:
        path.write_bytes(os.urandom(30_000))
    second = Backup(vault, cache, "src").run([str(v2)])
    assert second.files_reused == 0 and second.bytes_uploaded > 0.5 * 40 * 30_000


def test_a_changed_file_is_not_reused_and_a_large_file_goes_through_the_chunker(vault, cache, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "small.txt").write_bytes(b"version one\n" * 100)
    big = os.urandom(REUSE_MAX_BYTES + 1)
    (data / "big.bin").write_bytes(big)
    Backup(vault, cache, "files").run([str(data)])
    (data / "small.txt").write_bytes(b"version two\n" * 100)
    (data / "big.bin").write_bytes(big)  # the same bytes, rewritten: read again
    second = Backup(vault, cache, "files").run([str(data)])
    assert second.files_read == 2 and second.files_reused == 0
    assert second.chunks_deduplicated >= 1  # big.bin's chunks are found again by the chunker
    assert cache.previous_file(vault.vault_id, "files", "data/big.bin") is not None
    assert restores(vault, second.point_id, data, tmp_path)


def test_reuse_is_within_the_item_and_its_last_backup(vault, cache, tmp_path):
    data = release(tmp_path / "data", files=4)
    Backup(vault, cache, "one").run([str(data)])
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    other = Backup(vault, cache, "two").run([str(copy)])  # another item: its own last backup, none yet
    assert other.files_reused == 0
    assert restores(vault, other.point_id, copy, tmp_path)


def test_an_unreadable_file_read_ahead_is_left_out_with_a_warning(vault, cache, tmp_path, monkeypatch):
    from skyvault.backup import changes

    data = release(tmp_path / "data", files=3)
    real_read = changes.ConcatReader._read_ahead

    def failing(self, entry):
        if entry.path.endswith("module1.py"):
            self._file.close()
            self._file = open("/proc/self/mem", "rb", buffering=0)  # reading it at offset 0 fails: EIO
        return real_read(self, entry)

    monkeypatch.setattr(changes.ConcatReader, "_read_ahead", failing)
    report = Backup(vault, cache, "src").run([str(data)])
    assert report.files == 2 and any("module1.py" in w and "file left out" in w for w in report.warnings)


def test_a_cache_without_content_ids_keeps_its_rows_and_learns_them(vault, tmp_path):
    data = release(tmp_path / "data", files=4)
    path = tmp_path / "old-cache.sqlite"
    old = Cache(path)
    Backup(vault, old, "src").run([str(data)])
    old.close()
    db = sqlite3.connect(path)  # back to the layout before content ids, as an older agent left it
    db.executescript("DROP INDEX files_by_content; ALTER TABLE files DROP COLUMN content;")
    db.close()
    upgraded = Cache(path)
    try:
        again = Backup(vault, upgraded, "src").run([str(data)])
        assert again.files_unchanged == 4 and again.files_read == 0  # its rows kept: nothing read again
        for p in data.rglob("*.py"):
            os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
        touched = Backup(vault, upgraded, "src").run([str(data)])
        assert touched.files_reused == 0  # no content ids yet: read into the stream, and learnt
        for p in data.rglob("*.py"):
            os.utime(p, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
        assert Backup(vault, upgraded, "src").run([str(data)]).files_reused == 4
    finally:
        upgraded.close()


def test_the_content_look_up_searches_the_index_not_the_items_rows(cache):
    """One indexed search per small file read: scanning the item's rows made a new Django
    release's backup 5x slower (6,800 look-ups of 0.7 ms each)."""
    cache.file_with_content("v", "i", "c")  # the statement the backup runs, through the cache's connection
    plan = cache._db.execute("EXPLAIN QUERY PLAN SELECT signature, line, ids FROM files INDEXED BY files_by_content "
                             "WHERE vault=? AND item=? AND content=? AND content IS NOT NULL LIMIT 1",
                             ("v", "i", "c")).fetchall()
    assert any("USING INDEX files_by_content" in row[-1] for row in plan), plan
    import inspect as source
    assert "INDEXED BY files_by_content" in source.getsource(Cache.file_with_content)


def test_a_file_that_grows_while_it_is_read_goes_whole_into_the_stream_not_reused(vault, cache, tmp_path):
    from skyvault.meter import Unmetered

    data = tmp_path / "data"
    data.mkdir()
    (data / "log.txt").write_bytes(b"line\n" * 200)
    Backup(vault, cache, "logs").run([str(data)])
    os.utime(data / "log.txt", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))  # read again

    class Appender(Unmetered):
        def update(self, files=0, bytes_=0, current=None) -> None:
            if current is not None:  # the file at work: after the walk stat'ed it, before it is read
                with open(current, "ab") as f:
                    f.write(b"appended while backed up\n")

    report = Backup(vault, cache, "logs", meter=Appender()).run([str(data)])
    assert report.files_reused == 0  # its first 1,000 bytes are the last backup's, but it is not that file
    assert any("changed size while being read" in w for w in report.warnings)
    target = tmp_path / "restored"
    Restore(vault).run(report.point_id, str(target))
    assert (target / "data" / "log.txt").read_bytes() == b"line\n" * 200 + b"appended while backed up\n"
