"""The agent's local cache (SQLite, so memory stays bounded whatever the vault's size).

- known chunks: ids the service confirmed verified, per vault (a look-up answered so, or
  they belong to a point that committed); lets a backup skip chunks without asking the
  service. An upload is not enough: a crashed run's chunks were never declared, and must not
  be skipped for ever (docs/design.md, "Chunk lifecycle"). Valid for one chunk epoch of the
  vault: when the epoch rises (a chunk was found damaged), known chunks and the files of the
  last backups are forgotten, so the next backup reads everything and asks again.
- sent: ids the running backup uploaded or declared, not yet confirmed; they become known
  when its point commits.
- files: per vault and item, the stat signature of each regular file in the last
  backup, with its manifest line and the chunk ids it references, so an
  incremental backup neither reads an unchanged file nor decodes or encodes its
  entry again: the same signature means the same entry, byte for byte. A small file's row
  also holds its content id (keyed BLAKE3 of its bytes), so a file read again whose bytes
  some file of the item's last backup had (a touched, copied, moved or renamed file; a new
  release's unchanged files) takes that file's extents instead of going into the stream.
  A backup writes only what changed, under its run (its recovery point's id):
  the files it read, and a tombstone for each file of the last backup it no
  longer found. They replace the item's rows only once its commit stands
  (make_current), so an interrupted backup never poisons the cache, and a
  backup of unchanged files writes no file row at all.
- refs: the chunk ids the running backup references, deduplicated on disk.

Losing the cache loses no data: the next backup reads every file again and
asks the service which chunks it already holds. Its file and SQLite's side files are
0600, in a 0700 folder (skyvault.home).
"""
from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from skyvault.home import FOLDER_MODE, create_private_file

# Rows the backup writes per file and per chunk are buffered and written this many to a transaction.
FILE_ROWS_PER_TRANSACTION = 1000
# What the agent knows between backups.
STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS known (vault TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (vault, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    vault TEXT NOT NULL, item TEXT NOT NULL, path BLOB NOT NULL,
    signature TEXT NOT NULL, line BLOB NOT NULL, ids TEXT NOT NULL, content TEXT,
    PRIMARY KEY (vault, item, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS current (vault TEXT NOT NULL, item TEXT NOT NULL, run TEXT NOT NULL,
    PRIMARY KEY (vault, item));
CREATE INDEX IF NOT EXISTS files_by_content ON files (vault, item, content) WHERE content IS NOT NULL;
CREATE TABLE IF NOT EXISTS epochs (vault TEXT NOT NULL PRIMARY KEY, epoch INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS gc_epochs (vault TEXT NOT NULL PRIMARY KEY, epoch INTEGER NOT NULL);
"""
# What a running backup keeps (by its run): a read-only view (Cache.open_read_only) has them as
# temporary tables of its own.
RUN_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    run TEXT NOT NULL, path BLOB NOT NULL, signature TEXT, line BLOB, ids TEXT, content TEXT,
    PRIMARY KEY (run, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refs (run TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (run, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent (run TEXT NOT NULL, vault TEXT NOT NULL, id TEXT NOT NULL,
    PRIMARY KEY (run, id)) WITHOUT ROWID;
"""
SCHEMA = STATE_SCHEMA + RUN_SCHEMA
# 2: `known` holds only chunks the service confirmed. Older agents added every chunk they
# uploaded, which a crashed run never declared: their rows are dropped once.
SCHEMA_VERSION = 2
FILES_COLUMNS = [("vault", "TEXT"), ("item", "TEXT"), ("path", "BLOB"),
                 ("signature", "TEXT"), ("line", "BLOB"), ("ids", "TEXT"), ("content", "TEXT")]
# The layout before content ids: its rows are kept, their content unknown (NULL).
FILES_COLUMNS_WITHOUT_CONTENT = FILES_COLUMNS[:-1]
# Rows a scan of the last backup's files fetches at a time.
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

    @classmethod
    def from_row(cls, signature: str, line: bytes, ids: str) -> "PreviousFile":
        return cls(signature, line, ids.split())

    @property
    def extents(self) -> list:
        return json.loads(self.line)["extents"]


class Cache:
    read_only = False

    def __init__(self, path: Path):
        path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        create_private_file(path)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        columns = [(row[1], row[2]) for row in self._db.execute("PRAGMA table_info(files)")]
        if columns == FILES_COLUMNS_WITHOUT_CONTENT:
            self._db.executescript("ALTER TABLE files ADD COLUMN content TEXT; DROP TABLE IF EXISTS changes;")
        elif columns and columns != FILES_COLUMNS:
            # An older agent's layout: dropping it costs one full read of every file, no data.
            self._db.executescript("DROP TABLE files; DROP TABLE IF EXISTS current; "
                                   "DROP TABLE IF EXISTS changes;")
        self._db.executescript(SCHEMA)
        if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            self._db.execute("DELETE FROM known")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._start()

    @classmethod
    def open_read_only(cls, path: Path) -> "Cache":
        """The cache at `path` as a dry run sees it, changing nothing in it: read through a
        read-only connection, to which SQLite refuses every write, with the running backup's
        own rows (changes, refs, sent) in temporary tables of this connection, gone when it
        closes. A cache that does not exist, or that an older agent wrote, reads as empty, as
        the next backup would find it."""
        cache = cls.__new__(cls)
        cache.read_only = True
        cache._empty = None
        if not _current_layout(path):
            cache._empty = tempfile.TemporaryDirectory(prefix="skyvault-empty-cache-")
            path = Path(cache._empty.name) / "cache.sqlite"
            empty = sqlite3.connect(path)
            empty.executescript(STATE_SCHEMA)
            empty.close()
        cache.path = path
        cache._db = cache.reader(isolation_level=None)
        cache._db.executescript(RUN_SCHEMA.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))
        cache._start()
        return cache

    def reader(self, **kwargs) -> sqlite3.Connection:
        """Another connection to the cache, for reading beside the backup's writes."""
        if self.read_only:
            return sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True, check_same_thread=False,
                                   **kwargs)
        return sqlite3.connect(self.path, check_same_thread=False, **kwargs)

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._changes: list[tuple] = []
        self._unordered: set[str] = set()  # runs whose walk asked for a file out of path order
        self._refs: list[tuple[str, str]] = []
        self._current: dict[tuple[str, str], str] = {}  # (vault, item) → its last run

    def close(self) -> None:
        self._db.close()  # the changes of an unfinished backup are never applied: it never became current
        if self.read_only and self._empty is not None:
            self._empty.cleanup()

    # known chunks
    def known(self, vault: str, ids: Iterable[str], run: str = "") -> set[str]:
        """Those of `ids` the service confirmed verified, and those backup `run` sent already."""
        ids = list(ids)
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(ids), 500):
                batch = ids[start:start + 500]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(
                    f"SELECT id FROM known WHERE vault=? AND id IN ({marks}) "
                    f"UNION SELECT id FROM sent WHERE run=? AND id IN ({marks})", [vault, *batch, run, *batch])
                found.update(r[0] for r in rows)
        return found

    def add_known(self, vault: str, ids: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO known VALUES (?, ?)", [(vault, i) for i in ids])

    def add_sent(self, vault: str, run: str, ids: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO sent VALUES (?, ?, ?)", [(run, vault, i) for i in ids])

    def check_epoch(self, vault: str, epoch: int) -> bool:
        """Record the vault's chunk epoch; when it differs from the one recorded, forget the
        vault's known chunks and last backups' files first. True if anything was forgotten."""
        with self._lock:
            row = self._db.execute("SELECT epoch FROM epochs WHERE vault=?", (vault,)).fetchone()
            if row is not None and row[0] == epoch:
                return False
            self._db.execute("BEGIN")
            if row is not None:
                for table in ("known", "files", "current"):
                    self._db.execute(f"DELETE FROM {table} WHERE vault=?", (vault,))
                self._current = {k: v for k, v in self._current.items() if k[0] != vault}
            self._db.execute("INSERT OR REPLACE INTO epochs VALUES (?, ?)", (vault, epoch))
            self._db.execute("COMMIT")
            return row is not None

    def check_gc_epoch(self, vault: str, epoch: int) -> bool:
        """Record the vault's GC epoch; when it differs from the one recorded, forget the vault's
        known chunks first (garbage collection may have deleted some), but not the files: their
        extents are those of the item's last point, which the service answers live or not
        (`forget_files`). True if anything was forgotten."""
        with self._lock:
            row = self._db.execute("SELECT epoch FROM gc_epochs WHERE vault=?", (vault,)).fetchone()
            if row is not None and row[0] == epoch:
                return False
            self._db.execute("BEGIN")
            if row is not None:
                self._db.execute("DELETE FROM known WHERE vault=?", (vault,))
            self._db.execute("INSERT OR REPLACE INTO gc_epochs VALUES (?, ?)", (vault, epoch))
            self._db.execute("COMMIT")
            return row is not None

    def forget_files(self, vault: str, item: str) -> None:
        """Forget the files of the item's last backup (its point was deleted): the next backup
        reads every file."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM files WHERE vault=? AND item=?", (vault, item))
            self._db.execute("DELETE FROM current WHERE vault=? AND item=?", (vault, item))
            self._db.execute("COMMIT")
            self._current.pop((vault, item), None)

    # the files of each item's last backup
    def last_run(self, vault: str, item: str) -> str:
        """The run of the item's last backup whose files this cache holds: its recovery point's
        id ("" when none)."""
        with self._lock:
            run = self._current.get((vault, item))
            if run is None:
                row = self._db.execute("SELECT run FROM current WHERE vault=? AND item=?",
                                       (vault, item)).fetchone()
                run = self._current[(vault, item)] = row[0] if row else ""
            return run

    def previous_file(self, vault: str, item: str, path: str) -> PreviousFile | None:
        with self._lock:
            row = self._db.execute(_PREVIOUS_FILE, (vault, item, path_key(path))).fetchone()
        return PreviousFile.from_row(*row) if row else None

    def previous_files(self, vault: str, item: str, run: str) -> "PreviousFiles":
        """The item's last backup's files, for the walk of backup `run`, which asks for them in
        path order: what it never asks for is gone from the item, and `run` records so."""
        return PreviousFiles(self, vault, item, run)

    def record_file(self, vault: str, item: str, run: str, path: str, signature: str,
                    line: bytes, ids: list[str], content: str | None = None) -> None:
        """A file backup `run` read; `content`: its content id, if it was taken."""
        self._add_change((run, path_key(path), signature, line, " ".join(ids), content))

    def _record_gone(self, run: str, key: bytes) -> None:
        self._add_change((run, key, None, None, None, None))

    def file_with_content(self, vault: str, item: str, content: str) -> PreviousFile | None:
        """A file of the item's last backup whose bytes had content id `content`, if any: its
        extents are chunks of the item's last point, as an unchanged file's are."""
        with self._lock:
            try:
                # The planner, without statistics, would scan the item's rows by the primary key;
                # "IS NOT NULL" lets it use the partial index (a bound `?` might be NULL).
                row = self._db.execute("SELECT signature, line, ids FROM files INDEXED BY files_by_content "
                                       "WHERE vault=? AND item=? AND content=? AND content IS NOT NULL LIMIT 1",
                                       (vault, item, content)).fetchone()
            except sqlite3.OperationalError:  # a dry run's read-only view of a cache without content ids
                return None
        return PreviousFile.from_row(*row) if row else None

    def _add_change(self, row: tuple) -> None:
        """Buffered: rows are written in batches, one transaction each."""
        self._changes.append(row)
        if len(self._changes) >= FILE_ROWS_PER_TRANSACTION:
            self._write_changes()

    def _write_changes(self) -> None:
        rows, self._changes = self._changes, []
        self._write_rows("INSERT OR REPLACE INTO changes VALUES (?, ?, ?, ?, ?, ?)", rows)

    def _write_rows(self, sql: str, rows: list[tuple]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(sql, rows)
            self._db.execute("COMMIT")

    def make_current(self, vault: str, item: str, run: str, committed: bool = True) -> None:
        """The item's files become what backup `run` saw: its changes replace the rows they name.
        A run whose walk did not ask in order (cache.PreviousFiles) keeps only the files it read.
        The chunks it sent become known if its point `committed` (not known yet: a backup that
        did not wait); otherwise the next look-up asks about them again."""
        self._write_changes()
        key = (vault, item)
        with self._lock:
            self._db.execute("BEGIN")
            if run in self._unordered:
                self._db.execute("DELETE FROM files WHERE vault=? AND item=?", key)
            else:
                self._db.execute("DELETE FROM files WHERE vault=? AND item=? AND path IN "
                                 "(SELECT path FROM changes WHERE run=? AND signature IS NULL)", (*key, run))
            self._db.execute("INSERT OR REPLACE INTO files SELECT ?, ?, path, signature, line, ids, content "
                             "FROM changes WHERE run=? AND signature IS NOT NULL", (*key, run))
            self._db.execute("DELETE FROM changes WHERE run=?", (run,))
            if committed:  # every chunk it sent is verified now
                self._db.execute("INSERT OR IGNORE INTO known SELECT vault, id FROM sent WHERE run=?", (run,))
            self._db.execute("DELETE FROM sent WHERE run=?", (run,))
            self._db.execute("INSERT OR REPLACE INTO current VALUES (?, ?, ?)", (*key, run))
            self._db.execute("COMMIT")
            self._current[key] = run
        self._unordered.discard(run)

    def drop_run(self, vault: str, item: str, run: str) -> None:
        """Forget what backup `run` saw: the item's files stay those of its last backup."""
        self._changes = []
        self._unordered.discard(run)
        with self._lock:
            self._db.execute("DELETE FROM changes WHERE run=?", (run,))
            self._db.execute("DELETE FROM sent WHERE run=?", (run,))

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


def _current_layout(path: Path) -> bool:
    """Whether `path` is a cache in this agent's layout, read without changing it."""
    if not path.exists():
        return False
    db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        columns = [(row[1], row[2]) for row in db.execute("PRAGMA table_info(files)")]
        return (columns in (FILES_COLUMNS, FILES_COLUMNS_WITHOUT_CONTENT)
                and db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION)
    except sqlite3.DatabaseError:
        return False  # not a database: the next backup's Cache fails on it, and says so
    finally:
        db.close()


_PREVIOUS_FILE = "SELECT signature, line, ids FROM files WHERE vault=? AND item=? AND path=?"


class PreviousFiles:
    """The item's file rows, read in primary-key order beside a walk that visits files in that
    same order (skyvault.backup.walk sorts names by their bytes): each look-up moves one cursor on
    instead of making a query, and the rows the cursor passes over, like those left when the
    walk ends (finish), are files that are gone: tombstones of the run. A path asked for out of
    order gets a query (the same answer) and marks the run unordered, as its tombstones are
    then incomplete. Reads through its own connection, while the run writes its changes."""

    def __init__(self, cache: Cache, vault: str, item: str, run: str):
        self._cache, self._run = cache, run
        self._db = cache.reader()
        self._key = (vault, item)
        self._rows = self._db.execute(
            "SELECT path, signature, line, ids FROM files WHERE vault=? AND item=? ORDER BY path", self._key)
        self._batch: list[tuple] = []
        self._next = 0
        self._last: bytes | None = None

    def get(self, path: str) -> PreviousFile | None:
        key = path_key(path)
        if self._last is not None and key <= self._last:
            self._cache._unordered.add(self._run)
            row = self._db.execute(_PREVIOUS_FILE, (*self._key, key)).fetchone()
            return PreviousFile.from_row(*row) if row else None
        self._last = key
        row = self._advance_to(key)
        if row is None or row[0] != key:
            return None
        self._next += 1
        return PreviousFile.from_row(*row[1:])

    def _advance_to(self, key: bytes | None) -> tuple | None:
        """The first row at or after `key` (None: the end), each row before it a tombstone."""
        while True:
            if self._next == len(self._batch):
                self._batch, self._next = self._rows.fetchmany(SCAN_ROWS), 0
                if not self._batch:
                    return None
            row = self._batch[self._next]
            if key is not None and row[0] >= key:
                return row
            self._cache._record_gone(self._run, row[0])
            self._next += 1

    def finish(self) -> None:
        """The walk is over: the rows it never reached are gone too."""
        self._advance_to(None)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "PreviousFiles":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
