"""The agent's state folder: `SKYVAULT_HOME`, or `.skyvault/` in the working directory.

It holds `stack.json` (the local stack's endpoints and pids, written by
`skyvault stack up`), `agent.json` (this machine's registration: the vault
credentials, never the passphrase), `keys.json` (the vault keys derived on
this machine at registration, so that later commands need neither the
passphrase nor the half second of Argon2id, as kopia persists its password;
not written with `register --no-remember-keys`) and `cache.sqlite` (what the
agent knows about its vault's chunks and its files, see skyvault.cache).
Everything is readable by its owner only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class NotConfigured(RuntimeError):
    """A command needs state that an earlier command writes."""


def home() -> Path:
    return Path(os.environ.get("SKYVAULT_HOME") or Path.cwd() / ".skyvault").absolute()


def read_json(name: str, hint: str) -> dict[str, Any]:
    path = home() / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NotConfigured(f"{path} does not exist: {hint}") from None


def write_json(name: str, data: dict[str, Any]) -> Path:
    path = home() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # Credentials inside: readable by the owner only.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)
    return path


def stack_state() -> dict[str, Any]:
    return read_json("stack.json", "start the local stack with `skyvault stack up`")


def agent_state() -> dict[str, Any]:
    return read_json("agent.json", "register this machine with `skyvault register CREDENTIALS`")


def remove(name: str) -> None:
    (home() / name).unlink(missing_ok=True)


def read_optional_json(name: str) -> dict[str, Any] | None:
    try:
        return json.loads((home() / name).read_text())
    except FileNotFoundError:
        return None
