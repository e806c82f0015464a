"""Ingest: verify and index the chunks an agent declares, without downloading them.

The service cannot decrypt, so it checks what it can: the blob's size and the MD5 Azure Storage
computed on receipt against the declaration, and the envelope's header with a range read
(docs/design.md, "Verification"). A GRS vault's verified chunks not yet copied are queued for
replication, one replicate message per ingest message, whichever delivery indexed them."""
from __future__ import annotations

import base64
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shared import crypto
from shared.domain import ChunkRecord, ChunkState, Redundancy, Vault, chunk_blob_name, container_name
from shared.errors import Retryable
from shared.messages import MAX_CHUNK_ENVELOPE, MIN_CHUNK_ENVELOPE, ChunkDeclaration, ChunksMessage, ReplicateMessage
from shared.ports import BlobContainer, BlobNotFound
from shared.service import metering
from shared.service.context import REPLICATE_QUEUE, Services, enqueue, iso_time, update_chunk
from shared.service.machines import authorized_vault

log = logging.getLogger("skyvault.ingest")

INGEST_WORKERS = 8


class ChunkNotUploaded(Retryable):
    """A message names a chunk blob that does not exist (yet)."""


@dataclass(frozen=True)
class IngestOutcome:
    verified: int = 0
    rejected: int = 0
    already: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"verified": self.verified, "rejected": self.rejected, "already": self.already}


def ingest_chunks(services: Services, message: ChunksMessage, vault: Vault | None = None) -> IngestOutcome:
    """Verify and index the chunks `message` declares.

    Idempotent: the index keeps the first record of a chunk (create-if-absent), so a replayed
    message changes no record; it only queues again the copies its chunks still lack. A chunk
    whose blob contradicts the message is indexed as rejected (with the reason) so that a commit
    referencing it fails clearly. A declared replacement of a rejected or damaged chunk is
    promoted over its blob (`promote_replacement`). There is no look-up before the creates:
    almost every chunk is new, and a look-up would cost a Cosmos DB query per shard for nothing."""
    vault = authorized_vault(services, message, vault)
    container = services.primary.container(container_name(vault.id))

    def index(entry: ChunkDeclaration) -> ChunkRecord | None:
        if entry.blob is not None:
            return promote_replacement(services, vault, container, entry)
        record = verify_chunk(container, vault, entry, iso_time(services.clock()))
        return record if services.index.add_chunk(record) else None

    entries = list({e.id: e for e in message.chunks}.values())
    *others, last = entries
    # The chunks are verified INGEST_WORKERS at a time (each is a storage read and an index
    # write), the message's last one only after all others: once it is indexed, all are,
    # which is what an agent waiting for its messages checks.
    with ThreadPoolExecutor(INGEST_WORKERS) as pool:
        records = list(pool.map(index, others))
    records.append(index(last))
    added = [r for r in records if r is not None]
    verified = [r for r in added if r.state == ChunkState.VERIFIED]
    found_ids = [e.id for e, r in zip(entries, records) if r is None]
    # A delivery that indexed them may have failed before it queued their usage and copies.
    found = list(services.index.get_chunks(vault.id, found_ids).values()) if found_ids else []
    # A promotion over an existing record keeps its lifetime: the meter finds that event counted.
    metering.record(services, vault, [metering.stored_event(r) for r in [*added, *found]])
    if vault.redundancy == Redundancy.GRS:
        _queue_replication(services, vault, verified, found)
    return IngestOutcome(verified=len(verified), rejected=len(added) - len(verified),
                         already=len(records) - len(added))


def _queue_replication(services: Services, vault: Vault, added: list[ChunkRecord], found: list[ChunkRecord]) -> None:
    """One replicate message for the chunks of an ingest message that are verified and not yet
    copied: those this delivery indexed, and those it found indexed already (a delivery that
    indexed them may have failed before it queued their copy; a copy queued twice is skipped
    by replication, one never queued leaves the chunk without a replica)."""
    waiting = [r.id for r in added]
    waiting += [r.id for r in found if r.state == ChunkState.VERIFIED and not r.replicated_at]
    if waiting:
        enqueue(services, REPLICATE_QUEUE, ReplicateMessage(
            vault.tenant_id, vault.id, blobs=tuple(chunk_blob_name(cid) for cid in sorted(waiting))).to_json())


def verify_chunk(container: BlobContainer, vault: Vault, entry: ChunkDeclaration, now: str) -> ChunkRecord:
    """The index record of the declared chunk, from one ranged read of its blob (the
    replacement's, if it names one): verified, or rejected with the reason. An adoption (no size
    or MD5 declared) takes both from the blob. ChunkNotUploaded if the blob is not there."""
    name = entry.blob or chunk_blob_name(entry.id)
    try:
        head, props = container.read_head(name, crypto.HEADER_BYTES)
    except BlobNotFound:
        raise ChunkNotUploaded(f"chunk blob {name} is not in vault {vault.id}") from None
    md5 = base64.b64encode(props.content_md5).decode() if props.content_md5 else ""
    reason = None
    if not md5:
        reason = "the blob has no MD5 recorded: it was not written by one Put Blob"
    elif entry.adopted and not MIN_CHUNK_ENVELOPE <= props.size <= MAX_CHUNK_ENVELOPE:
        reason = f"blob has {props.size} bytes, not the size of a chunk envelope"
    elif not entry.adopted and props.size != entry.size:
        reason = f"blob has {props.size} bytes, message declares {entry.size}"
    elif not entry.adopted and md5 != entry.md5:
        reason = f"blob MD5 {md5} differs from the declared {entry.md5}"
    else:
        try:
            crypto.parse_header(head)
        except crypto.BadEnvelope as e:
            reason = str(e)
    return ChunkRecord(id=entry.id, vault_id=vault.id, size=props.size, content_md5=md5,
                       state=ChunkState.REJECTED if reason else ChunkState.VERIFIED, recorded_at=now, reason=reason,
                       created_at=now)


def adopt_chunk(services: Services, vault: Vault, container: BlobContainer, chunk_id: str) -> ChunkRecord | None:
    """Index a chunk no one declared from its blob's own properties (docs/design.md, "Chunk
    lifecycle"): its record, or None if the blob is not there. Idempotent (create-if-absent)."""
    try:
        record = verify_chunk(container, vault, ChunkDeclaration(chunk_id), iso_time(services.clock()))
    except ChunkNotUploaded:
        return None
    if not services.index.add_chunk(record):
        record = services.index.get_chunks(vault.id, [chunk_id])[chunk_id]
    return record


def promote_replacement(services: Services, vault: Vault, container: BlobContainer,
                        entry: ChunkDeclaration) -> ChunkRecord | None:
    """Store a declared replacement of a rejected or damaged chunk as the chunk's blob, and make
    its record verified (the generation counts promotions); the replacement blob is deleted.
    Returns the record when it changed, None when there was nothing to do.

    Idempotent, and safe to crash at any step: the blob is overwritten before the record says
    verified, and the replacement deleted only after, so a redelivery finds either the
    replacement or a verified record. A replacement that fails verification changes nothing
    but its own deletion."""
    current = services.index.get_chunks(vault.id, [entry.id]).get(entry.id)
    if current is not None and current.state == ChunkState.DELETING:
        # Garbage collection is deleting the chunk's blob: promoting now could be undone by it.
        raise Retryable(f"chunk {entry.id} is being garbage-collected: its replacement is promoted once it is gone")
    if current is not None and current.state in (ChunkState.VERIFIED, ChunkState.CONDEMNED):
        container.delete(entry.blob)  # someone else's copy stands already
        return None
    now = iso_time(services.clock())
    candidate = verify_chunk(container, vault, entry, now)
    if candidate.state != ChunkState.VERIFIED:
        log.warning("vault %s: replacement %s refused: %s", vault.id, entry.blob, candidate.reason)
        container.delete(entry.blob)
        return None
    data = container.read(entry.blob)
    stored = container.put(chunk_blob_name(entry.id), data, overwrite=True, md5=hashlib.md5(data).digest())
    if (stored.size, stored.content_md5) != (candidate.size, base64.b64decode(candidate.content_md5)):
        raise Retryable(f"chunk {entry.id}: the promoted copy does not match its replacement")
    candidate.generation = current.generation + 1 if current is not None else 0
    if current is None:
        services.index.add_chunk(candidate)
        record = candidate
    else:
        if current.size != candidate.size:  # before the change, so a crash cannot lose it
            metering.record(services, vault, metering.resized_events(current, candidate.size))

        def repaired(r: ChunkRecord) -> bool:
            if r.state == ChunkState.VERIFIED:
                return False
            r.state, r.size, r.content_md5 = ChunkState.VERIFIED, candidate.size, candidate.content_md5
            r.reason, r.replicated_at, r.recorded_at = None, None, now
            r.generation += 1
            return True

        record = update_chunk(services, current, repaired)
    container.delete(entry.blob)
    log.info("vault %s: chunk %s stored again (generation %d)", vault.id, entry.id, record.generation)
    return record
