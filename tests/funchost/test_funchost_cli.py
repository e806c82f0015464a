"""`python -m funchost` as a launcher runs it: free port, readiness line, status, triggers, SIGTERM."""
from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from funchost_helpers import peek_texts, wait_until

from skyvault.stack import emulators

REPOSITORY = Path(__file__).resolve().parents[2]
SAMPLE_APP = Path(__file__).parent / "sample_app"


@pytest.fixture
def cli_host(azurite_primary, queue_name):
    """The sample app under `python -m funchost --port 0`, its output lines as they come, and its settings."""
    settings = {"AzureWebJobsStorage": azurite_primary.connection_string, "SAMPLE_QUEUE": queue_name,
                "SAMPLE_ECHO_QUEUE": f"{queue_name}-echo", "SAMPLE_SCHEDULE": "*/1 * * * * *"}
    process = subprocess.Popen(
        [sys.executable, "-m", "funchost", "--app-dir", str(SAMPLE_APP), "--port", "0"],
        cwd=REPOSITORY, env={**os.environ, **settings}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    yield process, lines, settings
    emulators.stop_pid(process.pid)
    reader.join(5)


def logged(lines: list[str], pattern: str) -> re.Match | None:
    return next(filter(None, (re.search(pattern, line) for line in list(lines))), None)


def test_cli_serves_runs_triggers_and_stops_on_sigterm(cli_host, queue):
    process, lines, settings = cli_host
    ready = wait_until(lambda: logged(lines, r"^funchost listening on http://127\.0\.0\.1:(\d+)$"), timeout=30)
    url = f"http://127.0.0.1:{ready.group(1)}"

    assert requests.get(f"{url}/admin/host/status").json() == {"state": "Running"}
    assert requests.get(f"{url}/api/hello/ann").text == "hello ann"
    echo = queue(settings["SAMPLE_ECHO_QUEUE"])
    echo.create_queue()
    queue(settings["SAMPLE_QUEUE"]).send_message(base64.b64encode(b"ping").decode())
    assert wait_until(lambda: peek_texts(echo)) == ["ping"]
    wait_until(lambda: logged(lines, r"Executed 'Functions\.tick' \(Succeeded"), timeout=5)
    assert logged(lines, r"Executed 'Functions\.echo' \(Succeeded")

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)
    wait_until(lambda: logged(lines, r"Host stopped"), timeout=5)
