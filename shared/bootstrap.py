"""Wires the handlers' dependencies from app settings (environment variables, as in Azure).

Settings: `Storage` (primary region storage connection string, also the trigger
queues' connection), `SecondaryStorage` (the paired region), `CosmosDbEndpoint`,
`CosmosDbKey`, `CosmosDbDatabase` (default "skyvault"), `PublicApiUrl` (the
function app's base URL, written into agent credentials).
"""
from __future__ import annotations

import functools
import os
from typing import Mapping

from shared.adapters.azure_storage import AzureBlobAccount, AzureQueue, queue_sas_url
from shared.adapters.cosmos_index import CosmosIndex
from shared.handlers import Services

STORAGE = "Storage"
SECONDARY_STORAGE = "SecondaryStorage"
COSMOS_ENDPOINT, COSMOS_KEY, COSMOS_DATABASE = "CosmosDbEndpoint", "CosmosDbKey", "CosmosDbDatabase"
PUBLIC_API_URL = "PublicApiUrl"


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
    )


@functools.lru_cache(maxsize=1)
def services() -> Services:
    """One set of clients per worker process, reused across invocations."""
    return build_services(os.environ)
