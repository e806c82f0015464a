"""Billing (shared/billing.py): golden invoices worked out by hand (the arithmetic beside each
expected value), the tier boundaries in bytes, the rounding rule, a February, the price sheet's
strict parsing, and the invoice's JSON and CSV."""
from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import billing
from shared.billing import (CSV_COLUMNS, FreeLine, InstanceLine, ItemDay, ItemUsage, PriceSheet, Protection,
                            SoftDeletedPoint, StorageLine, TierDays, TierFee, Usage, VaultUsage, invoice,
                            load_price_sheet)
from shared.domain import Redundancy
from shared.errors import NotFound
from shared.formats import MalformedMessage
from tests.documents import edited

GB = 2 ** 30  # the sheet's gbBytes
CENT = Decimal("0.01")
DEC = date(2026, 12, 1)  # 31 days
SHEET = load_price_sheet("2026-12")
LRS, GRS = Redundancy.LRS, Redundancy.GRS


def protected(size: int) -> ItemDay:
    return ItemDay(Protection.PROTECTED, size)


STOPPED = ItemDay(Protection.STOPPED)


def days(*runs: tuple[int, object]) -> tuple:
    """A month's days from runs of (count, value): days((9, None), (22, protected(20 * GB)))."""
    return tuple(value for count, value in runs for _ in range(count))


def d(day: int, month: int = 12, year: int = 2026) -> date:
    return date(year, month, day)


def free_lines(vault_id: str, restores: int = 0, restored: int = 0, transactions: int = 0) -> list[FreeLine]:
    return [FreeLine("restore", vault_id, restores, "restores"), FreeLine("egress", vault_id, restored, "bytes"),
            FreeLine("transactions", vault_id, transactions, "transactions")]


# The golden December 2026

DECEMBER = Usage(
    vaults=(
        VaultUsage("vault-b", GRS, stored_bytes=days((31, 600 * GB)),
                   soft_deleted=(SoftDeletedPoint("p-november", 4 * GB, deleted_on=d(25, 11)),),
                   transactions=678),
        VaultUsage("vault-a", LRS, stored_bytes=days((9, 100 * GB), (22, 400 * GB)),
                   soft_deleted=(SoftDeletedPoint("p-purged-after-10-days", 3 * GB, d(5), purged_on=d(15)),
                                 SoftDeletedPoint("p-kept-20-days", 2 * GB, d(3), purged_on=d(23))),
                   restores=2, restored_bytes=5 * GB, transactions=12345),
    ),
    items=(
        # joins on 10 December
        ItemUsage("vault-a", "laptop", days((9, None), (22, protected(20 * GB)))),
        # stop protection, retain data, on 16 December: its data stays in vault-a's stored bytes
        ItemUsage("vault-a", "server", days((15, protected(120 * GB)), (16, STOPPED))),
        # crosses 50 GB on 11 December and 500 GB on 26 December
        ItemUsage("vault-b", "database", days((10, protected(50 * GB)), (15, protected(50 * GB + 1)),
                                              (6, protected(500 * GB + 1)))),
        ItemUsage("vault-b", "fileshare", days((31, protected(1000 * GB + 1)))),
    ),
)

DECEMBER_LINES = (
    # 5 × 22 / 31 = 3.548…
    InstanceLine("vault-a", "laptop", days_protected=22, days_stopped=0,
                 tiers=(TierDays("up to 50 GB", 1, Decimal("5"), 22),), amount=Decimal("3.55")),
    # 10 × 15 / 31 = 4.838…; the 16 stopped days pay no fee
    InstanceLine("vault-a", "server", days_protected=15, days_stopped=16,
                 tiers=(TierDays("up to 500 GB", 1, Decimal("10"), 15),), amount=Decimal("4.84")),
    # (9 × 100 + 22 × 400) GB-days = 9700 GB-days; / 31 = 312.9032258… GB-months; × 0.0224 = 7.009…
    StorageLine("storage", "vault-a", LRS, byte_days=9700 * GB, gb_months=Decimal("312.903226"),
                unit_price=Decimal("0.0224"), amount=Decimal("7.01")),
    # p-kept-20-days: soft-deleted 3 .. 22 December, ages 1 .. 20; ages 15 .. 20 (17 .. 22 December)
    # are billable: 6 days × 2 GB = 12 GB-days; / 31 = 0.3870967… GB-months; × 0.0224 = 0.00867…
    StorageLine("softDeleted", "vault-a", LRS, byte_days=12 * GB, gb_months=Decimal("0.387097"),
                unit_price=Decimal("0.0224"), amount=Decimal("0.01")),
    # p-purged-after-10-days: 5 .. 14 December, 10 days × 3 GB = 30 GB-days, all free;
    # p-kept-20-days: its first 14 days × 2 GB = 28 GB-days. 58 / 31 = 1.8709677…
    StorageLine("softDeletedFree", "vault-a", LRS, byte_days=58 * GB, gb_months=Decimal("1.870968"),
                unit_price=Decimal("0"), amount=Decimal("0.00")),
    *free_lines("vault-a", restores=2, restored=5 * GB, transactions=12345),
    # (5 × 10 + 10 × 15 + 2 × 10 × 6) / 31 = 320 / 31 = 10.322…
    InstanceLine("vault-b", "database", days_protected=31, days_stopped=0,
                 tiers=(TierDays("up to 50 GB", 1, Decimal("5"), 10), TierDays("up to 500 GB", 1, Decimal("10"), 15),
                        TierDays("over 500 GB", 2, Decimal("20"), 6)), amount=Decimal("10.32")),
    # 1000 GB + 1 byte: 3 units of 500 GB begun, 3 × 10, the whole month
    InstanceLine("vault-b", "fileshare", days_protected=31, days_stopped=0,
                 tiers=(TierDays("over 500 GB", 3, Decimal("30"), 31),), amount=Decimal("30.00")),
    # 600 GB × 31 days / 31 = 600 GB-months × 0.0448 = 26.88
    StorageLine("storage", "vault-b", GRS, byte_days=600 * 31 * GB, gb_months=Decimal("600.000000"),
                unit_price=Decimal("0.0448"), amount=Decimal("26.88")),
    # p-november, soft-deleted 25 November (age 1), is 7 on 1 December and 14 on 8 December:
    # 9 .. 31 December billable, 23 days × 4 GB = 92 GB-days; / 31 = 2.9677419…; × 0.0448 = 0.1329…
    StorageLine("softDeleted", "vault-b", GRS, byte_days=92 * GB, gb_months=Decimal("2.967742"),
                unit_price=Decimal("0.0448"), amount=Decimal("0.13")),
    # 1 .. 8 December free: 8 × 4 GB = 32 GB-days; / 31 = 1.0322580…
    StorageLine("softDeletedFree", "vault-b", GRS, byte_days=32 * GB, gb_months=Decimal("1.032258"),
                unit_price=Decimal("0"), amount=Decimal("0.00")),
    *free_lines("vault-b", transactions=678),
)


def test_the_golden_december():
    bill = invoice(DECEMBER, SHEET, DEC)
    assert bill.lines == DECEMBER_LINES
    assert (bill.month, bill.days, bill.price_sheet, bill.currency) == (DEC, 31, "2026-12", "USD")
    # 3.55 + 4.84 + 7.01 + 0.01 + 10.32 + 30.00 + 26.88 + 0.13
    assert bill.total == Decimal("82.74")


def test_a_stopped_item_pays_no_fee_but_its_data_pays_for_storage():
    stopped_all_month = Usage(vaults=(VaultUsage("v", LRS, days((31, 50 * GB))),),
                              items=(ItemUsage("v", "old", days((31, STOPPED))),))
    bill = invoice(stopped_all_month, SHEET, DEC)
    assert bill.lines[0] == InstanceLine("v", "old", 0, 31, (), Decimal("0.00"))
    assert bill.lines[1].amount == Decimal("1.12")  # 50 GB-months × 0.0224
    assert bill.total == Decimal("1.12")


def test_a_vault_without_soft_deleted_data_has_no_soft_delete_lines():
    purged_before_the_month = SoftDeletedPoint("p", GB, d(1, 11), purged_on=d(1))
    bill = invoice(Usage(vaults=(VaultUsage("v", GRS, days((31, 0)), (purged_before_the_month,)),)), SHEET, DEC)
    assert [line.kind for line in bill.lines] == ["storage", "restore", "egress", "transactions"]
    assert bill.total == Decimal("0.00")


@pytest.mark.parametrize("deleted_on, purged_on, free_days, billable_days", [
    (d(1), d(1), 0, 0),      # purged on the day it was deleted (soft delete disabled): never stored
    (d(1), d(15), 14, 0),    # 14 days: all free
    (d(1), d(16), 14, 1),    # the 15th day is the first billed
    (d(1), None, 14, 17),    # not purged: 1 .. 31 December, 17 days beyond the first 14
    (d(18, 11), d(3), 1, 1),  # age 14 on 1 December, 15 on 2 December, purged on the 3rd
    (d(31), None, 1, 0),
])
def test_soft_deleted_days_are_free_for_the_first_14_days_of_each_point(deleted_on, purged_on, free_days,
                                                                        billable_days):
    point = SoftDeletedPoint("p", 31 * GB, deleted_on, purged_on)  # 31 GB: one day is one GB-month
    lines = invoice(Usage(vaults=(VaultUsage("v", LRS, days((31, 0)), (point,)),)), SHEET, DEC).lines
    found = {line.kind: line for line in lines if isinstance(line, StorageLine)}
    if free_days + billable_days == 0:
        assert "softDeleted" not in found
        return
    assert found["softDeletedFree"].byte_days == free_days * 31 * GB
    assert found["softDeleted"].byte_days == billable_days * 31 * GB
    assert found["softDeleted"].gb_months == billable_days  # 31 GB a day / 31 days
    assert found["softDeleted"].amount == (Decimal("0.0224") * billable_days).quantize(CENT, ROUND_HALF_UP)


# Tiers: the boundaries are exact in bytes

@pytest.mark.parametrize("size, fee", [
    (0, TierFee("up to 50 GB", 1, Decimal("5"))),
    (50 * GB, TierFee("up to 50 GB", 1, Decimal("5"))),
    (50 * GB + 1, TierFee("up to 500 GB", 1, Decimal("10"))),
    (500 * GB, TierFee("up to 500 GB", 1, Decimal("10"))),
    (500 * GB + 1, TierFee("over 500 GB", 2, Decimal("20"))),   # 2 units of 500 GB begun
    (501 * GB, TierFee("over 500 GB", 2, Decimal("20"))),
    (1000 * GB, TierFee("over 500 GB", 2, Decimal("20"))),
    (1000 * GB + 1, TierFee("over 500 GB", 3, Decimal("30"))),
    (1001 * GB, TierFee("over 500 GB", 3, Decimal("30"))),
    (5000 * GB, TierFee("over 500 GB", 10, Decimal("100"))),
])
def test_the_instance_fee_at_the_tier_boundaries(size, fee):
    assert SHEET.instance_fee(size) == fee
    whole_month = Usage(vaults=(VaultUsage("v", LRS, days((31, 0))),), items=(ItemUsage("v", "i", days((31, protected(size)))),))
    assert invoice(whole_month, SHEET, DEC).lines[0].amount == fee.fee  # a whole month is exactly the fee


def test_a_gb_of_ten_to_the_ninth_bytes_moves_the_boundaries():
    doc = SHEET.to_doc() | {"gbBytes": 10 ** 9}
    decimal_gb = PriceSheet.from_doc(doc)
    assert decimal_gb.instance_fee(50 * 10 ** 9).fee == Decimal("5")
    assert decimal_gb.instance_fee(50 * 10 ** 9 + 1).fee == Decimal("10")


def test_a_negative_size_has_no_fee():
    with pytest.raises(ValueError, match="negative"):
        SHEET.instance_fee(-1)


@settings(max_examples=100, deadline=None, database=None)
@given(st.integers(min_value=0, max_value=10 ** 16), st.integers(min_value=0, max_value=10 ** 16))
def test_a_larger_instance_never_pays_less(a, b):
    small, large = sorted((a, b))
    assert SHEET.instance_fee(small).fee <= SHEET.instance_fee(large).fee


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.one_of(st.none(), st.just(STOPPED), st.integers(0, 2000 * GB).map(protected)),
                min_size=31, max_size=31))
def test_the_instance_line_is_the_exact_daily_sum_rounded(month_days):
    line = invoice(Usage(vaults=(VaultUsage("v", LRS, days((31, 0))),), items=(ItemUsage("v", "i", tuple(month_days)),)),
                   SHEET, DEC).lines[0]
    exact = sum(SHEET.instance_fee(day.front_end_bytes).fee for day in month_days
                if day is not None and day.protection is Protection.PROTECTED) / Decimal(31)
    assert abs(line.amount - exact) <= Decimal("0.005")
    assert line.days_protected + line.days_stopped == sum(day is not None for day in month_days)


# Rounding: each line half up to the cent, once; the total is the sum of the rounded lines

def test_a_half_cent_line_rounds_up():
    # 75/16 GB the whole month: 4.6875 GB-months × 0.0224 = 0.105 exactly: half up 0.11 (half even: 0.10)
    bill = invoice(Usage(vaults=(VaultUsage("v", LRS, days((31, 75 * GB // 16))),)), SHEET, DEC)
    assert bill.lines[0] == StorageLine("storage", "v", LRS, 31 * 75 * GB // 16, Decimal("4.687500"),
                                        Decimal("0.0224"), Decimal("0.11"))


def test_the_total_sums_the_rounded_lines():
    sheet = PriceSheet.from_doc(SHEET.to_doc() | {"storage": {"LRS": "0.025", "GRS": "0.05"}})
    one_gb = days((31, GB))
    bill = invoice(Usage(vaults=(VaultUsage("a", LRS, one_gb), VaultUsage("b", LRS, one_gb))), sheet, DEC)
    # each line: 1 GB-month × 0.025 = 0.025, half up 0.03; the total is 0.03 + 0.03, not 0.05 rounded
    assert [line.amount for line in bill.lines if line.kind == "storage"] == [Decimal("0.03"), Decimal("0.03")]
    assert bill.total == Decimal("0.06")


def test_a_line_just_under_half_a_cent_rounds_down():
    # 5 × 1 / 31 = 0.16129…: 0.16; 10 × 1 / 31 = 0.32258…: 0.32
    usage = Usage(vaults=(VaultUsage("v", LRS, days((31, 0))),),
                  items=(ItemUsage("v", "a", days((1, protected(GB)), (30, None))),
                         ItemUsage("v", "b", days((30, None), (1, protected(51 * GB))))))
    assert [line.amount for line in invoice(usage, SHEET, DEC).lines[:2]] == [Decimal("0.16"), Decimal("0.32")]


# February

def test_february_has_28_days():
    feb = date(2027, 2, 1)
    usage = Usage(
        vaults=(VaultUsage("v", GRS, days((14, 100 * GB), (14, 0)),
                           (SoftDeletedPoint("p", GB, date(2027, 1, 20), purged_on=date(2027, 2, 10)),)),),
        items=(ItemUsage("v", "half", days((14, protected(10 * GB)), (14, None))),
               ItemUsage("v", "whole", days((28, protected(10 * GB))))))
    bill = invoice(usage, SHEET, feb)
    assert bill.days == 28
    assert [line.amount for line in bill.lines[:2]] == [
        Decimal("2.50"),  # 5 × 14 / 28
        Decimal("5.00"),  # a whole February is the whole fee
    ]
    # 100 GB × 14 days / 28 = 50 GB-months × 0.0448 = 2.24
    assert bill.lines[2] == StorageLine("storage", "v", GRS, 1400 * GB, Decimal("50.000000"), Decimal("0.0448"),
                                        Decimal("2.24"))
    # p: age 1 on 20 January, 13 on 1 February, 14 on 2 February; billable 3 .. 9 February (purged the 10th):
    # 7 GB-days / 28 = 0.25 GB-months × 0.0448 = 0.0112; free 1 .. 2 February
    assert bill.lines[3] == StorageLine("softDeleted", "v", GRS, 7 * GB, Decimal("0.250000"), Decimal("0.0448"),
                                        Decimal("0.01"))
    assert bill.lines[4].byte_days == 2 * GB
    assert bill.total == Decimal("9.75")  # 2.50 + 5.00 + 2.24 + 0.01


def test_a_leap_february_has_29_days():
    usage = Usage(vaults=(VaultUsage("v", LRS, days((29, 0))),),
                  items=(ItemUsage("v", "i", days((14, protected(GB)), (15, None))),))
    bill = invoice(usage, SHEET, date(2028, 2, 1))
    assert (bill.days, bill.lines[0].amount) == (29, Decimal("2.41"))  # 5 × 14 / 29 = 2.4137…


# Usage the invoice cannot price

def _vault(**kw) -> VaultUsage:
    return VaultUsage(**({"vault_id": "v", "redundancy": LRS, "stored_bytes": days((31, 0))} | kw))


@pytest.mark.parametrize("usage, message", [
    (Usage(vaults=(_vault(), _vault())), "vault 'v' is given twice"),
    (Usage(vaults=(_vault(stored_bytes=days((30, 0))),)), "stored bytes holds 30 days, not the month's 31"),
    (Usage(vaults=(_vault(stored_bytes=days((30, 0), (1, -1))),)), "stored bytes on day 31 is -1"),
    (Usage(vaults=(_vault(redundancy="ZRS"),)), "redundancy 'ZRS'"),
    (Usage(vaults=(_vault(restores=-1),)), "restores is negative"),
    (Usage(vaults=(_vault(soft_deleted=(SoftDeletedPoint("p", 1, d(1, 1, 2027)),)),)), "soft-deleted after the month"),
    (Usage(vaults=(_vault(soft_deleted=(SoftDeletedPoint("p", 1, d(5), d(4)),)),)), "purged before"),
    (Usage(vaults=(_vault(soft_deleted=(SoftDeletedPoint("p", -1, d(5)),)),)), "negative size"),
    (Usage(vaults=(_vault(soft_deleted=(SoftDeletedPoint("p", 1, d(5)),) * 2),)), "point 'p' is given twice"),
    (Usage(vaults=(_vault(),), items=(ItemUsage("w", "i", days((31, None))),)), "names a vault the usage does not hold"),
    (Usage(vaults=(_vault(),), items=(ItemUsage("v", "i", days((32, None))),)), "holds 32 days"),
    (Usage(vaults=(_vault(),), items=(ItemUsage("v", "i", days((31, None))),) * 2), "item 'i' of vault 'v' is given twice"),
    (Usage(vaults=(_vault(),), items=(ItemUsage("v", "i", days((30, None), (1, protected(-1)))),)), "on day 31"),
])
def test_usage_that_does_not_describe_the_month_is_refused(usage, message):
    with pytest.raises(ValueError, match=message):
        invoice(usage, SHEET, DEC)


def test_the_month_is_a_first_day_on_or_after_the_sheet():
    usage = Usage(vaults=(_vault(stored_bytes=days((30, 0))),))
    with pytest.raises(ValueError, match="takes effect on 2026-12-01"):
        invoice(usage, SHEET, date(2026, 11, 1))
    with pytest.raises(ValueError, match="first day of a month"):
        invoice(usage, SHEET, date(2026, 12, 2))


# The price sheet

def test_the_shipped_sheet():
    assert (SHEET.version, SHEET.currency, SHEET.effective_from, SHEET.gb_bytes) == ("2026-12", "USD", DEC, GB)
    assert SHEET.storage == {LRS: Decimal("0.0224"), GRS: Decimal("0.0448")}
    assert SHEET.soft_delete_free_days == 14 and SHEET.sources
    raw = json.loads((billing.PRICES_DIR / "2026-12.json").read_text())
    assert SHEET.to_doc() == raw
    assert PriceSheet.from_doc(json.loads(json.dumps(SHEET.to_doc()))) == SHEET


def test_an_unknown_version_is_not_found():
    with pytest.raises(NotFound, match="no price sheet '2030-01'"):
        load_price_sheet("2030-01")
    with pytest.raises(NotFound, match="a version is YYYY-MM"):
        load_price_sheet("../prices/2026-12")


def test_a_file_must_hold_its_own_version(tmp_path, monkeypatch):
    (tmp_path / "2027-01.json").write_text(json.dumps(SHEET.to_doc()))
    (tmp_path / "2027-02.json").write_text("{")
    monkeypatch.setattr(billing, "PRICES_DIR", tmp_path)
    with pytest.raises(MalformedMessage, match="file 2027-01.json holds version '2026-12'"):
        load_price_sheet("2027-01")
    with pytest.raises(MalformedMessage, match="price sheet 2027-02: not JSON"):
        load_price_sheet("2027-02")


def _with(path: str, value):
    return edited(SHEET.to_doc(), path, value)


@pytest.mark.parametrize("path, value, message", [
    ("v", 2, "price sheet: unsupported schema version 2"),
    ("discount", "0.1", "price sheet: unknown field 'discount'"),
    ("version", "2026-13", "'version' has a bad format"),
    ("currency", "usd", "'currency' is 'usd', not one of USD, EUR, GBP"),
    ("currency", "JPY", "'currency' is 'JPY'"),
    ("effectiveFrom", "2026-12-02", "'effectiveFrom' is 2026-12-02, not the first day of a month"),
    ("effectiveFrom", "2026-02-30", "'effectiveFrom' is '2026-02-30', not a calendar date"),
    ("gbBytes", 1000, "'gbBytes' is 1000, not one of 1073741824, 1000000000"),
    ("gbBytes", "1073741824", "'gbBytes' must be of type int, not str"),
    ("storage.LRS", "-0.0224", "'storage.LRS' is '-0.0224': a price cannot be negative"),
    ("storage.LRS", 0.0224, "'storage.LRS' must be of type str, not float"),
    ("storage.GRS", "1e-2", "'storage.GRS' is '1e-2', not an amount"),
    ("storage.GRS", "NaN", "'storage.GRS' is 'NaN', not an amount"),
    ("storage.GRS", ".5", "'storage.GRS' is '.5', not an amount"),
    ("storage.GRS", KeyError, "'storage.GRS' is missing"),
    ("storage.ZRS", "0.03", "unknown field 'storage.ZRS'"),
    ("protectedInstance.tiers.0.fee", "-5", r"'protectedInstance.tiers\[0\].fee' is '-5': a price cannot be negative"),
    ("protectedInstance.tiers.0.fee", 5, r"'protectedInstance.tiers\[0\].fee' must be of type str, not int"),
    ("protectedInstance.tiers.1.upToGb", 50,
     r"'protectedInstance.tiers\[1\].upToGb' is 50, not above the previous tier's 50"),
    ("protectedInstance.tiers.0.upToGb", 0, r"'protectedInstance.tiers\[0\].upToGb' is 0, outside"),
    ("protectedInstance.tiers.1.extra", 1, r"unknown field 'protectedInstance.tiers\[1\].extra'"),
    ("protectedInstance.tiers.1", "500", r"'protectedInstance.tiers\[1\]' must be an object, not str"),
    ("protectedInstance.tiers", [], "'protectedInstance.tiers' holds 0 entries"),
    ("protectedInstance.above.perGb", 0, "'protectedInstance.above.perGb' is 0, outside"),
    ("protectedInstance.above.fee", "10.", "'protectedInstance.above.fee' is '10.', not an amount"),
    ("protectedInstance.above", KeyError, "'protectedInstance.above' is missing"),
    ("softDeleteFreeDays", -1, "'softDeleteFreeDays' is -1, outside 0..180"),
    ("free", ["restore", "egress"], "'free' holds 2 entries"),
    ("free", ["restore", "egress", "egress"], "'free' must name restore, egress, transactions, each once"),
    ("sources", [], "'sources' holds 0 entries"),
    ("sources", [" "], r"'sources\[0\]' must be a title and address"),
    ("note", KeyError, "'note' is missing"),
])
def test_bad_sheets_are_refused_naming_the_field(path, value, message):
    with pytest.raises(MalformedMessage, match=message):
        PriceSheet.from_doc(_with(path, value))


def test_a_sheet_that_is_not_an_object_is_refused():
    with pytest.raises(MalformedMessage, match="price sheet is not a JSON object"):
        PriceSheet.from_doc([SHEET.to_doc()])


# The invoice's JSON and CSV

def test_the_invoice_document():
    doc = invoice(DECEMBER, SHEET, DEC).to_doc()
    assert json.loads(json.dumps(doc)) == doc
    assert {k: v for k, v in doc.items() if k != "lines"} == {
        "v": 1, "month": "2026-12", "days": 31, "priceSheet": "2026-12", "currency": "USD", "gbBytes": GB,
        "total": "82.74"}
    assert doc["lines"][1] == {"kind": "protectedInstance", "vaultId": "vault-a", "itemId": "server",
                               "daysProtected": 15, "daysStopped": 16,
                               "tiers": [{"tier": "up to 500 GB", "units": 1, "fee": "10", "days": 15}],
                               "amount": "4.84"}
    assert doc["lines"][3] == {"kind": "softDeleted", "vaultId": "vault-a", "redundancy": "LRS",
                               "byteDays": 12 * GB, "gbMonths": "0.387097", "unitPrice": "0.0224", "amount": "0.01"}
    assert doc["lines"][5] == {"kind": "restore", "vaultId": "vault-a", "quantity": 2, "unit": "restores",
                               "unitPrice": "0", "amount": "0.00"}
    assert sum(Decimal(line["amount"]) for line in doc["lines"]) == Decimal(doc["total"])


def test_the_invoice_csv():
    bill = invoice(DECEMBER, SHEET, DEC)
    rows = list(csv.DictReader(io.StringIO(bill.to_csv())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(bill.lines) + 1
    assert all((r["month"], r["priceSheet"], r["currency"]) == ("2026-12", "2026-12", "USD") for r in rows)
    assert rows[-1] | {"month": "", "priceSheet": "", "currency": ""} == dict.fromkeys(CSV_COLUMNS, "") | {
        "kind": "total", "amount": "82.74"}
    assert sum(Decimal(r["amount"]) for r in rows[:-1]) == Decimal(rows[-1]["amount"])
    database = rows[8]
    assert (database["kind"], database["itemId"], database["quantity"], database["unit"], database["amount"]) == (
        "protectedInstance", "database", "31", "days", "10.32")
    assert database["detail"] == ("up to 50 GB: 10 days at 5; up to 500 GB: 15 days at 10; "
                                  "over 500 GB, 2 units: 6 days at 20; stopped: 0 days")
    storage = rows[2]
    assert (storage["kind"], storage["redundancy"], storage["quantity"], storage["unit"], storage["unitPrice"],
            storage["amount"], storage["detail"]) == ("storage", "LRS", "312.903226", "GB-months", "0.0224", "7.01",
                                                      f"{9700 * GB} byte-days")
