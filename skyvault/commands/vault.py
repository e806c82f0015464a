"""`skyvault vault create|set-redundancy`: the operator's commands, on the service's handlers
directly (they need the local stack's settings, not an agent's credentials)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from shared.domain import REDUNDANCIES
from skyvault import exitcodes, home
from skyvault.commands.common import say
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


def run(args: argparse.Namespace) -> int:
    return _create(args) if args.vault_command == "create" else _set_redundancy(args)


def _create(args: argparse.Namespace) -> int:
    # The operator's commands only import the service: it costs agents start-up time.
    from shared import bootstrap
    from shared.errors import ServiceError
    from shared.service import vaults

    services = bootstrap.build_services(home.stack_state()["settings"])
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
    from shared import bootstrap
    from shared.errors import ServiceError
    from shared.service import vaults

    services = bootstrap.build_services(home.stack_state()["settings"])
    try:
        vault = vaults.change_redundancy(services, vaults.find_vault(services, args.tenant, args.name),
                                         args.redundancy)
    except ServiceError as e:
        raise AgentError(str(e)) from None
    say(f"vault {vault.name} ({vault.id}) is now {vault.redundancy}")
    return exitcodes.OK
