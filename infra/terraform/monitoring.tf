resource "azurerm_log_analytics_workspace" "main" {
  name                = local.log_analytics_name
  resource_group_name = azurerm_resource_group.main.name
  location            = var.location
  sku                 = "PerGB2018"
  retention_in_days   = 30
  # Workspace keys would be the one shared secret left in the deployment.
  local_authentication_enabled = false
  tags                         = var.tags
}

resource "azurerm_application_insights" "main" {
  name                = local.app_insights_name
  resource_group_name = azurerm_resource_group.main.name
  location            = var.location
  workspace_id        = azurerm_log_analytics_workspace.main.id
  application_type    = "web"
  # Telemetry must be sent with an Entra token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING),
  # so the instrumentation key in the connection string grants nothing on its own.
  local_authentication_disabled = true
  tags                          = var.tags
}
