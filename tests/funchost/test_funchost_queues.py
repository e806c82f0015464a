"""Queue triggers against Azurite: decoding, deletion, retries, poison queue, concurrency, leases, shutdown."""
from __future__ import annotations

import asyncio
import base64
import threading
import time

import azure.functions as func
import pytest
from funchost_helpers import fast_host_json, peek_texts, queue_app, wait_until


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def message_count(client) -> int:
    return client.get_queue_properties().approximate_message_count


def test_base64_message_reaches_the_function_decoded_and_is_deleted(run_host, queue, queue_name, storage_settings):
    received = []
    run_host(queue_app(received.append), host_json=fast_host_json(),
             settings={**storage_settings, "WORK_QUEUE": queue_name})
    work_queue = queue(queue_name)
    work_queue.send_message(b64('{"chunk": "ab12"}'))

    wait_until(lambda: received)
    message = received[0]
    assert message.get_body() == b'{"chunk": "ab12"}'
    assert message.dequeue_count == 1
    assert message.id and message.pop_receipt and message.insertion_time
    wait_until(lambda: message_count(work_queue) == 0)


def test_a_failing_message_goes_to_poison_after_max_dequeue_count_attempts(run_host, queue, queue_name,
                                                                           storage_settings):
    attempts = []

    def always_fail(msg):
        attempts.append(msg.dequeue_count)
        raise RuntimeError("cannot process")

    run_host(queue_app(always_fail), host_json=fast_host_json(maxDequeueCount=3),
             settings={**storage_settings, "WORK_QUEUE": queue_name})
    original = b64("payload")
    queue(queue_name).send_message(original)

    poison = queue(f"{queue_name}-poison")
    assert wait_until(lambda: peek_texts(poison)) == [original]
    time.sleep(0.5)
    assert attempts == [1, 2, 3]
    # Copied to the poison queue, then deleted: the copy can be seen before the delete is done.
    wait_until(lambda: message_count(queue(queue_name)) == 0, timeout=5)


def test_a_message_that_is_not_base64_goes_to_poison_without_a_run(run_host, queue, queue_name, storage_settings):
    received = []
    run_host(queue_app(received.append), host_json=fast_host_json(),
             settings={**storage_settings, "WORK_QUEUE": queue_name})
    queue(queue_name).send_message("plain text, not base64!")

    poison = queue(f"{queue_name}-poison")
    assert wait_until(lambda: peek_texts(poison)) == ["plain text, not base64!"]
    assert received == []


@pytest.mark.parametrize("batch_size, threshold", [(3, 0), (2, 2)])
def test_batch_size_and_new_batch_threshold_bound_concurrency(run_host, queue, queue_name, storage_settings,
                                                              batch_size, threshold):
    lock = threading.Lock()
    running, peak, done = [0], [0], []

    def slow(msg):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.4)
        with lock:
            running[0] -= 1
            done.append(msg.id)

    work_queue = queue(queue_name)
    work_queue.create_queue()
    for n in range(10):
        work_queue.send_message(b64(str(n)))
    run_host(queue_app(slow), host_json=fast_host_json(batchSize=batch_size, newBatchThreshold=threshold),
             settings={**storage_settings, "WORK_QUEUE": queue_name})

    wait_until(lambda: len(done) == 10)
    assert peak[0] == batch_size + threshold


def test_async_function_and_messages_without_encoding(run_host, queue, queue_name, storage_settings):
    received = []
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="item", queue_name="%WORK_QUEUE%", connection="")
    async def work(item: func.QueueMessage) -> None:
        await asyncio.sleep(0.01)
        received.append(item.get_body())

    run_host(app, host_json=fast_host_json(messageEncoding="none"),
             settings={**storage_settings, "WORK_QUEUE": queue_name})
    queue(queue_name).send_message("raw text")
    assert wait_until(lambda: received) == [b"raw text"]


def test_the_lease_is_renewed_while_the_function_runs(run_host, queue, queue_name, storage_settings):
    calls = []

    def longer_than_the_lease(msg):
        calls.append(msg.dequeue_count)
        time.sleep(3)

    work_queue = queue(queue_name)
    run_host(queue_app(longer_than_the_lease), host_json=fast_host_json(),
             settings={**storage_settings, "WORK_QUEUE": queue_name}, message_lease=2)
    work_queue.send_message(b64("long job"))

    wait_until(lambda: calls)
    wait_until(lambda: message_count(work_queue) == 0, timeout=8)
    assert calls == [1]


def test_stop_lets_the_invocation_in_flight_finish(run_host, queue, queue_name, storage_settings):
    started, finished = threading.Event(), []

    def slow(msg):
        started.set()
        time.sleep(1)
        finished.append(msg.get_body())

    work_queue = queue(queue_name)
    host = run_host(queue_app(slow), host_json=fast_host_json(),
                    settings={**storage_settings, "WORK_QUEUE": queue_name})
    work_queue.send_message(b64("last"))
    assert started.wait(10)
    host.stop()
    assert finished == [b"last"]
    assert message_count(work_queue) == 0
