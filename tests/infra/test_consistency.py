"""What the code uses is what both deployments provision, with the same names, and nothing more:
every queue (and its poison queue), fixed blob container, Cosmos DB container with its
partition key, timer schedule setting and app setting. And the app settings either tree gives
the function app select keyless connections (shared/bootstrap)."""
from __future__ import annotations

import re

import pytest

from shared import bootstrap
from shared.adapters.cosmos_index import DEFAULT_TTL, PARTITION_KEYS
from shared.service.context import ALL_QUEUES, POISON_SUFFIX
from shared.service.retention_sweep import LOCKS_CONTAINER
from tests.infra import app_functions, bicep_tree, terraform_tree

TREES = {"bicep": bicep_tree, "terraform": terraform_tree}
FUNCTIONS = app_functions()
BINDINGS = [b for f in FUNCTIONS for b in f.get_bindings()]
# Connections the triggers name, and their identity-based settings (the Functions host's).
TRIGGER_CONNECTIONS = {b.connection for b in BINDINGS if getattr(b, "connection", None)}
SCHEDULE_SETTINGS = {m[1] for b in BINDINGS if (m := re.fullmatch(r"%(\w+)%", getattr(b, "schedule", "") or ""))}
# What the app reads beyond those: bootstrap's keyless connections and its plain settings.
# Optional settings left at their defaults (ReplicationRetryMaxSeconds) and the local stack's
# own (OperationCountsFile, ClockOffsetFile) are not provisioned.
KEYLESS_SETTINGS = {
    "Storage__blobServiceUri", "Storage__queueServiceUri", "Storage__credential", "Storage__clientId",
    "SecondaryStorage__blobServiceUri", "SecondaryStorage__credential", "SecondaryStorage__clientId",
    f"{bootstrap.COSMOS_CONNECTION}__accountEndpoint", f"{bootstrap.COSMOS_CONNECTION}__credential",
    f"{bootstrap.COSMOS_CONNECTION}__clientId",
}
PLAIN_SETTINGS = {bootstrap.COSMOS_DATABASE, bootstrap.PUBLIC_API_URL, bootstrap.REPLICATION_COPY_MODE}
# The Functions host's own: its storage (Flex Consumption keeps deployments and timer locks there)
# and Application Insights, signed in with the identity.
HOST_SETTINGS = {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential",
                 "AzureWebJobsStorage__clientId", "APPLICATIONINSIGHTS_CONNECTION_STRING",
                 "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"}


@pytest.fixture(scope="module", params=sorted(TREES))
def provisioned(request):
    return TREES[request.param].provisioned()


def test_every_queue_the_functions_use_and_its_poison_queue_and_no_other(provisioned):
    assert provisioned["queues"] == {*ALL_QUEUES, *(q + POISON_SUFFIX for q in ALL_QUEUES)}


def test_the_fixed_blob_containers_are_the_codes(provisioned):
    assert provisioned["blob_containers"] == {LOCKS_CONTAINER}


def test_every_cosmos_container_with_the_codes_partition_key_and_ttl(provisioned):
    assert provisioned["cosmos_database"] == "skyvault"
    assert provisioned["cosmos_containers"] == {
        name: {"paths": list(key["paths"]), "kind": key["kind"], "default_ttl": DEFAULT_TTL.get(name)}
        for name, key in PARTITION_KEYS.items()}


def test_the_app_settings_are_what_the_bindings_and_bootstrap_read_and_nothing_else(provisioned):
    assert TRIGGER_CONNECTIONS == {bootstrap.STORAGE}
    assert SCHEDULE_SETTINGS == {bootstrap.SCRUB_SCHEDULE, bootstrap.SWEEP_SCHEDULE, bootstrap.RETENTION_SCHEDULE,
                                 bootstrap.RECONCILE_SCHEDULE}
    assert set(provisioned["app_settings"]) == KEYLESS_SETTINGS | PLAIN_SETTINGS | SCHEDULE_SETTINGS | HOST_SETTINGS


def test_the_deployed_settings_select_keyless_connections_and_build(provisioned):
    settings = {name: value if value.startswith(("https://", "managedidentity")) or "__" not in name
                else "https://placeholder.example.net/" for name, value in provisioned["app_settings"].items()}
    assert bootstrap.connection_modes(settings) == {"Storage": "identity", "SecondaryStorage": "identity",
                                                    "CosmosDb": "identity"}
    for connection in ("Storage", "SecondaryStorage", "CosmosDb", "AzureWebJobsStorage"):
        assert provisioned["app_settings"][f"{connection}__credential"] == bootstrap.MANAGED_IDENTITY
    assert provisioned["app_settings"][bootstrap.REPLICATION_COPY_MODE] == "server"
    services = bootstrap.build_services({**settings, "Storage__blobServiceUri": "https://primary.example.net/",
                                         "Storage__queueServiceUri": "https://primary.example.net/",
                                         "SecondaryStorage__blobServiceUri": "https://secondary.example.net/",
                                         "CosmosDb__accountEndpoint": "https://cosmos.example.net/"})
    assert services.primary._keyless and services.secondary is not None and services.secondary._keyless


def test_the_runtime_is_the_apps(provisioned):
    assert provisioned["runtime"] == ("python", "3.11")


def test_both_trees_provision_the_same():
    bicep, terraform = bicep_tree.provisioned(), terraform_tree.provisioned()
    for key in ("queues", "blob_containers", "deployment_container", "cosmos_database", "cosmos_containers",
                "runtime"):
        assert bicep[key] == terraform[key], key
    assert set(bicep["app_settings"]) == set(terraform["app_settings"])
    literal = {name for name, value in terraform["app_settings"].items() if "${" not in value}
    for name in literal & {n for n, v in bicep["app_settings"].items() if not v.startswith("<")}:
        assert bicep["app_settings"][name] == terraform["app_settings"][name], name

    def snake(name):
        return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
    assert {snake(o) for o in bicep["outputs"]} == terraform["outputs"]
