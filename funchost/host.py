"""FunctionHost: one function app run locally as the Functions host runs it.

Owns wiring: reading the app's functions and host.json, resolving their
bindings against the app settings (so a missing setting fails at start-up,
as in Azure), one invoker holding every invocation to functionTimeout, one
listener per queue or timer function, one HTTP server for every HTTP
function and the status endpoint, with the request body limit, and the order
of start and stop. Stopping stops intake first (HTTP, polling, timers), then
waits up to `drain_timeout` seconds for invocations under way.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

import azure.functions as func
from azure.storage.queue import QueueClient

from funchost.catalog import HTTP, QUEUE, TIMER, FunctionSpec, describe, load_app
from funchost.config import (ConfigError, HostConfig, request_body_size_limit, resolve_setting_refs,
                             storage_connection_string)
from funchost.invoker import Invoker
from funchost.queues import DEFAULT_LEASE, QueueListener
from funchost.routes import RouteTable
from funchost.timers import NcrontabSchedule, TimerListener
from funchost.web import WebServer

log = logging.getLogger("funchost")

_QUEUE_NAME = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")


class FunctionHost:
    """Run a function app: `app` is an app directory (function_app.py and host.json) or a FunctionApp.

    `host_json` overrides the directory's host.json (required content when
    `app` is an object: defaults to `{"version": "2.0"}`); `settings` are the
    app settings (default: the environment).
    """

    def __init__(self, app: func.FunctionRegister | Path | str, *, host_json: Mapping | None = None,
                 settings: Mapping[str, str] | None = None, host: str = "127.0.0.1", port: int = 0,
                 drain_timeout: float = 30.0, message_lease: float = DEFAULT_LEASE) -> None:
        if isinstance(app, (str, Path)):
            app_dir = Path(app)
            app = load_app(app_dir)
            self.config = (HostConfig.load(app_dir / "host.json") if host_json is None
                           else HostConfig.from_json(host_json))
        else:
            self.config = HostConfig.from_json({"version": "2.0"} if host_json is None else host_json)
        self.settings = dict(os.environ if settings is None else settings)
        self.functions = describe(app)
        self.drain_timeout = drain_timeout
        self.request_body_limit = request_body_size_limit(self.settings)
        self._invoker = Invoker(self.config.function_timeout)
        self._queues = [self._queue_listener(spec, message_lease) for spec in self._of(QUEUE)]
        self._timers = [self._timer_listener(spec) for spec in self._of(TIMER)]
        self._web = WebServer(RouteTable(self._of(HTTP), self.config.route_prefix), self._invoker, host, port,
                              self.request_body_limit)
        self._started = False

    @property
    def url(self) -> str:
        """Base URL of the HTTP server once started, e.g. http://127.0.0.1:7071."""
        return self._web.url

    def start(self) -> FunctionHost:
        self._started = True
        try:
            self._invoker.start()
            for listener in self._queues:
                listener.start()
            for timer in self._timers:
                timer.start()
            self._web.start()
        except BaseException:
            self.stop()
            raise
        log.info("Host started: %d functions (%s)", len(self.functions),
                 ", ".join(f"{s.name}: {s.trigger_type}" for s in self.functions))
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        deadline = time.monotonic() + self.drain_timeout
        self._web.stop()
        for listener in [*self._queues, *self._timers]:
            listener.stop()
        for listener in [*self._queues, *self._timers]:
            listener.join(deadline)
        if not self._invoker.wait_idle(deadline - time.monotonic()):
            log.warning("Invocations still running after %.0fs; stopping anyway", self.drain_timeout)
        self._invoker.stop()
        log.info("Host stopped")

    def __enter__(self) -> FunctionHost:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _of(self, trigger_type: str) -> list[FunctionSpec]:
        return [spec for spec in self.functions if spec.trigger_type == trigger_type]

    def _queue_listener(self, spec: FunctionSpec, lease: float) -> QueueListener:
        what = f"function {spec.name}"
        name = resolve_setting_refs(spec.trigger.queue_name, self.settings, what).lower()
        if not _QUEUE_NAME.fullmatch(name):
            raise ConfigError(f"{what}: {name!r} is not a valid queue name")
        connection = storage_connection_string(spec.trigger.connection, self.settings, what)
        try:
            queue = QueueClient.from_connection_string(connection, name)
            poison = QueueClient.from_connection_string(connection, f"{name}-poison")
        except ValueError as error:
            raise ConfigError(f"{what}: connection {spec.trigger.connection!r} is not a storage "
                              f"connection string: {error}") from None
        return QueueListener(spec, queue, poison, self.config.queues, self._invoker, lease)

    def _timer_listener(self, spec: FunctionSpec) -> TimerListener:
        what = f"function {spec.name}"
        schedule = NcrontabSchedule(resolve_setting_refs(spec.trigger.schedule, self.settings, what), what)
        return TimerListener(spec, schedule, bool(spec.trigger.run_on_startup), self._invoker)
