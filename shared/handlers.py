"""The service's use cases: create a vault, ingest chunks, commit recovery points,
prepare restores, and the agent-facing look-ups.

Handlers take their dependencies (`Services`) as an argument and never read
settings or build clients themselves; functions/ turns triggers into calls of
these and maps their errors. Every message handler is idempotent: a replayed
message finds its work done and changes nothing.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from shared import crypto, formats
from shared.domain import (REDUNDANCIES, ChunkRecord, Job, RecoveryPoint, UsageEvent, Vault,
                           chunk_blob_name, container_name)
from shared.ports import (BlobAccount, BlobContainer, BlobNotFound, Conflict, Index,
                          PreconditionFailed, Queue)

AGENT_CREDENTIALS_TTL = timedelta(days=1)
RESTORE_SAS_TTL = timedelta(hours=1)
INGEST_WORKERS = 8
REFS_QUERY_BATCH = 500
INGEST_QUEUE, COMMIT_QUEUE, RESTORE_QUEUE, REPLICATE_QUEUE = "ingest", "commit", "restore", "replicate"
AGENT_QUEUES = (INGEST_QUEUE, COMMIT_QUEUE, RESTORE_QUEUE)
# A commit that arrives before its chunks are verified is checked again after 1, 2, 4 ...
# (at most COMMIT_RECHECK_MAX_S) seconds, up to COMMIT_MAX_CHECKS times (about 3 hours).
COMMIT_RECHECK_MAX_S = 60
COMMIT_MAX_CHECKS = 200
ALL_QUEUES = (*AGENT_QUEUES, REPLICATE_QUEUE)


class ServiceError(Exception):
    """An error with an HTTP status for the API, raised by handlers."""

    status = 400


class UnknownVault(ServiceError):
    status = 404


class NotFound(ServiceError):
    status = 404


class Forbidden(ServiceError):
    status = 403


class KeyMismatch(ServiceError):
    status = 409


class ChunkNotUploaded(Exception):
    """A message names a chunk blob that does not exist (yet): retried, then poisoned."""


@dataclass
class Services:
    index: Index
    primary: BlobAccount
    queue: Callable[[str], Queue]
    queue_sas_url: Callable[[str, str, datetime], str]
    api_url: str = ""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    secondary: BlobAccount | None = None  # the paired region, for GRS vaults
    # The local stack's regions are separate Azurite processes, which cannot copy
    # between each other: there the service streams the bytes instead (see docs/design.md).
    stream_copy: bool = False
    replication_retry_max_s: int = 300

    def regions(self) -> dict[str, BlobAccount]:
        return {"primary": self.primary, **({"secondary": self.secondary} if self.secondary else {})}


def iso_time(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat()


# Vaults

def create_vault(services: Services, tenant_id: str, name: str, redundancy: str) -> tuple[Vault, dict]:
    """Create a vault and its container; returns the vault and the agent credentials document."""
    if redundancy not in REDUNDANCIES:
        raise ServiceError(f"redundancy must be one of {', '.join(REDUNDANCIES)}, not {redundancy!r}")
    for label, value in (("tenant", tenant_id), ("vault name", name)):
        if not formats.NAME_ID.match(value):
            raise ServiceError(f"{label} {value!r} must be 1-63 letters, digits, '.', '_' or '-'")
    if any(v.name == name for v in services.index.list_vaults(tenant_id)):
        raise ServiceError(f"tenant {tenant_id} already has a vault named {name!r}")
    vault = Vault(
        id=secrets.token_hex(6), tenant_id=tenant_id, name=name, redundancy=redundancy,
        kdf={**crypto.KDF_PARAMS, "salt": base64.b64encode(crypto.new_salt()).decode()},
        signing_key=secrets.token_hex(32), created_at=iso_time(services.clock()),
    )
    _create_containers(services, vault)
    vault = services.index.create_vault(vault)
    return vault, agent_credentials(services, vault)


def _create_containers(services: Services, vault: Vault) -> None:
    services.primary.container(container_name(vault.id)).create()
    if vault.redundancy == "GRS":
        if services.secondary is None:
            raise ServiceError("GRS needs the paired region's storage (app setting SecondaryStorage)")
        services.secondary.container(container_name(vault.id)).create()


def find_vault(services: Services, tenant_id: str, name_or_id: str) -> Vault:
    for vault in services.index.list_vaults(tenant_id):
        if name_or_id in (vault.name, vault.id):
            return vault
    raise UnknownVault(f"tenant {tenant_id} has no vault named {name_or_id!r}")


def change_redundancy(services: Services, vault: Vault, redundancy: str) -> Vault:
    """LRS or GRS, changeable only until the vault's first backup (as in Azure Backup)."""
    if redundancy not in REDUNDANCIES:
        raise ServiceError(f"redundancy must be one of {', '.join(REDUNDANCIES)}, not {redundancy!r}")
    if vault.first_backup_at is not None:
        raise ServiceError(f"vault {vault.name} has backups since {vault.first_backup_at}: its redundancy "
                           f"({vault.redundancy}) can no longer change")
    vault.redundancy = redundancy
    _create_containers(services, vault)
    try:
        return services.index.replace_vault(vault)
    except PreconditionFailed:
        raise ServiceError(f"vault {vault.name} changed meanwhile (a first backup?); try again") from None


def agent_credentials(services: Services, vault: Vault) -> dict[str, Any]:
    """What an agent needs: create-only blob SAS for its own container, add-only queue SAS,
    the public KDF parameters and the signing key. Short-lived; renewed through the API."""
    expiry = services.clock() + AGENT_CREDENTIALS_TTL
    return {
        "kind": "skyvault-agent-credentials",
        "version": 1,
        "tenantId": vault.tenant_id,
        "vaultId": vault.id,
        "vaultName": vault.name,
        "redundancy": vault.redundancy,
        "kdf": vault.kdf,
        "signingKey": vault.signing_key,
        "apiUrl": services.api_url,
        "expiresAt": iso_time(expiry),
        "blobContainerUrl": services.primary.container_sas_url(container_name(vault.id), "c", expiry),
        "queueUrls": {q: services.queue_sas_url(q, "a", expiry) for q in AGENT_QUEUES},
    }


def _vault_for(services: Services, tenant_id: str, vault_id: str) -> Vault:
    vault = services.index.get_vault(tenant_id, vault_id)
    if vault is None:
        raise UnknownVault(f"no vault {vault_id} in tenant {tenant_id}")
    return vault


def _verified_message(services: Services, text: str | bytes, kind: str,
                      vault: Vault | None = None) -> tuple[dict, Vault]:
    """The message's body and its vault: `vault` when the caller has just read it (a request the
    vault's key signed), else looked up."""
    body = formats.parse_message(text)
    if body["type"] != kind:
        raise formats.MalformedMessage(f"a {body['type']!r} message on the {kind} queue")
    if vault is None or (vault.tenant_id, vault.id) != (body["tenantId"], body["vaultId"]):
        vault = _vault_for(services, body["tenantId"], body["vaultId"])
    formats.verify_message(body, bytes.fromhex(vault.signing_key))
    return body, vault


# Ingest

def ingest_chunks(services: Services, text: str | bytes, vault: Vault | None = None) -> dict[str, int]:
    """Verify and index the chunks a message declares, without downloading them.

    Idempotent: the index keeps the first record of a chunk (create-if-absent), so a
    replayed message changes nothing. A chunk whose blob contradicts the message is
    indexed as rejected (with the reason) so that a commit referencing it fails clearly.
    There is no look-up before the creates: almost every chunk is new, and a look-up
    would cost a Cosmos DB query per shard for nothing."""
    body, vault = _verified_message(services, text, "chunks", vault)
    container = services.primary.container(container_name(vault.id))
    counts = {"verified": 0, "rejected": 0, "already": 0}
    to_replicate = []

    def index(entry: dict) -> ChunkRecord | None:
        record = _verify_chunk(container, vault, entry, iso_time(services.clock()))
        return record if services.index.add_chunk(record) else None

    *others, last = {e["id"]: e for e in body["chunks"]}.values()
    # The chunks are verified INGEST_WORKERS at a time (each is a storage read and an index
    # write), the message's last one only after all others: once it is indexed, all are,
    # which is what an agent waiting for its messages checks.
    with ThreadPoolExecutor(INGEST_WORKERS) as pool:
        records = list(pool.map(index, others))
    records.append(index(last))
    for record in records:
        if record is None:
            counts["already"] += 1
        else:
            counts[record.state] += 1
            if record.state == "verified":
                to_replicate.append(chunk_blob_name(record.id))
    if to_replicate and vault.redundancy == "GRS":
        enqueue(services, REPLICATE_QUEUE, replicate_message(vault, blobs=to_replicate))
    return counts


def _verify_chunk(container: BlobContainer, vault: Vault, entry: dict, now: str) -> ChunkRecord:
    cid, name = entry["id"], chunk_blob_name(entry["id"])
    try:
        head, props = container.read_head(name, crypto.HEADER_BYTES)
    except BlobNotFound:
        raise ChunkNotUploaded(f"chunk blob {name} is not in vault {vault.id}") from None
    md5 = base64.b64encode(props.content_md5).decode() if props.content_md5 else ""
    reason = None
    if props.size != entry["size"]:
        reason = f"blob has {props.size} bytes, message declares {entry['size']}"
    elif md5 != entry["md5"]:
        reason = f"blob MD5 {md5 or '(none recorded)'} differs from the declared {entry['md5']}"
    else:
        try:
            crypto.parse_header(head)
        except crypto.BadEnvelope as e:
            reason = str(e)
    return ChunkRecord(id=cid, vault_id=vault.id, size=props.size, content_md5=md5,
                       state="rejected" if reason else "verified", recorded_at=now, reason=reason)


# Commit

def commit_point(services: Services, text: str | bytes, vault: Vault | None = None) -> RecoveryPoint:
    """Make a recovery point committed once every chunk it references is verified.

    Idempotent: a committed or failed point is returned unchanged. While chunks
    are still unverified the point stays pending and the same (signed) message
    is queued again with a growing delay; of concurrent copies of one commit,
    only the one that wins the point's ETag goes on, so copies never multiply.
    After COMMIT_MAX_CHECKS checks the point fails, naming how many chunks never came."""
    body, vault = _verified_message(services, text, "commit", vault)
    index = services.index
    try:  # create first: a commit is seen once far more often than again
        point = index.create_point(RecoveryPoint(
            id=body["pointId"], vault_id=vault.id, item=body["item"], state="pending",
            created_at=body["createdAt"], manifest_blob=formats.manifest_blob(body["pointId"]),
            refs_blob=formats.refs_blob(body["pointId"]), chunk_count=body["chunkCount"],
            stats=body["stats"]))
    except Conflict:
        point = index.get_point(vault.id, body["pointId"])
    if point.state != "pending":
        return point
    container = services.primary.container(container_name(vault.id))
    try:
        # The two reads at once: an unchanged backup's commit is little more than these.
        with ThreadPoolExecutor(1) as pool:
            header = pool.submit(container.read, point.manifest_blob, 0, crypto.HEADER_BYTES)
            refs_data = container.read(point.refs_blob)
            crypto.parse_header(header.result())
        refs = formats.decode_refs(refs_data)
    except BlobNotFound as e:
        return _finish_point(services, vault, point, "failed", f"missing blob: {e}")
    except (formats.MalformedMessage, crypto.BadEnvelope, UnicodeDecodeError) as e:
        return _finish_point(services, vault, point, "failed", f"bad point blob: {e}")
    if len(refs) != point.chunk_count:
        return _finish_point(services, vault, point, "failed",
                             f"reference list holds {len(refs)} chunks, the commit declares {point.chunk_count}")
    point.refs_digest = hashlib.sha256(refs_data).hexdigest()
    to_check, stored, point.checked_against = _chunks_to_check(services, vault, container, point, refs,
                                                                body.get("parentPointId"))
    missing, rejected = 0, []
    for _, record in referenced_records(services, vault.id, to_check):
        if record is None:
            missing += 1
        elif record.state != "verified":
            rejected.append(record)
        else:
            stored += record.size
    if rejected:
        return _finish_point(services, vault, point, "failed",
                             f"{len(rejected)} chunks were rejected, e.g. {rejected[0].id}: {rejected[0].reason}")
    if missing:
        return _recheck_later(services, vault, point, text, f"{missing} of {len(refs)} chunks")
    point.stats = {**point.stats, "storedBytes": stored}
    # The epoch read before the chunks were: if it rose meanwhile, no later point uses this one as a base.
    point.chunk_epoch = vault.chunk_epoch
    return _finish_point(services, vault, point, "committed", None)


def _chunks_to_check(services: Services, vault: Vault, container: BlobContainer, point: RecoveryPoint,
                     refs: list[str], parent_id: str | None) -> tuple[list[str], int, str | None]:
    """The referenced chunks a commit must look up, the stored bytes of those it need not, and
    the parent point that vouches for those (None when all must be looked up).

    All of them, unless the agent names a parent point committed in the vault's current chunk
    epoch: every chunk the parent references was verified then and still is (the epoch rises
    before any verified chunk stops being usable), so only the chunks this point adds are looked
    up, and those it drops, for their bytes. An unchanged backup looks up none: the commit costs
    what changed, not what the point references (docs/scaling.md)."""
    parent = services.index.get_point(vault.id, parent_id) if parent_id else None
    if (parent is None or parent.state != "committed" or parent.chunk_epoch != vault.chunk_epoch
            or parent.refs_digest is None or "storedBytes" not in parent.stats):
        return refs, 0, None
    if parent.refs_digest == point.refs_digest:
        return [], parent.stats["storedBytes"], parent.id
    try:
        data = container.read(parent.refs_blob)
        parent_refs = formats.decode_refs(data)
    except (BlobNotFound, formats.MalformedMessage, UnicodeDecodeError):
        return refs, 0, None
    if hashlib.sha256(data).hexdigest() != parent.refs_digest:
        return refs, 0, None
    new, old = set(refs), set(parent_refs)
    kept = parent.stats["storedBytes"]
    for _, record in referenced_records(services, vault.id, sorted(old - new)):
        if record is None or record.state != "verified":
            return refs, 0, None  # not what the epoch promises: check them all
        kept -= record.size
    return sorted(new - old), kept, parent.id


def commit_request(services: Services, vault: Vault, request: dict) -> dict:
    """HTTP entry of ingest_chunks and commit_point: the agent posts its signed commit message,
    with the signed chunks message of its last chunks if it has one, and learns at once whether
    the point committed, instead of waiting for queue polls. A point whose chunks are still
    being verified stays pending and is re-checked from the commit queue as usual. Idempotent,
    like the two handlers."""
    chunks, commit = request.get("chunks"), request.get("commit")
    if commit is None:
        raise ServiceError("the request holds no 'commit' message")
    for message in filter(None, (chunks, commit)):
        if not isinstance(message, dict):
            raise ServiceError("'commit' and 'chunks' must be signed messages (JSON objects)")
        if message.get("tenantId") != vault.tenant_id or message.get("vaultId") != vault.id:
            raise Forbidden(f"the {message.get('type')!r} message is not for vault {vault.id} "
                            f"of tenant {vault.tenant_id}")
    try:
        if chunks is not None:
            ingest_chunks(services, json.dumps(chunks), vault)
        return commit_point(services, json.dumps(commit), vault).to_doc()
    except formats.MalformedMessage as e:
        raise ServiceError(f"malformed message: {e}") from None
    except formats.BadSignature as e:
        raise Forbidden(str(e)) from None
    except ChunkNotUploaded as e:
        raise ServiceError(f"a declared chunk was not uploaded: {e}") from None


def referenced_records(services: Services, vault_id: str,
                       refs: list[str]) -> Iterator[tuple[str, ChunkRecord | None]]:
    """Each chunk id of a reference list with its index record (None when absent), looked up
    REFS_QUERY_BATCH at a time, so no more records than that are held at once."""
    for start in range(0, len(refs), REFS_QUERY_BATCH):
        batch = refs[start:start + REFS_QUERY_BATCH]
        records = services.index.get_chunks(vault_id, batch)
        for cid in batch:
            yield cid, records.get(cid)


def _recheck_later(services: Services, vault: Vault, point: RecoveryPoint, text: str | bytes,
                   missing: str) -> RecoveryPoint:
    if point.commit_checks >= COMMIT_MAX_CHECKS:
        return _finish_point(services, vault, point, "failed",
                             f"{missing} were never verified after {point.commit_checks} checks")
    point.commit_checks += 1
    point.reason = f"waiting for {missing} to be verified"
    try:
        point = services.index.replace_point(point)
    except PreconditionFailed:
        return services.index.get_point(vault.id, point.id)
    delay = min(2 ** (point.commit_checks - 1), COMMIT_RECHECK_MAX_S)
    enqueue(services, COMMIT_QUEUE, text if isinstance(text, str) else text.decode(), delay=delay)
    return point


def enqueue(services: Services, queue: str, text: str, delay: int = 0) -> None:
    """Queue a message for a function of this app: base64, as host.json's messageEncoding says."""
    services.queue(queue).send(base64.b64encode(text.encode()).decode(), visibility_timeout=delay)


def _finish_point(services: Services, vault: Vault, point: RecoveryPoint, state: str,
                  reason: str | None) -> RecoveryPoint:
    now = iso_time(services.clock())
    point.state, point.reason = state, reason
    if state == "committed":
        point.committed_at = now
    try:
        point = services.index.replace_point(point)
    except PreconditionFailed:
        # Another invocation finished it first; theirs stands.
        return services.index.get_point(vault.id, point.id)
    if state == "committed":
        _mark_first_backup(services, vault, now)
        services.index.add_usage_event(UsageEvent(
            id=f"point-{point.id}", vault_id=vault.id, kind="stored_bytes",
            quantity=point.stats["storedBytes"], at=now, point_id=point.id))
        if vault.redundancy == "GRS":
            enqueue(services, REPLICATE_QUEUE, replicate_message(
                vault, blobs=[point.manifest_blob, point.refs_blob], point_id=point.id))
            enqueue(services, REPLICATE_QUEUE, replicate_message(vault, point_id=point.id), delay=1)
    return point


def replicate_message(vault: Vault, *, blobs: list[str] | None = None, point_id: str | None = None,
                      attempt: int = 0) -> str:
    """A replicate queue message: copy `blobs` (chunks, or the blobs of point `point_id`), or with
    no blobs check whether point `point_id` is geo-protected. One message carries the chunks of
    one ingest message, so replication adds no message per chunk."""
    return json.dumps({"v": 1, "tenantId": vault.tenant_id, "vaultId": vault.id, "blobs": blobs or [],
                       "pointId": point_id, "attempt": attempt})


def raise_chunk_epoch(services: Services, vault: Vault) -> Vault:
    """Call before a verified chunk of `vault` stops being usable (found damaged, or purged):
    from then on no commit is checked against a point committed earlier (_chunks_to_check),
    so none passes the chunk unchecked. Returns the vault as now stored."""
    while True:
        vault.chunk_epoch += 1
        try:
            return services.index.replace_vault(vault)
        except PreconditionFailed:
            vault = _vault_for(services, vault.tenant_id, vault.id)


def _mark_first_backup(services: Services, vault: Vault, now: str) -> None:
    while vault.first_backup_at is None:
        vault.first_backup_at = now
        try:
            services.index.replace_vault(vault)
        except PreconditionFailed:
            vault = services.index.get_vault(vault.tenant_id, vault.id)


# Restore

def prepare_restore(services: Services, text: str | bytes) -> Job:
    """Queue trigger entry of create_restore_job. Idempotent on the job id the agent chose."""
    body, vault = _verified_message(services, text, "restore")
    return create_restore_job(services, vault, {"jobId": body["id"], "pointId": body["pointId"]})


def create_restore_job(services: Services, vault: Vault, request: dict) -> Job:
    """Create a restore job: a plan and short-lived read-only SAS for each region that holds
    the point (the paired region too for GRS vaults). Restores are free: no usage event is
    recorded. Idempotent on the job id the agent chose. Needs only the index, so it works
    while the primary region's storage is down."""
    job_id, point_id = request.get("jobId"), request.get("pointId")
    if not (isinstance(job_id, str) and formats.NAME_ID.match(job_id)):
        raise ServiceError("'jobId' must be 1-63 letters, digits, '.', '_' or '-'")
    if not (isinstance(point_id, str) and formats.POINT_ID.match(point_id)):
        raise ServiceError(f"'pointId' {str(point_id)[:80]!r} is not a recovery point id")
    existing = services.index.get_job(vault.id, job_id)
    if existing is not None:
        return existing
    now = services.clock()
    point = services.index.get_point(vault.id, point_id)
    job = Job(id=job_id, vault_id=vault.id, kind="restore", point_id=point_id, status="ready",
              created_at=iso_time(now))
    if point is None or point.state != "committed":
        job.status = "failed"
        job.reason = f"recovery point {point_id} is {'unknown' if point is None else point.state}, not committed"
    else:
        expiry = now + RESTORE_SAS_TTL
        regions = [{"region": "primary", "containerUrl": services.primary.container_sas_url(
            container_name(vault.id), "r", expiry), "complete": True}]
        if vault.redundancy == "GRS" and services.secondary is not None:
            regions.append({"region": "secondary", "containerUrl": services.secondary.container_sas_url(
                container_name(vault.id), "r", expiry), "complete": point.geo_protected_at is not None})
        job.plan = {"regions": regions, "manifestBlob": point.manifest_blob, "expiresAt": iso_time(expiry)}
    try:
        return services.index.create_job(job)
    except Conflict:
        return services.index.get_job(vault.id, job.id)


# HTTP API for agents (every request is signed with the vault's signing key)

def authenticate(services: Services, tenant_id: str, vault_id: str, method: str, path: str,
                 body: bytes, headers: dict[str, str]) -> Vault:
    vault = _vault_for(services, tenant_id, vault_id)
    try:
        formats.verify_request(bytes.fromhex(vault.signing_key), method, path, body,
                               {k.lower(): v for k, v in headers.items()}, services.clock())
    except formats.BadSignature as e:
        raise Forbidden(str(e)) from None
    return vault


def lookup_chunks(services: Services, vault: Vault, request: dict) -> dict:
    """Which of the given chunk ids the vault holds verified (for dedup), and which it
    rejected (so an agent waiting for its chunks stops waiting for those)."""
    ids = request.get("ids")
    if not isinstance(ids, list) or len(ids) > formats.LOOKUP_MAX_IDS or not all(
            isinstance(i, str) and formats.HEX_ID.match(i) for i in ids):
        raise ServiceError(f"'ids' must be a list of at most {formats.LOOKUP_MAX_IDS} hex chunk ids")
    found = services.index.get_chunks(vault.id, ids)
    return {"verified": sorted(cid for cid, r in found.items() if r.state == "verified"),
            "rejected": sorted(cid for cid, r in found.items() if r.state != "verified")}


def list_points(services: Services, vault: Vault, item: str | None) -> dict:
    return {"points": [p.to_doc() for p in services.index.list_points(vault.id, item)]}


def job_status(services: Services, vault: Vault, job_id: str) -> dict:
    job = services.index.get_job(vault.id, job_id)
    if job is None:
        raise NotFound(f"no job {job_id} in vault {vault.id}")
    return job.to_doc()


def record_key_check(services: Services, vault: Vault, request: dict) -> dict:
    """Keep the first agent's key check value; tell later agents whether their passphrase matches."""
    value = request.get("keyCheck")
    if not isinstance(value, str) or not formats.HEX_ID.match(value):
        raise ServiceError("'keyCheck' must be 64 hex digits")
    while True:
        stored = vault.kdf.get("keyCheck")
        if stored is not None:
            if stored != value:
                raise KeyMismatch("the passphrase does not match the one this vault was first used with")
            return {"status": "match"}
        vault.kdf = {**vault.kdf, "keyCheck": value}
        try:
            services.index.replace_vault(vault)
            return {"status": "recorded"}
        except PreconditionFailed:
            vault = _vault_for(services, vault.tenant_id, vault.id)


def renew_credentials(services: Services, vault: Vault) -> dict:
    return agent_credentials(services, vault)
