"""The sweep on fakes: points no message will finish any more (a commit poisoned or lost, a
commit that failed after committing) are finished from their state: committed once their chunks
are verified, failed with the reason after the time limit, their follow-ups redone; bounded work
per run."""
from __future__ import annotations

from datetime import timedelta

import pytest

from shared.messages import CommitMessage, Redelivery, parse_signed_message
from shared.service import commit, delivery, sweep
from shared.service.context import COMMIT_QUEUE, INGEST_QUEUE
from tests.faults import CRASH, LOST_ANSWER, Faults
from tests.unit.pipeline import POINT, Backup, Host, end_state, poisoned, send

IDLE = sweep.SWEEP_IDLE + timedelta(seconds=1)


def lose_the_commit(host: Host, raw, faults: Faults, backup: Backup, how: str, point: str = POINT,
                    parent: str | None = None) -> None:
    """Leave `point` pending with no commit message left to finish it."""
    text = backup.commit_message(parent=parent, point=point)
    if how == "poisoned":
        # The last redelivery the queue allows fails after creating the point: the index's answer is lost.
        faults.arm(1, LOST_ANSWER)
        last = Redelivery(text, delivery.REDELIVERY_ATTEMPTS - 1, "the index did not answer").to_json()
        outcome = delivery.deliver(host.service, COMMIT_QUEUE, last.encode(),
                                   lambda message: commit.commit_point(
                                       host.service, parse_signed_message(message, CommitMessage)).state)
        assert outcome.startswith("poisoned") and poisoned(raw) == {"commit": 1}
    else:
        # Checked once before its chunks came, then its re-check message was lost.
        assert commit.commit_point(raw, parse_signed_message(text, CommitMessage)).state == "pending"
        host.clock.advance(commit.COMMIT_RECHECK_MAX_S)
        lost = raw.queue(COMMIT_QUEUE).receive(32, 60)
        assert len(lost) == 1
        raw.queue(COMMIT_QUEUE).delete(lost[0])
    assert raw.index.get_point(backup.vault.id, point).state == "pending"


@pytest.mark.parametrize("how", ["poisoned", "lost"])
def test_the_sweep_commits_a_point_whose_commit_was_lost_once_its_chunks_are_verified(
        host, raw, clock, faults, how):
    backup = Backup(raw)
    lose_the_commit(host, raw, faults, backup, how)
    send(raw, INGEST_QUEUE, backup.chunks_message())
    host.run()
    assert raw.index.get_point(backup.vault.id, POINT).state == "pending", "nothing else would finish it"
    assert sweep.sweep(raw)["committed"] == [], "a point checked less than SWEEP_IDLE ago is left to its commit"
    clock.advance(IDLE.total_seconds())
    assert sweep.sweep(raw)["committed"] == [POINT]
    host.run()
    point = raw.index.get_point(backup.vault.id, POINT)
    assert point.state == "committed" and point.reason is None and point.follow_ups_at and point.geo_protected_at
    assert point.stats["storedBytes"] == sum(d["size"] for d in backup.declared)
    assert [e.id for e in raw.index.list_usage_events(backup.vault.id) if e.kind == "point_committed"] == [
        f"point-{POINT}"]
    clock.advance(IDLE.total_seconds())
    assert sweep.sweep(raw) == {"committed": [], "failed": [], "pending": [], "followed_up": []}


def test_the_sweep_fails_a_point_whose_chunks_never_come_after_the_time_limit(host, raw, clock, faults):
    backup = Backup(raw)
    lose_the_commit(host, raw, faults, backup, "lost")
    clock.advance(IDLE.total_seconds())
    assert sweep.sweep(raw)["pending"] == [POINT]
    point = raw.index.get_point(backup.vault.id, POINT)
    assert point.state == "pending" and point.checked_at == clock().isoformat()
    assert "3 of 3 chunks" in point.reason
    assert sweep.sweep(raw)["pending"] == [], "checked again only after SWEEP_IDLE"
    clock.advance(sweep.PENDING_LIMIT.total_seconds())
    assert sweep.sweep(raw)["failed"] == [POINT]
    point = raw.index.get_point(backup.vault.id, POINT)
    assert point.state == "failed" and "3 of 3 chunks were never verified" in point.reason
    assert "over 3:00:00" in point.reason
    assert raw.index.list_usage_events(backup.vault.id) == []


def test_the_sweep_fails_a_point_with_a_rejected_chunk_at_once(host, raw, clock, faults):
    backup = Backup(raw)
    lose_the_commit(host, raw, faults, backup, "lost")
    backup.declared[0]["size"] += 1  # the blob contradicts its declaration: rejected
    send(raw, INGEST_QUEUE, backup.chunks_message())
    host.run()
    clock.advance(IDLE.total_seconds())
    assert sweep.sweep(raw)["failed"] == [POINT]
    assert "1 chunks were rejected" in raw.index.get_point(backup.vault.id, POINT).reason


def test_the_sweep_checks_a_point_against_the_parent_its_commit_named(host, raw, clock, faults):
    backup = Backup(raw)
    send(raw, INGEST_QUEUE, backup.chunks_message())
    send(raw, COMMIT_QUEUE, backup.commit_message())
    host.run()
    second = "20261125T130000Z-00000002"
    backup.write_point(second)
    lose_the_commit(host, raw, faults, backup, "poisoned", point=second, parent=POINT)
    clock.advance(IDLE.total_seconds())
    assert sweep.sweep(raw)["committed"] == [second]
    point = raw.index.get_point(backup.vault.id, second)
    assert point.checked_against == POINT and point.parent_point_id == POINT


def test_the_sweep_redoes_the_follow_ups_of_a_point_committed_without_them(host, raw, clock, faults):
    backup = Backup(raw)
    send(raw, INGEST_QUEUE, backup.chunks_message())
    host.run()
    # The worker dies right after marking the point committed, and its message is lost with it.
    faults.arm(2, CRASH)
    with pytest.raises(Exception, match="died"):
        commit.commit_point(host.service, parse_signed_message(backup.commit_message(), CommitMessage))
    faults.revive()
    point = raw.index.get_point(backup.vault.id, POINT)
    assert point.state == "committed" and point.follow_ups_at is None
    assert [e for e in raw.index.list_usage_events(backup.vault.id) if e.kind == "point_committed"] == []
    clock.advance(IDLE.total_seconds())
    assert sweep.sweep(raw)["followed_up"] == [POINT]
    host.run()
    state = end_state(raw, backup.vault.id)
    assert state["vault"]["firstBackup"]
    assert [u for u in state["usage"] if u[0] == "point_committed"] == [
        ("point_committed", state["days"][0][0] - point.stats["storedBytes"], POINT, "laptop-1", 0)]
    point = raw.index.get_point(backup.vault.id, POINT)
    assert point.follow_ups_at and point.geo_protected_at


def test_one_run_sweeps_at_most_its_batch(host, raw, clock, faults):
    backup = Backup(raw)
    points = [f"20261125T1{i}0000Z-0000000{i}" for i in range(3)]
    for point in points:
        backup.write_point(point)
        lose_the_commit(host, raw, faults, backup, "lost", point=point)
        clock.advance(1)
    clock.advance(IDLE.total_seconds())
    first = sweep.sweep(raw, batch=2)
    assert first["pending"] == points[:2], "the least recently checked first"
    assert sweep.sweep(raw, batch=2)["pending"] == points[2:], "then the rest"
