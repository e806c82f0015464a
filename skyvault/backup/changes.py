"""Change detection, and the stream of the files it sends on to be read.

Every entry of the walk takes its place in the manifest. A regular file whose stat
signature (size, mtime, ctime, inode) equals the one the cache recorded at the item's last
backup is unchanged: it keeps its manifest line and extents from the cache and is not read.
FIFOs, devices and hard links (a later path of a file already met) are recorded as they
are and never read. The other files are concatenated, in walk order, into one stream
(ConcatReader) that is chunked as a whole, so chunks span file boundaries and ten thousand
small files make a handful of blobs.

The cache's rows of the last backup are read in one scan beside the walk, in the byte
order both follow (cache.PreviousFiles), rather than one query per file.

Both tell the backup's progress (report.BackupProgress) what they go through: an unchanged
file is done at once, with its size; a read file byte by byte as it is read.
"""
from __future__ import annotations

import functools
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from skyvault.backup.manifest import ManifestWriter
from skyvault.backup.report import BackupProgress
from skyvault.backup.walk import Entry, Replaced, Walk, open_as_walked
from skyvault.cache import Cache

if TYPE_CHECKING:
    from skyvault.backup.report import BackupReport


class Changes:
    def __init__(self, walk: Walk, manifest: ManifestWriter, cache: Cache, vault_id: str, item: str,
                 run_id: str, report: BackupReport, progress: BackupProgress = BackupProgress()):
        self.walk, self.manifest, self.cache = walk, manifest, cache
        self.vault_id, self.item, self.run_id, self.report = vault_id, item, run_id, report
        self.progress = progress

    def files_to_read(self, roots: list[Path]) -> Iterator[Entry]:
        """Every entry goes into the manifest order; only changed files go on to be read."""
        with self.cache.previous_files(self.vault_id, self.item, self.run_id) as last_backup:
            for entry in self.walk.entries(roots):
                self.manifest.add(entry)
                if not entry.complete:
                    previous = last_backup.get(entry.doc["path"])
                    if previous and previous.signature == entry.signature:
                        entry.previous = previous
                        entry.complete = True
                        self.report.files_unchanged += 1
                        self.cache.add_refs(self.run_id, previous.ids)
                        self.progress.advanced(files=1, bytes_=entry.doc["size"])
                    else:
                        yield entry
                self.manifest.flush()
            last_backup.finish()


class ConcatReader:
    """A readinto() stream over the files that must be read, pulled lazily from the walk. A file
    that cannot be opened or read is left out of the manifest, with a warning; so is one that
    is not the file the walk stat'ed (walk.open_as_walked): a link, a FIFO or another file put
    in its place, or a path that now leads elsewhere through a directory swapped for a link."""

    def __init__(self, to_read: Iterator[Entry], manifest: ManifestWriter, report: BackupReport,
                 warn: Callable[[str], None], progress: BackupProgress = BackupProgress()):
        self._to_read = to_read
        self._manifest, self._report, self._warn, self._progress = manifest, report, warn, progress
        self._current: Entry | None = None
        self._file = None
        self.offset = 0

    def readinto(self, buf: memoryview) -> int:
        while True:
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
                    self._progress.advanced(files=1)
                    continue
                except OSError as e:
                    self._warn(f"cannot read {entry.path}: {e.strerror or e}")
                    entry.failed = entry.complete = True
                    self._progress.advanced(files=1)
                    continue
                self._progress.reading(entry.path)
                self._current = entry
                self._manifest.file_started(entry, self.offset)
            try:
                n = self._file.readinto(buf)
            except OSError as e:
                self._warn(f"error reading {self._current.path}: {e.strerror or e}; file left out")
                self._current.failed = True
                n = 0
            if n:
                self.offset += n
                self._progress.advanced(bytes_=n)
                return n
            self._file.close()
            self._file = None
            self._file_read(self._current, self.offset)
            self._progress.advanced(files=1)

    def _file_read(self, entry: Entry, end: int) -> None:
        entry.end = end
        if entry.failed:
            return
        size = end - entry.start
        if size != entry.doc["size"]:
            self._warn(f"{entry.path} changed size while being read ({entry.doc['size']} → {size} bytes)")
            entry.doc["size"] = size
        self._report.files_read += 1
        self._report.bytes_read += size
