"""Which app settings give which connections: keyed (the local stack's connection strings and
Cosmos DB key) or keyless (identity-based, as infra/ deploys the app). Nothing here does I/O:
clients connect at their first call."""
from __future__ import annotations

import json

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared import bootstrap
from shared.adapters.azure_storage import IdentityConnection
from skyvault.stack.emulators import DEV_ACCOUNT_KEY

LOCAL = {
    "Storage": f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_ACCOUNT_KEY};"
               "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;",
    "CosmosDbEndpoint": "http://127.0.0.1:8081", "CosmosDbKey": "local-emulator-key",
}
CLIENT_ID = "00000000-0000-0000-0000-00000000abcd"
KEYLESS = {
    "Storage__blobServiceUri": "https://svprimary.blob.core.windows.net/",
    "Storage__queueServiceUri": "https://svprimary.queue.core.windows.net/",
    "Storage__credential": "managedidentity", "Storage__clientId": CLIENT_ID,
    "SecondaryStorage__blobServiceUri": "https://svsecondary.blob.core.windows.net/",
    "SecondaryStorage__credential": "managedidentity", "SecondaryStorage__clientId": CLIENT_ID,
    "CosmosDb__accountEndpoint": "https://sv-cosmos.documents.azure.com:443/",
    "CosmosDb__credential": "managedidentity", "CosmosDb__clientId": CLIENT_ID,
    "CosmosDbDatabase": "skyvault", "PublicApiUrl": "https://sv-func.azurewebsites.net/api",
}


def test_the_local_stacks_settings_are_keyed():
    assert bootstrap.connection_modes(LOCAL) == {"Storage": "key", "CosmosDb": "key"}
    services = bootstrap.build_services(LOCAL)
    assert services.secondary is None and not services.primary._keyless


def test_identity_settings_are_keyless_with_the_user_assigned_identity():
    assert bootstrap.connection_modes(KEYLESS) == {"Storage": "identity", "SecondaryStorage": "identity",
                                                   "CosmosDb": "identity"}
    connection = bootstrap.storage_connection(KEYLESS, "Storage")
    assert isinstance(connection, IdentityConnection)
    assert connection.blob_service_uri == KEYLESS["Storage__blobServiceUri"]
    assert isinstance(connection.credential, ManagedIdentityCredential)
    assert bootstrap.credential(KEYLESS, "CosmosDb") is connection.credential, "one credential per identity"
    services = bootstrap.build_services(KEYLESS)
    assert services.primary._keyless and services.secondary._keyless
    assert services.api_url == KEYLESS["PublicApiUrl"]


def test_an_account_name_alone_gives_the_accounts_public_endpoints():
    connection = bootstrap.storage_connection({"Storage__accountName": "svprimary",
                                               "Storage__credential": "managedidentity"}, "Storage")
    assert (connection.blob_service_uri, connection.queue_service_uri) == (
        "https://svprimary.blob.core.windows.net", "https://svprimary.queue.core.windows.net")


def test_keyless_without_a_credential_setting_is_the_operators_own_sign_in():
    settings = {k: v for k, v in KEYLESS.items() if not k.endswith(("__credential", "__clientId"))}
    assert isinstance(bootstrap.credential(settings, "Storage"), DefaultAzureCredential)


@pytest.mark.parametrize("settings, error", [
    ({**KEYLESS, "Storage__credential": "connectionstring"}, "Storage__credential must be 'managedidentity'"),
    ({k: v for k, v in KEYLESS.items() if not k.startswith("Storage__")}, r"app setting Storage \(a connection string\) or Storage__blobServiceUri"),
    ({k: v for k, v in KEYLESS.items() if not k.startswith("CosmosDb__")}, "CosmosDb__accountEndpoint"),
])
def test_settings_that_describe_no_usable_connection_are_refused_naming_them(settings, error):
    with pytest.raises(bootstrap.SettingMissing, match=error):
        bootstrap.build_services(settings)


def test_an_operator_reaches_a_deployed_service_with_their_own_sign_in(tmp_path, monkeypatch):
    from skyvault.commands import common
    settings = tmp_path / "service.json"
    settings.write_text(json.dumps({"value": KEYLESS, "type": ["object", {}], "sensitive": False}))
    monkeypatch.setenv(common.SERVICE_SETTINGS, str(settings))
    services = common.operator_services()
    assert services.primary._keyless and services.api_url == KEYLESS["PublicApiUrl"]
    assert isinstance(bootstrap.credential(common.deployed_settings(str(settings)), "Storage"), DefaultAzureCredential)


@pytest.mark.parametrize("text, error", [
    (None, "cannot read the service's settings"),
    ("{", "the service's settings are not JSON"),
    ('{"Storage__blobServiceUri": 5}', "must be a JSON object of strings"),
    ('{"PublicApiUrl": "https://x/api"}', "app setting Storage"),
])
def test_unusable_service_settings_are_refused_naming_the_file(tmp_path, monkeypatch, text, error):
    from skyvault.commands import common
    from skyvault.vaultclient import AgentError
    settings = tmp_path / "service.json"
    if text is not None:
        settings.write_text(text)
    monkeypatch.setenv(common.SERVICE_SETTINGS, str(settings))
    with pytest.raises(AgentError, match=error) as e:
        common.operator_services()
    assert str(settings) in str(e.value)


def test_the_offset_clock_follows_its_file_without_reading_it_on_every_call(tmp_path, monkeypatch):
    from datetime import datetime, timezone
    from pathlib import Path

    path = tmp_path / "offset"
    clock = bootstrap.offset_clock(str(path))

    def offset() -> float:
        return (clock() - datetime.now(timezone.utc)).total_seconds()

    assert abs(offset()) < 1  # no file: no offset
    path.write_text("86400")
    assert abs(offset() - 86400) < 1
    path.write_text("17280")  # the same size at once: the same stat within one tick of file times
    assert abs(offset() - 17280) < 1
    path.write_text("")
    assert abs(offset()) < 1
    path.write_text("3600")
    monkeypatch.setattr(bootstrap, "RECENT_CHANGE_NS", 0)  # settled: an unchanged stat is not read again
    assert abs(offset() - 3600) < 1
    reads = []
    read_text = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self) or read_text(self, *a, **k))
    for _ in range(100):
        assert abs(offset() - 3600) < 1
    assert reads == []
