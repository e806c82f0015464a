"""The function app as the host sees it.

Owns importing `function_app.py` and turning what the app registered
(`app.get_functions()`, each function's `get_trigger()` and `get_bindings()`)
into FunctionSpecs: name, trigger, the Python callable and the parameter the
trigger binds. Nothing here keeps its own list of functions: the decorators
are the only source, as in the Python worker's indexing.

Only queue, timer and HTTP triggers run here, with no other bindings than
the HTTP `$return`: functions reach storage through the SDKs. Anything else
is refused at start-up, naming the function, instead of failing later.
"""
from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import azure.functions as func

from funchost.config import ConfigError

QUEUE = "queueTrigger"
TIMER = "timerTrigger"
HTTP = "httpTrigger"
SUPPORTED_TRIGGERS = (QUEUE, TIMER, HTTP)


@dataclass(frozen=True)
class FunctionSpec:
    """One registered function: what triggers it and how to call it."""

    name: str
    trigger: object
    target: Callable
    argument: str

    @property
    def trigger_type(self) -> str:
        return self.trigger.get_binding_name()

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.target)


def load_app(app_dir: Path | str) -> func.FunctionRegister:
    """Import DIR/function_app.py with DIR first on sys.path and return its `app`.

    The module is imported afresh on every call: an app's get_functions() can
    be called only once (it rejects names it has already seen), so each host
    needs its own app object.
    """
    app_dir = Path(app_dir).resolve()
    if not (app_dir / "function_app.py").is_file():
        raise ConfigError(f"{app_dir} has no function_app.py")
    if str(app_dir) in sys.path:
        sys.path.remove(str(app_dir))
    sys.path.insert(0, str(app_dir))
    sys.modules.pop("function_app", None)
    module = importlib.import_module("function_app")
    app = getattr(module, "app", None)
    if not isinstance(app, func.FunctionRegister):
        raise ConfigError(f"{app_dir / 'function_app.py'} must define `app = func.FunctionApp(...)`")
    return app


def describe(app: func.FunctionRegister) -> list[FunctionSpec]:
    """The app's functions, read from its decorators; ConfigError for one this host cannot run."""
    return [_spec(function) for function in app.get_functions()]


def _spec(function: func.decorators.function_app.Function) -> FunctionSpec:
    name = function.get_function_name()
    trigger = function.get_trigger()
    trigger_type = trigger.get_binding_name()
    if trigger_type not in SUPPORTED_TRIGGERS:
        raise ConfigError(f"function {name}: trigger {trigger_type} is not supported "
                          f"(this host runs {', '.join(SUPPORTED_TRIGGERS)})")
    for binding in function.get_bindings():
        if binding is trigger:
            continue
        if trigger_type == HTTP and binding.get_binding_name() == "http" and binding.name == "$return":
            continue
        raise ConfigError(f"function {name}: binding {binding.get_binding_name()} {binding.name!r} is not "
                          f"supported; use the storage SDK inside the function instead")
    target = function.get_user_function()
    parameters = set(inspect.signature(target).parameters)
    if parameters != {trigger.name}:
        raise ConfigError(f"function {name}: its parameters {sorted(parameters)} must be exactly the "
                          f"trigger's {trigger.name!r}")
    return FunctionSpec(name=name, trigger=trigger, target=target, argument=trigger.name)
