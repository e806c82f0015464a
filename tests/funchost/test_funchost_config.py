"""funchost without storage: host.json, settings, reading the app's functions, routes and schedules."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import azure.functions as func
import pytest

from funchost import FunctionHost
from funchost.catalog import HTTP, QUEUE, TIMER, describe, load_app
from funchost.config import (ConfigError, HostConfig, QueueOptions, parse_timespan, resolve_setting_refs,
                             storage_connection_string)
from funchost.routes import RouteTable
from funchost.timers import NcrontabSchedule

SAMPLE_APP = Path(__file__).parent / "sample_app"


def test_queue_options_default_like_the_storage_extension():
    options = HostConfig.from_json({"version": "2.0"}).queues
    assert options == QueueOptions(batch_size=16, new_batch_threshold=8, max_polling_interval=60.0,
                                   visibility_timeout=0.0, max_dequeue_count=5, message_encoding="base64")
    assert options.max_concurrency == 24


def test_new_batch_threshold_defaults_to_half_the_batch_and_keys_ignore_case():
    config = HostConfig.from_json({"Version": "2.0", "extensions": {
        "Queues": {"BATCHSIZE": 6, "maxpollinginterval": "00:00:02.5", "messageEncoding": "None"},
        "http": {"routePrefix": "/v1/"}}})
    assert config.queues.new_batch_threshold == 3
    assert config.queues.max_polling_interval == 2.5
    assert config.queues.message_encoding == "none"
    assert config.route_prefix == "v1"


@pytest.mark.parametrize("queues, message", [
    ({"batchSize": 33}, "batchSize"),
    ({"batchSize": 0}, "batchSize"),
    ({"maxDequeueCount": 0}, "maxDequeueCount"),
    ({"maxPollingInterval": "00:00:00.05"}, "100 ms"),
    ({"visibilityTimeout": "30s"}, "TimeSpan"),
    ({"messageEncoding": "utf8"}, "messageEncoding"),
    ({"batchSise": 4}, "batchsise"),
])
def test_invalid_queue_settings_are_refused_by_name(queues, message):
    with pytest.raises(ConfigError, match=message):
        HostConfig.from_json({"version": "2.0", "extensions": {"queues": queues}})


def test_host_json_needs_version_2():
    with pytest.raises(ConfigError, match="version"):
        HostConfig.from_json({})


def test_timespans():
    assert parse_timespan("00:01:00", "k") == 60
    assert parse_timespan("1.02:00:00", "k") == 93600
    assert parse_timespan("00:00:00.25", "k") == 0.25


def test_setting_references_resolve_from_settings():
    assert resolve_setting_refs("%PREFIX%-items", {"PREFIX": "dev"}, "f") == "dev-items"
    with pytest.raises(ConfigError, match="%MISSING%"):
        resolve_setting_refs("%MISSING%", {}, "function f")


def test_storage_connections_resolve_like_the_storage_extension():
    settings = {"AzureWebJobsStorage": "default", "Replica": "replica"}
    assert storage_connection_string("", settings, "f") == "default"
    assert storage_connection_string(None, settings, "f") == "default"
    assert storage_connection_string("Replica", settings, "f") == "replica"
    assert storage_connection_string("Storage", settings, "f") == "default"  # AzureWebJobs + Storage
    with pytest.raises(ConfigError, match="Missing, AzureWebJobsMissing"):
        storage_connection_string("Missing", settings, "f")


def _app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.queue_trigger(arg_name="msg", queue_name="%Q%", connection="Storage")
    def ingest(msg: func.QueueMessage) -> None:
        pass

    @app.function_name("sweep")
    @app.timer_trigger(arg_name="timer", schedule="%SCHEDULE%")
    async def retention(timer: func.TimerRequest) -> None:
        pass

    @app.route(route="items/{id:int}", methods=["GET"])
    def item(req: func.HttpRequest) -> str:
        return "item"

    return app


def test_functions_are_read_from_the_app_decorators():
    specs = {spec.name: spec for spec in describe(_app())}
    assert {name: (s.trigger_type, s.argument) for name, s in specs.items()} == {
        "ingest": (QUEUE, "msg"), "sweep": (TIMER, "timer"), "item": (HTTP, "req")}
    assert specs["ingest"].trigger.queue_name == "%Q%"
    assert specs["sweep"].is_async and not specs["item"].is_async
    assert specs["item"].trigger.route == "items/{id:int}"


def test_the_sample_app_directory_loads_each_time_afresh():
    names = {spec.name for spec in describe(load_app(SAMPLE_APP))}
    assert names == {"hello", "echo", "tick"}
    # A second host in the same process gets its own app (get_functions() works once per app).
    assert {spec.name for spec in describe(load_app(SAMPLE_APP))} == names


def test_unsupported_triggers_bindings_and_parameters_fail_naming_the_function():
    app = func.FunctionApp()

    @app.blob_trigger(arg_name="blob", path="c/{name}", connection="Storage")
    def on_blob(blob) -> None:
        pass

    with pytest.raises(ConfigError, match="on_blob: trigger blobTrigger"):
        describe(app)

    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="q", connection="")
    @app.queue_output(arg_name="out", queue_name="o", connection="")
    def relay(msg, out) -> None:
        pass

    with pytest.raises(ConfigError, match="relay: binding queue 'out'"):
        describe(app)

    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="q", connection="")
    def extra(msg, context) -> None:
        pass

    with pytest.raises(ConfigError, match="extra: its parameters"):
        describe(app)


def test_a_missing_app_setting_fails_before_start():
    with pytest.raises(ConfigError, match="ingest refers to app setting %Q%"):
        FunctionHost(_app(), settings={"SCHEDULE": "0 * * * * *"})


def _http(name, route=None, methods=None):
    return SimpleNamespace(name=name, trigger=SimpleNamespace(route=route, methods=methods))


def test_routes_match_templates_constraints_and_precedence():
    table = RouteTable([
        _http("by_id", "items/{id:int}"), _http("by_name", "items/{name:alpha}"), _http("new", "items/new"),
        _http("by_guid", "things/{id:guid}"), _http("files", "files/{*path}"), _http("hello", "hello/{name?}"),
        _http("ext", "docs/{name}.{ext}"), _http("default_route"),
        _http("create", "Items", methods=[func.HttpMethod.POST]),
    ], "api")

    def match(path, method="GET"):
        found = table.match(method, path)
        return (found.spec.name, found.route_params) if found else None

    assert match("/api/items/42") == ("by_id", {"id": "42"})
    assert match("/api/items/abc") == ("by_name", {"name": "abc"})
    assert match("/api/items/new") == ("new", {})
    assert match("/api/items/a1") is None
    assert match("/api/things/0f8fad5b-d9cb-469f-a165-70867728950e")[0] == "by_guid"
    assert match("/api/things/not-a-guid") is None
    assert match("/api/files/a/b%20c.txt") == ("files", {"path": "a/b c.txt"})
    assert match("/api/files") == ("files", {})
    assert match("/api/hello") == ("hello", {})
    assert match("/api/hello/ann/") == ("hello", {"name": "ann"})
    assert match("/api/docs/readme.md") == ("ext", {"name": "readme", "ext": "md"})
    assert match("/API/Default_Route") == ("default_route", {})
    assert match("/api/items", "POST") == ("create", {})
    assert match("/api/items") is None
    assert table.methods_at("/api/items") == {"POST"}
    assert match("/items/42") is None


def test_route_templates_this_host_cannot_honour_are_refused():
    with pytest.raises(ConfigError, match="constraint 'min"):
        RouteTable([_http("f", "items/{id:min(1)}")], "api")
    with pytest.raises(ConfigError, match="catch-all"):
        RouteTable([_http("f", "files/{*path}/x")], "api")
    with pytest.raises(ConfigError, match="a and b both answer"):
        RouteTable([_http("a", "items/{id}"), _http("b", "items/{key}")], "api")


def test_ncrontab_has_six_fields_seconds_first_and_ands_day_with_weekday():
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert NcrontabSchedule("*/5 * * * * *", "f").next_after(start) == start.replace(second=5)
    # Friday the 13th: NCrontab needs both the day and the weekday (classic cron would take 2024-01-05).
    assert NcrontabSchedule("0 0 0 13 * 5", "f").next_after(start) == datetime(2024, 9, 13, tzinfo=timezone.utc)
    with pytest.raises(ConfigError, match="six fields"):
        NcrontabSchedule("*/5 * * * *", "f")
    with pytest.raises(ConfigError, match="not a valid"):
        NcrontabSchedule("0 0 25 * * *", "f")
