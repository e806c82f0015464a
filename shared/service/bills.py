"""Bills: a month of a vault's metered days (shared/service/metering.py) as billing's usage,
and a tenant's statement: the invoice (shared/billing.py) at the sheet that prices the month,
with the figures it came from and each item's unique and shared bytes (docs/design.md,
"Metering" and "Billing").

Words:
- level: a vault's stored bytes at a day's end, the sum of its days' stored deltas so far.
- reading: the reconciliation's measurement of every blob in the vault's primary container on
  a day. What it finds beyond the level then (blobs no event named: uploaded, never declared)
  is billed on top of the level from that day until the next reading.
- live bytes: what is billed as storage, the billed bytes less those soft-deleted points alone
  keep (billed by the soft-delete rule instead).
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Iterable

from shared import billing
from shared.billing import (Invoice, ItemDay, ItemUsage, Protection as BillProtection, SoftDeletedPoint, Usage,
                            VaultUsage)
from shared.domain import Redundancy, UsageDay, Vault
from shared.errors import Invalid, NotFound
from shared.service import footprint
from shared.service.context import Services


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
class _Carried:
    """What the days up to one carry to the next: the level, what the last reading found beyond
    it, the pending events seen, each item's state and each open soft-delete episode."""

    level: int = 0
    unmetered: int = 0  # the last reading's bytes beyond the metered level: blobs no event named
    pending: int = 0
    items: dict[str, _Item] = field(default_factory=dict)
    episodes: dict[str, _Episode] = field(default_factory=dict)
    closed: list[_Episode] = field(default_factory=list)

    def apply(self, usage: UsageDay) -> set[str]:
        """Take in one day; returns the items protected at some moment of it."""
        self.level += usage.stored_delta
        if usage.measured:
            self.unmetered = max(usage.measured["bytes"] - usage.measured["metered"], 0)
        self.pending += len(usage.pending)
        self._carry_points(usage, date.fromisoformat(usage.id))
        return self._carry_items(usage)

    def _carry_items(self, usage: UsageDay) -> set[str]:
        today = set()
        for name, change in usage.items.items():
            item = self.items.setdefault(name, _Item())
            if change.get("protected") or item.state == "protected":
                today.add(name)
            if "frontEnd" in change:
                item.front_end = change["frontEnd"]
            if change.get("last"):
                item.state = change["last"][2]
        return today

    def _carry_points(self, usage: UsageDay, day: date) -> None:
        for point_id, change in sorted(usage.points.items()):
            _, _, state, size = change["last"]
            open_episode = self.episodes.pop(point_id, None)
            if open_episode is not None:
                if state == "deleted":  # undeleted and deleted again on one day: one episode goes on
                    self.episodes[point_id] = open_episode
                    continue
                open_episode.ended_on = day
                self.closed.append(open_episode)
            elif state == "deleted":
                self.episodes[point_id] = _Episode(point_id, size, day)


@dataclass
class VaultMonth:
    """One vault's month as billing takes it, with the figures it came from."""

    usage: VaultUsage
    items: list[ItemUsage]
    metered: tuple[int, ...]  # the meter's stored bytes at each day's end
    measured: tuple[int | None, ...]  # the reconciliation's reading of each day, if any
    pending: int = 0


def vault_month(services: Services, vault: Vault, month: date, through: date | None = None) -> VaultMonth:
    """`vault`'s usage in `month` (its first day) from its metered days; with `through`, only
    the days up to it (the month so far: later days count as not yet come, stored nothing)."""
    days = month_days(month)
    last = min(days[-1], through) if through else days[-1]
    stored_days = services.index.list_usage_days(vault.id, last.isoformat())
    carried = _Carried()
    for usage in stored_days:
        if usage.id < days[0].isoformat():
            carried.apply(usage)
    in_month = {d.id: d for d in stored_days if d.id >= days[0].isoformat()}
    item_days: dict[str, list[ItemDay | None]] = {}
    stored, metered, measured = [], [], []
    restores = restored = 0
    for day in days:
        usage = in_month.get(day.isoformat())
        protected_today: set[str] = set()
        if usage is not None:
            protected_today = carried.apply(usage)
            restores += usage.restores
            restored += usage.restored_bytes
        held = sum(e.size for e in carried.episodes.values())
        stored.append(max(carried.level + carried.unmetered - held, 0) if day <= last else 0)
        metered.append(carried.level)
        measured.append(usage.measured["bytes"] if usage is not None and usage.measured else None)
        for name, item in carried.items.items():
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
        for e in sorted([*carried.closed, *carried.episodes.values()], key=lambda e: (e.deleted_on, e.point_id))
        if e.deleted_on <= last and (e.ended_on is None or e.ended_on > days[0]))
    vault_usage = VaultUsage(vault.id, Redundancy(vault.redundancy), tuple(stored), soft_deleted, restores, restored)
    item_usage = [ItemUsage(vault.id, name, tuple(column)) for name, column in sorted(item_days.items())
                  if any(column)]
    return VaultMonth(vault_usage, item_usage, tuple(metered), tuple(measured), carried.pending)


@dataclass
class Statement:
    """A month's invoice with the usage it priced: per vault the metered and measured stored
    bytes of its last day, the events still pending, and each item's unique and shared bytes
    now (shared/service/footprint.py)."""

    invoice: Invoice
    vaults: list[VaultMonth]
    footprints: dict[str, Any]
    through: date

    def to_doc(self) -> dict[str, Any]:
        usage = []
        for month in self.vaults:
            v = month.usage
            last = self.through.day - 1
            usage.append({"vaultId": v.vault_id, "redundancy": v.redundancy.value, "meteredBytes": month.metered[last],
                          "measuredBytes": month.measured[last], "pendingEvents": month.pending,
                          "restores": v.restores, "restoredBytes": v.restored_bytes,
                          "softDeleted": [{"pointId": p.point_id, "bytes": p.size, "deletedOn": p.deleted_on.isoformat(),
                                           "purgedOn": p.purged_on.isoformat() if p.purged_on else None}
                                          for p in v.soft_deleted],
                          "items": self.footprints.get(v.vault_id, [])})
        return {"invoice": self.invoice.to_doc(), "through": self.through.isoformat(), "usage": usage}


def statement(services: Services, tenant_id: str, month: date | None = None, vaults: Iterable[Vault] | None = None
              ) -> Statement:
    """The invoice of `month` (default: this month so far, through today) for the tenant's
    vaults (or `vaults`), at the sheet that prices that month."""
    today = services.clock().date()
    month = month or today.replace(day=1)
    days = month_days(month)
    if month > today:
        raise Invalid(f"month {month:%Y-%m} has not begun: there is no usage to bill")
    through = min(days[-1], today)
    chosen = list(vaults) if vaults is not None else services.index.list_vaults(tenant_id)
    months = [vault_month(services, vault, month, through) for vault in chosen]
    usage = Usage(tuple(m.usage for m in months), tuple(i for m in months for i in m.items))
    try:
        sheet = billing.sheet_for(month)
        bill = billing.invoice(usage, sheet, month)
    except (ValueError, NotFound) as e:
        raise Invalid(f"month {month:%Y-%m} cannot be billed: {e}") from None
    prints = {v.id: [f.to_doc() for f in footprint.footprint(services, v).items] for v in chosen}
    return Statement(bill, months, prints, through)


def parse_month(text: str) -> date:
    """A YYYY-MM month's first day; Invalid otherwise."""
    try:
        if not billing.SHEET_VERSION.match(text):
            raise ValueError
        return datetime.strptime(text, "%Y-%m").date()
    except (TypeError, ValueError):
        raise Invalid(f"month {str(text)[:20]!r} is not YYYY-MM") from None
