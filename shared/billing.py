"""Billing: a tenant's invoice for one month as a pure function of the month's metered usage and
a versioned price sheet, in the model of Azure Backup's pricing (docs/design.md, "Billing").
Prices are data (shared/prices/{version}.json), never code; every invoice names its sheet.

Words:
- GB: the sheet's `gbBytes` bytes, 2^30 in every sheet so far (a GiB, as Azure meters backup
  storage). Sizes, tier bounds and storage are all counted in it: "50 GB" is exactly
  50 × gbBytes bytes.
- day: one UTC calendar day of the invoiced month; the usage holds one value per day.
- protected instance: an item on a day it is protected. Its front-end size is the data it
  protects that day, before compression and dedup.
- tier: the monthly instance fee of a front-end size: that of the first of the sheet's tiers
  whose `upToGb` the size does not exceed; above the last, `above.fee` for each `above.perGb`
  begun, counted from zero bytes (at 500: 501 GB is 2 units, 1000 GB 2, 1000 GB + 1 byte 3).
- stored bytes: what a vault stores after dedup and compression for its live points. A
  soft-deleted point's `size` is the bytes only it keeps stored, so no byte is counted twice.
- soft-delete age: a soft-deleted point's day count, 1 on the day it was soft-deleted.
- byte-days: bytes summed over the days of the month; / (gbBytes × days in the month) they
  are GB-months.

Rules:
- Instance fee, day by day: each day an item is protected costs the monthly fee of that day's
  size / the days in the month. A whole month at one size costs exactly its fee, an item that
  joins or leaves mid-month pays for its days, and one that crosses a tier boundary pays each
  tier for the days it spent in it. A stopped day (stop protection, retain data) pays no fee;
  the data it keeps is in its vault's stored bytes and pays for storage.
- Storage: a vault's live byte-days, as GB-months, at its redundancy's price per GB-month.
- Soft delete: a point soft-deleted on day D and purged on day P is stored on D .. P-1 (to the
  month's end if not purged). Its days of age 1 .. softDeleteFreeDays are free, later days
  are billed as storage at its vault's price. So a point purged within 14 days is free, and
  one kept soft-deleted 20 days pays for 6 (Azure: "free for 14 days; if you retain
  soft-deleted data for more than 14 days, you are charged for the extra days"). The age
  counts from D even when D was in an earlier month.
- Free: restores, their egress and storage transactions are lines at price 0, so the customer
  sees them.
- Money: every line's amount is computed exactly (as a fraction) and rounded half up to the
  cent, once; the total is the sum of the rounded lines. The GB-months a line shows are
  rounded half up to 6 places for reading; its amount comes from the exact byte-days.

A price sheet that breaks a rule is refused with a MalformedMessage (an Invalid) naming the
field by its dotted path, read with shared/jsonfields.py's FieldReader; usage `invoice` cannot
price (a day missing, a negative size, a vault given twice) is a ValueError, the caller's
mistake. Everything here is pure except `load_price_sheet`, which reads the package's file.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

from shared.domain import Redundancy
from shared.errors import NotFound
from shared.formats import MalformedMessage
from shared.jsonfields import MAX_TEXT, FieldReader

SHEET_SCHEMA = 1
INVOICE_SCHEMA = 1
PRICES_DIR = Path(__file__).parent / "prices"  # beside the package: the checkout and the function app alike
SHEET_VERSION = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])\Z")
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
MONEY = re.compile(r"(0|[1-9][0-9]{0,8})(\.[0-9]{1,8})?\Z")  # plain digits: no sign, exponent, NaN
CURRENCIES = ("USD", "EUR", "GBP")  # each has cents, the unit every amount is rounded to
GB_SIZES = (2 ** 30, 10 ** 9)
FREE_KINDS = ("restore", "egress", "transactions")  # a version 1 sheet has no price for these
MAX_TIERS, MAX_SOURCES, MAX_GB = 8, 20, 10 ** 9
MAX_SOFT_DELETE_FREE_DAYS = 180  # the longest soft-delete retention a vault can keep
CENT, SHOWN_PLACES = 2, 6
CSV_COLUMNS = ("month", "priceSheet", "currency", "kind", "vaultId", "itemId", "redundancy",
               "quantity", "unit", "unitPrice", "amount", "detail")


def _round_half_up(exact: Fraction, places: int) -> Decimal:
    """`exact` (never negative here) rounded half up to `places` decimal places."""
    scaled = math.floor(exact * 10 ** places + Fraction(1, 2))
    return Decimal(scaled).scaleb(-places)


def _text(amount: Decimal) -> str:
    return format(amount, "f")  # never an exponent: "0.0000001", not "1E-7"


# The price sheet

@dataclass(frozen=True)
class Tier:
    """A fee for a front-end size up to `up_to_gb` (and above the previous tier's bound)."""

    up_to_gb: int
    fee: Decimal


@dataclass(frozen=True)
class AboveTiers:
    """Above the last tier: `fee` for each `per_gb` begun, counted from zero bytes."""

    per_gb: int
    fee: Decimal


@dataclass(frozen=True)
class TierFee:
    """The monthly instance fee of one front-end size: its tier's label, the units it counts
    (1 in a tier; the `per_gb` units begun above the last) and the fee, units × the tier's."""

    tier: str
    units: int
    fee: Decimal


@dataclass(frozen=True)
class PriceSheet:
    """One version of the prices, in `currency`, for the months from `effective_from` (a first
    day of a month); `storage` is the price per GB-month by redundancy."""

    version: str
    currency: str
    effective_from: date
    gb_bytes: int
    tiers: tuple[Tier, ...]
    above: AboveTiers
    storage: dict[Redundancy, Decimal]
    soft_delete_free_days: int
    free: tuple[str, ...]
    note: str
    sources: tuple[str, ...]

    @classmethod
    def from_doc(cls, doc: Any) -> "PriceSheet":
        r = FieldReader(doc, "price sheet")
        r.only("v", "version", "currency", "effectiveFrom", "gbBytes", "protectedInstance", "storage",
               "softDeleteFreeDays", "free", "note", "sources")
        r.version("v", SHEET_SCHEMA)
        version = r.str("version", SHEET_VERSION)
        currency = r.one_of("currency", CURRENCIES)
        effective_from = _date(r, "effectiveFrom")
        if effective_from.day != 1:
            raise r.fail("effectiveFrom", f"is {effective_from}, not the first day of a month: a sheet prices whole months")
        gb_bytes = r.int("gbBytes", 1)
        if gb_bytes not in GB_SIZES:
            raise r.fail("gbBytes", f"is {gb_bytes}, not one of {', '.join(map(str, GB_SIZES))}")
        instance = r.nested("protectedInstance")
        instance.only("tiers", "above")
        tiers: list[Tier] = []
        for i, entry in enumerate(instance.list("tiers", MAX_TIERS, min_len=1)):
            t = _entry(instance, "tiers", i, entry)
            t.only("upToGb", "fee")
            up_to = t.int("upToGb", 1, MAX_GB)
            if tiers and up_to <= tiers[-1].up_to_gb:
                raise t.fail("upToGb", f"is {up_to}, not above the previous tier's {tiers[-1].up_to_gb}")
            tiers.append(Tier(up_to_gb=up_to, fee=_money(t, "fee")))
        a = instance.nested("above")
        a.only("perGb", "fee")
        above = AboveTiers(per_gb=a.int("perGb", 1, MAX_GB), fee=_money(a, "fee"))
        s = r.nested("storage")
        s.only(*Redundancy)
        storage = {redundancy: _money(s, redundancy.value) for redundancy in Redundancy}
        free_days = r.int("softDeleteFreeDays", 0, MAX_SOFT_DELETE_FREE_DAYS)
        free = r.list("free", len(FREE_KINDS), min_len=len(FREE_KINDS))
        if sorted(free, key=str) != sorted(FREE_KINDS):
            raise r.fail("free", f"must name {', '.join(FREE_KINDS)}, each once: "
                                 f"version {SHEET_SCHEMA} of the sheet has no price for them")
        note = r.str("note")
        sources = r.list("sources", MAX_SOURCES, min_len=1)
        for i, source in enumerate(sources):
            if not isinstance(source, str) or not source.strip() or len(source) > MAX_TEXT:
                raise r.fail(f"sources[{i}]", f"must be a title and address of at most {MAX_TEXT} characters")
        return cls(version=version, currency=currency, effective_from=effective_from, gb_bytes=gb_bytes,
                   tiers=tuple(tiers), above=above, storage=storage, soft_delete_free_days=free_days,
                   free=tuple(free), note=note, sources=tuple(sources))

    def to_doc(self) -> dict[str, Any]:
        return {"v": SHEET_SCHEMA, "version": self.version, "currency": self.currency,
                "effectiveFrom": self.effective_from.isoformat(), "gbBytes": self.gb_bytes,
                "protectedInstance": {
                    "tiers": [{"upToGb": t.up_to_gb, "fee": _text(t.fee)} for t in self.tiers],
                    "above": {"perGb": self.above.per_gb, "fee": _text(self.above.fee)}},
                "storage": {r.value: _text(price) for r, price in self.storage.items()},
                "softDeleteFreeDays": self.soft_delete_free_days, "free": list(self.free),
                "note": self.note, "sources": list(self.sources)}

    def tier_of(self, front_end_bytes: int) -> tuple[int, int]:
        """(the index of the size's tier, len(tiers) above the last; the units it counts)."""
        for index, tier in enumerate(self.tiers):
            if front_end_bytes <= tier.up_to_gb * self.gb_bytes:
                return index, 1
        return len(self.tiers), -(-front_end_bytes // (self.above.per_gb * self.gb_bytes))

    def instance_fee(self, front_end_bytes: int) -> TierFee:
        """The monthly fee of a protected instance of `front_end_bytes`."""
        if front_end_bytes < 0:
            raise ValueError(f"instance_fee: front-end size {front_end_bytes} is negative")
        index, units = self.tier_of(front_end_bytes)
        if index < len(self.tiers):
            return TierFee(tier=f"up to {self.tiers[index].up_to_gb} GB", units=1, fee=self.tiers[index].fee)
        return TierFee(tier=f"over {self.tiers[-1].up_to_gb} GB", units=units, fee=units * self.above.fee)


def _entry(r: FieldReader, name: str, index: int, value: Any) -> FieldReader:
    if not isinstance(value, dict):
        raise r.fail(f"{name}[{index}]", f"must be an object, not {type(value).__name__}")
    path = f"{r.path}.{name}[{index}]" if r.path else f"{name}[{index}]"
    return FieldReader(value, r.where, path)


def _money(r: FieldReader, name: str) -> Decimal:
    text = r.str(name, max_len=32)
    if text.startswith("-"):
        raise r.fail(name, f"is {text!r}: a price cannot be negative")
    if not MONEY.match(text):
        raise r.fail(name, f"is {text!r}, not an amount written as digits with an optional decimal point (\"0.0224\")")
    return Decimal(text)


def _date(r: FieldReader, name: str) -> date:
    text = r.str(name, ISO_DATE)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise r.fail(name, f"is {text!r}, not a calendar date") from None


def load_price_sheet(version: str) -> PriceSheet:
    """The price sheet `version` ("2026-12") from shared/prices/; NotFound if there is none, a
    MalformedMessage if its file breaks a rule or holds another version."""
    if not isinstance(version, str) or not SHEET_VERSION.match(version):
        raise NotFound(f"no price sheet {str(version)[:40]!r}: a version is YYYY-MM")
    path = PRICES_DIR / f"{version}.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"no price sheet {version!r} in {PRICES_DIR}") from None
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise MalformedMessage(f"price sheet {version}: not JSON ({e})") from None
    sheet = PriceSheet.from_doc(doc)
    if sheet.version != version:
        raise MalformedMessage(f"price sheet: file {path.name} holds version {sheet.version!r}")
    return sheet


def sheet_for(month: date) -> PriceSheet:
    """The price sheet that prices `month`: the newest whose version is not after the month.
    NotFound if none is."""
    wanted = month.strftime("%Y-%m")
    versions = sorted((p.stem for p in PRICES_DIR.glob("*.json") if SHEET_VERSION.match(p.stem)), reverse=True)
    for version in versions:
        if version <= wanted:
            return load_price_sheet(version)
    raise NotFound(f"no price sheet prices {wanted}: the first is {versions[-1] if versions else 'missing'}")


# The month's usage

class Protection(StrEnum):
    PROTECTED = "protected"  # backed up: pays the instance fee
    STOPPED = "stopped"  # stop protection, retain data: its points are kept, no fee


@dataclass(frozen=True)
class ItemDay:
    """One item on one day: its protection and, when protected, its front-end size."""

    protection: Protection
    front_end_bytes: int = 0


@dataclass(frozen=True)
class ItemUsage:
    """One item of a vault over the month: `days[n]` is day n + 1, None on a day it was not an
    item of the vault (before it joined, after it was removed)."""

    vault_id: str
    item_id: str
    days: tuple[ItemDay | None, ...]


@dataclass(frozen=True)
class SoftDeletedPoint:
    """A point soft-deleted on `deleted_on` (possibly before the month) that keeps `size` bytes
    stored until it is purged on `purged_on` (None: not purged by the month's end)."""

    point_id: str
    size: int
    deleted_on: date
    purged_on: date | None = None


@dataclass(frozen=True)
class VaultUsage:
    """One vault over the month: `stored_bytes[n]` its live stored bytes on day n + 1, every
    point soft-deleted on some day of the month, and its restores (count, bytes) and storage
    transactions, which are free."""

    vault_id: str
    redundancy: Redundancy
    stored_bytes: tuple[int, ...]
    soft_deleted: tuple[SoftDeletedPoint, ...] = ()
    restores: int = 0
    restored_bytes: int = 0
    transactions: int = 0


@dataclass(frozen=True)
class Usage:
    """A tenant's month: its vaults and the items of each."""

    vaults: tuple[VaultUsage, ...]
    items: tuple[ItemUsage, ...] = ()


# The invoice

@dataclass(frozen=True)
class TierDays:
    """Days an item was protected at one tier and unit count, and that size's monthly fee."""

    tier: str
    units: int
    fee: Decimal
    days: int


@dataclass(frozen=True)
class InstanceLine:
    """An item's instance fee: its protected days by tier, its stopped days (no fee)."""

    kind: ClassVar[str] = "protectedInstance"
    vault_id: str
    item_id: str
    days_protected: int
    days_stopped: int
    tiers: tuple[TierDays, ...]
    amount: Decimal

    def to_doc(self) -> dict[str, Any]:
        return {"kind": self.kind, "vaultId": self.vault_id, "itemId": self.item_id,
                "daysProtected": self.days_protected, "daysStopped": self.days_stopped,
                "tiers": [{"tier": t.tier, "units": t.units, "fee": _text(t.fee), "days": t.days} for t in self.tiers],
                "amount": _text(self.amount)}


@dataclass(frozen=True)
class StorageLine:
    """A vault's `storage` (live data), `softDeleted` (beyond the free days) or
    `softDeletedFree` (within them, at price 0)."""

    kind: str
    vault_id: str
    redundancy: Redundancy
    byte_days: int
    gb_months: Decimal
    unit_price: Decimal
    amount: Decimal

    def to_doc(self) -> dict[str, Any]:
        return {"kind": self.kind, "vaultId": self.vault_id, "redundancy": self.redundancy.value,
                "byteDays": self.byte_days, "gbMonths": _text(self.gb_months),
                "unitPrice": _text(self.unit_price), "amount": _text(self.amount)}


@dataclass(frozen=True)
class FreeLine:
    """A vault's restores (count), their egress (bytes) or storage transactions, at price 0."""

    kind: str
    vault_id: str
    quantity: int
    unit: str
    unit_price: ClassVar[Decimal] = Decimal("0")
    amount: ClassVar[Decimal] = Decimal("0.00")

    def to_doc(self) -> dict[str, Any]:
        return {"kind": self.kind, "vaultId": self.vault_id, "quantity": self.quantity, "unit": self.unit,
                "unitPrice": _text(self.unit_price), "amount": _text(self.amount)}


Line = InstanceLine | StorageLine | FreeLine


@dataclass(frozen=True)
class Invoice:
    """A month's invoice: per vault (by id) its items' lines (by id), its storage lines, its
    free lines; `total` is the sum of the lines' rounded amounts."""

    month: date
    days: int
    price_sheet: str
    currency: str
    gb_bytes: int
    lines: tuple[Line, ...]
    total: Decimal

    def to_doc(self) -> dict[str, Any]:
        return {"v": INVOICE_SCHEMA, "month": self.month.strftime("%Y-%m"), "days": self.days,
                "priceSheet": self.price_sheet, "currency": self.currency, "gbBytes": self.gb_bytes,
                "lines": [line.to_doc() for line in self.lines], "total": _text(self.total)}

    def to_csv(self) -> str:
        return invoice_csv(self.to_doc())


def invoice_csv(doc: dict[str, Any]) -> str:
    """An invoice document (`Invoice.to_doc`, or the service's answer to an agent) as CSV: one
    row per line and a last `total` row; each row names the month, sheet and currency."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    context = {"month": doc["month"], "priceSheet": doc["priceSheet"], "currency": doc["currency"]}
    for line in doc["lines"]:
        writer.writerow(context | _csv_row(line))
    writer.writerow(context | {"kind": "total", "amount": doc["total"]})
    return out.getvalue()


def _units(units: int) -> str:
    return f", {units} units" if units > 1 else ""


def _csv_row(line: dict[str, Any]) -> dict[str, str]:
    """One line's row, from its document."""
    row = {"kind": line["kind"], "vaultId": line["vaultId"], "itemId": line.get("itemId", ""),
           "redundancy": line.get("redundancy", ""), "amount": line["amount"]}
    if line["kind"] == InstanceLine.kind:
        parts = [f"{t['tier']}{_units(t['units'])}: {t['days']} days at {t['fee']}" for t in line["tiers"]]
        parts.append(f"stopped: {line['daysStopped']} days")
        return row | {"quantity": str(line["daysProtected"]), "unit": "days", "unitPrice": "",
                      "detail": "; ".join(parts)}
    if "gbMonths" in line:
        return row | {"quantity": line["gbMonths"], "unit": "GB-months", "unitPrice": line["unitPrice"],
                      "detail": f"{line['byteDays']} byte-days"}
    return row | {"quantity": str(line["quantity"]), "unit": line["unit"], "unitPrice": line["unitPrice"],
                  "detail": "free"}


def _days_of(month: date) -> int:
    if month.day != 1:
        raise ValueError(f"invoice: month must be the first day of a month, not {month}")
    return monthrange(month.year, month.month)[1]


def _check_bytes(what: str, values: tuple[int, ...], days: int) -> None:
    if len(values) != days:
        raise ValueError(f"invoice: {what} holds {len(values)} days, not the month's {days}")
    for n, value in enumerate(values):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"invoice: {what} on day {n + 1} is {value!r}, not a count of bytes")


def _check(usage: Usage, month: date, days: int) -> None:
    last_day = month + timedelta(days=days - 1)
    vault_ids = set()
    for vault in usage.vaults:
        where = f"vault {vault.vault_id!r}"
        if vault.vault_id in vault_ids:
            raise ValueError(f"invoice: {where} is given twice")
        vault_ids.add(vault.vault_id)
        if not isinstance(vault.redundancy, Redundancy):
            raise ValueError(f"invoice: {where} has redundancy {vault.redundancy!r}, not one of {', '.join(Redundancy)}")
        _check_bytes(f"{where}'s stored bytes", vault.stored_bytes, days)
        for name in ("restores", "restored_bytes", "transactions"):
            if getattr(vault, name) < 0:
                raise ValueError(f"invoice: {where}'s {name} is negative")
        point_ids = set()
        for p in vault.soft_deleted:
            if p.point_id in point_ids:
                raise ValueError(f"invoice: {where}'s soft-deleted point {p.point_id!r} is given twice")
            point_ids.add(p.point_id)
            if p.size < 0:
                raise ValueError(f"invoice: {where}'s soft-deleted point {p.point_id!r} has a negative size")
            if p.deleted_on > last_day:
                raise ValueError(f"invoice: {where}'s point {p.point_id!r} was soft-deleted after the month")
            if p.purged_on is not None and p.purged_on < p.deleted_on:
                raise ValueError(f"invoice: {where}'s point {p.point_id!r} was purged before it was soft-deleted")
    item_ids = set()
    for item in usage.items:
        where = f"item {item.item_id!r} of vault {item.vault_id!r}"
        if (item.vault_id, item.item_id) in item_ids:
            raise ValueError(f"invoice: {where} is given twice")
        item_ids.add((item.vault_id, item.item_id))
        if item.vault_id not in vault_ids:
            raise ValueError(f"invoice: {where} names a vault the usage does not hold")
        if len(item.days) != days:
            raise ValueError(f"invoice: {where} holds {len(item.days)} days, not the month's {days}")
        for n, day in enumerate(item.days):
            if day is not None and (not isinstance(day, ItemDay) or not isinstance(day.protection, Protection)
                                    or not isinstance(day.front_end_bytes, int) or day.front_end_bytes < 0):
                raise ValueError(f"invoice: {where} on day {n + 1} is {day!r}, not a protection and a size")


def _instance_line(item: ItemUsage, sheet: PriceSheet, days: int) -> InstanceLine:
    fees: dict[tuple[int, int], tuple[TierFee, int]] = {}
    stopped = 0
    for day in item.days:
        if day is None:
            continue
        if day.protection is Protection.STOPPED:
            stopped += 1
            continue
        key = sheet.tier_of(day.front_end_bytes)
        fee, count = fees.get(key, (sheet.instance_fee(day.front_end_bytes), 0))
        fees[key] = (fee, count + 1)
    tiers = tuple(TierDays(tier=fee.tier, units=fee.units, fee=fee.fee, days=count)
                  for _, (fee, count) in sorted(fees.items()))
    exact = sum((Fraction(t.fee) * t.days for t in tiers), Fraction(0)) / days
    return InstanceLine(vault_id=item.vault_id, item_id=item.item_id, days_protected=sum(t.days for t in tiers),
                        days_stopped=stopped, tiers=tiers, amount=_round_half_up(exact, CENT))


def _soft_deleted_byte_days(vault: VaultUsage, month: date, days: int, free_days: int) -> tuple[int, int]:
    """(free byte-days, billable byte-days) of the vault's soft-deleted points in the month."""
    free = billable = 0
    for point in vault.soft_deleted:
        for n in range(days):
            day = month + timedelta(days=n)
            if day < point.deleted_on or point.purged_on is not None and day >= point.purged_on:
                continue
            if (day - point.deleted_on).days + 1 <= free_days:
                free += point.size
            else:
                billable += point.size
    return free, billable


def _storage_line(kind: str, vault: VaultUsage, byte_days: int, price: Decimal, sheet: PriceSheet,
                  days: int) -> StorageLine:
    gb_months = Fraction(byte_days, sheet.gb_bytes * days)
    return StorageLine(kind=kind, vault_id=vault.vault_id, redundancy=vault.redundancy, byte_days=byte_days,
                       gb_months=_round_half_up(gb_months, SHOWN_PLACES), unit_price=price,
                       amount=_round_half_up(gb_months * Fraction(price), CENT))


def _vault_lines(vault: VaultUsage, sheet: PriceSheet, month: date, days: int) -> list[Line]:
    price = sheet.storage[vault.redundancy]
    lines: list[Line] = [_storage_line("storage", vault, sum(vault.stored_bytes), price, sheet, days)]
    free, billable = _soft_deleted_byte_days(vault, month, days, sheet.soft_delete_free_days)
    if free or billable:
        lines.append(_storage_line("softDeleted", vault, billable, price, sheet, days))
        lines.append(_storage_line("softDeletedFree", vault, free, Decimal("0"), sheet, days))
    lines.append(FreeLine(kind="restore", vault_id=vault.vault_id, quantity=vault.restores, unit="restores"))
    lines.append(FreeLine(kind="egress", vault_id=vault.vault_id, quantity=vault.restored_bytes, unit="bytes"))
    lines.append(FreeLine(kind="transactions", vault_id=vault.vault_id, quantity=vault.transactions,
                          unit="transactions"))
    return lines


def invoice(usage: Usage, sheet: PriceSheet, month: date) -> Invoice:
    """The invoice of `usage` in `month` (its first day) at `sheet`'s prices; pure and
    deterministic. Raises ValueError for a month before the sheet takes effect, or usage that
    does not describe the month: a vault, item or point given twice, an item of a vault it does
    not hold, a day missing or extra, a negative size or count, a point soft-deleted after the
    month or purged before it was soft-deleted."""
    days = _days_of(month)
    if month < sheet.effective_from:
        raise ValueError(f"invoice: price sheet {sheet.version} takes effect on {sheet.effective_from}, after {month}")
    _check(usage, month, days)
    lines: list[Line] = []
    for vault in sorted(usage.vaults, key=lambda v: v.vault_id):
        items = sorted((i for i in usage.items if i.vault_id == vault.vault_id), key=lambda i: i.item_id)
        lines.extend(_instance_line(item, sheet, days) for item in items)
        lines.extend(_vault_lines(vault, sheet, month, days))
    return Invoice(month=month, days=days, price_sheet=sheet.version, currency=sheet.currency,
                   gb_bytes=sheet.gb_bytes, lines=tuple(lines), total=sum((l.amount for l in lines), Decimal("0.00")))
