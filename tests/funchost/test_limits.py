"""The limits the Functions host enforces in Azure, lowered so that a test reaches them:
functionTimeout (queue, timer and HTTP invocations), the load balancer's 230 s for an HTTP
response, and the request body size limit."""
from __future__ import annotations

import base64
import logging
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func
import pytest
import requests
from funchost_helpers import fast_host_json, peek_texts, queue_app, wait_until

from funchost import FunctionHost, web
from funchost.config import ConfigError, HostConfig

REPOSITORY = Path(__file__).resolve().parents[2]
# A function that overruns waits this long at most: the tests set `release` at their end, so that
# the threads this host cannot stop end soon after.
OVERRUN = 10.0


@pytest.fixture
def release():
    event = threading.Event()
    yield event
    event.set()


def timeouts_logged(caplog, function: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith(f"Timeout value of 00:00:01 exceeded by function 'Functions.{function}'")]


# functionTimeout in host.json

def test_function_timeout_defaults_to_30_minutes_and_minus_one_means_none():
    assert HostConfig.from_json({"version": "2.0"}).function_timeout == 30 * 60
    assert HostConfig.from_json({"version": "2.0", "functionTimeout": "00:10:00"}).function_timeout == 600
    assert HostConfig.from_json({"version": "2.0", "FunctionTimeout": "-1"}).function_timeout is None


def test_timeouts_are_logged_as_the_host_writes_a_timespan():
    from funchost.config import format_timespan

    assert format_timespan(1800) == "00:30:00"
    assert format_timespan(93600.5) == "1.02:00:00.5000000"


@pytest.mark.parametrize("value", ["00:00:00.5", "10m", 600])
def test_a_function_timeout_below_one_second_or_not_a_timespan_is_refused(value):
    with pytest.raises(ConfigError, match="functionTimeout"):
        HostConfig.from_json({"version": "2.0", "functionTimeout": value})


def test_the_apps_host_json_sets_a_function_timeout_the_retention_sweep_fits_in():
    from shared.service.retention_sweep import SWEEP_SECONDS

    timeout = HostConfig.load(REPOSITORY / "host.json").function_timeout
    assert timeout is not None and timeout >= SWEEP_SECONDS + 5 * 60


def test_a_queue_message_whose_function_times_out_is_released_and_then_poisoned(
        run_host, queue, queue_name, storage_settings, release, caplog):
    attempts = []

    def overrun(msg):
        attempts.append(msg.dequeue_count)
        release.wait(OVERRUN)

    with caplog.at_level(logging.INFO, logger="funchost"):
        run_host(queue_app(overrun), host_json={**fast_host_json(maxDequeueCount=2), "functionTimeout": "00:00:01"},
                 settings={**storage_settings, "WORK_QUEUE": queue_name})
        original = base64.b64encode(b"long job").decode()
        queue(queue_name).send_message(original)
        # Not completed: each timed-out run releases the message, so it comes back dequeued once more.
        assert wait_until(lambda: peek_texts(queue(f"{queue_name}-poison")), timeout=OVERRUN - 2) == [original]
    assert attempts == [1, 2]
    assert len(timeouts_logged(caplog, "work")) == 2
    # The host copies the message to the poison queue, then deletes it (as the real host does):
    # the copy can be seen before the delete is done.
    wait_until(lambda: queue(queue_name).get_queue_properties().approximate_message_count == 0, timeout=5)


def test_a_timer_run_that_times_out_fails_and_the_schedule_goes_on(run_host, release, caplog):
    runs = []
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="timer", schedule="* * * * * *")
    def stuck(timer: func.TimerRequest) -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            release.wait(OVERRUN)

    with caplog.at_level(logging.INFO, logger="funchost"):
        run_host(app, host_json={"version": "2.0", "functionTimeout": "00:00:01"})
        wait_until(lambda: len(runs) >= 2, timeout=5)
    assert timeouts_logged(caplog, "stuck")
    assert any(r.getMessage().startswith("Executed 'Functions.stuck' (Failed") for r in caplog.records)


def slow_http_app(release: threading.Event, finished: list) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="slow", methods=["GET"])
    def slow(req: func.HttpRequest) -> str:
        release.wait(float(req.params["seconds"]))
        finished.append(time.monotonic())
        return "done"

    return app


def test_an_http_function_that_times_out_answers_500_at_the_timeout(run_host, release, caplog):
    url = run_host(slow_http_app(release, []), host_json={"version": "2.0", "functionTimeout": "00:00:01"}).url
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="funchost"):
        response = requests.get(f"{url}/api/slow", params={"seconds": OVERRUN}, timeout=OVERRUN)
    assert response.status_code == 500
    assert time.monotonic() - started < 3
    assert timeouts_logged(caplog, "slow")


# The load balancer's limit on an HTTP response (230 s in Azure)

def test_an_http_response_later_than_the_limit_gets_502_and_the_function_runs_on(
        run_host, release, caplog, monkeypatch):
    monkeypatch.setattr(web, "HTTP_RESPONSE_LIMIT", 0.3)
    finished = []
    url = run_host(slow_http_app(release, finished)).url
    with caplog.at_level(logging.INFO, logger="funchost"):
        started = time.monotonic()
        response = requests.get(f"{url}/api/slow", params={"seconds": 1.5}, timeout=OVERRUN)
        answered = time.monotonic()
        assert response.status_code == 502
        assert answered - started < 1.2
        # As behind Azure's load balancer, the function goes on; only its answer is lost.
        wait_until(lambda: finished, timeout=5)
        wait_until(lambda: any(r.getMessage().startswith("Executed 'Functions.slow' (Succeeded")
                               for r in caplog.records), timeout=2)
    assert finished[0] - started >= 1.4
    assert requests.get(f"{url}/api/slow", params={"seconds": 0}).text == "done"


# The request body limit (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, 100 MB in Azure)

def echo_app(received: list) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="echo", methods=["POST"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        received.append(len(req.get_body()))
        return func.HttpResponse(req.get_body(), status_code=201)

    return app


def raw_request(url: str, head: str) -> bytes:
    """Send a request's head alone (no body) and return what the host answers before the body comes."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as connection:
        connection.sendall(head.encode("latin-1"))
        return connection.recv(65536)


def test_a_body_over_the_limit_gets_413_without_a_run(run_host):
    received = []
    url = run_host(echo_app(received), settings={"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1024"}).url
    assert requests.post(f"{url}/api/echo", data=b"x" * 1024).status_code == 201
    assert requests.post(f"{url}/api/echo", data=b"x" * 1025).status_code == 413
    assert received == [1024]


def test_the_limit_is_read_from_content_length_before_any_body(run_host):
    received = []
    url = run_host(echo_app(received), settings={"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1024"}).url
    # Ten gigabytes announced, none sent: the answer comes at once, and nothing is buffered.
    answer = raw_request(url, "POST /api/echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10737418240\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")
    # A client that waits for 100 Continue is told 413 instead, and never sends its body.
    answer = raw_request(url, "POST /api/echo HTTP/1.1\r\nHost: test\r\nContent-Length: 2048\r\n"
                              "Expect: 100-continue\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")
    answer = raw_request(url, "POST /api/echo HTTP/1.1\r\nHost: test\r\nContent-Length: lots\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert received == []


def test_the_body_limit_defaults_to_100_mb_and_a_bad_setting_fails_at_start_up():
    assert FunctionHost(echo_app([]), settings={}).request_body_limit == 104857600
    with pytest.raises(ConfigError, match="FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"):
        FunctionHost(echo_app([]), settings={"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "100MB"})
