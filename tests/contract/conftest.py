"""Fixtures for the contract suites: each test runs once on the in-memory fakes and once on
the Azure adapters against the local emulators, with a fresh container, queue or database."""
from __future__ import annotations

import socket
import time
import uuid

import pytest

from datetime import datetime, timedelta, timezone

from shared.adapters.azure_storage import AzureBlobAccount, AzureQueue
from shared.adapters.cosmos_index import CosmosIndex
from shared.adapters.sas_rest import SasContainer
from shared.fakes import MemoryBlobAccount, MemoryIndex, MemoryQueue
from skyvault.stack.emulators import DEFAULT_ACCOUNT, DEV_ACCOUNT_KEY


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self, start: float = 1000.0):
        self.value = start

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


def unique(prefix: str) -> str:
    """A fresh name, valid for containers, queues and databases (lowercase, no underscores)."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


class AgentWayAccount(AzureBlobAccount):
    """The Azure account with its containers reached as agents reach theirs: through an
    all-rights container SAS, over shared.adapters.sas_rest. Creating a container takes the
    account's key (a container SAS cannot), so that alone goes through the key-based adapter."""

    def container(self, name: str) -> SasContainer:
        keyed = super().container(name)
        container = SasContainer(self.container_sas_url(
            name, "racwdl", datetime.now(timezone.utc) + timedelta(hours=1)))
        container.create = keyed.create
        return container

    def container_from_url(self, url: str) -> SasContainer:
        return SasContainer(url)


@pytest.fixture(params=["memory", pytest.param("azure", marks=pytest.mark.emulators)])
def backend(request) -> str:
    return request.param


@pytest.fixture(params=["memory", pytest.param("azure", marks=pytest.mark.emulators),
                        pytest.param("sas", marks=pytest.mark.emulators)])
def blob_backend(request) -> str:
    """Blob containers also run the suite the agents' way ("sas")."""
    return request.param


def _azure_account(backend: str, connection_string: str, region: str) -> AzureBlobAccount:
    return (AgentWayAccount if backend == "sas" else AzureBlobAccount)(connection_string, region)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def wait(backend, clock):
    """Let `seconds` pass for the queue under test: the fake's clock, or real time on the emulator."""
    return clock.advance if backend == "memory" else time.sleep


@pytest.fixture
def blob_account(blob_backend, request):
    if blob_backend == "memory":
        # Unique regions: copy_from finds a memory account by the region in its URL.
        return MemoryBlobAccount(unique("primary"))
    azurite = request.getfixturevalue("azurite_primary")
    return _azure_account(blob_backend, azurite.connection_string, "primary")


@pytest.fixture
def other_account(blob_backend, request):
    """A second account to copy into from blob_account. On Azurite it is the default
    account of the same process: Azurite copies across accounts of one process only."""
    if blob_backend == "memory":
        return MemoryBlobAccount(unique("paired"))
    azurite = request.getfixturevalue("azurite_primary")
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={DEFAULT_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{azurite.blob_port}/{DEFAULT_ACCOUNT};"
    )
    return _azure_account(blob_backend, connection_string, "paired")


@pytest.fixture
def container(blob_account):
    container = blob_account.container(unique("c"))
    container.create()
    return container


@pytest.fixture
def target(other_account):
    """A container in other_account, where copies go (the paired region)."""
    target = other_account.container(unique("t"))
    target.create()
    return target


@pytest.fixture
def make_queue(backend, clock, request):
    """A queue object for a fresh name, not yet created (agents' SAS queues: test_queue_contract)."""
    if backend == "memory":
        return lambda: MemoryQueue(unique("q"), now=clock)
    connection_string = request.getfixturevalue("azurite_primary").connection_string
    return lambda: AzureQueue(connection_string, unique("q"))


@pytest.fixture
def queue(make_queue):
    queue = make_queue()
    queue.create()
    return queue


@pytest.fixture
def index(backend, request):
    if backend == "memory":
        return MemoryIndex()
    cosmos = request.getfixturevalue("cosmos")
    index = CosmosIndex(cosmos.endpoint, cosmos.key, unique("db"))
    index.ensure_schema()
    return index


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: what a stopped emulator looks like."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
