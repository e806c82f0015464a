"""Skyvault's checks of the storage accounts: CKV_SKYVAULT_6..8, where checkov has none that works.

- Bicep: checkov 3.3 has no check of allowSharedKeyAccess or allowBlobPublicAccess (its
  Terraform-only CKV2_AZURE_40 and CKV_AZURE_190 / CKV2_AZURE_47 cover them for Terraform).
- Terraform: checkov's CKV_AZURE_3 reads enable_https_traffic_only, which azurerm 4.x renamed
  https_traffic_only_enabled, so it passes an account with HTTPS only switched off (for Bicep
  CKV_AZURE_3 reads supportsHttpsTrafficOnly and works).
TLS 1.2 is checkov's CKV_AZURE_44 in both frameworks.
"""
from __future__ import annotations

from typing import Any

from checkov.bicep.checks.resource.base_resource_check import BaseResourceCheck as BicepCheck
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck as TerraformCheck

import skyvault_checklib as lib


class BicepPropertyIsFalse(BicepCheck):
    """A storage account property that must be written out as false (Azure's default is true / unset)."""

    def __init__(self, name: str, id: str, property_name: str) -> None:
        self.property_name = property_name
        super().__init__(
            name=name,
            id=id,
            categories=(CheckCategories.IAM,),
            supported_resources=("Microsoft.Storage/storageAccounts",),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = [f"properties/{self.property_name}"]
        value = lib.dig(lib.bicep_body(conf), "properties", self.property_name)
        return CheckResult.PASSED if value is False else CheckResult.FAILED


class StorageHttpsOnlyTerraform(TerraformCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure the storage account accepts HTTPS only (azurerm 4.x https_traffic_only_enabled)",
            id="CKV_SKYVAULT_8",
            categories=(CheckCategories.ENCRYPTION,),
            supported_resources=("azurerm_storage_account",),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        # Left out, the provider sends its default, true.
        self.evaluated_keys = ["https_traffic_only_enabled"]
        value = lib.tf_value(conf, "https_traffic_only_enabled", True)
        return CheckResult.PASSED if value is True else CheckResult.FAILED


check_shared_key = BicepPropertyIsFalse(
    name="Ensure the storage account refuses shared-key access (account keys and key-signed SAS)",
    id="CKV_SKYVAULT_6",
    property_name="allowSharedKeyAccess",
)
check_blob_public_access = BicepPropertyIsFalse(
    name="Ensure the storage account allows no anonymous (public) blob access",
    id="CKV_SKYVAULT_7",
    property_name="allowBlobPublicAccess",
)
check_https_only = StorageHttpsOnlyTerraform()
