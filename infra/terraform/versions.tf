terraform {
  # 1.9 is the first release whose variable validations may reference locals and
  # other variables (the location check reads local.region_pairs).
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # Exact pin: 4.58.0 is the first 4.x release whose
      # azurerm_function_app_flex_consumption accepts maximum_instance_count 1..1000
      # (earlier releases reject anything under 40, which var.maximum_instance_count
      # allows). It also has https_only on that resource and MultiHash partition keys.
      version = "= 4.58.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "= 3.7.2"
    }
  }
}
