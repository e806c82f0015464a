"""Fuzz of the queue functions (each handler through shared/service/delivery.deliver, on
in-memory services): a junk delivery (any bytes, a message that does not parse or is not signed
by a machine of the vault, a redelivery wrapper of one) is poisoned, never raises, and changes
nothing but its poison queue; a valid message changed and signed again is handled, delivered
again later or poisoned, never raises, and if poisoned changes nothing else either."""
from __future__ import annotations

import base64
import json

import pytest
from hypothesis import assume, example, given, strategies as st

from functions import commit, ingest, meter, replicate, restore
from shared.messages import Poisoned, Redelivery, ReplicateMessage, UsageMessage
from shared.service import delivery
from shared.service.context import (COMMIT_QUEUE, INGEST_QUEUE, POISON_SUFFIX, REPLICATE_QUEUE, RESTORE_QUEUE,
                                    USAGE_QUEUE)
from tests.fuzz.inputs import FUZZ, FUZZ_LARGE, json_values, mutated, mutated_bytes, nasty_texts, to_json
from tests.fuzz.world import CHUNK_ID, POINT_ID, World

WORLD = World("queues")
HANDLERS = {INGEST_QUEUE: ingest.handle, COMMIT_QUEUE: commit.handle, RESTORE_QUEUE: restore.handle,
            REPLICATE_QUEUE: replicate.handle, USAGE_QUEUE: meter.handle}
VALID = {INGEST_QUEUE: WORLD.chunks_doc(), COMMIT_QUEUE: WORLD.commit_doc(), RESTORE_QUEUE: WORLD.restore_doc(),
         REPLICATE_QUEUE: {"v": 1, "tenantId": WORLD.tenant, "vaultId": WORLD.vault_id,
                           "blobs": [f"chunks/ab/{CHUNK_ID}"], "pointId": POINT_ID, "attempt": 0},
         USAGE_QUEUE: {"v": 1, "tenantId": WORLD.tenant, "vaultId": WORLD.vault_id, "events": [
             {"id": f"stored-{CHUNK_ID}", "kind": "chunk_stored", "quantity": 1000,
              "at": "2026-12-02T10:15:00+00:00"}]}}
QUEUES = sorted(HANDLERS)
MAX_BODY = 48 * 1024  # what the host hands a function: the message's base64 is at most 64 KiB


def _delivered(queue: str, body: bytes) -> str:
    """What delivering `body` from `queue` did; a poisoned delivery changed nothing but the poison
    queue, where it is, whole or as its original text."""
    poison_queue = queue + POISON_SUFFIX
    WORLD.drain(poison_queue)  # else each snapshot copies every message poisoned so far
    before = WORLD.state()
    outcome = delivery.deliver(WORLD.services, queue, body, lambda text: HANDLERS[queue](WORLD.services, text))
    assert isinstance(outcome, str)
    if outcome.startswith("poisoned: "):
        after = WORLD.state()
        poisoned = after.queues.pop(poison_queue)
        assert after == before, (outcome, before.changes(after))
        assert len(poisoned) == 1
        text = base64.b64decode(poisoned[0]).decode()
        try:
            record = Poisoned.parse(text)
        except ValueError:  # too long for a record: the original text alone
            assert text == body.decode("utf-8", "replace")
        else:
            assert record.queue == queue and record.reason
    return outcome


def _junk(queue: str, body: bytes) -> None:
    outcome = _delivered(queue, body)
    assert outcome.startswith("poisoned: "), outcome


# A changed message is junk unless the change is none: its signature covers every field.
junk = (st.binary(max_size=300) | nasty_texts.filter(lambda b: len(b) <= MAX_BODY) | json_values.map(to_json)
        | st.sampled_from(QUEUES).flatmap(lambda q: mutated(VALID[q]).filter(lambda doc: doc != VALID[q])).map(
            to_json))


@FUZZ_LARGE
@given(st.sampled_from(QUEUES), junk)
@example(INGEST_QUEUE, b'{"skyvaultRedelivery": {"attempt": 9, "reason": "x"}, "message": "{}"}')
@example(COMMIT_QUEUE, b"\xff\xfe")
@example(RESTORE_QUEUE, b'{"v": 2, "type": "restore", "v": 1}')
def test_a_junk_delivery_is_poisoned_and_changes_nothing_else(queue, body):
    assume(len(body) <= MAX_BODY)  # the host never delivers more
    if queue in (INGEST_QUEUE, COMMIT_QUEUE, RESTORE_QUEUE) or not _valid_service_message(queue, body):
        _junk(queue, body)
    else:
        _delivered(queue, body)


def _valid_service_message(queue: str, body: bytes) -> bool:
    """Whether `body` parses as a message of the service's own (which no signature guards)."""
    try:
        {REPLICATE_QUEUE: ReplicateMessage, USAGE_QUEUE: UsageMessage}[queue].parse(body)
    except ValueError:
        return False
    return True


@FUZZ
@given(st.sampled_from([INGEST_QUEUE, COMMIT_QUEUE, RESTORE_QUEUE]), st.data())
def test_a_wrapped_junk_delivery_is_poisoned_and_changes_nothing_else(queue, data):
    inner = data.draw(junk).decode("utf-8", "replace")
    wrapper = Redelivery(inner, data.draw(st.integers(0, 12)), data.draw(st.text(max_size=20))).to_json()
    body = data.draw(st.just(wrapper.encode()) | mutated_bytes(wrapper.encode()))
    assume(len(body) <= MAX_BODY)
    _junk(queue, body)


@FUZZ
@given(st.sampled_from([INGEST_QUEUE, COMMIT_QUEUE, RESTORE_QUEUE]).flatmap(
    lambda q: st.tuples(st.just(q), mutated(VALID[q]))))
def test_a_changed_agent_message_signed_again_is_handled_or_poisoned(queue_and_doc):
    queue, doc = queue_and_doc
    body = to_json(WORLD.resigned(doc))
    assume(len(body) <= MAX_BODY)
    _delivered(queue, body)


@FUZZ
@given(st.sampled_from([REPLICATE_QUEUE, USAGE_QUEUE]).flatmap(lambda q: st.tuples(st.just(q), mutated(VALID[q]))))
def test_a_changed_service_message_is_handled_or_poisoned(queue_and_doc):
    queue, doc = queue_and_doc
    body = to_json(doc)
    assume(len(body) <= MAX_BODY)
    _delivered(queue, body)


def test_every_valid_message_is_handled():
    for queue in QUEUES:
        outcome = _delivered(queue, json.dumps(VALID[queue]).encode())
        assert not outcome.startswith("poisoned"), (queue, outcome)


def test_a_large_message_that_is_not_utf8_is_poisoned():
    _junk(INGEST_QUEUE, b"\xff" * MAX_BODY)


@pytest.mark.parametrize("queue", [INGEST_QUEUE, COMMIT_QUEUE, RESTORE_QUEUE, REPLICATE_QUEUE, USAGE_QUEUE])
def test_a_redelivery_of_a_lone_surrogate_is_poisoned(queue):
    outcome = delivery.deliver(WORLD.services, queue, b'{"skyvaultRedelivery": {"attempt": 1, "reason": "x"}, '
                                                      b'"message": "\\ud800"}',
                               lambda text: HANDLERS[queue](WORLD.services, text))
    assert outcome.startswith("poisoned: ")
