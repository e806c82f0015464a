"""Metering: usage events into daily usage per vault and item, exactly once, and a month of it as
the billing input (docs/design.md, "Metering").

Words:
- event: a metered fact (shared.domain.UsageEvent) with a deterministic id. Producers (ingest,
  commit, deletion and purge, garbage collection, restore, stop protection) queue them on the
  usage queue with `record`; delivery is at least once, and a producer that retries sends the
  same event again.
- ledger: the events the meter has counted, one document per id (the index's usage container).
- day: a vault's usage on one UTC day (shared.domain.UsageDay), the sums and latest states of
  the events of that day (an event's day is its `at`'s date).

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

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable

from shared.billing import ItemDay, ItemUsage, Protection as BillProtection, SoftDeletedPoint, Usage, VaultUsage
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


def _meter_day(services: Services, vault_id: str, day: str, events: list[UsageEvent]) -> int:
    index = services.index
    ids = [e.id for e in events]
    for _ in range(UPDATE_ATTEMPTS):
        stored = index.get_usage_day(vault_id, day)
        counted = index.usage_events_present(vault_id, ids)
        pending = set(stored.pending) if stored else set()
        todo = [e for e in events if e.id not in counted and e.id not in pending]
        if not todo:
            break
        usage = stored or UsageDay(id=day, vault_id=vault_id)
        for event in todo:
            _add(usage, event)
        usage.pending = sorted(pending | {e.id for e in todo})
        try:
            stored = index.replace_usage_day(usage) if usage.etag else index.create_usage_day(usage)
            break
        except (Conflict, PreconditionFailed):
            continue
    else:
        raise Retryable(f"gave up metering {vault_id} on {day}: {UPDATE_ATTEMPTS} concurrent changes in a row")
    fresh = [e for e in events if e.id not in counted]
    for event in fresh:
        index.add_usage_event(event)
    mine = set(ids)
    if stored is not None:
        update(stored, _unpend(mine), index.replace_usage_day, lambda d: index.get_usage_day(d.vault_id, d.id))
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

    def to_doc(self) -> dict[str, Any]:
        return {"vaultId": self.vault_id, "day": self.day, "measuredBytes": self.measured, "blobs": self.blobs,
                "meteredBytes": self.metered, "driftBytes": self.drift, "pending": self.pending}


def reconcile(services: Services, vault: Vault) -> Reading:
    """Measure the bytes in `vault`'s primary container (every blob, referenced or not: an agent
    stores nothing for free by uploading what it never commits), compare them with the metered
    level and keep the reading in today's usage, which billing then takes for the day when it is
    the greater."""
    now = services.clock()
    day = now.date().isoformat()
    measured = blobs = 0
    for _, size in services.primary.container(container_name(vault.id)).list_sizes():
        measured, blobs = measured + size, blobs + 1
    days = services.index.list_usage_days(vault.id, day)
    metered = sum(d.stored_delta for d in days)
    reading = {"bytes": measured, "blobs": blobs, "at": iso_time(now), "metered": metered}

    def change(usage: UsageDay) -> bool:
        usage.measured = reading
        return True

    for _ in range(UPDATE_ATTEMPTS):
        current = services.index.get_usage_day(vault.id, day)
        if current is not None:
            update(current, change, services.index.replace_usage_day,
                   lambda d: services.index.get_usage_day(d.vault_id, d.id))
            break
        try:
            services.index.create_usage_day(UsageDay(id=day, vault_id=vault.id, measured=reading))
            break
        except Conflict:
            continue
    pending = sum(len(d.pending) for d in days)
    return Reading(vault.id, day, measured, blobs, metered, pending)


def reconcile_all(services: Services) -> list[Reading]:
    return [reconcile(services, vault) for vault in services.index.list_all_vaults()]


# A month of usage: the billing input

def month_days(month: date) -> list[date]:
    return [month.replace(day=d) for d in range(1, calendar.monthrange(month.year, month.month)[1] + 1)]


@dataclass
class _Item:
    state: str | None = None  # protected, stopped, removed; None before its first event
    front_end: int = 0


@dataclass
class _Episode:
    point_id: str
    size: int
    deleted_on: date
    ended_on: date | None = None


@dataclass
class VaultMonth:
    """One vault's month as billing takes it, with the figures it came from."""

    usage: VaultUsage
    items: list[ItemUsage]
    metered: tuple[int, ...]  # the meter's stored bytes at each day's end
    measured: tuple[int | None, ...]  # the reconciliation's reading of each day, if any
    pending: int = 0
    notes: list[str] = field(default_factory=list)


def vault_month(services: Services, vault: Vault, month: date, through: date | None = None) -> VaultMonth:
    """`vault`'s usage in `month` (its first day) from its metered days; with `through`, only
    the days up to it (the month so far: later days count as not yet come, stored nothing)."""
    days = month_days(month)
    last = min(days[-1], through) if through else days[-1]
    stored_days = {d.id: d for d in services.index.list_usage_days(vault.id, last.isoformat())}
    level = 0
    items: dict[str, _Item] = {}
    item_days: dict[str, list[ItemDay | None]] = {}
    episodes: dict[str, _Episode] = {}
    closed: list[_Episode] = []
    stored, metered, measured = [], [], []
    pending = restores = restored = 0
    for usage in (d for key, d in sorted(stored_days.items()) if key < days[0].isoformat()):
        level += usage.stored_delta
        _carry_items(items, usage, None)
        _carry_points(episodes, closed, usage, date.fromisoformat(usage.id))
        pending += len(usage.pending)
    for day in days:
        usage = stored_days.get(day.isoformat()) if day <= last else None
        protected_today: set[str] = set()
        if usage is not None:
            level += usage.stored_delta
            protected_today = _carry_items(items, usage, protected_today)
            _carry_points(episodes, closed, usage, day)
            restores += usage.restores
            restored += usage.restored_bytes
            pending += len(usage.pending)
        reading = usage.measured["bytes"] if usage is not None and usage.measured else None
        total = max(level, reading or 0)
        held = sum(e.size for e in episodes.values())
        stored.append(max(total - held, 0) if day <= last else 0)
        metered.append(level)
        measured.append(reading)
        for name, item in items.items():
            column = item_days.setdefault(name, [None] * (day.day - 1))
            if day > last or item.state is None:
                column.append(None)
            elif item.state == "protected" or name in protected_today:
                column.append(ItemDay(BillProtection.PROTECTED, item.front_end))
            elif item.state == "stopped":
                column.append(ItemDay(BillProtection.STOPPED))
            else:
                column.append(None)
    soft_deleted = tuple(
        SoftDeletedPoint(e.point_id, e.size, e.deleted_on, e.ended_on)
        for e in sorted([*closed, *episodes.values()], key=lambda e: (e.deleted_on, e.point_id))
        if e.deleted_on <= last and (e.ended_on is None or e.ended_on > days[0]))
    vault_usage = VaultUsage(vault.id, vault.redundancy, tuple(stored), soft_deleted, restores, restored)
    item_usage = [ItemUsage(vault.id, name, tuple(column)) for name, column in sorted(item_days.items())
                  if any(column)]
    return VaultMonth(vault_usage, item_usage, tuple(metered), tuple(measured), pending)


def _carry_items(items: dict[str, _Item], usage: UsageDay, protected_today: set[str] | None) -> set[str]:
    today = set()
    for name, change in usage.items.items():
        item = items.setdefault(name, _Item())
        if change.get("protected") or item.state == "protected":
            today.add(name)
        if "frontEnd" in change:
            item.front_end = change["frontEnd"]
        if change.get("last"):
            item.state = change["last"][2]
    return today


def _carry_points(episodes: dict[str, _Episode], closed: list[_Episode], usage: UsageDay, day: date) -> None:
    for point_id, change in sorted(usage.points.items()):
        _, _, state, size = change["last"]
        open_episode = episodes.pop(point_id, None)
        if open_episode is not None:
            if state == "deleted":  # undeleted and deleted again on one day: one episode goes on
                episodes[point_id] = open_episode
                continue
            open_episode.ended_on = day
            closed.append(open_episode)
        elif state == "deleted":
            episodes[point_id] = _Episode(point_id, size, day)


def tenant_usage(services: Services, tenant_id: str, month: date, vault_ids: Iterable[str] = (),
                 through: date | None = None) -> tuple[Usage, list[VaultMonth]]:
    """A tenant's usage in `month` for billing.invoice, over its vaults (or those named)."""
    wanted = set(vault_ids)
    months = [vault_month(services, vault, month, through) for vault in services.index.list_vaults(tenant_id)
              if not wanted or vault.id in wanted or vault.name in wanted]
    return Usage(tuple(m.usage for m in months), tuple(i for m in months for i in m.items)), months


def today(services: Services) -> date:
    return services.clock().date()


def current_month(services: Services) -> date:
    return today(services).replace(day=1)


def previous_day(day: date) -> date:
    return day - timedelta(days=1)


def parse_month(text: str) -> date:
    return datetime.strptime(text, "%Y-%m").date()
