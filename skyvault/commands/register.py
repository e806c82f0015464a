"""`skyvault register CREDENTIALS`: this machine joins a vault with the vault credentials file
(an enrolment ticket, valid for a few days) its operator handed out. A key pair is made here;
the service learns the public key and the passphrase's key check value, which must match the
one the vault's first machine set (or becomes it). The keys derived here are remembered in the
state folder unless `--no-remember-keys`."""
from __future__ import annotations

import argparse
import socket
from datetime import datetime, timezone

from shared import crypto, formats
from shared.messages import KeyCheckAnswer
from skyvault import exitcodes, home
from skyvault.commands.common import KEYS_FILE, passphrase, say
from skyvault.vaultclient import AgentVault, enrol, load_ticket


def add_parser(subparsers) -> None:
    register = subparsers.add_parser(
        "register", help="register this machine with a vault", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Register this machine with a vault, with the vault credentials file its operator handed out.\n"
                    "The passphrase is asked for twice (or SKYVAULT_PASSPHRASE); the first machine's becomes the\n"
                    "vault's, and every later machine must give the same.",
        epilog="examples:\n  skyvault register laptops.credentials.json\n"
               "  skyvault register laptops.credentials.json --name laptop-7 --no-remember-keys")
    register.add_argument("credentials", help="the vault credentials file (`skyvault vault create` or "
                                              "`skyvault vault ticket` wrote it)")
    register.add_argument("--name", help="this machine's name in `skyvault vault machines` (default: the host name)")
    register.add_argument("--no-remember-keys", action="store_true",
                          help="do not keep the vault keys on this machine: every later command then "
                               "asks for the passphrase")
    register.set_defaults(func=run)


def machine_name(name: str | None) -> str:
    """The name a machine registers under: the given one, else the host name made a NAME_ID."""
    candidate = name or socket.gethostname().split(".")[0][:63] or "machine"
    if not formats.NAME_ID.match(candidate):
        candidate = "".join(c if c.isalnum() or c in "._-" else "-" for c in candidate).lstrip("._-")[:63]
    return candidate if formats.NAME_ID.match(candidate) else "machine"


def run(args: argparse.Namespace) -> int:
    ticket = load_ticket(args.credentials)
    chosen = passphrase(confirm=True)
    # Held to the rule of choosing one: the first machine's becomes the vault's (crypto.check_new_passphrase).
    crypto.check_new_passphrase(chosen, context=(ticket["tenantId"], ticket["vaultName"]))
    keys = AgentVault.derive_keys(ticket, chosen)
    name = machine_name(args.name)
    creds, key_check = enrol(ticket, keys, name)  # CredentialsError: another passphrase
    home.write_json("agent.json", {"credentials": creds, "registeredAt": datetime.now(timezone.utc).isoformat()})
    if args.no_remember_keys:
        home.remove(KEYS_FILE)
    else:
        home.write_json(KEYS_FILE, {"vaultId": creds["vaultId"], "machineId": creds["machineId"],
                                    "keys": keys.to_doc()})
    first = "first machine of this vault; keep the passphrase safe: without it the data cannot be restored"
    is_first = key_check == KeyCheckAnswer.RECORDED
    say(f"registered with vault {creds['vaultName']} ({creds['vaultId']}) as machine {creds['machineId']}"
        f"{': ' + first if is_first else ''}")
    # Not the credentials themselves: they hold this machine's private key and its SAS.
    args.output.summary(vault_id=creds["vaultId"], vault_name=creds["vaultName"], tenant_id=creds["tenantId"],
                        machine_id=creds["machineId"], machine_name=name,
                        first_machine=is_first, keys_remembered=not args.no_remember_keys)
    return exitcodes.OK
