"""Static checks of infra/bicep: parses, parameters, secure defaults, app settings, roles.

Everything is read from the parsed files (pycep), offline: no Bicep compiler is installed here.
A reference is pycep's BicepElement, so `ref("x")` is compared with `==` (a str subclass) and
checked with `bt.is_reference` where a string literal of the same text would be wrong.
"""
from __future__ import annotations

import re
import shutil

import pytest

from tests.infra import bicep_tree as bt
from tests.infra.test_terraform import COSMOS_DATA_CONTRIBUTOR, ROLE_GUIDS, SPEC_APP_SETTINGS

STORAGE = "modules/storage.bicep"
COSMOS = "modules/cosmos.bicep"
FUNCTION_APP = "modules/functionapp.bicep"
MONITORING = "modules/monitoring.bicep"
ROLES = "modules/roles.bicep"
IDENTITY = "modules/identity.bicep"

ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
SQL_ROLE_ASSIGNMENT = "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments"

# The spec's region-pair table, in its order.
SPEC_REGION_PAIRS = {
    "eastus": "westus", "westus": "eastus", "eastus2": "centralus", "centralus": "eastus2",
    "northcentralus": "southcentralus", "southcentralus": "northcentralus", "westus2": "westcentralus",
    "westcentralus": "westus2", "westus3": "eastus", "canadacentral": "canadaeast", "canadaeast": "canadacentral",
    "northeurope": "westeurope", "westeurope": "northeurope", "uksouth": "ukwest", "ukwest": "uksouth",
    "francecentral": "francesouth", "germanywestcentral": "germanynorth", "swedencentral": "swedensouth",
    "switzerlandnorth": "switzerlandwest", "norwayeast": "norwaywest", "australiaeast": "australiasoutheast",
    "australiasoutheast": "australiaeast", "japaneast": "japanwest", "japanwest": "japaneast",
    "koreacentral": "koreasouth", "southeastasia": "eastasia", "eastasia": "southeastasia",
    "centralindia": "southindia", "brazilsouth": "southcentralus",
}

# Terraform's variables in camelCase, less resource_group_name: Bicep deploys into a group the
# operator has created.
EXPECTED_PARAMS = {
    "namePrefix", "location", "pairedLocation", "cosmosCapacityMode", "cosmosAutoscaleMaxThroughput",
    "maximumInstanceCount", "instanceMemoryMB", "scrubSchedule", "sweepSchedule", "retentionSchedule",
    "reconcileSchedule", "operatorPrincipalId", "tags",
}
EXPECTED_OUTPUTS = {
    "functionAppName", "functionAppDefaultHostname", "publicApiUrl", "primaryStorageAccountName",
    "secondaryStorageAccountName", "primaryBlobEndpoint", "primaryQueueEndpoint", "secondaryBlobEndpoint",
    "cosmosAccountEndpoint", "cosmosDatabaseName", "managedIdentityClientId", "managedIdentityPrincipalId",
    "appInsightsName", "resourceGroupName", "appSettings",
}
VALIDATIONS = {"allowed", "min_length", "max_length", "min_value", "max_value"}

API_VERSIONS = {
    "Microsoft.Storage/": "2023-05-01",
    "Microsoft.DocumentDB/": "2024-05-15",
    "Microsoft.Web/": "2024-04-01",
    "Microsoft.Insights/components": "2020-02-02",
    "Microsoft.OperationalInsights/": "2023-09-01",
    "Microsoft.ManagedIdentity/": "2023-01-31",
    "Microsoft.Authorization/roleAssignments": "2022-04-01",
}


def ref(name: str):
    return bt.BicepElement(name)


@pytest.fixture(scope="module")
def tree() -> bt.Tree:
    return bt.Tree()


@pytest.fixture(scope="module")
def main(tree) -> dict:
    return tree.main


@pytest.fixture(scope="module")
def provisioned() -> dict:
    return bt.provisioned()


def only(tree, file: str, rtype: str) -> tuple[str, dict]:
    """(symbol, body) of the one resource of that type that a file creates."""
    found = [r for r in tree.resources(rtype) if r.file == file and not r.resource.get("existing")]
    assert len(found) == 1, (file, rtype, found)
    return found[0].symbol, bt.body(found[0].resource)


def params_of(main, symbol: str) -> dict:
    return bt.body(main["modules"][symbol])["params"]


def conditional(value) -> tuple:
    """(condition, true value, false value) of `cond ? a : b`."""
    assert value["operator"]["type"] == "conditional", value
    ops = value["operator"]["operands"]
    return ops["condition"], ops["true_value"], ops["false_value"]


def equals(value) -> tuple:
    assert value["operator"]["type"] == "equals", value
    ops = value["operator"]["operands"]
    return ops["operand_1"], ops["operand_2"]


def code_of(path) -> str:
    """A .bicep file without its comments (https:// in strings is not a comment)."""
    text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
    return "\n".join(re.sub(r"(^|\s)//.*$", "", line) for line in text.splitlines())


# --- parsing and wiring ----------------------------------------------------------------------


def test_every_bicep_file_parses_and_main_wires_every_module(tree, main):
    assert set(bt.load_tree()) == {"main.bicep", STORAGE, COSMOS, FUNCTION_APP, MONITORING, ROLES, IDENTITY}
    for path in sorted(bt.BICEP_DIR.rglob("*.bicep")):
        assert isinstance(bt.parse(path), dict), path
    assert main["globals"]["scope"]["value"] == "resourceGroup"
    called = {tree.module_file(m) for m in main["modules"].values()}
    assert called == set(tree.files) - {"main.bicep"}
    # local files only: checkov cannot expand br/public: registry modules
    assert {m["type"] for m in main["modules"].values()} == {"local"}
    assert sorted(tree.calls(STORAGE)) == ["primaryStorage", "secondaryStorage"]


def test_bicepparam_example_sets_only_main_parameters_with_valid_values(main):
    text = (bt.BICEP_DIR / "main.bicepparam").read_text()
    assert re.search(r"^using '\./main\.bicep'$", text, re.M)
    values = dict(re.findall(r"^param (\w+) = (.*)$", text, re.M))
    assert set(values) <= set(main["parameters"])
    assert {"namePrefix", "location"} <= set(values)
    name_prefix = values["namePrefix"].strip("'")
    assert re.fullmatch(r"[a-z0-9]{3,11}", name_prefix)
    assert values["location"].strip("'") in bt.decorators(main["parameters"]["location"])["allowed"]
    assert values["cosmosCapacityMode"].strip("'") in bt.decorators(main["parameters"]["cosmosCapacityMode"])["allowed"]


def test_broken_copy_is_refused_naming_the_file(tmp_path):
    copy = tmp_path / "bicep"
    shutil.copytree(bt.BICEP_DIR, copy)
    broken = copy / "modules" / "storage.bicep"
    oops = "\nresource oops 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name:\n}\n"
    broken.write_text(broken.read_text() + oops)
    with pytest.raises(bt.BicepParseError, match=re.escape(str(broken))):
        bt.parse(broken)
    with pytest.raises(bt.BicepParseError, match="storage.bicep"):
        bt.provisioned(copy)


def test_the_inventory_follows_the_canonical_lists(tmp_path):
    copy = tmp_path / "bicep"
    shutil.copytree(bt.BICEP_DIR, copy)
    main = copy / "main.bicep"
    text = main.read_text()
    assert text.count("'replicate', 'usage']") == 1
    main.write_text(text.replace("'replicate', 'usage']", "'replicate']"))
    queues = bt.provisioned(copy)["queues"]
    assert "usage" not in queues and "usage-poison" not in queues and "replicate-poison" in queues


def test_the_loader_refuses_what_it_cannot_evaluate(tmp_path):
    copy = tmp_path / "bicep"
    shutil.copytree(bt.BICEP_DIR, copy)
    app = copy / "modules" / "functionapp.bicep"
    text = app.read_text()
    assert text.count("ReplicationCopyMode: 'server'") == 1
    app.write_text(text.replace("ReplicationCopyMode: 'server'", "ReplicationCopyMode: toLower('SERVER')"))
    with pytest.raises(bt.Unevaluable, match="functionapp.bicep"):
        bt.provisioned(copy)


@pytest.mark.parametrize("prefix, version", sorted(API_VERSIONS.items()))
def test_api_versions_are_the_specs(tree, prefix, version):
    found = [r for r in tree.resources() if r.resource["type"].startswith(prefix)]
    assert found, prefix
    for r in found:
        assert r.resource["api_version"] == version, (r.file, r.symbol)


def test_every_resource_type_has_a_pinned_api_version(tree):
    for r in tree.resources():
        assert any(r.resource["type"].startswith(p) for p in API_VERSIONS), (r.file, r.resource["type"])


# --- parameters and outputs -------------------------------------------------------------------


def test_params_are_the_spec_ones_each_described_and_validated(tree, main):
    assert set(main["parameters"]) == EXPECTED_PARAMS
    for name, param in main["parameters"].items():
        decorators = bt.decorators(param)
        assert isinstance(decorators.get("description"), str) and len(decorators["description"]) > 10, name
        if name == "tags":
            # no decorator validates an object; Azure refuses more than 50 tags itself
            assert param["type"] == "object" and not VALIDATIONS & set(decorators)
        else:
            assert VALIDATIONS & set(decorators), f"param {name} has no validation"
    for file, template in tree.files.items():
        for name, param in template.get("parameters", {}).items():
            assert bt.decorators(param).get("description"), (file, name)


def test_param_validations_are_the_specs(main):
    d = {name: bt.decorators(p) for name, p in main["parameters"].items()}
    assert (d["namePrefix"]["min_length"], d["namePrefix"]["max_length"]) == (3, 11)
    assert d["cosmosCapacityMode"]["allowed"] == ["serverless", "autoscale"]
    assert d["cosmosAutoscaleMaxThroughput"]["min_value"] == 1000
    assert (d["maximumInstanceCount"]["min_value"], d["maximumInstanceCount"]["max_value"]) == (1, 1000)
    assert d["instanceMemoryMB"]["allowed"] == [512, 2048, 4096]
    for name in ("scrubSchedule", "sweepSchedule", "retentionSchedule", "reconcileSchedule"):
        assert d[name]["min_length"] == len("* * * * * *"), name  # the shortest 6-field NCRONTAB
    assert d["operatorPrincipalId"]["max_length"] == 36  # a GUID
    assert "max_length" in d["pairedLocation"]


def test_param_defaults_match_the_spec(main):
    params = main["parameters"]
    defaults = {name: p["default"] for name, p in params.items()}
    assert defaults["namePrefix"] is None
    operands = defaults["location"]["operator"]["operands"]
    assert bt.function_call(operands["operand_1"])[0] == "resource_group" and operands["operand_2"] == "location"
    assert defaults["pairedLocation"] == ""
    assert defaults["operatorPrincipalId"] == ""
    assert defaults["cosmosCapacityMode"] == "serverless"
    assert defaults["cosmosAutoscaleMaxThroughput"] == 1000
    assert defaults["maximumInstanceCount"] == 40
    assert defaults["instanceMemoryMB"] == 2048
    assert defaults["scrubSchedule"] == "0 0 3 * * *"
    assert defaults["sweepSchedule"] == "0 */15 * * * *"
    assert defaults["retentionSchedule"] == "0 0 * * * *"
    assert defaults["reconcileSchedule"] == "0 30 * * * *"
    assert defaults["tags"] == {}
    for name, default in defaults.items():
        if isinstance(default, str):
            assert not bt.is_reference(default), name


def test_location_allowed_is_the_region_pair_table(main):
    pairs = main["variables"]["regionPairs"]["value"]
    assert pairs == SPEC_REGION_PAIRS
    assert bt.decorators(main["parameters"]["location"])["allowed"] == list(pairs)
    condition, table, override = conditional(main["variables"]["secondaryLocation"]["value"])
    assert bt.function_call(condition) == ("empty", {"item_to_test": "pairedLocation"})
    assert table["operator"]["type"] == "index_accessor"
    assert table["operator"]["operands"] == {"operand_1": "regionPairs", "operand_2": "location"}
    assert bt.is_reference(override) and override == "pairedLocation"


def test_outputs_are_the_spec_ones(tree, main):
    assert set(main["outputs"]) == EXPECTED_OUTPUTS
    for name, output in main["outputs"].items():
        assert bt.decorators(output).get("description"), name
    out = {name: o["value"] for name, o in main["outputs"].items()}
    assert main["outputs"]["appSettings"]["type"] == "object"
    assert bt.accessor_path(out["appSettings"]) == ["functionApp", "outputs", "appSettings"]
    module_outputs = tree.files[FUNCTION_APP]["outputs"]
    # the module outputs the very object the site's settings are made from
    settings = module_outputs["appSettings"]["value"]
    assert bt.is_reference(settings) and settings == "appSettings"
    assert bt.accessor_path(module_outputs["publicApiUrl"]["value"]) == ["appSettings", "PublicApiUrl"]
    assert bt.accessor_path(out["publicApiUrl"]) == ["functionApp", "outputs", "publicApiUrl"]
    rg = out["resourceGroupName"]["operator"]["operands"]
    assert bt.function_call(rg["operand_1"])[0] == "resource_group" and rg["operand_2"] == "name"
    expected_paths = {
        "functionAppName": ["functionApp", "outputs", "name"],
        "functionAppDefaultHostname": ["functionApp", "outputs", "defaultHostname"],
        "primaryStorageAccountName": ["primaryStorage", "outputs", "name"],
        "secondaryStorageAccountName": ["secondaryStorage", "outputs", "name"],
        "primaryBlobEndpoint": ["primaryStorage", "outputs", "blobEndpoint"],
        "primaryQueueEndpoint": ["primaryStorage", "outputs", "queueEndpoint"],
        "secondaryBlobEndpoint": ["secondaryStorage", "outputs", "blobEndpoint"],
        "cosmosAccountEndpoint": ["cosmos", "outputs", "endpoint"],
        "cosmosDatabaseName": ["cosmos", "outputs", "databaseName"],
        "managedIdentityClientId": ["identity", "outputs", "clientId"],
        "managedIdentityPrincipalId": ["identity", "outputs", "principalId"],
        "appInsightsName": ["monitoring", "outputs", "appInsightsName"],
    }
    for name, path in expected_paths.items():
        assert bt.accessor_path(out[name]) == path, name


def test_module_outputs_are_the_resources_own_values(tree):
    def output(file, name):
        return bt.accessor_path(tree.files[file]["outputs"][name]["value"])

    assert output(STORAGE, "blobEndpoint") == ["account", "properties", "primaryEndpoints", "blob"]
    assert output(STORAGE, "queueEndpoint") == ["account", "properties", "primaryEndpoints", "queue"]
    assert output(COSMOS, "endpoint") == ["account", "properties", "documentEndpoint"]
    assert output(IDENTITY, "clientId") == ["identity", "properties", "clientId"]
    assert output(IDENTITY, "principalId") == ["identity", "properties", "principalId"]
    assert output(MONITORING, "appInsightsConnectionString") == ["appInsights", "properties", "ConnectionString"]
    assert output(FUNCTION_APP, "defaultHostname") == ["app", "properties", "defaultHostName"]


# --- storage -----------------------------------------------------------------------------------


@pytest.mark.parametrize("account", ["primaryStorage", "secondaryStorage"])
def test_storage_account_secure_defaults(tree, account):
    _, sa = only(tree, STORAGE, "Microsoft.Storage/storageAccounts")
    scope = tree.scope(account)
    props = sa["properties"]
    # literals, so both calls of the module get them
    assert scope.evaluate(props["minimumTlsVersion"]) == "TLS1_2"
    assert scope.evaluate(props["supportsHttpsTrafficOnly"]) is True
    assert scope.evaluate(props["allowBlobPublicAccess"]) is False
    assert scope.evaluate(props["allowSharedKeyAccess"]) is False
    assert scope.evaluate(props["defaultToOAuthAuthentication"]) is True
    assert scope.evaluate(props["publicNetworkAccess"]) == "Enabled"
    assert scope.evaluate(props["encryption"]["requireInfrastructureEncryption"]) is False
    assert (sa["kind"], sa["sku"]) == ("StorageV2", {"name": "Standard_LRS"})
    assert scope.evaluate(sa["name"], render=True) == f"<{account}Name>"  # named by main.bicep
    _, blob = only(tree, STORAGE, "Microsoft.Storage/storageAccounts/blobServices")
    assert blob["properties"]["deleteRetentionPolicy"] == {"enabled": False}  # Skyvault has its own


def test_storage_accounts_in_primary_and_paired_regions(tree, main):
    _, sa = only(tree, STORAGE, "Microsoft.Storage/storageAccounts")
    assert bt.is_reference(sa["location"]) and sa["location"] == "location"
    primary, secondary = params_of(main, "primaryStorage"), params_of(main, "secondaryStorage")
    assert bt.is_reference(primary["location"]) and primary["location"] == "location"
    assert bt.is_reference(secondary["location"]) and secondary["location"] == "secondaryLocation"


def test_queues_and_containers_only_on_primary(tree, main, provisioned):
    for rtype in (bt.QUEUE_TYPE, bt.CONTAINER_TYPE):
        assert {scope.symbol for scope, _ in tree.instances(rtype)} == {"primaryStorage"}, rtype
    assert params_of(main, "secondaryStorage")["queueNames"] == []
    assert params_of(main, "secondaryStorage")["containerNames"] == []
    base = {"ingest", "commit", "restore", "replicate", "usage"}
    assert provisioned["queues"] == base | {f"{q}-poison" for q in base}
    assert provisioned["blob_containers"] == {"skyvault-locks"}
    assert provisioned["deployment_container"] == "app-package"
    assert set(tree.names(bt.CONTAINER_TYPE)) == {"skyvault-locks", "app-package"}
    for _, container in tree.instances(bt.CONTAINER_TYPE):
        assert container["properties"] == {"publicAccess": "None"}


def test_canonical_lists_are_literal(main):
    v = {name: var["value"] for name, var in main["variables"].items()}
    assert v["queueNames"] == ["ingest", "commit", "restore", "replicate", "usage"]
    assert v["blobContainerNames"] == ["skyvault-locks"]
    assert v["deploymentContainerName"] == "app-package"
    assert v["cosmosDatabaseName"] == "skyvault"
    assert [c["name"] for c in v["cosmosContainers"]] == [
        "vaults", "items", "recoveryPoints", "chunks", "usage", "usageDays", "jobs", "machines", "nonces"]
    for value in (*v["queueNames"], *v["blobContainerNames"], v["deploymentContainerName"], v["cosmosDatabaseName"]):
        assert not bt.is_reference(value), value


# --- Cosmos DB -----------------------------------------------------------------------------------


def test_cosmos_account_secure_defaults(tree):
    _, cosmos = only(tree, COSMOS, "Microsoft.DocumentDB/databaseAccounts")
    props = cosmos["properties"]
    assert props["disableLocalAuth"] is True
    assert props["disableKeyBasedMetadataWriteAccess"] is True
    assert props["minimalTlsVersion"] == "Tls12"
    assert props["publicNetworkAccess"] == "Enabled"
    assert cosmos["kind"] == "GlobalDocumentDB"
    assert props["consistencyPolicy"]["defaultConsistencyLevel"] == "Session"
    (region,) = props["locations"]
    assert region["locationName"] == "location" and region["failoverPriority"] == 0


def test_cosmos_serverless_or_database_autoscale(tree, main):
    _, cosmos = only(tree, COSMOS, "Microsoft.DocumentDB/databaseAccounts")
    condition, serverless, provisioned_capacity = conditional(cosmos["properties"]["capabilities"])
    assert equals(condition) == ("capacityMode", "serverless")
    assert (serverless, provisioned_capacity) == ([{"name": "EnableServerless"}], [])
    _, database = only(tree, COSMOS, bt.COSMOS_DATABASE_TYPE)
    condition, autoscale, serverless_options = conditional(database["properties"]["options"])
    assert equals(condition) == ("capacityMode", "autoscale")
    assert autoscale == {"autoscaleSettings": {"maxThroughput": "autoscaleMaxThroughput"}}
    assert serverless_options == {}
    cosmos_args = params_of(main, "cosmos")
    assert cosmos_args["capacityMode"] == "cosmosCapacityMode" and bt.is_reference(cosmos_args["capacityMode"])
    assert cosmos_args["autoscaleMaxThroughput"] == "cosmosAutoscaleMaxThroughput"
    # containers share the database's throughput: none of their own
    _, container = only(tree, COSMOS, bt.COSMOS_CONTAINER_TYPE)
    assert "options" not in container["properties"]


def test_cosmos_containers_iterate_the_canonical_list(tree, provisioned):
    _, container = only(tree, COSMOS, bt.COSMOS_CONTAINER_TYPE)
    key = container["properties"]["resource"]["partitionKey"]
    assert bt.accessor_path(key["paths"]) == ["container", "paths"]
    assert bt.accessor_path(key["kind"]) == ["container", "kind"]
    assert key["version"] == 2
    assert bt.accessor_path(container["properties"]["resource"]["defaultTtl"]) == ["container", "defaultTtl"]
    got = provisioned["cosmos_containers"]
    assert len(got) == 9
    assert got["chunks"] == {"paths": ["/vaultId", "/shard"], "kind": "MultiHash", "default_ttl": None}
    assert got["nonces"] == {"paths": ["/vaultId"], "kind": "Hash", "default_ttl": -1}
    assert got["vaults"]["paths"] == ["/tenantId"]
    assert {c["kind"] for n, c in got.items() if n != "chunks"} == {"Hash"}
    assert provisioned["cosmos_database"] == "skyvault"


# --- monitoring --------------------------------------------------------------------------------


def test_app_insights_takes_entra_tokens_only(tree):
    _, appi = only(tree, MONITORING, "Microsoft.Insights/components")
    assert appi["properties"]["DisableLocalAuth"] is True
    assert (appi["kind"], appi["properties"]["Application_Type"]) == ("web", "web")
    assert bt.accessor_path(appi["properties"]["WorkspaceResourceId"]) == ["workspace", "id"]
    _, law = only(tree, MONITORING, "Microsoft.OperationalInsights/workspaces")
    assert law["properties"]["sku"] == {"name": "PerGB2018"}
    assert law["properties"]["retentionInDays"] == 30
    assert law["properties"]["features"]["disableLocalAuth"] is True


# --- function app ----------------------------------------------------------------------------


def test_function_app_secure_defaults_and_runtime(tree, main, provisioned):
    scope, app = tree.function_app()
    assert scope.file == FUNCTION_APP
    assert app["kind"] == "functionapp,linux"
    props = app["properties"]
    assert props["httpsOnly"] is True
    assert props["publicNetworkAccess"] == "Enabled"
    site = props["siteConfig"]
    assert (site["minTlsVersion"], site["ftpsState"], site["http20Enabled"]) == ("1.2", "Disabled", True)
    config = props["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert provisioned["runtime"] == ("python", "3.11")
    assert "dotnet" not in code_of(bt.BICEP_DIR / FUNCTION_APP).lower()
    scale = config["scaleAndConcurrency"]
    assert (scale["maximumInstanceCount"], scale["instanceMemoryMB"]) == ("maximumInstanceCount", "instanceMemoryMB")
    args = params_of(main, "functionApp")
    assert (args["maximumInstanceCount"], args["instanceMemoryMB"]) == ("maximumInstanceCount", "instanceMemoryMB")
    assert app["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {"'${identityId}'": {}}}
    assert bt.accessor_path(args["identityId"]) == ["identity", "outputs", "id"]
    assert bt.accessor_path(props["serverFarmId"]) == ["plan", "id"]
    _, plan = only(tree, FUNCTION_APP, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert (plan["kind"], plan["properties"]["reserved"]) == ("functionapp", True)
    policies = [r for r in tree.resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies")]
    assert {bt.body(r.resource)["name"]: bt.body(r.resource)["properties"]["allow"] for r in policies} == {
        "ftp": False, "scm": False}


def test_deployment_storage_is_app_package_of_primary_by_identity(tree, main):
    scope, app = tree.function_app()
    storage = app["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["value"] == "${primaryBlobEndpoint}${deploymentContainerName}"
    assert scope.evaluate(storage["value"], render=True) == "<primaryBlobEndpoint>app-package"
    assert bt.accessor_path(params_of(main, "functionApp")["primaryBlobEndpoint"]) == [
        "primaryStorage", "outputs", "blobEndpoint"]
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert storage["authentication"]["userAssignedIdentityResourceId"] == "identityId"
    assert set(storage["authentication"]) == {"type", "userAssignedIdentityResourceId"}
    # the host starts at once: its grants first
    assert bt.body(main["modules"]["functionApp"])["dependsOn"] == ["roles"]


def test_app_settings_are_exactly_the_spec_ones(provisioned):
    assert set(provisioned["app_settings"]) == SPEC_APP_SETTINGS
    for path in bt.BICEP_DIR.rglob("*.bicep"):
        code = code_of(path)
        assert "FUNCTIONS_WORKER_RUNTIME" not in code and "FUNCTIONS_EXTENSION_VERSION" not in code, path


def test_app_setting_values(main, provisioned):
    s = provisioned["app_settings"]
    for prefix in ("AzureWebJobsStorage", "Storage", "SecondaryStorage", "CosmosDb"):
        assert s[f"{prefix}__credential"] == "managedidentity"
        assert s[f"{prefix}__clientId"] == "<identityClientId>"
    assert s["AzureWebJobsStorage__accountName"] == "<primaryStorageName>"
    assert s["Storage__blobServiceUri"] == "<primaryBlobEndpoint>"
    assert s["Storage__queueServiceUri"] == "<primaryQueueEndpoint>"
    assert s["SecondaryStorage__blobServiceUri"] == "<secondaryBlobEndpoint>"
    assert s["CosmosDb__accountEndpoint"] == "<cosmosEndpoint>"
    assert s["CosmosDbDatabase"] == "skyvault"
    assert s["PublicApiUrl"] == "https://<functionAppName>.azurewebsites.net/api"
    assert s["ReplicationCopyMode"] == "server"
    for name in ("scrub", "sweep", "retention", "reconcile"):
        assert s[f"{name.capitalize()}Schedule"] == f"<{name}Schedule>"
    assert s["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "<appInsightsConnectionString>"
    assert s["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=<identityClientId>;Authorization=AAD"
    # what each "<...>" is, as main.bicep passes it
    args = params_of(main, "functionApp")
    wiring = {
        "identityClientId": ["identity", "outputs", "clientId"],
        "primaryStorageName": ["primaryStorage", "outputs", "name"],
        "primaryBlobEndpoint": ["primaryStorage", "outputs", "blobEndpoint"],
        "primaryQueueEndpoint": ["primaryStorage", "outputs", "queueEndpoint"],
        "secondaryBlobEndpoint": ["secondaryStorage", "outputs", "blobEndpoint"],
        "cosmosEndpoint": ["cosmos", "outputs", "endpoint"],
        "appInsightsConnectionString": ["monitoring", "outputs", "appInsightsConnectionString"],
    }
    for param, path in wiring.items():
        assert bt.accessor_path(args[param]) == path, param
    for name in ("scrubSchedule", "sweepSchedule", "retentionSchedule", "reconcileSchedule"):
        assert bt.is_reference(args[name]) and args[name] == name and name in main["parameters"]
    assert args["name"] == "functionAppName" and args["cosmosDatabaseName"] == "cosmosDatabaseName"


def test_no_keys_or_connection_strings_anywhere(provisioned):
    for name, value in provisioned["app_settings"].items():
        for word in ("accountkey", "sharedaccesssignature", "defaultendpointsprotocol", "connectionstring"):
            assert word not in value.lower() or name == "APPLICATIONINSIGHTS_CONNECTION_STRING", (name, value)
        if "connection_string" in name.lower():
            assert name == "APPLICATIONINSIGHTS_CONNECTION_STRING"
    forbidden = re.compile(
        r"\blist[A-Z]\w*\(|\.list\w*\(|AccountKey|DefaultEndpointsProtocol|SharedAccessSignature|\bsas\w*\b"
        r"|\b(primary|secondary)(Readonly)?(Master)?Key\b|\baccessKey\b|\bkeys\(\)", re.I)
    for path in sorted(bt.BICEP_DIR.rglob("*.bicep")):
        code = code_of(path)
        assert not forbidden.search(code), (path.name, forbidden.search(code))
        assert "@secure()" not in code, path.name  # nothing secret is passed around either


# --- roles ---------------------------------------------------------------------------------------


def role_guids(tree) -> dict[str, str]:
    """{variable of roles.bicep: the role GUID it names}."""
    scope = tree.scope("roles")
    found = {}
    for name, var in tree.files[ROLES]["variables"].items():
        call = bt.function_call(var["value"])
        if call and call[0] == "subscription_resource_id":
            assert call[1]["resource_type"] == "Microsoft.Authorization/roleDefinitions", name
            assert call[1]["resource_name_2"] is None and call[1]["subscription_id"] is None, name
            found[name] = scope.evaluate(call[1]["resource_name_1"])
    return found


def test_role_definition_guids_are_the_documented_ones_with_their_names(tree):
    definitions = tree.files[ROLES]["variables"]["roleDefinitions"]["value"]
    assert {d["name"]: d["id"] for d in definitions.values()} == {
        **ROLE_GUIDS, "Cosmos DB Built-in Data Contributor": COSMOS_DATA_CONTRIBUTOR}
    for d in definitions.values():
        assert list(d) == ["name", "id"]  # the name right beside its GUID
    assert sorted(role_guids(tree).values()) == sorted(ROLE_GUIDS.values())


def assignment_target(tree, main, scope_ref) -> str:
    """The module of main.bicep whose resource an `existing` symbol of roles.bicep names."""
    existing = tree.files[ROLES]["resources"][str(scope_ref)]
    assert existing["existing"] is True
    name = bt.body(existing)["name"]
    return bt.accessor_path(params_of(main, "roles")[str(name)])[0]


def test_role_assignments_match_the_spec(tree, main):
    assignments = tree.resources(ROLE_ASSIGNMENT)
    assert {r.file for r in assignments} == {ROLES}
    names = {guid: role for role, guid in ROLE_GUIDS.items()}
    guids = role_guids(tree)
    hits = {"app": set(), "operator": set()}
    for r in assignments:
        condition, loop, ra = bt.unwrap(r.resource["config"])
        assert loop is None
        props = ra["properties"]
        principal = str(props["principalId"])
        role = names[guids[str(props["roleDefinitionId"])]]
        target = assignment_target(tree, main, ra["scope"])
        if principal == "principalId":
            assert condition is None, r.symbol
            assert props["principalType"] == "ServicePrincipal", r.symbol
            hits["app"].add((target, role))
        else:
            assert principal == "operatorPrincipalId", r.symbol
            assert condition == "hasOperator" and bt.is_reference(condition), r.symbol
            assert "principalType" not in props, r.symbol  # a user or a group
            hits["operator"].add((target, role))
        # guid(scope.id, principalId, roleId)
        assert bt.function_call(ra["name"]) == ("guid", {
            "base_string": {"operator": {"type": "property_accessor",
                                         "operands": {"operand_1": ra["scope"], "operand_2": "id"}}},
            "extra_string_1": props["principalId"], "extra_string_2": props["roleDefinitionId"]}), r.symbol
    blob, queue, metrics = "Storage Blob Data Owner", "Storage Queue Data Contributor", "Monitoring Metrics Publisher"
    assert hits["app"] == {("primaryStorage", blob), ("secondaryStorage", blob), ("primaryStorage", queue),
                           ("monitoring", metrics)}
    assert hits["operator"] == {("primaryStorage", blob), ("secondaryStorage", blob), ("primaryStorage", queue),
                                ("secondaryStorage", queue)}
    assert len(assignments) == 8
    args = params_of(main, "roles")
    assert bt.accessor_path(args["principalId"]) == ["identity", "outputs", "principalId"]
    assert args["operatorPrincipalId"] == "operatorPrincipalId" and bt.is_reference(args["operatorPrincipalId"])
    assert bt.accessor_path(args["appInsightsName"]) == ["monitoring", "outputs", "appInsightsName"]
    has_operator = tree.files[ROLES]["variables"]["hasOperator"]["value"]["operator"]
    assert has_operator["type"] == "not"
    assert bt.function_call(has_operator["operands"]["bool_value"]) == (
        "empty", {"item_to_test": "operatorPrincipalId"})


def test_cosmos_sql_role_assignments_use_the_builtin_data_contributor(tree, main):
    assignments = tree.resources(SQL_ROLE_ASSIGNMENT)
    assert len(assignments) == 2 and {r.file for r in assignments} == {ROLES}
    scope = tree.scope("roles")
    principals = {}
    for r in assignments:
        condition, _, ra = bt.unwrap(r.resource["config"])
        props = ra["properties"]
        assert ra["parent"] == "cosmos"
        assert props["roleDefinitionId"] == (
            "${cosmos.id}/sqlRoleDefinitions/${roleDefinitions.cosmosDbBuiltInDataContributor.id}")
        assert bt.accessor_path(props["scope"]) == ["cosmos", "id"]
        principals[str(props["principalId"])] = condition
    assert principals == {"principalId": None, "operatorPrincipalId": "hasOperator"}
    assert scope.resolve("roleDefinitions")["cosmosDbBuiltInDataContributor"]["id"] == COSMOS_DATA_CONTRIBUTOR
    assert assignment_target(tree, main, "cosmos") == "cosmos"
    # Cosmos data access is never attempted with an Azure RBAC role
    for r in tree.resources(ROLE_ASSIGNMENT):
        assert bt.body(r.resource)["scope"] != "cosmos"


# --- names -----------------------------------------------------------------------------------------


def test_resource_names_derive_from_prefix_and_suffix(tree, main):
    v = {name: var["value"] for name, var in main["variables"].items()}
    take = bt.function_call(v["suffix"])
    assert take[0] == "take" and take[1]["number_to_take"] == 6
    unique = bt.function_call(take[1]["original_value"])
    assert unique[0] == "unique_string"
    group_id = unique[1]["base_string"]["operator"]["operands"]
    assert bt.function_call(group_id["operand_1"])[0] == "resource_group" and group_id["operand_2"] == "id"
    expected = {
        "identityName": "id-${namePrefix}-${suffix}",
        "primaryStorageName": "st${namePrefix}${suffix}p",
        "secondaryStorageName": "st${namePrefix}${suffix}s",
        "cosmosAccountName": "cosmos-${namePrefix}-${suffix}",
        "workspaceName": "log-${namePrefix}-${suffix}",
        "appInsightsName": "appi-${namePrefix}-${suffix}",
        "planName": "asp-${namePrefix}-${suffix}",
        "functionAppName": "func-${namePrefix}-${suffix}",
    }
    assert {name: v[name] for name in expected} == expected
    # the longest storage account name fits Azure's 24 characters
    longest = bt.decorators(main["parameters"]["namePrefix"])["max_length"]
    assert len("st" + "x" * longest + "x" * 6 + "p") <= 24
    # every top-level resource a module creates is named by main.bicep from one of those
    named = set()
    for scope in tree.scopes()[1:]:
        for symbol, resource in scope.template.get("resources", {}).items():
            config = bt.body(resource)
            if resource.get("existing") or "parent" in config or resource["type"] == ROLE_ASSIGNMENT:
                continue
            arg = scope.call[1][str(config["name"])]
            assert bt.is_reference(arg) and str(arg) in expected, (scope.symbol, symbol, arg)
            named.add(str(arg))
    assert named == set(expected)
