resource "azurerm_service_plan" "main" {
  #checkov:skip=CKV_AZURE_225:Flex Consumption zone redundancy is not available in every region of the pair table; the spec deploys a single-zone plan
  #checkov:skip=CKV_AZURE_212:Flex Consumption has no fixed worker count to set: instances scale from zero per demand up to maximum_instance_count
  name                = local.service_plan_name
  resource_group_name = azurerm_resource_group.main.name
  location            = var.location
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = var.tags
}

resource "azurerm_function_app_flex_consumption" "main" {
  name                = local.function_app_name
  resource_group_name = azurerm_resource_group.main.name
  location            = var.location
  service_plan_id     = azurerm_service_plan.main.id

  runtime_name           = "python"
  runtime_version        = "3.11"
  maximum_instance_count = var.maximum_instance_count
  instance_memory_in_mb  = var.instance_memory_mb

  # The package is pulled from app-package with the app's identity: no storage key.
  storage_container_type            = "blobContainer"
  storage_container_endpoint        = "${azurerm_storage_account.primary.primary_blob_endpoint}${azurerm_storage_container.deployment.name}"
  storage_authentication_type       = "UserAssignedIdentity"
  storage_user_assigned_identity_id = azurerm_user_assigned_identity.app.id

  https_only                    = true
  public_network_access_enabled = true
  # Publishing uses Entra tokens; basic-auth publishing credentials would be a
  # password outside the identity model.
  webdeploy_publish_basic_authentication_enabled = false

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.app.id]
  }

  site_config {
    minimum_tls_version     = "1.2"
    scm_minimum_tls_version = "1.2"
    http2_enabled           = true
    # The provider owns the APPLICATIONINSIGHTS_CONNECTION_STRING app setting: it writes
    # it from here and strips it from app_settings on read, so setting it in
    # app_settings would show a change on every plan.
    application_insights_connection_string = azurerm_application_insights.main.connection_string
  }

  # Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION:
  # the runtime comes from runtime_name/runtime_version above.
  app_settings = {
    AzureWebJobsStorage__accountName          = azurerm_storage_account.primary.name
    AzureWebJobsStorage__credential           = "managedidentity"
    AzureWebJobsStorage__clientId             = azurerm_user_assigned_identity.app.client_id
    Storage__blobServiceUri                   = azurerm_storage_account.primary.primary_blob_endpoint
    Storage__queueServiceUri                  = azurerm_storage_account.primary.primary_queue_endpoint
    Storage__credential                       = "managedidentity"
    Storage__clientId                         = azurerm_user_assigned_identity.app.client_id
    SecondaryStorage__blobServiceUri          = azurerm_storage_account.secondary.primary_blob_endpoint
    SecondaryStorage__credential              = "managedidentity"
    SecondaryStorage__clientId                = azurerm_user_assigned_identity.app.client_id
    CosmosDb__accountEndpoint                 = azurerm_cosmosdb_account.main.endpoint
    CosmosDb__credential                      = "managedidentity"
    CosmosDb__clientId                        = azurerm_user_assigned_identity.app.client_id
    CosmosDbDatabase                          = "skyvault"
    PublicApiUrl                              = "https://${local.function_app_name}.azurewebsites.net/api"
    ReplicationCopyMode                       = "server"
    ScrubSchedule                             = var.scrub_schedule
    SweepSchedule                             = var.sweep_schedule
    RetentionSchedule                         = var.retention_schedule
    ReconcileSchedule                         = var.reconcile_schedule
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING = "ClientId=${azurerm_user_assigned_identity.app.client_id};Authorization=AAD"

    # Provider workaround (hashicorp/terraform-provider-azurerm#29149, #30732): with an
    # identity-based deployment storage the provider still injects
    # AzureWebJobsStorage = "DefaultEndpointsProtocol=...;AccountKey=;..." and the host
    # then tries that key-less connection string instead of AzureWebJobsStorage__*.
    # An explicit empty value overrides the injection; the host treats empty as unset.
    AzureWebJobsStorage = ""
  }

  # The host reaches storage, queues and telemetry as soon as it starts.
  depends_on = [azurerm_role_assignment.app]

  tags = var.tags
}
