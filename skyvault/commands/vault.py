"""`skyvault vault create|ticket|machines|revoke-machine|set-redundancy|soft-delete|immutability`:
the operator's commands, on the service's handlers directly (they need the local stack's settings, not an agent's
credentials). Soft delete and immutability are shared/service/protection.py's rules: locked
immutability and always-on soft delete are irreversible; with a guard on, disabling soft
delete or shortening its days needs the guard owner's approval (`skyvault guard`)."""
from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta
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
    create.add_argument("--out", help="vault credentials file (default NAME.credentials.json)")
    create.add_argument("--valid-hours", type=float, default=48,
                        help="how long machines can register with the credentials file (default 48, at most 240)")
    create.set_defaults(func=run)
    ticket = vault_sub.add_parser("ticket", help="new vault credentials file, for machines to register with")
    ticket.add_argument("name", help="vault name or id")
    ticket.add_argument("--tenant", required=True)
    ticket.add_argument("--out", help="vault credentials file (default NAME.credentials.json)")
    ticket.add_argument("--valid-hours", type=float, default=48, help="default 48, at most 240")
    ticket.set_defaults(func=run)
    machines = vault_sub.add_parser("machines", help="the machines registered with a vault")
    machines.add_argument("name", help="vault name or id")
    machines.add_argument("--tenant", required=True)
    machines.add_argument("--json", action="store_true", help="one JSON object per machine")
    machines.set_defaults(func=run)
    revoke = vault_sub.add_parser("revoke-machine", help="refuse a machine from now on (its SAS end within an hour)")
    revoke.add_argument("name", help="vault name or id")
    revoke.add_argument("machine", help="the machine's id (`skyvault vault machines`)")
    revoke.add_argument("--tenant", required=True)
    revoke.set_defaults(func=run)
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
    commands = {"create": _create, "ticket": _ticket, "machines": _machines, "revoke-machine": _revoke_machine,
                "set-redundancy": _set_redundancy, "soft-delete": _soft_delete, "immutability": _immutability}
    return commands[args.vault_command](args)


def _create(args: argparse.Namespace) -> int:
    # The operator's commands only import the service: it costs agents start-up time.
    from shared.errors import ServiceError
    from shared.service import vaults

    services = operator_services()
    try:
        vault, ticket = vaults.create_vault(services, args.tenant, args.name, args.redundancy,
                                            timedelta(hours=args.valid_hours))
    except ServiceError as e:
        raise AgentError(str(e)) from None
    say(f"vault {vault.name} ({vault.id}) created for tenant {vault.tenant_id}, {vault.redundancy}")
    return _write_ticket(ticket.to_doc(), args.out or f"{args.name}.credentials.json")


def _on_vault(args: argparse.Namespace, action):
    """`action(services, vault)` on the vault the command names, the service's refusals as AgentError.
    (The operator's commands import the service only here: it costs agents start-up time.)"""
    from shared.errors import ServiceError
    from shared.service import vaults

    services = operator_services()
    try:
        return action(services, vaults.find_vault(services, args.tenant, args.name))
    except ServiceError as e:
        raise AgentError(str(e)) from None


def _ticket(args: argparse.Namespace) -> int:
    from shared.service import vaults

    ticket = _on_vault(args, lambda services, vault: vaults.issue_ticket(services, vault,
                                                                          timedelta(hours=args.valid_hours)))
    return _write_ticket(ticket.to_doc(), args.out or f"{ticket.vault_name}.credentials.json")


def _write_ticket(doc: dict, out: str) -> int:
    path = Path(out)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    say(f"vault credentials written to {path}: machines register with it (`skyvault register {path}`) until "
        f"{doc['expiresAt']}; keep it private")
    return exitcodes.OK


def _machines(args: argparse.Namespace) -> int:
    from shared.service import machines

    for machine in _on_vault(args, machines.list_machines):
        if args.json:
            say(json.dumps(machine.to_doc()))
        else:
            state = f"revoked {machine.revoked_at}" if machine.revoked_at else "active"
            say(f"{machine.id}  {machine.name:<24} key {machine.fingerprint}  registered {machine.enrolled_at}  "
                f"{state}")
    return exitcodes.OK


def _revoke_machine(args: argparse.Namespace) -> int:
    from shared.service import machines

    machine = _on_vault(args, lambda services, vault: machines.revoke_machine(services, vault, args.machine))
    say(f"machine {machine.id} ({machine.name}) revoked at {machine.revoked_at}: its requests and messages are "
        f"refused, and the SAS it holds end within an hour")
    return exitcodes.OK


def _set_redundancy(args: argparse.Namespace) -> int:
    from shared.service import vaults

    vault = _on_vault(args, lambda services, vault: vaults.change_redundancy(services, vault, args.redundancy))
    say(f"vault {vault.name} ({vault.id}) is now {vault.redundancy}")
    return exitcodes.OK


def _soft_delete(args: argparse.Namespace) -> int:
    from shared.service import protection

    vault = _on_vault(args, lambda services, vault: protection.set_soft_delete(services, vault, args.state,
                                                                                args.days, args.approval))
    say(f"vault {vault.name} ({vault.id}): soft delete {vault.soft_delete}, {vault.soft_delete_days} days")
    return exitcodes.OK


def _immutability(args: argparse.Namespace) -> int:
    from shared.service import protection

    vault = _on_vault(args, lambda services, vault: protection.set_immutability(services, vault, args.state))
    say(f"vault {vault.name} ({vault.id}): immutability {vault.immutability}"
        + (" (irreversible)" if vault.immutability == Immutability.LOCKED else ""))
    return exitcodes.OK
