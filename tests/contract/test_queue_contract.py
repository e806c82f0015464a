"""Contract of Queue: the same tests run on MemoryQueue and on AzureQueue against Azurite.
Visibility timeouts are in whole seconds; `wait` advances the fake's clock or sleeps."""
from __future__ import annotations

import time

import pytest

from shared.adapters.azure_storage import AzureQueue
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


def test_unreachable_queue_service_is_a_transient_error_and_fails_fast(closed_port):
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName=nobody;AccountKey={DEV_ACCOUNT_KEY};"
        f"QueueEndpoint=http://127.0.0.1:{closed_port}/nobody;"
    )
    started = time.monotonic()
    with pytest.raises(TransientError):
        AzureQueue(connection_string, "gone").send("x")
    assert time.monotonic() - started < 10
