"""The uploader: chunks of a stream → keyed id → skip known → zstd + AES-256-GCM →
create-only upload → signed `chunks` messages on the ingest queue.

Words:
- Staged chunk: a chunk cut and hashed, copied into the arena being filled, not yet
  handed to a worker.
- Batch: the staged chunks handed to one worker at once, at most LOOKUP_BATCH chunks
  or BATCH_BYTES: looked up in one request, then sealed and uploaded one by one.
- Arena: the reused buffer a batch's chunks are copied into (_Arena).
- Declaration: `{id, size, md5}` of an uploaded chunk, for an ingest message; INGEST_BATCH
  of them make a message. `{id}` alone is an adoption: the create-only put was refused, so the
  blob exists (this run's own put whose answer was lost, a crashed run's, another machine's)
  and the service takes its size and MD5 from it. A refusal is never taken to mean that
  someone else declares it (docs/design.md, "Chunk lifecycle").
- Replacement: a new copy of a chunk the service holds rejected or damaged, uploaded under a
  name of its own beside the chunk's blob (`blob` in its declaration), which ingest promotes.

Memory stays bounded: at most MAX_INFLIGHT_BATCHES batches are held for upload at once.
Every chunk id of the stream goes into the running backup's references (in the cache). Chunks
the service says are verified become known to the cache at once, those this run sent once its
point commits.
"""
from __future__ import annotations

import base64
import hashlib
import mmap
import secrets
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Iterable

from shared import crypto, formats
from shared.domain import chunk_blob_name, replacement_blob_name
from shared.ports import BlobAlreadyExists, BlobContainer
from skyvault.cache import Cache
from skyvault.chunker import CDC_PARAMS
from skyvault.vaultclient import AgentVault

if TYPE_CHECKING:
    from skyvault.backup.report import BackupReport

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
# Full batches held back from the ingest queue: the commit request declares the last ones with
# the last partial batch (at most formats.CHUNKS_PER_MESSAGE chunks, which the service verifies
# within the request), so that no chunk is declared twice, in a message and in the commit.
HELD_BATCHES = formats.CHUNKS_PER_MESSAGE // INGEST_BATCH - 1


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


class Uploader:
    def __init__(self, vault: AgentVault, container: BlobContainer, cache: Cache, run_id: str,
                 report: BackupReport):
        self.vault, self.keys, self.container, self.cache = vault, vault.keys, container, cache
        self.run_id, self.report = run_id, report
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(UPLOAD_WORKERS, thread_name_prefix="upload")
        self._inflight: deque[tuple[list[str], _Arena, Future]] = deque()
        self._inflight_ids: set[str] = set()
        self._arena, self._free_arenas = _Arena(), []
        self._staged: list[tuple[str, memoryview]] = []  # in self._arena
        self._batch: list[dict] = []
        # The last chunk of each ingest message sent: ingest handles a message's chunks in order,
        # so once that one is indexed the whole message is (one id per INGEST_BATCH chunks).
        self.message_tails: list[str] = []
        # Full batches not sent yet: the last HELD_BATCHES of a backup go in its commit request.
        # (Sending them too, and declaring again in the commit those not handled by then, had
        # the service verify a chunk twice when the queue lagged: two header reads, two creates.)
        self._held: deque[list[dict]] = deque()
        # Chunks this run uploaded replacements of: the look-up says "rejected" until ingest has
        # promoted them, so only "verified" tells that it has.
        self.replaced: set[str] = set()

    def chunk_stream(self, chunks: Iterable, on_chunk: Callable[[str, int, int], None]) -> None:
        """Store every chunk of `chunks` (cut by the chunker); `on_chunk(id, offset, length)`
        learns each one's id as soon as it is known."""
        for chunk in chunks:
            # The chunker reuses its buffer: the chunk is hashed there, then copied into the batch's.
            cid = crypto.chunk_id(self.keys, chunk.data)
            on_chunk(cid, chunk.offset, chunk.length)
            self.cache.add_refs(self.run_id, [cid])
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
        unknown = set(fresh) - self.cache.known(self.vault.vault_id, fresh, self.run_id)
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
        """In a worker: the service's dedup look-up, then compress, encrypt and upload what it lacks
        (a replacement of what it holds rejected or damaged). Returns the ids the service holds
        verified and the declarations of the others."""
        answer = self.vault.lookup(sorted(batch))
        verified, unusable = set(answer.verified), set(answer.rejected)
        declared = [self._upload(cid, data, cid in unusable) for cid, data in batch.items() if cid not in verified]
        return verified, declared

    def _sealer(self) -> crypto.ChunkSealer:
        """This worker thread's sealer (its envelope buffer is reused from chunk to chunk)."""
        sealer = getattr(self._local, "sealer", None)
        if sealer is None:
            sealer = self._local.sealer = crypto.ChunkSealer(self.keys, self.vault.vault_id)
        return sealer

    def _upload(self, cid: str, data: memoryview, replace: bool) -> dict:
        envelope = self._sealer().seal(cid, data)  # this thread's buffer: used up before its next chunk
        md5 = hashlib.md5(envelope).digest()
        name = replacement_blob_name(cid, secrets.token_hex(8)) if replace else chunk_blob_name(cid)
        declaration: dict = {"id": cid}
        if replace:
            self.replaced.add(cid)
            declaration["blob"] = name
        try:
            self.container.put(name, envelope, md5=md5)
        except (BlobAlreadyExists, PermissionError):
            # The blob exists: with a create-only SAS Azure answers 403, not 409. Whose it is does
            # not matter; it was put with its MD5, so it is whole, and the service adopts it. (A SAS
            # that is really refused fails the manifest root's put, in the committer.)
            return declaration
        return {**declaration, "size": len(envelope), "md5": base64.b64encode(md5).decode()}

    def _collect_oldest(self) -> None:
        ids, arena, future = self._inflight.popleft()
        verified, declared = future.result()
        self._free(arena)
        self._inflight_ids.difference_update(ids)
        self.cache.add_known(self.vault.vault_id, verified)
        self.cache.add_sent(self.vault.vault_id, self.run_id, [e["id"] for e in declared])
        self.report.chunks_deduplicated += len(verified)
        for entry in declared:
            if "size" in entry:
                self.report.chunks_uploaded += 1
                self.report.bytes_uploaded += entry["size"]
            else:
                self.report.chunks_adopted += 1
            self._batch.append(entry)
            if len(self._batch) >= INGEST_BATCH:
                self._held.append(self._batch)
                self._batch = []
                while len(self._held) > HELD_BATCHES:
                    self._send(self._held.popleft())

    def drain(self) -> None:
        """Finish the uploads under way. The chunks of a batch not yet full are declared later: in
        the commit request, or in a last ingest message when the backup does not wait."""
        self._dispatch()
        while self._inflight:
            self._collect_oldest()

    def _send(self, batch: list[dict]) -> None:
        self.vault.send("ingest", {"type": "chunks", "chunks": batch})
        self.report.messages += 1
        self.message_tails.append(batch[-1]["id"])

    def send_undeclared(self) -> None:
        """Declare in ingest messages the uploaded chunks no message declared yet, if any."""
        for batch in self.take_batches():
            self._send(batch)

    def take_batches(self) -> list[list[dict]]:
        """The declarations of the uploaded chunks no ingest message declared, in batches of at
        most INGEST_BATCH: the caller declares them instead."""
        batches = [*self._held, self._batch] if self._batch else list(self._held)
        self._held.clear()
        self._batch = []
        return batches

    def take_undeclared(self) -> list[dict]:
        """take_batches(), as one list (at most formats.CHUNKS_PER_MESSAGE declarations)."""
        return [entry for batch in self.take_batches() for entry in batch]

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run `fn(*args)` on an upload thread."""
        return self._pool.submit(fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DryRunUploader(Uploader):
    """The uploader of a dry run (`backup --dry-run`): the same cutting, hashing and
    deduplication against the local cache, and each chunk the cache does not know is sealed to
    count the bytes its upload would store; but nothing is uploaded, no message sent, and the
    service is not asked which chunks it holds: its look-up is not read-only (a condemned chunk
    asked about is revived). So the figures are exact where the cache knows what the vault
    holds (the chunks of this machine's committed backups), and count as new what only the
    vault knows (another machine's, or those a lost cache knew)."""

    def _store_batch(self, batch: dict[str, memoryview]) -> tuple[set[str], list[dict]]:
        return set(), [{"id": cid, "size": len(self._sealer().seal(cid, data))} for cid, data in batch.items()]

    def send_undeclared(self) -> None:
        self.take_batches()
