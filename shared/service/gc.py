"""Garbage collection: delete the chunks no recovery point references, in every region, in
phases over time, without ever blocking a backup or deleting what one is about to reference.

Words:
- reference set: the union of the reference lists of every point that is not being purged and
  did not fail (committed, soft-deleted or pending). Streamed: each list is sorted, fixed-width
  (65 bytes an id), read a page at a time and merged; nothing holds the whole set. If any list
  of a committed point cannot be read, or is not sorted, the collection is blocked (below).
- condemn: a verified chunk outside the reference set, recorded more than MIN_AGE ago and
  before every live backup run started, becomes `condemned` (with `condemned_at`). It stays
  whole; a look-up, a commit or the pass itself that finds it referenced makes it verified
  again (`revive`, ETag-checked).
- announcement: after a pass that condemned chunks, the vault's `gc_epoch` rises and the time
  is recorded (`gc.announcements`). An agent starting a backup after it forgets the chunks its
  cache knew (a look-up tells it the truth, and revives what it names).
- delete: a condemned chunk is deleted once an announcement made after its condemnation is
  older than the start of every live backup run: every run that could have learned it verified
  before it was condemned, or from a cache made before the announcement, has committed, failed
  or died (runs.RUN_TIMEOUT). The record becomes `deleting` (ETag-checked: a revival wins the
  race or loses it cleanly), its blob is deleted in the paired region then the primary, a usage
  event records the bytes, and the record is deleted. A crash leaves `deleting`; the next pass
  finishes it, even if a pending point names it again.
- orphan: a blob under `chunks/` without a record (a crashed run's undeclared upload; a copy
  the paired region kept), or a replacement blob `{id}.{nonce}` left behind: deleted once older
  than ORPHAN_AGE and older than the start of every live run.
- cycle: the passes from the first shard to the last (`vault.gc["cycle"]`, when it began).
  Resumable: a pass goes shard by shard (the first two hex digits) and records the last shard it
  finished in `vault.gc["cursor"]`; a pass out of time stops after a shard and the next resumes
  there. Each shard is visited once a cycle, so a chunk condemned in a cycle is deleted in a
  later one at the earliest.
- blocked: a pass found a reference list unreadable. Every chunk condemned in the current
  cycle is made verified again (what was condemned before the list was found bad may have been
  in it), the reason is recorded (`vault.gc["blocked"]`, reported by every sweep that meets
  it) and the next pass starts a new cycle: only what a cycle that read every list condemned
  is ever deleted.

The safety argument is in docs/design.md, "Garbage collection".
"""
from __future__ import annotations

import heapq
import itertools
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterator

from shared import formats
from shared.domain import ChunkRecord, ChunkState, PointState, RecoveryPoint, Vault, chunk_blob_name, container_name
from shared.ports import BlobContainer, BlobNotFound, PreconditionFailed
from shared.refs import RefsList
from shared.service import metering
from shared.service.context import Services, iso_time, update_chunk, update_vault
from shared.service.runs import live_runs

log = logging.getLogger("skyvault.gc")

MIN_AGE = timedelta(hours=1)  # a chunk younger than this is never condemned
ORPHAN_AGE = timedelta(hours=24)  # an unindexed blob younger than this is never deleted
REF_LINE = formats.REF_LINE
# Memory for the reference lists' pages, shared by all lists of a pass; a page is at least
# MIN_PAGE_LINES ids.
REFS_MEMORY = 64 << 20
MIN_PAGE_LINES, MAX_PAGE_LINES = 64, 16384
RECORDS_PAGE = 1000
ANNOUNCEMENTS_KEPT = 30
SHARDS = [f"{n:02x}" for n in range(256)]
CURSOR_EVERY = 16  # shards between two records of the cursor (and when a pass stops)


class Unreadable(Exception):
    """A reference list GC must read cannot be read: the pass deletes nothing."""


@dataclass
class GcReport:
    condemned: int = 0
    revived: int = 0
    deleted: int = 0
    bytes_freed: int = 0
    orphans_deleted: int = 0
    waiting: int = 0  # condemned chunks not yet deletable (a run that started before may use them)
    unannounced: int = 0  # of those, condemned after the last announcement: this pass announces
    finished: bool = False  # the pass reached the last shard
    skipped: str | None = None  # why the pass did nothing
    shards: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "shards"}


class RefsReader(RefsList):
    """The ids of one committed point's reference list, a page of ranged reads at a time
    (shared/refs.py); Unreadable for a bad id or an id not above the one before."""

    def __init__(self, container: BlobContainer, point: RecoveryPoint, page_lines: int):
        super().__init__(container, point.refs_blob, f"reference list of point {point.id}", page_lines,
                         error=Unreadable)
        self.point = point


class ReferenceStream:
    """The reference set, as one sorted stream of distinct ids, consumed shard by shard."""

    def __init__(self, readers: list[RefsReader], start: str):
        self._merged = heapq.merge(*(r.ids(start) for r in readers))
        self._next: str | None = None
        self._last = ""
        self._advance()

    def _advance(self) -> None:
        for cid in self._merged:
            if cid != self._last:
                self._next = self._last = cid
                return
        self._next = None

    def shard(self, shard: str) -> Iterator[str]:
        """The referenced ids starting with `shard` (shards asked in increasing order)."""
        while self._next is not None and self._next[:2] < shard:
            self._advance()
        while self._next is not None and self._next[:2] == shard:
            yield self._next
            self._advance()


def collect(services: Services, vault: Vault, deadline: float | None = None) -> GcReport:
    """One garbage-collection pass over `vault`, from its cursor, until the last shard or the
    `deadline` (time.monotonic()). Idempotent and safe to stop or crash at any step."""
    report = GcReport()
    now = services.clock()
    container = services.primary.container(container_name(vault.id))
    try:
        readers = _reference_readers(services, vault, container)
    except Unreadable as e:
        return _blocked(services, vault, e, report)
    horizon = _Horizon.of(services, vault, now)
    start = vault.gc.get("cursor", "")
    shards = [s for s in SHARDS if s > start] or SHARDS
    if not start:
        vault = update_vault(services, vault, _set_gc(cycle=iso_time(now))) or vault
    try:
        references = ReferenceStream(readers, shards[0])
        for shard in shards:
            if deadline is not None and time.monotonic() > deadline:
                break
            _collect_shard(services, vault, references.shard(shard), shard, horizon, report)
            report.shards.append(shard)
            if len(report.shards) % CURSOR_EVERY == 0:
                vault = update_vault(services, vault, _set_gc(cursor=shard)) or vault
        else:
            report.finished = True
        if not report.finished and report.shards:
            vault = update_vault(services, vault, _set_gc(cursor=report.shards[-1])) or vault
    except Unreadable as e:
        return _blocked(services, vault, e, report)
    if report.finished:
        vault = update_vault(services, vault, _set_gc(cursor="", blocked=None)) or vault
    if report.condemned or report.unannounced:
        _announce(services, vault, services.clock())
    return report


def _reference_readers(services: Services, vault: Vault, container: BlobContainer) -> list[RefsReader]:
    points = [p for p in services.index.list_points(vault.id)
              if p.purging_at is None and p.state != PointState.FAILED]
    page = page_lines(len(points))
    readers = []
    for point in points:
        try:
            readers.append(RefsReader(container, point, page))
        except BlobNotFound:
            current = services.index.get_point(vault.id, point.id)
            if current is None or current.purging_at is not None or current.state != PointState.COMMITTED:
                continue  # purged meanwhile, or a pending point that will fail for it
            raise Unreadable(f"the reference list of committed point {point.id} is missing") from None
    return readers


def page_lines(lists: int) -> int:
    """The ids a page of each of `lists` reference lists read at once holds: REFS_MEMORY shared
    by all, between MIN_PAGE_LINES and MAX_PAGE_LINES."""
    return max(MIN_PAGE_LINES, min(MAX_PAGE_LINES, REFS_MEMORY // REF_LINE // max(1, lists)))


def _blobs(container: BlobContainer, shard: str) -> Iterator[tuple[str, int, tuple[BlobContainer, str]]]:
    """The shard's blobs in `container`, chunk blobs and replacements, in id order, as merge
    entries (chunk id, 2, (container, blob name))."""
    prefix = f"chunks/{shard}/"
    for name in container.list(prefix):
        yield name[len(prefix):].split(".", 1)[0], 2, (container, name)


def _records(services: Services, vault: Vault, shard: str) -> Iterator[ChunkRecord]:
    after = shard
    while True:
        page = services.index.chunks_after(vault.id, after, RECORDS_PAGE)
        for record in page:
            if not record.id.startswith(shard):
                return
            yield record
        if len(page) < RECORDS_PAGE:
            return
        after = page[-1].id


def _collect_shard(services: Services, vault: Vault, referenced: Iterator[str], shard: str, horizon: "_Horizon",
                   report: GcReport) -> None:
    """One shard: its records, referenced ids and blobs in each region, merged in id order, so
    that no more than one id's worth of them is held at once."""
    name = container_name(vault.id)
    containers = [account.container(name) for account in services.regions().values()]
    streams = [((r.id, 0, r) for r in _records(services, vault, shard)), ((cid, 1, None) for cid in referenced)]
    streams += [_blobs(c, shard) for c in containers]
    for cid, group in itertools.groupby(heapq.merge(*streams, key=lambda t: (t[0], t[1])), key=lambda t: t[0]):
        entries = list(group)
        record = next((e[2] for e in entries if e[1] == 0), None)
        is_referenced = any(e[1] == 1 for e in entries)
        if record is not None:
            _collect_record(services, vault, record, is_referenced, horizon, report)
        for container, blob in (e[2] for e in entries if e[1] == 2):
            if blob != chunk_blob_name(cid) or (record is None and not is_referenced):
                _delete_orphan(container, blob, horizon, report)


def _collect_record(services: Services, vault: Vault, record: ChunkRecord, referenced: bool, horizon: "_Horizon",
                    report: GcReport) -> None:
    if record.state == ChunkState.DELETING:
        # Gone for every use, referenced or not: only a pending point can name it now (a commit
        # counts no `deleting` chunk), and it waits for the replacement finishing this allows.
        _delete(services, vault, record, report)
    elif referenced:
        if record.state == ChunkState.CONDEMNED and revive(services, record) is not None:
            report.revived += 1
    elif record.state == ChunkState.VERIFIED and horizon.old(record.recorded_at, MIN_AGE):
        stored = update_chunk(services, record, _condemn(iso_time(horizon.now)))
        if stored is not None and stored.state == ChunkState.CONDEMNED:
            report.condemned += 1
    elif record.state == ChunkState.CONDEMNED:
        condemned = datetime.fromisoformat(record.condemned_at)
        if horizon.cleared is not None and condemned <= horizon.cleared:
            _start_delete(services, vault, record, report)
        else:
            report.waiting += 1
            if horizon.announced is None or condemned > horizon.announced:
                report.unannounced += 1  # condemned by a pass that died before announcing it


@dataclass(frozen=True)
class _Horizon:
    """What a pass may touch, fixed when it starts (after it listed the points: docs/design.md,
    "Garbage collection"): `oldest_run`, the start of the oldest live run; `announced`, the
    newest announcement; `cleared`, the newest announcement that every live run started after
    (chunks condemned before it may be deleted)."""
    now: datetime
    oldest_run: datetime | None
    announced: datetime | None
    cleared: datetime | None

    @classmethod
    def of(cls, services: Services, vault: Vault, now: datetime) -> "_Horizon":
        oldest_run = min((datetime.fromisoformat(r.created_at) for r in live_runs(services, vault)), default=None)
        announcements = [datetime.fromisoformat(a) for a in vault.gc.get("announcements", [])]
        return cls(now=now, oldest_run=oldest_run, announced=max(announcements, default=None),
                   cleared=max((a for a in announcements if oldest_run is None or a < oldest_run), default=None))

    def old(self, when: str | datetime | None, age: timedelta) -> bool:
        """Whether `when` is more than `age` ago and before every live run started."""
        if when is None:
            return False
        moment = datetime.fromisoformat(when) if isinstance(when, str) else when
        return moment < self.now - age and (self.oldest_run is None or moment < self.oldest_run)


def _condemn(now: str):
    def change(r: ChunkRecord) -> bool:
        if r.state != ChunkState.VERIFIED:
            return False
        r.state, r.condemned_at = ChunkState.CONDEMNED, now
        return True

    return change


def revive(services: Services, record: ChunkRecord) -> ChunkRecord | None:
    """Make condemned `record` verified again (something references it); None if it is being
    deleted (too late: it is gone for every use)."""
    def change(r: ChunkRecord) -> bool:
        if r.state == ChunkState.DELETING:
            raise _TooLate
        if r.state != ChunkState.CONDEMNED:
            return False
        r.state, r.condemned_at = ChunkState.VERIFIED, None
        return True

    try:
        return update_chunk(services, record, change)
    except _TooLate:
        return None


class _TooLate(Exception):
    pass


def _start_delete(services: Services, vault: Vault, record: ChunkRecord, report: GcReport) -> None:
    def change(r: ChunkRecord) -> bool:
        if r.state != ChunkState.CONDEMNED:
            raise _TooLate  # revived meanwhile
        r.state, r.reason = ChunkState.DELETING, "garbage-collected: no recovery point referenced it"
        return True

    try:
        record = services.index.replace_chunk(record) if change(record) else record
    except (PreconditionFailed, _TooLate):
        return  # a revival won: it is verified again
    _delete(services, vault, record, report)


def _delete(services: Services, vault: Vault, record: ChunkRecord, report: GcReport) -> None:
    """Finish deleting `deleting` record: its blob in every region (the paired one first), the
    usage event, then the record."""
    name = chunk_blob_name(record.id)
    for account in reversed(list(services.regions().values())):
        account.container(container_name(vault.id)).delete(name)
    metering.record(services, vault, [metering.purged_event(record, iso_time(services.clock()))])
    try:
        services.index.delete_chunk(record)
    except PreconditionFailed:
        pass  # another pass deleted and an upload re-created it: the new record stands
    report.deleted += 1
    report.bytes_freed += record.size


def _delete_orphan(container: BlobContainer, name: str, horizon: _Horizon, report: GcReport) -> None:
    try:
        props = container.properties(name)
    except BlobNotFound:
        return
    if horizon.old(props.last_modified, ORPHAN_AGE):
        container.delete(name)
        report.orphans_deleted += 1


def _set_gc(**values):
    """Set keys of `vault.gc` (None removes one)."""
    def change(v: Vault) -> bool:
        merged = {**v.gc, **values}
        v.gc = {k: value for k, value in merged.items() if value is not None}
        return True

    return change


def _blocked(services: Services, vault: Vault, error: Unreadable, report: GcReport) -> GcReport:
    """A reference list could not be read: make every chunk this cycle condemned verified again
    (its condemnation may have missed that list's references), record why the collection is
    blocked, and start the next pass on a new cycle."""
    report.skipped = str(error)
    log.error("vault %s: garbage collection blocked, deleting nothing: %s", vault.id, error)
    since = vault.gc.get("cycle", "")
    for shard in SHARDS:
        for record in _records(services, vault, shard):
            if record.state == ChunkState.CONDEMNED and record.condemned_at >= since:
                if revive(services, record) is not None:
                    report.revived += 1
    update_vault(services, vault, _set_gc(cursor="", blocked={"at": iso_time(services.clock()), "reason": str(error)}))
    return report


def _announce(services: Services, vault: Vault, now: datetime) -> None:
    """Raise the GC epoch and record when: chunks condemned before it may be deleted once every
    live run started after it."""
    def change(v: Vault) -> bool:
        v.gc_epoch += 1
        kept = v.gc.get("announcements", [])[-(ANNOUNCEMENTS_KEPT - 1):]
        v.gc = {**v.gc, "announcements": [*kept, iso_time(now)]}
        return True

    update_vault(services, vault, change)
