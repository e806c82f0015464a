"""Change detection, and the stream of the files it sends on to be read.

Every entry of the walk takes its place in the manifest. A regular file whose stat
signature (size, mtime, ctime, inode) equals the one the cache recorded at the item's last
backup is unchanged: it keeps its manifest line and extents from the cache and is not read,
nor are its owner and extended attributes (the walk compares the signatures; a chown, chmod or
setxattr changes the ctime). A file read has its extended attributes read from the descriptor
it is read through.
FIFOs, devices and hard links (a later path of a file already met) are recorded as they
are and never read. The other files are concatenated, in walk order, into one stream
(ConcatReader) that is chunked as a whole, so chunks span file boundaries and ten thousand
small files make a handful of blobs.

A file read again is not always changed: touched, copied, renamed or moved, or unpacked again
from a new release that kept it. A file of at most REUSE_MAX_BYTES is read whole before it
enters the stream and its content id taken (keyed BLAKE3 of its bytes, as chunk ids are); if a
file of the item's last backup had the same bytes, it takes that file's extents (chunks of the
item's last point, which the service holds for this run as it does an unchanged file's) and
stays out of the stream (ContentReuse). So the stream, and the chunks cut from it, hold only
bytes the last backup did not have, and a release that changes a few files all over a tree
stores those files, not every chunk they share with unchanged neighbours.

The cache's rows of the last backup are read in one scan beside the walk, in the byte
order both follow (cache.PreviousFiles), rather than one query per file.

Both tell the backup's meter (skyvault.meter) what they go through: an unchanged file is done
at once, with its size; a read file byte by byte as it is read, named as the path at work (and
to `detail`, a --verbose line) when it is opened.
"""
from __future__ import annotations

import functools
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from shared import crypto
from skyvault.backup.manifest import ManifestWriter
from skyvault.backup.walk import Entry, Replaced, Walk, add_xattrs, open_as_walked, read_xattrs
from skyvault.cache import Cache
from skyvault.chunker import CDC_PARAMS
from skyvault.meter import Meter, Unmetered

if TYPE_CHECKING:
    from skyvault.backup.report import BackupReport

# Files up to this size are read whole, and their content looked up, before they enter the
# stream: the largest chunk's size, so a file reused has at most two extents' chunks to keep
# and the reader holds at most one such file in memory. A larger file is chunked on its own
# anyway for the most part, and dedups against its old chunks through the chunker.
REUSE_MAX_BYTES = CDC_PARAMS["max_size"]


class ContentReuse:
    """Gives a file read again the extents of a file of the item's last backup with the same bytes."""

    def __init__(self, cache: Cache, keys: crypto.VaultKeys, vault_id: str, item: str, run_id: str,
                 report: BackupReport):
        self.cache, self.keys, self.vault_id, self.item, self.run_id = cache, keys, vault_id, item, run_id
        self.report = report
        # No last backup (a first one, or its files forgotten): nothing to look up, but each small
        # file's content id is still taken, for the next backup.
        self.has_last_backup = bool(cache.last_run(vault_id, item))

    def content_id(self, data: bytes | memoryview) -> str:
        return crypto.chunk_id(self.keys, data)

    def adopt(self, entry: Entry, size: int) -> bool:
        """Whether `entry` (its content id taken, `size` bytes) took a last backup's file's extents."""
        if not self.has_last_backup:
            return False
        previous = self.cache.file_with_content(self.vault_id, self.item, entry.content)
        if previous is None:
            return False
        extents = previous.extents
        if sum(length for _, _, length in extents) != size:  # a row that does not cover its file: not used
            return False
        entry.doc["extents"] = extents
        entry.complete = True
        self.cache.add_refs(self.run_id, previous.ids)
        self.report.files_reused += 1
        self.report.bytes_reused += size
        return True


class Changes:
    def __init__(self, walk: Walk, manifest: ManifestWriter, cache: Cache, vault_id: str, item: str,
                 run_id: str, report: BackupReport, meter: Meter = Unmetered()):
        self.walk, self.manifest, self.cache = walk, manifest, cache
        self.vault_id, self.item, self.run_id, self.report = vault_id, item, run_id, report
        self.meter = meter

    def files_to_read(self, roots: list[Path]) -> Iterator[Entry]:
        """Every entry goes into the manifest order; only changed files go on to be read."""
        with self.cache.previous_files(self.vault_id, self.item, self.run_id) as last_backup:
            for entry in self.walk.entries(roots, last_backup.get):
                self.manifest.add(entry)
                if entry.previous is not None:  # unchanged (the walk compared the signatures)
                    self.report.files_unchanged += 1
                    self.cache.add_refs(self.run_id, entry.previous.ids)
                    self.meter.update(files=1, bytes_=entry.doc["size"])
                elif not entry.complete:
                    yield entry
                self.manifest.flush()
            last_backup.finish()


class ConcatReader:
    """A readinto() stream over the files that must be read, pulled lazily from the walk. A file
    that cannot be opened or read is left out of the manifest, with a warning; so is one that
    is not the file the walk stat'ed (walk.open_as_walked): a link, a FIFO or another file put
    in its place, or a path that now leads elsewhere through a directory swapped for a link."""

    def __init__(self, to_read: Iterator[Entry], manifest: ManifestWriter, report: BackupReport,
                 warn: Callable[[str], None], meter: Meter = Unmetered(), reuse: ContentReuse | None = None,
                 detail: Callable[[str], None] = lambda _: None):
        self._to_read = to_read
        self._manifest, self._report, self._warn, self._meter = manifest, report, warn, meter
        self._detail = detail
        self._reuse = reuse
        self._current: Entry | None = None
        self._file = None
        self._ahead = memoryview(b"")  # the current file's bytes read ahead (a small file, whole)
        self.offset = 0

    def readinto(self, buf: memoryview) -> int:
        while True:
            if self._ahead:
                n = min(len(buf), len(self._ahead))
                buf[:n] = self._ahead[:n]
                self._ahead = self._ahead[n:]
                self.offset += n
                self._meter.update(bytes_=n)
                return n
            if self._file is None:
                entry = next(self._to_read, None)
                if entry is None:
                    return 0
                try:
                    self._file = open(entry.path, "rb", buffering=0, opener=functools.partial(
                        open_as_walked, kind=stat.S_IFREG, identity=entry.identity))
                except Replaced as e:
                    self._warn(f"{entry.path} changed while being backed up ({e.strerror}): file left out")
                    entry.failed = entry.complete = True
                    self._meter.update(files=1)
                    continue
                except OSError as e:
                    self._warn(f"cannot read {entry.path}: {e.strerror or e}")
                    entry.failed = entry.complete = True
                    self._meter.update(files=1)
                    continue
                add_xattrs(entry.doc, read_xattrs(self._file.fileno(), entry.path, self._warn))
                self._detail(f"read {entry.path}")
                self._meter.update(current=entry.path)
                if self._reuse is not None and entry.doc["size"] <= REUSE_MAX_BYTES:
                    ahead = self._read_ahead(entry)
                    if ahead is None or self._reused(entry, *ahead):
                        continue
                    self._ahead = memoryview(ahead[0])
                self._current = entry
                self._manifest.file_started(entry, self.offset)
                continue
            try:
                n = self._file.readinto(buf)
            except OSError as e:
                self._warn(f"error reading {self._current.path}: {e.strerror or e}; file left out")
                self._current.failed = True
                n = 0
            if n:
                self.offset += n
                self._meter.update(bytes_=n)
                return n
            self._file.close()
            self._file = None
            self._file_read(self._current, self.offset)
            self._meter.update(files=1)

    def _read_ahead(self, entry: Entry) -> tuple[bytearray, bool] | None:
        """The open file's bytes, up to one more than the size the walk stat'ed, into a buffer of
        that size (reads of a fixed large size would allocate and zero that much for every small
        file), and whether that was all of it: a file that grew is streamed on from the file and
        not reused. None if it could not be read (left out)."""
        want = entry.doc["size"] + 1
        data = bytearray(want)
        got = 0
        try:
            with memoryview(data) as view:
                while got < want:
                    n = self._file.readinto(view[got:])
                    if not n:
                        break
                    got += n
        except OSError as e:
            self._warn(f"error reading {entry.path}: {e.strerror or e}; file left out")
            self._file.close()
            self._file = None
            entry.failed = entry.complete = True
            self._meter.update(files=1)
            return None
        del data[got:]
        return data, got < want

    def _reused(self, entry: Entry, data: bytearray, whole: bool) -> bool:
        """Whether the file read into `data` (`whole`: all of it) took a last backup's file's extents."""
        if not whole:
            return False
        entry.content = self._reuse.content_id(data)
        if not self._reuse.adopt(entry, len(data)):
            return False
        self._file.close()
        self._file = None
        self._count(entry, len(data))
        self._meter.update(files=1, bytes_=len(data))
        return True

    def _file_read(self, entry: Entry, end: int) -> None:
        entry.end = end
        if entry.failed:
            return
        self._count(entry, end - entry.start)

    def _count(self, entry: Entry, size: int) -> None:
        if size != entry.doc["size"]:
            self._warn(f"{entry.path} changed size while being read ({entry.doc['size']} → {size} bytes)")
            entry.doc["size"] = size
        self._report.files_read += 1
        self._report.bytes_read += size
