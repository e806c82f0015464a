"""The HTTP API's use cases for agents: authentication of signed requests, the dedup look-up,
recovery points and their commit, restore jobs, key check, credential renewal, vault status
(with each item's missed backup, if any) and each item's schedule.

Every request is signed by a registered machine of the vault (shared.identity.sign_request);
machines.authenticate gives the vault and machine a request's signature proves, and every other
handler takes them."""
from __future__ import annotations

import dataclasses
import time
from datetime import datetime

from shared import formats
from shared.domain import ChunkState, Job, Machine, PointState, Protection, RecoveryPoint, Vault
from shared.errors import Forbidden, Invalid, NotFound
from shared.messages import (STATUS_MAX_ITEMS, ChunksMessage, CommitMessage, Credentials, CommitRequest, EpochAnswer,
                             ItemSchedule, ItemStatus, QueuedAnswer, RestoreMessage, parse_signed_message,
                             JobView, LookupAnswer, LookupRequest, PointView, RestorePlan, VaultStatus)
from shared.retention import missed_run
from shared.service import gc, machines
from shared.service.commit import check_creation_time, commit_point
from shared.service.context import COMMIT_QUEUE, INGEST_QUEUE, RESTORE_QUEUE, Services, enqueue
from shared.service.ingest import ChunkNotUploaded, ingest_chunks
from shared.service.policies import DEFAULT_POLICY_NAME, policies_of, show_policy
from shared.service.replication import replication_status

# What an HTTP commit may spend checking its point before the commit queue goes on with it: the
# agent's API timeout is 30 s, Azure's HTTP response limit 230 s.
HTTP_COMMIT_BUDGET_S = 15
# The message each queue an agent posts to takes (shared.service.context.AGENT_QUEUES).
AGENT_QUEUE_MESSAGES = {INGEST_QUEUE: ChunksMessage, COMMIT_QUEUE: CommitMessage, RESTORE_QUEUE: RestoreMessage}


def post_message(services: Services, vault: Vault, machine: Machine, queue: str, body: bytes) -> QueuedAnswer:
    """An agent's queue message, posted through the API: agents hold no queue SAS, because a
    storage account whose shared keys are off cannot issue one (user-delegation SAS are for
    blobs only), and because a request is refused the moment its machine is revoked. The message
    is checked as far as it can be before its handler runs: a queue agents post to, the queue's
    message type, its size and schema, and that it is this vault's and this machine's (the
    request's signature covers its bytes, so it is the machine's own); then queued as the
    Functions host reads it. Posting a message twice (a retried request) queues it twice: its
    handler is idempotent."""
    expected = AGENT_QUEUE_MESSAGES.get(queue)
    if expected is None:
        raise NotFound(f"no queue {queue!r} takes an agent's messages (only {', '.join(AGENT_QUEUE_MESSAGES)})")
    message = parse_signed_message(body, expected)
    if (message.tenant_id, message.vault_id, message.machine) != (vault.tenant_id, vault.id, machine.id):
        raise Forbidden(f"message {message.id} names tenant {message.tenant_id}, vault {message.vault_id} and "
                        f"machine {message.machine}, not the ones that sign this request")
    enqueue(services, queue, body.decode())
    return QueuedAnswer(message.id)


def lookup_chunks(services: Services, vault: Vault, request: LookupRequest) -> LookupAnswer:
    """Which of the given chunk ids the vault holds verified (for dedup), and which it
    rejected (so an agent waiting for its chunks stops waiting for those). A condemned chunk
    asked about is made verified again; one being garbage-collected is answered rejected, so the
    agent uploads a replacement of it."""
    found = services.index.get_chunks(vault.id, request.ids)
    for cid, record in found.items():
        if record.state == ChunkState.CONDEMNED:  # asked for again: live again (docs/design.md, "Garbage collection")
            found[cid] = gc.revive(services, record) or dataclasses.replace(record, state=ChunkState.DELETING)
    return LookupAnswer(verified=tuple(sorted(cid for cid, r in found.items() if r.state == ChunkState.VERIFIED)),
                        rejected=tuple(sorted(cid for cid, r in found.items() if r.state != ChunkState.VERIFIED)))


def point_view(point: RecoveryPoint) -> PointView:
    return PointView(id=point.id, vault_id=point.vault_id, item=point.item, state=PointState(point.state),
                     created_at=point.created_at, chunk_count=point.chunk_count, stats=point.stats,
                     committed_at=point.committed_at, reason=point.reason, geo_protected_at=point.geo_protected_at,
                     checked_against=point.checked_against, deleted_at=point.deleted_at,
                     deleted_reason=point.deleted_reason, purge_after=point.purge_after, machine=point.machine,
                     tags=tuple(point.tags))


def job_view(job: Job) -> JobView:
    return JobView(id=job.id, point_id=job.point_id, status=job.status, created_at=job.created_at,
                   plan=RestorePlan.from_doc(job.plan) if job.plan else None, reason=job.reason)


def list_points(services: Services, vault: Vault, item: str | None) -> list[PointView]:
    return [point_view(p) for p in services.index.list_points(vault.id, item)]


def commit_request(services: Services, vault: Vault, machine: Machine, request: CommitRequest) -> PointView:
    """HTTP entry of ingest_chunks and commit_point: the agent posts its signed commit message,
    with the signed chunks message of its last chunks if it has one, and learns at once whether
    the point committed, instead of waiting for queue polls. A point whose chunks are still
    being verified stays pending and is re-checked from the commit queue as usual. Idempotent,
    like the two handlers. Both messages are checked before either is handled: a refused
    commit ingests nothing."""
    for message in filter(None, (request.chunks, request.commit)):
        if (message.tenant_id, message.vault_id) != (vault.tenant_id, vault.id):
            raise Forbidden(f"the {message.TYPE!r} message is not for vault {vault.id} of tenant {vault.tenant_id}")
        if message.machine != machine.id:
            raise Forbidden(f"the {message.TYPE!r} message names machine {message.machine}, not the one that "
                            f"signed the request")
        machines.message_machine(services, vault, message, machine)
    check_creation_time(services, request.commit)
    if request.chunks is not None:
        try:
            ingest_chunks(services, request.chunks, vault)
        except ChunkNotUploaded as e:  # the agent's own upload is missing: retrying the request cannot help
            raise Invalid(f"a declared chunk was not uploaded: {e}") from None
    return point_view(commit_point(services, request.commit, vault, time.monotonic() + HTTP_COMMIT_BUDGET_S))


def job_status(services: Services, vault: Vault, machine: Machine, job_id: str) -> JobView:
    """A job the machine asked for: another machine's is answered as one that does not exist
    (its plan holds read SAS)."""
    job = services.index.get_job(vault.id, job_id)
    if job is None or job.machine not in (None, machine.id):
        raise NotFound(f"no job {job_id} in vault {vault.id}")
    return job_view(job)


def renew_credentials(services: Services, vault: Vault, machine: Machine) -> Credentials:
    """Fresh SAS for the (authenticated, so unrevoked) machine."""
    return machines.machine_credentials(services, vault, machine)


def chunk_epoch(vault: Vault) -> EpochAnswer:
    """What a backup asks first: the authenticated vault's record answers it, no other read."""
    return EpochAnswer(vault.chunk_epoch)


def item_statuses(services: Services, vault: Vault) -> tuple[list[ItemStatus], int]:
    """Each item of the vault (those with points or an assignment), by name: its policy, its
    newest committed point, and the run it missed at the services' clock (none for an item
    whose protection is stopped); the first
    STATUS_MAX_ITEMS, and how many were left off."""
    now = services.clock()
    policies = policies_of(vault)
    records = services.index.list_items(vault.id)
    assigned = {r.id: r.policy for r in records}
    stopped = {r.id for r in records if r.protection == Protection.STOPPED}  # takes no backups: misses none
    newest: dict[str, datetime | None] = dict.fromkeys(assigned)
    for point in services.index.list_points(vault.id):
        last = newest.setdefault(point.item)
        if point.state == PointState.COMMITTED:
            created_at = datetime.fromisoformat(point.created_at)
            newest[point.item] = created_at if last is None else max(last, created_at)
    names = sorted(newest)
    items = []
    for name in names[:STATUS_MAX_ITEMS]:
        policy_name = assigned.get(name, DEFAULT_POLICY_NAME)
        # created_at is the agent's clock: a point from a clock running fast counts as made now.
        last = newest[name] and min(newest[name], now)
        missed = None if name in stopped else missed_run(policies[policy_name], last, now)
        items.append(ItemStatus(item=name, policy=policy_name, last_point_at=last and last.isoformat(),
                                missed_run=missed and missed.isoformat()))
    return items, len(names) - len(items)


def vault_status(services: Services, vault: Vault) -> VaultStatus:
    items, left_off = item_statuses(services, vault)
    return VaultStatus(vault_id=vault.id, name=vault.name, tenant_id=vault.tenant_id, redundancy=vault.redundancy,
                       first_backup_at=vault.first_backup_at, replication=replication_status(services, vault),
                       chunk_epoch=vault.chunk_epoch, items=tuple(items), items_left_off=left_off)


def item_schedule(services: Services, vault: Vault, item: str) -> ItemSchedule:
    """When the item's policy backs it up, for the agent's timer: the policy its record names, or
    the default for an item without one (one not backed up yet included). Reads only, so
    idempotent. Forbidden for an item whose protection is stopped: every run would be refused."""
    if not formats.NAME_ID.match(item):
        raise Invalid(f"item {item[:70]!r} must be 1-63 letters, digits, '.', '_' or '-', starting with a letter "
                      f"or digit")
    record = services.index.get_item(vault.id, item)
    if record is not None and record.protection == Protection.STOPPED:
        raise Forbidden(f"item {item}: protection is stopped, so it takes no new backups to schedule "
                        f"(an operator resumes it with `skyvault protection resume {item}`)")
    policy_name = record.policy if record is not None else DEFAULT_POLICY_NAME
    policy = show_policy(vault, policy_name)
    return ItemSchedule(item=item, policy=policy_name, schedule=policy.schedule, time_zone=policy.time_zone)
