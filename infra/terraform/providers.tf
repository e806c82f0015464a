provider "azurerm" {
  features {}

  # Both storage accounts refuse shared-key auth, so any data-plane call the provider
  # makes must carry an Entra ID token instead of an account key.
  storage_use_azuread = true
}
