"""Azure Storage adapters: blob containers and accounts, storage queues, and their SAS URLs.

Owns turning the ports' calls into azure-storage-blob / azure-storage-queue
calls and the SDKs' errors into the ports' errors:

- 404 → BlobNotFound (blobs); 409 on a create-only put → BlobAlreadyExists.
- 403 → PermissionError: the SAS lacks the right (or has expired). A SAS with
  "c" but not "w" gets a 403, not a 409, when the blob already exists.
- 416 (a read that starts past the end) → ValueError.
- 408, 429, 5xx and connection failures → TransientError.
- Anything else → StorageError.

Server-side copy (copy_from) answers CannotVerifyCopySource when the service
cannot read the source; what the source said decides the error: 404 →
BlobNotFound, 401/403 (the source SAS lacks "r" or has expired) →
PermissionError, 408/429/5xx → TransientError. Azure reports that status in
the error's CopySourceStatusCode (and answers 404 itself); Azurite answers
with the source's status directly. Azurite copies across accounts only
between accounts of the same process: a source on another host is "not found".

Blob leases (Lease Blob through the SDK's BlobLeaseClient): acquiring a blob that
is absent answers 404, so the blob is created empty (create-only) and the lease
taken again. 409 on acquire (LeaseAlreadyPresent; LeaseIsBreakingAndCannotBeAcquired
while one is broken) → LeaseHeld. On renew, 404 (the blob is gone) and 409 or 412
(LeaseIdMismatchWithLeaseOperation, LeaseNotPresentWithLeaseOperation,
LeaseIsBrokenAndCannotBeRenewed, LeaseLost) → LeaseLost; on release the same
answers mean the lease is gone already, and do nothing. Azurite answers a release
or renew of a released lease with LeaseIdMismatchWithLeaseOperation where Azure
says LeaseNotPresentWithLeaseOperation: hence statuses, not codes. A leased blob
answers an overwrite or delete without its lease id with 412 LeaseIdMissing
(StorageError), and a create-only put with 409 (BlobAlreadyExists).

Queue messages are text and go out and come back unchanged: whoever writes
them picks the encoding (the Functions host expects base64 by default).

An account is reached with a connection string holding its key (the local stack), or keyless
with an Entra ID identity (IdentityConnection: Azure's identity-based connections). Container
SAS are signed with the account key, or, keyless, with a user-delegation key (valid a day,
requested again when a SAS would outlive it; Storage Blob Data Owner includes the right to get
one). An account's containers are read (Get Blob, ranged or not, and Get Blob Properties)
through a read-only container SAS of the account's own signing, valid an hour and held per
container, with shared.adapters.sas_rest's plain requests: the SDK's pipeline costs about
seven times the CPU per call, and ingest reads a chunk header per chunk. A read the held SAS
gets refused is tried once more with a SAS signed anew (keyless: under a new user-delegation
key, as after the account's keys were revoked). Service clients are cached per connection,
and retries are short so that an unreachable service fails in seconds, not minutes: the
caller (the Functions host, the agent) owns retrying.
"""
from __future__ import annotations

import functools
import hashlib
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from collections import OrderedDict
from typing import Any, Callable, Iterator, TypeVar, Union

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobLeaseClient, BlobServiceClient, ContainerClient, generate_container_sas
from azure.storage.queue import QueueServiceClient

from shared.adapters.blob_copy import copy_source_error, wait_for_copy
from shared.adapters.http_pool import pooled_transport
from shared.adapters.sas_rest import SasContainer
from shared.ports import (
    ContainerExists,
    BlobAccount,
    BlobAlreadyExists,
    BlobContainer,
    ContentMismatch,
    BlobNotFound,
    BlobProperties,
    LeaseHeld,
    LeaseLost,
    Queue,
    ReceivedMessage,
    StorageError,
    TransientError,
    check_lease_seconds,
    transient_status,
)

# The SDKs' defaults back off 15 s + 3^n s with 3 s of jitter and retry a
# refused connection 3 times: about 80 s before a stopped service is reported.
_CLIENT_OPTIONS = dict(
    retry_total=3,
    retry_connect=1,
    initial_backoff=0.5,
    increment_base=2,
    random_jitter_range=0.5,
    connection_timeout=5,
)
# Put Blob's own limit. Above the SDK's default of 64 MiB it would switch to
# Put Block + Put Block List, for which Azure records no Content-MD5.
_MAX_PUT_BLOB_BYTES = 5000 * 1024 * 1024
MAX_MESSAGE_BYTES = 64 * 1024
# Get Messages and Peek Messages return at most 32 messages a call.
_MAX_MESSAGES_PER_CALL = 32
# What Renew Lease and Release Lease answer when the lease named is not the blob's any more.
_LEASE_GONE_STATUSES = {404, 409, 412}

def _is_transient(error: Exception) -> bool:
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return True
    status = getattr(error, "status_code", None) or 0
    return transient_status(status)


@contextmanager
def _blob_errors(what: str):
    try:
        yield
    except ResourceNotFoundError as e:
        raise BlobNotFound(f"{what}: {_error_code(e) or e.reason}") from e
    except ResourceExistsError as e:
        raise BlobAlreadyExists(what) from e
    except (HttpResponseError, ServiceRequestError, ServiceResponseError) as e:
        raise _common_error(what, e) from e


@contextmanager
def _acquire_errors(what: str):
    with _blob_errors(what):
        try:
            yield
        except HttpResponseError as e:
            if e.status_code != 409:
                raise
            raise LeaseHeld(f"{what}: {_error_code(e)}") from e


@contextmanager
def _lease_gone_errors(what: str, lease_id: str):
    with _blob_errors(what):
        try:
            yield
        except HttpResponseError as e:
            if e.status_code not in _LEASE_GONE_STATUSES:
                raise
            raise LeaseLost(f"{what}: lease {lease_id} is not on it ({_error_code(e)})") from e


@contextmanager
def _copy_errors(what: str):
    try:
        yield
    except (HttpResponseError, ServiceRequestError, ServiceResponseError) as e:
        code = _error_code(e)
        if code == "CannotVerifyCopySource":
            raise _copy_source_error(what, e) from e
        if code == "PendingCopyOperation":
            raise TransientError(f"{what}: another copy into it is still pending") from e
        if isinstance(e, ResourceNotFoundError):
            raise BlobNotFound(f"{what}: {code or e.reason}") from e
        raise _common_error(what, e) from e


def _copy_source_error(what: str, error: HttpResponseError) -> Exception:
    additional = getattr(error, "additional_info", None) or {}
    try:
        status = int(additional.get("copysourcestatuscode") or error.status_code or 0)
    except ValueError:
        status = error.status_code or 0
    return copy_source_error(what, status)


def _error_code(error: Exception) -> str | None:
    code = getattr(error, "error_code", None)
    # Some codes come as StorageErrorCode members, which hash by name, not by value.
    return getattr(code, "value", code)


def _common_error(what: str, error: Exception) -> Exception:
    if _is_transient(error):
        return TransientError(f"{what}: {error}")
    status = getattr(error, "status_code", None)
    code = _error_code(error)
    if status == 403:
        return PermissionError(f"{what}: {code or 'forbidden'}")
    if status == 416:
        return ValueError(f"{what}: the range starts past the end of the blob")
    return StorageError(f"{what}: HTTP {status} {code}")


@dataclass(frozen=True)
class IdentityConnection:
    """A storage account reached keyless: its services' URIs and a token credential
    (azure-identity's), as the `<Connection>__blobServiceUri`, `__queueServiceUri`,
    `__credential` and `__clientId` app settings describe it (shared.bootstrap)."""

    blob_service_uri: str | None
    queue_service_uri: str | None
    credential: Any  # an azure.core.credentials.TokenCredential


Connection = Union[str, IdentityConnection]  # a connection string, or an identity


@functools.lru_cache(maxsize=None)
def _blob_service(connection: Connection) -> BlobServiceClient:
    options = dict(max_single_put_size=_MAX_PUT_BLOB_BYTES,
                   transport=pooled_transport(_CLIENT_OPTIONS["connection_timeout"]), **_CLIENT_OPTIONS)
    if isinstance(connection, IdentityConnection):
        if not connection.blob_service_uri:
            raise ValueError("this storage connection names no blob service URI")
        return BlobServiceClient(connection.blob_service_uri, credential=connection.credential, **options)
    return BlobServiceClient.from_connection_string(connection, **options)


@functools.lru_cache(maxsize=None)
def _queue_service(connection: Connection) -> QueueServiceClient:
    options = dict(transport=pooled_transport(_CLIENT_OPTIONS["connection_timeout"]), **_CLIENT_OPTIONS)
    if isinstance(connection, IdentityConnection):
        if not connection.queue_service_uri:
            raise ValueError("this storage connection names no queue service URI")
        return QueueServiceClient(connection.queue_service_uri, credential=connection.credential, **options)
    return QueueServiceClient.from_connection_string(connection, **options)


class AzureBlobContainer(BlobContainer):
    """One container, reached with the account key or with a container SAS. Its reads (Get
    Blob, Get Blob Properties) go through `reads`: the container through a SAS over plain HTTP
    (shared.adapters.sas_rest). The SDK's pipeline spends about 1.5 ms of CPU on each ranged
    read, plain http.client 0.2 ms, and ingest reads a header per chunk. A read refused (403)
    is tried once more through `renewed()`, when given: the container through a SAS signed
    anew, after the account's user-delegation keys were revoked."""

    def __init__(self, client: ContainerClient, reads: Callable[[], BlobContainer],
                 renewed: Callable[[], BlobContainer] | None = None):
        self._client = client
        self._reads, self._renewed = reads, renewed
        self.name = client.container_name

    def _read(self, read: Callable[[BlobContainer], T]) -> T:
        try:
            return read(self._reads())
        except PermissionError:
            if self._renewed is None:
                raise
            return read(self._renewed())

    def create(self, *, exist_ok: bool = True) -> None:
        with _blob_errors(f"create container {self.name}"):
            try:
                self._client.create_container()
            except ResourceExistsError:
                if not exist_ok:
                    raise ContainerExists(f"container {self.name} exists") from None

    def put(self, name: str, data: bytes, *, overwrite: bool = False, md5: bytes | None = None) -> BlobProperties:
        # overwrite=False makes the SDK send If-None-Match: *, so the service
        # itself refuses to replace a blob another writer put first.
        if not isinstance(data, bytes):
            data = bytes(data)  # the SDK would iterate a memoryview or bytearray byte by byte
        what = f"put {self.name}/{name}"
        # The SDK computes the Content-MD5 it sends itself (validate_content): the given one is
        # checked against the same bytes here, which is what the storage service would do.
        if md5 is not None and hashlib.md5(data).digest() != md5:
            raise ContentMismatch(f"{what}: the body's MD5 differs from the Content-MD5 sent")
        with _blob_errors(what):
            result = self._client.get_blob_client(name).upload_blob(data, overwrite=overwrite,
                                                                     validate_content=md5 is not None)
        return BlobProperties(
            name=name,
            size=len(data),
            content_md5=_md5_bytes(result.get("content_md5")),
            etag=result["etag"],
            last_modified=result.get("last_modified"),
        )

    def properties(self, name: str) -> BlobProperties:
        return self._read(lambda reads: reads.properties(name))

    def copy_from(self, name: str, source_url: str) -> BlobProperties:
        # Copy Blob (not Put Blob From URL, which Azurite lacks): it keeps the
        # source's Content-MD5, and reads across accounts through the source SAS.
        what = f"copy into {self.name}/{name}"
        blob = self._client.get_blob_client(name)
        with _copy_errors(what):
            blob.start_copy_from_url(source_url)

            def poll():
                props = blob.get_blob_properties()
                return props.copy.status, props.copy.status_description, _blob_properties(name, props)

            return wait_for_copy(what, poll)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._read(lambda reads: reads.read(name, offset, length))

    def read_head(self, name: str, length: int) -> tuple[bytes, BlobProperties]:
        return self._read(lambda reads: reads.read_head(name, length))

    def delete(self, name: str) -> None:
        with _blob_errors(f"delete {self.name}/{name}"):
            try:
                self._client.delete_blob(name)
            except ResourceNotFoundError:
                pass

    def list(self, prefix: str = "") -> Iterator[str]:
        with _blob_errors(f"list {self.name}/{prefix}"):
            yield from self._client.list_blob_names(name_starts_with=prefix or None)

    def list_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        with _blob_errors(f"list {self.name}/{prefix}"):
            for blob in self._client.list_blobs(name_starts_with=prefix or None):
                yield blob.name, blob.size

    def acquire_lease(self, name: str, seconds: int) -> str:
        check_lease_seconds(seconds)
        what = f"lease {self.name}/{name}"
        blob = self._client.get_blob_client(name)
        try:
            with _acquire_errors(what):
                return blob.acquire_lease(lease_duration=seconds).id
        except BlobNotFound:
            pass
        # Absent (or its container is, and this put says so); another instance may create it first.
        try:
            self.put(name, b"")
        except BlobAlreadyExists:
            pass
        with _acquire_errors(what):
            return blob.acquire_lease(lease_duration=seconds).id

    def _lease(self, name: str, lease_id: str) -> BlobLeaseClient:
        # A fresh client each call: release() forgets the id (Release Lease answers none).
        return BlobLeaseClient(self._client.get_blob_client(name), lease_id=lease_id)

    def renew_lease(self, name: str, lease_id: str) -> None:
        with _lease_gone_errors(f"renew the lease on {self.name}/{name}", lease_id):
            self._lease(name, lease_id).renew()

    def release_lease(self, name: str, lease_id: str) -> None:
        try:
            with _lease_gone_errors(f"release the lease on {self.name}/{name}", lease_id):
                self._lease(name, lease_id).release()
        except LeaseLost:
            pass


def _md5_bytes(value) -> bytes | None:
    return bytes(value) if value else None


def _blob_properties(name: str, props) -> BlobProperties:
    return BlobProperties(
        name=name,
        size=props.size,
        content_md5=_md5_bytes(props.content_settings.content_md5),
        etag=props.etag,
        last_modified=props.last_modified,
    )


T = TypeVar("T")

# A user-delegation key is asked for this long (Azure allows 7 days), from a little before now
# so that a clock behind Azure's does not make it start in the future.
DELEGATION_KEY_LIFETIME = timedelta(days=1)
DELEGATION_KEY_LEAD = timedelta(minutes=5)
# The read-only SAS the service reads its containers through (AzureBlobContainer's `reads`).
READ_SAS_LIFETIME = timedelta(hours=1)
READ_SAS_RENEW = timedelta(minutes=10)
READERS_HELD = 1024


class AzureBlobAccount(BlobAccount):
    """One region's storage account, reached with a connection string holding its key or with
    an identity (then its SAS are user-delegation SAS)."""

    def __init__(self, connection: Connection, region: str):
        self._service = _blob_service(connection)
        self._keyless = isinstance(connection, IdentityConnection)
        self.region = region
        self._delegation_key: Any = None
        self._delegation_lock = threading.Lock()
        self._readers: OrderedDict[str, tuple[SasContainer, datetime]] = OrderedDict()
        self._readers_lock = threading.Lock()

    def container(self, name: str) -> AzureBlobContainer:
        return AzureBlobContainer(self._service.get_container_client(name), reads=lambda: self._reader(name),
                                  renewed=lambda: self._reader(name, renew=True))

    def _reader(self, container: str, renew: bool = False) -> SasContainer:
        """The container through a read-only SAS of this account's own signing, held until
        READ_SAS_RENEW before it expires (for at most READERS_HELD containers). `renew` signs
        a new one whatever the held one's time, keyless with a new user-delegation key: the
        held one was refused (the account's user-delegation keys were revoked)."""
        now = datetime.now(timezone.utc)
        with self._readers_lock:
            held = self._readers.get(container)
            if renew:
                self._readers.pop(container, None)
                with self._delegation_lock:
                    self._delegation_key = None
            elif held is not None and held[1] - now > READ_SAS_RENEW:
                self._readers.move_to_end(container)
                return held[0]
        expiry = now + READ_SAS_LIFETIME
        reader = SasContainer(self.container_sas_url(container, "r", expiry))
        with self._readers_lock:
            self._readers[container] = (reader, expiry)
            self._readers.move_to_end(container)
            while len(self._readers) > READERS_HELD:
                self._readers.popitem(last=False)
        return reader

    def container_sas_url(self, container: str, permissions: str, expiry: datetime) -> str:
        if self._keyless:
            signing = {"user_delegation_key": self._delegation_key_until(expiry)}
        else:
            account_key = getattr(self._service.credential, "account_key", None)
            if account_key is None:
                raise ValueError("container_sas_url needs a connection string with AccountKey, or an identity")
            signing = {"account_key": account_key}
        sas = generate_container_sas(self._service.account_name, container, permission=permissions, expiry=expiry,
                                     **signing)
        return f"{self._service.get_container_client(container).url}?{sas}"

    def _delegation_key_until(self, expiry: datetime) -> Any:
        """A user-delegation key valid at least until `expiry` (a SAS cannot outlive its key):
        the one held, or a new one. Revoking the account's user-delegation keys ends every SAS
        signed with them."""
        with self._delegation_lock:
            key = self._delegation_key
            if key is None or datetime.fromisoformat(key.signed_expiry.replace("Z", "+00:00")) < expiry:
                now = datetime.now(timezone.utc)
                with _blob_errors("get a user delegation key"):
                    key = self._service.get_user_delegation_key(now - DELEGATION_KEY_LEAD,
                                                                max(expiry, now + DELEGATION_KEY_LIFETIME))
                self._delegation_key = key
            return key

    def container_from_url(self, url: str) -> AzureBlobContainer:
        return container_from_url(url)


def container_from_url(url: str) -> AzureBlobContainer:
    """The container a SAS URL points at, with only that SAS's rights (what agents hold)."""
    reads = SasContainer(url)
    return AzureBlobContainer(ContainerClient.from_container_url(
        url, max_single_put_size=_MAX_PUT_BLOB_BYTES, **_CLIENT_OPTIONS), reads=lambda: reads)


@contextmanager
def _queue_errors(what: str):
    try:
        yield
    except (HttpResponseError, ServiceRequestError, ServiceResponseError) as e:
        raise _common_error(what, e) from e


# A message that was deleted already, or received again by someone else
# since (its pop receipt changed), answers one of these.
_GONE_MESSAGE_CODES = {"MessageNotFound", "PopReceiptMismatch"}


class AzureQueue(Queue):
    """One storage queue. delete and release of a message that is gone, or
    that another consumer has received since, do nothing: it will be handled
    again by its new holder, and handlers are idempotent."""

    def __init__(self, connection: Connection, name: str):
        self._client = _queue_service(connection).get_queue_client(name)
        self.name = name

    def create(self) -> None:
        with _queue_errors(f"create queue {self.name}"):
            try:
                self._client.create_queue()
            except ResourceExistsError:
                pass

    def send(self, body: str, *, visibility_timeout: int = 0) -> None:
        size = len(body.encode("utf-8"))
        if size > MAX_MESSAGE_BYTES:
            raise ValueError(f"queue message of {size} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
        with _queue_errors(f"send to {self.name}"):
            self._client.send_message(body, visibility_timeout=visibility_timeout)

    def receive(self, max_messages: int, visibility_timeout: int) -> list[ReceivedMessage]:
        with _queue_errors(f"receive from {self.name}"):
            messages = self._client.receive_messages(
                messages_per_page=min(max_messages, _MAX_MESSAGES_PER_CALL),
                max_messages=max_messages,
                visibility_timeout=visibility_timeout,
            )
            return [
                ReceivedMessage(id=m.id, pop_receipt=m.pop_receipt, body=m.content,
                                dequeue_count=m.dequeue_count, inserted_on=m.inserted_on)
                for m in messages
            ]

    def delete(self, message: ReceivedMessage) -> None:
        with self._unless_gone(f"delete message {message.id} from {self.name}"):
            self._client.delete_message(message.id, message.pop_receipt)

    def release(self, message: ReceivedMessage, visibility_timeout: int) -> None:
        with self._unless_gone(f"release message {message.id} to {self.name}"):
            self._client.update_message(
                message.id, pop_receipt=message.pop_receipt, visibility_timeout=visibility_timeout)

    @contextmanager
    def _unless_gone(self, what: str):
        with _queue_errors(what):
            try:
                yield
            except HttpResponseError as e:
                if _error_code(e) not in _GONE_MESSAGE_CODES:
                    raise

    def approximate_count(self) -> int:
        with _queue_errors(f"count {self.name}"):
            return self._client.get_queue_properties().approximate_message_count

    def peek(self, max_messages: int = 32) -> list[str]:
        with _queue_errors(f"peek {self.name}"):
            messages = self._client.peek_messages(max_messages=min(max_messages, _MAX_MESSAGES_PER_CALL))
            return [m.content for m in messages]
