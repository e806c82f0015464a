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

RAW = argparse.RawDescriptionHelpFormatter


def add_parser(subparsers) -> None:
    policy = subparsers.add_parser("policy", help="operator: a vault's backup policies")
    sub = policy.add_subparsers(dest="policy_command", required=True)
    create = sub.add_parser(
        "create", help="add a named policy to a vault", formatter_class=RAW,
        description="Add a named policy to a vault: its JSON document (--file; docs/design.md, \"Retention\n"
                    "policies\"), or a daily one from --at times, --days and optionally --weeks on --weekday.",
        epilog="examples:\n  skyvault policy create nightly --vault laptops --tenant contoso --at 02:00 --days 30\n"
               "  skyvault policy create office --vault laptops --tenant contoso --file office.json")
    create.add_argument("name")
    vault_arguments(create)
    create.add_argument("--file", help="the policy's JSON document")
    create.add_argument("--at", action="append", metavar="HH:MM", help="a daily backup time (up to three)")
    create.add_argument("--days", type=int, help="keep each day's point this many days")
    create.add_argument("--weeks", type=int, help="keep each week's point (on --weekday) this many weeks")
    create.add_argument("--weekday", default="sunday", help="the weekday --weeks keeps (default sunday)")
    create.add_argument("--time-zone", default="UTC", help="IANA zone of the times and days (default UTC)")
    show = sub.add_parser(
        "show", help="one policy, or all of a vault's (the default included)", formatter_class=RAW,
        description="A policy's JSON document, or every policy of the vault by name, the built-in default\n"
                    "(which items without an assignment follow) included.",
        epilog="examples:\n  skyvault policy show nightly --vault laptops --tenant contoso\n"
               "  skyvault policy show --vault laptops --tenant contoso --json")
    show.add_argument("name", nargs="?")
    vault_arguments(show)
    replace = sub.add_parser(
        "set", help="replace a policy (it applies to existing points too)", formatter_class=RAW,
        description="Replace a policy's document; it applies to the points its items have too. Shortening\n"
                    "retention is refused in an immutable vault and needs --approval in a guarded one.",
        epilog="example:\n  skyvault policy set nightly --vault laptops --tenant contoso --file nightly.json")
    replace.add_argument("name")
    vault_arguments(replace)
    replace.add_argument("--file", required=True, help="the policy's JSON document")
    replace.add_argument("--approval", help="the guard owner's approval of shorten-retention of policy:NAME")
    assign = sub.add_parser(
        "assign", help="make an item follow a policy", formatter_class=RAW,
        description="Make an item follow a policy ('default' for the built-in one); a shorter retention than\n"
                    "the item's policy now is refused in an immutable vault and needs --approval in a guarded one.",
        epilog="example:\n  skyvault policy assign laptop nightly --vault laptops --tenant contoso")
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
    args.output.summary(vault_id=vault.id, vault_name=vault.name, policy_name=args.name, policy=policy.to_doc())


def _set(args, services, vault, policies) -> None:
    policy = policies.set_policy(services, vault, args.name, read_document(args.file), args.approval)
    say(f"policy {args.name} of vault {vault.name} replaced: {json.dumps(policy.to_doc())}")
    say("it applies to the points its items have: a longer retention keeps them longer now; "
        "points a shorter one no longer keeps expire at the next retention sweep")
    args.output.summary(vault_id=vault.id, vault_name=vault.name, policy_name=args.name, policy=policy.to_doc())


def _show(args, services, vault, policies) -> None:
    shown = {args.name: policies.show_policy(vault, args.name)} if args.name is not None else \
        policies.policies_of(vault)
    for name, policy in shown.items():
        built_in = name == policies.DEFAULT_POLICY_NAME
        args.output.emit("policy", policy_name=name, built_in=built_in, policy=policy.to_doc())
        if args.name is not None:
            say(json.dumps(policy.to_doc(), indent=2))
        else:
            say(f"{name}{'  (built in: items without an assignment)' if built_in else ''}\n"
                f"  {json.dumps(policy.to_doc())}")
    args.output.summary(vault_id=vault.id, vault_name=vault.name, policies=len(shown))


def _assign(args, services, vault, policies) -> None:
    policies.assign_policy(services, vault, args.item, args.name, args.approval)
    say(f"item {args.item} of vault {vault.name} now follows policy {args.name}")
    args.output.summary(vault_id=vault.id, vault_name=vault.name, item=args.item, policy_name=args.name)
