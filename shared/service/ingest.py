"""Ingest: verify and index the chunks an agent declares, without downloading them.

The service cannot decrypt, so it checks what it can: the blob's size and the MD5 Azure Storage
computed on receipt against the declaration, and the envelope's header with a range read
(docs/design.md, "Verification"). A GRS vault's verified chunks not yet copied are queued for
replication, one replicate message per ingest message, whichever delivery indexed them."""
from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shared import crypto
from shared.domain import ChunkRecord, ChunkState, Redundancy, Vault, chunk_blob_name, container_name
from shared.errors import Retryable
from shared.messages import ChunkDeclaration, ChunksMessage, ReplicateMessage
from shared.ports import BlobContainer, BlobNotFound
from shared.service.context import REPLICATE_QUEUE, Services, enqueue, iso_time
from shared.service.vaults import authorized_vault

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
    message changes no record; it only queues again the copies its chunks still lack. A chunk whose blob contradicts the message is indexed as rejected
    (with the reason) so that a commit referencing it fails clearly. There is no look-up before
    the creates: almost every chunk is new, and a look-up would cost a Cosmos DB query per shard
    for nothing."""
    vault = authorized_vault(services, message, vault)
    container = services.primary.container(container_name(vault.id))

    def index(entry: ChunkDeclaration) -> ChunkRecord | None:
        record = verify_chunk(container, vault, entry, iso_time(services.clock()))
        return record if services.index.add_chunk(record) else None

    *others, last = {e.id: e for e in message.chunks}.values()
    # The chunks are verified INGEST_WORKERS at a time (each is a storage read and an index
    # write), the message's last one only after all others: once it is indexed, all are,
    # which is what an agent waiting for its messages checks.
    with ThreadPoolExecutor(INGEST_WORKERS) as pool:
        records = list(pool.map(index, others))
    records.append(index(last))
    added = [r for r in records if r is not None]
    verified = [r for r in added if r.state == ChunkState.VERIFIED]
    if vault.redundancy == Redundancy.GRS:
        declared = list({e.id: e for e in message.chunks})  # in the order of `records`
        _queue_replication(services, vault, verified, [cid for cid, r in zip(declared, records) if r is None])
    return IngestOutcome(verified=len(verified), rejected=len(added) - len(verified),
                         already=len(records) - len(added))


def _queue_replication(services: Services, vault: Vault, added: list[ChunkRecord], found: list[str]) -> None:
    """One replicate message for the chunks of an ingest message that are verified and not yet
    copied: those this delivery indexed, and those it found indexed already (a delivery that
    indexed them may have failed before it queued their copy; a copy queued twice is skipped
    by replication, one never queued leaves the chunk without a replica)."""
    waiting = [r.id for r in added]
    if found:
        waiting += [cid for cid, record in services.index.get_chunks(vault.id, found).items()
                    if record.state == ChunkState.VERIFIED and not record.replicated_at]
    if waiting:
        enqueue(services, REPLICATE_QUEUE, ReplicateMessage(
            vault.tenant_id, vault.id, blobs=tuple(chunk_blob_name(cid) for cid in sorted(waiting))).to_json())


def verify_chunk(container: BlobContainer, vault: Vault, entry: ChunkDeclaration, now: str) -> ChunkRecord:
    name = chunk_blob_name(entry.id)
    try:
        head, props = container.read_head(name, crypto.HEADER_BYTES)
    except BlobNotFound:
        raise ChunkNotUploaded(f"chunk blob {name} is not in vault {vault.id}") from None
    md5 = base64.b64encode(props.content_md5).decode() if props.content_md5 else ""
    reason = None
    if props.size != entry.size:
        reason = f"blob has {props.size} bytes, message declares {entry.size}"
    elif md5 != entry.md5:
        reason = f"blob MD5 {md5 or '(none recorded)'} differs from the declared {entry.md5}"
    else:
        try:
            crypto.parse_header(head)
        except crypto.BadEnvelope as e:
            reason = str(e)
    return ChunkRecord(id=entry.id, vault_id=vault.id, size=props.size, content_md5=md5,
                       state=ChunkState.REJECTED if reason else ChunkState.VERIFIED, recorded_at=now, reason=reason)
