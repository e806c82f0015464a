"""Metering: usage events into daily usage per vault and item, exactly once, and a month of it as
the billing input (docs/design.md, "Metering").

Words:
- event: a metered fact (shared.domain.UsageEvent) with a deterministic id. Producers (ingest,
  commit, deletion and purge, garbage collection, restore, stop protection) queue them on the
  usage queue with `record`; delivery is at least once, and a producer that retries sends the
  same event again.
- ledger: the events the meter has counted, one document per id (the index's usage container).
- day: a vault's usage on one UTC day (shared.domain.UsageDay), the sums and latest states of
  the events of that day (an event's day is its `at`'s date). shared/service/bills.py reads
  them into a month's billing usage.

Exactly once: `meter` applies a message's events of one day in this order, each step
idempotent, so a crash after any write is finished by the redelivery and a duplicate is
never counted twice:
  1. read the day, then ask the ledger which of the events it holds (counted already);
  2. add the others that the day's `pending` does not name to the day, and name them in
     `pending`, in one ETag-checked write (a lost race starts again at 1);
  3. write their ledger entries;
  4. take their ids out of `pending` (ETag-checked).
A duplicate that reads the day after step 4 finds its ledger entry (written at 3, before);
one that reads it between 2 and 4 finds its id pending; one that read it before 2 loses the
race at 2. Daily states (an item's protection, a point's soft delete) are last-writer-wins by
event time, then id, and front-end sizes a maximum: applying them in any order gives one result.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable

from shared.domain import STORED_SIGN, ChunkRecord, UsageDay, UsageEvent, UsageKind, Vault, container_name
from shared.errors import Retryable
from shared.messages import UsageMessage, usage_messages
from shared.ports import Conflict, PreconditionFailed
from shared.service.context import UPDATE_ATTEMPTS, USAGE_QUEUE, Services, enqueue, iso_time, update
from shared.service.vaults import vault_for

ITEM_STATES = {UsageKind.POINT_COMMITTED: "protected", UsageKind.ITEM_RESUMED: "protected",
               UsageKind.ITEM_STOPPED: "stopped", UsageKind.ITEM_REMOVED: "removed"}
POINT_STATES = {UsageKind.POINT_SOFT_DELETED: "deleted", UsageKind.POINT_UNDELETED: "live",
                UsageKind.POINT_PURGED: "purged"}


# Producers

def record(services: Services, vault: Vault, events: Iterable[UsageEvent]) -> None:
    """Queue `events` of `vault` for the meter."""
    for message in usage_messages(vault.tenant_id, vault.id, events):
        enqueue(services, USAGE_QUEUE, message.to_json())


def stored_event(chunk: ChunkRecord) -> UsageEvent:
    """A chunk record's bytes are stored from when it is recorded (verified or rejected, its
    blob is in the container) until garbage collection deletes it (`purged_event`)."""
    return UsageEvent(id=f"stored-{chunk.id}-{chunk.lifetime}", vault_id=chunk.vault_id,
                      kind=UsageKind.CHUNK_STORED, quantity=chunk.size, at=chunk.lifetime)


def purged_event(chunk: ChunkRecord, at: str) -> UsageEvent:
    return UsageEvent(id=f"gc-{chunk.id}-{chunk.lifetime}", vault_id=chunk.vault_id,
                      kind=UsageKind.CHUNK_PURGED, quantity=chunk.size, at=at)


def resized_events(chunk: ChunkRecord, size: int) -> list[UsageEvent]:
    """A promoted replacement of another size: the old bytes freed, the new stored, named by the
    generation the promotion makes."""
    name = f"{chunk.id}-{chunk.lifetime}-g{chunk.generation + 1}"
    return [UsageEvent(id=f"unstored-{name}", vault_id=chunk.vault_id, kind=UsageKind.CHUNK_PURGED,
                       quantity=chunk.size, at=chunk.recorded_at),
            UsageEvent(id=f"restored-{name}", vault_id=chunk.vault_id, kind=UsageKind.CHUNK_STORED,
                       quantity=size, at=chunk.recorded_at)]


# The meter

@dataclass
class Metered:
    counted: int = 0
    duplicates: int = 0

    def __str__(self) -> str:
        return f"{self.counted} events counted, {self.duplicates} counted before"


def meter(services: Services, message: UsageMessage) -> str:
    """Count `message`'s events into their vault's days, each exactly once."""
    vault_for(services, message.tenant_id, message.vault_id)  # NotFound for a foreign or deleted vault
    by_day: dict[str, list[UsageEvent]] = defaultdict(list)
    for event in message.events:
        by_day[event.day].append(event)
    outcome = Metered()
    for day, events in sorted(by_day.items()):
        counted = _meter_day(services, message.vault_id, day, events)
        outcome.counted += counted
        outcome.duplicates += len(events) - counted
    return str(outcome)


def _change_day(services: Services, vault_id: str, day: str, change: Callable[[UsageDay], bool]) -> UsageDay | None:
    """Read the vault's `day` (a new one if absent), apply `change` and write it, ETag-checked or
    create-if-absent; on a lost race read again and apply `change` again. `change` returns
    whether anything needs writing. Returns the day as stored (None if absent and unchanged)."""
    index = services.index
    for _ in range(UPDATE_ATTEMPTS):
        stored = index.get_usage_day(vault_id, day)
        usage = stored or UsageDay(id=day, vault_id=vault_id)
        if not change(usage):
            return stored
        try:
            return index.replace_usage_day(usage) if stored else index.create_usage_day(usage)
        except (Conflict, PreconditionFailed):
            continue
    raise Retryable(f"gave up changing the usage of {vault_id} on {day}: {UPDATE_ATTEMPTS} concurrent changes in a row")


def _meter_day(services: Services, vault_id: str, day: str, events: list[UsageEvent]) -> int:
    index = services.index
    ids = [e.id for e in events]
    counted: set[str] = set()
    todo: list[UsageEvent] = []

    def count(usage: UsageDay) -> bool:
        nonlocal counted, todo
        counted = index.usage_events_present(vault_id, ids)  # after the day is read: see above
        pending = set(usage.pending)
        todo = [e for e in events if e.id not in counted and e.id not in pending]
        for event in todo:
            _add(usage, event)
        usage.pending = sorted(pending | {e.id for e in todo})
        return bool(todo)

    stored = _change_day(services, vault_id, day, count)
    index.add_usage_events([event for event in events if event.id not in counted])
    if stored is not None:
        update(stored, _unpend(set(ids)), index.replace_usage_day, lambda d: index.get_usage_day(d.vault_id, d.id))
    return len(todo)


def _unpend(ids: set[str]):
    def change(usage: UsageDay) -> bool:
        left = [i for i in usage.pending if i not in ids]
        if len(left) == len(usage.pending):
            return False
        usage.pending = left
        return True

    return change


def _later(change: list | None, at: str, eid: str) -> bool:
    return change is None or (at, eid) > (change[0], change[1])


def _add(usage: UsageDay, event: UsageEvent) -> None:
    usage.events += 1
    usage.stored_delta += STORED_SIGN.get(event.kind, 0) * event.quantity
    if event.kind == UsageKind.RESTORE_SERVED:
        usage.restores += 1
        usage.restored_bytes += event.quantity
    if event.kind in ITEM_STATES and event.item_id:
        item = usage.items.setdefault(event.item_id, {})
        state = ITEM_STATES[UsageKind(event.kind)]
        if _later(item.get("last"), event.at, event.id):
            item["last"] = [event.at, event.id, state]
        if state == "protected":
            item["protected"] = True  # protected at some moment of the day: the day pays its fee
        if event.front_end_bytes is not None:
            item["frontEnd"] = max(item.get("frontEnd", 0), event.front_end_bytes)
    if event.kind in POINT_STATES and event.point_id:
        point = usage.points.setdefault(event.point_id, {})
        if _later(point.get("last"), event.at, event.id):
            point["last"] = [event.at, event.id, POINT_STATES[UsageKind(event.kind)], event.quantity]


# Reconciliation

@dataclass
class Reading:
    vault_id: str
    day: str
    measured: int  # the bytes in the vault's primary container
    blobs: int
    metered: int  # the stored bytes the meter counted up to the end of the day
    pending: int  # events applied to the day whose ledger entry is not written yet

    @property
    def drift(self) -> int:
        return self.measured - self.metered


def reconcile(services: Services, vault: Vault) -> Reading:
    """Measure the bytes in `vault`'s primary container (every blob, referenced or not: an agent
    stores nothing for free by uploading what it never commits), compare them with the metered
    level and keep the reading in today's usage: billing adds what it finds beyond the level
    (shared/service/bills.py)."""
    now = services.clock()
    day = now.date().isoformat()
    measured = blobs = 0
    for _, size in services.primary.container(container_name(vault.id)).list_sizes():
        measured, blobs = measured + size, blobs + 1
    days = services.index.list_usage_days(vault.id, day)
    metered = sum(d.stored_delta for d in days)
    reading = {"bytes": measured, "blobs": blobs, "at": iso_time(now), "metered": metered}

    def keep(usage: UsageDay) -> bool:
        usage.measured = reading
        return True

    _change_day(services, vault.id, day, keep)
    pending = sum(len(d.pending) for d in days)
    return Reading(vault.id, day, measured, blobs, metered, pending)


def reconcile_all(services: Services) -> list[Reading]:
    return [reconcile(services, vault) for vault in services.index.list_all_vaults()]
