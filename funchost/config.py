"""Host configuration: host.json and app settings.

Owns what the real Functions host reads from host.json for the triggers run
here (`functionTimeout`, `extensions.queues`, `extensions.http.routePrefix`),
with its defaults and its validation; the app setting that limits HTTP
request bodies; and resolving binding values against the app settings: in
Azure app settings are environment variables, so the settings are a mapping
of names to strings. `%NAME%` inside a binding value names a setting; a
storage `connection` names a setting holding a connection string.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STORAGE_SETTING = "AzureWebJobsStorage"
# ScriptJobHostOptionsSetup in azure-functions-host: 30 minutes on every plan but Windows Consumption
# (Flex Consumption, Premium, Dedicated); "-1" means no timeout; below 1 second is refused.
DEFAULT_FUNCTION_TIMEOUT = 30 * 60.0
MIN_FUNCTION_TIMEOUT = 1.0
# Learn: "App settings reference for Azure Functions", FUNCTIONS_REQUEST_BODY_SIZE_LIMIT (bytes).
REQUEST_BODY_SIZE_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"
DEFAULT_REQUEST_BODY_SIZE_LIMIT = 104_857_600


class ConfigError(ValueError):
    """The app, its host.json or an app setting is not something the host can run; the message says which."""


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?$")


def parse_timespan(value: str, key: str) -> float:
    """Seconds in a .NET TimeSpan string (`[d.]hh:mm:ss[.fffffff]`), the format host.json durations use."""
    match = _TIMESPAN.match(str(value).strip())
    if not match:
        raise ConfigError(f"host.json {key}: {value!r} is not a TimeSpan like '00:01:00'")
    days, hours, minutes, seconds, fraction = match.groups()
    return (int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
            + (float(f"0.{fraction}") if fraction else 0.0))


def format_timespan(seconds: float) -> str:
    """`seconds` as the host writes a TimeSpan in its logs, e.g. 00:10:00."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{days}.{hours:02}:{minutes:02}:{secs:02}" if days else f"{hours:02}:{minutes:02}:{secs:02}"
    fraction = round((seconds - whole) * 10_000_000)
    return f"{text}.{fraction:07}" if fraction else text


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the Storage Queues extension's defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @property
    def max_concurrency(self) -> int:
        # A new batch is fetched while at most new_batch_threshold messages are in flight.
        return self.batch_size + self.new_batch_threshold

    @classmethod
    def from_json(cls, section: Mapping) -> QueueOptions:
        values = _lower_keys(section, "extensions.queues")
        known = {"batchsize", "newbatchthreshold", "maxpollinginterval", "visibilitytimeout",
                 "maxdequeuecount", "messageencoding"}
        _reject_unknown(values, known, "extensions.queues")
        batch_size = _int(values, "batchsize", cls.batch_size)
        if not 1 <= batch_size <= 32:
            raise ConfigError(f"host.json extensions.queues.batchSize must be between 1 and 32, not {batch_size}")
        threshold = _int(values, "newbatchthreshold", batch_size // 2)
        if threshold < 0:
            raise ConfigError(f"host.json extensions.queues.newBatchThreshold must not be negative, not {threshold}")
        polling = parse_timespan(values.get("maxpollinginterval", "00:01:00"), "extensions.queues.maxPollingInterval")
        if polling < 0.1:
            raise ConfigError("host.json extensions.queues.maxPollingInterval must be at least 100 ms")
        visibility = parse_timespan(values.get("visibilitytimeout", "00:00:00"), "extensions.queues.visibilityTimeout")
        max_dequeue = _int(values, "maxdequeuecount", cls.max_dequeue_count)
        if max_dequeue < 1:
            raise ConfigError(f"host.json extensions.queues.maxDequeueCount must be at least 1, not {max_dequeue}")
        encoding = str(values.get("messageencoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ConfigError(f"host.json extensions.queues.messageEncoding must be 'base64' or 'none', "
                              f"not {encoding!r}")
        return cls(batch_size, threshold, polling, visibility, max_dequeue, encoding)


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json this host honours."""

    queues: QueueOptions = QueueOptions()
    route_prefix: str = "api"
    function_timeout: float | None = DEFAULT_FUNCTION_TIMEOUT  # seconds; None: no timeout

    @classmethod
    def from_json(cls, document: Mapping) -> HostConfig:
        top = _lower_keys(document, "host.json")
        if str(top.get("version")) != "2.0":
            raise ConfigError(f"host.json must say \"version\": \"2.0\" (found {top.get('version')!r})")
        extensions = _lower_keys(top.get("extensions") or {}, "extensions")
        http = _lower_keys(extensions.get("http") or {}, "extensions.http")
        prefix = http.get("routeprefix", "api")
        return cls(queues=QueueOptions.from_json(extensions.get("queues") or {}),
                   route_prefix=str(prefix).strip("/"),
                   function_timeout=_function_timeout(top.get("functiontimeout")))

    @classmethod
    def load(cls, path: Path) -> HostConfig:
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing: a function app needs a host.json") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path} is not valid JSON: {error}") from None
        return cls.from_json(document)


def _function_timeout(value: object) -> float | None:
    if value is None:
        return DEFAULT_FUNCTION_TIMEOUT
    if not isinstance(value, str):
        raise ConfigError(f"host.json functionTimeout must be a TimeSpan string like '00:10:00', not {value!r}")
    if value.strip() == "-1":
        return None
    seconds = parse_timespan(value, "functionTimeout")
    if seconds < MIN_FUNCTION_TIMEOUT:
        raise ConfigError(f"host.json functionTimeout must be at least 00:00:01 (or -1 for none), not {value!r}")
    return seconds


def request_body_size_limit(settings: Mapping[str, str]) -> int:
    """The largest HTTP request body, in bytes: the app setting FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, else 100 MB."""
    value = settings.get(REQUEST_BODY_SIZE_SETTING)
    if value is None or value == "":
        return DEFAULT_REQUEST_BODY_SIZE_LIMIT
    if not re.fullmatch(r"[0-9]+", value.strip()) or int(value) < 1:
        raise ConfigError(f"app setting {REQUEST_BODY_SIZE_SETTING} must be a number of bytes, not {value!r}")
    return int(value)


def resolve_setting_refs(value: str, settings: Mapping[str, str], what: str) -> str:
    """Replace every `%NAME%` in a binding value with the app setting NAME, as the host does."""

    def lookup(match: re.Match) -> str:
        name = match.group(1)
        if name not in settings:
            raise ConfigError(f"{what} refers to app setting %{name}%, which is not set")
        return settings[name]

    return re.sub(r"%([^%]+)%", lookup, value)


def storage_connection_string(connection: str | None, settings: Mapping[str, str], what: str) -> str:
    """The connection string a binding's `connection` names.

    As in the Storage extensions: no name means AzureWebJobsStorage; a name X
    means the setting X, else AzureWebJobsX (so "Storage" finds
    AzureWebJobsStorage). A name that resolves to nothing is an error, as in
    Azure, rather than a silent fallback that would only work locally.
    """
    candidates = [connection, f"AzureWebJobs{connection}"] if connection else [DEFAULT_STORAGE_SETTING]
    for name in candidates:
        if settings.get(name):
            return settings[name]
    raise ConfigError(f"{what}: connection {connection!r} resolves to no app setting (tried {', '.join(candidates)})")


def _lower_keys(section: object, where: str) -> dict:
    # .NET configuration binding, and so host.json, is case-insensitive.
    if not isinstance(section, Mapping):
        raise ConfigError(f"host.json {where} must be an object")
    return {str(k).lower(): v for k, v in section.items()}


def _reject_unknown(values: Mapping, known: set[str], where: str) -> None:
    # The real host ignores unknown keys; refusing them here catches typos that would be ignored in Azure too.
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"host.json {where} has settings this host does not know: {', '.join(unknown)}")


def _int(values: Mapping, key: str, default: int) -> int:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"host.json setting {key} must be an integer, not {value!r}")
    return value
