"""The agent's local cache (SQLite, so memory stays bounded whatever the vault's size).

- known chunks: ids this machine uploaded or the service confirmed verified, per
  vault; lets a backup skip chunks without asking the service.
- files: per vault and item, the stat signature and extents of each regular file
  in the last backup, so an incremental backup does not read unchanged files.
  A backup writes its rows under a new generation and makes it current only
  once its commit was sent, so an interrupted backup never poisons the cache.
- refs: the chunk ids the running backup references, deduplicated on disk.

Losing the cache loses no data: the next backup reads every file again and
asks the service which chunks it already holds.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Iterable, Iterator

# Rows the backup writes per file and per chunk are buffered and written this many to a transaction.
FILE_ROWS_PER_TRANSACTION = 1000
SCHEMA = """
CREATE TABLE IF NOT EXISTS known (vault TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (vault, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    vault TEXT NOT NULL, item TEXT NOT NULL, generation TEXT NOT NULL, path TEXT NOT NULL,
    signature TEXT NOT NULL, extents TEXT NOT NULL,
    PRIMARY KEY (vault, item, generation, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS current (vault TEXT NOT NULL, item TEXT NOT NULL, generation TEXT NOT NULL,
    PRIMARY KEY (vault, item));
CREATE TABLE IF NOT EXISTS refs (run TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (run, id)) WITHOUT ROWID;
"""


class Cache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._files: list[tuple] = []
        self._refs: list[tuple[str, str]] = []

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
    def previous_file(self, vault: str, item: str, path: str) -> tuple[str, list] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT f.signature, f.extents FROM files f JOIN current c "
                "ON f.vault=c.vault AND f.item=c.item AND f.generation=c.generation "
                "WHERE f.vault=? AND f.item=? AND f.path=?", (vault, item, path)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def record_file(self, vault: str, item: str, generation: str, path: str, signature: str,
                    extents: list) -> None:
        """Buffered: rows are written in batches, one transaction each (a backup records every file)."""
        self._files.append((vault, item, generation, path, signature, json.dumps(extents)))
        if len(self._files) >= FILE_ROWS_PER_TRANSACTION:
            self._write_files()

    def _write_files(self) -> None:
        rows, self._files = self._files, []
        self._write_rows("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)

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

    def drop_generation(self, vault: str, item: str, generation: str) -> None:
        self._files = []
        with self._lock:
            self._db.execute("DELETE FROM files WHERE vault=? AND item=? AND generation=?",
                             (vault, item, generation))

    # references of a running backup
    def add_refs(self, run: str, ids: Iterable[str]) -> None:
        """Buffered like record_file."""
        self._refs.extend((run, i) for i in ids)
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
