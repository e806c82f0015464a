"""`skyvault register CREDENTIALS`: this machine joins a vault. The passphrase's key check
must match the one the vault recorded at its first registration (or becomes it); the keys
derived here are remembered in the state folder unless `--no-remember-keys`."""
from __future__ import annotations

import argparse
from datetime import datetime, timezone

from shared.messages import KeyCheckAnswer
from skyvault import exitcodes, home
from skyvault.commands.common import KEYS_FILE, passphrase, say
from skyvault.vaultclient import AgentVault, load_credentials


def add_parser(subparsers) -> None:
    register = subparsers.add_parser("register", help="register this machine with a vault")
    register.add_argument("credentials")
    register.add_argument("--no-remember-keys", action="store_true",
                          help="do not keep the vault keys on this machine: every later command then "
                               "asks for the passphrase")
    register.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    creds = load_credentials(args.credentials)
    keys = AgentVault.derive_keys(creds, passphrase(confirm=True))
    vault = AgentVault(creds, keys)
    answer = vault.key_check(keys.key_check_value())  # CredentialsError: another passphrase
    home.write_json("agent.json", {"credentials": creds, "keyCheck": keys.key_check_value(),
                                   "registeredAt": datetime.now(timezone.utc).isoformat()})
    if args.no_remember_keys:
        home.remove(KEYS_FILE)
    else:
        home.write_json(KEYS_FILE, {"vaultId": creds["vaultId"], "keys": keys.to_doc()})
    first = "first machine of this vault; keep the passphrase safe: without it the data cannot be restored"
    say(f"registered with vault {creds['vaultName']} ({creds['vaultId']})"
        f"{': ' + first if answer.status == KeyCheckAnswer.RECORDED else ''}")
    return exitcodes.OK
