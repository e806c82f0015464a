"""Backup: walk → concatenate the files to read → FastCDC → keyed id → skip known →
zstd + AES-256-GCM → create-only upload → signed chunk messages → encrypted
manifest and reference list → commit message.

Files the backup must read are concatenated in walk order into one stream, so
chunks span file boundaries and ten thousand small files make a handful of
blobs; the manifest records each file's extents (chunk id, offset, length).
Files unchanged since the item's last backup (same size, mtime, ctime, inode)
are not read: their extents come from the local cache.

Memory stays bounded: the walk is streamed, the manifest is written to a
temporary file, references are deduplicated in SQLite, and at most
MAX_INFLIGHT_BATCHES batches of chunks are held for upload at once.
"""
from __future__ import annotations

import base64
import hashlib
import json
import mmap
import os
import secrets
import stat
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from shared import crypto, formats
from shared.domain import chunk_blob_name
from shared.ports import BlobAlreadyExists
from skyvault.cache import Cache, PreviousFile, path_key
from skyvault.chunker import CDC_PARAMS, new_chunker
from skyvault.vaultclient import AgentError, AgentVault

# A batch of chunks is looked up in one request and uploaded by one worker; the bounds
# keep the chunks held in memory to MAX_INFLIGHT_BATCHES * BATCH_BYTES (plus one chunk).
LOOKUP_BATCH = 16
BATCH_BYTES = 8 * 1024 * 1024
UPLOAD_WORKERS = 4
MAX_INFLIGHT_BATCHES = UPLOAD_WORKERS + 1
ARENA_KEEP_BYTES = BATCH_BYTES + 2 * 1024 * 1024  # a batch, and its last chunk unless it is a large one
# Chunks declared per ingest message: small enough that the Functions host verifies several
# messages at once and the last one of a backup is done soon after its upload.
INGEST_BATCH = 32
# Batches the commit request may declare again: with the last partial one, at most
# formats.CHUNKS_PER_MESSAGE chunks, which the service verifies within the request.
INLINE_BATCHES = formats.CHUNKS_PER_MESSAGE // INGEST_BATCH - 1
COMMIT_WAIT_S = 300.0
INGEST_WAIT_S = 60.0


class _Arena:
    """The buffer a batch's chunks are copied into, one after another: anonymous memory, whose
    pages the kernel provides only once written. A batch holds less than BATCH_BYTES before its
    last chunk, so one more chunk always fits. Batches' buffers are reused (at most
    MAX_INFLIGHT_BATCHES + 1 exist): fresh memory for every chunk cost the kernel faulting in
    and zeroing its pages, a quarter of the agent's CPU time, while glibc's heap, reused
    instead, grew with the data. Pages beyond ARENA_KEEP_BYTES, which only a batch ending in
    a large chunk writes, go back to the system when the buffer is emptied."""

    __slots__ = ("_memory", "_view", "used")

    def __init__(self):
        self._memory = mmap.mmap(-1, BATCH_BYTES + CDC_PARAMS["max_size"])
        self._view = memoryview(self._memory)
        self.used = 0

    def add(self, data: memoryview) -> memoryview:
        start = self.used
        self.used += len(data)
        self._view[start:self.used] = data
        return self._view[start:self.used]

    def empty(self) -> None:
        if self.used > ARENA_KEEP_BYTES:
            self._memory.madvise(mmap.MADV_DONTNEED, ARENA_KEEP_BYTES, len(self._memory) - ARENA_KEEP_BYTES)
        self.used = 0


def new_point_id(now: datetime) -> str:
    return f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


@dataclass
class BackupReport:
    point_id: str
    item: str
    state: str = "sent"
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes_total: int = 0
    files_read: int = 0
    bytes_read: int = 0
    files_unchanged: int = 0
    chunks_referenced: int = 0
    chunks_uploaded: int = 0
    bytes_uploaded: int = 0
    chunks_deduplicated: int = 0
    messages: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    reason: str | None = None

    def as_stats(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("files", "dirs", "symlinks", "bytes_total", "files_read",
                                              "bytes_read", "files_unchanged", "chunks_uploaded",
                                              "bytes_uploaded")}


class _Entry:
    """A manifest entry waiting for its place in the manifest (files: for their extents)."""

    __slots__ = ("doc", "signature", "start", "end", "complete", "failed", "path", "previous")

    def __init__(self, doc: dict, path: str = "", signature: str = "", complete: bool = True):
        self.doc, self.path, self.signature = doc, path, signature
        self.start = self.end = None
        self.complete, self.failed = complete, False
        self.previous: PreviousFile | None = None  # an unchanged file's entry, from the cache


class _ConcatReader:
    """A readinto() stream over the files that must be read, pulled lazily from the walk."""

    def __init__(self, to_read: Iterator[_Entry], backup: "Backup"):
        self._to_read = to_read
        self._backup = backup
        self._current: _Entry | None = None
        self._file = None
        self.offset = 0

    def readinto(self, buf: memoryview) -> int:
        while True:
            if self._file is None:
                entry = next(self._to_read, None)
                if entry is None:
                    return 0
                try:
                    self._file = open(entry.path, "rb", buffering=0)
                except OSError as e:
                    self._backup.warn(f"cannot read {entry.path}: {e.strerror or e}")
                    entry.failed = entry.complete = True
                    continue
                self._current = entry
                self._backup.file_started(entry, self.offset)
            try:
                n = self._file.readinto(buf)
            except OSError as e:
                self._backup.warn(f"error reading {self._current.path}: {e.strerror or e}; file left out")
                self._current.failed = True
                n = 0
            if n:
                self.offset += n
                return n
            self._file.close()
            self._file = None
            self._backup.file_read(self._current, self.offset)


def _sort_key(name: str, is_dir: bool) -> bytes:
    """Siblings in the order that makes the walk's paths come out in byte order, the order of
    the local cache's files table (cache.PreviousFiles): a directory sorts as its name plus "/",
    where its entries' paths begin, so "a.txt" < "a/b" < "a0"."""
    key = path_key(name)
    return key + b"/" if is_dir else key


def _walk_key(child: os.DirEntry) -> tuple[bytes, str]:
    try:
        is_dir = child.is_dir(follow_symlinks=False)
    except OSError:
        is_dir = False  # Backup._entry reports it
    return _sort_key(child.name, is_dir), child.name


def _root_key(root: Path) -> bytes:
    return _sort_key(root.name or "root", root.is_dir() and not root.is_symlink())


class Backup:
    def __init__(self, vault: AgentVault, cache: Cache, item: str,
                 progress: Callable[[str], None] = lambda _: None):
        if vault.keys is None:
            raise AgentError("backup needs the vault keys: register and give the passphrase")
        if not formats.NAME_ID.match(item):
            raise AgentError(f"item name {item!r} must be 1-63 letters, digits, '.', '_' or '-'")
        self.vault, self.keys, self.cache, self.item = vault, vault.keys, cache, item
        self.progress = progress
        self.container = vault.container
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(UPLOAD_WORKERS, thread_name_prefix="upload")
        self._inflight: deque[tuple[list[str], _Arena, Future]] = deque()
        self._inflight_ids: set[str] = set()
        self._arena, self._free_arenas = _Arena(), []
        self._staged: list[tuple[str, memoryview]] = []  # in self._arena
        self._batch: list[dict] = []
        # The last chunk of each ingest message sent: ingest handles a message's chunks in order,
        # so once that one is indexed the whole message is (one id per INGEST_BATCH chunks).
        self._message_tails: list[str] = []
        # The declarations of the last messages sent: those the service has not handled by the
        # commit are declared again in the commit request, which verifies them at once.
        self._recent_batches: deque[list[dict]] = deque(maxlen=INLINE_BATCHES)
        self._order: deque[_Entry] = deque()
        self._open_files: deque[_Entry] = deque()
        self._manifest = None
        self.report: BackupReport | None = None

    @property
    def run_id(self) -> str:
        """This backup's run in the local cache: its recovery point's id."""
        return self.report.point_id

    # -- reporting
    def warn(self, text: str) -> None:
        self.report.warnings.append(text)
        self.progress(f"warning: {text}")

    # -- the walk
    def _walk(self, roots: list[Path]) -> Iterator[_Entry]:
        """Depth first, a directory before its entries; with a stack of the paths still to visit
        rather than nested generators, whose every yield would pass up through each level."""
        for root in sorted(roots, key=_root_key):  # so the roots' paths are in byte order too
            pending = [(str(root), root.name or "root")]
            while pending:
                path, rel = pending.pop()
                entry = self._entry(path, rel)
                if entry is None:
                    continue
                yield entry
                if entry.doc["type"] == "dir":
                    try:
                        with os.scandir(path) as listing:
                            children = sorted(_walk_key(child) for child in listing)
                    except OSError as e:
                        self.warn(f"cannot list {path}: {e.strerror or e}")
                        continue
                    pending.extend((os.path.join(path, name), f"{rel}/{name}") for _, name in reversed(children))

    def _entry(self, path: str, rel: str) -> _Entry | None:
        try:
            st = os.lstat(path)
        except OSError as e:
            self.warn(f"{path} vanished or cannot be read: {e.strerror or e}")
            return None
        base = {"path": rel, "mode": stat.S_IMODE(st.st_mode), "mtime": st.st_mtime_ns}
        if stat.S_ISDIR(st.st_mode):
            self.report.dirs += 1
            return _Entry({**base, "type": "dir"})
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(path)
            except OSError as e:
                self.warn(f"{path} vanished or cannot be read: {e.strerror or e}")
                return None
            self.report.symlinks += 1
            return _Entry({**base, "type": "symlink", "target": target})
        if stat.S_ISREG(st.st_mode):
            signature = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
            return _Entry({**base, "type": "file", "size": st.st_size}, path, signature, complete=False)
        self.warn(f"{path}: skipped (not a regular file, directory or symlink)")
        return None

    def _files_to_read(self, roots: list[Path]) -> Iterator[_Entry]:
        """Every entry goes into the manifest order; only changed files go on to be read."""
        with self.cache.previous_files(self.vault.vault_id, self.item, self.run_id) as last_backup:
            for entry in self._walk(roots):
                self._order.append(entry)
                if not entry.complete:
                    previous = last_backup.get(entry.doc["path"])
                    if previous and previous.signature == entry.signature:
                        entry.previous = previous
                        entry.complete = True
                        self.report.files_unchanged += 1
                        self._reference(previous.ids)
                    else:
                        yield entry
                self._flush_manifest()
            last_backup.finish()

    def file_started(self, entry: _Entry, offset: int) -> None:
        entry.start = offset
        entry.doc["extents"] = []
        self._open_files.append(entry)

    def file_read(self, entry: _Entry, end: int) -> None:
        entry.end = end
        if entry.failed:
            return
        size = end - entry.start
        if size != entry.doc["size"]:
            self.warn(f"{entry.path} changed size while being read ({entry.doc['size']} → {size} bytes)")
            entry.doc["size"] = size
        self.report.files_read += 1
        self.report.bytes_read += size

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

    def _flush_manifest(self) -> None:
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
                    self.cache.record_file(self.vault.vault_id, self.item, self.run_id, doc["path"],
                                           entry.signature, line, ids)
            self._manifest.write(line)

    # -- chunks
    def _reference(self, ids) -> None:
        self.cache.add_refs(self.run_id, ids)

    def _chunk_stream(self, chunks, on_chunk: Callable[[str, int, int], None]) -> None:
        for chunk in chunks:
            # The chunker reuses its buffer: the chunk is hashed there, then copied into the batch's.
            cid = crypto.chunk_id(self.keys, chunk.data)
            on_chunk(cid, chunk.offset, chunk.length)
            self._reference([cid])
            self._staged.append((cid, self._arena.add(chunk.data)))
            if len(self._staged) >= LOOKUP_BATCH or self._arena.used >= BATCH_BYTES:
                self._dispatch()

    def _dispatch(self) -> None:
        """Hand the staged chunks that the local cache does not know to a worker, which asks the
        service about them and uploads the rest, while this thread reads and chunks on."""
        staged, arena, self._staged = self._staged, self._arena, []
        fresh: dict[str, memoryview] = {}
        for cid, data in staged:
            if cid not in self._inflight_ids:
                fresh.setdefault(cid, data)
        unknown = set(fresh) - self.cache.known(self.vault.vault_id, fresh)
        self.report.chunks_deduplicated += len(staged) - len(unknown)
        if unknown:
            while len(self._inflight) >= MAX_INFLIGHT_BATCHES:
                self._collect_oldest()
            self._inflight_ids.update(unknown)
            batch = {cid: fresh[cid] for cid in unknown}
            self._inflight.append((list(batch), arena, self._pool.submit(self._store_batch, batch)))
        else:
            self._free(arena)
        self._arena = self._free_arenas.pop() if self._free_arenas else _Arena()

    def _free(self, arena: _Arena) -> None:
        arena.empty()
        self._free_arenas.append(arena)

    def _store_batch(self, batch: dict[str, memoryview]) -> tuple[set[str], list[dict]]:
        """In a worker: the service's dedup look-up, then compress, encrypt and upload what it lacks.
        Returns the ids the service already had and the declarations of the uploaded chunks."""
        verified = set(self.vault.api("POST", "chunks/lookup", {"ids": sorted(batch)})["verified"])
        declared = [self._upload(cid, data) for cid, data in batch.items() if cid not in verified]
        return verified, declared

    def _upload(self, cid: str, data: memoryview) -> dict | None:
        sealer = getattr(self._local, "sealer", None)
        if sealer is None:
            sealer = self._local.sealer = crypto.ChunkSealer(self.keys, self.vault.vault_id)
        envelope = sealer.seal(cid, data)  # this thread's buffer: used up before its next chunk
        try:
            self.container.put(chunk_blob_name(cid), envelope)
        except (BlobAlreadyExists, PermissionError):
            # Another agent of this vault uploaded it first and declares it itself. With a
            # create-only SAS Azure answers 403, not 409, for an existing blob; a SAS that is
            # really invalid fails the manifest's create-only put below, so nothing is lost silently.
            return None
        return {"id": cid, "size": len(envelope),
                "md5": base64.b64encode(hashlib.md5(envelope).digest()).decode()}

    def _collect_oldest(self) -> None:
        ids, arena, future = self._inflight.popleft()
        verified, declared = future.result()
        self._free(arena)
        self._inflight_ids.difference_update(ids)
        self.cache.add_known(self.vault.vault_id, ids)
        self.report.chunks_deduplicated += len(ids) - sum(1 for d in declared if d)
        for entry in declared:
            if entry is None:
                continue
            self.report.chunks_uploaded += 1
            self.report.bytes_uploaded += entry["size"]
            self._batch.append(entry)
            if len(self._batch) >= INGEST_BATCH:
                self._send_batch()

    def _drain(self) -> None:
        """Finish the uploads under way. The chunks of a batch not yet full are declared later: in
        the commit request, or in a last ingest message when the backup does not wait."""
        self._dispatch()
        while self._inflight:
            self._collect_oldest()

    def _send_batch(self) -> None:
        if self._batch:
            self.vault.send("ingest", {"type": "chunks", "chunks": self._batch})
            self.report.messages += 1
            self._message_tails.append(self._batch[-1]["id"])
            self._recent_batches.append(self._batch)
            self._batch = []

    def _await_ingest(self) -> list[dict]:
        """Wait (briefly) until the service has handled every ingest message this backup sent
        but the last few, so the commit finds every chunk verified at once instead of
        re-checking later. Returns the declarations of those last messages it has not handled
        yet, for the commit request to carry."""
        recent = {batch[-1]["id"]: batch for batch in self._recent_batches}
        waiting = [cid for cid in dict.fromkeys(self._message_tails) if cid not in recent]

        def handled() -> bool:
            while waiting:
                batch = waiting[:formats.LOOKUP_MAX_IDS]
                pending = [cid for cid in batch if cid not in self._handled(batch)]
                waiting[:len(batch)] = pending
                if pending:
                    return False
            return True

        try:
            self.vault.wait_for("the last chunks to be verified", handled, INGEST_WAIT_S)
        except AgentError:
            pass  # the commit waits for them itself
        done = self._handled(list(recent)) if recent else set()
        return [entry for tail, batch in recent.items() if tail not in done for entry in batch]

    def _handled(self, ids: list[str]) -> set[str]:
        """Those of `ids` the service has indexed (verified or rejected)."""
        answer = self.vault.api("POST", "chunks/lookup", {"ids": ids})
        return set(answer["verified"]) | set(answer.get("rejected", ()))

    # -- the whole backup
    def run(self, paths: list[str], wait: bool = True) -> BackupReport:
        started = time.monotonic()
        now = self.vault.clock()
        self.report = BackupReport(point_id=new_point_id(now), item=self.item)
        # The point the item's last backup made (if this cache saw it): the service checks only
        # the chunks this point adds to it.
        self._parent = self.cache.last_run(self.vault.vault_id, self.item)
        roots = [Path(os.path.abspath(p)) for p in paths]
        for root in roots:
            if not os.path.lexists(root):
                raise AgentError(f"{root} does not exist")
        names = [r.name or "root" for r in roots]
        if len(set(names)) != len(names):
            raise AgentError(f"two paths to back up have the same name: {', '.join(names)}")
        try:
            with tempfile.TemporaryFile(prefix="skyvault-manifest-") as manifest:
                self._manifest = manifest
                reader = _ConcatReader(self._files_to_read(roots), self)
                self._chunk_stream(new_chunker().cut_stream(reader), self._after_data_chunk)
                # Empty files after the last chunk (or in a stream with no chunk) end here.
                while self._open_files:
                    self._open_files.popleft().complete = True
                self._drain()
                self._flush_manifest()
                if self._order:
                    raise AgentError("internal error: manifest entries left without extents")
                manifest.flush()
                manifest.seek(0)
                manifest_ids: list[str] = []
                self._chunk_stream(new_chunker().cut_stream(manifest),
                                   lambda cid, _o, _l: manifest_ids.append(cid))
                self._drain()
            self._commit(now, roots, manifest_ids, wait)
        except BaseException:
            self.cache.drop_run(self.vault.vault_id, self.item, self.run_id)
            raise
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self.cache.drop_refs(self.run_id)
        # The file cache moves to this backup only once its point stands: after a failed point
        # the next backup reads the files again instead of reusing its chunks.
        try:
            if wait:
                self._wait_for_commit()
        finally:
            if wait and self.report.state != "committed":
                self.cache.drop_run(self.vault.vault_id, self.item, self.run_id)
            else:
                self.cache.make_current(self.vault.vault_id, self.item, self.run_id)
        self.report.seconds = time.monotonic() - started
        return self.report

    def _after_data_chunk(self, cid: str, offset: int, length: int) -> None:
        self._assign_extents(cid, offset, length)
        self._flush_manifest()

    def _commit(self, now: datetime, roots: list[Path], manifest_ids: list[str], wait: bool) -> None:
        point_id = self.report.point_id
        self.report.chunks_referenced = self.cache.count_refs(self.run_id)
        root = {"version": 1, "vaultId": self.vault.vault_id, "pointId": point_id, "item": self.item,
                "createdAt": now.isoformat(), "sources": [str(r) for r in roots],
                "manifestChunks": manifest_ids, "stats": self.report.as_stats()}
        name = formats.manifest_blob(point_id)
        framed = crypto.frame(json.dumps(root).encode())
        refs = self._pool.submit(self.container.put, formats.refs_blob(point_id),
                                 formats.encode_refs(self.cache.refs(self.run_id)))
        self.container.put(name, crypto.seal(self.keys.manifest_key, self.vault.vault_id, name, framed))
        refs.result()
        message = {"type": "commit", "pointId": point_id, "item": self.item,
                   "createdAt": now.isoformat(), "chunkCount": self.report.chunks_referenced,
                   "manifestChunks": len(manifest_ids), "stats": self.report.as_stats()}
        if formats.POINT_ID.match(self._parent):  # not what older agents' caches hold
            message["parentPointId"] = self._parent
        if not wait:
            self._send_batch()
            self.vault.send("commit", message)
            self.report.messages += 1
            return
        # Over HTTP, with the last chunks declared in the same request, the service verifies them
        # and commits at once, without the latency of queue polls; a point still waiting for
        # chunks is re-checked from the commit queue.
        declare = {entry["id"]: entry for entry in [*self._await_ingest(), *self._batch]}
        self._batch = []
        request = {"commit": json.loads(self.vault.signed_message(message))}
        if declare:
            request["chunks"] = json.loads(self.vault.signed_message({"type": "chunks",
                                                                      "chunks": list(declare.values())}))
        self._settle(self.vault.api("POST", "commits", request))

    def _settle(self, point: dict) -> None:
        if point["state"] != "pending":
            self.report.state, self.report.reason = point["state"], point.get("reason")

    def _wait_for_commit(self) -> None:
        if self.report.state != "sent":
            return

        def state() -> dict | None:
            for point in self.vault.api("GET", "points", params={"item": self.item})["points"]:
                if point["id"] == self.report.point_id and point["state"] != "pending":
                    return point
            return None

        self._settle(self.vault.wait_for(f"recovery point {self.report.point_id} to be committed",
                                         state, COMMIT_WAIT_S))
