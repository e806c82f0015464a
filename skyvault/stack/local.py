"""`skyvault stack up|status|down`: the whole service on this machine.

Starts Azurite for the primary and the paired region, the Cosmos DB emulator,
creates the database, containers and queues, then runs the local Functions
host (funchost) on function_app.py. Endpoints, settings and pids go to
`stack.json` in the state folder, which every later command reads.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from shared import bootstrap
from shared.adapters.azure_storage import AzureQueue
from shared.service.context import ALL_QUEUES
from skyvault import home
from skyvault.stack import emulators

HOST_START_TIMEOUT_S = 60


class StackError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def running_state() -> dict[str, Any] | None:
    try:
        state = home.stack_state()
    except home.NotConfigured:
        return None
    return state if any(emulators.pid_alive(pid) for pid in _pids(state)) else None


def _pids(state: dict[str, Any]) -> list[int]:
    return [c["pid"] for c in state.get("components", {}).values()]


def up(in_memory: bool = False, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """Start the stack; `in_memory` keeps the storage emulators' data in memory (faster, lost on
    stop); `overrides` replace app settings (the tests' timer schedules)."""
    if running_state():
        raise StackError(f"the stack in {home.home()} is already running; `skyvault stack down` first")
    workdir = home.home() / "stack"
    workdir.mkdir(parents=True, exist_ok=True)
    started: list[int] = []
    try:
        primary = emulators.start_azurite("primary", "skyvaultprimary", workdir, in_memory=in_memory)
        started.append(primary.pid)
        secondary = emulators.start_azurite("secondary", "skyvaultsecondary", workdir, in_memory=in_memory)
        started.append(secondary.pid)
        cosmos = emulators.start_cosmos(workdir)
        started.append(cosmos.pid)
        port = _free_port()
        api_url = f"http://127.0.0.1:{port}"
        settings = {
            bootstrap.STORAGE: primary.connection_string,
            bootstrap.SECONDARY_STORAGE: secondary.connection_string,
            bootstrap.COSMOS_ENDPOINT: cosmos.endpoint,
            bootstrap.COSMOS_KEY: cosmos.key,
            bootstrap.COSMOS_DATABASE: "skyvault",
            bootstrap.PUBLIC_API_URL: api_url,
            # Separate Azurite processes per region cannot copy between each other.
            bootstrap.REPLICATION_COPY_MODE: "stream",
            bootstrap.REPLICATION_RETRY_MAX: "5",
            bootstrap.SCRUB_SCHEDULE: "0 */5 * * * *",
            bootstrap.SWEEP_SCHEDULE: "0 */5 * * * *",
            bootstrap.RETENTION_SCHEDULE: "0 0 * * * *",
            bootstrap.RECONCILE_SCHEDULE: "0 30 * * * *",
            bootstrap.OPERATION_COUNTS_FILE: str(workdir / "operation-counts.json"),
            bootstrap.CLOCK_OFFSET_FILE: str(workdir / "clock-offset"),
            **(overrides or {}),
        }
        bootstrap.cosmos_index(settings).ensure_schema()
        for name in ALL_QUEUES:
            AzureQueue(primary.connection_string, name).create()
        host_pid = start_function_host(settings, port, workdir)
        started.append(host_pid)
    except BaseException:
        for pid in reversed(started):
            emulators.stop_pid(pid)
        raise
    state = {
        "startedAt": datetime.now(timezone.utc).isoformat(),
        "apiUrl": api_url,
        "inMemory": in_memory,
        "settings": settings,
        "components": {
            "azurite-primary": _region_component(primary),
            "azurite-secondary": _region_component(secondary),
            "cosmos": {"pid": cosmos.pid, "endpoint": cosmos.endpoint},
            "functions": {"pid": host_pid, "url": api_url},
        },
    }
    home.write_json("stack.json", state)
    return state


def _region_component(instance: emulators.AzuriteInstance) -> dict[str, Any]:
    return {"pid": instance.pid, "blob": instance.blob_url, "queue": instance.queue_url, "account": instance.account,
            "blobPort": instance.blob_port, "queuePort": instance.queue_port}


def stop_region(region: str) -> None:
    """Stop one region's storage, as in a regional outage (`start_region` brings it back)."""
    state = home.stack_state()
    if state.get("inMemory"):
        raise StackError("this stack keeps its storage in memory (`stack up --in-memory`): a stopped region "
                         "would come back empty; start the stack without --in-memory to try outages")
    emulators.stop_pid(state["components"][f"azurite-{region}"]["pid"])


def start_region(region: str) -> None:
    """Restart a stopped region on its old ports and data."""
    state = home.stack_state()
    component = state["components"][f"azurite-{region}"]
    if emulators.pid_alive(component["pid"]):
        return
    instance = emulators.start_azurite(region, component["account"], home.home() / "stack",
                                       component["blobPort"], component["queuePort"])
    state["components"][f"azurite-{region}"] = _region_component(instance)
    home.write_json("stack.json", state)


def start_function_host(settings: dict[str, str], port: int, workdir: Path) -> int:
    """Run funchost on the project's function_app.py with `settings` as app settings."""
    app_dir = emulators.REPO_ROOT
    log_path = workdir / "functions.log"
    env = {**os.environ, **settings, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "funchost", "--app-dir", str(app_dir), "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=app_dir, start_new_session=True)
    deadline = time.monotonic() + HOST_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"the Functions host exited ({proc.returncode}); see {log_path}:\n"
                             f"{log_path.read_text(errors='replace')[-2000:]}")
        if re.search(r"funchost listening on", log_path.read_text(errors="replace")):
            try:
                if requests.get(f"http://127.0.0.1:{port}/admin/host/status", timeout=2).ok:
                    return proc.pid
            except requests.RequestException:
                pass
        time.sleep(0.1)
    emulators.stop_pid(proc.pid)
    raise StackError(f"the Functions host did not start within {HOST_START_TIMEOUT_S}s; see {log_path}")


def status() -> list[tuple[str, bool, str]]:
    state = home.stack_state()
    return [(name, emulators.pid_alive(c["pid"]), c.get("url") or c.get("blob") or c.get("endpoint", ""))
            for name, c in state["components"].items()]


def down() -> list[str]:
    try:
        state = home.stack_state()
    except home.NotConfigured:
        return []
    stopped = []
    # The host first, so it stops taking messages before its storage goes away.
    for name in ("functions", "cosmos", "azurite-secondary", "azurite-primary"):
        component = state["components"].get(name)
        if component and emulators.pid_alive(component["pid"]):
            emulators.stop_pid(component["pid"])
            stopped.append(name)
    (home.home() / "stack.json").unlink(missing_ok=True)
    return stopped
