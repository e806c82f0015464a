"""Static checks of infra/terraform: parses, pins, variables, secure defaults, roles.

Everything is read from the parsed configuration (python-hcl2), offline.
"""
from __future__ import annotations

import re
import shutil

import pytest

from tests.infra import terraform_tree as tt

SPEC_APP_SETTINGS = {
    "AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId",
    "Storage__blobServiceUri", "Storage__queueServiceUri", "Storage__credential", "Storage__clientId",
    "SecondaryStorage__blobServiceUri", "SecondaryStorage__credential", "SecondaryStorage__clientId",
    "CosmosDb__accountEndpoint", "CosmosDb__credential", "CosmosDb__clientId", "CosmosDbDatabase",
    "PublicApiUrl", "ReplicationCopyMode", "ScrubSchedule", "SweepSchedule", "RetentionSchedule",
    "ReconcileSchedule", "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}

ROLE_GUIDS = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"

IDENTITY_CLIENT_ID = "${azurerm_user_assigned_identity.app.client_id}"


@pytest.fixture(scope="module")
def config() -> tt.Config:
    return tt.Config()


@pytest.fixture(scope="module")
def app(config):
    _, body = config.only_resource(tt.FUNCTION_APP_TYPE)
    return body


def storage_accounts(config):
    accounts = config.resources["azurerm_storage_account"]
    assert set(accounts) == {"primary", "secondary"}
    return accounts


# --- parsing ------------------------------------------------------------------------------


def test_every_tf_file_parses():
    files = sorted(tt.TERRAFORM_DIR.glob("*.tf"))
    names = {f.name for f in files}
    assert {"versions.tf", "providers.tf", "variables.tf", "locals.tf", "outputs.tf"} <= names
    for f in files:
        assert isinstance(tt.parse(f), dict), f
    assert (tt.TERRAFORM_DIR / "terraform.tfvars.example").is_file()
    tt.parse(tt.TERRAFORM_DIR / "terraform.tfvars.example")


def test_broken_copy_is_refused_naming_the_file(tmp_path):
    copy = tmp_path / "terraform"
    shutil.copytree(tt.TERRAFORM_DIR, copy)
    broken = copy / "storage.tf"
    broken.write_text(broken.read_text() + '\nresource "azurerm_storage_queue" "oops" {\n  name = \n}\n')
    with pytest.raises(tt.TerraformParseError, match=re.escape(str(broken))):
        tt.parse(broken)
    with pytest.raises(tt.TerraformParseError, match="storage.tf"):
        tt.provisioned(copy)


# --- versions and providers -----------------------------------------------------------------


def test_azurerm_pinned_to_one_exact_4x_release_and_random_pinned(config):
    (terraform,) = config.terraform
    providers = terraform["required_providers"][0]
    assert providers["azurerm"]["source"] == "hashicorp/azurerm"
    assert re.fullmatch(r"=\s*4\.\d+\.\d+", providers["azurerm"]["version"]), providers["azurerm"]["version"]
    # maximum_instance_count below 40 needs >= 4.58.0 (validation widened to 1..1000 there)
    minor = int(re.search(r"4\.(\d+)\.", providers["azurerm"]["version"]).group(1))
    assert minor >= 58
    assert providers["random"]["source"] == "hashicorp/random"
    assert re.fullmatch(r"=\s*\d+\.\d+\.\d+", providers["random"]["version"])
    assert re.fullmatch(r">=\s*1\.(9|[1-9]\d)\.\d+", terraform["required_version"])


def test_provider_uses_azuread_for_storage(config):
    (azurerm,) = config.providers["azurerm"]
    assert azurerm["storage_use_azuread"] is True
    assert "features" in azurerm


# --- variables and outputs -------------------------------------------------------------------

EXPECTED_VARIABLES = {
    "name_prefix", "location", "paired_location", "resource_group_name", "cosmos_capacity_mode",
    "cosmos_autoscale_max_throughput", "maximum_instance_count", "instance_memory_mb", "scrub_schedule",
    "sweep_schedule", "retention_schedule", "reconcile_schedule", "operator_principal_id", "tags",
}


def test_variables_are_the_spec_ones_each_described_and_validated(config):
    assert set(config.variables) == EXPECTED_VARIABLES
    for name, body in config.variables.items():
        assert isinstance(body.get("description"), str) and len(body["description"]) > 10, name
        validations = body.get("validation") or []
        assert validations, f"variable {name} has no validation"
        for v in validations:
            assert f"var.{name}" in v["condition"], name
            assert v["error_message"], name


def test_variable_defaults_match_the_spec(config):
    defaults = {n: b.get("default") for n, b in config.variables.items()}
    assert "default" not in config.variables["name_prefix"]
    assert "default" not in config.variables["location"]
    assert defaults["paired_location"] == ""
    assert defaults["resource_group_name"] == ""
    assert defaults["operator_principal_id"] == ""
    assert defaults["cosmos_capacity_mode"] == "serverless"
    assert defaults["cosmos_autoscale_max_throughput"] == 1000
    assert defaults["maximum_instance_count"] == 40
    assert defaults["instance_memory_mb"] == 2048
    assert defaults["scrub_schedule"] == "0 0 3 * * *"
    assert defaults["sweep_schedule"] == "0 */15 * * * *"
    assert defaults["retention_schedule"] == "0 0 * * * *"
    assert defaults["reconcile_schedule"] == "0 30 * * * *"
    assert defaults["tags"] == {}


def test_location_validated_against_the_region_pair_table(config):
    condition = config.variables["location"]["validation"][0]["condition"]
    assert "contains(keys(local.region_pairs), var.location)" in condition
    pairs = config.locals["region_pairs"]
    assert len(pairs) == 29
    assert pairs["westeurope"] == "northeurope" and pairs["brazilsouth"] == "southcentralus"


def test_outputs_are_the_spec_ones(config):
    assert set(config.outputs) == {
        "function_app_name", "function_app_default_hostname", "public_api_url", "primary_storage_account_name",
        "secondary_storage_account_name", "primary_blob_endpoint", "primary_queue_endpoint",
        "secondary_blob_endpoint", "cosmos_account_endpoint", "cosmos_database_name", "managed_identity_client_id",
        "managed_identity_principal_id", "app_insights_name", "resource_group_name", "app_settings",
    }
    for name, body in config.outputs.items():
        assert body.get("description"), name


# --- secure defaults -----------------------------------------------------------------------


@pytest.mark.parametrize("account", ["primary", "secondary"])
def test_storage_account_secure_defaults(config, account):
    sa = storage_accounts(config)[account]
    assert sa["min_tls_version"] == "TLS1_2"
    assert sa["https_traffic_only_enabled"] is True
    assert sa["allow_nested_items_to_be_public"] is False
    assert sa["shared_access_key_enabled"] is False
    assert sa["default_to_oauth_authentication"] is True
    assert sa["account_kind"] == "StorageV2"
    assert (sa["account_tier"], sa["account_replication_type"]) == ("Standard", "LRS")
    assert sa["public_network_access_enabled"] is True
    (blob,) = sa["blob_properties"]
    assert "delete_retention_policy" not in blob  # soft delete off: Skyvault has its own


def test_storage_accounts_in_primary_and_paired_regions(config):
    accounts = storage_accounts(config)
    assert accounts["primary"]["location"] == "${var.location}"
    assert accounts["secondary"]["location"] == "${local.paired_location}"
    assert "local.region_pairs[var.location]" in config.locals["paired_location"]


def test_cosmos_account_secure_defaults(config):
    cosmos = config.resource("azurerm_cosmosdb_account", "main")
    assert cosmos["local_authentication_disabled"] is True
    assert cosmos["access_key_metadata_writes_enabled"] is False
    assert cosmos["minimal_tls_version"] == "Tls12"
    assert cosmos["kind"] == "GlobalDocumentDB"
    assert cosmos["consistency_policy"][0]["consistency_level"] == "Session"
    assert len(cosmos["geo_location"]) == 1
    capability = cosmos["dynamic"][0]["capabilities"]
    assert "EnableServerless" in capability["for_each"] and "serverless" in capability["for_each"]


def test_cosmos_containers_use_the_canonical_local(config):
    containers = config.resource("azurerm_cosmosdb_sql_container", "main")
    assert containers["for_each"] == "${local.cosmos_containers}"
    assert containers["partition_key_paths"] == "${each.value.paths}"
    assert containers["partition_key_kind"] == "${each.value.kind}"
    assert containers["partition_key_version"] == 2
    assert containers["default_ttl"] == "${each.value.default_ttl}"
    got = tt.provisioned()["cosmos_containers"]
    assert got["chunks"] == {"paths": ["/vaultId", "/shard"], "kind": "MultiHash", "default_ttl": None}
    assert got["nonces"]["default_ttl"] == -1
    assert {c["kind"] for n, c in got.items() if n != "chunks"} == {"Hash"}


def test_app_insights_secure_defaults(config):
    appi = config.resource("azurerm_application_insights", "main")
    assert appi["local_authentication_disabled"] is True
    assert appi["application_type"] == "web"
    assert appi["workspace_id"] == "${azurerm_log_analytics_workspace.main.id}"
    law = config.resource("azurerm_log_analytics_workspace", "main")
    assert (law["sku"], law["retention_in_days"]) == ("PerGB2018", 30)


def test_function_app_secure_defaults_and_runtime(config, app):
    assert app["https_only"] is True
    (site,) = app["site_config"]
    assert site["minimum_tls_version"] == "1.2"
    assert site["http2_enabled"] is True
    assert (app["runtime_name"], app["runtime_version"]) == ("python", "3.11")
    assert tt.provisioned()["runtime"] == ("python", "3.11")
    assert app["storage_authentication_type"] == "UserAssignedIdentity"
    assert app["storage_user_assigned_identity_id"] == "${azurerm_user_assigned_identity.app.id}"
    assert "storage_access_key" not in app
    assert app["storage_container_type"] == "blobContainer"
    assert "azurerm_storage_container.deployment.name" in app["storage_container_endpoint"]
    assert app["identity"][0]["type"] == "UserAssigned"
    assert app["webdeploy_publish_basic_authentication_enabled"] is False
    plan = config.resource("azurerm_service_plan", "main")
    assert (plan["sku_name"], plan["os_type"]) == ("FC1", "Linux")


def test_app_settings_are_exactly_the_spec_ones(config, app):
    settings = tt.provisioned()["app_settings"]
    assert set(settings) == SPEC_APP_SETTINGS
    assert "FUNCTIONS_WORKER_RUNTIME" not in tt.raw_app_settings(config)
    assert "FUNCTIONS_EXTENSION_VERSION" not in tt.raw_app_settings(config)
    # the only extra raw setting is the documented provider workaround, and it is empty
    extra = {k: v for k, v in tt.raw_app_settings(config).items() if k not in SPEC_APP_SETTINGS}
    assert extra == tt.PROVIDER_WORKAROUND_APP_SETTINGS == {"AzureWebJobsStorage": ""}


def test_app_setting_values(config):
    s = tt.provisioned()["app_settings"]
    for prefix in ("AzureWebJobsStorage", "Storage", "SecondaryStorage", "CosmosDb"):
        assert s[f"{prefix}__credential"] == "managedidentity"
        assert s[f"{prefix}__clientId"] == IDENTITY_CLIENT_ID
    assert s["AzureWebJobsStorage__accountName"] == "${azurerm_storage_account.primary.name}"
    assert s["Storage__blobServiceUri"] == "${azurerm_storage_account.primary.primary_blob_endpoint}"
    assert s["Storage__queueServiceUri"] == "${azurerm_storage_account.primary.primary_queue_endpoint}"
    assert s["SecondaryStorage__blobServiceUri"] == "${azurerm_storage_account.secondary.primary_blob_endpoint}"
    assert s["CosmosDb__accountEndpoint"] == "${azurerm_cosmosdb_account.main.endpoint}"
    assert s["CosmosDbDatabase"] == config.evaluate(config.locals["cosmos_database_name"]) == "skyvault"
    assert s["PublicApiUrl"] == config.locals["public_api_url"] == "https://${local.function_app_name}.azurewebsites.net/api"
    assert s["ReplicationCopyMode"] == "server"
    for name in ("Scrub", "Sweep", "Retention", "Reconcile"):
        assert s[f"{name}Schedule"] == "${var.%s_schedule}" % name.lower()
    assert s["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "${azurerm_application_insights.main.connection_string}"
    assert s["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == f"ClientId={IDENTITY_CLIENT_ID};Authorization=AAD"


def test_no_keys_or_connection_strings_in_app_settings(config):
    forbidden = ("accountkey", "sharedaccesssignature", "primary_access_key", "connection_string", "connectionstring")
    for name, value in tt.raw_app_settings(config).items():
        if name == "APPLICATIONINSIGHTS_CONNECTION_STRING":
            assert value == "${azurerm_application_insights.main.connection_string}"
            continue
        for word in forbidden:
            assert word not in name.lower(), name
            assert word not in value.lower(), (name, value)


def test_no_access_keys_referenced_anywhere():
    for f in sorted(tt.TERRAFORM_DIR.glob("*.tf")):
        code = "\n".join(line for line in f.read_text().splitlines() if not line.lstrip().startswith("#"))
        for word in ("primary_access_key", "secondary_access_key", "primary_connection_string",
                     "secondary_connection_string", "primary_key", "storage_access_key", "sas"):
            assert not re.search(rf"\b{word}\b", code), (f.name, word)


# --- provisioned inventory ------------------------------------------------------------------


def test_queues_containers_and_database():
    p = tt.provisioned()
    base = {"ingest", "commit", "restore", "replicate", "usage"}
    assert p["queues"] == base | {f"{q}-poison" for q in base}
    assert p["blob_containers"] == {"skyvault-locks"}
    assert p["deployment_container"] == "app-package"
    assert p["cosmos_database"] == "skyvault"
    assert p["variables"] == EXPECTED_VARIABLES


def test_queues_and_containers_only_on_primary(config):
    for rtype in ("azurerm_storage_queue", "azurerm_storage_container"):
        for name, body in config.resources[rtype].items():
            assert body["storage_account_id"] == "${azurerm_storage_account.primary.id}", (rtype, name)
            assert body.get("container_access_type", "private") == "private"


# --- roles ----------------------------------------------------------------------------------


def test_role_definition_guids_are_the_documented_ones(config):
    guids = config.locals["role_definition_guids"]
    assert guids == {
        "storage_blob_data_owner": ROLE_GUIDS["Storage Blob Data Owner"],
        "storage_queue_data_contributor": ROLE_GUIDS["Storage Queue Data Contributor"],
        "monitoring_metrics_publisher": ROLE_GUIDS["Monitoring Metrics Publisher"],
    }
    # each GUID has its role's name in a comment on the same line
    text = (tt.TERRAFORM_DIR / "locals.tf").read_text()
    for role, guid in ROLE_GUIDS.items():
        assert re.search(rf'"{guid}"\s*#\s*{re.escape(role)}\s*$', text, re.M), role
    assert config.locals["cosmos_data_contributor_role_guid"] == COSMOS_DATA_CONTRIBUTOR


def test_role_assignments_match_the_spec(config):
    def scopes_roles(assignments):
        return {(a["scope"], a["role"]) for a in assignments.values()}

    primary, secondary = "${azurerm_storage_account.primary.id}", "${azurerm_storage_account.secondary.id}"
    appi = "${azurerm_application_insights.main.id}"
    assert scopes_roles(config.locals["app_role_assignments"]) == {
        (primary, "storage_blob_data_owner"), (secondary, "storage_blob_data_owner"),
        (primary, "storage_queue_data_contributor"), (appi, "monitoring_metrics_publisher"),
    }
    assert scopes_roles(config.locals["operator_role_assignments"]) == {
        (primary, "storage_blob_data_owner"), (secondary, "storage_blob_data_owner"),
        (primary, "storage_queue_data_contributor"), (secondary, "storage_queue_data_contributor"),
    }
    app_ra = config.resource("azurerm_role_assignment", "app")
    assert app_ra["principal_type"] == "ServicePrincipal"
    assert app_ra["principal_id"] == "${azurerm_user_assigned_identity.app.principal_id}"
    assert app_ra["role_definition_id"].endswith("/${local.role_definition_guids[each.value.role]}")
    assert config.locals["role_definition_prefix"].endswith("/providers/Microsoft.Authorization/roleDefinitions")
    op_ra = config.resource("azurerm_role_assignment", "operator")
    assert "principal_type" not in op_ra
    assert op_ra["principal_id"] == "${var.operator_principal_id}"
    assert 'var.operator_principal_id == ""' in op_ra["for_each"]


def test_cosmos_sql_role_assignments_use_the_builtin_data_contributor(config):
    assignments = config.resources["azurerm_cosmosdb_sql_role_assignment"]
    assert set(assignments) == {"app", "operator"}
    for name, ra in assignments.items():
        assert ra["role_definition_id"] == (
            "${azurerm_cosmosdb_account.main.id}/sqlRoleDefinitions/${local.cosmos_data_contributor_role_guid}"
        ), name
        assert ra["scope"] == "${azurerm_cosmosdb_account.main.id}"
    assert assignments["app"]["principal_id"] == "${azurerm_user_assigned_identity.app.principal_id}"
    assert assignments["operator"]["principal_id"] == "${var.operator_principal_id}"
    # Cosmos data access must not be attempted with an Azure RBAC role
    for ra in config.resources["azurerm_role_assignment"].values():
        assert "cosmos" not in str(ra).lower()


def test_resource_names_derive_from_prefix_and_suffix(config):
    loc = config.locals
    assert loc["identity_name"] == "id-${var.name_prefix}-${local.suffix}"
    assert "rg-${var.name_prefix}-${local.suffix}" in loc["resource_group_name"]
    suffix = config.resource("random_string", "suffix")
    assert (suffix["length"], suffix["upper"], suffix["special"], suffix["lower"]) == (6, False, False, True)
    for key in ("primary_storage_name", "secondary_storage_name", "cosmos_account_name", "log_analytics_name",
                "app_insights_name", "service_plan_name", "function_app_name"):
        assert "${var.name_prefix}" in loc[key] and "${local.suffix}" in loc[key], key
