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


# What a vault's JSON output shows of its record: not its KDF's key check value, its tickets'
# digests, nor the service's bookkeeping (garbage collection, scrub cursor, epochs).
VAULT_FIELDS = ("id", "tenantId", "name", "redundancy", "createdAt", "firstBackupAt", "softDelete", "softDeleteDays",
                "immutability", "guard")
RAW = argparse.RawDescriptionHelpFormatter


def add_parser(subparsers) -> None:
    vault = subparsers.add_parser("vault", help="operator: manage vaults")
    vault_sub = vault.add_subparsers(dest="vault_command", required=True)
    create = vault_sub.add_parser(
        "create", help="create a vault and write its agent credentials file", formatter_class=RAW,
        description="Create a vault for a tenant and write its vault credentials file (mode 0600), which machines\n"
                    "register with (`skyvault register FILE`) until it expires.",
        epilog="examples:\n  skyvault vault create laptops --tenant contoso --redundancy GRS\n"
               "  skyvault vault create db --tenant contoso --out db.credentials.json --valid-hours 4")
    create.add_argument("name")
    create.add_argument("--tenant", required=True)
    create.add_argument("--redundancy", choices=REDUNDANCIES, default="LRS")
    create.add_argument("--out", help="vault credentials file (default NAME.credentials.json)")
    create.add_argument("--valid-hours", type=float, default=48,
                        help="how long machines can register with the credentials file (default 48, at most 240)")
    create.set_defaults(func=run)
    ticket = vault_sub.add_parser(
        "ticket", help="new vault credentials file, for machines to register with", formatter_class=RAW,
        description="Write a new vault credentials file for an existing vault, for more machines to register with.",
        epilog="example:\n  skyvault vault ticket laptops --tenant contoso --out more.credentials.json")
    ticket.add_argument("name", help="vault name or id")
    ticket.add_argument("--tenant", required=True)
    ticket.add_argument("--out", help="vault credentials file (default NAME.credentials.json)")
    ticket.add_argument("--valid-hours", type=float, default=48, help="default 48, at most 240")
    ticket.set_defaults(func=run)
    machines = vault_sub.add_parser(
        "machines", help="the machines registered with a vault", formatter_class=RAW,
        description="The machines registered with a vault, by registration time: id, name, key fingerprint,\n"
                    "and whether they are revoked.",
        epilog="examples:\n  skyvault vault machines laptops --tenant contoso\n"
               "  skyvault vault machines laptops --tenant contoso --json")
    machines.add_argument("name", help="vault name or id")
    machines.add_argument("--tenant", required=True)
    machines.set_defaults(func=run)
    revoke = vault_sub.add_parser(
        "revoke-machine", help="refuse a machine from now on (its SAS end within an hour)", formatter_class=RAW,
        description="Refuse a machine's requests, queued messages and pending commits from now on; the SAS it\n"
                    "holds end within an hour.",
        epilog="example:\n  skyvault vault revoke-machine laptops 0123456789abcdef0123456789abcdef --tenant contoso")
    revoke.add_argument("name", help="vault name or id")
    revoke.add_argument("machine", help="the machine's id (`skyvault vault machines`)")
    revoke.add_argument("--tenant", required=True)
    revoke.set_defaults(func=run)
    redundancy = vault_sub.add_parser(
        "set-redundancy", help="change LRS/GRS (only before the first backup)", formatter_class=RAW,
        description="Change a vault's redundancy, LRS or GRS; refused once the vault has a backup.",
        epilog="example:\n  skyvault vault set-redundancy laptops --tenant contoso --redundancy GRS")
    redundancy.add_argument("name", help="vault name or id")
    redundancy.add_argument("--tenant", required=True)
    redundancy.add_argument("--redundancy", choices=REDUNDANCIES, required=True)
    redundancy.set_defaults(func=run)
    soft_delete = vault_sub.add_parser(
        "soft-delete", help="soft delete's state and days (14-180)", formatter_class=RAW,
        description="Set soft delete's state and how many days (14-180) a deleted point stays restorable.\n"
                    "always-on cannot be undone; with a guard, disabling or fewer days needs its owner's approval.",
        epilog="examples:\n  skyvault vault soft-delete laptops --tenant contoso --days 30\n"
               "  skyvault vault soft-delete laptops --tenant contoso --state always-on")
    soft_delete.add_argument("name", help="vault name or id")
    soft_delete.add_argument("--tenant", required=True)
    soft_delete.add_argument("--state", choices=[s.value for s in SoftDelete],
                             help="always-on cannot be undone (default: unchanged)")
    soft_delete.add_argument("--days", type=int, help="how long a deleted point stays restorable (default: unchanged)")
    soft_delete.add_argument("--approval", help="the guard owner's approval (disabling, or fewer days)")
    soft_delete.set_defaults(func=run)
    immutability = vault_sub.add_parser(
        "immutability", help="immutability: enabled or locked keeps every point its retention; locked cannot be "
                             "undone", formatter_class=RAW,
        description="Set a vault's immutability: enabled or locked, no point is deleted before its policy's\n"
                    "retention ends, nor retention shortened; locked cannot be undone.",
        epilog="example:\n  skyvault vault immutability laptops --tenant contoso --state enabled")
    immutability.add_argument("name", help="vault name or id")
    immutability.add_argument("--tenant", required=True)
    immutability.add_argument("--state", choices=[s.value for s in Immutability], required=True)
    immutability.set_defaults(func=run)


def vault_doc(vault) -> dict:
    """The vault's record as its JSON output carries it (VAULT_FIELDS)."""
    doc = vault.to_doc()
    return {name: doc[name] for name in VAULT_FIELDS}


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
    path = _write_ticket(ticket.to_doc(), args.out or f"{args.name}.credentials.json")
    args.output.summary(vault=vault_doc(vault), credentials_file=str(path), ticket_id=ticket.ticket_id,
                        expires_at=ticket.expires_at)
    return exitcodes.OK


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
    path = _write_ticket(ticket.to_doc(), args.out or f"{ticket.vault_name}.credentials.json")
    args.output.summary(vault_id=ticket.vault_id, vault_name=ticket.vault_name, credentials_file=str(path),
                        ticket_id=ticket.ticket_id, expires_at=ticket.expires_at)
    return exitcodes.OK


def _write_ticket(doc: dict, out: str) -> Path:
    """The credentials file written; never in the command's output: its ticket secret registers machines."""
    path = Path(out)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    say(f"vault credentials written to {path}: machines register with it (`skyvault register {path}`) until "
        f"{doc['expiresAt']}; keep it private")
    return path


def _machines(args: argparse.Namespace) -> int:
    from shared.service import machines

    listed = _on_vault(args, machines.list_machines)
    for machine in listed:
        args.output.emit("machine", machine=machine.to_doc())
        state = f"revoked {machine.revoked_at}" if machine.revoked_at else "active"
        say(f"{machine.id}  {machine.name:<24} key {machine.fingerprint}  registered {machine.enrolled_at}  {state}")
    args.output.summary(machines=len(listed))
    return exitcodes.OK


def _revoke_machine(args: argparse.Namespace) -> int:
    from shared.service import machines

    machine = _on_vault(args, lambda services, vault: machines.revoke_machine(services, vault, args.machine))
    say(f"machine {machine.id} ({machine.name}) revoked at {machine.revoked_at}: its requests and messages are "
        f"refused, and the SAS it holds end within an hour")
    args.output.summary(machine=machine.to_doc())
    return exitcodes.OK


def _set_redundancy(args: argparse.Namespace) -> int:
    from shared.service import vaults

    vault = _on_vault(args, lambda services, vault: vaults.change_redundancy(services, vault, args.redundancy))
    say(f"vault {vault.name} ({vault.id}) is now {vault.redundancy}")
    args.output.summary(vault=vault_doc(vault))
    return exitcodes.OK


def _soft_delete(args: argparse.Namespace) -> int:
    from shared.service import protection

    vault = _on_vault(args, lambda services, vault: protection.set_soft_delete(services, vault, args.state,
                                                                                args.days, args.approval))
    say(f"vault {vault.name} ({vault.id}): soft delete {vault.soft_delete}, {vault.soft_delete_days} days")
    args.output.summary(vault=vault_doc(vault))
    return exitcodes.OK


def _immutability(args: argparse.Namespace) -> int:
    from shared.service import protection

    vault = _on_vault(args, lambda services, vault: protection.set_immutability(services, vault, args.state))
    say(f"vault {vault.name} ({vault.id}): immutability {vault.immutability}"
        + (" (irreversible)" if vault.immutability == Immutability.LOCKED else ""))
    args.output.summary(vault=vault_doc(vault))
    return exitcodes.OK
