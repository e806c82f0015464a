"""Fixtures for funchost's tests: unique queues on the session's Azurite and hosts that are always stopped."""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

# pytest puts tests/ on sys.path, where this directory would pass for a namespace package `funchost`
# ahead of the editable install's finder; with the repository on sys.path the real package wins.
_REPOSITORY = str(Path(__file__).resolve().parents[2])
if _REPOSITORY not in sys.path:
    sys.path.append(_REPOSITORY)

from funchost import FunctionHost  # noqa: E402


@pytest.fixture
def queue_name():
    return f"fh-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def queue(azurite_primary):
    """A QueueClient factory on the primary Azurite (no message encoding: tests encode themselves)."""
    return lambda name: QueueClient.from_connection_string(azurite_primary.connection_string, name)


@pytest.fixture
def storage_settings(azurite_primary):
    return {"AzureWebJobsStorage": azurite_primary.connection_string}


@pytest.fixture
def run_host():
    """Start a FunctionHost (same arguments); every host started is stopped at teardown."""
    hosts = []

    def start(app, **kwargs) -> FunctionHost:
        kwargs.setdefault("drain_timeout", 10.0)
        host = FunctionHost(app, **kwargs)
        hosts.append(host)
        return host.start()

    yield start
    for host in hosts:
        host.stop()
