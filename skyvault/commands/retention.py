"""`skyvault retention plan`: the operator's dry run of retention. For each item of a vault (or
one), what its policy keeps of its committed points now, and why, and what it would expire;
then the soft-deleted points and when each is purged. It only reads: nothing is deleted.

`skyvault retention sweep`: run the retention timer's work now (shared.service.retention_sweep),
over every vault or one, as the single instance."""
from __future__ import annotations

import argparse

from skyvault import exitcodes
from skyvault.commands.common import operator_services, say
from skyvault.vaultclient import AgentError


def add_parser(subparsers) -> None:
    retention = subparsers.add_parser("retention", help="operator: what retention would keep and expire")
    sub = retention.add_subparsers(dest="retention_command", required=True)
    plan = sub.add_parser("plan", help="each point: keep (and why) or expire; deletes nothing")
    plan.add_argument("--vault", required=True, help="vault name or id")
    plan.add_argument("--tenant", required=True)
    plan.add_argument("--item", help="only this item")
    plan.set_defaults(func=run)
    sweep = sub.add_parser("sweep", help="apply every policy now: expire, purge, collect garbage")
    sweep.add_argument("--vault", help="vault name or id (default: every vault)")
    sweep.add_argument("--tenant", help="the vault's tenant (with --vault)")
    sweep.add_argument("--json", action="store_true")
    sweep.set_defaults(func=run_sweep)


def run(args: argparse.Namespace) -> int:
    from shared.errors import ServiceError
    from shared.service import policies, vaults

    services = operator_services()
    now = services.clock()
    try:
        vault = vaults.find_vault(services, args.tenant, args.vault)
        plans = policies.retention_plan(services, vault, args.item, now)
    except ServiceError as e:
        raise AgentError(str(e)) from None
    expiring = 0
    for plan in plans:
        how = "assigned" if plan.assigned else "no assignment: the default"
        say(f"item {plan.item}: policy {plan.policy_name} ({how})")
        rows = [(k.created_at, k.point_id, f"keep    ({', '.join(k.reasons)})") for k in plan.decision.keep]
        rows += [(created_at, point_id, "expire") for point_id, created_at in plan.decision.expire]
        for created_at, point_id, verdict in sorted(rows, key=lambda r: (r[0], r[1]), reverse=True):
            say(f"  {point_id}  {created_at.isoformat()}  {verdict}")
        if not rows:
            say("  (no committed points)")
        expiring += len(plan.decision.expire)
    deleted = sorted((p for p in services.index.list_points(vault.id, args.item) if p.deleted_at),
                     key=lambda p: (p.purge_after or "", p.id))
    if deleted:
        say("soft-deleted (restorable by `skyvault undelete` until purged):")
    for point in deleted:
        due = "purged by the next sweep" if point.purging_at or point.purge_after <= now.isoformat() else \
            f"purged after {point.purge_after}"
        say(f"  {point.id}  {point.item}  {point.deleted_reason}; {due}")
    due_now = sum(1 for p in deleted if p.purging_at or p.purge_after <= now.isoformat())
    say(f"plan at {now.isoformat()}: {expiring} point(s) would expire, {due_now} would be purged; "
        f"nothing was deleted")
    return exitcodes.OK


def run_sweep(args: argparse.Namespace) -> int:
    import json

    from shared.errors import ServiceError
    from shared.service import retention_sweep, vaults

    services = operator_services()
    try:
        only = [vaults.find_vault(services, args.tenant, args.vault).id] if args.vault else None
    except ServiceError as e:
        raise AgentError(str(e)) from None
    report = retention_sweep.run(services, vault_ids=only)
    if args.json:
        say(json.dumps(report.as_dict(), indent=2))
    elif report.busy:
        say(f"nothing done: {report.busy}")
    for done in [] if args.json else report.vaults:
        collected = done.gc
        say(f"vault {done.vault_id}: {len(done.ended_runs)} silent run(s) ended, {len(done.expired)} point(s) "
            f"expired, {len(done.purged)} purged"
            + (f"; garbage collection: {collected.condemned} condemned, {collected.revived} revived, "
               f"{collected.deleted} deleted ({collected.bytes_freed} bytes), {collected.orphans_deleted} orphans, "
               f"{collected.waiting} waiting" if collected else "")
            + (f"; blocked: {collected.skipped}" if collected and collected.skipped else "")
            + (f"; deferred: {done.error}" if done.error else ""))
    return exitcodes.BUSY if report.busy else exitcodes.OK
