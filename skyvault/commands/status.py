"""`skyvault status`: this machine's vault: its redundancy, for GRS its replication lag, and its
items: each one's policy and newest point, and the scheduled backups they missed, listed first."""
from __future__ import annotations

import argparse

from shared.domain import Redundancy
from skyvault import exitcodes, home
from skyvault.commands.common import say
from skyvault.vaultclient import AgentVault


def add_parser(subparsers) -> None:
    status = subparsers.add_parser(
        "status", help="this machine's vault: redundancy, replication lag and missed backups",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="This machine's vault: its redundancy, for GRS its replication lag, and each item's policy\n"
                    "and newest point; the items that missed a scheduled backup are listed first.",
        epilog="examples:\n  skyvault status\n  skyvault status --json")
    status.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    status = AgentVault(home.agent_state()["credentials"]).status()
    if args.json:
        args.output.summary(status=status.to_doc())
        return exitcodes.OK
    say(f"vault {status.name} ({status.vault_id}) of tenant {status.tenant_id}: {status.redundancy}")
    say(f"  first backup: {status.first_backup_at or 'none yet'}")
    replication = status.replication
    if status.redundancy == Redundancy.GRS:
        say(f"  replication lag: {replication.lag_seconds:.1f}s; recovery points not yet geo-protected: "
            f"{replication.points_not_geo_protected}")
    missed = [i for i in status.items if i.missed]
    for item in missed:
        say(f"  MISSED BACKUP: item {item.item} (policy {item.policy}) has no point since its run of "
            f"{item.missed_run}; last point: {item.last_point_at or 'none yet'}")
    if status.items:
        say(f"  items: {len(status.items)}, {len(missed)} missed a backup")
    for item in status.items:
        say(f"    {item.item}: policy {item.policy}, last point {item.last_point_at or 'none yet'}"
            f"{', MISSED ' + item.missed_run if item.missed else ''}")
    if status.items_left_off:
        say(f"  ... and {status.items_left_off} more items not listed (a status lists the first "
            f"{len(status.items)} by name)")
    return exitcodes.OK
