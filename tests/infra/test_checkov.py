"""checkov's checks and ours (infra/checkov/checks) on both deployment trees, offline.

Every security requirement of the spec is held by one check per framework: checkov's own where it
has one that works, a CKV_SKYVAULT check where it has none (Flex Consumption, Bicep storage) or reads
the wrong attribute (azurerm 4.x). The trees must pass them all; broken copies must make exactly the
responsible checks fail, on the resource broken, so a check that silently stops loading or matching
fails here. checkov runs from its own venv (.venv-checkov), once per tree or copy.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKS_DIR = ROOT / "infra" / "checkov" / "checks"
TERRAFORM_DIR = ROOT / "infra" / "terraform"
BICEP_DIR = ROOT / "infra" / "bicep"

pytestmark = pytest.mark.skipif(
    not CHECKOV.exists(),
    reason=f"{CHECKOV} is absent: checkov needs a venv of its own (its bc-python-hcl2 clashes with python-hcl2): "
    "python3 -m venv .venv-checkov && .venv-checkov/bin/pip install -r infra/checkov/requirements.txt",
)

TF_APP = "azurerm_function_app_flex_consumption.main"
TF_PRIMARY = "azurerm_storage_account.primary"
TF_SECONDARY = "azurerm_storage_account.secondary"
TF_COSMOS = "azurerm_cosmosdb_account.main"
BICEP_APP = "Microsoft.Web/sites.app"
BICEP_STORAGE = "Microsoft.Storage/storageAccounts.account"
BICEP_COSMOS = "Microsoft.DocumentDB/databaseAccounts.account"

# requirement: (resource, Terraform check, Bicep check)
RESPONSIBLE = {
    "HTTPS only": ("app", "CKV_SKYVAULT_1", "CKV_AZURE_70"),
    "TLS 1.2": ("app", "CKV_SKYVAULT_2", "CKV_AZURE_145"),
    "runtime python 3.11": ("app", "CKV_SKYVAULT_3", "CKV_SKYVAULT_3"),
    "deployment storage by identity": ("app", "CKV_SKYVAULT_4", "CKV_SKYVAULT_4"),
    "no key in app settings": ("app", "CKV_SKYVAULT_5", "CKV_SKYVAULT_5"),
    "shared key off": ("storage", "CKV2_AZURE_40", "CKV_SKYVAULT_6"),
    "no public blobs": ("storage", "CKV_AZURE_190", "CKV_SKYVAULT_7"),
    "HTTPS only (storage)": ("storage", "CKV_SKYVAULT_8", "CKV_AZURE_3"),
    "TLS 1.2 (storage)": ("storage", "CKV_AZURE_44", "CKV_AZURE_44"),
    "local auth off": ("cosmos", "CKV_AZURE_140", "CKV_AZURE_140"),
    "key-based metadata writes off": ("cosmos", "CKV_AZURE_132", "CKV_AZURE_132"),
}
TREE_RESOURCES = {
    "terraform": {"app": [TF_APP], "storage": [TF_PRIMARY, TF_SECONDARY], "cosmos": [TF_COSMOS]},
    # the storage module is one resource for checkov, whichever account main.bicep makes with it
    "bicep": {"app": [BICEP_APP], "storage": [BICEP_STORAGE], "cosmos": [BICEP_COSMOS]},
}


def run_checkov(directory: Path, framework: str, *extra: str) -> dict:
    """checkov's JSON report of one directory (rc 1 just means some check failed)."""
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(directory), "--framework", framework, "--external-checks-dir", str(CHECKS_DIR),
         "--skip-download", "-o", "json", *extra],
        capture_output=True, text=True, timeout=180, cwd=directory,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    for error in ("Cannot load external check", "Failed to run check"):
        assert error not in proc.stderr, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    return report


def results(report: dict, kind: str) -> dict[tuple[str, str], dict]:
    """(check id, resource) -> record, for kind passed_checks or failed_checks."""
    return {(r["check_id"], r["resource"]): r for r in report["results"].get(kind, [])}


def details(report: dict, check_id: str, resource: str) -> list[str]:
    return results(report, "failed_checks")[(check_id, resource)]["details"]


def edit_resource(path: Path, address: str, changes: dict[str, str | None], append: str = "") -> None:
    """Set attributes of one resource of a copied .tf file (None drops one), append lines to it.

    Each attribute must be in the block exactly once, so a changed tree fails here instead of
    making a negative test pass vacuously.
    """
    kind, name = address.split(".")
    text = path.read_text()
    start = text.index(f'resource "{kind}" "{name}" {{')
    end = text.index("\n}\n", start)
    block = text[start:end]
    for attribute, value in changes.items():
        if value is None:
            block, count = re.subn(rf"^[ \t]*{attribute}\s*=.*\n", "", block, flags=re.M)
        else:
            block, count = re.subn(rf"^([ \t]*){attribute}\s*=.*$",
                                   lambda m: f"{m.group(1)}{attribute} = {value}", block, flags=re.M)
        assert count == 1, f"{attribute} is not in {address} of {path.name} exactly once"
    path.write_text(text[:start] + block + append + text[end:])


# ---- the trees ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def terraform_report() -> dict:
    return run_checkov(TERRAFORM_DIR, "terraform")


@pytest.fixture(scope="module")
def bicep_report() -> dict:
    return run_checkov(BICEP_DIR, "bicep")


def responsible_checks(framework: str) -> set[tuple[str, str]]:
    """(check id, resource) of every requirement's check on every resource of the tree it covers."""
    column = 1 if framework == "terraform" else 2
    return {
        (entry[column], resource)
        for entry in RESPONSIBLE.values()
        for resource in TREE_RESOURCES[framework][entry[0]]
    }


def test_terraform_tree_passes_every_check(terraform_report):
    assert results(terraform_report, "failed_checks") == {}
    assert responsible_checks("terraform") - set(results(terraform_report, "passed_checks")) == set()


def test_bicep_tree_passes_every_check(bicep_report):
    assert results(bicep_report, "failed_checks") == {}
    assert responsible_checks("bicep") - set(results(bicep_report, "passed_checks")) == set()


def test_every_check_of_ours_is_in_the_table(terraform_report, bicep_report):
    """A CKV_SKYVAULT check that RESPONSIBLE leaves out would go untested on the trees."""
    reported = {
        check for report in (terraform_report, bicep_report)
        for check, _ in results(report, "passed_checks") if check.startswith("CKV_SKYVAULT_")
    }
    in_table = {check for _, *checks in RESPONSIBLE.values() for check in checks if check.startswith("CKV_SKYVAULT_")}
    assert reported == in_table == {f"CKV_SKYVAULT_{n}" for n in range(1, 9)}


# ---- broken Terraform copies ----------------------------------------------------------------


def terraform_copy(tmp_path_factory, name: str) -> Path:
    copy = tmp_path_factory.mktemp(name) / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    return copy


@pytest.fixture(scope="module")
def terraform_broken(tmp_path_factory) -> dict:
    """One violation per responsible check, each on its own resource or check id."""
    copy = terraform_copy(tmp_path_factory, "tf-broken")
    edit_resource(copy / "functionapp.tf", TF_APP, {
        "https_only": "false",
        "minimum_tls_version": '"1.1"',
        "runtime_name": '"dotnet-isolated"',
        "runtime_version": '"8.0"',
        "storage_authentication_type": '"StorageAccountConnectionString"',
        "storage_user_assigned_identity_id": None,
        "ReplicationCopyMode": '"server"\n'
        "    X_CONNECTION_STRING = azurerm_storage_account.primary.primary_connection_string",
    }, append="\n  storage_access_key = azurerm_storage_account.primary.primary_access_key")
    edit_resource(copy / "storage.tf", TF_PRIMARY, {
        "shared_access_key_enabled": "true",
        "allow_nested_items_to_be_public": "true",
    })
    edit_resource(copy / "storage.tf", TF_SECONDARY, {
        "https_traffic_only_enabled": "false",
        "min_tls_version": '"TLS1_0"',
    })
    edit_resource(copy / "cosmos.tf", TF_COSMOS, {
        "local_authentication_disabled": "false",
        "access_key_metadata_writes_enabled": "true",
    })
    return run_checkov(copy, "terraform")


def test_terraform_violations_fail_exactly_the_responsible_checks(terraform_broken):
    expected = {
        ("CKV_SKYVAULT_1", TF_APP),
        ("CKV_SKYVAULT_2", TF_APP),
        ("CKV_SKYVAULT_3", TF_APP),
        ("CKV_SKYVAULT_4", TF_APP),
        ("CKV_SKYVAULT_5", TF_APP),
        ("CKV2_AZURE_40", TF_PRIMARY),
        # with shared keys on, checkov also wants a SAS expiration policy
        ("CKV2_AZURE_41", TF_PRIMARY),
        ("CKV_AZURE_190", TF_PRIMARY),
        ("CKV2_AZURE_47", TF_PRIMARY),
        ("CKV_SKYVAULT_8", TF_SECONDARY),
        ("CKV_AZURE_44", TF_SECONDARY),
        ("CKV_AZURE_140", TF_COSMOS),
        ("CKV_AZURE_132", TF_COSMOS),
    }
    assert set(results(terraform_broken, "failed_checks")) == expected
    assert details(terraform_broken, "CKV_SKYVAULT_3", TF_APP) == ["runtime is dotnet-isolated 8.0, not python 3.11"]
    assert details(terraform_broken, "CKV_SKYVAULT_4", TF_APP) == [
        "deployment storage authentication is StorageAccountConnectionString, not UserAssignedIdentity",
        "no user-assigned identity named for the deployment storage",
        "storage_access_key is set",
    ]
    assert details(terraform_broken, "CKV_SKYVAULT_5", TF_APP) == ["X_CONNECTION_STRING (name)"]


def test_checkovs_https_check_misses_azurerm_4_so_ours_holds_it(terraform_broken):
    # CKV_AZURE_3 reads enable_https_traffic_only, the azurerm 3.x name: if a checkov release
    # fixes it, CKV_SKYVAULT_8 is a duplicate and can go.
    assert ("CKV_AZURE_3", TF_SECONDARY) in results(terraform_broken, "passed_checks")


@pytest.fixture(scope="module")
def terraform_variants(tmp_path_factory) -> dict:
    """Other shapes of the app's violations: defaults left out, keys hidden in values."""
    copy = terraform_copy(tmp_path_factory, "tf-variants")
    edit_resource(copy / "functionapp.tf", TF_APP, {
        "https_only": None,
        "minimum_tls_version": None,
        "runtime_version": '"3.10"',
        "storage_authentication_type": '"SystemAssignedIdentity"',
        "ReplicationCopyMode": "\n".join([
            '"server"',
            '    AzureWebJobsStorage__blob = "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc"',
            '    UploadUrl = "https://x.blob.core.windows.net/c?sv=2022-11-02&sig=abc"',
            "    CosmosMaster = azurerm_cosmosdb_account.main.primary_key",
            "    QueueSas = data.azurerm_storage_account_sas.queue.sas",
            '    Bus = "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b"',
            '    WebhookKey = "literal"',
        ]),
    }, append="\n".join([
        "",
        "  connection_string {",
        '    name  = "Index"',
        '    type  = "Custom"',
        "    value = azurerm_cosmosdb_account.main.primary_sql_connection_string",
        "  }",
    ]))
    return run_checkov(copy, "terraform")


def test_terraform_variants_fail_our_checks_with_reasons(terraform_variants):
    failed = set(results(terraform_variants, "failed_checks"))
    assert failed == {(f"CKV_SKYVAULT_{n}", TF_APP) for n in (1, 3, 4, 5)}
    # minimum_tls_version left out is the provider's default, 1.2
    assert ("CKV_SKYVAULT_2", TF_APP) in results(terraform_variants, "passed_checks")
    assert details(terraform_variants, "CKV_SKYVAULT_3", TF_APP) == ["runtime is python 3.10, not python 3.11"]
    assert details(terraform_variants, "CKV_SKYVAULT_4", TF_APP) == [
        "deployment storage authentication is SystemAssignedIdentity, not UserAssignedIdentity",
    ]
    reasons = details(terraform_variants, "CKV_SKYVAULT_5", TF_APP)
    assert sorted(reason.split(" ", 1)[0] for reason in reasons) == [
        "AzureWebJobsStorage__blob", "Bus", "CosmosMaster", "QueueSas", "UploadUrl", "WebhookKey", "connection_string",
    ], reasons
    assert "WebhookKey (name)" in reasons and "connection_string Index" in reasons


# ---- a small broken Bicep file --------------------------------------------------------------

# checkov's Bicep runner drops a check's details, so here each violation has a resource of its own.
BROKEN_BICEP = """
param location string = resourceGroup().location
param opaqueSettings array

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: 'cosmos-bad'
  location: location
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    locations: [ { locationName: location, failoverPriority: 0 } ]
    disableLocalAuth: false
    disableKeyBasedMetadataWriteAccess: false
  }
}

resource bad 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stbad'
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_0'
    supportsHttpsTrafficOnly: false
    allowBlobPublicAccess: true
    allowSharedKeyAccess: true
  }
}

// Left out, Azure allows shared keys.
resource defaults 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stdefaults'
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-bad'
  location: location
  kind: 'functionapp,linux'
  properties: {
    httpsOnly: false
    siteConfig: {
      minTlsVersion: '1.0'
      appSettings: [
        {
          name: 'AzureWebJobsStorage'
          value: 'DefaultEndpointsProtocol=https;AccountName=${bad.name};AccountKey=${bad.listKeys().keys[0].value}'
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${bad.properties.primaryEndpoints.blob}app-package'
          authentication: {
            type: 'StorageAccountConnectionString'
            storageAccountConnectionStringName: 'AzureWebJobsStorage'
          }
        }
      }
      runtime: { name: 'dotnet-isolated', version: '8.0' }
    }
  }
}

var keyedSettings = {
  CosmosDb__credential: 'managedidentity'
  Index: cosmos.listKeys().primaryMasterKey
}

resource looped 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-looped'
  location: location
  kind: 'functionapp,linux'
  properties: {
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [for setting in items(keyedSettings): { name: setting.key, value: setting.value }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: 'https://x.blob.core.windows.net/app-package'
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: 'id' }
        }
      }
      runtime: { name: 'python', version: '3.10' }
    }
  }
}

var keylessSettings = {
  CosmosDb__credential: 'managedidentity'
  APPLICATIONINSIGHTS_CONNECTION_STRING: 'InstrumentationKey=00000000-0000-0000-0000-000000000000'
}

// Passes: the same loop over settings without a key.
resource clean 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-clean'
  location: location
  kind: 'functionapp,linux'
  properties: {
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [for setting in items(keylessSettings): { name: setting.key, value: setting.value }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: 'https://x.blob.core.windows.net/app-package'
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: 'id' }
        }
      }
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: clean
  name: 'appsettings'
  properties: {
    Storage__queueServiceUri: 'https://x.queue.core.windows.net/'
    QueueSas: bad.listAccountSas('2023-05-01', { signedServices: 'q' }).accountSasToken
  }
}

resource connections 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: clean
  name: 'connectionstrings'
  properties: {
    Index: { value: 'AccountEndpoint=https://x.documents.azure.com/', type: 'Custom' }
  }
}

// Web apps, not function apps: of ours only the settings check applies.
resource named 'Microsoft.Web/sites@2024-04-01' = {
  name: 'app-named'
  location: location
  kind: 'app'
  properties: {
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [ { name: 'WEBHOOK_KEY', value: 'literal' } ]
    }
  }
}

// ... and settings that cannot be read statically fail closed.
resource opaque 'Microsoft.Web/sites@2024-04-01' = {
  name: 'app-opaque'
  location: location
  kind: 'app'
  properties: {
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: opaqueSettings
    }
  }
}

// A function app, but not on Flex Consumption (no functionAppConfig).
resource connected 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-connected'
  location: location
  kind: 'functionapp'
  properties: {
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      connectionStrings: [
        { name: 'Index', connectionString: 'AccountEndpoint=https://x.documents.azure.com/', type: 'Custom' }
      ]
    }
  }
}
"""


@pytest.fixture(scope="module")
def bicep_broken(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("bicep-broken")
    (folder / "main.bicep").write_text(BROKEN_BICEP)
    # only the checks under test: checkov's others (zone redundancy, ...) would fail this sketch too
    checks = sorted({bicep for _, _, bicep in RESPONSIBLE.values()} | {"CKV_AZURE_14", "CKV_AZURE_15"})
    return run_checkov(folder, "bicep", "--check", ",".join(checks))


def test_bicep_violations_fail_exactly_the_responsible_checks(bicep_broken):
    site = "Microsoft.Web/sites.{}".format
    bad, defaults = "Microsoft.Storage/storageAccounts.bad", "Microsoft.Storage/storageAccounts.defaults"
    cosmos = "Microsoft.DocumentDB/databaseAccounts.cosmos"
    settings, connections = "Microsoft.Web/sites/config.settings", "Microsoft.Web/sites/config.connections"
    assert set(results(bicep_broken, "failed_checks")) == {
        ("CKV_AZURE_70", site("app")), ("CKV_AZURE_14", site("app")),
        ("CKV_AZURE_145", site("app")), ("CKV_AZURE_15", site("app")),
        ("CKV_SKYVAULT_3", site("app")), ("CKV_SKYVAULT_4", site("app")), ("CKV_SKYVAULT_5", site("app")),
        ("CKV_SKYVAULT_3", site("looped")), ("CKV_SKYVAULT_5", site("looped")),
        ("CKV_SKYVAULT_5", settings), ("CKV_SKYVAULT_5", connections),
        ("CKV_SKYVAULT_3", site("connected")), ("CKV_SKYVAULT_4", site("connected")),
        ("CKV_SKYVAULT_5", site("connected")),
        ("CKV_SKYVAULT_5", site("named")), ("CKV_SKYVAULT_5", site("opaque")),
        ("CKV_SKYVAULT_6", bad), ("CKV_SKYVAULT_7", bad), ("CKV_AZURE_3", bad), ("CKV_AZURE_44", bad),
        ("CKV_SKYVAULT_6", defaults), ("CKV_SKYVAULT_7", defaults),
        ("CKV_AZURE_140", cosmos), ("CKV_AZURE_132", cosmos),
    }
    passed = set(results(bicep_broken, "passed_checks"))
    assert {(f"CKV_SKYVAULT_{n}", site("clean")) for n in (3, 4, 5)} <= passed
    assert ("CKV_SKYVAULT_4", site("looped")) in passed
    web_apps = {(f"CKV_SKYVAULT_{n}", site(name)) for n in (3, 4) for name in ("named", "opaque")}
    assert web_apps & (passed | set(results(bicep_broken, "failed_checks"))) == set()
