# One user-assigned identity for the app: its client id is what every
# *__clientId setting names, and it outlives app re-creation.
resource "azurerm_user_assigned_identity" "app" {
  name                = local.identity_name
  resource_group_name = azurerm_resource_group.main.name
  location            = var.location
  tags                = var.tags
}
