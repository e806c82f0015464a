"""`skyvault points`: the vault's recovery points, of one item or all, as a table or JSON."""
from __future__ import annotations

import argparse
import json

from shared.domain import Redundancy
from skyvault import exitcodes, home
from skyvault.commands.common import human, say
from skyvault.vaultclient import AgentVault


def add_parser(subparsers) -> None:
    points = subparsers.add_parser("points", help="list recovery points")
    points.add_argument("--item")
    points.add_argument("--json", action="store_true")
    points.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    vault = AgentVault(home.agent_state()["credentials"])
    points = vault.points(args.item)
    if args.json:
        say(json.dumps([p.to_doc() for p in points], indent=2))
        return exitcodes.OK
    if not points:
        say("no recovery points")
    geo = vault.creds.get("redundancy") == Redundancy.GRS
    for p in points:
        protection = ("geo-protected" if p.geo_protected_at else "replicating") if geo else ""
        state = "deleted" if p.deleted_at else p.state
        say(f"{p.id}  {p.item:16} {state:9} {protection:13} {p.stats.get('files', 0):>7} files "
            f"{human(p.stats.get('bytes_total', 0)):>10}  {p.created_at}"
            + (f"  ({p.deleted_reason}; undelete until {p.purge_after})" if p.deleted_at else ""))
    return exitcodes.OK
