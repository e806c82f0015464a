"""Skyvault's checks of the Flex Consumption function app: CKV_SKYVAULT_1..5.

checkov 3.3 has no check of azurerm_function_app_flex_consumption at all, and its Bicep checks of
Microsoft.Web/sites read the runtime from siteConfig, where a Flex Consumption app does not keep it
(functionAppConfig does). HTTPS only and TLS 1.2 of Bicep apps are left to checkov's own
CKV_AZURE_70 / CKV_AZURE_14 and CKV_AZURE_145 / CKV_AZURE_15, which read them where Flex keeps them.
"""
from __future__ import annotations

from typing import Any

from checkov.bicep.checks.resource.base_resource_check import BaseResourceCheck as BicepCheck
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck as TerraformCheck

import skyvault_checklib as lib

TERRAFORM_APP = ("azurerm_function_app_flex_consumption",)
BICEP_SITE = ("Microsoft.Web/sites",)
RUNTIME = ("python", "3.11")


def _result(check: Any, problems: list[str]) -> CheckResult:
    """FAILED with the problems as the result's details, or PASSED when there are none."""
    check.details.extend(problems)
    return CheckResult.FAILED if problems else CheckResult.PASSED


def _bicep_function_app(conf: dict[str, Any]) -> dict[str, Any] | None:
    """The body of a Bicep site that is a function app, else None (web apps are not ours)."""
    body = lib.bicep_body(conf)
    return body if "functionapp" in str(body.get("kind", "")).lower() else None


# ---- CKV_SKYVAULT_1, _2: transport (Bicep: checkov's CKV_AZURE_70/14 and CKV_AZURE_145/15) ----

class FunctionAppHttpsOnly(TerraformCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure the Flex Consumption function app accepts HTTPS only",
            id="CKV_SKYVAULT_1",
            categories=(CheckCategories.NETWORKING,),
            supported_resources=TERRAFORM_APP,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        # The provider's default is false.
        self.evaluated_keys = ["https_only"]
        return CheckResult.PASSED if lib.tf_value(conf, "https_only") is True else CheckResult.FAILED


class FunctionAppMinimumTls(TerraformCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure the Flex Consumption function app requires TLS 1.2 or later",
            id="CKV_SKYVAULT_2",
            categories=(CheckCategories.NETWORKING,),
            supported_resources=TERRAFORM_APP,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        # Left out, the provider sends its default, 1.2.
        self.evaluated_keys = ["site_config/[0]/minimum_tls_version"]
        version = lib.tf_value(lib.tf_block(conf, "site_config"), "minimum_tls_version", "1.2")
        return CheckResult.PASSED if str(version) in ("1.2", "1.3") else CheckResult.FAILED


# ---- CKV_SKYVAULT_3: runtime (the code is built and tested for Python 3.11) ----

RUNTIME_CHECK = {
    "name": "Ensure the Flex Consumption function app runs Python 3.11",
    "id": "CKV_SKYVAULT_3",
    "categories": (CheckCategories.GENERAL_SECURITY,),
}


def _runtime_problems(name: Any, version: Any) -> list[str]:
    runtime = (str(name).lower(), str(version))
    return [] if runtime == RUNTIME else [f"runtime is {name} {version}, not {' '.join(RUNTIME)}"]


class FunctionAppRuntimeTerraform(TerraformCheck):
    def __init__(self) -> None:
        super().__init__(**RUNTIME_CHECK, supported_resources=TERRAFORM_APP)

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["runtime_name", "runtime_version"]
        runtime = lib.tf_value(conf, "runtime_name"), lib.tf_value(conf, "runtime_version")
        return _result(self, _runtime_problems(*runtime))


class FunctionAppRuntimeBicep(BicepCheck):
    def __init__(self) -> None:
        super().__init__(**RUNTIME_CHECK, supported_resources=BICEP_SITE)

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        app = _bicep_function_app(conf)
        if app is None:
            return CheckResult.UNKNOWN
        self.evaluated_keys = ["properties/functionAppConfig/runtime"]
        runtime = lib.dig(app, "properties", "functionAppConfig", "runtime")
        if not isinstance(runtime, dict):
            return _result(self, ["no functionAppConfig.runtime: not a Flex Consumption app"])
        return _result(self, _runtime_problems(runtime.get("name"), runtime.get("version")))


# ---- CKV_SKYVAULT_4: the deployment package is fetched with the user-assigned identity ----

DEPLOYMENT_STORAGE_CHECK = {
    "name": "Ensure the function app's deployment storage is reached with its user-assigned identity, not a key",
    "id": "CKV_SKYVAULT_4",
    "categories": (CheckCategories.IAM,),
}


def _deployment_auth_problems(auth_type: Any, identity_id: Any, secret_field: str, secret: Any) -> list[str]:
    problems = []
    if auth_type != "UserAssignedIdentity":
        problems.append(f"deployment storage authentication is {auth_type}, not UserAssignedIdentity")
    if not identity_id:
        problems.append("no user-assigned identity named for the deployment storage")
    if secret:
        problems.append(f"{secret_field} is set")
    return problems


class DeploymentStorageIdentityTerraform(TerraformCheck):
    def __init__(self) -> None:
        super().__init__(**DEPLOYMENT_STORAGE_CHECK, supported_resources=TERRAFORM_APP)

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = [
            "storage_authentication_type", "storage_user_assigned_identity_id", "storage_access_key",
        ]
        return _result(self, _deployment_auth_problems(
            lib.tf_value(conf, "storage_authentication_type"),
            lib.tf_value(conf, "storage_user_assigned_identity_id"),
            "storage_access_key",
            lib.tf_value(conf, "storage_access_key"),
        ))


class DeploymentStorageIdentityBicep(BicepCheck):
    def __init__(self) -> None:
        super().__init__(**DEPLOYMENT_STORAGE_CHECK, supported_resources=BICEP_SITE)

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        app = _bicep_function_app(conf)
        if app is None:
            return CheckResult.UNKNOWN
        self.evaluated_keys = ["properties/functionAppConfig/deployment/storage/authentication"]
        auth = lib.dig(app, "properties", "functionAppConfig", "deployment", "storage", "authentication")
        if not isinstance(auth, dict):
            return _result(self, ["no functionAppConfig.deployment.storage.authentication"])
        return _result(self, _deployment_auth_problems(
            auth.get("type"),
            auth.get("userAssignedIdentityResourceId"),
            "storageAccountConnectionStringName",
            auth.get("storageAccountConnectionStringName"),
        ))


# ---- CKV_SKYVAULT_5: no app setting or connection string holds a key ----

SETTINGS_CHECK = {
    "name": "Ensure no app setting or connection string of the function app holds a key or SAS",
    "id": "CKV_SKYVAULT_5",
    "categories": (CheckCategories.SECRETS,),
}


class AppSettingsKeylessTerraform(TerraformCheck):
    def __init__(self) -> None:
        super().__init__(**SETTINGS_CHECK, supported_resources=TERRAFORM_APP)

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["app_settings", "connection_string"]
        settings = lib.tf_value(conf, "app_settings", {})
        if not isinstance(settings, dict):
            return _result(self, [f"app_settings cannot be read statically: {settings}"])
        problems = lib.offending_settings(settings.items())
        problems += [
            f"connection_string {lib.tf_value(block, 'name')}"
            for block in conf.get("connection_string") or []
            if isinstance(block, dict)
        ]
        return _result(self, problems)


class AppSettingsKeylessBicep(BicepCheck):
    def __init__(self) -> None:
        super().__init__(
            **SETTINGS_CHECK,
            supported_resources=(*BICEP_SITE, "Microsoft.Web/sites/config"),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        body = lib.bicep_body(conf)
        if self.entity_type == "Microsoft.Web/sites/config":
            # named 'appsettings' (with parent:) or '<site>/appsettings'
            section = lib.expression_text(body.get("name")).lower().rsplit("/", 1)[-1]
            if section not in ("appsettings", "connectionstrings"):
                return CheckResult.UNKNOWN
            self.evaluated_keys = ["properties"]
            if section == "connectionstrings":
                return _result(self, ["connection strings are set"] if body.get("properties") else [])
            settings, connection_strings = body.get("properties"), None
        else:
            self.evaluated_keys = ["properties/siteConfig/appSettings", "properties/siteConfig/connectionStrings"]
            site_config = lib.dig(body, "properties", "siteConfig") or {}
            settings, connection_strings = site_config.get("appSettings"), site_config.get("connectionStrings")
        problems = []
        if settings is not None:
            pairs = lib.bicep_name_value_pairs(settings, lib.bicep_variables(self))
            if pairs is None:
                problems.append("app settings cannot be read statically: write a literal or a loop over a var")
            else:
                problems += lib.offending_settings(pairs)
        if connection_strings:
            problems.append("connection strings are set")
        return _result(self, problems)


check_https_only = FunctionAppHttpsOnly()
check_minimum_tls = FunctionAppMinimumTls()
check_runtime_terraform = FunctionAppRuntimeTerraform()
check_runtime_bicep = FunctionAppRuntimeBicep()
check_deployment_storage_terraform = DeploymentStorageIdentityTerraform()
check_deployment_storage_bicep = DeploymentStorageIdentityBicep()
check_settings_terraform = AppSettingsKeylessTerraform()
check_settings_bicep = AppSettingsKeylessBicep()
