"""Commit: a recovery point becomes committed only once every chunk its reference list names is
verified; checked against the item's previous point when that one can vouch for its chunks.

Words:
- reference list: the plaintext list of chunk ids a point references (`points/{id}/refs`).
- parent: the item's previous point, named by the agent. Committed in the vault's current
  chunk epoch, it vouches that every chunk it references is still verified, so the commit looks
  up only the chunks that differ (docs/design.md, "Commit").
- re-check: a commit that finds chunks not yet verified is queued again with a growing delay.
- follow-ups: what committing a point sets off (first-backup mark, usage event, GRS copies and
  point check), redone by whoever finds the point committed without `follow_ups_at`.
"""
from __future__ import annotations

import hashlib
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Callable, Iterable, Iterator

from shared import crypto, formats, identity
from shared.domain import (ChunkRecord, ChunkState, PointState, Redundancy, RecoveryPoint, UsageEvent, UsageKind,
                           Vault, chunk_blob_name, container_name)
from shared.errors import Invalid
from shared.messages import CommitMessage, ReplicateMessage
from shared.ports import BlobContainer, BlobNotFound, Conflict, PreconditionFailed
from shared.refs import ADDED, DROPPED, RefsList, diff
from shared.service.context import (COMMIT_QUEUE, REPLICATE_QUEUE, Services, enqueue, iso_time, set_once,
                                    update_point)
from shared.service import metering
from shared.service.gc import revive
from shared.service.ingest import adopt_chunk
from shared.service.runs import end_run
from shared.service.machines import authorized_vault
from shared.service.vaults import mark_first_backup

REFS_QUERY_BATCH = 500
# A commit that arrives before its chunks are verified is checked again after 1, 2, 4 ...
# (at most COMMIT_RECHECK_MAX_S) seconds, up to COMMIT_MAX_CHECKS times (about 3 hours).
COMMIT_RECHECK_MAX_S = 60
COMMIT_MAX_CHECKS = 200
# An HTTP commit out of time hands its check to the commit queue; for CONTINUED_FOR (the
# sweep's idle time, after which the sweep takes a point whose message was lost) another HTTP
# commit of the point answers it pending at once.
CONTINUED = "(continued from the commit queue)"
CONTINUED_FOR = timedelta(minutes=10)
# From this check on, a commit still missing chunks looks for their blobs itself and adopts
# those it finds (an ingest message lost or poisoned), at most ADOPT_PER_CHECK a check.
ADOPT_AFTER_CHECKS = 3
ADOPT_PER_CHECK = 256
# Unusable chunks a commit looks for replacements of before it fails the point.
REPLACEMENT_PROBES = 16


def commit_point(services: Services, message: CommitMessage, vault: Vault | None = None,
                 deadline: float | None = None) -> RecoveryPoint:
    """Make a recovery point committed once every chunk it references is verified.

    Idempotent: a failed point, or a committed one whose follow-ups are done, is returned
    unchanged; a committed point whose follow-ups are not recorded done (an earlier delivery
    failed after committing it) gets them redone. While chunks are still unverified the point
    stays pending and the same (signed) message is queued again with a growing delay; of
    concurrent copies of one commit, only the one that wins the point's ETag goes on, so copies
    never multiply. After COMMIT_MAX_CHECKS checks the point fails, naming how many chunks
    never came. A check still running at `deadline` (time.monotonic; an HTTP commit's budget)
    is handed to the commit queue, and the point returned pending."""
    vault = authorized_vault(services, message, vault)
    check_creation_time(services, message)
    index = services.index
    now = iso_time(services.clock())
    try:  # create first: a commit is seen once far more often than again
        point = index.create_point(RecoveryPoint(
            id=message.point_id, vault_id=vault.id, item=message.item, state=PointState.PENDING,
            created_at=message.created_at, manifest_blob=formats.manifest_blob(message.point_id),
            refs_blob=formats.refs_blob(message.point_id), chunk_count=message.chunk_count,
            stats=dict(message.stats), parent_point_id=message.parent_point_id, received_at=now,
            checked_at=now, machine=message.machine, tags=list(message.tags)))
    except Conflict:
        point = index.get_point(vault.id, message.point_id)
    if point.state == PointState.COMMITTED and point.follow_ups_at is None:
        return follow_up(services, vault, point)
    if point.state != PointState.PENDING:
        return point
    if deadline is not None and _continued_lately(services, point):
        return point  # the commit queue has it: another HTTP commit would only repeat the work
    try:
        outcome = check_point(services, vault, point, message.parent_point_id, deadline)
    except OutOfTime:
        return _continue_later(services, vault, point, message)
    if isinstance(outcome, RecoveryPoint):
        return outcome
    return _recheck_later(services, vault, point, message, outcome)


def _continued_lately(services: Services, point: RecoveryPoint) -> bool:
    """Whether an HTTP commit handed this point's check to the commit queue less than
    CONTINUED_FOR ago."""
    return bool(point.reason and point.reason.endswith(CONTINUED) and point.checked_at
                and services.clock() - datetime.fromisoformat(point.checked_at) < CONTINUED_FOR)


def _continue_later(services: Services, vault: Vault, point: RecoveryPoint, message: CommitMessage) -> RecoveryPoint:
    """Hand a check that ran out of time to the commit queue at once (not a re-check: it does
    not count against COMMIT_MAX_CHECKS); of concurrent copies, only the one that stores the
    point queues it."""
    return _queue_again(services, vault, point, message, f"checking its {point.chunk_count} chunks {CONTINUED}",
                        lambda stored: 0)


def _queue_again(services: Services, vault: Vault, point: RecoveryPoint, message: CommitMessage, reason: str,
                 delay: Callable[[RecoveryPoint], int]) -> RecoveryPoint:
    """Store pending `point` with `reason` and queue its commit message again after `delay`
    (of the point as stored); a copy that loses the point's ETag queues nothing."""
    point.reason = reason
    point.checked_at = iso_time(services.clock())
    try:
        point = services.index.replace_point(point)
    except PreconditionFailed:
        return services.index.get_point(vault.id, point.id)
    enqueue(services, COMMIT_QUEUE, message.to_json(), delay=delay(point))
    return point


def check_creation_time(services: Services, message: CommitMessage) -> None:
    """A point's time is its machine's clock, and points list newest first: one dated in the
    future (beyond the clock skew the API allows) would list first for ever, so it is refused."""
    try:
        created = datetime.fromisoformat(message.created_at)
    except ValueError:
        created = None
    if created is None or created.tzinfo is None:
        raise Invalid(f"commit {message.point_id}: createdAt {message.created_at!r} is not an ISO 8601 time "
                      f"with its time zone")
    if created - services.clock() > identity.MAX_CLOCK_SKEW:
        raise Invalid(f"commit {message.point_id}: createdAt {message.created_at} is in the future (the service's "
                      f"clock is {iso_time(services.clock())}); check this machine's clock")


class OutOfTime(Exception):
    """A check ran past its deadline (an HTTP commit's budget): the commit queue goes on with it."""


class _ParentUnusable(Exception):
    """The parent cannot vouch after all (a chunk it dropped is no longer verified, or its list
    is not the one its digest names): everything is looked up."""


def _in_time(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise OutOfTime()


def check_point(services: Services, vault: Vault, point: RecoveryPoint, parent_id: str | None,
                deadline: float | None = None) -> RecoveryPoint | str:
    """Look up the chunks pending `point` references: the point as now stored once it is
    committed (follow-ups done) or failed, or, while some chunks are not verified yet, how many
    ("2 of 5 chunks"), with the point's reference-list fields set but not stored. The reference
    lists are streamed (shared/refs.py): the size of the point's is checked against its
    `chunkCount` before anything is read, and no more than a page of a list and a batch of
    records is held. OutOfTime past `deadline` (time.monotonic)."""
    container = services.primary.container(container_name(vault.id))
    try:
        # The two at once: an unchanged backup's commit is little more than these and one read.
        with ThreadPoolExecutor(1) as pool:
            header = pool.submit(container.read, point.manifest_blob, 0, crypto.HEADER_BYTES)
            refs = RefsList(container, point.refs_blob, "reference list")
            crypto.parse_header(header.result())
        if refs.lines != point.chunk_count:
            return finish_point(services, vault, point, PointState.FAILED,
                                f"reference list holds {refs.lines} chunks, the commit declares {point.chunk_count}")
        digest = hashlib.sha256()
        for n, _ in enumerate(refs.ids(digest=digest)):
            if n % refs.page_lines == 0:
                _in_time(deadline)
        point.refs_digest = digest.hexdigest()
    except BlobNotFound as e:
        return finish_point(services, vault, point, PointState.FAILED, f"missing blob: {e}")
    except (formats.MalformedMessage, crypto.BadEnvelope) as e:
        return finish_point(services, vault, point, PointState.FAILED, f"bad point blob: {e}")
    to_check, stored, point.checked_against = chunks_to_check(services, vault, container, point, refs, parent_id)
    try:
        tally = _tally(services, vault, point, to_check, stored, deadline)
    except _ParentUnusable:
        point.checked_against = None
        tally = _tally(services, vault, point, ((cid, ADDED) for cid in refs.ids()), 0, deadline)
    missing, stored, unusable, unusable_count, absent = tally
    adopted = []
    for cid in absent:
        record = adopt_chunk(services, vault, container, cid)
        if record is None:
            missing += 1
        elif record.state == ChunkState.VERIFIED:
            stored += record.size
            adopted.append(record)
        else:
            unusable.append(record)
            unusable_count += 1
    if adopted:
        # An earlier delivery maybe did not queue the usage of the chunks it adopted.
        metering.record(services, vault, [metering.stored_event(r) for r in adopted])
    if adopted and vault.redundancy == Redundancy.GRS:
        enqueue(services, REPLICATE_QUEUE, ReplicateMessage(
            vault.tenant_id, vault.id, blobs=tuple(chunk_blob_name(r.id) for r in adopted)).to_json())
    # A rejected or damaged chunk whose replacement is uploaded is one still to be verified.
    replaced = [r for r in unusable[:REPLACEMENT_PROBES] if any(container.list(chunk_blob_name(r.id) + "."))]
    if len(replaced) < unusable_count:
        bad = next(r for r in unusable if r not in replaced)
        return finish_point(services, vault, point, PointState.FAILED,
                            f"{unusable_count} chunks were rejected, e.g. {bad.id}: {bad.reason}")
    missing += len(replaced)
    if missing:
        return f"{missing} of {refs.lines} chunks"
    point.stats = {**point.stats, "storedBytes": stored}
    # The epoch read before the chunks were: if it rose meanwhile, no later point uses this one as a base.
    point.chunk_epoch = vault.chunk_epoch
    return finish_point(services, vault, point, PointState.COMMITTED, None)


def _tally(services: Services, vault: Vault, point: RecoveryPoint, to_check: Iterator[tuple[str, int]],
           stored: int, deadline: float | None) -> tuple[int, int, list[ChunkRecord], int, list[str]]:
    """Look up `to_check` (ids the point adds, and those it drops from its parent's `stored`
    bytes): (missing, stored bytes, the first unusable records, how many are unusable, absent
    ones to adopt). Held at most: a batch of records, REPLACEMENT_PROBES + 1 unusable ones and
    ADOPT_PER_CHECK absent ids."""
    missing, unusable_count, unusable, absent, recent = 0, 0, [], [], []
    for cid, side, record in _looked_up(services, vault.id, to_check, deadline):
        if side == DROPPED:
            if record is None or record.state != ChunkState.VERIFIED:
                raise _ParentUnusable()  # not what the epoch promises: check them all
            stored -= record.size
        elif record is None and point.commit_checks >= ADOPT_AFTER_CHECKS and len(absent) < ADOPT_PER_CHECK:
            absent.append(cid)
        elif record is None:
            missing += 1
        elif record.state == ChunkState.CONDEMNED and (revived := revive(services, record)) is not None:
            stored += revived.size  # referenced again: live again (docs/design.md, "Garbage collection")
        elif record.state != ChunkState.VERIFIED:
            unusable_count += 1
            if len(unusable) <= REPLACEMENT_PROBES:
                unusable.append(record)
        else:
            stored += record.size
            if point.received_at and record.lifetime > point.received_at:
                # Recorded since the point was received: maybe adopted by a delivery that died
                # before its usage (the meter counts an event once).
                recent.append(record)
                if len(recent) == REFS_QUERY_BATCH:
                    metering.record(services, vault, [metering.stored_event(r) for r in recent])
                    recent.clear()
    if recent:
        metering.record(services, vault, [metering.stored_event(r) for r in recent])
    return missing, stored, unusable, unusable_count, absent


def chunks_to_check(services: Services, vault: Vault, container: BlobContainer, point: RecoveryPoint,
                    refs: RefsList, parent_id: str | None) -> tuple[Iterator[tuple[str, int]], int, str | None]:
    """The referenced chunks a commit must look up (each id with ADDED, or DROPPED for one the
    parent references and this point does not, whose bytes come off), the stored bytes of the
    parent, and the parent point that vouches for the rest (None when all must be looked up).

    All of them, unless the agent names a parent point committed in the vault's current chunk
    epoch: every chunk the parent references was verified then and still is (the epoch rises
    before any verified chunk stops being usable), so only the chunks this point adds are looked
    up, and those it drops, for their bytes. An unchanged backup looks up none: the commit costs
    what changed, not what the point references (docs/scaling.md). The two lists are merged in
    one streamed pass; the parent's is checked against its digest on the way (_ParentUnusable
    at its end when it does not match)."""
    everything = ((cid, ADDED) for cid in refs.ids()), 0, None
    parent = services.index.get_point(vault.id, parent_id) if parent_id else None
    if (parent is None or parent.state != PointState.COMMITTED or parent.chunk_epoch != vault.chunk_epoch
            or parent.refs_digest is None or "storedBytes" not in parent.stats):
        return everything
    if parent.refs_digest == point.refs_digest:
        return iter(()), parent.stats["storedBytes"], parent.id
    try:
        parent_refs = RefsList(container, parent.refs_blob, f"reference list of parent {parent.id}")
    except (BlobNotFound, formats.MalformedMessage):
        return everything

    def merged() -> Iterator[tuple[str, int]]:
        digest = hashlib.sha256()
        try:
            yield from diff(refs.ids(), parent_refs.ids(digest=digest))
        except formats.MalformedMessage:
            raise _ParentUnusable() from None
        if digest.hexdigest() != parent.refs_digest:
            raise _ParentUnusable()
    return merged(), parent.stats["storedBytes"], parent.id


def _looked_up(services: Services, vault_id: str, tagged: Iterator[tuple[str, int]],
               deadline: float | None) -> Iterator[tuple[str, int, ChunkRecord | None]]:
    """Each (id, side) of `tagged` with its index record (None when absent), looked up
    REFS_QUERY_BATCH at a time; OutOfTime past `deadline` between two batches."""
    for batch in _batched(iter(tagged)):
        _in_time(deadline)
        records = services.index.get_chunks(vault_id, [cid for cid, _ in batch])
        for cid, side in batch:
            yield cid, side, records.get(cid)


def _batched(items: Iterator) -> Iterator[list]:
    while batch := list(itertools.islice(items, REFS_QUERY_BATCH)):
        yield batch


def referenced_records(services: Services, vault_id: str,
                       refs: Iterable[str]) -> Iterator[tuple[str, ChunkRecord | None]]:
    """Each chunk id of a reference list with its index record (None when absent), looked up
    REFS_QUERY_BATCH at a time, so no more records than that are held at once."""
    for cid, _, record in _looked_up(services, vault_id, ((cid, ADDED) for cid in refs), None):
        yield cid, record


def _recheck_later(services: Services, vault: Vault, point: RecoveryPoint, message: CommitMessage,
                   missing: str) -> RecoveryPoint:
    if point.commit_checks >= COMMIT_MAX_CHECKS:
        return finish_point(services, vault, point, PointState.FAILED,
                            f"{missing} were never verified after {point.commit_checks} checks")
    point.commit_checks += 1
    return _queue_again(services, vault, point, message, f"waiting for {missing} to be verified",
                        lambda stored: min(2 ** (stored.commit_checks - 1), COMMIT_RECHECK_MAX_S))


def finish_point(services: Services, vault: Vault, point: RecoveryPoint, state: PointState,
                 reason: str | None) -> RecoveryPoint:
    """Store pending `point` as committed (then do its follow-ups) or failed with `reason`."""
    now = iso_time(services.clock())
    point.state, point.reason, point.checked_at = state, reason, now
    if state == PointState.COMMITTED:
        point.committed_at = now
    try:
        point = services.index.replace_point(point)
    except PreconditionFailed:
        # Another invocation finished it first; theirs stands.
        return services.index.get_point(vault.id, point.id)
    end_run(services, vault.id, point.id, state)
    return follow_up(services, vault, point) if state == PointState.COMMITTED else point


def follow_up(services: Services, vault: Vault, point: RecoveryPoint) -> RecoveryPoint:
    """Do what committed `point` sets off, then record it done (`follow_ups_at`): the vault's
    first-backup mark, the usage event of its stored bytes, and for GRS the copy of its two
    blobs and its point check. Each part is idempotent (set once, an id-keyed event, copies
    that skip what is copied), so whoever finds the point committed without `follow_ups_at`
    (a redelivered commit, the sweep) redoes them all and nothing is counted twice. Returns
    the point as stored."""
    mark_first_backup(services, vault, point.committed_at)
    metering.record(services, vault, [committed_event(services, vault, point)])
    if vault.redundancy == Redundancy.GRS:
        enqueue(services, REPLICATE_QUEUE, ReplicateMessage(
            vault.tenant_id, vault.id, blobs=(point.manifest_blob, point.refs_blob), point_id=point.id).to_json())
        enqueue(services, REPLICATE_QUEUE,
                ReplicateMessage(vault.tenant_id, vault.id, point_id=point.id).to_json(), delay=1)
    return update_point(services, point, set_once("follow_ups_at", iso_time(services.clock()))) or point


def committed_event(services: Services, vault: Vault, point: RecoveryPoint) -> UsageEvent:
    """The usage event of committed `point`: its own two blobs' bytes are stored from now on
    (its chunks were counted when they were recorded), and its item is protected at the
    front-end size its agent reports (the bytes of the files it backed up)."""
    container = services.primary.container(container_name(vault.id))
    own = 0
    for blob in (point.manifest_blob, point.refs_blob):
        try:
            own += container.properties(blob).size
        except BlobNotFound:
            pass  # a commit checks both are there: only a purge that began since removes them
    front_end = point.stats.get("bytes_total")
    return UsageEvent(id=f"point-{point.id}", vault_id=vault.id, kind=UsageKind.POINT_COMMITTED, quantity=own,
                      at=point.committed_at, point_id=point.id, item_id=point.item,
                      front_end_bytes=front_end if isinstance(front_end, int) and front_end >= 0 else 0)
