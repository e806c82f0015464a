"""The manifest writer: entries in walk order, each file's extents, and the manifest's lines
in a temporary file (so memory stays bounded whatever the tree's size).

Words:
- Extent: a file's part of a chunk, `[chunk id, offset in chunk, length]`; a file's
  extents are in file order and cover it (docs/design.md, "Manifest").
- Open file: a file being read, or read but not yet covered by a chunk's end: the chunks
  cut from the stream still give it extents.
- Complete: an entry whose line can be written: a directory, symlink, hard link, FIFO or
  device at once, an unchanged file with the cache's line, a read file once a chunk
  reaches its end, a file that could not be read (left out, with its warning).

Entries leave in walk order, so one file still waiting for its chunk holds back those
after it. A file read here gets a row in the local cache, for the next backup's change
detection; an unchanged file's row stays as it is.
"""
from __future__ import annotations

from collections import deque
from typing import IO, TYPE_CHECKING

from shared import formats
from skyvault.backup.walk import Entry
from skyvault.cache import Cache
from skyvault.vaultclient import AgentError

if TYPE_CHECKING:
    from skyvault.backup.report import BackupReport


class ManifestWriter:
    def __init__(self, file: IO[bytes], cache: Cache, vault_id: str, item: str, run_id: str,
                 report: BackupReport):
        self._file, self.cache, self.vault_id, self.item, self.run_id = file, cache, vault_id, item, run_id
        self.report = report
        self._order: deque[Entry] = deque()
        self._open_files: deque[Entry] = deque()

    def add(self, entry: Entry) -> None:
        """Take `entry`'s place in the manifest: after every entry added before it."""
        self._order.append(entry)

    def file_started(self, entry: Entry, offset: int) -> None:
        """`entry`'s bytes begin at `offset` of the stream of files read."""
        entry.start = offset
        entry.doc["extents"] = []
        self._open_files.append(entry)

    def data_chunk(self, cid: str, offset: int, length: int) -> None:
        """A chunk was cut from the stream of files read: its extents, then the lines it completes."""
        self._assign_extents(cid, offset, length)
        self.flush()

    def _assign_extents(self, cid: str, offset: int, length: int) -> None:
        """Give each file its part of a chunk; a file is complete once a chunk reaches its end."""
        chunk_end = offset + length
        for entry in self._open_files:
            if entry.start >= chunk_end:
                break
            lo = max(entry.start, offset)
            hi = chunk_end if entry.end is None else min(entry.end, chunk_end)
            if hi > lo:
                entry.doc["extents"].append([cid, lo - offset, hi - lo])
        while self._open_files and self._open_files[0].end is not None and self._open_files[0].end <= chunk_end:
            self._open_files.popleft().complete = True

    def end_of_data(self) -> None:
        """The stream of files read has ended: empty files after the last chunk (or in a stream
        with no chunk) end here."""
        while self._open_files:
            self._open_files.popleft().complete = True

    def flush(self) -> None:
        """Write the lines of the complete entries at the head of the order."""
        while self._order and self._order[0].complete:
            entry = self._order.popleft()
            if entry.failed:
                continue
            doc = entry.doc
            line = entry.previous.line if entry.previous is not None else next(formats.manifest_lines([doc]))
            if doc["type"] == "file":
                self.report.files += 1
                self.report.bytes_total += doc["size"]
                if entry.previous is None:  # the cache keeps an unchanged file's row as it is
                    ids = list(dict.fromkeys(e[0] for e in doc.get("extents", ())))
                    self.cache.record_file(self.vault_id, self.item, self.run_id, doc["path"],
                                           entry.signature, line, ids, entry.content)
            self._file.write(line)

    def finish(self) -> IO[bytes]:
        """The whole manifest, from its start: every entry must have its line by now."""
        self.flush()
        if self._order:
            raise AgentError("internal error: manifest entries left without extents")
        self._file.flush()
        self._file.seek(0)
        return self._file
