"""Read the Terraform tree (infra/terraform) with python-hcl2 and report what it provisions.

python-hcl2 8.x keeps string literals with their quotes ('"ingest"'), wraps expressions in
"${...}", keeps quotes on block labels and quoted keys, and adds "__is_block__" /
"__comments__" markers. `normalise` undoes all of that, so callers see plain values:
literals as Python values, expressions and templates as their text.

Only the small expression subset the canonical locals use is evaluated (literal lists,
`local.x`, `toset(...)`, `concat(...)` and `[for v in LIST : "template ${v}"]`); anything
else is refused loudly rather than guessed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2

TERRAFORM_DIR = Path(__file__).resolve().parents[2] / "infra" / "terraform"

FUNCTION_APP_TYPE = "azurerm_function_app_flex_consumption"

# The azurerm provider injects AzureWebJobsStorage as a key-less connection string even with
# identity-based deployment storage (terraform-provider-azurerm #29149, #30732); functionapp.tf
# overrides it with an empty value, which the host treats as unset. It is a provider
# workaround, not an app setting of the spec, so provisioned() leaves it out and
# raw_app_settings() shows it.
PROVIDER_WORKAROUND_APP_SETTINGS = {"AzureWebJobsStorage": ""}

_MARKERS = {"__is_block__", "__comments__", "__inline_comments__"}


class TerraformParseError(ValueError):
    """A .tf file that python-hcl2 cannot parse; the message names the file."""


def parse(path: str | Path) -> dict:
    """Parse one .tf file; raise TerraformParseError naming the file when it does not parse."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TerraformParseError(f"{path}: cannot be read: {exc}") from exc
    try:
        return hcl2.loads(text)
    except Exception as exc:  # lark raises several unrelated exception types
        raise TerraformParseError(f"{path}: not valid HCL: {exc}") from exc


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def normalise(value: Any) -> Any:
    """Strip python-hcl2's quoting and markers, recursively."""
    if isinstance(value, dict):
        return {_unquote(k): normalise(v) for k, v in value.items() if k not in _MARKERS}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


def load_tree(directory: str | Path | None = None) -> dict[str, dict]:
    """Parse every .tf file of the directory: {file name: normalised parse}."""
    directory = Path(directory or TERRAFORM_DIR)
    files = sorted(directory.glob("*.tf"))
    if not files:
        raise TerraformParseError(f"{directory}: no .tf files")
    return {f.name: normalise(parse(f)) for f in files}


class Config:
    """The merged configuration of a Terraform directory."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory or TERRAFORM_DIR)
        self.files = load_tree(self.directory)
        self.locals: dict[str, Any] = {}
        self.variables: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.resources: dict[str, dict[str, dict]] = {}
        self.terraform: list[dict] = []
        self.providers: dict[str, list[dict]] = {}
        for name, tree in self.files.items():
            for block in tree.get("locals", []):
                for key, value in block.items():
                    if key in self.locals:
                        raise ValueError(f"{name}: local.{key} defined twice")
                    self.locals[key] = value
            for block in tree.get("variable", []):
                self.variables.update(block)
            for block in tree.get("output", []):
                self.outputs.update(block)
            for block in tree.get("resource", []):
                for rtype, by_name in block.items():
                    self.resources.setdefault(rtype, {}).update(by_name)
            self.terraform.extend(tree.get("terraform", []))
            for block in tree.get("provider", []):
                for pname, body in block.items():
                    self.providers.setdefault(pname, []).append(body)

    def resource(self, rtype: str, name: str) -> dict:
        try:
            return self.resources[rtype][name]
        except KeyError:
            raise KeyError(f"no resource {rtype}.{name} in {self.directory}") from None

    def only_resource(self, rtype: str) -> tuple[str, dict]:
        found = self.resources.get(rtype, {})
        if len(found) != 1:
            raise ValueError(f"expected exactly one {rtype} in {self.directory}, found {sorted(found)}")
        return next(iter(found.items()))

    # --- the expression subset -------------------------------------------------------

    def evaluate(self, value: Any) -> Any:
        """Evaluate a normalised value: literals as they are, "${...}" via the subset."""
        if isinstance(value, list):
            return [self.evaluate(v) for v in value]
        if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
            return self._expr(value[2:-1].strip())
        return value

    def _expr(self, text: str) -> Any:
        text = text.strip()
        m = re.fullmatch(r"local\.([A-Za-z_][\w-]*)", text)
        if m:
            if m.group(1) not in self.locals:
                raise KeyError(f"local.{m.group(1)} is not defined")
            return self.evaluate(self.locals[m.group(1)])
        m = re.fullmatch(r"(toset|concat)\((.*)\)", text, re.S)
        if m:
            args = [self._expr(a) for a in _split_args(m.group(2))]
            if m.group(1) == "toset":
                (only,) = args
                return set(only)
            return [item for arg in args for item in arg]
        m = re.fullmatch(r'\[\s*for\s+(\w+)\s+in\s+(.+?)\s*:\s*"([^"]*)"\s*\]', text, re.S)
        if m:
            var, source, template = m.groups()
            placeholder = "${" + var + "}"
            if template.replace(placeholder, "").count("${"):
                raise ValueError(f"template too complex for this loader: {template!r}")
            return [template.replace(placeholder, str(item)) for item in self._expr(source)]
        if text.startswith("[") and text.endswith("]"):
            return [_unquote(a) for a in _split_args(text[1:-1])]
        raise ValueError(f"expression outside the subset this loader evaluates: {text!r}")


def _split_args(text: str) -> list[str]:
    """Split a comma-separated argument list at depth 0 (ignores commas in brackets/strings)."""
    parts, depth, current, in_string = [], 0, [], False
    for ch in text:
        if ch == '"':
            in_string = not in_string
        elif not in_string and ch in "([{":
            depth += 1
        elif not in_string and ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0 and not in_string:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _as_setting_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        raise ValueError("app setting with a null value")
    return str(value)


def raw_app_settings(config: Config | None = None) -> dict[str, str]:
    """Every app setting the function app resource deploys, provider workaround included.

    APPLICATIONINSIGHTS_CONNECTION_STRING is set through site_config (the provider owns that
    app setting and writes it from there), so it is reported from site_config.
    """
    config = config or Config()
    _, app = config.only_resource(FUNCTION_APP_TYPE)
    settings = app.get("app_settings")
    if not isinstance(settings, dict):
        raise ValueError(f"{FUNCTION_APP_TYPE}.app_settings must be a literal map, got {settings!r}")
    result = {name: _as_setting_string(value) for name, value in settings.items()}
    site_config = app.get("site_config") or [{}]
    conn = site_config[0].get("application_insights_connection_string")
    if conn is not None:
        if "APPLICATIONINSIGHTS_CONNECTION_STRING" in result:
            raise ValueError("APPLICATIONINSIGHTS_CONNECTION_STRING set in both app_settings and site_config")
        result["APPLICATIONINSIGHTS_CONNECTION_STRING"] = _as_setting_string(conn)
    return result


def provisioned(directory: str | Path | None = None) -> dict:
    """What the Terraform tree provisions, read from its canonical locals and resources."""
    config = Config(directory)

    queue_resource = config.resource("azurerm_storage_queue", "primary")
    queues = config.evaluate(queue_resource["for_each"])

    container_resource = config.resource("azurerm_storage_container", "primary")
    blob_containers = config.evaluate(container_resource["for_each"])

    deployment_container = config.evaluate(config.locals["deployment_container_name"])
    deployment_resource = config.resource("azurerm_storage_container", "deployment")
    if config.evaluate(deployment_resource["name"]) != deployment_container:
        raise ValueError("azurerm_storage_container.deployment does not use local.deployment_container_name")

    cosmos_containers = {}
    for name, spec in config.locals["cosmos_containers"].items():
        cosmos_containers[name] = {
            "paths": list(spec["paths"]),
            "kind": spec["kind"],
            "default_ttl": spec.get("default_ttl"),
        }

    app_settings = {
        k: v
        for k, v in raw_app_settings(config).items()
        if PROVIDER_WORKAROUND_APP_SETTINGS.get(k, object()) != v
    }

    _, app = config.only_resource(FUNCTION_APP_TYPE)
    return {
        "queues": set(queues),
        "blob_containers": set(blob_containers),
        "deployment_container": deployment_container,
        "cosmos_database": config.evaluate(config.locals["cosmos_database_name"]),
        "cosmos_containers": cosmos_containers,
        "app_settings": app_settings,
        "runtime": (app["runtime_name"], app["runtime_version"]),
        "variables": set(config.variables),
        "outputs": set(config.outputs),
    }
