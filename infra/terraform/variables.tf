variable "name_prefix" {
  type        = string
  description = "Prefix for every resource name (3-11 lowercase letters or digits); a 6-character random suffix is appended so names stay globally unique."

  validation {
    # Storage account names are lowercase alphanumerics of at most 24 characters:
    # "st" + prefix + 6-char suffix + "p"/"s" must fit.
    condition     = can(regex("^[a-z0-9]{3,11}$", var.name_prefix))
    error_message = "name_prefix must be 3-11 lowercase letters or digits."
  }
}

variable "location" {
  type        = string
  description = "Primary Azure region (e.g. westeurope): resource group, primary storage, Cosmos DB, monitoring and the function app. Must be a key of the region-pair table in locals.tf."

  validation {
    condition     = contains(keys(local.region_pairs), var.location)
    error_message = "location must be one of the regions in local.region_pairs (locals.tf), so that a paired region is known."
  }
}

variable "paired_location" {
  type        = string
  description = "Region of the secondary (replica) storage account. Empty means the pair of var.location from the region-pair table."
  default     = ""

  validation {
    condition     = var.paired_location == "" || (can(regex("^[a-z][a-z0-9]+$", var.paired_location)) && var.paired_location != var.location)
    error_message = "paired_location must be empty or a lowercase region name different from location."
  }
}

variable "resource_group_name" {
  type        = string
  description = "Name of the resource group this configuration creates. Empty means rg-<name_prefix>-<suffix>."
  default     = ""

  validation {
    condition     = var.resource_group_name == "" || can(regex("^[-\\w.()]{0,89}[-\\w()]$", var.resource_group_name))
    error_message = "resource_group_name must be empty or 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'."
  }
}

variable "cosmos_capacity_mode" {
  type        = string
  description = "Cosmos DB capacity mode: 'serverless' (pay per request) or 'autoscale' (database-level autoscale throughput)."
  default     = "serverless"

  validation {
    condition     = contains(["serverless", "autoscale"], var.cosmos_capacity_mode)
    error_message = "cosmos_capacity_mode must be 'serverless' or 'autoscale'."
  }
}

variable "cosmos_autoscale_max_throughput" {
  type        = number
  description = "Maximum RU/s of the database's autoscale throughput; used only when cosmos_capacity_mode is 'autoscale'."
  default     = 1000

  validation {
    # Cosmos DB takes autoscale maxima only in steps of 1000 RU/s.
    condition     = var.cosmos_autoscale_max_throughput >= 1000 && var.cosmos_autoscale_max_throughput % 1000 == 0
    error_message = "cosmos_autoscale_max_throughput must be at least 1000 and a multiple of 1000."
  }
}

variable "maximum_instance_count" {
  type        = number
  description = "Upper bound of Flex Consumption scale-out (instances)."
  default     = 40

  validation {
    condition     = var.maximum_instance_count >= 1 && var.maximum_instance_count <= 1000 && floor(var.maximum_instance_count) == var.maximum_instance_count
    error_message = "maximum_instance_count must be a whole number from 1 to 1000."
  }
}

variable "instance_memory_mb" {
  type        = number
  description = "Memory of each Flex Consumption instance in MB."
  default     = 2048

  validation {
    condition     = contains([512, 2048, 4096], var.instance_memory_mb)
    error_message = "instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "scrub_schedule" {
  type        = string
  description = "NCRONTAB (6 fields, with seconds) schedule of the scrub timer (app setting ScrubSchedule)."
  default     = "0 0 3 * * *"

  validation {
    condition     = can(regex("^\\S+( \\S+){5}$", var.scrub_schedule))
    error_message = "scrub_schedule must be an NCRONTAB expression of 6 space-separated fields."
  }
}

variable "sweep_schedule" {
  type        = string
  description = "NCRONTAB (6 fields, with seconds) schedule of the sweep timer (app setting SweepSchedule)."
  default     = "0 */15 * * * *"

  validation {
    condition     = can(regex("^\\S+( \\S+){5}$", var.sweep_schedule))
    error_message = "sweep_schedule must be an NCRONTAB expression of 6 space-separated fields."
  }
}

variable "retention_schedule" {
  type        = string
  description = "NCRONTAB (6 fields, with seconds) schedule of the retention timer (app setting RetentionSchedule)."
  default     = "0 0 * * * *"

  validation {
    condition     = can(regex("^\\S+( \\S+){5}$", var.retention_schedule))
    error_message = "retention_schedule must be an NCRONTAB expression of 6 space-separated fields."
  }
}

variable "reconcile_schedule" {
  type        = string
  description = "NCRONTAB (6 fields, with seconds) schedule of the reconcile timer (app setting ReconcileSchedule)."
  default     = "0 30 * * * *"

  validation {
    condition     = can(regex("^\\S+( \\S+){5}$", var.reconcile_schedule))
    error_message = "reconcile_schedule must be an NCRONTAB expression of 6 space-separated fields."
  }
}

variable "operator_principal_id" {
  type        = string
  description = "Entra object id of the operator (user or group) who runs `skyvault vault ...` against this deployment; gets the app identity's data-plane roles. Empty means none."
  default     = ""

  validation {
    condition     = var.operator_principal_id == "" || can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.operator_principal_id))
    error_message = "operator_principal_id must be empty or an object id (GUID)."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags applied to every taggable resource."
  default     = {}

  validation {
    # Azure's limits: 50 tags, names up to 512 characters, values up to 256.
    condition     = length(var.tags) <= 50 && alltrue([for k, v in var.tags : length(k) >= 1 && length(k) <= 512 && length(v) <= 256])
    error_message = "tags: at most 50, names 1-512 characters, values up to 256 characters."
  }
}
