"""`skyvault policy create|show|set|assign`: the operator's commands for a vault's backup
policies, on the service's use cases directly (shared/service/policies.py), as `vault` does.

A policy is given as its JSON document (`--file`, docs/design.md "Retention policies") or, for
a daily one, with flags: `--at` times, `--days`, and optionally `--weeks` on `--weekday`.
A change that shortens retention (`set`, `assign`) is refused in an immutable vault and takes
the guard owner's `--approval` in a guarded one (`skyvault guard`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from shared import jsonfields
from skyvault import exitcodes
from skyvault.commands.common import operator_services, say, vault_arguments
from skyvault.vaultclient import AgentError

def add_parser(subparsers) -> None:
    policy = subparsers.add_parser("policy", help="operator: a vault's backup policies")
    sub = policy.add_subparsers(dest="policy_command", required=True)
    create = sub.add_parser("create", help="add a named policy to a vault")
    create.add_argument("name")
    vault_arguments(create)
    create.add_argument("--file", help="the policy's JSON document")
    create.add_argument("--at", action="append", metavar="HH:MM", help="a daily backup time (up to three)")
    create.add_argument("--days", type=int, help="keep each day's point this many days")
    create.add_argument("--weeks", type=int, help="keep each week's point (on --weekday) this many weeks")
    create.add_argument("--weekday", default="sunday", help="the weekday --weeks keeps (default sunday)")
    create.add_argument("--time-zone", default="UTC", help="IANA zone of the times and days (default UTC)")
    show = sub.add_parser("show", help="one policy, or all of a vault's (the default included)")
    show.add_argument("name", nargs="?")
    vault_arguments(show)
    replace = sub.add_parser("set", help="replace a policy (it applies to existing points too)")
    replace.add_argument("name")
    vault_arguments(replace)
    replace.add_argument("--file", required=True, help="the policy's JSON document")
    replace.add_argument("--approval", help="the guard owner's approval of shorten-retention of policy:NAME")
    assign = sub.add_parser("assign", help="make an item follow a policy")
    assign.add_argument("item")
    assign.add_argument("name", help="policy name ('default' for the built-in one)")
    vault_arguments(assign)
    assign.add_argument("--approval", help="the guard owner's approval of shorten-retention of item:ITEM")
    for parser in (create, show, replace, assign):
        parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The operator's commands only import the service: it costs agents start-up time.
    from shared.errors import ServiceError
    from shared.service import policies, vaults

    commands: dict[str, Callable[..., None]] = {"create": _create, "show": _show, "set": _set, "assign": _assign}
    services = operator_services()
    try:
        vault = vaults.find_vault(services, args.tenant, args.vault)
        commands[args.policy_command](args, services, vault, policies)
    except ServiceError as e:
        raise AgentError(str(e)) from None
    return exitcodes.OK


def read_document(path: str) -> Any:
    try:
        return jsonfields.loads(Path(path).read_bytes())
    except OSError as e:
        raise AgentError(f"cannot read policy file {path}: {e.strerror}") from None
    except ValueError as e:  # UnicodeDecodeError too
        raise AgentError(f"policy file {path} is not JSON: {e}") from None


def _document_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    if args.file is not None:
        if args.at or args.days is not None or args.weeks is not None:
            raise AgentError("give either --file or --at/--days/--weeks, not both")
        return read_document(args.file)
    if not args.at or (args.days is None and args.weeks is None):
        raise AgentError("a policy needs --file, or --at and at least one of --days, --weeks")
    retention: dict[str, Any] = {}
    if args.days is not None:
        retention["daily"] = {"days": args.days}
    if args.weeks is not None:
        retention["weekly"] = {"weekday": args.weekday, "weeks": args.weeks}
    return {"v": 1, "timeZone": args.time_zone, "schedule": {"frequency": "daily", "times": args.at},
            "retention": retention}


def _create(args, services, vault, policies) -> None:
    policy = policies.create_policy(services, vault, args.name, _document_from_flags(args))
    say(f"policy {args.name} created in vault {vault.name}: {json.dumps(policy.to_doc())}")


def _set(args, services, vault, policies) -> None:
    policy = policies.set_policy(services, vault, args.name, read_document(args.file), args.approval)
    say(f"policy {args.name} of vault {vault.name} replaced: {json.dumps(policy.to_doc())}")
    say("it applies to the points its items have: a longer retention keeps them longer now; "
        "points a shorter one no longer keeps expire at the next retention sweep")


def _show(args, services, vault, policies) -> None:
    if args.name is not None:
        say(json.dumps(policies.show_policy(vault, args.name).to_doc(), indent=2))
        return
    for name, policy in policies.policies_of(vault).items():
        marker = "  (built in: items without an assignment)" if name == policies.DEFAULT_POLICY_NAME else ""
        say(f"{name}{marker}\n  {json.dumps(policy.to_doc())}")


def _assign(args, services, vault, policies) -> None:
    policies.assign_policy(services, vault, args.item, args.name, args.approval)
    say(f"item {args.item} of vault {vault.name} now follows policy {args.name}")
