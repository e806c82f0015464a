# Two LRS accounts: Skyvault replicates between them itself, so account-level
# geo-replication would only pay twice for the same copies.
resource "azurerm_storage_account" "primary" {
  #checkov:skip=CKV_AZURE_59:Agents on customer machines reach blobs over the internet with user-delegation SAS; access is gated by Entra ID and SAS, shared keys are off
  #checkov:skip=CKV2_AZURE_33:No private endpoint: agents on customer machines reach storage over the internet
  #checkov:skip=CKV2_AZURE_38:Blob soft delete is off on purpose: Skyvault implements its own retention and soft delete
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys: vault data is encrypted client-side by the agent (docs/design.md) before upload, so a Key Vault key would add an outage path while protecting only ciphertext
  #checkov:skip=CKV_AZURE_206:Replication is Skyvault's own (primary to the paired-region secondary); account-level GRS would store every chunk twice more
  #checkov:skip=CKV_AZURE_33:Classic Storage Analytics queue logging is a deprecated data-plane block in azurerm 4.x; resource logs belong in diagnostic settings, which the deployment spec does not include yet
  name                     = local.primary_storage_name
  resource_group_name      = azurerm_resource_group.main.name
  location                 = var.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = "LRS"

  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  public_network_access_enabled     = true
  infrastructure_encryption_enabled = false
  cross_tenant_replication_enabled  = false
  # SFTP/local users authenticate with passwords or SSH keys, which the design rules out.
  local_user_enabled = false

  # An explicit block with no delete_retention_policy sends soft delete as disabled:
  # Skyvault keeps its own deleted-chunk grace period.
  blob_properties {
    versioning_enabled  = false
    change_feed_enabled = false
  }

  tags = var.tags
}

resource "azurerm_storage_account" "secondary" {
  #checkov:skip=CKV_AZURE_59:Agents on customer machines reach blobs over the internet with user-delegation SAS; access is gated by Entra ID and SAS, shared keys are off
  #checkov:skip=CKV2_AZURE_33:No private endpoint: agents on customer machines reach storage over the internet
  #checkov:skip=CKV2_AZURE_38:Blob soft delete is off on purpose: Skyvault implements its own retention and soft delete
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys: vault data is encrypted client-side by the agent (docs/design.md) before upload, so a Key Vault key would add an outage path while protecting only ciphertext
  #checkov:skip=CKV_AZURE_206:This account is the replica of the primary made by Skyvault's own replication; account-level GRS would store every chunk twice more
  #checkov:skip=CKV_AZURE_33:This account has no queues
  name                     = local.secondary_storage_name
  resource_group_name      = azurerm_resource_group.main.name
  location                 = local.paired_location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = "LRS"

  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  public_network_access_enabled     = true
  infrastructure_encryption_enabled = false
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false

  blob_properties {
    versioning_enabled  = false
    change_feed_enabled = false
  }

  tags = var.tags
}

# storage_account_id (not storage_account_name) makes the provider create queues and
# containers through Resource Manager, which needs no shared key.
resource "azurerm_storage_queue" "primary" {
  for_each           = toset(local.all_queue_names)
  name               = each.value
  storage_account_id = azurerm_storage_account.primary.id
}

resource "azurerm_storage_container" "primary" {
  #checkov:skip=CKV2_AZURE_21:Classic Storage Analytics blob logging is a data-plane setting; resource logs belong in diagnostic settings, which the deployment spec does not include yet
  for_each              = toset(local.blob_container_names)
  name                  = each.value
  storage_account_id    = azurerm_storage_account.primary.id
  container_access_type = "private"
}

resource "azurerm_storage_container" "deployment" {
  #checkov:skip=CKV2_AZURE_21:Classic Storage Analytics blob logging is a data-plane setting; resource logs belong in diagnostic settings, which the deployment spec does not include yet
  name                  = local.deployment_container_name
  storage_account_id    = azurerm_storage_account.primary.id
  container_access_type = "private"
}
