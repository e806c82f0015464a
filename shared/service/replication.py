"""Geo-redundancy: copy GRS vaults' blobs to the paired region, tell when a recovery point is
geo-protected, and measure replication lag.

Words:
- replica: the paired region's copy of a chunk, manifest or reference list, made by
  server-side copy (streamed on the local stack, see Services.stream_copy).
- geo-protected: a committed point all of whose blobs have a replica.
- replication lag: the age of the oldest blob of a vault not yet copied.

Every handler is idempotent. A copy that fails because a region does not answer is queued
again with a growing delay (never poisoned), so replication catches up by itself when the
region returns.
"""
from __future__ import annotations

import base64
import logging
from dataclasses import replace
from datetime import datetime, timedelta

from shared import formats
from shared.domain import ChunkRecord, ChunkState, PointState, Redundancy, Vault, chunk_blob_name, container_name
from shared.messages import ReplicateMessage, ReplicationStatus
from shared.ports import BlobAccount, BlobNotFound, BlobProperties, TransientError, blob_url
from shared.refs import RefsList
from shared.service.commit import referenced_records
from shared.service.context import (REPLICATE_QUEUE, Services, enqueue, iso_time, set_once, update_chunk,
                                    update_point)
from shared.service.vaults import vault_for

log = logging.getLogger("skyvault.replication")

COPY_SAS_TTL = timedelta(hours=1)
# A point check that still finds blobs without a copy after this many checks (at least 2 + 4 + 8
# seconds: the copies queued with them have had their turn) queues those copies again.
RECOPY_AFTER_CHECKS = 3


def copy_blob(services: Services, source: BlobAccount, target: BlobAccount, container: str,
              name: str) -> BlobProperties:
    if services.stream_copy:
        return target.container(container).put(name, source.container(container).read(name), overwrite=True)
    url = blob_url(source.container_sas_url(container, "r", services.clock() + COPY_SAS_TTL), name)
    return target.container(container).copy_from(name, url)


def replicate(services: Services, message: ReplicateMessage) -> str:
    """Copy blobs of a GRS vault to the paired region, or check a point's geo-protection.
    Idempotent: a blob already recorded as copied is not copied again. When a region does
    not answer, the blobs not yet copied are queued again with a growing delay. Returns
    what it did."""
    vault = vault_for(services, message.tenant_id, message.vault_id)
    if vault.redundancy != Redundancy.GRS or services.secondary is None:
        return "skipped: not a GRS vault"
    done: list[str] = []
    try:
        if not message.blobs:
            return _check_point(services, vault, message)
        # The message's chunk records in one look-up (a query per CHUNK_QUERY_BATCH ids), not one each.
        chunk_ids = [b.rsplit("/", 1)[-1] for b in message.blobs if b.startswith("chunks/")]
        records = services.index.get_chunks(vault.id, chunk_ids) if chunk_ids else {}
        for blob in message.blobs:
            if blob.startswith("chunks/"):
                done.append(_replicate_chunk(services, vault, blob, records.get(blob.rsplit("/", 1)[-1])))
            else:
                done.append(_replicate_point_blob(services, vault, blob, message.point_id))
        return "; ".join(sorted(set(done)))
    except TransientError as e:
        delay = _retry_delay(services, message.attempt)
        retry = replace(message, blobs=message.blobs[len(done):], attempt=message.attempt + 1)
        enqueue(services, REPLICATE_QUEUE, retry.to_json(), delay=delay)
        return f"deferred {delay}s after {len(done)} blobs: {e}"


def _retry_delay(services: Services, attempt: int) -> int:
    return min(2 ** (attempt + 1), services.replication_retry_max_s)


def _replicate_chunk(services: Services, vault: Vault, blob: str, record: ChunkRecord | None) -> str:
    """Copy chunk `blob` whose index record (read with the message's others) is `record`."""
    chunk_id = blob.rsplit("/", 1)[-1]
    if record is None or record.state != ChunkState.VERIFIED:
        return f"skipped: chunk {chunk_id} is not verified"
    if record.replicated_at:
        return "already copied"
    try:
        props = copy_blob(services, services.primary, services.secondary, container_name(vault.id), blob)
    except BlobNotFound:
        log.error("vault %s: chunk %s is verified but missing from the primary region", vault.id, chunk_id)
        return "source missing"
    if props.size != record.size or base64.b64encode(props.content_md5 or b"").decode() != record.content_md5:
        log.error("vault %s: the copy of chunk %s does not match its verified size and MD5", vault.id, chunk_id)
        return "copy mismatch: left for the scrub"
    update_chunk(services, record, set_once("replicated_at", iso_time(services.clock())))
    return "copied"


def _replicate_point_blob(services: Services, vault: Vault, blob: str, point_id: str | None) -> str:
    point = services.index.get_point(vault.id, point_id) if point_id else None
    if point is None or blob not in (point.manifest_blob, point.refs_blob):
        return f"skipped: {blob} is not a blob of a known point"
    if blob in point.replicated_blobs:
        return "already copied"
    copy_blob(services, services.primary, services.secondary, container_name(vault.id), blob)

    def add(p) -> bool:
        if blob in p.replicated_blobs:
            return False
        p.replicated_blobs = sorted({*p.replicated_blobs, blob})
        return True

    update_point(services, point, add)
    return "copied"


def _check_point(services: Services, vault: Vault, message: ReplicateMessage) -> str:
    point = services.index.get_point(vault.id, message.point_id)
    if point is None or point.state != PointState.COMMITTED:
        return "skipped: point is not committed"
    if point.geo_protected_at:
        return "already geo-protected"
    own = [b for b in (point.manifest_blob, point.refs_blob) if b not in point.replicated_blobs]
    refs = RefsList(services.primary.container(container_name(vault.id)), point.refs_blob,
                    f"reference list of point {point.id}")
    uncopied, missing = [], len(own)
    for cid, record in referenced_records(services, vault.id, refs.ids()):
        if record is None or not record.replicated_at:
            missing += 1
            if len(uncopied) < formats.CHUNKS_PER_MESSAGE:  # what one check queues again
                uncopied.append(cid)
    if missing:
        if message.attempt >= RECOPY_AFTER_CHECKS:
            _queue_copies_again(services, vault, point.id, own, uncopied)
        delay = _retry_delay(services, message.attempt)
        enqueue(services, REPLICATE_QUEUE, replace(message, attempt=message.attempt + 1).to_json(), delay=delay)
        return f"{missing} blobs not copied yet; checking again in {delay}s"
    update_point(services, point, set_once("geo_protected_at", iso_time(services.clock())))
    return "geo-protected"


def _queue_copies_again(services: Services, vault: Vault, point_id: str, own: list[str],
                        uncopied: list[str]) -> None:
    """Queue again the copies a point still lacks, whatever became of the messages that should
    have made them (a delivery that indexed or promoted a chunk and died before queuing its copy;
    a copy queued twice is skipped). At most CHUNKS_PER_MESSAGE chunks a check."""
    if own:
        enqueue(services, REPLICATE_QUEUE, ReplicateMessage(vault.tenant_id, vault.id, blobs=tuple(own),
                                                            point_id=point_id).to_json())
    if uncopied:
        enqueue(services, REPLICATE_QUEUE, ReplicateMessage(vault.tenant_id, vault.id, blobs=tuple(
            chunk_blob_name(cid) for cid in uncopied[:formats.CHUNKS_PER_MESSAGE])).to_json())


def replication_status(services: Services, vault: Vault) -> ReplicationStatus:
    """Replication lag: the age of the oldest blob not yet in the paired region (0 when none)."""
    if vault.redundancy != Redundancy.GRS:
        return ReplicationStatus(vault.redundancy)
    now = services.clock()
    oldest: list[datetime] = []
    chunk = services.index.oldest_unreplicated_chunk(vault.id)
    if chunk is not None:
        oldest.append(datetime.fromisoformat(chunk.recorded_at))
    pending = [p for p in services.index.list_points(vault.id)
               if p.state == PointState.COMMITTED and not p.geo_protected_at]
    oldest += [datetime.fromisoformat(p.committed_at) for p in pending if p.committed_at]
    lag = max(0.0, (now - min(oldest)).total_seconds()) if oldest else 0.0
    return ReplicationStatus(Redundancy.GRS, lag_seconds=round(lag, 3),
                             oldest_unreplicated_chunk=chunk.id if chunk else None,
                             points_not_geo_protected=len(pending))
