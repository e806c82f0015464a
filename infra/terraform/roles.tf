# Azure RBAC assignments use role_definition_id with the built-in role's GUID (names
# are in local.role_definition_guids beside each GUID): an id does not depend on the
# role's display name, which Microsoft has renamed before.
locals {
  role_definition_prefix = "${data.azurerm_subscription.current.id}/providers/Microsoft.Authorization/roleDefinitions"

  app_role_assignments = {
    # The agents' user-delegation SAS are signed with this identity's delegation key and
    # can grant no more than its role; the role includes generateUserDelegationKey.
    primary_blob_data_owner   = { scope = azurerm_storage_account.primary.id, role = "storage_blob_data_owner" }
    secondary_blob_data_owner = { scope = azurerm_storage_account.secondary.id, role = "storage_blob_data_owner" }
    # Contributor, not Reader+Processor+Sender: the host creates and poisons queues.
    primary_queue_data_contributor = { scope = azurerm_storage_account.primary.id, role = "storage_queue_data_contributor" }
    # Entra-authenticated telemetry ingestion (local auth is off on App Insights).
    app_insights_metrics_publisher = { scope = azurerm_application_insights.main.id, role = "monitoring_metrics_publisher" }
  }

  operator_role_assignments = {
    primary_blob_data_owner          = { scope = azurerm_storage_account.primary.id, role = "storage_blob_data_owner" }
    secondary_blob_data_owner        = { scope = azurerm_storage_account.secondary.id, role = "storage_blob_data_owner" }
    primary_queue_data_contributor   = { scope = azurerm_storage_account.primary.id, role = "storage_queue_data_contributor" }
    secondary_queue_data_contributor = { scope = azurerm_storage_account.secondary.id, role = "storage_queue_data_contributor" }
  }
}

resource "azurerm_role_assignment" "app" {
  for_each           = local.app_role_assignments
  scope              = each.value.scope
  role_definition_id = "${local.role_definition_prefix}/${local.role_definition_guids[each.value.role]}"
  principal_id       = azurerm_user_assigned_identity.app.principal_id
  # Stated explicitly so that a just-created identity is not looked up in Entra ID
  # before it has replicated.
  principal_type = "ServicePrincipal"
}

resource "azurerm_role_assignment" "operator" {
  # The operator may be a user or a group, so principal_type is left to Azure.
  for_each           = var.operator_principal_id == "" ? {} : local.operator_role_assignments
  scope              = each.value.scope
  role_definition_id = "${local.role_definition_prefix}/${local.role_definition_guids[each.value.role]}"
  principal_id       = var.operator_principal_id
}
