"""The agent's in-process transport: its API requests and queue messages go straight to the
function app's own entry points on in-memory fakes, synchronously.

Requests pass through functions.api.answer (routing, signature check, error mapping), queue
messages through each trigger's handler and shared.service.delivery, exactly as in the
Functions host; only HTTP and the queue polls are left out."""
from __future__ import annotations

import base64
import dataclasses
import json
import re
from datetime import datetime, timezone
from typing import Any, Callable

from functions import api, commit, ingest, restore
from shared.fakes import MemoryBlobAccount, MemoryIndex, MemoryQueue
from shared.ports import BlobContainer
from shared.service import delivery, vaults
from shared.service.context import Services
from shared.messages import EnrolmentTicket
from skyvault.vaultclient import AgentVault, enrol

QUEUE_HANDLERS = {"ingest": ingest.handle, "commit": commit.handle, "restore": restore.handle}
_MESSAGES = re.compile(r"/messages/[^/]+\Z")


class _DeliveredAtOnce:
    """The queue an agent's `POST messages/{queue}` puts its message on, in process: the
    message goes to the queue's handler at once, through shared.service.delivery."""

    def __init__(self, services: Services, name: str):
        self.services, self.name = services, name

    def send(self, body: str, *, visibility_timeout: int = 0) -> None:
        handle = QUEUE_HANDLERS[self.name]
        delivery.deliver(self.services, self.name, base64.b64decode(body),
                         lambda message: handle(self.services, message))


class InProcessTransport:
    base_path = ""

    def __init__(self, services: Services):
        self.services = services
        self._delivering = dataclasses.replace(
            services, queue=lambda name: _DeliveredAtOnce(services, name) if name in QUEUE_HANDLERS
            else services.queue(name))

    def call(self, method: str, path: str, params: dict[str, str] | None, headers: Callable[[], dict[str, str]],
             data: bytes) -> tuple[int, bytes]:
        # Only the agent's own messages are delivered at once: what the service queues for
        # itself (a commit's re-check, later) waits on its queue, as in the Functions host.
        services = self._delivering if method == "POST" and _MESSAGES.search(path) else self.services
        status, body = api.answer(services, api.Call(method, path, dict(params or {}), headers(), data))
        return status, json.dumps(body).encode()

    def container(self, url: str) -> BlobContainer:
        """The container of whichever region's account the SAS URL names."""
        for account in self.services.regions().values():
            try:
                return account.container_from_url(url)
            except ValueError:
                continue
        raise ValueError(f"{url!r} is a container URL of none of this service's regions")


def memory_services(name: str, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> Services:
    """A service on fakes: one primary region, in-memory queues; `clock` is the service's and the
    storage account's (SAS expiries are checked against it)."""
    queues: dict[str, MemoryQueue] = {}

    def queue(queue_name: str) -> MemoryQueue:
        if queue_name not in queues:
            queues[queue_name] = MemoryQueue(queue_name)
            queues[queue_name].create()
        return queues[queue_name]

    return Services(index=MemoryIndex(), primary=MemoryBlobAccount(name, utcnow=clock), queue=queue, clock=clock)


def new_vault(services: Services, tenant: str, name: str, redundancy: str = "LRS") -> dict[str, Any]:
    """A vault's credentials file (its enrolment ticket), as `vault create` writes it."""
    return vaults.create_vault(services, tenant, name, redundancy)[1].to_doc()


def enrolled(ticket: dict[str, Any], services: Services, keys, name: str = "test-machine") -> dict[str, Any]:
    """The credentials of a machine registered with `ticket` (`skyvault register`, in process)."""
    return enrol(ticket, keys, name, InProcessTransport(services), services.clock)[0]


def new_machine(services: Services, tenant: str, name: str, redundancy: str = "LRS",
                passphrase: str = "in-process test passphrase") -> dict[str, Any]:
    """The credentials of the first machine of a new vault (`vault create`, then `register`)."""
    ticket = new_vault(services, tenant, name, redundancy)
    return enrolled(ticket, services, AgentVault.derive_keys(ticket, passphrase))


class InProcessVault(AgentVault):
    """An agent whose queue messages and API calls go straight to the function app's entry
    points: the pipeline runs synchronously, on fakes. It shares the service's clock. Given a
    vault credentials file (an enrolment ticket), it registers first."""

    def __init__(self, creds: dict[str, Any], services: Services, passphrase: str, name: str = "test-machine"):
        keys = AgentVault.derive_keys(creds, passphrase)
        if creds.get("kind") == EnrolmentTicket.KIND:
            creds = enrolled(creds, services, keys, name)
        super().__init__(creds, keys, clock=services.clock, transport=InProcessTransport(services))
        self.services = services


def record_reads(vault: AgentVault) -> list[str]:
    """The blob names `vault` reads from now on through the containers of its read SAS (restore
    jobs), in order."""
    reads: list[str] = []
    opened = vault.read_container

    def recording(url: str) -> BlobContainer:
        container = opened(url)
        read = container.read
        container.read = lambda name, *a, **k: reads.append(name) or read(name, *a, **k)
        return container

    vault.read_container = recording
    return reads
