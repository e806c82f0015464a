"""Queue delivery on fakes: a message that can never succeed is poisoned at once with its
reason, one that may succeed later is delivered again with a growing delay until it does or
its attempts run out, and a bug is left to the host's own retries."""
from __future__ import annotations

import base64
import importlib
import itertools

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

from shared import errors, formats, identity
from shared.fakes import MemoryIndex, MemoryQueue
from shared.messages import Poisoned, Redelivery, ReplicateMessage
from shared.ports import TransientError
from shared.service import delivery
from tests.inprocess import memory_services
from tests.unit.signing import SigningMachine, signed_json


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def services(clock):
    svc = memory_services("delivery")
    queues: dict[str, MemoryQueue] = {}

    def queue(name):
        if name not in queues:
            queues[name] = MemoryQueue(name, now=clock)
            queues[name].create()
        return queues[name]

    svc.queue = queue
    return svc


def due(services, name: str) -> list[str]:
    """The texts of the messages of queue `name` visible now, received and deleted."""
    received = services.queue(name).receive(32, 30)
    for message in received:
        services.queue(name).delete(message)
    return [base64.b64decode(m.body).decode() for m in received]


def test_a_permanent_error_poisons_at_once_with_the_reason(services):
    def refuse(text):
        raise errors.Forbidden("signature does not match vault v1")

    outcome = delivery.deliver(services, "ingest", b'{"forged": true}', refuse)
    assert outcome.startswith("poisoned")
    [poisoned] = [Poisoned.parse(text) for text in due(services, "ingest-poison")]
    assert (poisoned.queue, poisoned.message, poisoned.attempts) == ("ingest", '{"forged": true}', 1)
    assert "signature does not match" in poisoned.reason
    assert due(services, "ingest") == [], "nothing is retried"


def test_a_retryable_error_is_delivered_again_later_and_later(services, clock):
    seen = []

    def flaky(text):
        seen.append(text)
        if len(seen) < 4:
            raise TransientError("region did not answer")
        return "done"

    text = "the original message"
    delivery.deliver(services, "commit", text.encode(), flaky)
    delays = []
    while True:
        waited = 0
        while not (redelivered := due(services, "commit")):
            clock.now += 1
            waited += 1
            assert waited < 10_000
        delays.append(waited)
        [again] = redelivered
        outcome = delivery.deliver(services, "commit", again.encode(), flaky)
        if outcome == "done":
            break
    assert seen == [text] * 4, "the handler always gets the original text"
    assert delays == [15, 30, 60], "the delay doubles"
    assert due(services, "commit-poison") == []


def test_a_retryable_error_that_persists_is_poisoned_after_its_attempts(services):
    def down(text):
        raise TransientError("region did not answer")

    last = Redelivery("msg", delivery.REDELIVERY_ATTEMPTS - 1, "region did not answer")
    delivery.deliver(services, "restore", last.to_json().encode(), down)
    [poisoned] = [Poisoned.parse(t) for t in due(services, "restore-poison")]
    assert poisoned.message == "msg" and poisoned.attempts == delivery.REDELIVERY_ATTEMPTS
    assert f"still failing after {delivery.REDELIVERY_ATTEMPTS} attempts" in poisoned.reason


def test_the_delays_stay_within_minutes():
    delays = [delivery.redelivery_delay(a) for a in range(1, delivery.REDELIVERY_ATTEMPTS)]
    assert delays[0] == delivery.REDELIVERY_BASE_S and max(delays) == delivery.REDELIVERY_MAX_S
    assert 20 * 60 < sum(delays) < 60 * 60


def test_a_bug_is_left_to_the_host(services):
    def bug(text):
        raise KeyError("oops")

    with pytest.raises(KeyError):
        delivery.deliver(services, "ingest", b"x", bug)
    assert due(services, "ingest-poison") == [] and due(services, "ingest") == []


def test_text_that_is_not_utf8_is_poisoned(services):
    delivery.deliver(services, "ingest", b"\xff\xfe", lambda text: "never")
    [poisoned] = [Poisoned.parse(t) for t in due(services, "ingest-poison")]
    assert "not UTF-8" in poisoned.reason


class IndexDown(MemoryIndex):
    """An index that does not answer: what the queue functions meet first (the vault)."""

    def get_vault(self, tenant_id, vault_id):
        raise TransientError("the index did not answer")


QUEUE_MESSAGES = {
    "ingest": {"type": "chunks", "chunks": [{"id": "ab" * 32, "size": 100, "md5": "A" * 22 + "=="}]},
    "commit": {"type": "commit", "pointId": "20261125T120000Z-0000abcd", "item": "laptop-1",
               "createdAt": "2026-11-25T12:00:00+00:00", "chunkCount": 1, "manifestChunks": 0, "stats": {}},
    "restore": {"type": "restore", "pointId": "20261125T120000Z-0000abcd"},
}


SENDER = SigningMachine("ab" * 16, identity.new_private_key())


def _queue_text(queue: str) -> str:
    if queue == "replicate":
        return ReplicateMessage("contoso", "v1", blobs=("chunks/ab/" + "ab" * 32,)).to_json()
    return signed_json({"v": formats.SCHEMA_VERSION, "id": "m1", "tenantId": "contoso", "vaultId": "v1",
                        **QUEUE_MESSAGES[queue]}, SENDER)


@pytest.mark.parametrize("queue", ["ingest", "commit", "restore", "replicate"])
def test_a_queue_function_meeting_a_transient_error_completes_and_poisons_only_after_its_redeliveries(
        services, clock, monkeypatch, queue):
    """The issue: host.json's visibilityTimeout (2 s) and maxDequeueCount (5) would poison a
    message whose dependency is down within about 10 s. Each queue function, as the host calls
    it, instead completes and delivers the message again later and later."""
    services.index = IndexDown()
    module = importlib.import_module(f"functions.{queue}")
    monkeypatch.setattr(module, "services", lambda: services)
    app = func.FunctionApp()
    app.register_functions(module.bp)
    [function] = app.get_functions()
    user_function = function.get_user_function()
    body, started = _queue_text(queue).encode(), clock.now
    for dequeue in itertools.count(1):
        user_function(QueueMessage(id=f"m{dequeue}", body=body, dequeue_count=1))  # never raises to the host
        if poisoned := due(services, queue + "-poison"):
            break
        assert due(services, queue) == [], "not visible at once"
        while not (again := due(services, queue)):
            clock.now += 1
        body = again[0].encode()
    [record] = [Poisoned.parse(text) for text in poisoned]
    assert dequeue == record.attempts == delivery.REDELIVERY_ATTEMPTS
    assert "the index did not answer" in record.reason and record.message == _queue_text(queue)
    assert clock.now - started > 20 * 60, "poisoned after minutes, not seconds"
