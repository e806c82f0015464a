"""In-memory fakes of the ports, for unit tests and the demo: blob accounts, queues, the index.

They keep the semantics the contract tests (tests/contract) pin down for the
Azure adapters too:
- Blobs: put is create-only unless overwrite; content_md5 is the MD5 of the
  data, as Azure records it for a single Put Blob (`rot` flips a byte at rest,
  as bit rot would, and leaves that recorded MD5 as it was); a container must be
  created before blobs go in. Container SAS URLs carry their permissions and
  expiry, and a container opened from one enforces them, raising
  PermissionError as the adapter does for a 403. `memory://{region}/{container}`
  is a container's URL, and `memory://{region}/{container}/{blob}` a blob's.
- Server-side copy (copy_from) reads the source through its SAS URL: every
  MemoryBlobAccount is found by its region in a process-wide registry (the
  newest account of a region wins, so give each live account its own region).
  A source SAS without "r", or expired, raises PermissionError; a missing
  source, BlobNotFound.
- Blob leases follow the account's `utcnow` clock: a lease lasts until utcnow passes its
  expiry, an expired one may still be renewed until another is taken or the blob is
  written, and a blob under an unexpired lease refuses overwrite and delete (StorageError,
  as the adapter reports Azure's 412 LeaseIdMissing). Lease ids are GUIDs counted up.
- Queues: visibility timeouts and dequeue counts follow an injectable clock
  (seconds, default time.monotonic); a queue must be created before use.
- Index: Conflict on a duplicate id, ETags that change on every write, and
  PreconditionFailed for a replace with a stale one.
Every fake takes a lock around its state: the agent uploads from several threads.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Iterator, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

from shared.domain import (ChunkRecord, ChunkState, ItemRecord, Job, Machine, Nonce, PointState, RecoveryPoint,
                           UsageDay, UsageEvent, Vault)
from shared.ports import (
    ContainerExists,
    BlobAccount,
    BlobAlreadyExists,
    BlobContainer,
    BlobNotFound,
    ContentMismatch,
    BlobProperties,
    Conflict,
    Index,
    LeaseHeld,
    LeaseLost,
    PreconditionFailed,
    Queue,
    ReceivedMessage,
    StorageError,
    check_lease_seconds,
)

MAX_MESSAGE_BYTES = 64 * 1024
_FULL_RIGHTS = "rcwdl"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class _SasUrl:
    region: str
    container: str
    blob: str | None  # None in a container's URL
    permissions: str
    expiry: datetime


def _parse_sas_url(url: str) -> _SasUrl:
    parts = urlsplit(url)
    container, _, blob = parts.path.lstrip("/").partition("/")
    if parts.scheme != "memory" or not container:
        raise ValueError(f"{url!r} is not a memory account's container or blob URL")
    query = parse_qs(parts.query)
    try:
        permissions = query["sp"][0]
        expiry = datetime.fromisoformat(query["se"][0])
    except (KeyError, ValueError) as e:
        raise ValueError(f"{url!r} has no valid sp and se") from e
    return _SasUrl(parts.netloc, unquote(container), unquote(blob) or None, permissions, expiry)


# Where copy_from finds a source URL's account: region → the newest account of that region.
_accounts_by_region: weakref.WeakValueDictionary[str, MemoryBlobAccount] = weakref.WeakValueDictionary()
_accounts_lock = threading.Lock()


def _account_of_region(region: str) -> MemoryBlobAccount | None:
    with _accounts_lock:
        return _accounts_by_region.get(region)


@dataclass(frozen=True)
class _Lease:
    id: str
    seconds: int
    expires_at: datetime


@dataclass(frozen=True)
class _StoredBlob:
    data: bytes
    etag: str
    last_modified: datetime
    content_md5: bytes  # recorded on upload: bytes that rot at rest keep it
    lease: _Lease | None = None  # the last one taken, until released; writing the blob ends it

    def properties(self, name: str) -> BlobProperties:
        return BlobProperties(
            name=name,
            size=len(self.data),
            content_md5=self.content_md5,
            etag=self.etag,
            last_modified=self.last_modified,
        )


class MemoryBlobAccount(BlobAccount):
    """A storage account held in memory. `utcnow` is the clock SAS expiries are checked against."""

    def __init__(self, region: str = "local", *, utcnow: Callable[[], datetime] = _utcnow):
        self.region = region
        self._utcnow = utcnow
        self._lock = threading.Lock()
        self._containers: dict[str, dict[str, _StoredBlob]] = {}
        self._etags = itertools.count(1)
        self._lease_ids = itertools.count(1)
        with _accounts_lock:
            _accounts_by_region[region] = self

    def container(self, name: str) -> MemoryBlobContainer:
        return MemoryBlobContainer(self, name)

    def _new_blob(self, data: bytes) -> _StoredBlob:
        """`data` as a blob just uploaded (a new ETag, now, its MD5); call under the lock."""
        return _StoredBlob(data, f'"0x{next(self._etags):X}"', self._utcnow(),
                           hashlib.md5(data, usedforsecurity=False).digest())

    def container_sas_url(self, container: str, permissions: str, expiry: datetime) -> str:
        return f"memory://{self.region}/{container}?sp={permissions}&se={quote(expiry.isoformat())}"

    def container_from_url(self, url: str) -> MemoryBlobContainer:
        # A blob's URL is refused rather than read as its container: the adapter
        # (ContainerClient.from_container_url) would take the blob's last name
        # segment for the container.
        sas = _parse_sas_url(url)
        if sas.region != self.region or sas.blob is not None:
            raise ValueError(f"{url!r} is not a container URL of memory account {self.region!r}")
        return MemoryBlobContainer(self, sas.container, permissions=sas.permissions, expiry=sas.expiry)


class MemoryBlobContainer(BlobContainer):
    """A container of a MemoryBlobAccount, with the account key's rights or only a SAS's."""

    def __init__(self, account: MemoryBlobAccount, name: str, *,
                 permissions: str | None = None, expiry: datetime | None = None):
        self.name = name
        self._account = account
        self._permissions = permissions
        self._expiry = expiry

    def _require(self, right: str) -> None:
        """Raise PermissionError unless this container's SAS grants one of the letters in `right`."""
        if self._permissions is None:
            return
        if self._expiry is not None and self._account._utcnow() >= self._expiry:
            raise PermissionError(f"the SAS for {self.name} expired at {self._expiry.isoformat()}")
        if not set(right) & set(self._permissions):
            raise PermissionError(f"the SAS for {self.name} ({self._permissions!r}) does not allow {right!r}")

    def _blobs(self) -> dict[str, _StoredBlob]:
        blobs = self._account._containers.get(self.name)
        if blobs is None:
            raise BlobNotFound(f"container {self.name} does not exist")
        return blobs

    def create(self, *, exist_ok: bool = True) -> None:
        if self._permissions is not None:
            raise PermissionError(f"a container SAS cannot create container {self.name}")
        with self._account._lock:
            if self.name in self._account._containers and not exist_ok:
                raise ContainerExists(f"container {self.name} exists")
            self._account._containers.setdefault(self.name, {})

    def put(self, name: str, data: bytes, *, overwrite: bool = False, md5: bytes | None = None) -> BlobProperties:
        if md5 is not None and hashlib.md5(data, usedforsecurity=False).digest() != md5:
            raise ContentMismatch(f"put {self.name}/{name}: the body's MD5 differs from the Content-MD5 sent")
        with self._account._lock:
            self._require("cw")
            blobs = self._blobs()
            if name in blobs:
                # Azure answers 403, not 409, to a SAS that may create but not write.
                self._require("w")
                if not overwrite:
                    raise BlobAlreadyExists(f"{self.name}/{name}")
                self._refuse_if_leased(name, "overwrite")
            blob = blobs[name] = self._account._new_blob(bytes(data))
            return blob.properties(name)

    def rot(self, name: str, offset: int) -> None:
        """Fault injection: flip the bits of one byte of a blob at rest, as bit rot would; its
        properties (the MD5 recorded on upload among them) stay as they were."""
        with self._account._lock:
            blob = self._blobs()[name]
            data = bytearray(blob.data)
            data[offset] ^= 0xFF
            self._blobs()[name] = replace(blob, data=bytes(data))

    def copy_from(self, name: str, source_url: str) -> BlobProperties:
        sas = _parse_sas_url(source_url)
        if sas.blob is None:
            raise ValueError(f"{source_url!r} is a container URL, not a blob URL")
        source_account = _account_of_region(sas.region)
        if source_account is None:
            raise BlobNotFound(f"copy into {self.name}/{name}: no memory account serves region {sas.region!r}")
        source = MemoryBlobContainer(source_account, sas.container, permissions=sas.permissions, expiry=sas.expiry)
        # Read, then write, each under its own account's lock: source and target may share an account.
        with source_account._lock:
            data = source._get(sas.blob).data
        return self.put(name, data, overwrite=True)

    def _get(self, name: str) -> _StoredBlob:
        self._require("r")
        blob = self._blobs().get(name)
        if blob is None:
            raise BlobNotFound(f"{self.name}/{name}")
        return blob

    def properties(self, name: str) -> BlobProperties:
        with self._account._lock:
            return self._get(name).properties(name)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._account._lock:
            data = self._get(name).data
        if offset > len(data):
            raise ValueError(f"read {self.name}/{name}: the range starts past the end of the blob")
        return data[offset:] if length is None else data[offset:offset + length]

    def read_head(self, name: str, length: int) -> tuple[bytes, BlobProperties]:
        with self._account._lock:
            blob = self._get(name)
            return blob.data[:length], blob.properties(name)

    def delete(self, name: str) -> None:
        with self._account._lock:
            self._require("d")
            self._refuse_if_leased(name, "delete")
            self._account._containers.get(self.name, {}).pop(name, None)

    def _active_lease(self, name: str) -> _Lease | None:
        blob = self._account._containers.get(self.name, {}).get(name)
        if blob is None or blob.lease is None or blob.lease.expires_at <= self._account._utcnow():
            return None
        return blob.lease

    def _refuse_if_leased(self, name: str, what: str) -> None:
        if self._active_lease(name) is not None:
            raise StorageError(f"{what} {self.name}/{name}: the blob is leased and no lease id was given")

    def acquire_lease(self, name: str, seconds: int) -> str:
        check_lease_seconds(seconds)
        with self._account._lock:
            self._require("w")
            blobs = self._blobs()
            if self._active_lease(name) is not None:
                raise LeaseHeld(f"lease {self.name}/{name}: another holds it")
            account = self._account
            blob = blobs[name] if name in blobs else account._new_blob(b"")
            lease = _Lease(str(uuid.UUID(int=next(account._lease_ids))), seconds,
                           account._utcnow() + timedelta(seconds=seconds))
            blobs[name] = replace(blob, lease=lease)
            return lease.id

    def _held(self, name: str, lease_id: str) -> _StoredBlob | None:
        """The blob, if lease `lease_id` is the one on it (unexpired or not)."""
        blob = self._account._containers.get(self.name, {}).get(name)
        return blob if blob is not None and blob.lease is not None and blob.lease.id == lease_id else None

    def renew_lease(self, name: str, lease_id: str) -> None:
        with self._account._lock:
            self._require("w")
            blob = self._held(name, lease_id)
            if blob is None:
                raise LeaseLost(f"renew the lease on {self.name}/{name}: lease {lease_id} is not on it")
            expires_at = self._account._utcnow() + timedelta(seconds=blob.lease.seconds)
            self._blobs()[name] = replace(blob, lease=replace(blob.lease, expires_at=expires_at))

    def release_lease(self, name: str, lease_id: str) -> None:
        with self._account._lock:
            self._require("w")
            blob = self._held(name, lease_id)
            if blob is not None:
                self._blobs()[name] = replace(blob, lease=None)

    def list(self, prefix: str = "") -> Iterator[str]:
        # A generator, like the adapter's: errors surface when iteration starts.
        with self._account._lock:
            self._require("l")
            names = sorted(name for name in self._blobs() if name.startswith(prefix))
        yield from names

    def list_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        with self._account._lock:
            self._require("l")
            sizes = sorted((name, len(blob.data)) for name, blob in self._blobs().items() if name.startswith(prefix))
        yield from sizes


@dataclass
class _Message:
    id: str
    body: str
    visible_at: float
    dequeue_count: int = 0
    pop_receipt: str | None = None


class MemoryQueue(Queue):
    """A storage queue in memory. `now` gives seconds; advance it to expire visibility timeouts.
    delete and release with a stale pop receipt do nothing, as in the adapter."""

    def __init__(self, name: str, *, now: Callable[[], float] = time.monotonic):
        self.name = name
        self._now = now
        self._lock = threading.Lock()
        self._messages: dict[str, _Message] | None = None
        self._ids = itertools.count(1)

    def _queue(self) -> dict[str, _Message]:
        if self._messages is None:
            raise StorageError(f"queue {self.name} does not exist")
        return self._messages

    def create(self) -> None:
        with self._lock:
            if self._messages is None:
                self._messages = {}

    def send(self, body: str, *, visibility_timeout: int = 0) -> None:
        size = len(body.encode("utf-8"))
        if size > MAX_MESSAGE_BYTES:
            raise ValueError(f"queue message of {size} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
        with self._lock:
            message_id = f"m{next(self._ids)}"
            self._queue()[message_id] = _Message(message_id, body, self._now() + visibility_timeout)

    def _visible(self) -> list[_Message]:
        now = self._now()
        return [m for m in self._queue().values() if m.visible_at <= now]

    def receive(self, max_messages: int, visibility_timeout: int) -> list[ReceivedMessage]:
        with self._lock:
            received = []
            for message in self._visible()[:max_messages]:
                message.dequeue_count += 1
                message.pop_receipt = f"r{next(self._ids)}"
                message.visible_at = self._now() + visibility_timeout
                received.append(ReceivedMessage(id=message.id, pop_receipt=message.pop_receipt,
                                                body=message.body, dequeue_count=message.dequeue_count))
            return received

    def _held(self, message: ReceivedMessage) -> _Message | None:
        held = self._queue().get(message.id)
        return held if held is not None and held.pop_receipt == message.pop_receipt else None

    def delete(self, message: ReceivedMessage) -> None:
        with self._lock:
            if self._held(message) is not None:
                del self._queue()[message.id]

    def release(self, message: ReceivedMessage, visibility_timeout: int) -> None:
        with self._lock:
            held = self._held(message)
            if held is not None:
                held.visible_at = self._now() + visibility_timeout
                held.pop_receipt = f"r{next(self._ids)}"

    def approximate_count(self) -> int:
        with self._lock:
            return len(self._queue())

    def peek(self, max_messages: int = 32) -> list[str]:
        with self._lock:
            return [m.body for m in self._visible()[:max_messages]]


R = TypeVar("R", Vault, ChunkRecord, RecoveryPoint, Job, UsageEvent, UsageDay)


class MemoryIndex(Index):
    """The index in memory: one dict per container, keyed by (partition, id)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._docs: dict[str, dict[tuple[str, str], dict]] = {}
        self._etags = itertools.count(1)

    def _table(self, container: str) -> dict[tuple[str, str], dict]:
        return self._docs.setdefault(container, {})

    def _stored(self, record: R) -> dict:
        # A copy, so that callers' later changes to nested dicts do not leak in.
        doc = copy.deepcopy(record.to_doc())
        doc["_etag"] = f'"{next(self._etags)}"'
        return doc

    def _create(self, container: str, partition: str, record: R) -> R:
        with self._lock:
            table = self._table(container)
            if (partition, record.id) in table:
                raise Conflict(f"create {container}/{record.id}")
            doc = table[(partition, record.id)] = self._stored(record)
            return type(record).from_doc(copy.deepcopy(doc))

    def _replace(self, container: str, partition: str, record: R) -> R:
        if record.etag is None:
            raise ValueError(f"replacing {container}/{record.id} needs the etag it was read with")
        with self._lock:
            table = self._table(container)
            current = table.get((partition, record.id))
            if current is None:
                raise PreconditionFailed(f"{container}/{record.id} no longer exists")
            if current["_etag"] != record.etag:
                raise PreconditionFailed(f"replace {container}/{record.id}")
            doc = table[(partition, record.id)] = self._stored(record)
            return type(record).from_doc(copy.deepcopy(doc))

    def _delete(self, container: str, partition: str, record_id: str, etag: str | None = None) -> None:
        with self._lock:
            table = self._table(container)
            current = table.get((partition, record_id))
            if current is not None and etag is not None and current["_etag"] != etag:
                raise PreconditionFailed(f"delete {container}/{record_id}")
            table.pop((partition, record_id), None)

    def _get(self, container: str, record_type: type[R], partition: str, record_id: str) -> R | None:
        with self._lock:
            doc = self._table(container).get((partition, record_id))
            return record_type.from_doc(copy.deepcopy(doc)) if doc is not None else None

    def _partition(self, container: str, record_type: type[R], partition: str) -> list[R]:
        with self._lock:
            return [record_type.from_doc(copy.deepcopy(doc))
                    for (key, _), doc in self._table(container).items() if key == partition]

    def create_vault(self, vault: Vault) -> Vault:
        return self._create("vaults", vault.tenant_id, vault)

    def get_vault(self, tenant_id: str, vault_id: str) -> Vault | None:
        return self._get("vaults", Vault, tenant_id, vault_id)

    def list_vaults(self, tenant_id: str) -> list[Vault]:
        return sorted(self._partition("vaults", Vault, tenant_id), key=lambda v: v.created_at)

    def list_all_vaults(self) -> list[Vault]:
        with self._lock:
            vaults = [Vault.from_doc(copy.deepcopy(doc)) for doc in self._table("vaults").values()]
        return sorted(vaults, key=lambda v: (v.created_at, v.tenant_id, v.id))

    def replace_vault(self, vault: Vault) -> Vault:
        return self._replace("vaults", vault.tenant_id, vault)

    def get_item(self, vault_id: str, item: str) -> ItemRecord | None:
        return self._get("items", ItemRecord, vault_id, item)

    def put_item(self, record: ItemRecord) -> ItemRecord:
        if record.etag is None:
            return self._create("items", record.vault_id, record)
        return self._replace("items", record.vault_id, record)

    def list_items(self, vault_id: str) -> list[ItemRecord]:
        return sorted(self._partition("items", ItemRecord, vault_id), key=lambda r: r.id)

    def create_machine(self, machine: Machine) -> Machine:
        return self._create("machines", machine.vault_id, machine)

    def get_machine(self, vault_id: str, machine_id: str) -> Machine | None:
        return self._get("machines", Machine, vault_id, machine_id)

    def replace_machine(self, machine: Machine) -> Machine:
        return self._replace("machines", machine.vault_id, machine)

    def list_machines(self, vault_id: str) -> list[Machine]:
        return sorted(self._partition("machines", Machine, vault_id), key=lambda m: (m.enrolled_at, m.id))

    def add_nonce(self, nonce: Nonce, now: str) -> bool:
        with self._lock:
            table = self._table("nonces")
            seen = table.get((nonce.vault_id, nonce.id))
            if seen is not None and seen["expiresAt"] > now:
                return False
            table[(nonce.vault_id, nonce.id)] = self._stored(nonce)
            return True

    def add_chunk(self, chunk: ChunkRecord) -> bool:
        try:
            self._create("chunks", chunk.vault_id, chunk)
        except Conflict:
            return False
        return True

    def get_chunks(self, vault_id: str, chunk_ids: Iterable[str]) -> dict[str, ChunkRecord]:
        found = {}
        for chunk_id in set(chunk_ids):
            chunk = self._get("chunks", ChunkRecord, vault_id, chunk_id)
            if chunk is not None:
                found[chunk_id] = chunk
        return found

    def replace_chunk(self, chunk: ChunkRecord) -> ChunkRecord:
        return self._replace("chunks", chunk.vault_id, chunk)

    def delete_chunk(self, chunk: ChunkRecord) -> None:
        self._delete("chunks", chunk.vault_id, chunk.id, chunk.etag)

    def oldest_unreplicated_chunk(self, vault_id: str) -> ChunkRecord | None:
        waiting = [c for c in self._partition("chunks", ChunkRecord, vault_id)
                   if c.state == ChunkState.VERIFIED and c.replicated_at is None]
        return min(waiting, key=lambda c: (c.recorded_at, c.id), default=None)

    def chunks_after(self, vault_id: str, after_id: str, limit: int) -> list[ChunkRecord]:
        if limit < 1:
            raise ValueError(f"chunks_after needs a limit of at least 1, not {limit}")
        later = [c for c in self._partition("chunks", ChunkRecord, vault_id) if c.id > after_id]
        return sorted(later, key=lambda c: c.id)[:limit]

    def create_point(self, point: RecoveryPoint) -> RecoveryPoint:
        return self._create("recoveryPoints", point.vault_id, point)

    def get_point(self, vault_id: str, point_id: str) -> RecoveryPoint | None:
        return self._get("recoveryPoints", RecoveryPoint, vault_id, point_id)

    def replace_point(self, point: RecoveryPoint) -> RecoveryPoint:
        return self._replace("recoveryPoints", point.vault_id, point)

    def delete_point(self, vault_id: str, point_id: str) -> None:
        self._delete("recoveryPoints", vault_id, point_id)

    def list_points(self, vault_id: str, item: str | None = None) -> list[RecoveryPoint]:
        points = [p for p in self._partition("recoveryPoints", RecoveryPoint, vault_id)
                  if item is None or p.item == item]
        return sorted(points, key=lambda p: p.created_at, reverse=True)

    def stale_points(self, vault_id: str, checked_before: str, limit: int) -> list[RecoveryPoint]:
        if limit < 1:
            raise ValueError(f"stale_points needs a limit of at least 1, not {limit}")
        stale = [p for p in self._partition("recoveryPoints", RecoveryPoint, vault_id)
                 if p.checked_at is not None and p.checked_at < checked_before
                 and (p.state == PointState.PENDING
                      or (p.state == PointState.COMMITTED and p.follow_ups_at is None))]
        return sorted(stale, key=lambda p: p.checked_at)[:limit]

    def create_job(self, job: Job) -> Job:
        return self._create("jobs", job.vault_id, job)

    def get_job(self, vault_id: str, job_id: str) -> Job | None:
        return self._get("jobs", Job, vault_id, job_id)

    def replace_job(self, job: Job) -> Job:
        return self._replace("jobs", job.vault_id, job)

    def list_jobs(self, vault_id: str, kind: str, status: str) -> list[Job]:
        jobs = [j for j in self._partition("jobs", Job, vault_id) if j.kind == kind and j.status == status]
        return sorted(jobs, key=lambda j: (j.created_at, j.id))

    def add_usage_event(self, event: UsageEvent) -> bool:
        try:
            self._create("usage", event.vault_id, event)
        except Conflict:
            return False
        return True

    def list_usage_events(self, vault_id: str) -> list[UsageEvent]:
        return sorted(self._partition("usage", UsageEvent, vault_id), key=lambda e: (e.at, e.id))

    def usage_events_present(self, vault_id: str, event_ids: list[str]) -> set[str]:
        with self._lock:
            table = self._table("usage")
            return {i for i in event_ids if (vault_id, i) in table}

    def get_usage_day(self, vault_id: str, day: str) -> UsageDay | None:
        return self._get("usageDays", UsageDay, vault_id, day)

    def create_usage_day(self, day: UsageDay) -> UsageDay:
        return self._create("usageDays", day.vault_id, day)

    def replace_usage_day(self, day: UsageDay) -> UsageDay:
        return self._replace("usageDays", day.vault_id, day)

    def list_usage_days(self, vault_id: str, until: str) -> list[UsageDay]:
        return sorted((d for d in self._partition("usageDays", UsageDay, vault_id) if d.id <= until),
                      key=lambda d: d.id)
