locals {
  # Azure region pairs. Skyvault replicates to the pair itself, so the secondary
  # account's region comes from here unless var.paired_location overrides it.
  region_pairs = {
    eastus             = "westus"
    westus             = "eastus"
    eastus2            = "centralus"
    centralus          = "eastus2"
    northcentralus     = "southcentralus"
    southcentralus     = "northcentralus"
    westus2            = "westcentralus"
    westcentralus      = "westus2"
    westus3            = "eastus"
    canadacentral      = "canadaeast"
    canadaeast         = "canadacentral"
    northeurope        = "westeurope"
    westeurope         = "northeurope"
    uksouth            = "ukwest"
    ukwest             = "uksouth"
    francecentral      = "francesouth"
    germanywestcentral = "germanynorth"
    swedencentral      = "swedensouth"
    switzerlandnorth   = "switzerlandwest"
    norwayeast         = "norwaywest"
    australiaeast      = "australiasoutheast"
    australiasoutheast = "australiaeast"
    japaneast          = "japanwest"
    japanwest          = "japaneast"
    koreacentral       = "koreasouth"
    southeastasia      = "eastasia"
    eastasia           = "southeastasia"
    centralindia       = "southindia"
    brazilsouth        = "southcentralus"
  }

  # Canonical lists: the code's own names. The consistency test reads these, and the
  # resources iterate over them so nothing else gets provisioned.
  queue_names = ["ingest", "commit", "restore", "replicate", "usage"]
  # The Functions host moves messages that exhaust their retries to <queue>-poison;
  # pre-creating them keeps the identity's rights and the inventory explicit.
  all_queue_names = concat(local.queue_names, [for q in local.queue_names : "${q}-poison"])

  blob_container_names      = ["skyvault-locks"]
  deployment_container_name = "app-package"

  cosmos_database_name = "skyvault"
  cosmos_containers = {
    vaults         = { paths = ["/tenantId"], kind = "Hash", default_ttl = null }
    items          = { paths = ["/vaultId"], kind = "Hash", default_ttl = null }
    recoveryPoints = { paths = ["/vaultId"], kind = "Hash", default_ttl = null }
    chunks         = { paths = ["/vaultId", "/shard"], kind = "MultiHash", default_ttl = null }
    usage          = { paths = ["/vaultId"], kind = "Hash", default_ttl = null }
    usageDays      = { paths = ["/vaultId"], kind = "Hash", default_ttl = null }
    jobs           = { paths = ["/vaultId"], kind = "Hash", default_ttl = null }
    machines       = { paths = ["/vaultId"], kind = "Hash", default_ttl = null }
    # -1 turns TTL on without a default, so only nonces that carry their own ttl expire.
    nonces = { paths = ["/vaultId"], kind = "Hash", default_ttl = -1 }
  }

  suffix          = random_string.suffix.result
  paired_location = var.paired_location != "" ? var.paired_location : local.region_pairs[var.location]

  resource_group_name = var.resource_group_name != "" ? var.resource_group_name : "rg-${var.name_prefix}-${local.suffix}"
  identity_name       = "id-${var.name_prefix}-${local.suffix}"
  # Storage account names allow only 3-24 lowercase letters and digits: no dashes.
  primary_storage_name   = "st${var.name_prefix}${local.suffix}p"
  secondary_storage_name = "st${var.name_prefix}${local.suffix}s"
  cosmos_account_name    = "cosmos-${var.name_prefix}-${local.suffix}"
  log_analytics_name     = "log-${var.name_prefix}-${local.suffix}"
  app_insights_name      = "appi-${var.name_prefix}-${local.suffix}"
  service_plan_name      = "asp-${var.name_prefix}-${local.suffix}"
  function_app_name      = "func-${var.name_prefix}-${local.suffix}"

  # Built from the name rather than the app's default_hostname attribute, because the
  # app's own settings cannot reference the app without a cycle.
  public_api_url = "https://${local.function_app_name}.azurewebsites.net/api"

  # Built-in role definition GUIDs (the same in every tenant), keyed by role name.
  role_definition_guids = {
    storage_blob_data_owner        = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b" # Storage Blob Data Owner
    storage_queue_data_contributor = "974c5e8b-45b9-4653-ba55-5f855dd0fb88" # Storage Queue Data Contributor
    monitoring_metrics_publisher   = "3913510d-42f4-4e42-8a64-420c390055eb" # Monitoring Metrics Publisher
  }
  # Cosmos DB data-plane role (not an Azure RBAC role): Cosmos DB Built-in Data Contributor.
  cosmos_data_contributor_role_guid = "00000000-0000-0000-0000-000000000002"
}
