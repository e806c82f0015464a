"""What every use case shares: the Services container, the queue names, how the service queues
a message for itself, and the re-read-and-retry loop of ETag-checked updates."""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, TypeVar

from shared.domain import ChunkRecord, RecoveryPoint, Vault
from shared.errors import Retryable
from shared.ports import BlobAccount, Index, PreconditionFailed, Queue

INGEST_QUEUE, COMMIT_QUEUE, RESTORE_QUEUE, REPLICATE_QUEUE = "ingest", "commit", "restore", "replicate"
USAGE_QUEUE = "usage"
AGENT_QUEUES = (INGEST_QUEUE, COMMIT_QUEUE, RESTORE_QUEUE)  # the queues agents post to (through the API)
ALL_QUEUES = (*AGENT_QUEUES, REPLICATE_QUEUE, USAGE_QUEUE)
POISON_SUFFIX = "-poison"
# An ETag-checked update that loses this many races in a row gives up (retryable): something
# is rewriting the record in a loop.
UPDATE_ATTEMPTS = 50


@dataclass
class Services:
    index: Index
    primary: BlobAccount
    queue: Callable[[str], Queue]
    api_url: str = ""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    secondary: BlobAccount | None = None  # the paired region, for GRS vaults
    # The local stack's regions are separate Azurite processes, which cannot copy between each
    # other: there the service streams the bytes instead (see docs/design.md).
    stream_copy: bool = False
    replication_retry_max_s: int = 300

    def regions(self) -> dict[str, BlobAccount]:
        return {"primary": self.primary, **({"secondary": self.secondary} if self.secondary else {})}


def iso_time(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat()


def enqueue(services: Services, queue: str, text: str, delay: int = 0) -> None:
    """Queue a message for a function of this app: base64, as host.json's messageEncoding says."""
    services.queue(queue).send(base64.b64encode(text.encode()).decode(), visibility_timeout=delay)


R = TypeVar("R")


def update(record: R, change: Callable[[R], bool], replace: Callable[[R], R],
           reread: Callable[[R], R | None]) -> R | None:
    """Apply `change` to `record` and store it with `replace` (ETag-checked); on a lost race,
    re-read the record and apply `change` again. `change` mutates its argument and returns
    whether anything needs writing (False: nothing is written). Returns the record as stored,
    or None if it no longer exists."""
    for _ in range(UPDATE_ATTEMPTS):
        if not change(record):
            return record
        try:
            return replace(record)
        except PreconditionFailed:
            record = reread(record)
            if record is None:
                return None
    raise Retryable(f"gave up updating {type(record).__name__} {getattr(record, 'id', '')}: "
                    f"{UPDATE_ATTEMPTS} concurrent changes in a row")


def set_once(name: str, value: object) -> Callable[[object], bool]:
    """An `update` change that sets field `name` to `value` unless it is set already."""
    def change(record: object) -> bool:
        if getattr(record, name):
            return False
        setattr(record, name, value)
        return True

    return change


def update_vault(services: Services, vault: Vault, change: Callable[[Vault], bool]) -> Vault | None:
    return update(vault, change, services.index.replace_vault,
                  lambda v: services.index.get_vault(v.tenant_id, v.id))


def update_point(services: Services, point: RecoveryPoint,
                 change: Callable[[RecoveryPoint], bool]) -> RecoveryPoint | None:
    return update(point, change, services.index.replace_point,
                  lambda p: services.index.get_point(p.vault_id, p.id))


def update_chunk(services: Services, record: ChunkRecord,
                 change: Callable[[ChunkRecord], bool]) -> ChunkRecord | None:
    return update(record, change, services.index.replace_chunk,
                  lambda c: services.index.get_chunks(c.vault_id, [c.id]).get(c.id))
