output "function_app_name" {
  description = "Name of the Flex Consumption function app."
  value       = azurerm_function_app_flex_consumption.main.name
}

output "function_app_default_hostname" {
  description = "Default hostname of the function app."
  value       = azurerm_function_app_flex_consumption.main.default_hostname
}

output "public_api_url" {
  description = "Base URL of the public HTTP API (what agents call)."
  value       = local.public_api_url
}

output "primary_storage_account_name" {
  description = "Name of the primary storage account (queues, locks, deployment package, vault containers)."
  value       = azurerm_storage_account.primary.name
}

output "secondary_storage_account_name" {
  description = "Name of the secondary (paired-region replica) storage account."
  value       = azurerm_storage_account.secondary.name
}

output "primary_blob_endpoint" {
  description = "Blob endpoint of the primary storage account."
  value       = azurerm_storage_account.primary.primary_blob_endpoint
}

output "primary_queue_endpoint" {
  description = "Queue endpoint of the primary storage account."
  value       = azurerm_storage_account.primary.primary_queue_endpoint
}

output "secondary_blob_endpoint" {
  description = "Blob endpoint of the secondary storage account."
  value       = azurerm_storage_account.secondary.primary_blob_endpoint
}

output "cosmos_account_endpoint" {
  description = "Document endpoint of the Cosmos DB account."
  value       = azurerm_cosmosdb_account.main.endpoint
}

output "cosmos_database_name" {
  description = "Name of the Cosmos DB SQL database."
  value       = azurerm_cosmosdb_sql_database.main.name
}

output "managed_identity_client_id" {
  description = "Client id of the app's user-assigned identity."
  value       = azurerm_user_assigned_identity.app.client_id
}

output "managed_identity_principal_id" {
  description = "Principal (object) id of the app's user-assigned identity."
  value       = azurerm_user_assigned_identity.app.principal_id
}

output "app_insights_name" {
  description = "Name of the Application Insights component."
  value       = azurerm_application_insights.main.name
}

output "resource_group_name" {
  description = "Name of the resource group this configuration created."
  value       = azurerm_resource_group.main.name
}

output "app_settings" {
  description = "The function app's settings, including APPLICATIONINSIGHTS_CONNECTION_STRING (set through site_config). Read with `terraform output -json app_settings`."
  # The provider marks the App Insights connection string sensitive, and Terraform
  # refuses to output a sensitive value unless the output is marked too. It holds no
  # credential (local auth is off); it is an endpoint plus an instrumentation id.
  sensitive = true
  value = merge(
    { for k, v in azurerm_function_app_flex_consumption.main.app_settings : k => v if k != "AzureWebJobsStorage" },
    { APPLICATIONINSIGHTS_CONNECTION_STRING = azurerm_application_insights.main.connection_string },
  )
}
