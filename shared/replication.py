"""Geo-redundancy: copy GRS vaults' blobs to the paired region, tell when a recovery point
is geo-protected, measure replication lag, and scrub both copies.

Words:
- replica: the paired region's copy of a chunk, manifest or reference list,
  made by server-side copy (streamed on the local stack, see Services.stream_copy).
- geo-protected: a committed point all of whose blobs have a replica.
- replication lag: the age of the oldest blob of a vault not yet copied.
- scrub: reading both copies of a rolling sample of chunks, healing a missing or
  damaged copy from the good one; a chunk bad in both is marked damaged, loudly.

Every handler is idempotent. A copy that fails because a region does not
answer is queued again with a growing delay (never poisoned), so replication
catches up by itself when the region returns.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from shared import formats
from shared.domain import ChunkRecord, Vault, chunk_blob_name, container_name
from shared.handlers import (REPLICATE_QUEUE, Services, UnknownVault, enqueue, iso_time, raise_chunk_epoch,
                             referenced_records, replicate_message)
from shared.ports import BlobAccount, BlobNotFound, BlobProperties, PreconditionFailed, TransientError, blob_url

log = logging.getLogger("skyvault.replication")

COPY_SAS_TTL = timedelta(hours=1)
SCRUB_SAMPLE = 20


def copy_blob(services: Services, source: BlobAccount, target: BlobAccount, container: str,
              name: str) -> BlobProperties:
    if services.stream_copy:
        return target.container(container).put(name, source.container(container).read(name), overwrite=True)
    url = blob_url(source.container_sas_url(container, "r", services.clock() + COPY_SAS_TTL), name)
    return target.container(container).copy_from(name, url)


def _parse(text: str | bytes) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise formats.MalformedMessage(f"replicate message is not JSON: {e}") from None
    if (not isinstance(body, dict) or body.get("v") != 1 or not isinstance(body.get("attempt"), int)
            or not isinstance(body.get("blobs"), list)):
        raise formats.MalformedMessage("replicate message does not match its schema")
    for blob in body["blobs"]:
        if not (isinstance(blob, str) and blob.startswith(("chunks/", "points/"))):
            raise formats.MalformedMessage(f"replicate message names a blob outside the vault's layout: {blob!r}")
    point = body.get("pointId")
    if point is not None and not (isinstance(point, str) and formats.POINT_ID.match(point)):
        raise formats.MalformedMessage(f"replicate message names a bad recovery point {point!r}")
    if not body["blobs"] and point is None:
        raise formats.MalformedMessage("replicate message names neither blobs nor a recovery point")
    return body


def replicate(services: Services, text: str | bytes) -> str:
    """Copy blobs of a GRS vault to the paired region, or check a point's geo-protection.
    Idempotent: a blob already recorded as copied is not copied again. When a region does
    not answer, the blobs not yet copied are queued again with a growing delay. Returns
    what it did."""
    body = _parse(text)
    vault = services.index.get_vault(body["tenantId"], body["vaultId"])
    if vault is None:
        raise UnknownVault(f"no vault {body['vaultId']} in tenant {body['tenantId']}")
    if vault.redundancy != "GRS" or services.secondary is None:
        return "skipped: not a GRS vault"
    done: list[str] = []
    try:
        if not body["blobs"]:
            return _check_point(services, vault, body)
        for blob in body["blobs"]:
            if blob.startswith("chunks/"):
                done.append(_replicate_chunk(services, vault, blob))
            else:
                done.append(_replicate_point_blob(services, vault, blob, body["pointId"]))
        return "; ".join(sorted(set(done)))
    except TransientError as e:
        delay = _retry_delay(services, body["attempt"])
        retry = {**body, "blobs": body["blobs"][len(done):], "attempt": body["attempt"] + 1}
        enqueue(services, REPLICATE_QUEUE, json.dumps(retry), delay=delay)
        return f"deferred {delay}s after {len(done)} blobs: {e}"


def _retry_delay(services: Services, attempt: int) -> int:
    return min(2 ** (attempt + 1), services.replication_retry_max_s)


def _replicate_chunk(services: Services, vault: Vault, blob: str) -> str:
    chunk_id = blob.rsplit("/", 1)[-1]
    record = services.index.get_chunks(vault.id, [chunk_id]).get(chunk_id)
    if record is None or record.state != "verified":
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
    while not record.replicated_at:
        record.replicated_at = iso_time(services.clock())
        try:
            services.index.replace_chunk(record)
        except PreconditionFailed:
            record = services.index.get_chunks(vault.id, [chunk_id])[chunk_id]
    return "copied"


def _replicate_point_blob(services: Services, vault: Vault, blob: str, point_id: str) -> str:
    point = services.index.get_point(vault.id, point_id)
    if point is None or blob not in (point.manifest_blob, point.refs_blob):
        return f"skipped: {blob} is not a blob of a known point"
    if blob in point.replicated_blobs:
        return "already copied"
    copy_blob(services, services.primary, services.secondary, container_name(vault.id), blob)
    while blob not in point.replicated_blobs:
        point.replicated_blobs = sorted({*point.replicated_blobs, blob})
        try:
            services.index.replace_point(point)
        except PreconditionFailed:
            point = services.index.get_point(vault.id, point_id)
    return "copied"


def _check_point(services: Services, vault: Vault, body: dict) -> str:
    point = services.index.get_point(vault.id, body["pointId"])
    if point is None or point.state != "committed":
        return "skipped: point is not committed"
    if point.geo_protected_at:
        return "already geo-protected"
    missing = 2 - len({point.manifest_blob, point.refs_blob} & set(point.replicated_blobs))
    refs = formats.decode_refs(services.primary.container(container_name(vault.id)).read(point.refs_blob))
    missing += sum(1 for _, record in referenced_records(services, vault.id, refs)
                   if record is None or not record.replicated_at)
    if missing:
        delay = _retry_delay(services, body["attempt"])
        enqueue(services, REPLICATE_QUEUE, replicate_message(vault, point_id=point.id, attempt=body["attempt"] + 1),
                delay=delay)
        return f"{missing} blobs not copied yet; checking again in {delay}s"
    while not point.geo_protected_at:
        point.geo_protected_at = iso_time(services.clock())
        try:
            services.index.replace_point(point)
        except PreconditionFailed:
            point = services.index.get_point(vault.id, point.id)
    return "geo-protected"


def replication_status(services: Services, vault: Vault) -> dict[str, Any]:
    """Replication lag: the age of the oldest blob not yet in the paired region (0 when none)."""
    if vault.redundancy != "GRS":
        return {"redundancy": vault.redundancy}
    now = services.clock()
    oldest: list[datetime] = []
    chunk = services.index.oldest_unreplicated_chunk(vault.id)
    if chunk is not None:
        oldest.append(datetime.fromisoformat(chunk.recorded_at))
    pending = [p for p in services.index.list_points(vault.id) if p.state == "committed" and not p.geo_protected_at]
    oldest += [datetime.fromisoformat(p.committed_at) for p in pending if p.committed_at]
    lag = max(0.0, (now - min(oldest)).total_seconds()) if oldest else 0.0
    return {"redundancy": "GRS", "lagSeconds": round(lag, 3),
            "oldestUnreplicatedChunk": chunk.id if chunk else None, "pointsNotGeoProtected": len(pending)}


def vault_status(services: Services, vault: Vault) -> dict[str, Any]:
    return {"vaultId": vault.id, "name": vault.name, "tenantId": vault.tenant_id, "redundancy": vault.redundancy,
            "firstBackupAt": vault.first_backup_at, "replication": replication_status(services, vault)}


# Scrub

def _md5_of(account: BlobAccount, container: str, name: str) -> tuple[int, str] | None:
    try:
        data = account.container(container).read(name)
    except BlobNotFound:
        return None
    return len(data), base64.b64encode(hashlib.md5(data).digest()).decode()


def scrub_vault(services: Services, vault: Vault, sample: int = SCRUB_SAMPLE) -> dict[str, list[str]]:
    """Compare both regions' copies of the next `sample` chunks after the vault's scrub cursor,
    by full read (size and MD5 against what ingest verified); heal the bad copy from the good
    one; mark a chunk bad in both regions as damaged and log it as an error."""
    report: dict[str, list[str]] = {"checked": [], "healed_primary": [], "healed_secondary": [], "damaged": []}
    if vault.redundancy != "GRS" or services.secondary is None:
        return report
    container = container_name(vault.id)
    records = services.index.chunks_after(vault.id, vault.scrub_cursor, sample)
    for record in records:
        if record.state != "verified" or not record.replicated_at:
            continue
        name = chunk_blob_name(record.id)
        expected = (record.size, record.content_md5)
        good = {region: _md5_of(account, container, name) == expected
                for region, account in services.regions().items()}
        report["checked"].append(record.id)
        if all(good.values()):
            continue
        if not any(good.values()):
            vault = _mark_damaged(services, vault, record,
                                  "both regions' copies differ from the verified size and MD5")
            report["damaged"].append(record.id)
            continue
        healthy, broken = ("primary", "secondary") if good["primary"] else ("secondary", "primary")
        regions = services.regions()
        copy_blob(services, regions[healthy], regions[broken], container, name)
        log.warning("vault %s: healed the %s copy of chunk %s from the %s", vault.id, broken, record.id, healthy)
        report[f"healed_{broken}"].append(record.id)
    # The next run starts after this sample, and from the beginning once the vault is covered.
    vault.scrub_cursor = records[-1].id if len(records) == sample else ""
    try:
        services.index.replace_vault(vault)
    except PreconditionFailed:
        pass  # another scrub or a vault change won; the next run resamples
    return report


def _mark_damaged(services: Services, vault: Vault, record: ChunkRecord, reason: str) -> Vault:
    log.error("vault %s: chunk %s is DAMAGED in every region: %s; recovery points that reference it "
              "cannot be restored in full", vault.id, record.id, reason)
    # The epoch first: a commit that starts after this checks every chunk it references.
    vault = raise_chunk_epoch(services, vault)
    record.state, record.reason = "damaged", reason
    try:
        services.index.replace_chunk(record)
    except PreconditionFailed:
        pass  # re-examined by the next scrub
    return vault


def scrub(services: Services, sample: int = SCRUB_SAMPLE) -> dict[str, dict[str, list[str]]]:
    """The timer's work: a sample of every GRS vault."""
    reports = {}
    for vault in services.index.list_all_vaults():
        if vault.redundancy == "GRS":
            try:
                reports[vault.id] = scrub_vault(services, vault, sample)
            except TransientError as e:
                log.warning("scrub of vault %s deferred: %s", vault.id, e)
    return reports

