"""Wires the handlers' dependencies from app settings (environment variables, as in Azure).

Settings: `Storage` (primary region storage connection string, also the trigger
queues' connection), `SecondaryStorage` (the paired region), `CosmosDbEndpoint`,
`CosmosDbKey`, `CosmosDbDatabase` (default "skyvault"), `PublicApiUrl` (the
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
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Mapping

from shared.adapters.azure_storage import AzureBlobAccount, AzureQueue, queue_sas_url
from shared.adapters.cosmos_index import CosmosIndex
from shared import metrics
from shared.service.context import Services

STORAGE = "Storage"
SECONDARY_STORAGE = "SecondaryStorage"
COSMOS_ENDPOINT, COSMOS_KEY, COSMOS_DATABASE = "CosmosDbEndpoint", "CosmosDbKey", "CosmosDbDatabase"
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


def cosmos_index(settings: Mapping[str, str]) -> CosmosIndex:
    return CosmosIndex(_get(settings, COSMOS_ENDPOINT), _get(settings, COSMOS_KEY),
                       _get(settings, COSMOS_DATABASE, "skyvault"))


def build_services(settings: Mapping[str, str]) -> Services:
    storage = _get(settings, STORAGE)
    return Services(
        index=cosmos_index(settings),
        primary=AzureBlobAccount(storage, region="primary"),
        queue=functools.lru_cache(maxsize=None)(lambda name: AzureQueue(storage, name)),
        queue_sas_url=lambda name, permissions, expiry: queue_sas_url(storage, name, permissions, expiry),
        api_url=_get(settings, PUBLIC_API_URL, ""),
        secondary=AzureBlobAccount(settings[SECONDARY_STORAGE], region="secondary")
        if settings.get(SECONDARY_STORAGE) else None,
        stream_copy=_copy_mode(settings) == "stream",
        replication_retry_max_s=int(_get(settings, REPLICATION_RETRY_MAX, "300")),
        **({"clock": offset_clock(settings[CLOCK_OFFSET_FILE])} if settings.get(CLOCK_OFFSET_FILE) else {}),
    )


def offset_clock(path: str) -> Callable[[], datetime]:
    """The time now plus the seconds the file at `path` holds (0 if it is absent or empty)."""
    def clock() -> datetime:
        try:
            text = Path(path).read_text().strip()
        except FileNotFoundError:
            text = ""
        return datetime.now(timezone.utc) + timedelta(seconds=float(text or 0))

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
