"""What several commands share: their output, the passphrase prompt, this machine's agent
(its registration, with the keys `register` remembered or the passphrase) and its cache."""
from __future__ import annotations

import getpass
import os
import sys

from shared import crypto
from skyvault import home
from skyvault.cache import Cache
from skyvault.commands.output import Output
from skyvault.vaultclient import AgentError, AgentVault

KEYS_FILE = "keys.json"


def vault_arguments(parser) -> None:
    """The vault an operator's command works on."""
    parser.add_argument("--vault", required=True, help="vault name or id")
    parser.add_argument("--tenant", required=True)


# A JSON file of a deployed service's app settings (infra/'s `appSettings` output): the
# operator's commands then reach that service with the operator's own Azure sign-in.
SERVICE_SETTINGS = "SKYVAULT_SERVICE_SETTINGS"


def operator_services():
    """The service's use cases wired to the settings of the deployed service SERVICE_SETTINGS
    names, or else of the local stack, as the operator's commands call them (imported here, not
    at start-up: the service costs agents start-up time)."""
    from shared import bootstrap

    path = os.environ.get(SERVICE_SETTINGS)
    try:
        return bootstrap.build_services(deployed_settings(path) if path else home.stack_state()["settings"])
    except bootstrap.SettingMissing as e:
        raise AgentError(f"{path or 'the local stack'}: {e}") from None


def deployed_settings(path: str) -> dict[str, str]:
    """The app settings in the JSON file at `path` (an object of strings, or IaC output's
    `{"value": {...}}`), without the function app's managed identity: on the operator's machine
    azure-identity's default chain (`az login`, environment, ...) signs in instead."""
    import json
    try:
        doc = json.loads(open(path, encoding="utf-8").read())
    except OSError as e:
        raise AgentError(f"{path}: cannot read the service's settings: {e.strerror}") from None
    except ValueError as e:
        raise AgentError(f"{path}: the service's settings are not JSON: {e}") from None
    if isinstance(doc, dict) and set(doc) <= {"value", "type", "sensitive"} and isinstance(doc.get("value"), dict):
        doc = doc["value"]
    if not (isinstance(doc, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items())):
        raise AgentError(f"{path}: the service's settings must be a JSON object of strings (app setting names "
                         "and values)")
    return {name: value for name, value in doc.items() if not name.endswith(("__credential", "__clientId"))}


# The running command's Output (cli.main sets it): say and warn go through it, so that with
# --json nothing but JSON reaches stdout.
OUTPUT: Output | None = None


def out() -> Output:
    return OUTPUT or Output()


def say(text: str) -> None:
    """A line of the command's text result (stdout; not with --json)."""
    out().say(text)


def warn(text: str) -> None:
    """A note or, if it starts with "warning: " or "error: ", a warning (stderr, or JSON)."""
    out().note(text)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


def passphrase(confirm: bool = False) -> str:
    value = os.environ.get("SKYVAULT_PASSPHRASE")
    if value is None:
        if not sys.stdin.isatty():
            raise AgentError("no passphrase: set SKYVAULT_PASSPHRASE or run from a terminal")
        value = getpass.getpass("Vault passphrase: ")
        if confirm and getpass.getpass("Again: ") != value:
            raise AgentError("the two passphrases differ")
    crypto.check_passphrase(value)
    return value


def agent(renew: bool = True) -> AgentVault:
    """This machine's agent, with its vault keys; its credentials renewed if they expire soon
    (unless not `renew`: a dry run changes nothing on the machine).
    Without remembered keys the passphrase is asked for, and the service says whether it is
    the vault's (the key check value is not kept on this machine, so a stolen state folder
    gives no offline test of guessed passphrases)."""
    state = home.agent_state()
    creds = state["credentials"]

    def keep(renewed: dict) -> None:
        state["credentials"] = renewed
        home.write_json("agent.json", state)

    keys = remembered_keys(creds["vaultId"], creds["machineId"])
    vault = AgentVault(creds, keys, on_renew=keep)
    if keys is None:
        vault.keys = AgentVault.derive_keys(creds, passphrase())
        vault.key_check(vault.keys.key_check_value())  # CredentialsError: not the vault's passphrase
    if renew:
        vault.ensure_fresh()
    return vault


def remembered_keys(vault_id: str, machine_id: str) -> crypto.VaultKeys | None:
    """The keys `register` remembered for this machine's registration, if any."""
    doc = home.read_optional_json(KEYS_FILE)
    if not doc or (doc.get("vaultId"), doc.get("machineId")) != (vault_id, machine_id):
        return None
    try:
        return crypto.VaultKeys.from_doc(doc["keys"])
    except crypto.KeysOutdated as e:  # an older agent's keys.json: the passphrase derives them again
        warn(f"skyvault: warning: {e}")
        return None


def cache() -> Cache:
    return Cache(home.home() / "cache.sqlite")
