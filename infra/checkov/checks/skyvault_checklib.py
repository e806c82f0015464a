"""Helpers shared by Skyvault's custom checkov checks (no check is defined here).

checkov execs every .py file of the external checks folder and puts the folder on sys.path, so the
check modules import this one as ``skyvault_checklib``.

Values reach the checks in two shapes:
- Terraform: most attributes are one-element lists (a map such as app_settings is a one-element
  list of a dict of plain values); references that checkov could not resolve stay strings such as
  ``"azurerm_storage_account.primary.primary_access_key"`` or ``"${var.x}"``.
- Bicep (pycep): literals are plain values, a reference to a parameter or variable is its bare name
  (``"identityClientId"``), and other expressions are nested dicts (``{"operator": {...}}``,
  ``{"function": {...}}``) whose string leaves hold the names (``"listKeys"``, ``"storage"``, ...).
``expression_text`` flattens either shape into one string that the key patterns are matched against.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from checkov.bicep.parser import Parser

# Setting names that say "this is a key / connection string".
KEY_NAME_SUFFIXES = ("connectionstring", "connection_string", "key")
# Allowed despite its name: the Application Insights connection string carries no secret (the
# instrumentation key is an id, and local auth is off: telemetry goes with Entra tokens).
KEY_NAME_EXCEPTIONS = frozenset({"applicationinsights_connection_string"})

# What a key or SAS looks like in a value, literal or as a reference.
KEY_VALUE_PATTERNS = (
    # literal connection strings and SAS tokens
    re.compile(r"AccountKey=", re.I),
    re.compile(r"SharedAccessKey=", re.I),
    re.compile(r"SharedAccessSignature=", re.I),
    re.compile(r"(^|[?&;\s])sig=", re.I),
    # ARM / Bicep functions that return keys or SAS: listKeys(), listAccountSas(), ...
    re.compile(r"\blist(Keys|AccountSas|ServiceSas|ConnectionStrings)\b", re.I),
    # Terraform key attributes: primary_access_key, primary_key, secondary_key,
    # primary_connection_string, primary_blob_connection_string, default_primary_key, ...
    re.compile(r"(primary|secondary)\w*_(access_key|key|connection_string)\b", re.I),
    # Bicep/ARM listKeys() results: primaryMasterKey, secondaryReadonlyMasterKey, primaryKey, ...
    re.compile(r"\b(primary|secondary)\w*Key\b"),
    # Terraform SAS data sources
    re.compile(r"\bazurerm_storage_account(_blob_container)?_sas\b", re.I),
)


def tf_value(conf: dict[str, Any], key: str, default: Any = None) -> Any:
    """A Terraform attribute without checkov's one-element list wrapper."""
    value = conf.get(key, default)
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def tf_block(conf: dict[str, Any], key: str) -> dict[str, Any]:
    """The first (only) nested block ``key`` of a Terraform resource, or {} if it has none."""
    value = conf.get(key)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return {}


def dig(conf: Any, *path: str) -> Any:
    """conf[path[0]][path[1]]... or None when any step is missing or not a dict."""
    for key in path:
        if not isinstance(conf, dict):
            return None
        conf = conf.get(key)
    return conf


def bicep_body(conf: dict[str, Any]) -> dict[str, Any]:
    """A Bicep resource's body, out of the wrapper pycep puts around ``if (...)`` and ``[for ...]``."""
    while isinstance(conf.get("config"), dict) and ("loop_type" in conf or "condition" in conf):
        conf = conf["config"]
    return conf


def expression_text(value: Any) -> str:
    """Every string / number leaf of a (possibly nested) value, joined by spaces."""
    parts: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str) and not k.startswith("__"):
                    parts.append(k)
                walk(item)
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
        elif v is not None:
            parts.append(str(v))

    walk(value)
    return " ".join(parts)


def _is_key_name(name: str) -> bool:
    lowered = name.strip().lower()
    return lowered not in KEY_NAME_EXCEPTIONS and lowered.endswith(KEY_NAME_SUFFIXES)


def _key_value_pattern(value: Any) -> str | None:
    text = expression_text(value)
    return next((p.pattern for p in KEY_VALUE_PATTERNS if p.search(text)), None)


def offending_settings(settings: Iterable[tuple[Any, Any]]) -> list[str]:
    """The settings that carry a key or connection string, each named with the reason."""
    bad = []
    for name, value in settings:
        name_text = expression_text(name)
        pattern = _key_value_pattern(value)
        if _is_key_name(name_text):
            bad.append(f"{name_text} (name)")
        elif pattern:
            bad.append(f"{name_text} (value matches {pattern})")
    return bad


# ---- Bicep: app settings written as a loop over a variable of the same file ----

_bicep_variables: dict[str, dict[str, Any]] = {}


def bicep_variables(check: Any) -> dict[str, Any]:
    """The ``var`` declarations (name -> value as pycep parses them) of the file a check scans.

    checkov hands a check only the resource, so a loop over a variable is resolved by parsing the
    file again (once per file); BaseCheck.run sets entity_path to 'file:type:name'.
    """
    scanned_file = str(check.entity_path).rsplit(":", 2)[0]
    if scanned_file not in _bicep_variables:
        template, _ = Parser().parse(Path(scanned_file))
        _bicep_variables[scanned_file] = {
            name: var["value"]
            for name, var in ((template or {}).get("variables") or {}).items()
            if isinstance(var, dict) and "value" in var
        }
    return _bicep_variables[scanned_file]


def _accessor(expression: Any) -> tuple[Any, Any] | None:
    """(item, property) of a Bicep ``item.property`` expression, else None."""
    operator = dig(expression, "operator")
    if isinstance(operator, dict) and operator.get("type") == "property_accessor":
        operands = operator.get("operands") or {}
        return operands.get("operand_1"), operands.get("operand_2")
    return None


def bicep_name_value_pairs(value: Any, variables: dict[str, Any]) -> list[tuple[Any, Any]] | None:
    """(name, value) pairs of a Bicep app-settings value, or None if they cannot be enumerated.

    Understood: a literal list of {name, value} (siteConfig.appSettings); a literal object of
    name: value (the properties of a sites/config 'appsettings'); the name of a variable holding
    either; and ``[for s in items(objectVar): {name: s.key, value: s.value}]``. Anything else (a
    parameter, a module output, union(), another loop, ...) is None, and the caller fails closed.
    """
    if isinstance(value, str):
        value = variables.get(value)
    if isinstance(value, list):
        if not all(isinstance(item, dict) and "name" in item for item in value):
            return None
        return [(item["name"], item.get("value")) for item in value]
    if not isinstance(value, dict) or "operator" in value or "function" in value:
        return None
    if "loop_type" not in value:
        return list(value.items())
    loop = value.get("loop_type") or {}
    detail = loop.get("detail") or {}
    body = value.get("config") or {}
    item = detail.get("item_name")
    if loop.get("type") == "object":
        # checkov's graph may already have put a value in place of the name
        source = detail.get("object_name")
        source = variables.get(source) if isinstance(source, str) else source
        mapping = _accessor(body.get("name")), _accessor(body.get("value"))
        if isinstance(source, dict) and mapping == ((item, "key"), (item, "value")):
            return list(source.items())
    return None
