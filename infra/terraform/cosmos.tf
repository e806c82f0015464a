resource "azurerm_cosmosdb_account" "main" {
  #checkov:skip=CKV_AZURE_101:The Flex Consumption app has no VNet integration and the operator CLI runs from anywhere, so the account is reached over its public endpoint; local auth is off, so only Entra principals with a data role get in
  #checkov:skip=CKV_AZURE_99:No IP or VNet filter: Flex Consumption outbound addresses are not fixed and operators connect from anywhere; access is Entra ID only (local_authentication_disabled)
  #checkov:skip=CKV_AZURE_100:Microsoft-managed keys: the catalogue holds metadata while chunk contents are encrypted client-side; a Key Vault key would add an outage path for the whole catalogue
  name                = local.cosmos_account_name
  resource_group_name = azurerm_resource_group.main.name
  location            = var.location
  offer_type          = "Standard"
  kind                = "GlobalDocumentDB"

  consistency_policy {
    consistency_level = "Session"
  }

  # Single region: cross-region durability is Skyvault's replicated storage, and the
  # catalogue can be rebuilt from it.
  geo_location {
    location          = var.location
    failover_priority = 0
  }

  # Entra ID only: no account keys for data, and none for metadata writes either.
  local_authentication_disabled      = true
  access_key_metadata_writes_enabled = false
  minimal_tls_version                = "Tls12"
  public_network_access_enabled      = true

  dynamic "capabilities" {
    for_each = var.cosmos_capacity_mode == "serverless" ? ["EnableServerless"] : []
    content {
      name = capabilities.value
    }
  }

  tags = var.tags
}

resource "azurerm_cosmosdb_sql_database" "main" {
  name                = local.cosmos_database_name
  resource_group_name = azurerm_resource_group.main.name
  account_name        = azurerm_cosmosdb_account.main.name

  # Serverless accounts reject any provisioned throughput; in autoscale mode it is
  # shared by all containers at database level.
  dynamic "autoscale_settings" {
    for_each = var.cosmos_capacity_mode == "autoscale" ? [var.cosmos_autoscale_max_throughput] : []
    content {
      max_throughput = autoscale_settings.value
    }
  }
}

resource "azurerm_cosmosdb_sql_container" "main" {
  for_each            = local.cosmos_containers
  name                = each.key
  resource_group_name = azurerm_resource_group.main.name
  account_name        = azurerm_cosmosdb_account.main.name
  database_name       = azurerm_cosmosdb_sql_database.main.name

  partition_key_paths = each.value.paths
  partition_key_kind  = each.value.kind
  # Version 2 is required for hierarchical (MultiHash) keys; single-path containers
  # use it too so that every container hashes the same way.
  partition_key_version = 2
  default_ttl           = each.value.default_ttl
}

# A Cosmos DB data-plane role assignment, not an Azure RBAC one: Azure RBAC roles
# grant no access to documents.
resource "azurerm_cosmosdb_sql_role_assignment" "app" {
  resource_group_name = azurerm_resource_group.main.name
  account_name        = azurerm_cosmosdb_account.main.name
  # Cosmos DB Built-in Data Contributor
  role_definition_id = "${azurerm_cosmosdb_account.main.id}/sqlRoleDefinitions/${local.cosmos_data_contributor_role_guid}"
  principal_id       = azurerm_user_assigned_identity.app.principal_id
  scope              = azurerm_cosmosdb_account.main.id
}

resource "azurerm_cosmosdb_sql_role_assignment" "operator" {
  count               = var.operator_principal_id == "" ? 0 : 1
  resource_group_name = azurerm_resource_group.main.name
  account_name        = azurerm_cosmosdb_account.main.name
  # Cosmos DB Built-in Data Contributor
  role_definition_id = "${azurerm_cosmosdb_account.main.id}/sqlRoleDefinitions/${local.cosmos_data_contributor_role_guid}"
  principal_id       = var.operator_principal_id
  scope              = azurerm_cosmosdb_account.main.id
}
