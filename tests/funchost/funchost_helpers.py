"""Helpers shared by funchost's tests."""
from __future__ import annotations

import time

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError


def fast_host_json(**queues) -> dict:
    """host.json with polling short enough for tests; keyword arguments override extensions.queues."""
    return {"version": "2.0",
            "extensions": {"queues": {"maxPollingInterval": "00:00:01", "visibilityTimeout": "00:00:00", **queues}}}


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s")


def peek_texts(client) -> list[str]:
    """Texts of a queue's visible messages; none while the queue does not exist yet."""
    try:
        return [message.content for message in client.peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []


def queue_app(handler) -> func.FunctionApp:
    """An app whose one function `work` runs `handler` on each message of %WORK_QUEUE%."""
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="Storage")
    def work(msg: func.QueueMessage) -> None:
        handler(msg)

    return app
