"""Contract of Queue: the same tests run on MemoryQueue and on AzureQueue against Azurite.
Visibility timeouts are in whole seconds; `wait` advances the fake's clock or sleeps."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from shared.adapters.azure_storage import AzureQueue, queue_sas_url
from shared.adapters.sas_rest import SasQueueSender
from shared.ports import StorageError, TransientError
from skyvault.stack.emulators import DEV_ACCOUNT_KEY


def test_send_receive_delete(queue):
    queue.send('{"v": 1, "text": "é <&> \\u00e9"}')
    (message,) = queue.receive(max_messages=10, visibility_timeout=30)
    assert message.body == '{"v": 1, "text": "é <&> \\u00e9"}'
    assert message.dequeue_count == 1
    queue.delete(message)
    assert queue.approximate_count() == 0
    assert queue.receive(max_messages=10, visibility_timeout=30) == []


def test_bodies_are_not_reencoded(queue):
    queue.send("eyJ2IjogMX0=")
    assert queue.peek() == ["eyJ2IjogMX0="]
    assert queue.receive(1, 30)[0].body == "eyJ2IjogMX0="


def test_receive_takes_at_most_max_messages(queue):
    for i in range(5):
        queue.send(f"m{i}")
    first = queue.receive(max_messages=3, visibility_timeout=30)
    rest = queue.receive(max_messages=10, visibility_timeout=30)
    assert len(first) == 3
    assert sorted(m.body for m in first + rest) == [f"m{i}" for i in range(5)]


def test_received_message_is_hidden_until_its_visibility_timeout_passes(queue, wait):
    queue.send("job")
    (first,) = queue.receive(max_messages=1, visibility_timeout=1)
    assert queue.receive(max_messages=1, visibility_timeout=1) == []
    assert queue.peek() == []
    wait(1.5)
    (again,) = queue.receive(max_messages=1, visibility_timeout=30)
    assert again.id == first.id
    assert again.dequeue_count == 2


def test_release_makes_it_visible_again_and_counts_the_dequeue(queue):
    queue.send("job")
    (message,) = queue.receive(max_messages=1, visibility_timeout=30)
    queue.release(message, visibility_timeout=0)
    (again,) = queue.receive(max_messages=1, visibility_timeout=30)
    assert again.body == "job"
    assert again.dequeue_count == 2


def test_release_with_a_delay(queue, wait):
    queue.send("job")
    (message,) = queue.receive(max_messages=1, visibility_timeout=30)
    queue.release(message, visibility_timeout=1)
    assert queue.receive(max_messages=1, visibility_timeout=30) == []
    wait(1.5)
    assert [m.body for m in queue.receive(max_messages=1, visibility_timeout=30)] == ["job"]


def test_send_with_visibility_timeout_delays_the_message(queue, wait):
    queue.send("later", visibility_timeout=1)
    assert queue.peek() == []
    assert queue.approximate_count() == 1
    wait(1.5)
    assert queue.peek() == ["later"]


def test_a_stale_receipt_neither_deletes_nor_fails(queue):
    queue.send("job")
    (stale,) = queue.receive(max_messages=1, visibility_timeout=30)
    queue.release(stale, visibility_timeout=0)
    (current,) = queue.receive(max_messages=1, visibility_timeout=30)
    queue.delete(stale)
    queue.release(stale, visibility_timeout=0)
    assert queue.approximate_count() == 1
    assert queue.receive(max_messages=1, visibility_timeout=30) == []
    queue.delete(current)
    queue.delete(current)
    assert queue.approximate_count() == 0


def test_approximate_count_includes_hidden_messages(queue):
    for body in ("a", "b", "c"):
        queue.send(body)
    queue.receive(max_messages=1, visibility_timeout=30)
    assert queue.approximate_count() == 3


def test_peek_does_not_take(queue):
    queue.send("a")
    queue.send("b")
    assert sorted(queue.peek()) == ["a", "b"]
    assert sorted(queue.peek(max_messages=32)) == ["a", "b"]
    assert len(queue.peek(max_messages=1)) == 1
    assert all(m.dequeue_count == 1 for m in queue.receive(max_messages=2, visibility_timeout=30))


def test_message_size_limit_is_64_kib_of_utf8(queue):
    queue.send("x" * 65536)
    with pytest.raises(ValueError):
        queue.send("é" * 32769)
    assert queue.approximate_count() == 1


def test_create_twice_is_harmless(queue):
    queue.send("kept")
    queue.create()
    assert queue.peek() == ["kept"]


def test_queue_must_be_created_first(make_queue):
    with pytest.raises(StorageError):
        make_queue().send("x")


@pytest.mark.emulators
def test_add_only_sas_can_send_and_nothing_else(azurite_primary):
    name = f"agent-{uuid.uuid4().hex[:16]}"
    owner = AzureQueue(azurite_primary.connection_string, name)
    owner.create()
    url = queue_sas_url(azurite_primary.connection_string, name, "a",
                        datetime.now(timezone.utc) + timedelta(hours=1))
    agent = AzureQueue.from_url(url)
    assert agent.name == name
    agent.send('{"kind": "point"}')
    assert owner.peek() == ['{"kind": "point"}']
    with pytest.raises(PermissionError):
        agent.receive(max_messages=1, visibility_timeout=30)
    with pytest.raises(PermissionError):
        agent.peek()
    with pytest.raises(PermissionError):
        agent.approximate_count()


@pytest.mark.emulators
def test_agents_sender_adds_messages_unchanged_within_the_limits_of_its_sas(azurite_primary):
    """SasQueueSender, the agents' way to send: the same message arrives, a delay hides it,
    the size limit holds, and a SAS of another queue or a missing queue is refused."""
    name = f"agent-{uuid.uuid4().hex[:16]}"
    owner = AzureQueue(azurite_primary.connection_string, name)
    owner.create()
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)
    sender = SasQueueSender(queue_sas_url(azurite_primary.connection_string, name, "a", expiry))
    assert sender.name == name
    sender.send('eyJraW5kIjogInBvaW50In0= <&> "quoted"')
    sender.send("later", visibility_timeout=30)
    assert owner.peek() == ['eyJraW5kIjogInBvaW50In0= <&> "quoted"']
    assert owner.approximate_count() == 2
    with pytest.raises(ValueError):
        sender.send("x" * (64 * 1024 + 1))
    read_only = SasQueueSender(queue_sas_url(azurite_primary.connection_string, name, "r", expiry))
    with pytest.raises(PermissionError):
        read_only.send("x")
    with pytest.raises(StorageError):
        SasQueueSender(queue_sas_url(azurite_primary.connection_string, "never-created", "a", expiry)).send("x")
    assert owner.approximate_count() == 2


def test_agents_unreachable_queue_is_a_transient_error_and_fails_fast(closed_port):
    started = time.monotonic()
    with pytest.raises(TransientError):
        SasQueueSender(f"http://127.0.0.1:{closed_port}/nobody/gone?sp=a&sig=x").send("x")
    assert time.monotonic() - started < 10


def test_unreachable_queue_service_is_a_transient_error_and_fails_fast(closed_port):
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName=nobody;AccountKey={DEV_ACCOUNT_KEY};"
        f"QueueEndpoint=http://127.0.0.1:{closed_port}/nobody;"
    )
    started = time.monotonic()
    with pytest.raises(TransientError):
        AzureQueue(connection_string, "gone").send("x")
    assert time.monotonic() - started < 10
