"""`skyvault points`: the vault's recovery points, of one item or all, as a table or, with
--json, one "point" object each (the API's point document) and a summary."""
from __future__ import annotations

import argparse

from shared.domain import Redundancy
from skyvault import exitcodes, home
from skyvault.commands.common import human, say
from skyvault.vaultclient import AgentVault


def add_parser(subparsers) -> None:
    points = subparsers.add_parser(
        "points", help="list recovery points", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="List this machine's vault's recovery points, newest last: state, geo-protection (GRS), files,\n"
                    "size, and for a deleted point until when `skyvault undelete` restores it.",
        epilog="examples:\n  skyvault points\n  skyvault points --item laptop --json\n"
               "  skyvault points --tag release --tag signed   # the points tagged with both")
    points.add_argument("--item", help="only this item's points")
    points.add_argument("--tag", action="append", default=[], metavar="TAG",
                        help="only the points with this tag (repeatable: with every tag given)")
    points.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    vault = AgentVault(home.agent_state()["credentials"])
    points = [p for p in vault.points(args.item) if set(args.tag) <= set(p.tags)]
    if not points:
        say("no recovery points")
    geo = vault.creds.get("redundancy") == Redundancy.GRS
    for p in points:
        args.output.emit("point", point=p.to_doc())
        protection = ("geo-protected" if p.geo_protected_at else "replicating") if geo else ""
        state = "deleted" if p.deleted_at else p.state
        say(f"{p.id}  {p.item:16} {state:9} {protection:13} {p.stats.get('files', 0):>7} files "
            f"{human(p.stats.get('bytes_total', 0)):>10}  {p.created_at}"
            + (f"  [{', '.join(p.tags)}]" if p.tags else "")
            + (f"  ({p.deleted_reason}; undelete until {p.purge_after})" if p.deleted_at else ""))
    args.output.summary(points=len(points))
    return exitcodes.OK
