"""Read the Bicep tree (infra/bicep) with pycep and report what it provisions.

pycep gives literals as Python values, a reference to a parameter, variable, resource or module as
a `BicepElement` (a str subclass, so it must be told apart from a string literal by type), a
string with interpolations as its text ('https://${name}.azurewebsites.net/api'), and operators
and function calls as one-key dicts ({"operator": ...}, {"function": ...}).

Only the small subset the canonical lists and the app settings use is evaluated: literals,
negative integers, '${identifier}' interpolations, references to variables, loop items and
property paths into them, a module's parameters as main.bicep passes them, `concat(...)`, and
`[for x in LIST: ...]` over resources. Anything else is refused loudly rather than guessed.
Rendering (app settings) differs in one way: what has no value before deployment (a parameter of
main.bicep, a module output, a name built from uniqueString) comes out as "<its name>".
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

from pycep import BicepParser
from pycep.models import BicepElement

BICEP_DIR = Path(__file__).resolve().parents[2] / "infra" / "bicep"
MAIN = "main.bicep"

FUNCTION_APP_TYPE = "Microsoft.Web/sites"
QUEUE_TYPE = "Microsoft.Storage/storageAccounts/queueServices/queues"
CONTAINER_TYPE = "Microsoft.Storage/storageAccounts/blobServices/containers"
COSMOS_DATABASE_TYPE = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases"
COSMOS_CONTAINER_TYPE = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"

_WRAPPER_KEYS = {"condition", "config", "loop_type"}
_parser: BicepParser | None = None


class BicepParseError(ValueError):
    """A .bicep file that pycep cannot parse; the message names the file."""


class Unevaluable(ValueError):
    """An expression outside the subset this loader evaluates; the message names the file."""


def parse(path: str | Path) -> dict:
    """Parse one .bicep file; raise BicepParseError naming the file when it does not parse."""
    global _parser
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BicepParseError(f"{path}: cannot be read: {exc}") from exc
    _parser = _parser or BicepParser()
    try:
        return _parser.parse(text=text)
    except Exception as exc:  # lark raises several unrelated exception types, pycep a ValueError
        raise BicepParseError(f"{path}: not valid Bicep: {exc}") from exc


def load_tree(directory: str | Path | None = None) -> dict[str, dict]:
    """Parse every .bicep file under the directory: {path relative to it: parse}."""
    directory = Path(directory or BICEP_DIR)
    files = sorted(directory.rglob("*.bicep"))
    if not files:
        raise BicepParseError(f"{directory}: no .bicep files")
    return {f.relative_to(directory).as_posix(): parse(f) for f in files}


def is_reference(value: Any) -> bool:
    """True for a bare name (parameter, variable, resource, module), False for a string literal."""
    return isinstance(value, BicepElement)


def unwrap(config: dict) -> tuple[Any, dict | None, dict]:
    """(condition, loop, body) of a resource or module config: pycep wraps `if (...)` and `[for ...]`."""
    if "config" in config and set(config) <= _WRAPPER_KEYS:
        return config.get("condition"), config.get("loop_type"), config["config"]
    return None, None, config


def body(resource: dict) -> dict:
    """A resource's or module's body, whether or not it has a condition or a loop."""
    return unwrap(resource["config"])[2]


def decorators(element: dict) -> dict[str, Any]:
    """A param's or output's decorators as {type: argument} (description, allowed, min_length, ...)."""
    return {d["type"]: d.get("argument") for d in element.get("decorators", [])}


def accessor_path(value: Any) -> list[str] | None:
    """['a', 'b', 'c'] for the expression a.b.c (pycep nests it as a.(b.c)), else None."""
    if is_reference(value):
        return [str(value)]
    if isinstance(value, dict) and set(value) == {"operator"} and value["operator"]["type"] == "property_accessor":
        operands = value["operator"]["operands"]
        head, tail = accessor_path(operands["operand_1"]), accessor_path(operands["operand_2"])
        if head is not None and tail is not None:
            return head + tail
    return None


def is_expression(value: Any) -> bool:
    """True for an operator or function call (pycep's one-key dicts), False for a literal object."""
    return isinstance(value, dict) and len(value) == 1 and set(value) <= {"operator", "function"}


def function_call(value: Any) -> tuple[str, dict] | None:
    """(pycep's function type, its parameters) for a function call, else None."""
    if is_expression(value) and "function" in value:
        return value["function"]["type"], value["function"]["parameters"]
    return None


class Resource(NamedTuple):
    """A resource declaration: its file, its symbolic name, and pycep's dict of it."""

    file: str
    symbol: str
    resource: dict


class Scope:
    """Where names are looked up: one file, the module call that passes its parameters (None for
    main.bicep) and its symbol in main.bicep, and the items of the loop being expanded."""

    def __init__(self, file: str, template: dict, call: tuple["Scope", dict] | None = None,
                 symbol: str | None = None, items: dict[str, Any] | None = None):
        self.file = file
        self.template = template
        self.call = call
        self.symbol = symbol
        self.items = items or {}

    def with_item(self, name: str, value: Any) -> "Scope":
        return Scope(self.file, self.template, self.call, self.symbol, {**self.items, name: value})

    def refuse(self, what: str) -> Unevaluable:
        return Unevaluable(f"{self.file}: {what}")

    def evaluate(self, value: Any, render: bool = False) -> Any:
        """The value of an expression; with render, unknown-before-deployment parts as "<name>"."""
        if value is None or isinstance(value, (bool, int)):
            return value
        if is_reference(value):
            return self.resolve(str(value), render)
        if isinstance(value, str):
            return self._interpolate(value, render)
        if isinstance(value, list):
            return [self.evaluate(v, render) for v in value]
        path = accessor_path(value)
        if path is not None:
            return self._path(path)
        call = function_call(value)
        if call is not None and call[0] == "concat":
            parts = [self.evaluate(v) for v in call[1].values()]
            if not all(isinstance(p, list) for p in parts):
                raise self.refuse(f"concat() of something other than arrays: {value!r}")
            return [item for part in parts for item in part]
        if is_expression(value) and value.get("operator", {}).get("type") == "minus":  # -1 parses as -(1)
            operand = self.evaluate(value["operator"]["operands"]["integer_value"])
            if isinstance(operand, int) and not isinstance(operand, bool):
                return -operand
        if is_expression(value):
            raise self.refuse(f"expression outside the subset this loader evaluates: {value!r}")
        if isinstance(value, dict):
            return {k: self.evaluate(v, render) for k, v in value.items()}
        raise self.refuse(f"unexpected value {value!r}")

    def _interpolate(self, text: str, render: bool) -> str:
        def one(match: re.Match) -> str:
            name = match.group(1).strip()
            if not re.fullmatch(r"[A-Za-z_]\w*", name):
                raise self.refuse(f"interpolation outside the subset this loader evaluates: ${{{name}}} in {text!r}")
            result = self.resolve(name, render)
            if not isinstance(result, (str, int)) or isinstance(result, bool):
                raise self.refuse(f"${{{name}}} in {text!r} is not a string: {result!r}")
            return str(result)
        return re.sub(r"\$\{([^}]*)\}", one, text)

    def _path(self, path: list[str]) -> Any:
        value = self.resolve(path[0])
        for name in path[1:]:
            if not isinstance(value, dict) or name not in value:
                raise self.refuse(f"{'.'.join(path)}: no property {name}")
            value = value[name]
        return value

    def resolve(self, name: str, render: bool = False) -> Any:
        if name in self.items:
            return self.items[name]
        params = self.template.get("parameters", {})
        if name in params:
            return self._parameter(name, params[name], render)
        variables = self.template.get("variables", {})
        if name in variables:
            try:
                return self.evaluate(variables[name]["value"])
            except Unevaluable:
                if render:
                    return f"<{name}>"
                raise
        raise self.refuse(f"{name} is not a parameter, variable or loop item (a resource or module has no value here)")

    def _parameter(self, name: str, param: dict, render: bool) -> Any:
        if self.call is None:
            if render:
                return f"<{name}>"
            raise self.refuse(f"parameter {name} has no value before deployment")
        caller, args = self.call
        if name not in args:
            if param.get("default") is not None:
                return self.evaluate(param["default"], render)
            raise self.refuse(f"parameter {name} is not passed by {caller.file} and has no default")
        arg = args[name]
        if is_reference(arg):
            return caller.resolve(str(arg), render)
        try:
            return caller.evaluate(arg)
        except Unevaluable:
            if render:
                return f"<{name}>"
            raise


class Tree:
    """The parsed Bicep directory, with main.bicep's module calls as scopes."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory or BICEP_DIR)
        self.files = load_tree(self.directory)
        if MAIN not in self.files:
            raise BicepParseError(f"{self.directory}: no {MAIN}")
        self.main = self.files[MAIN]
        self.main_scope = Scope(MAIN, self.main)

    def module_file(self, module: dict) -> str:
        """The tree's key of the file a module of main.bicep calls."""
        if module.get("type") != "local":
            raise ValueError(f"{MAIN}: only local modules are read, got {module.get('detail')}")
        target = (self.directory / module["detail"]["path"]).resolve()
        key = target.relative_to(self.directory.resolve()).as_posix()
        if key not in self.files:
            raise ValueError(f"{MAIN}: module {module['detail']['path']} is not in the tree")
        return key

    def calls(self, file: str | None = None) -> dict[str, tuple[str, dict]]:
        """main.bicep's module calls, {symbol: (file, params)}, of one file or of all."""
        found = {}
        for symbol, module in self.main.get("modules", {}).items():
            key = self.module_file(module)
            if file is not None and key != file:
                continue
            condition, loop, config = unwrap(module["config"])
            if condition is not None or loop is not None:
                raise ValueError(f"{MAIN}: module {symbol} is conditional or looped; this loader does not expand it")
            found[symbol] = (key, config.get("params", {}))
        return found

    def scope(self, symbol: str) -> Scope:
        """The scope of main.bicep's module call `symbol`."""
        key, params = self.calls()[symbol]
        return Scope(key, self.files[key], (self.main_scope, params), symbol)

    def scopes(self) -> list[Scope]:
        """main.bicep and every module call; a module calling modules itself is refused."""
        result = [self.main_scope]
        for symbol, (key, _) in self.calls().items():
            if self.files[key].get("modules"):
                raise ValueError(f"{key}: nested modules are not read by this loader")
            result.append(self.scope(symbol))
        return result

    def resources(self, rtype: str | None = None) -> list[Resource]:
        """Every resource declaration of that type (or all) in every file, existing ones included."""
        return [Resource(file, symbol, resource)
                for file, tree in self.files.items()
                for symbol, resource in tree.get("resources", {}).items()
                if rtype is None or resource["type"] == rtype]

    def instances(self, rtype: str) -> list[tuple[Scope, dict]]:
        """(scope, body) of every resource of that type the deployment creates, loops expanded.
        A conditional resource is refused: whether it is created depends on parameters."""
        found = []
        for scope in self.scopes():
            for symbol, resource in scope.template.get("resources", {}).items():
                if resource["type"] != rtype or resource.get("existing"):
                    continue
                condition, loop, config = unwrap(resource["config"])
                if condition is not None:
                    raise scope.refuse(f"resource {symbol} is conditional; this loader does not decide it")
                if loop is None:
                    found.append((scope, config))
                    continue
                detail = loop["detail"]
                if loop["type"] != "array" or set(detail) != {"item_name", "array_name"}:
                    raise scope.refuse(f"resource {symbol}: only [for item in array: ...] loops are read")
                items = scope.evaluate(detail["array_name"])
                if not isinstance(items, list):
                    raise scope.refuse(f"resource {symbol} loops over a non-array: {items!r}")
                found.extend((scope.with_item(detail["item_name"], item), config) for item in items)
        return found

    def names(self, rtype: str) -> list[str]:
        """The names of every resource of that type the deployment creates."""
        return [scope.evaluate(config["name"]) for scope, config in self.instances(rtype)]

    def function_app(self) -> tuple[Scope, dict]:
        """(scope, body) of the one function app."""
        apps = self.instances(FUNCTION_APP_TYPE)
        if len(apps) != 1:
            raise ValueError(f"expected exactly one {FUNCTION_APP_TYPE} in {self.directory}, found {len(apps)}")
        return apps[0]


def _as_setting_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    raise ValueError(f"app setting with a non-scalar value: {value!r}")


def app_settings(tree: Tree | None = None) -> dict[str, str]:
    """The function app's settings, read from `siteConfig.appSettings: [for s in items(VAR): {name:
    s.key, value: s.value}]` in the module that declares the app and rendered through main.bicep's
    module parameters."""
    tree = tree or Tree()
    scope, app = tree.function_app()
    loop = app.get("properties", {}).get("siteConfig", {}).get("appSettings")
    shape = isinstance(loop, dict) and loop.get("loop_type", {}).get("type") == "array"
    call = function_call(loop["loop_type"]["detail"]["array_name"]) if shape else None
    if not (shape and call and call[0] == "items" and is_reference(call[1].get("arg_1"))):
        raise scope.refuse(f"siteConfig.appSettings must be [for s in items(VARIABLE): ...], got {loop!r}")
    item = loop["loop_type"]["detail"]["item_name"]
    if (accessor_path(loop["config"].get("name")), accessor_path(loop["config"].get("value"))) != (
            [item, "key"], [item, "value"]):
        raise scope.refuse(f"siteConfig.appSettings items must be {{name: {item}.key, value: {item}.value}}")
    variable = scope.template.get("variables", {}).get(str(call[1]["arg_1"]))
    if variable is None or not isinstance(variable["value"], dict) or is_expression(variable["value"]):
        raise scope.refuse(f"{call[1]['arg_1']} must be a variable holding a literal object")
    return {name: _as_setting_string(scope.evaluate(value, render=True)) for name, value in variable["value"].items()}


def provisioned(directory: str | Path | None = None) -> dict:
    """What the Bicep tree provisions, in the shape terraform_tree.provisioned() gives."""
    tree = Tree(directory)

    queues = tree.names(QUEUE_TYPE)
    containers = tree.names(CONTAINER_TYPE)
    deployment_container = tree.main_scope.resolve("deploymentContainerName")
    if deployment_container not in containers:
        raise ValueError(f"deployment container {deployment_container!r} is not among the containers {containers}")

    databases = tree.names(COSMOS_DATABASE_TYPE)
    if len(databases) != 1:
        raise ValueError(f"expected exactly one Cosmos DB database, found {databases}")

    cosmos_containers = {}
    for scope, config in tree.instances(COSMOS_CONTAINER_TYPE):
        resource = config["properties"]["resource"]
        key = resource["partitionKey"]
        cosmos_containers[scope.evaluate(config["name"])] = {
            "paths": list(scope.evaluate(key["paths"])),
            "kind": scope.evaluate(key["kind"]),
            "default_ttl": scope.evaluate(resource.get("defaultTtl")),
        }

    scope, app = tree.function_app()
    runtime = app["properties"]["functionAppConfig"]["runtime"]
    return {
        "queues": set(queues),
        "blob_containers": set(containers) - {deployment_container},
        "deployment_container": deployment_container,
        "cosmos_database": databases[0],
        "cosmos_containers": cosmos_containers,
        "app_settings": app_settings(tree),
        "runtime": (scope.evaluate(runtime["name"]), scope.evaluate(runtime["version"])),
        "variables": set(tree.main.get("parameters", {})),
        "outputs": set(tree.main.get("outputs", {})),
    }
