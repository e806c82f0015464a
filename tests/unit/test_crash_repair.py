"""A crash at every step of the chunk lifecycle's repair path (docs/design.md, "Chunk lifecycle"),
as tests/unit/test_crash_every_step.py does for the pipeline: the ingest of a message holding a
replacement of a rejected chunk, an adoption and a plain declaration; and a commit that adopts
chunks no message declared. Each is failed after each of its effects in turn, both ways, then
delivered again; the end state equals a clean run's."""
from __future__ import annotations

import base64
import hashlib

import pytest

from shared import crypto
from shared.domain import replacement_blob_name
from shared.service.commit import ADOPT_AFTER_CHECKS
from shared.service.context import COMMIT_QUEUE, INGEST_QUEUE, RESTORE_QUEUE
from tests.faults import Faults, faulty
from tests.unit.pipeline import (KEYS, Backup, Clock, Host, committed_points_with_unverified_chunks, end_state,
                                 fault_steps, memory_services, poisoned, send)


def _replacement_message(backup: Backup) -> str:
    """Chunk 0 rejected (a wrong size declared), then one message of: its replacement, chunk 1
    adopted (no size or MD5), chunk 2 declared as usual."""
    first, second, third = backup.declared
    data = b"chunk %d of the pipeline test " % 0 * 400
    envelope = crypto.encrypt_chunk(KEYS, backup.vault.id, first["id"], data)
    name = replacement_blob_name(first["id"], "0123456789abcdef")
    backup.container.put(name, envelope, md5=hashlib.md5(envelope).digest())
    replacement = {"id": first["id"], "size": len(envelope),
                   "md5": base64.b64encode(hashlib.md5(envelope).digest()).decode(), "blob": name}
    return backup._signed("m-repair", type="chunks", chunks=[replacement, {"id": second["id"]}, third])


def run(name: str, target: str, after: int | None = None, kind: str = "crash"):
    clock, faults = Clock(), Faults()
    raw = memory_services(clock, name)
    backup = Backup(raw)
    host = Host(faulty(raw, faults), raw, clock, faults)
    if target == "ingest-repair":
        first = backup.declared[0]
        send(raw, INGEST_QUEUE, backup._signed("m-bad", type="chunks", chunks=[{**first, "size": first["size"] + 1}]))
        host.run()
        send(raw, INGEST_QUEUE, _replacement_message(backup))

        def is_target(queue: str, text: str) -> bool:
            return queue == INGEST_QUEUE and "m-repair" in text
    else:  # the ingest message never came: the commit adopts the chunks on a later check
        commits = []

        def is_target(queue: str, text: str) -> bool:
            if queue == COMMIT_QUEUE:
                commits.append(text)
            return len(commits) == ADOPT_AFTER_CHECKS + 1 and queue == COMMIT_QUEUE
    marks: list[int] = []

    def before(queue: str, text: str) -> None:
        if not marks and is_target(queue, text):
            marks.append(len(faults.effects))
            if after is not None:
                faults.arm(after, kind)

    def after_delivery() -> None:
        if len(marks) == 1:
            marks.append(len(faults.effects))
            faults.disarm()
        assert committed_points_with_unverified_chunks(raw, backup.vault.id) == []

    host.before_delivery, host.after_delivery = before, after_delivery
    send(raw, COMMIT_QUEUE, backup.commit_message())
    host.run()
    send(raw, RESTORE_QUEUE, backup.restore_message())
    host.run()
    assert len(marks) == 2, f"no message of {target} was delivered"
    assert poisoned(raw) == {}
    return end_state(raw, backup.vault.id), faults, faults.effects[marks[0]:marks[1]]


TARGETS = ("ingest-repair", "commit-adopts")
CLEAN = {target: run(f"clean-{target}", target) for target in TARGETS}


def test_a_clean_repair_ends_with_every_chunk_verified_and_copied():
    for target, (state, _, effects) in CLEAN.items():
        assert {s for s, *_ in state["chunks"].values()} == {"verified"}, target
        assert all(replicated for *_, replicated in state["chunks"].values()), target
        [(point_state, *_)] = state["points"].values()
        assert point_state == "committed", target
        assert not [n for n in state["blobs"]["primary"] if n.count(".")], "no replacement blob is left"
        assert effects, f"{target} did something to fail after"


STEPS = fault_steps(CLEAN)


@pytest.mark.parametrize("target, after, kind", STEPS)
def test_a_fault_after_each_repair_effect_then_redelivery_ends_as_a_clean_run(target, after, kind, request):
    state, faults, _ = run(request.node.name, target, after, kind)
    assert faults.fired == CLEAN[target][2][after - 1]
    assert state == CLEAN[target][0]
