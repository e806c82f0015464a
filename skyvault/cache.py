"""The agent's local cache (SQLite, so memory stays bounded whatever the vault's size).

- known chunks: ids this machine uploaded or the service confirmed verified, per
  vault; lets a backup skip chunks without asking the service.
- files: per vault and item, the stat signature of each regular file in the last
  backup, with its manifest line and the chunk ids it references, so an
  incremental backup neither reads an unchanged file nor decodes or encodes its
  entry again: the same signature means the same entry, byte for byte.
  A backup writes its rows under a new generation (named by its recovery point)
  and makes it current only once its commit was sent, so an interrupted backup
  never poisons the cache.
- refs: the chunk ids the running backup references, deduplicated on disk.

Losing the cache loses no data: the next backup reads every file again and
asks the service which chunks it already holds.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

# Rows the backup writes per file and per chunk are buffered and written this many to a transaction.
FILE_ROWS_PER_TRANSACTION = 1000
SCHEMA = """
CREATE TABLE IF NOT EXISTS known (vault TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (vault, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    vault TEXT NOT NULL, item TEXT NOT NULL, generation TEXT NOT NULL, path BLOB NOT NULL,
    signature TEXT NOT NULL, line BLOB NOT NULL, ids TEXT NOT NULL,
    PRIMARY KEY (vault, item, generation, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS current (vault TEXT NOT NULL, item TEXT NOT NULL, generation TEXT NOT NULL,
    PRIMARY KEY (vault, item));
CREATE TABLE IF NOT EXISTS refs (run TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (run, id)) WITHOUT ROWID;
"""
FILES_COLUMNS = [("vault", "TEXT"), ("item", "TEXT"), ("generation", "TEXT"), ("path", "BLOB"),
                 ("signature", "TEXT"), ("line", "BLOB"), ("ids", "TEXT")]
# Rows a scan of the last generation fetches at a time.
SCAN_ROWS = 500


def path_key(path: str) -> bytes:
    """A manifest path as the files table keys it: its bytes on disk (a name need not be UTF-8),
    so SQLite orders rows as the walk visits them."""
    return path.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class PreviousFile:
    """A file as the item's last backup recorded it."""

    signature: str
    line: bytes  # its manifest line, newline included
    ids: list[str]  # the distinct chunk ids of its extents, in order

    @property
    def extents(self) -> list:
        return json.loads(self.line)["extents"]


class Cache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        columns = [(row[1], row[2]) for row in self._db.execute("PRAGMA table_info(files)")]
        if columns and columns != FILES_COLUMNS:
            # An older agent's layout: dropping it costs one full read of every file, no data.
            self._db.executescript("DROP TABLE files; DROP TABLE IF EXISTS current;")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._files: list[tuple] = []
        self._refs: list[tuple[str, str]] = []
        self._current: dict[tuple[str, str], str] = {}  # (vault, item) → its current generation

    def close(self) -> None:
        self._db.close()  # rows of an unfinished backup are dropped: it never became current

    # known chunks
    def known(self, vault: str, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(ids), 500):
                batch = ids[start:start + 500]
                rows = self._db.execute(
                    f"SELECT id FROM known WHERE vault=? AND id IN ({','.join('?' * len(batch))})",
                    [vault, *batch])
                found.update(r[0] for r in rows)
        return found

    def add_known(self, vault: str, ids: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO known VALUES (?, ?)", [(vault, i) for i in ids])

    # file signatures of the item's current generation
    def current_generation(self, vault: str, item: str) -> str:
        """The generation of the item's last backup ("" when none); a backup names its generation
        after its recovery point."""
        with self._lock:
            return self._current_generation(vault, item)

    def _current_generation(self, vault: str, item: str) -> str:
        generation = self._current.get((vault, item))
        if generation is None:
            row = self._db.execute("SELECT generation FROM current WHERE vault=? AND item=?",
                                   (vault, item)).fetchone()
            generation = self._current[(vault, item)] = row[0] if row else ""
        return generation

    def previous_file(self, vault: str, item: str, path: str) -> PreviousFile | None:
        with self._lock:
            generation = self._current_generation(vault, item)
            row = self._db.execute(_PREVIOUS_FILE, (vault, item, generation, path_key(path))).fetchone()
        return PreviousFile(row[0], row[1], row[2].split()) if row else None

    def previous_files(self, vault: str, item: str) -> "PreviousFiles":
        """The item's last backup's files, for a walk that asks for them in path order."""
        return PreviousFiles(self.path, vault, item, self.current_generation(vault, item))

    def record_file(self, vault: str, item: str, generation: str, path: str, signature: str,
                    line: bytes, ids: list[str]) -> None:
        """Buffered: rows are written in batches, one transaction each (a backup records every file)."""
        self._files.append((vault, item, generation, path_key(path), signature, line, " ".join(ids)))
        if len(self._files) >= FILE_ROWS_PER_TRANSACTION:
            self._write_files()

    def _write_files(self) -> None:
        rows, self._files = self._files, []
        self._write_rows("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def _write_rows(self, sql: str, rows: list[tuple]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(sql, rows)
            self._db.execute("COMMIT")

    def make_current(self, vault: str, item: str, generation: str) -> None:
        self._write_files()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM files WHERE vault=? AND item=? AND generation != ?",
                             (vault, item, generation))
            self._db.execute("INSERT OR REPLACE INTO current VALUES (?, ?, ?)", (vault, item, generation))
            self._db.execute("COMMIT")
            self._current[(vault, item)] = generation

    def drop_generation(self, vault: str, item: str, generation: str) -> None:
        self._files = []
        with self._lock:
            self._db.execute("DELETE FROM files WHERE vault=? AND item=? AND generation=?",
                             (vault, item, generation))

    # references of a running backup
    def add_refs(self, run: str, ids: Iterable[str]) -> None:
        """Buffered like record_file. Small files share chunks: an id repeating the last one
        added is dropped here rather than by SQLite."""
        for i in ids:
            if not self._refs or self._refs[-1][1] != i:
                self._refs.append((run, i))
        if len(self._refs) >= FILE_ROWS_PER_TRANSACTION:
            self._write_refs()

    def _write_refs(self) -> None:
        rows, self._refs = self._refs, []
        self._write_rows("INSERT OR IGNORE INTO refs VALUES (?, ?)", rows)

    def refs(self, run: str) -> Iterator[str]:
        """Sorted ids, streamed from disk; call once the backup's uploads have finished."""
        self._write_refs()
        for (cid,) in self._db.execute("SELECT id FROM refs WHERE run=? ORDER BY id", (run,)):
            yield cid

    def count_refs(self, run: str) -> int:
        self._write_refs()
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM refs WHERE run=?", (run,)).fetchone()[0]

    def drop_refs(self, run: str) -> None:
        self._refs = []
        with self._lock:
            self._db.execute("DELETE FROM refs WHERE run=?", (run,))


_PREVIOUS_FILE = ("SELECT signature, line, ids FROM files "
                  "WHERE vault=? AND item=? AND generation=? AND path=?")


class PreviousFiles:
    """One generation's file rows, read in primary-key order beside a walk that visits files in
    that same order (Backup._visit sorts names by their bytes): each look-up moves one cursor on
    instead of making a query, which is most of an unchanged backup's time on many small files.
    A path asked for out of order (the second root of a backup) gets a query; the answer is the
    same either way. Reads through its own connection: WAL gives it the generation as it was
    when the backup began, whatever the backup writes meanwhile."""

    def __init__(self, db_path: Path, vault: str, item: str, generation: str):
        self._db = sqlite3.connect(db_path, check_same_thread=False)
        self._key = (vault, item, generation)
        self._rows = self._db.execute(
            "SELECT path, signature, line, ids FROM files WHERE vault=? AND item=? AND generation=? "
            "ORDER BY path", self._key)
        self._batch: list[tuple] = []
        self._next = 0
        self._last: bytes | None = None

    def get(self, path: str) -> PreviousFile | None:
        key = path_key(path)
        if self._last is not None and key <= self._last:
            row = self._db.execute(_PREVIOUS_FILE, (*self._key, key)).fetchone()
            return PreviousFile(row[0], row[1], row[2].split()) if row else None
        self._last = key
        while True:
            if self._next == len(self._batch):
                self._batch, self._next = self._rows.fetchmany(SCAN_ROWS), 0
                if not self._batch:
                    return None
            row = self._batch[self._next]
            if row[0] >= key:
                break
            self._next += 1
        if row[0] != key:
            return None
        self._next += 1
        return PreviousFile(row[1], row[2], row[3].split())

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "PreviousFiles":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
