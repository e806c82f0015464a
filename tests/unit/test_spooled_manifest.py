"""A restore reads its point's manifest three times (plan, prefetcher, writer): the first whole
read parses and checks every line and keeps the entries, and the later reads load those, not
the lines again (skyvault.restore._SpooledManifest). And the writer gives a file all its bytes
through an unbuffered file that takes less than all of a write."""
from __future__ import annotations

import io
import os

import pytest

from shared import formats
from shared.messages import ManifestEntry
from skyvault import restore
from skyvault.restore import RestoreFailed, _SpooledManifest
from tests.fuzz.test_storage_formats import ENTRIES, ROOT


def spool(tmp_path, entries=ENTRIES):
    path = tmp_path / "manifest"
    path.write_bytes(b"".join(formats.manifest_lines(entries)))
    return str(path)


def test_later_reads_give_the_entries_of_the_first_from_its_kept_file(tmp_path, monkeypatch):
    parsed = [ManifestEntry.from_doc(doc) for doc in ENTRIES]
    monkeypatch.setattr(restore, "ENTRIES_PER_BATCH", 3)  # several batches, the last one partial
    with _SpooledManifest(spool(tmp_path), ROOT["pointId"]) as manifest:
        assert list(manifest.entries(lambda e: True)) == parsed
        os.unlink(manifest.name)  # the lines are not read again
        assert list(manifest.entries(lambda e: True)) == parsed
        assert list(manifest.entries(lambda e: e.type == "file")) == [e for e in parsed if e.type == "file"]
        kept = manifest.name + ".entries"
        assert os.path.exists(kept)
    assert not os.path.exists(kept), "the kept entries are removed with the manifest"


def test_a_read_that_stopped_or_failed_keeps_nothing_and_the_next_parses_again(tmp_path):
    with _SpooledManifest(spool(tmp_path), ROOT["pointId"]) as manifest:
        next(manifest.entries(lambda e: True))  # a read given up after one entry
        assert list(manifest.entries(lambda e: True)) == [ManifestEntry.from_doc(doc) for doc in ENTRIES]
    bad = [*ENTRIES[:3], {**ENTRIES[3], "path": "../escape"}]
    with _SpooledManifest(spool(tmp_path, bad), ROOT["pointId"]) as manifest:
        for _ in range(2):
            with pytest.raises(RestoreFailed, match="bad entry"):
                list(manifest.entries(lambda e: True))


class _Trickle(io.RawIOBase):
    """A file that takes at most 3 bytes a write, as an unbuffered file may take less than all."""

    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.data += bytes(b[:3])
        return min(3, len(b))

    def truncate(self, size=None):
        return len(self.data)


class _Chunks:
    def __init__(self, chunks: dict[str, bytes]):
        self.chunks = chunks

    def get(self, cid):
        return self.chunks[cid], False, len(self.chunks[cid])


def test_a_file_restored_through_short_writes_gets_all_its_bytes():
    a, b = "a" * 64, "b" * 64
    entry = ManifestEntry.from_doc({"path": "d/f", "mode": 0o644, "mtime": 1, "type": "file", "size": 12,
                                    "extents": [[a, 1, 7], [b, 0, 5]]})
    out, wrote = _Trickle(), []
    assert restore._write_extents(out, entry, _Chunks({a: b"0123456789", b: b"abcdefgh"}), wrote.append) == 12
    assert bytes(out.data) == b"1234567abcde" and wrote == [7, 5]
