"""Wires the handlers' dependencies from app settings (environment variables, as in Azure).

Connections, each either keyed (the local stack) or keyless (Azure, as infra/ deploys it):
- `Storage` (the primary region; also the trigger queues' connection): a connection string
  with the account key, or keyless `Storage__blobServiceUri` and `Storage__queueServiceUri`
  (or `Storage__accountName`), with `Storage__credential` = `managedidentity` and
  `Storage__clientId` (a user-assigned identity), the names the Functions host reads too.
- `SecondaryStorage` (the paired region; blobs only): the same, `SecondaryStorage__...`.
- Cosmos DB: `CosmosDbEndpoint` and `CosmosDbKey`, or keyless `CosmosDb__accountEndpoint` with
  `CosmosDb__credential` and `CosmosDb__clientId`.
A keyless connection without `__credential` uses azure-identity's DefaultAzureCredential: the
operator's own sign-in (`az login`) when the operator's commands reach a deployed service.

Other settings: `CosmosDbDatabase` (default "skyvault"), `PublicApiUrl` (the
function app's base URL, written into agent credentials), `ReplicationCopyMode`
("server", the default: server-side Copy Blob; "stream" for the local stack,
whose regions are separate Azurite processes that cannot copy between each
other), `ReplicationRetryMaxSeconds` (default 300), `ScrubSchedule`,
`SweepSchedule`, `RetentionSchedule` and `ReconcileSchedule` (NCRONTAB: the scrub, sweep, retention and
reconcile timers' bindings read them), `OperationCountsFile`
(optional: count storage, queue and Cosmos DB operations into this JSON file, for benchmarks),
`ClockOffsetFile` (local stack only: a file holding seconds to add to the service's clock, read
at each reading of the clock; the end-to-end tests move the whole stack's time with it, to age
backups by days; absent or empty, 0).
"""
from __future__ import annotations

import functools
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Mapping

from shared.adapters.azure_storage import AzureBlobAccount, AzureQueue, Connection, IdentityConnection
from shared.adapters.cosmos_index import CosmosIndex
from shared import metrics
from shared.service.context import Services

STORAGE = "Storage"
SECONDARY_STORAGE = "SecondaryStorage"
COSMOS_ENDPOINT, COSMOS_KEY, COSMOS_DATABASE = "CosmosDbEndpoint", "CosmosDbKey", "CosmosDbDatabase"
COSMOS_CONNECTION = "CosmosDb"  # the prefix of the keyless settings: CosmosDb__accountEndpoint, ...
MANAGED_IDENTITY = "managedidentity"
PUBLIC_API_URL = "PublicApiUrl"
REPLICATION_COPY_MODE, REPLICATION_RETRY_MAX = "ReplicationCopyMode", "ReplicationRetryMaxSeconds"
SCRUB_SCHEDULE = "ScrubSchedule"
SWEEP_SCHEDULE = "SweepSchedule"
RETENTION_SCHEDULE = "RetentionSchedule"
RECONCILE_SCHEDULE = "ReconcileSchedule"
CLOCK_OFFSET_FILE = "ClockOffsetFile"
OPERATION_COUNTS_FILE = "OperationCountsFile"


class SettingMissing(RuntimeError):
    pass


def _get(settings: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = settings.get(name, default)
    if value is None:
        raise SettingMissing(f"app setting {name} is not set")
    return value


@functools.lru_cache(maxsize=None)
def _credential(kind: str | None, client_id: str | None):
    """One token credential per identity, shared by every client of this process (each caches
    its tokens)."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
    if kind == MANAGED_IDENTITY:
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    return DefaultAzureCredential()


def credential(settings: Mapping[str, str], connection: str):
    """The token credential of keyless `connection`: its user-assigned managed identity
    (`__credential` managedidentity, `__clientId`), or with no `__credential` the default chain."""
    kind = settings.get(f"{connection}__credential")
    if kind not in (None, MANAGED_IDENTITY):
        raise SettingMissing(f"app setting {connection}__credential must be {MANAGED_IDENTITY!r} or unset, "
                             f"not {kind!r}")
    return _credential(kind, settings.get(f"{connection}__clientId"))


def storage_connection(settings: Mapping[str, str], name: str) -> Connection | None:
    """Connection `name`: its connection string, or its keyless settings; None if neither is set."""
    if settings.get(name):
        return settings[name]
    account = settings.get(f"{name}__accountName")
    blob = settings.get(f"{name}__blobServiceUri") or (account and f"https://{account}.blob.core.windows.net")
    queue = settings.get(f"{name}__queueServiceUri") or (account and f"https://{account}.queue.core.windows.net")
    if not (blob or queue):
        return None
    return IdentityConnection(blob or None, queue or None, credential(settings, name))


def connection_modes(settings: Mapping[str, str]) -> dict[str, str]:
    """How each connection these settings describe is reached: "key" or "identity" (absent
    when unset)."""
    modes = {name: "identity" if isinstance(connection, IdentityConnection) else "key"
             for name in (STORAGE, SECONDARY_STORAGE)
             if (connection := storage_connection(settings, name)) is not None}
    if settings.get(COSMOS_ENDPOINT) or settings.get(f"{COSMOS_CONNECTION}__accountEndpoint"):
        modes[COSMOS_CONNECTION] = "key" if settings.get(COSMOS_KEY) else "identity"
    return modes


def cosmos_index(settings: Mapping[str, str]) -> CosmosIndex:
    database = _get(settings, COSMOS_DATABASE, "skyvault")
    if settings.get(COSMOS_KEY):
        return CosmosIndex(_get(settings, COSMOS_ENDPOINT), settings[COSMOS_KEY], database)
    endpoint = settings.get(f"{COSMOS_CONNECTION}__accountEndpoint") or settings.get(COSMOS_ENDPOINT)
    if not endpoint:
        raise SettingMissing(f"app setting {COSMOS_CONNECTION}__accountEndpoint (or {COSMOS_ENDPOINT} and "
                             f"{COSMOS_KEY}) is not set")
    return CosmosIndex(endpoint, credential(settings, COSMOS_CONNECTION), database)


def build_services(settings: Mapping[str, str]) -> Services:
    storage = storage_connection(settings, STORAGE)
    if storage is None:
        raise SettingMissing(f"app setting {STORAGE} (a connection string) or {STORAGE}__blobServiceUri and "
                             f"{STORAGE}__queueServiceUri (keyless) is not set")
    secondary = storage_connection(settings, SECONDARY_STORAGE)
    return Services(
        index=cosmos_index(settings),
        primary=AzureBlobAccount(storage, region="primary"),
        queue=functools.lru_cache(maxsize=None)(lambda name: AzureQueue(storage, name)),
        api_url=_get(settings, PUBLIC_API_URL, ""),
        secondary=AzureBlobAccount(secondary, region="secondary") if secondary is not None else None,
        stream_copy=_copy_mode(settings) == "stream",
        replication_retry_max_s=int(_get(settings, REPLICATION_RETRY_MAX, "300")),
        **({"clock": offset_clock(settings[CLOCK_OFFSET_FILE])} if settings.get(CLOCK_OFFSET_FILE) else {}),
    )


RECENT_CHANGE_NS = 100_000_000


def offset_clock(path: str) -> Callable[[], datetime]:
    """The time now plus the seconds the file at `path` holds (0 if it is absent or empty). The
    file is read again only when its stat changes, or while it was changed in the last
    RECENT_CHANGE_NS (file times move by the kernel's coarse tick, so two writes of the same
    size in one tick have the same stat): the clock is asked for on every request."""
    seen: list = [None, timedelta(0)]  # (the file's stat when read, its offset)

    def clock() -> datetime:
        try:
            st = os.stat(path)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            recent = time.time_ns() - st.st_mtime_ns < RECENT_CHANGE_NS
        except FileNotFoundError:
            key, recent = None, False
        if key != seen[0] or recent:
            try:
                text = Path(path).read_text().strip()
            except FileNotFoundError:
                text = ""
            seen[:] = [key, timedelta(seconds=float(text or 0))]
        return datetime.now(timezone.utc) + seen[1]

    return clock


def _copy_mode(settings: Mapping[str, str]) -> str:
    mode = _get(settings, REPLICATION_COPY_MODE, "server")
    if mode not in ("server", "stream"):
        raise SettingMissing(f"app setting {REPLICATION_COPY_MODE} must be 'server' or 'stream', not {mode!r}")
    return mode


@functools.lru_cache(maxsize=1)
def services() -> Services:
    """The function app's clients: one set per worker process, reused across invocations, and
    counted when OperationCountsFile is set (only the function app writes that file)."""
    built = build_services(os.environ)
    counts_file = os.environ.get(OPERATION_COUNTS_FILE)
    return metrics.counting(built, metrics.OperationCounts(counts_file)) if counts_file else built
