"""The agent's in-process transport: its API requests and queue messages go straight to the
function app's own entry points on in-memory fakes, synchronously.

Requests pass through functions.api.answer (routing, signature check, error mapping), queue
messages through each trigger's handler and shared.service.delivery, exactly as in the
Functions host; only HTTP and the queue polls are left out."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from functions import api, commit, ingest, restore
from shared.fakes import MemoryBlobAccount, MemoryIndex, MemoryQueue
from shared.ports import BlobContainer
from shared.service import delivery, vaults
from shared.service.context import Services

QUEUE_HANDLERS = {"ingest": ingest.handle, "commit": commit.handle, "restore": restore.handle}


class InProcessTransport:
    base_path = ""

    def __init__(self, services: Services):
        self.services = services

    def call(self, method: str, path: str, params: dict[str, str] | None, headers: dict[str, str],
             data: bytes) -> tuple[int, bytes]:
        status, body = api.answer(self.services, api.Call(method, path, dict(params or {}), headers, data))
        return status, json.dumps(body).encode()

    def send(self, queue: str, text: str) -> None:
        handle = QUEUE_HANDLERS[queue]
        delivery.deliver(self.services, queue, text.encode(), lambda message: handle(self.services, message))

    def container(self, url: str) -> BlobContainer:
        """The container of a SAS URL of either region (a restore plan offers both for GRS)."""
        for account in self.services.regions().values():
            if url.startswith(f"memory://{account.region}/"):
                return account.container_from_url(url)
        return self.services.primary.container_from_url(url)


def memory_services(name: str) -> Services:
    """A service on fakes: one primary region, in-memory queues."""
    queues: dict[str, MemoryQueue] = {}

    def queue(queue_name: str) -> MemoryQueue:
        if queue_name not in queues:
            queues[queue_name] = MemoryQueue(queue_name)
            queues[queue_name].create()
        return queues[queue_name]

    return Services(index=MemoryIndex(), primary=MemoryBlobAccount(name), queue=queue,
                    queue_sas_url=lambda n, p, e: f"memory://q/{n}", clock=lambda: datetime.now(timezone.utc))


def new_vault(services: Services, tenant: str, name: str, redundancy: str = "LRS") -> dict[str, Any]:
    """A vault's agent credentials document, as `vault create` writes it."""
    return vaults.create_vault(services, tenant, name, redundancy)[1].to_doc()
