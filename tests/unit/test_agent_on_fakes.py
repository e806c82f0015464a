"""The agent's backup and restore engines against the handlers on in-memory fakes: fast
checks of chunking across file boundaries, extents, incrementals and the restored tree."""
from __future__ import annotations

import os
from dataclasses import replace

import pytest

from skyvault.backup import Backup
from skyvault.chunker import new_chunker
from skyvault.cache import PreviousFiles
from skyvault.restore import Restore, RestoreFailed
from skyvault.treedigest import differences, tree_digest
from tests.inprocess import record_reads

def make_tree(root):
    data = root / "data"
    (data / "empty-dir").mkdir(parents=True)
    for i in range(3):  # random files of 700 KB: chunk boundaries fall inside them
        (data / f"part{i}.bin").write_bytes(os.urandom(700_000))
    (data / "empty.txt").write_bytes(b"")
    (data / "Ünïcødé ファイル.txt").write_text("names are kept\n")
    (data / "script.sh").write_text("#!/bin/sh\n")
    (data / "script.sh").chmod(0o751)
    (data / "link").symlink_to("script.sh")
    os.utime(data / "empty.txt", ns=(1_500_000_000_000_000_001, 1_500_000_000_000_000_001))
    return data


def test_backup_and_restore_through_the_handlers(vault, cache, tmp_path):
    data = make_tree(tmp_path)
    first = Backup(vault, cache, "laptop").run([str(data)])
    assert first.state == "committed" and first.files == 6 and first.dirs == 2 and first.symlinks == 1
    extents = cache.previous_file(vault.vault_id, "laptop", "data/part1.bin").extents
    assert sum(length for _, _, length in extents) == 700_000
    v1 = tree_digest(data)

    (data / "part1.bin").write_bytes(os.urandom(700_000))
    (data / "empty.txt").unlink()
    second = Backup(vault, cache, "laptop").run([str(data)])
    assert second.files_read == 1 and second.files_unchanged == 4
    v2 = tree_digest(data)

    for point, expected in ((first.point_id, v1), (second.point_id, v2)):
        Restore(vault).run(point, str(tmp_path / point))
        assert differences(expected, tree_digest(tmp_path / point / "data")) == []


def test_a_backup_that_does_not_wait_declares_everything_through_the_queues(vault, cache, tmp_path, monkeypatch):
    data = make_tree(tmp_path)
    sent = []
    send = vault.send
    monkeypatch.setattr(vault, "send", lambda queue, body: sent.append(queue) or send(queue, body))
    api = vault.api

    def no_http_commit(method, subpath, *args, **kwargs):
        assert subpath != "commits", "a backup that does not wait commits through the queue"
        return api(method, subpath, *args, **kwargs)

    monkeypatch.setattr(vault, "api", no_http_commit)
    report = Backup(vault, cache, "laptop").run([str(data)], wait=False)
    assert report.state == "sent" and sent[-1] == "commit" and "ingest" in sent
    point = vault.services.index.get_point(vault.vault_id, report.point_id)
    assert point.state == "committed", "every chunk was declared on the ingest queue"


def test_zero_chunks_are_restored_as_holes(vault, cache, tmp_path):
    data = tmp_path / "disk"
    data.mkdir()
    image = os.urandom(600_000) + bytes(20 << 20) + os.urandom(300_000) + bytes(9 << 20)
    (data / "disk.img").write_bytes(image)
    point = Backup(vault, cache, "laptop").run([str(data)]).point_id
    Restore(vault).run(point, str(tmp_path / "r"))
    restored = tmp_path / "r" / "disk" / "disk.img"
    assert restored.read_bytes() == image
    zero_chunks = [c.length for c in new_chunker(vault.keys.chunker_seed).cut_buf(image) if bytes(c.data) == bytes(c.length)]
    assert len(zero_chunks) >= 2, "the layout gives chunks of zeros, inside the file and at its end"
    # Holes are whole file-system blocks: each may leave a partial block at either edge written.
    assert restored.stat().st_blocks * 512 <= len(image) - sum(zero_chunks) + 2 * 4096 * len(zero_chunks)


def test_a_chunk_of_zeros_is_fetched_once_however_far_apart_it_recurs(vault, cache, tmp_path):
    data = tmp_path / "disk"
    data.mkdir()
    image = b"".join([os.urandom(1 << 20), bytes(17 << 20), os.urandom(12 << 20), bytes(17 << 20)])
    (data / "disk.img").write_bytes(image)
    point = Backup(vault, cache, "laptop").run([str(data)]).point_id
    extents = cache.previous_file(vault.vault_id, "laptop", "disk/disk.img").extents
    position, zero_ids = 0, []
    for cid, _, length in extents:  # one file: its extents are whole chunks, in order
        if image[position:position + length] == bytes(length):
            zero_ids.append(cid)
        position += length
    zero_id = max(set(zero_ids), key=zero_ids.count)
    assert zero_ids.count(zero_id) >= 2, "the same chunk of zeros in both zero runs, a dozen chunks apart"
    reads = record_reads(vault)
    Restore(vault).run(point, str(tmp_path / "r"))
    assert (tmp_path / "r" / "disk" / "disk.img").read_bytes() == image
    assert reads.count(f"chunks/{zero_id[:2]}/{zero_id}") == 1


def test_restore_refuses_a_chunk_from_another_place(vault, cache, tmp_path):
    data = make_tree(tmp_path)
    report = Backup(vault, cache, "laptop").run([str(data)])
    cid = cache.previous_file(vault.vault_id, "laptop", "data/part0.bin").extents[0][0]
    other = cache.previous_file(vault.vault_id, "laptop", "data/part2.bin").extents[-1][0]
    container = vault.services.primary.container(f"vault-{vault.vault_id}")
    # A valid envelope of another chunk put under this chunk's name: authentic bytes, wrong place.
    container.put(f"chunks/{cid[:2]}/{cid}", container.read(f"chunks/{other[:2]}/{other}"), overwrite=True)
    with pytest.raises(RestoreFailed, match="part0.bin"):
        Restore(vault).run(report.point_id, str(tmp_path / "r"))
    assert not (tmp_path / "r" / "data" / "part0.bin").exists()


def test_a_failed_point_does_not_become_the_base_of_the_next_incremental(vault, cache, tmp_path, monkeypatch):
    data = make_tree(tmp_path)
    signed = vault.sign

    def wrong_sizes(body):  # in ingest messages and in the commit request alike
        if body["type"] == "chunks":
            body = {**body, "chunks": [{**c, "size": c["size"] + 1} for c in body["chunks"]]}
        return signed(body)

    monkeypatch.setattr(vault, "sign", wrong_sizes)
    failed = Backup(vault, cache, "laptop").run([str(data)])
    assert failed.state == "failed" and "rejected" in failed.reason
    assert cache.previous_file(vault.vault_id, "laptop", "data/part0.bin") is None
    monkeypatch.setattr(vault, "sign", signed)
    again = Backup(vault, cache, "laptop").run([str(data)])
    assert again.files_read == failed.files_read == 6 and again.files_unchanged == 0


def test_names_that_are_not_utf8_are_backed_up_unchanged_and_restored(vault, cache, tmp_path):
    """POSIX names are bytes: a name that is not UTF-8 is kept as it is, in the manifest and
    in the local cache, and an unchanged such file is not read again."""
    data = tmp_path / "data"
    (data / "d").mkdir(parents=True)
    raw = os.fsencode(data / "d") + b"/caf\xe9 latin-1 \xff.txt"
    with open(raw, "wb") as f:
        f.write(b"a name from another era\n")
    first = Backup(vault, cache, "laptop").run([str(data)])
    assert first.state == "committed" and first.files_read == 1
    again = Backup(vault, cache, "laptop").run([str(data)])
    assert again.state == "committed" and again.files_read == 0 and again.files_unchanged == 1
    Restore(vault).run(again.point_id, str(tmp_path / "restored"))
    restored = os.listdir(os.fsencode(tmp_path / "restored" / "data" / "d"))
    assert restored == [b"caf\xe9 latin-1 \xff.txt"]
    assert differences(tree_digest(data), tree_digest(tmp_path / "restored" / "data")) == []


def test_the_walk_asks_the_cache_for_files_in_byte_order(vault, cache, tmp_path, monkeypatch):
    """The order the cache's scan of the last backup relies on (cache.PreviousFiles)."""
    data = tmp_path / "data"
    for path in ["a.txt", "a/b", "a/c/d", "a0", "a-b", "B", "é", "a/c.e", "z/y"]:
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        (data / path).write_text(path)
    assert Backup(vault, cache, "laptop").run([str(data)]).files_read == 9
    asked = []
    get = PreviousFiles.get
    monkeypatch.setattr(PreviousFiles, "get", lambda scan, path: asked.append(path) or get(scan, path))
    assert Backup(vault, cache, "laptop").run([str(data)]).files_unchanged == 9
    assert len(asked) == 9 and asked == sorted(asked, key=lambda p: p.encode())
    (data / "a" / "c" / "d").unlink()
    third = Backup(vault, cache, "laptop").run([str(data)])
    assert third.files_unchanged == 8 and cache.last_run(vault.vault_id, "laptop") == third.point_id
    rows = [p for (p,) in cache._db.execute("SELECT path FROM files WHERE item='laptop'")]
    assert len(rows) == 8 and b"data/a/c/d" not in rows, "the deleted file is forgotten"


def test_batch_buffers_are_reused_without_mixing_chunks(vault, cache, tmp_path, monkeypatch):
    """More batches than buffers: a buffer goes back to the pool only once its batch is uploaded,
    so every chunk restores as read, and no more than MAX_INFLIGHT_BATCHES + 1 buffers exist.
    Some batches end in a chunk past ARENA_KEEP_BYTES, whose pages the buffer gives back."""
    from skyvault.backup import uploader
    created = []
    real_arena = uploader._Arena

    def counting_arena():
        arena = real_arena()
        created.append(arena)
        return arena

    monkeypatch.setattr(uploader, "_Arena", counting_arena)
    monkeypatch.setattr(uploader, "ARENA_KEEP_BYTES", 2 * 1024 * 1024)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(12):  # ~6 MiB each, random: about 70 chunks in 10 or more batches
        (data / f"f{i:02}.bin").write_bytes(os.urandom(6 * 1024 * 1024 + i))
    report = Backup(vault, cache, "many").run([str(data)])
    assert report.state == "committed" and report.chunks_uploaded >= 40
    # Every batch but the last holds at least BATCH_BYTES (16 chunks are at least 8 MiB too).
    pool_bytes = (uploader.MAX_INFLIGHT_BATCHES + 1) * uploader.BATCH_BYTES
    assert report.bytes_read > pool_bytes + uploader.BATCH_BYTES, "the test must outrun the pool"
    Restore(vault).run(report.point_id, str(tmp_path / "restored"))
    assert differences(tree_digest(data), tree_digest(tmp_path / "restored" / "data")) == []
    assert 1 < len(created) <= uploader.MAX_INFLIGHT_BATCHES + 1


def test_restore_refuses_a_manifest_of_another_point(vault, cache, tmp_path, monkeypatch):
    """The manifest's envelope authenticates the blob name the service chose: a service that
    answers point B's restore with point A's manifest must not roll the restore back silently."""
    data = make_tree(tmp_path)
    old = Backup(vault, cache, "laptop").run([str(data)])
    (data / "part0.bin").write_bytes(os.urandom(700_000))
    new = Backup(vault, cache, "laptop").run([str(data)])
    start_restore = vault.start_restore

    def rolled_back(job_id, point_id, *purpose):
        job = start_restore(job_id, point_id, *purpose)
        return replace(job, plan=replace(job.plan, manifest_blob=f"points/{old.point_id}/manifest"))

    monkeypatch.setattr(vault, "start_restore", rolled_back)
    with pytest.raises(RestoreFailed, match=f"offered the manifest of point {old.point_id} .* for point "
                                            f"{new.point_id}: refused"):
        Restore(vault).run(new.point_id, str(tmp_path / "r"))
    assert not (tmp_path / "r" / "data").exists()


def test_restore_refuses_a_manifest_root_that_is_not_an_envelope(vault, cache, tmp_path):
    report = Backup(vault, cache, "laptop").run([str(make_tree(tmp_path))])
    container = vault.services.primary.container(f"vault-{vault.vault_id}")
    container.put(f"points/{report.point_id}/manifest", b"not an envelope at all" * 4, overwrite=True)
    with pytest.raises(RestoreFailed, match=f"the manifest of {report.point_id} is not one this agent can read"):
        Restore(vault).run(report.point_id, str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_each_chunk_is_declared_once_though_the_queue_lags(vault, cache, tmp_path, monkeypatch):
    """The ingest messages a backup sends last are held back and declared in the commit request
    instead, never in both: the service verifies and indexes each chunk once (one ranged read,
    one Cosmos DB create), however far its queue lags behind the agent."""
    from skyvault.backup import committer, uploader

    monkeypatch.setattr(uploader, "INGEST_BATCH", 1)  # a message per chunk: several messages
    monkeypatch.setattr(committer, "INGEST_WAIT_S", 0.2)
    data = tmp_path / "data"
    data.mkdir()
    (data / "big.bin").write_bytes(os.urandom(12 << 20))  # 12 or more chunks
    declared: list[str] = []
    signed = vault.sign

    def counting(body):
        if body["type"] == "chunks":
            declared.extend(entry["id"] for entry in body["chunks"])
        return signed(body)

    held: list[dict] = []
    send, commit = vault.send, vault.commit

    def lagging_send(queue, body):  # the ingest queue is handled only once the commit request goes
        if queue == "ingest":
            held.append(body)
            return "held"
        return send(queue, body)

    def commit_after_the_queue(request):
        while held:
            send("ingest", held.pop(0))
        return commit(request)

    added: list[str] = []
    add_chunk = vault.services.index.add_chunk
    monkeypatch.setattr(vault.services.index, "add_chunk", lambda record: added.append(record.id) or add_chunk(record))
    monkeypatch.setattr(vault, "sign", counting)
    monkeypatch.setattr(vault, "send", lagging_send)
    monkeypatch.setattr(vault, "commit", commit_after_the_queue)
    report = Backup(vault, cache, "laptop").run([str(data)])
    assert report.state == "committed" and report.messages >= 2, "some chunks went through the ingest queue"
    assert report.chunks_uploaded >= 12
    assert sorted(declared) == sorted(set(declared)) and len(declared) == report.chunks_uploaded
    assert len(added) == len(set(added)) == report.chunks_uploaded
    Restore(vault).run(report.point_id, str(tmp_path / "r"))
    assert (tmp_path / "r" / "data" / "big.bin").read_bytes() == (data / "big.bin").read_bytes()
