"""Follow-up work derives from state: a redelivered ingest or commit redoes whatever follow-up is
still missing (replication, the usage event, the first-backup mark, the point check), never
twice what is done, and a redelivery after they are all done costs nothing."""
from __future__ import annotations

import pytest

from shared.domain import chunk_blob_name, container_name
from shared.service.context import COMMIT_QUEUE, INGEST_QUEUE, REPLICATE_QUEUE
from tests.faults import FAULT_KINDS, Faults
from tests.unit.pipeline import Backup, Host, end_state, poisoned, send


def arm_on_first(host: Host, faults: Faults, queue: str, after: int, kind: str) -> None:
    """Fail the first delivery from `queue` after its `after`th effect."""
    armed = []

    def before(delivered_from: str, text: str) -> None:
        if delivered_from == queue and not armed:
            armed.append(text)
            faults.arm(after, kind)

    host.before_delivery = before


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_commit_redelivered_after_a_fault_between_committing_and_its_follow_ups_is_geo_protected_once(
        host, raw, faults, kind):
    backup = Backup(raw)
    send(raw, INGEST_QUEUE, backup.chunks_message())
    host.run()
    # The commit's effects: create the point, mark it committed, then its follow-ups.
    arm_on_first(host, faults, COMMIT_QUEUE, after=2, kind=kind)
    send(raw, COMMIT_QUEUE, backup.commit_message())
    host.run()
    assert faults.fired == "index.replace_point"
    point = raw.index.get_point(backup.vault.id, backup.point)
    assert point.state == "committed" and point.geo_protected_at and point.follow_ups_at
    container = raw.primary.container(container_name(backup.vault.id))
    own = sum(container.properties(blob).size for blob in (point.manifest_blob, point.refs_blob))
    assert [(e.id, e.quantity) for e in raw.index.list_usage_events(backup.vault.id)
            if e.kind == "point_committed"] == [(f"point-{backup.point}", own)]
    assert raw.index.get_vault("contoso", backup.vault.id).first_backup_at
    secondary = raw.secondary.container(container_name(backup.vault.id))
    assert sorted(secondary.list()) == sorted([*map(chunk_blob_name, backup.chunk_ids),
                                               point.manifest_blob, point.refs_blob])
    assert poisoned(raw) == {}


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_an_ingest_redelivered_after_a_fault_between_indexing_and_queuing_replication_ends_replicated(
        host, raw, faults, kind):
    backup = Backup(raw)
    arm_on_first(host, faults, INGEST_QUEUE, after=len(backup.declared), kind=kind)
    send(raw, INGEST_QUEUE, backup.chunks_message())
    host.run()
    assert faults.fired == "index.add_chunk"
    records = raw.index.get_chunks(backup.vault.id, backup.chunk_ids)
    assert {r.state for r in records.values()} == {"verified"} and len(records) == len(backup.declared)
    assert all(r.replicated_at for r in records.values()), "every chunk reached the paired region"
    assert poisoned(raw) == {}


def test_a_redelivery_after_the_follow_ups_are_done_costs_nothing(host, raw, faults):
    backup = Backup(raw)
    send(raw, INGEST_QUEUE, backup.chunks_message())
    send(raw, COMMIT_QUEUE, backup.commit_message())
    host.run()
    done = end_state(raw, backup.vault.id)
    assert done["points"][backup.point][-1] is True, "follow-ups recorded done"
    effects = len(faults.effects)
    send(raw, COMMIT_QUEUE, backup.commit_message())
    send(raw, INGEST_QUEUE, backup.chunks_message())
    host.run()
    # Nothing but ingest's create-if-absent calls, which find their records and change nothing
    # (the commit's create of the point raised Conflict: no effect), and the usage of the chunks
    # it found, queued again in case the first delivery died before, which the meter finds
    # counted: it writes nothing.
    assert faults.effects[effects:] == ["index.add_chunk"] * len(backup.declared) + ["queue.usage.send"]
    assert raw.queue(REPLICATE_QUEUE).approximate_count() == 0
    assert end_state(raw, backup.vault.id) == done
