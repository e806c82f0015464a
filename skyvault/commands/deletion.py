"""`skyvault delete|undelete POINT` and `skyvault protection stop|resume ITEM`: the operator's
deletion commands, on the service's use cases directly (shared.service.deletion). Deleting is
soft: the point stays restorable by `undelete` until its purge (the vault's soft-delete days)."""
from __future__ import annotations

import argparse

from shared.domain import Protection
from skyvault import exitcodes
from skyvault.commands.common import operator_services, say, vault_arguments
from skyvault.vaultclient import AgentError


def add_parser(subparsers) -> None:
    delete = subparsers.add_parser(
        "delete", help="operator: soft-delete a recovery point",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Soft-delete a recovery point: it stays restorable by `skyvault undelete` until its purge,\n"
                    "the vault's soft-delete days from now. Refused in an immutable vault while its policy keeps it.",
        epilog="example:\n  skyvault delete 20261201T120000Z-0000abcd --vault laptops --tenant contoso")
    delete.add_argument("point")
    vault_arguments(delete)
    delete.set_defaults(func=run, deletion_command="delete")
    undelete = subparsers.add_parser(
        "undelete", help="operator: make a soft-deleted recovery point restorable again",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Make a soft-deleted recovery point restorable again, as long as its purge has not begun.",
        epilog="example:\n  skyvault undelete 20261201T120000Z-0000abcd --vault laptops --tenant contoso")
    undelete.add_argument("point")
    vault_arguments(undelete)
    undelete.set_defaults(func=run, deletion_command="undelete")
    protection = subparsers.add_parser("protection", help="operator: stop or resume an item's backups")
    sub = protection.add_subparsers(dest="protection_command", required=True)
    stop = sub.add_parser(
        "stop", help="no new backups; the points stay, or with --delete-data are soft-deleted",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Stop an item's protection: the service takes no new backups of it. Its points stay, or\n"
                    "with --delete-data are soft-deleted (refused in an immutable vault; a guarded vault needs\n"
                    "the guard owner's --approval).",
        epilog="examples:\n  skyvault protection stop laptop --vault laptops --tenant contoso\n"
               "  skyvault protection stop laptop --vault laptops --tenant contoso --delete-data --approval TOKEN")
    stop.add_argument("item")
    vault_arguments(stop)
    stop.add_argument("--delete-data", action="store_true", help="soft-delete every point of the item too")
    stop.add_argument("--approval", help="the guard owner's approval of this operation (multi-user authorization)")
    stop.set_defaults(func=run, deletion_command="stop")
    resume = sub.add_parser(
        "resume", help="take backups of a stopped item again",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Resume a stopped item's protection: its backups are taken again.",
        epilog="example:\n  skyvault protection resume laptop --vault laptops --tenant contoso")
    resume.add_argument("item")
    vault_arguments(resume)
    resume.set_defaults(func=run, deletion_command="resume")


def run(args: argparse.Namespace) -> int:
    from shared.errors import ServiceError
    from shared.service import deletion, vaults

    services = operator_services()
    try:
        vault = vaults.find_vault(services, args.tenant, args.vault)
        if args.deletion_command == "delete":
            point = deletion.delete_point(services, vault, args.point)
            say(f"recovery point {point.id} deleted ({point.deleted_reason}); "
                f"`skyvault undelete {point.id}` restores it until {point.purge_after}")
            args.output.summary(point=point.to_doc())
        elif args.deletion_command == "undelete":
            point = deletion.undelete_point(services, vault, args.point)
            say(f"recovery point {point.id} is restorable again")
            args.output.summary(point=point.to_doc())
        elif args.deletion_command == "stop":
            deleted = deletion.stop_protection(services, vault, args.item, args.delete_data, args.approval)
            say(f"protection of {args.item} stopped: no new backups"
                + (f"; {len(deleted)} point(s) soft-deleted" if args.delete_data else "; its points are kept"))
            args.output.summary(item=args.item, protection=Protection.STOPPED, deleted_points=deleted)
        else:
            deletion.resume_protection(services, vault, args.item)
            say(f"protection of {args.item} resumed")
            args.output.summary(item=args.item, protection=Protection.PROTECTED)
    except ServiceError as e:
        raise AgentError(str(e)) from None
    return exitcodes.OK
