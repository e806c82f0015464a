"""`skyvault vault create|set-redundancy|soft-delete|immutability`: the operator's commands, on
the service's handlers directly (they need the local stack's settings, not an agent's
credentials). Soft delete and immutability are shared/service/protection.py's rules: locked
immutability and always-on soft delete are irreversible; with a guard on, disabling soft
delete or shortening its days needs the guard owner's approval (`skyvault guard`)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from shared.domain import REDUNDANCIES, Immutability, SoftDelete
from skyvault import exitcodes
from skyvault.commands.common import operator_services, say
from skyvault.vaultclient import AgentError


def add_parser(subparsers) -> None:
    vault = subparsers.add_parser("vault", help="operator: manage vaults")
    vault_sub = vault.add_subparsers(dest="vault_command", required=True)
    create = vault_sub.add_parser("create", help="create a vault and write its agent credentials file")
    create.add_argument("name")
    create.add_argument("--tenant", required=True)
    create.add_argument("--redundancy", choices=REDUNDANCIES, default="LRS")
    create.add_argument("--out", help="credentials file (default NAME.credentials.json)")
    create.set_defaults(func=run)
    redundancy = vault_sub.add_parser("set-redundancy", help="change LRS/GRS (only before the first backup)")
    redundancy.add_argument("name", help="vault name or id")
    redundancy.add_argument("--tenant", required=True)
    redundancy.add_argument("--redundancy", choices=REDUNDANCIES, required=True)
    redundancy.set_defaults(func=run)
    soft_delete = vault_sub.add_parser("soft-delete", help="soft delete's state and days (14-180)")
    soft_delete.add_argument("name", help="vault name or id")
    soft_delete.add_argument("--tenant", required=True)
    soft_delete.add_argument("--state", choices=[s.value for s in SoftDelete],
                             help="always-on cannot be undone (default: unchanged)")
    soft_delete.add_argument("--days", type=int, help="how long a deleted point stays restorable (default: unchanged)")
    soft_delete.add_argument("--approval", help="the guard owner's approval (disabling, or fewer days)")
    soft_delete.set_defaults(func=run)
    immutability = vault_sub.add_parser("immutability", help="immutability: enabled or locked keeps every point "
                                                             "its retention; locked cannot be undone")
    immutability.add_argument("name", help="vault name or id")
    immutability.add_argument("--tenant", required=True)
    immutability.add_argument("--state", choices=[s.value for s in Immutability], required=True)
    immutability.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    commands = {"create": _create, "set-redundancy": _set_redundancy, "soft-delete": _soft_delete,
                "immutability": _immutability}
    return commands[args.vault_command](args)


def _create(args: argparse.Namespace) -> int:
    # The operator's commands only import the service: it costs agents start-up time.
    from shared.errors import ServiceError
    from shared.service import vaults

    services = operator_services()
    try:
        vault, credentials = vaults.create_vault(services, args.tenant, args.name, args.redundancy)
    except ServiceError as e:
        raise AgentError(str(e)) from None
    creds = credentials.to_doc()
    out = Path(args.out or f"{args.name}.credentials.json")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f, indent=2)
    say(f"vault {vault.name} ({vault.id}) created for tenant {vault.tenant_id}, {vault.redundancy}")
    say(f"agent credentials written to {out} (valid until {creds['expiresAt']}; keep it private)")
    return exitcodes.OK


def _set_redundancy(args: argparse.Namespace) -> int:
    from shared.errors import ServiceError
    from shared.service import vaults

    services = operator_services()
    try:
        vault = vaults.change_redundancy(services, vaults.find_vault(services, args.tenant, args.name),
                                         args.redundancy)
    except ServiceError as e:
        raise AgentError(str(e)) from None
    say(f"vault {vault.name} ({vault.id}) is now {vault.redundancy}")
    return exitcodes.OK


def _soft_delete(args: argparse.Namespace) -> int:
    from shared.errors import ServiceError
    from shared.service import protection, vaults

    services = operator_services()
    try:
        vault = protection.set_soft_delete(services, vaults.find_vault(services, args.tenant, args.name),
                                           args.state, args.days, args.approval)
    except ServiceError as e:
        raise AgentError(str(e)) from None
    say(f"vault {vault.name} ({vault.id}): soft delete {vault.soft_delete}, {vault.soft_delete_days} days")
    return exitcodes.OK


def _immutability(args: argparse.Namespace) -> int:
    from shared.errors import ServiceError
    from shared.service import protection, vaults

    services = operator_services()
    try:
        vault = protection.set_immutability(services, vaults.find_vault(services, args.tenant, args.name), args.state)
    except ServiceError as e:
        raise AgentError(str(e)) from None
    say(f"vault {vault.name} ({vault.id}): immutability {vault.immutability}"
        + (" (irreversible)" if vault.immutability == Immutability.LOCKED else ""))
    return exitcodes.OK
