"""Helpers of the end-to-end tests."""
from __future__ import annotations

import time

PASSPHRASE = "end to end test passphrase"


def wait_until(predicate, timeout=90.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def registered_agent(ticket_path, name: str = "e2e-machine", **agent_options):
    """An agent of the vault whose credentials file is at `ticket_path`, registered over HTTP as
    `skyvault register` registers one (without writing the state folder)."""
    from skyvault.vaultclient import AgentVault, enrol, load_ticket

    ticket = load_ticket(str(ticket_path))
    keys = AgentVault.derive_keys(ticket, PASSPHRASE)
    creds, _ = enrol(ticket, keys, name)
    return AgentVault(creds, keys, **agent_options)
