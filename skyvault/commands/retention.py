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
    plan = sub.add_parser(
        "plan", help="each point: keep (and why) or expire; deletes nothing",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="What each item's policy keeps of its committed points now, and why, and what it would\n"
                    "expire; then the soft-deleted points and when each is purged. Nothing is deleted.",
        epilog="examples:\n  skyvault retention plan --vault laptops --tenant contoso\n"
               "  skyvault retention plan --vault laptops --tenant contoso --item db --json")
    plan.add_argument("--vault", required=True, help="vault name or id")
    plan.add_argument("--tenant", required=True)
    plan.add_argument("--item", help="only this item")
    plan.set_defaults(func=run)
    sweep = sub.add_parser(
        "sweep", help="apply every policy now: expire, purge, collect garbage",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Do the retention timer's work now, as its single instance: end silent runs, expire what\n"
                    "the policies no longer keep, purge soft-deleted points that are due, collect garbage.\n"
                    "Exits BUSY, having done nothing, while another instance sweeps.",
        epilog="examples:\n  skyvault retention sweep\n"
               "  skyvault retention sweep --vault laptops --tenant contoso --json")
    sweep.add_argument("--vault", help="vault name or id (default: every vault)")
    sweep.add_argument("--tenant", help="the vault's tenant (with --vault)")
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
        args.output.emit("item_plan", item=plan.item, policy_name=plan.policy_name, assigned=plan.assigned,
                         decision=plan.decision.to_doc())
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
    due_now = 0
    for point in deleted:
        due = bool(point.purging_at or point.purge_after <= now.isoformat())
        due_now += due
        args.output.emit("soft_deleted", point=point.to_doc(), purged_by_next_sweep=due)
        say(f"  {point.id}  {point.item}  {point.deleted_reason}; "
            + ("purged by the next sweep" if due else f"purged after {point.purge_after}"))
    say(f"plan at {now.isoformat()}: {expiring} point(s) would expire, {due_now} would be purged; "
        f"nothing was deleted")
    args.output.summary(at=now.isoformat(), items=len(plans), expiring=expiring, soft_deleted=len(deleted),
                        purging=due_now)
    return exitcodes.OK


def run_sweep(args: argparse.Namespace) -> int:
    from shared.errors import ServiceError
    from shared.service import retention_sweep, vaults

    services = operator_services()
    try:
        only = [vaults.find_vault(services, args.tenant, args.vault).id] if args.vault else None
    except ServiceError as e:
        raise AgentError(str(e)) from None
    report = retention_sweep.run(services, vault_ids=only)
    if report.busy:
        say(f"nothing done: {report.busy}")
    for done in report.vaults:
        args.output.emit("vault_sweep", vault_sweep=done.as_dict())
        collected = done.gc
        say(f"vault {done.vault_id}: {len(done.ended_runs)} silent run(s) ended, {len(done.expired)} point(s) "
            f"expired, {len(done.purged)} purged"
            + (f"; garbage collection: {collected.condemned} condemned, {collected.revived} revived, "
               f"{collected.deleted} deleted ({collected.bytes_freed} bytes), {collected.orphans_deleted} orphans, "
               f"{collected.waiting} waiting" if collected else "")
            + (f"; blocked: {collected.skipped}" if collected and collected.skipped else "")
            + (f"; deferred: {done.error}" if done.error else ""))
    args.output.summary(busy=report.busy, vaults=len(report.vaults),
                        expired=sum(len(done.expired) for done in report.vaults),
                        purged=sum(len(done.purged) for done in report.vaults))
    return exitcodes.BUSY if report.busy else exitcodes.OK
