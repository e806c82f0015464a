"""Metering: usage events counted into daily usage exactly once, and a month of it billed
(shared/service/metering.py, shared/service/bills.py). The crash-at-every-write walk of the
meter is in test_crash_every_step.py (its meter-* targets)."""
from __future__ import annotations

import base64
import hashlib
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from functions import meter
from shared.domain import UsageEvent, chunk_blob_name, replacement_blob_name
from shared.errors import Invalid, NotFound
from shared.messages import UsageMessage, usage_messages
from shared.service import bills, delivery, metering
from shared.service.context import INGEST_QUEUE, USAGE_QUEUE, Services
from shared.service.vaults import create_vault
from tests.unit.pipeline import Backup, Clock, Host, memory_services, send

GIB = 2 ** 30
DEC = date(2026, 12, 1)


@pytest.fixture
def services(request):
    clock = Clock()
    clock.now = datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc)
    return memory_services(clock, f"metering-{request.node.name}")


def at(day: int, hour: int = 12) -> str:
    return datetime(2026, 12, day, hour, tzinfo=timezone.utc).isoformat()


def event(eid: str, kind: str, quantity: int = 0, day: int = 1, hour: int = 12, **fields) -> UsageEvent:
    return UsageEvent(id=eid, vault_id="", kind=kind, quantity=quantity, at=at(day, hour), **fields)


def deliver_all(services: Services, times: int = 1) -> list[str]:
    """Every queued usage message through the meter function, `times` times each."""
    queue, outcomes = services.queue(USAGE_QUEUE), []
    while messages := queue.receive(32, 60):
        for message in messages:
            for _ in range(times):
                outcomes.append(delivery.deliver(services, USAGE_QUEUE, base64.b64decode(message.body),
                                                 lambda text: meter.handle(services, text)))
            queue.delete(message)
    return outcomes


def record(services, vault, *events: UsageEvent) -> None:
    metering.record(services, vault, [UsageEvent(**{**e.__dict__, "vault_id": vault.id}) for e in events])


def test_an_event_delivered_twice_or_sent_again_in_another_message_counts_once(services):
    vault, _ = create_vault(services, "contoso", "files", "LRS")
    record(services, vault, event("stored-a", "chunk_stored", 100), event("stored-b", "chunk_stored", 50))
    assert deliver_all(services, times=2) == ["2 events counted, 0 counted before",
                                             "0 events counted, 2 counted before"]
    record(services, vault, event("stored-b", "chunk_stored", 50), event("stored-c", "chunk_stored", 7))
    assert deliver_all(services) == ["1 events counted, 1 counted before"]
    [day] = services.index.list_usage_days(vault.id, "2026-12-31")
    assert (day.id, day.stored_delta, day.events, day.pending) == ("2026-12-01", 157, 3, [])
    assert [e.id for e in services.index.list_usage_events(vault.id)] == ["stored-a", "stored-b", "stored-c"]


def test_an_event_applied_to_its_day_but_not_yet_in_the_ledger_is_not_applied_again(services):
    """The state a crash between the meter's day write and its ledger writes leaves."""
    vault, _ = create_vault(services, "contoso", "files", "LRS")
    message = UsageMessage(vault.tenant_id, vault.id, (UsageEvent("stored-a", vault.id, "chunk_stored", 100, at(3)),))
    services.index.add_usage_event = lambda e: (_ for _ in ()).throw(RuntimeError("died"))  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        metering.meter(services, message)
    [day] = services.index.list_usage_days(vault.id, "2026-12-31")
    assert (day.stored_delta, day.pending) == (100, ["stored-a"])
    del services.index.add_usage_event
    assert metering.meter(services, message) == "0 events counted, 1 counted before"
    [day] = services.index.list_usage_days(vault.id, "2026-12-31")
    assert (day.stored_delta, day.events, day.pending) == (100, 1, [])
    assert [e.id for e in services.index.list_usage_events(vault.id)] == ["stored-a"]


def test_a_bad_usage_message_is_poisoned_and_counts_nothing(services):
    vault, _ = create_vault(services, "contoso", "files", "LRS")
    good = UsageMessage(vault.tenant_id, vault.id, (UsageEvent("stored-a", vault.id, "chunk_stored", 1, at(1)),))
    for text, reason in [
        (good.to_json().replace('"chunk_stored"', '"free_money"'), "kind"),
        (good.to_json().replace('"quantity": 1', '"quantity": -5'), "quantity"),
        (good.to_json().replace('"stored-a"', '"stored a"'), "id"),
        (good.to_json().replace(vault.id, "someone-else"), "vault"),
    ]:
        outcome = delivery.deliver(services, USAGE_QUEUE, text.encode(), lambda t: meter.handle(services, t))
        assert outcome.startswith("poisoned") and reason in outcome, outcome
    assert services.index.list_usage_days(vault.id, "2026-12-31") == []
    with pytest.raises(NotFound):
        metering.meter(services, UsageMessage("intruder", vault.id, good.events))


def test_usage_messages_split_many_events_under_the_size_limit():
    events = [UsageEvent(f"gc-{n:064x}-{at(1)}", "v", "chunk_purged", 2 ** 40, at(1)) for n in range(250)]
    messages = list(usage_messages("t", "v", events))
    assert [len(m.events) for m in messages] == [100, 100, 50]
    assert all(UsageMessage.parse(m.to_json()) == m for m in messages)


def test_a_month_metered_from_events_bills_as_worked_out_by_hand(services):
    """December 2026, 31 days, one GRS vault (storage 0.0448 per GB-month, GB = 2^30 bytes).

    Item big: 40 GB on Dec 1 ($5 tier), 60 GB on Dec 11 ($10), 600 GB on Dec 21 (two 500 GB
    units: $20). Fee = (10 × 5 + 10 × 10 + 11 × 20) / 31 = 370 / 31 = 11.935... → 11.94.
    Item late: first point Dec 16, stopped Dec 25 (protected that day too): 10 days protected,
    6 stopped. Fee = 10 × 5 / 31 = 1.6129... → 1.61.
    Stored: +10 GiB Dec 1, +21 GiB Dec 11, a point keeping 6 GiB alone soft-deleted Dec 20 and
    purged Dec 27, when garbage collection frees its 6 GiB. Level: 10 (days 1-10), 31 (11-26),
    25 (27-31). Live = level - soft-deleted: 10 × 10 + 31 × 9 + 25 × 7 + 25 × 5 = 679 GiB-days
    = 679 / 31 = 21.903226 GB-months; × 0.0448 = 0.98126 → 0.98.
    Soft-deleted: 6 GiB on days 20 .. 26, ages 1 .. 7, all within the 14 free days: 42 GiB-days
    free. Restores: 2 of 1 GiB each, free. Total 11.94 + 1.61 + 0.98 = 14.53.
    Every message is delivered twice: no figure changes."""
    vault, _ = create_vault(services, "contoso", "files", "GRS")
    big = {"item_id": "big"}
    late = {"item_id": "late"}
    record(services, vault,
           event("stored-1", "chunk_stored", 10 * GIB, day=1),
           event("point-b1", "point_committed", 0, day=1, front_end_bytes=40 * GIB, point_id=None, **big),
           event("stored-2", "chunk_stored", 21 * GIB, day=11),
           event("point-b2", "point_committed", 0, day=11, front_end_bytes=60 * GIB, **big),
           event("point-l1", "point_committed", 0, day=16, front_end_bytes=GIB, **late),
           event("softdel-p", "point_soft_deleted", 6 * GIB, day=20, point_id="20261201T000000Z-0000abcd"),
           event("point-b3", "point_committed", 0, day=21, front_end_bytes=600 * GIB, **big),
           event("itemstopped-late", "item_stopped", 0, day=25, hour=10, **late),
           event("purge-p", "point_purged", 0, day=27, point_id="20261201T000000Z-0000abcd"),
           event("gc-x", "chunk_purged", 6 * GIB, day=27),
           event("restore-1", "restore_served", GIB, day=5),
           event("restore-2", "restore_served", GIB, day=30))
    deliver_all(services, times=2)
    found = bills.statement(services, "contoso", DEC)
    lines = {(line.kind, getattr(line, "item_id", "")): line for line in found.invoice.lines}
    assert lines[("protectedInstance", "big")].amount == Decimal("11.94")
    assert [(t.fee, t.units, t.days) for t in lines[("protectedInstance", "big")].tiers] == [
        (Decimal("5"), 1, 10), (Decimal("10"), 1, 10), (Decimal("20"), 2, 11)]
    assert (lines[("protectedInstance", "late")].days_protected, lines[("protectedInstance", "late")].days_stopped,
            lines[("protectedInstance", "late")].amount) == (10, 6, Decimal("1.61"))
    storage = lines[("storage", "")]
    assert (storage.byte_days, storage.gb_months, storage.amount) == (679 * GIB, Decimal("21.903226"), Decimal("0.98"))
    assert lines[("softDeletedFree", "")].byte_days == 42 * GIB
    assert (lines[("softDeleted", "")].byte_days, lines[("softDeleted", "")].amount) == (0, 0)
    assert (lines[("restore", "")].quantity, lines[("egress", "")].quantity) == (2, 2 * GIB)
    assert all(lines[(kind, "")].amount == 0 for kind in ("restore", "egress", "transactions"))
    assert found.invoice.total == Decimal("14.53") and found.invoice.price_sheet == "2026-12"
    doc = found.to_doc()
    assert doc["usage"][0]["meteredBytes"] == 25 * GIB and doc["usage"][0]["pendingEvents"] == 0
    assert doc["usage"][0]["softDeleted"] == [{"pointId": "20261201T000000Z-0000abcd", "bytes": 6 * GIB,
                                               "deletedOn": "2026-12-20", "purgedOn": "2026-12-27"}]


def test_the_month_so_far_bills_the_days_until_today_and_a_later_month_is_refused(services):
    vault, _ = create_vault(services, "contoso", "files", "LRS")
    record(services, vault, event("stored-1", "chunk_stored", 31 * GIB, day=1),
           event("point-1", "point_committed", 0, day=1, front_end_bytes=GIB, item_id="laptop"))
    deliver_all(services)
    services.clock.now = datetime(2026, 12, 10, 8, tzinfo=timezone.utc)
    so_far = bills.statement(services, "contoso")
    assert so_far.through == date(2026, 12, 10)
    [instance, storage, *_] = so_far.invoice.lines
    assert instance.days_protected == 10 and storage.byte_days == 10 * 31 * GIB
    with pytest.raises(Invalid, match="has not begun"):
        bills.statement(services, "contoso", date(2027, 1, 1))
    with pytest.raises(Invalid, match="not YYYY-MM"):
        bills.parse_month("2026-13")
    with pytest.raises(Invalid, match="cannot be billed"):
        bills.statement(services, "contoso", date(2026, 11, 1))  # before the first price sheet


def test_reconciliation_measures_every_blob_and_the_bill_takes_the_greater(services):
    """A blob no event names (uploaded, never declared) is billed from the day it is measured."""
    vault, _ = create_vault(services, "contoso", "files", "LRS")
    container = services.primary.container(f"vault-{vault.id}")
    container.put("chunks/ab/" + "ab" * 32, b"x" * 1000)
    record(services, vault, event("stored-1", "chunk_stored", 1000, day=1))
    deliver_all(services)
    container.put("chunks/cd/" + "cd" * 32, b"y" * 500)  # never declared
    services.clock.now = datetime(2026, 12, 5, 1, tzinfo=timezone.utc)
    reading = metering.reconcile(services, vault)
    assert (reading.measured, reading.blobs, reading.metered, reading.drift) == (1500, 2, 1000, 500)
    services.clock.now = datetime(2026, 12, 6, 1, tzinfo=timezone.utc)
    month = bills.vault_month(services, vault, DEC, date(2026, 12, 6))
    assert month.usage.stored_bytes[:6] == (1000, 1000, 1000, 1000, 1500, 1500), "until a reading says otherwise"
    assert month.measured[4] == 1500 and month.metered[4] == 1000


def test_a_replacement_promoted_where_no_record_was_is_metered_as_stored(request):
    """A replacement declared for a chunk with no record (its record was collected meanwhile):
    the promotion creates the record, whose bytes are stored like any other."""
    clock = Clock()
    raw = memory_services(clock, f"metering-{request.node.name}")
    backup = Backup(raw, redundancy="LRS", chunks=1)
    [chunk] = backup.declared
    envelope = backup.container.read(chunk_blob_name(chunk["id"]))
    name = replacement_blob_name(chunk["id"], "0123456789abcdef")
    backup.container.put(name, envelope, md5=hashlib.md5(envelope).digest())
    send(raw, INGEST_QUEUE, backup._signed("m-replace", type="chunks", chunks=[{**chunk, "blob": name}]))
    Host(raw, raw, clock).run()
    assert raw.index.get_chunks(backup.vault.id, [chunk["id"]])[chunk["id"]].state == "verified"
    [day] = raw.index.list_usage_days(backup.vault.id, "9999-12-31")
    assert day.stored_delta == len(envelope) and day.pending == []


def test_a_messages_ledger_entries_are_one_write_not_one_per_event(services):
    """32 chunks' stored events (an ingest message's) cost the meter a handful of Cosmos DB
    requests, not one per event: their ledger entries are one transactional batch."""
    from dataclasses import replace as replaced

    from shared.metrics import CountingIndex, OperationCounts

    vault, _ = create_vault(services, "contoso", "files", "LRS")
    counts = OperationCounts()
    counted = replaced(services, index=CountingIndex(services.index, counts))
    events = tuple(UsageEvent(f"stored-c{n:02}", vault.id, "chunk_stored", 1000, at(3)) for n in range(32))
    assert metering.meter(counted, UsageMessage(vault.tenant_id, vault.id, events)) == "32 events counted, 0 counted before"
    writes = counts.snapshot()["counts"].get("cosmos.write", 0)
    assert writes == 3  # the day (created), the ledger's 32 entries in one batch, the day again (unpended)
    assert len(services.index.list_usage_events(vault.id)) == 32
    assert metering.meter(counted, UsageMessage(vault.tenant_id, vault.id, events)) == "0 events counted, 32 counted before"
