"""`skyvault status`: this machine's vault: its redundancy and, for GRS, its replication lag."""
from __future__ import annotations

import argparse
import json

from shared.domain import Redundancy
from skyvault import exitcodes, home
from skyvault.commands.common import say
from skyvault.vaultclient import AgentVault


def add_parser(subparsers) -> None:
    status = subparsers.add_parser("status", help="this machine's vault: redundancy and replication lag")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    status = AgentVault(home.agent_state()["credentials"]).status()
    if args.json:
        say(json.dumps(status.to_doc(), indent=2))
        return exitcodes.OK
    say(f"vault {status.name} ({status.vault_id}) of tenant {status.tenant_id}: {status.redundancy}")
    say(f"  first backup: {status.first_backup_at or 'none yet'}")
    replication = status.replication
    if status.redundancy == Redundancy.GRS:
        say(f"  replication lag: {replication.lag_seconds:.1f}s; recovery points not yet geo-protected: "
            f"{replication.points_not_geo_protected}")
    return exitcodes.OK
