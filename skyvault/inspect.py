"""Looking inside recovery points without restoring them (`skyvault ls`, `diff`, `find` and
`stats`): a point's entries, the changes between two points, the entries whose paths match a
pattern, and the figures of one point or of many.

Words:
- Open point: a committed recovery point whose manifest was read the way a restore reads it
  (skyvault.restore: a restore job's read-only SAS, the manifest key, the walk-order check)
  into a temporary spool file, removed when the point is closed. Nothing else is written on
  this machine; at the service, each opened point is one restore job (a job record, and a
  zero-priced line on the bill).
- Change: how a path differs from one point to a later one. `added`, `removed`, `modified`
  (its content: type, size, bytes, symlink or hard-link target, device numbers) or `metadata`
  (mode, owner, mtime or extended attributes only, the bytes the same).
"""
from __future__ import annotations

import fnmatch
import hashlib
import re
import tempfile
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Iterator

from shared import formats
from shared.domain import PointState, chunk_blob_name
from shared.messages import ManifestEntry, ManifestRoot, PointView
from skyvault.cache import path_key
from skyvault.restore import RegionReader, Restore, _SpooledManifest
from skyvault.vaultclient import AgentError, AgentVault

ADDED, REMOVED, MODIFIED, METADATA = "added", "removed", "modified", "metadata"
MARKERS = {ADDED: "+", REMOVED: "-", MODIFIED: "M", METADATA: "U"}
# Chunks a content comparison keeps decrypted: files are compared in walk order, and the
# chunks of neighbouring files are mostly the same ones.
CACHED_CHUNKS = 4
SIZE_WORKERS = 8


def committed_point(vault: AgentVault, point_id: str) -> PointView:
    """The point as the service lists it; a clear error, before any restore job is made, for
    an id that is malformed, unknown, not committed or deleted."""
    if not formats.POINT_ID.match(point_id):
        raise AgentError(f"{point_id!r} is not a recovery point id (see `skyvault points`)")
    point = next((p for p in vault.points() if p.id == point_id), None)
    if point is None:
        raise AgentError(f"this vault has no recovery point {point_id} (see `skyvault points`)")
    if point.deleted_at is not None:
        raise AgentError(f"recovery point {point_id} was deleted at {point.deleted_at} ({point.deleted_reason})")
    if point.state != PointState.COMMITTED:
        raise AgentError(f"recovery point {point_id} is {point.state}, not committed")
    return point


def committed_points(vault: AgentVault, item: str | None = None, since: datetime | None = None,
                     until: datetime | None = None) -> list[PointView]:
    """The vault's committed points (of `item`, created from `since` to `until`), newest first."""
    points = [p for p in vault.points(item) if p.state == PointState.COMMITTED and p.deleted_at is None
              and (since is None or _created(p) >= since) and (until is None or _created(p) <= until)]
    return sorted(points, key=_created, reverse=True)


def _created(point: PointView) -> datetime:
    created = datetime.fromisoformat(point.created_at)
    return created if created.tzinfo else created.replace(tzinfo=timezone.utc)


RELATIVE_TIME = re.compile(r"(\d+)([mhdw])\Z")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, now: datetime) -> datetime:
    """`--since`/`--until`: an ISO 8601 date or time (local time unless it names its offset), or
    an age such as 30m, 12h, 7d or 2w before `now`."""
    if m := RELATIVE_TIME.match(text):
        return now - timedelta(**{UNITS[m[2]]: int(m[1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise AgentError(f"{text!r} is not a time: give an ISO 8601 date or time (2026-12-01, "
                         f"2026-12-01T08:00) or an age (30m, 12h, 7d, 2w)") from None
    return when if when.tzinfo else when.astimezone()


class OpenPoint:
    """A point's manifest in its spool: its root, its entries (as often as wanted, in walk order),
    the first paths its hard links link to, and its chunks' plaintexts for content comparisons."""

    def __init__(self, restore: Restore, reader: RegionReader, root: ManifestRoot, manifest: _SpooledManifest,
                 link_sources: set[str]):
        self.restore, self.reader, self.root = restore, reader, root
        self.point_id = root.point_id
        self._manifest = manifest
        self.link_sources = link_sources
        self._chunks: OrderedDict[str, bytes] = OrderedDict()
        self.chunks_read = 0

    def entries(self) -> Iterator[ManifestEntry]:
        return self._manifest.entries(lambda _: True)

    def plaintext(self, cid: str) -> bytes:
        """A chunk, downloaded and authenticated as a restore does; the last few are kept."""
        if cid in self._chunks:
            self._chunks.move_to_end(cid)
            return self._chunks[cid]
        data = self.restore.chunk_plaintext(self.reader, cid)
        self.chunks_read += 1
        self._chunks[cid] = data
        if len(self._chunks) > CACHED_CHUNKS:
            self._chunks.popitem(last=False)
        return data

    def content_digest(self, entry: ManifestEntry) -> bytes:
        digest = hashlib.blake2b()
        for cid, offset, length in entry.extents:
            digest.update(memoryview(self.plaintext(cid))[offset:offset + length])
        return digest.digest()


class _CountingSpool:
    """The spool file, telling `on_bytes` what is written to it."""

    def __init__(self, file, on_bytes: Callable[[int], None]):
        self._file, self._on_bytes = file, on_bytes

    def write(self, data: bytes) -> int:
        self._on_bytes(len(data))
        return self._file.write(data)


@contextmanager
def open_point(restore: Restore, point_id: str, on_bytes: Callable[[int], None] = lambda _: None,
               source: str = "auto") -> Iterator[OpenPoint]:
    """Open `point_id` through a restore job; its spool is removed when the block ends. A
    manifest out of walk order is refused (RestoreFailed) before any entry is given."""
    reader, root = restore.open_point(point_id, source, purpose="inspect")
    with tempfile.NamedTemporaryFile(prefix="skyvault-manifest-") as spool:
        restore.spool_manifest(reader, root, _CountingSpool(spool, on_bytes))
        spool.flush()
        with _SpooledManifest(spool.name, point_id) as manifest:
            link_sources = manifest.check(None)
            yield OpenPoint(restore, reader, root, manifest, link_sources)


def point_entries(restore: Restore, point_id: str) -> Iterator[ManifestEntry]:
    """The entries of a point, in walk order; the spool is removed once they are all given (or
    the iterator is closed)."""
    with open_point(restore, point_id) as point:
        yield from point.entries()


def with_link_sources(point: OpenPoint, entries: Iterable[ManifestEntry]
                      ) -> Iterator[tuple[ManifestEntry, ManifestEntry]]:
    """Each entry with the one that holds its data and owner: itself, or for a hard link its
    first path (which comes before it). Holds the entries hard links link to."""
    sources: dict[str, ManifestEntry] = {}
    for entry in entries:
        if entry.path in point.link_sources:
            sources[entry.path] = entry
        yield entry, sources.get(entry.target, entry) if entry.type == "hardlink" else entry


def manifest_path(root: ManifestRoot, path: str) -> str:
    """PATH as the manifest names it: relative, starting with a backed-up path's base name; an
    absolute path under one of the point's sources is made so."""
    if path.startswith("/"):
        for source in root.sources:
            base = source.rstrip("/").rsplit("/", 1)[-1] or "root"
            prefix = source.rstrip("/")
            if path == source or path.startswith(prefix + "/"):
                return (base + path[len(prefix):]).rstrip("/")
    return path.strip("/")


def within(path: str, recursive: bool) -> Callable[[str], bool]:
    """Whether a manifest path is `path` or inside it: one of its direct entries, or any below it
    with `recursive`."""
    depth = path.count("/") + 1

    def inside(candidate: str) -> bool:
        return candidate == path or (candidate.startswith(path + "/")
                                     and (recursive or candidate.count("/") == depth))
    return inside


# --- diff ---

@dataclass(frozen=True)
class Change:
    kind: str  # ADDED, REMOVED, MODIFIED or METADATA
    path: str
    old: ManifestEntry | None
    new: ManifestEntry | None
    fields: tuple[str, ...] = ()  # what differs: type, size, content, target, device, mode, owner, mtime, xattrs

    @property
    def marker(self) -> str:
        return MARKERS[self.kind]

    @property
    def entry(self) -> ManifestEntry:
        return self.new or self.old


def walk_key(entry: ManifestEntry) -> bytes:
    """The key the walk orders entries by: a directory sorts as its path and "/"."""
    return path_key(entry.path) + (b"/" if entry.type == "dir" else b"")


def diff(old: Iterable[ManifestEntry], new: Iterable[ManifestEntry],
         same_bytes: Callable[[ManifestEntry, ManifestEntry], bool] | None = None) -> Iterator[Change]:
    """The changes from `old` to `new`, both in walk order, in one merged pass (memory: two
    entries). A path that is a directory in one and not in the other sorts apart (walk_key), so
    it is a removal and an addition. Files of the same size whose extents differ are compared
    with `same_bytes` when it is given (chunks span file boundaries, so a file read again, a
    chmod changes its ctime, gets other extents for the same bytes); without it they are
    modified."""
    olds, news = iter(old), iter(new)
    a, b = next(olds, None), next(news, None)
    while a is not None or b is not None:
        ka = walk_key(a) if a is not None else None
        kb = walk_key(b) if b is not None else None
        if kb is None or (ka is not None and ka < kb):
            yield Change(REMOVED, a.path, a, None)
            a = next(olds, None)
        elif ka is None or kb < ka:
            yield Change(ADDED, b.path, None, b)
            b = next(news, None)
        else:
            change = compare(a, b, same_bytes)
            if change is not None:
                yield change
            a, b = next(olds, None), next(news, None)


def compare(a: ManifestEntry, b: ManifestEntry,
            same_bytes: Callable[[ManifestEntry, ManifestEntry], bool] | None = None) -> Change | None:
    """How the same path differs between two points, or None."""
    content: list[str] = []
    if a.type != b.type:
        content.append("type")
    elif a.type == "file":
        if a.size != b.size:
            content.append("size")
        elif a.extents != b.extents and (same_bytes is None or not same_bytes(a, b)):
            content.append("content")
    elif a.target != b.target:
        content.append("target")
    elif (a.major, a.minor) != (b.major, b.minor):
        content.append("device")
    metadata = [name for name, differs in (
        ("mode", a.mode != b.mode), ("owner", (a.uid, a.gid, a.user, a.group) != (b.uid, b.gid, b.user, b.group)),
        ("mtime", a.mtime != b.mtime), ("xattrs", a.xattrs != b.xattrs)) if differs]
    if content:
        return Change(MODIFIED, b.path, a, b, tuple(content + metadata))
    if metadata:
        return Change(METADATA, b.path, a, b, tuple(metadata))
    return None


def byte_comparison(old: OpenPoint, new: OpenPoint) -> Callable[[ManifestEntry, ManifestEntry], bool]:
    """`same_bytes` of diff: the two files' bytes, read from their points' chunks, hashed."""
    def same_bytes(a: ManifestEntry, b: ManifestEntry) -> bool:
        return old.content_digest(a) == new.content_digest(b)
    return same_bytes


@dataclass
class DiffSummary:
    """Counts of each kind of change, and the file bytes they add and remove: an added file's
    size is added, a removed one's removed, and a modified file's new size added and its old
    one removed (restic counts a changed file's data so)."""

    added: int = 0
    removed: int = 0
    modified: int = 0
    metadata: int = 0
    added_bytes: int = 0
    removed_bytes: int = 0

    def count(self, change: Change) -> None:
        setattr(self, change.kind, getattr(self, change.kind) + 1)
        if change.kind in (ADDED, MODIFIED) and change.new.type == "file":
            self.added_bytes += change.new.size
        if change.kind in (REMOVED, MODIFIED) and change.old.type == "file":
            self.removed_bytes += change.old.size


# --- find ---

def matches(pattern: str, path: str) -> bool:
    """restic find's rule: a pattern of n `/`-separated globs matches a path whose last n
    components each match (so `*.txt` matches every basename, `docs/*.md` a directory and
    file); one that starts with `/` matches from the path's first component (the backed-up
    path's base name) to its last. `*` and `?` do not cross a `/`; matching is case-sensitive."""
    anchored = pattern.startswith("/")
    globs = pattern.strip("/").split("/")
    parts = path.split("/")
    if len(globs) > len(parts) or (anchored and len(globs) != len(parts)):
        return False
    return all(fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts[-len(globs):], globs))


# --- stats ---

@dataclass
class Figures:
    """What points hold: entries by type, file bytes (logical: every file's size, a hard link's
    data counted once, on its first path) and the distinct chunks they reference (data chunks
    of the extents and the manifests' own chunks)."""

    points: int = 0
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    specials: int = 0
    bytes: int = 0
    chunks: set[bytes] = field(default_factory=set)  # the distinct chunk ids, as 32 bytes each

    def add(self, point: OpenPoint) -> None:
        self.points += 1
        for cid in point.root.manifest_chunks:
            self.chunks.add(bytes.fromhex(cid))
        for entry in point.entries():
            kind = entry.type
            if kind == "file":
                self.files += 1
                self.bytes += entry.size
                for cid, _offset, _length in entry.extents:
                    self.chunks.add(bytes.fromhex(cid))
            elif kind == "dir":
                self.dirs += 1
            elif kind == "symlink":
                self.symlinks += 1
            elif kind == "hardlink":
                self.hardlinks += 1
            else:
                self.specials += 1


def stored_bytes(reader: RegionReader, chunks: Iterable[bytes]) -> int:
    """The chunks' blob sizes (their envelopes, as stored), from each blob's properties through
    the restore job's read-only SAS: nothing is downloaded, one request per chunk."""
    with ThreadPoolExecutor(SIZE_WORKERS, thread_name_prefix="size") as pool:
        return sum(pool.map(lambda cid: reader.size(chunk_blob_name(cid.hex())), chunks))


def dedup_ratio(logical: int, stored: int) -> float | None:
    """Logical bytes per stored byte (deduplication and compression together, less the
    envelopes' 34 bytes each); None when nothing is stored."""
    return round(logical / stored, 2) if stored else None
