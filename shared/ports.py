"""Ports: the small interfaces the domain and handlers use for storage, queues and the index.

Words:
- BlobContainer: one container of one storage account (a vault's container in
  one region). Blobs are written once; `put` without overwrite is create-only.
- lease: a claim of LEASE_MIN_S to LEASE_MAX_S seconds on one blob, named by the lease id
  the storage service hands out. While it lasts, nobody else can take a lease on that blob,
  and it cannot be overwritten or deleted without the id (lock blobs, under `locks/`, are
  never written otherwise). Renewing restarts it; releasing ends it.
- BlobAccount: one region's storage account; hands out containers and SAS URLs.
- Queue: one storage queue carrying text (JSON) messages.
- Index: the service's metadata (vaults, items, chunks, recovery points, jobs,
  usage) kept in Cosmos DB.

Errors: `BlobNotFound`, `BlobAlreadyExists`, `Conflict` and `PreconditionFailed`
are permanent answers about the data and are never retried by adapters; so are
`LeaseHeld` and `LeaseLost`, answers about who holds a lease.
`TransientError` (timeouts, 5xx, connection refused) may succeed if retried;
whether to retry is the caller's decision (the Functions host retries a failed
message). Every adapter passes the same contract tests (tests/contract).
"""
from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Iterator

from shared.errors import Retryable
from shared.domain import ChunkRecord, ItemRecord, Job, Machine, Nonce, RecoveryPoint, UsageDay, UsageEvent, Vault


class StorageError(Exception):
    """Base of the errors ports raise."""


class BlobNotFound(StorageError):
    pass


class BlobAlreadyExists(StorageError):
    pass


class Conflict(StorageError):
    """A document with this id already exists in its partition."""


class ContainerExists(StorageError):
    """A container created with exist_ok=False is there already."""


class PreconditionFailed(StorageError):
    """An ETag-checked replace lost a race: re-read and try again."""


class LeaseHeld(StorageError):
    """Someone else holds an unexpired lease on the blob (or one is still being broken)."""


class LeaseLost(StorageError):
    """The lease named is not on the blob any more: released, broken, or expired and taken by
    another, or the blob is gone. Whoever thought they held it does not."""


class TransientError(StorageError, Retryable):
    """The service did not answer or answered 5xx: retrying may succeed."""


class ContentMismatch(TransientError):
    """Azure Storage refused a Put Blob whose body does not have the MD5 the writer sent with
    it (400 Md5Mismatch): the bytes changed on the way. Nothing was stored; sending again may
    succeed."""


LEASE_MIN_S, LEASE_MAX_S = 15, 60  # what Azure Storage allows for a lease that expires


def check_lease_seconds(seconds: int) -> None:
    """Raise ValueError unless `seconds` is a lease length Azure Storage accepts."""
    if not LEASE_MIN_S <= seconds <= LEASE_MAX_S:
        raise ValueError(f"a blob lease lasts {LEASE_MIN_S} to {LEASE_MAX_S} seconds, not {seconds}")


def transient_status(status: int) -> bool:
    """Whether Azure Storage answering HTTP `status` is worth retrying (timeout, throttled, 5xx)."""
    return status in (408, 429) or status >= 500


def pause_before_retry(attempt: int, base_s: float) -> None:
    """Wait before retry `attempt` (1, 2, ...) of a request: `base_s`, doubling, with up to 50 %
    jitter so that clients refused together do not come back together."""
    time.sleep(base_s * 2 ** (attempt - 1) * (1 + random.random() / 2))


@dataclass(frozen=True)
class BlobProperties:
    name: str
    size: int
    content_md5: bytes | None  # what Azure Storage computed on a single Put Blob
    etag: str
    last_modified: datetime | None = None


class BlobContainer(ABC):
    name: str

    @abstractmethod
    def create(self, *, exist_ok: bool = True) -> None:
        """Create the container; if it exists, nothing (exist_ok) or ContainerExists."""

    @abstractmethod
    def put(self, name: str, data: bytes, *, overwrite: bool = False, md5: bytes | None = None) -> BlobProperties:
        """Write `data` (any bytes-like object, read before this returns) as one Put Blob. Without
        overwrite, raises BlobAlreadyExists if the blob exists. `md5`, the data's MD5, goes with
        the request (Content-MD5): the storage service refuses a body that does not match it
        (ContentMismatch) and records it as the blob's MD5, so a blob put with it arrived whole."""

    @abstractmethod
    def properties(self, name: str) -> BlobProperties:
        """Raises BlobNotFound."""

    @abstractmethod
    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read the whole blob or a range of it. Raises BlobNotFound."""

    @abstractmethod
    def read_head(self, name: str, length: int) -> tuple[bytes, BlobProperties]:
        """The first `length` bytes and the whole blob's properties (size, the MD5 Azure
        recorded), in one transaction: a ranged Get Blob answers both. Raises BlobNotFound."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Delete the blob; does nothing if it is absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Names of the blobs under `prefix`, in lexical order."""

    @abstractmethod
    def list_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """(name, size in bytes) of the blobs under `prefix`, in lexical order: what a listing
        answers without reading a blob."""

    @abstractmethod
    def copy_from(self, name: str, source_url: str) -> BlobProperties:
        """Server-side copy of the blob at `source_url` (a SAS URL the service may read, possibly
        in another account) into `name`, replacing what is there; returns once the copy is
        complete, with the new blob's properties. BlobNotFound if the source is missing;
        TransientError if either side does not answer."""

    # The lease methods are not abstract: containers reached through an agent's SAS
    # (shared.adapters.sas_rest, skyvault.vaultclient) take no leases, and say so.
    def acquire_lease(self, name: str, seconds: int) -> str:
        """Take a lease of `seconds` (LEASE_MIN_S to LEASE_MAX_S, else ValueError) on blob
        `name`, first creating it empty if it is absent (an existing blob is left as it is), and
        return the lease id. Raises LeaseHeld if someone else holds an unexpired lease on it,
        BlobNotFound if the container does not exist."""
        raise NotImplementedError(f"{type(self).__name__} does not take blob leases")

    def renew_lease(self, name: str, lease_id: str) -> None:
        """Restart lease `lease_id` on blob `name` for the length it was taken for; a lease that
        expired but nobody took since is renewed too. Raises LeaseLost if it is not ours any more
        (released, broken, taken by another after it expired, or the blob is gone)."""
        raise NotImplementedError(f"{type(self).__name__} does not take blob leases")

    def release_lease(self, name: str, lease_id: str) -> None:
        """End lease `lease_id` on blob `name`, so another can take one at once; does nothing if
        the lease is already gone (released, broken, taken by another) or the blob is."""
        raise NotImplementedError(f"{type(self).__name__} does not take blob leases")


class BlobAccount(ABC):
    region: str

    @abstractmethod
    def container(self, name: str) -> BlobContainer:
        """The container `name` (not created by this call)."""

    @abstractmethod
    def container_sas_url(self, container: str, permissions: str, expiry: datetime) -> str:
        """A URL with a SAS for one container. permissions is Azure's letters: "r" read,
        "c" create (new blobs only), "w" write, "d" delete, "l" list."""

    @abstractmethod
    def container_from_url(self, url: str) -> BlobContainer:
        """The container a SAS URL made by container_sas_url points at, with only that SAS's rights."""


@dataclass(frozen=True)
class ReceivedMessage:
    id: str
    pop_receipt: str
    body: str
    dequeue_count: int
    inserted_on: datetime | None = None


class Queue(ABC):
    name: str

    @abstractmethod
    def create(self) -> None:
        """Create the queue; does nothing if it exists."""

    @abstractmethod
    def send(self, body: str, *, visibility_timeout: int = 0) -> None:
        """Add a message, visible after visibility_timeout seconds."""

    @abstractmethod
    def receive(self, max_messages: int, visibility_timeout: int) -> list[ReceivedMessage]:
        """Take up to max_messages visible messages, hidden for visibility_timeout seconds."""

    @abstractmethod
    def delete(self, message: ReceivedMessage) -> None:
        pass

    @abstractmethod
    def release(self, message: ReceivedMessage, visibility_timeout: int) -> None:
        """Make a received message visible again after visibility_timeout seconds."""

    @abstractmethod
    def approximate_count(self) -> int:
        pass

    @abstractmethod
    def peek(self, max_messages: int = 32) -> list[str]:
        """Bodies of up to max_messages visible messages, without taking them."""


class Index(ABC):
    """The service's metadata. Every write is idempotent or ETag-checked; every
    read names its partition (vault or tenant)."""

    # vaults (partition /tenantId)
    @abstractmethod
    def create_vault(self, vault: Vault) -> Vault:
        """Raises Conflict if a vault with this id exists in the tenant."""

    @abstractmethod
    def get_vault(self, tenant_id: str, vault_id: str) -> Vault | None:
        pass

    @abstractmethod
    def list_vaults(self, tenant_id: str) -> list[Vault]:
        pass

    @abstractmethod
    def list_all_vaults(self) -> list[Vault]:
        """Every tenant's vaults, for the service's timer sweeps (the one cross-partition query)."""

    @abstractmethod
    def replace_vault(self, vault: Vault) -> Vault:
        """Replace if vault.etag still matches; raises PreconditionFailed."""

    # items (partition /vaultId)
    @abstractmethod
    def get_item(self, vault_id: str, item: str) -> ItemRecord | None:
        pass

    @abstractmethod
    def put_item(self, record: ItemRecord) -> ItemRecord:
        """Create the record if record.etag is None (Conflict if it exists), else replace it if
        the etag still matches (PreconditionFailed otherwise, or if it no longer exists)."""

    @abstractmethod
    def list_items(self, vault_id: str) -> list[ItemRecord]:
        """The vault's item records, by item name."""

    # machines (partition /vaultId)
    @abstractmethod
    def create_machine(self, machine: Machine) -> Machine:
        """Conflict if the vault has a machine of this id."""

    @abstractmethod
    def get_machine(self, vault_id: str, machine_id: str) -> Machine | None:
        pass

    @abstractmethod
    def replace_machine(self, machine: Machine) -> Machine:
        """Replace if machine.etag still matches; raises PreconditionFailed."""

    @abstractmethod
    def list_machines(self, vault_id: str) -> list[Machine]:
        """The vault's machines, by enrolment time (then id)."""

    # request nonces (partition /vaultId)
    @abstractmethod
    def add_nonce(self, nonce: Nonce, now: str) -> bool:
        """Record a nonce; False if it is recorded and expires after `now` (a replay). An expired
        one is replaced; expired ones may also be dropped at any time (Cosmos DB's TTL)."""

    # chunks (hierarchical partition /vaultId,/shard)
    @abstractmethod
    def add_chunk(self, chunk: ChunkRecord) -> bool:
        """Create the record if absent. True if created, False if it was already there (unchanged)."""

    @abstractmethod
    def get_chunks(self, vault_id: str, chunk_ids: Iterable[str]) -> dict[str, ChunkRecord]:
        """The records that exist among chunk_ids, by id."""

    @abstractmethod
    def replace_chunk(self, chunk: ChunkRecord) -> ChunkRecord:
        """Replace if chunk.etag still matches; raises PreconditionFailed."""

    @abstractmethod
    def delete_chunk(self, chunk: ChunkRecord) -> None:
        """Delete the record if chunk.etag still matches (PreconditionFailed otherwise); does
        nothing if it is absent."""

    @abstractmethod
    def oldest_unreplicated_chunk(self, vault_id: str) -> ChunkRecord | None:
        """The verified chunk with no replicated_at and the oldest recorded_at, if any."""

    @abstractmethod
    def chunks_after(self, vault_id: str, after_id: str, limit: int) -> list[ChunkRecord]:
        """Up to `limit` records with id > after_id, in id order (a rolling scan of a vault)."""

    # recovery points (partition /vaultId)
    @abstractmethod
    def create_point(self, point: RecoveryPoint) -> RecoveryPoint:
        """Raises Conflict if it exists."""

    @abstractmethod
    def get_point(self, vault_id: str, point_id: str) -> RecoveryPoint | None:
        pass

    @abstractmethod
    def replace_point(self, point: RecoveryPoint) -> RecoveryPoint:
        """Replace if point.etag still matches; raises PreconditionFailed."""

    @abstractmethod
    def delete_point(self, vault_id: str, point_id: str) -> None:
        """Delete the point's record; does nothing if it is absent."""

    @abstractmethod
    def list_points(self, vault_id: str, item: str | None = None) -> list[RecoveryPoint]:
        """Newest first."""

    @abstractmethod
    def stale_points(self, vault_id: str, checked_before: str, limit: int) -> list[RecoveryPoint]:
        """Up to `limit` points, the least recently checked first, last checked (`checked_at`)
        before `checked_before` (an ISO time) and either pending or committed without their
        follow-ups recorded done: the work the sweep picks up."""

    # jobs (partition /vaultId)
    @abstractmethod
    def create_job(self, job: Job) -> Job:
        """Raises Conflict if it exists."""

    @abstractmethod
    def get_job(self, vault_id: str, job_id: str) -> Job | None:
        pass

    @abstractmethod
    def replace_job(self, job: Job) -> Job:
        """Replace if job.etag still matches; raises PreconditionFailed."""

    @abstractmethod
    def list_jobs(self, vault_id: str, kind: str, status: str) -> list[Job]:
        """The vault's jobs of one kind and status, oldest first (`created_at`)."""

    # usage events (partition /vaultId)
    @abstractmethod
    def add_usage_event(self, event: UsageEvent) -> bool:
        """Create if absent (the event id makes it idempotent). True if created."""

    def add_usage_events(self, events: list[UsageEvent]) -> None:
        """Create each of `events` that is absent, as add_usage_event does; a store with
        transactional batches (Cosmos DB) writes them USAGE_BATCH to a request per vault."""
        for event in events:
            self.add_usage_event(event)

    @abstractmethod
    def list_usage_events(self, vault_id: str) -> list[UsageEvent]:
        """Oldest first (`at`)."""

    @abstractmethod
    def usage_events_present(self, vault_id: str, event_ids: list[str]) -> set[str]:
        """Which of `event_ids` (at most 100) the vault's ledger holds."""

    # daily usage (partition /vaultId)
    @abstractmethod
    def get_usage_day(self, vault_id: str, day: str) -> UsageDay | None:
        pass

    @abstractmethod
    def create_usage_day(self, day: UsageDay) -> UsageDay:
        """Raises Conflict if it exists."""

    @abstractmethod
    def replace_usage_day(self, day: UsageDay) -> UsageDay:
        """Replace if day.etag still matches; raises PreconditionFailed."""

    @abstractmethod
    def list_usage_days(self, vault_id: str, until: str) -> list[UsageDay]:
        """The vault's days up to and including `until` (YYYY-MM-DD), oldest first."""


def blob_url(container_url: str, name: str) -> str:
    """The URL of blob `name` from its container's (SAS) URL."""
    base, _, query = container_url.partition("?")
    return f"{base}/{name}" + (f"?{query}" if query else "")
