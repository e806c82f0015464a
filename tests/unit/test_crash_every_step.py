"""A fault after every side effect of every queue handler, then redelivery: the end state equals
a clean run's (no lost chunk, no committed point with an unverified chunk, every follow-up done,
usage counted once).

A GRS backup runs through the app's queue functions as the host runs them (tests/unit/pipeline):
its ingest message, its commit, the replicate messages they queue (a chunks copy, a point's
blobs copy, the point check) and then a restore job. For each of those handlers, the first
delivery of its message is failed after its Nth effect, for N = 1 .. its effects in a clean run
(each its own test), in both ways tests/faults.py knows: the worker dies (the host delivers the
same text again after the visibility timeout) or the answer is lost (TransientError: the
handler's own error handling and the delivery's redelivery go on). N one beyond the clean
run's effects completes without a fault: that ends the walk. The sweep timer is walked the
same way over a backup whose commit message was lost: its later runs finish what a failed
run left."""
from __future__ import annotations

from datetime import timedelta
from typing import Callable

import pytest

from shared.messages import CommitMessage, parse_signed_message
from shared.service import commit, sweep
from shared.service.context import COMMIT_QUEUE, INGEST_QUEUE, REPLICATE_QUEUE, RESTORE_QUEUE, USAGE_QUEUE
from tests.faults import FAULT_KINDS, Crash, Faults, faulty
from tests.unit.pipeline import (Backup, Clock, Host, backup_and_restore, committed_points_with_unverified_chunks,
                                 end_state, fault_steps, memory_services, poisoned, send)

TARGETS: dict[str, Callable[[str, str], bool]] = {
    "ingest": lambda queue, text: queue == INGEST_QUEUE,
    "commit": lambda queue, text: queue == COMMIT_QUEUE,
    "replicate-chunks": lambda queue, text: queue == REPLICATE_QUEUE and '"blobs": ["chunks/' in text,
    "replicate-point-blobs": lambda queue, text: queue == REPLICATE_QUEUE and '"blobs": ["points/' in text,
    "point-check": lambda queue, text: queue == REPLICATE_QUEUE and '"blobs": []' in text,
    "restore": lambda queue, text: queue == RESTORE_QUEUE,
    "meter-chunks": lambda queue, text: queue == USAGE_QUEUE and '"chunk_stored"' in text,
    "meter-commit": lambda queue, text: queue == USAGE_QUEUE and '"point_committed"' in text,
    "meter-restore": lambda queue, text: queue == USAGE_QUEUE and '"restore_served"' in text,
}


def run(name: str, target: str, after: int | None = None, kind: str = "crash"):
    """One backup and restore; with `after`, the first delivery of `target`'s message fails
    after its `after`th effect. Returns the end state, the faults, and the effects the target's
    first delivery made."""
    clock, faults = Clock(), Faults()
    raw = memory_services(clock, name)
    backup = Backup(raw)
    host = Host(faulty(raw, faults), raw, clock, faults)
    first: list[int] = []

    def before(queue: str, text: str) -> None:
        if not first and TARGETS[target](queue, text):
            first.append(len(faults.effects))
            if after is not None:
                faults.arm(after, kind)

    def check_invariant() -> None:
        if len(first) == 1:  # the target's first delivery ended: no fault in any other
            first.append(len(faults.effects))
            faults.disarm()
        assert committed_points_with_unverified_chunks(raw, backup.vault.id) == []

    host.before_delivery, host.after_delivery = before, check_invariant
    backup_and_restore(host, backup)
    assert len(first) == 2, f"no message of {target} was delivered"
    assert poisoned(raw) == {}
    return end_state(raw, backup.vault.id), faults, faults.effects[first[0]:first[1]]


CLEAN = {target: run(f"clean-{target}", target) for target in TARGETS}


def test_a_clean_run_is_complete():
    state = CLEAN["ingest"][0]
    assert {s for s, *_ in state["chunks"].values()} == {"verified"}
    assert all(replicated for *_, replicated in state["chunks"].values())
    [(point_state, *_, committed, geo_protected, followed_up)] = state["points"].values()
    assert (point_state, committed, geo_protected, followed_up) == ("committed", True, True, True)
    assert state["job"][0] == "ready"
    stored = sum(size for _, size, *_ in state["chunks"].values())
    assert sorted(kind for kind, *_ in state["usage"]) == ["chunk_stored"] * len(state["chunks"]) + [
        "point_committed", "restore_served"]
    [(delta, restores, restored, events, pending, items, points)] = state["days"]
    [(_, own, point, item, front_end)] = [u for u in state["usage"] if u[0] == "point_committed"]
    assert (delta, restores, restored, events, pending) == (stored + own, 1, stored, len(state["usage"]), [])
    assert items == {item: (front_end, True, "protected")} and points == {}
    assert state["blobs"]["primary"] == state["blobs"]["secondary"]
    assert all(other[0] == state for other in CLEAN.values()), "the same run whichever target it watched"


STEPS = fault_steps(CLEAN)


@pytest.mark.parametrize("target, after, kind", STEPS)
def test_a_fault_after_each_effect_then_redelivery_ends_as_a_clean_run(target, after, kind, request):
    state, faults, _ = run(request.node.name, target, after, kind)
    assert faults.fired == CLEAN[target][2][after - 1], "the fault struck after the effect it was aimed at"
    assert state == CLEAN[target][0]


@pytest.mark.parametrize("target", TARGETS)
def test_one_effect_beyond_the_clean_run_is_no_fault(target, request):
    state, faults, _ = run(request.node.name, target, len(CLEAN[target][2]) + 1)
    assert faults.fired is None and state == CLEAN[target][0]


def test_every_handler_has_effects_to_fail_after():
    assert {target: len(effects) for target, (_, _, effects) in CLEAN.items()} == {
        "ingest": 5, "commit": 7, "replicate-chunks": 6, "replicate-point-blobs": 4, "point-check": 1,
        "restore": 2, "meter-chunks": 5, "meter-commit": 3, "meter-restore": 3}


def sweep_run(name: str, after: int | None = None, kind: str = "crash"):
    """A backup whose commit message was lost, finished by the sweep; with `after`, the first
    sweep fails after its `after`th effect, and the timer's later runs go on. Returns the end
    state, the faults, and the effects of the first sweep."""
    clock, faults = Clock(), Faults()
    raw = memory_services(clock, name)
    backup = Backup(raw)
    host = Host(faulty(raw, faults), raw, clock, faults)
    assert commit.commit_point(raw, parse_signed_message(backup.commit_message(), CommitMessage)).state == "pending"
    clock.advance(commit.COMMIT_RECHECK_MAX_S)
    [lost] = raw.queue(COMMIT_QUEUE).receive(1, 60)
    raw.queue(COMMIT_QUEUE).delete(lost)
    send(raw, INGEST_QUEUE, backup.chunks_message())
    host.run()
    start = len(faults.effects)
    if after is not None:
        faults.arm(after, kind)
    first_sweep: list[str] | None = None
    for _ in range(3):  # the timer's runs, SWEEP_IDLE apart
        clock.advance((sweep.SWEEP_IDLE + timedelta(seconds=1)).total_seconds())
        faults.revive()
        try:
            sweep.sweep(host.service)
        except Crash:
            pass  # the invocation failed; the timer goes on
        if first_sweep is None:
            first_sweep = faults.effects[start:]
            faults.disarm()
        assert committed_points_with_unverified_chunks(raw, backup.vault.id) == []
    host.run()
    send(raw, RESTORE_QUEUE, backup.restore_message())
    host.run()
    assert poisoned(raw) == {}
    return end_state(raw, backup.vault.id), faults, first_sweep


SWEEP_CLEAN = sweep_run("clean-sweep")


def test_a_clean_sweep_ends_as_a_clean_pipeline_run():
    assert SWEEP_CLEAN[0] == CLEAN["commit"][0]
    # The chunks were recorded after the point was received: their usage is queued again (the
    # meter finds it counted), then the commit and its follow-ups.
    assert SWEEP_CLEAN[2] == ["queue.usage.send", "index.replace_point", "index.replace_vault", "queue.usage.send",
                              "queue.replicate.send", "queue.replicate.send", "index.replace_point"]


@pytest.mark.parametrize("after, kind", [
    pytest.param(n, kind, id=f"sweep-after-{n}-{effect}-{kind.replace(' ', '-')}")
    for n, effect in enumerate(SWEEP_CLEAN[2], 1) for kind in FAULT_KINDS])
def test_a_fault_after_each_effect_of_the_sweep_then_its_next_runs_end_as_a_clean_run(after, kind, request):
    state, faults, _ = sweep_run(request.node.name, after, kind)
    assert faults.fired == SWEEP_CLEAN[2][after - 1]
    assert state == SWEEP_CLEAN[0]
