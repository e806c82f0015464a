"""Deleting recovery points: soft delete, undelete, purge, and stopping an item's protection.

Words:
- soft-deleted point: `deleted_at` set (expired by its policy, or deleted by an operator). It is
  not restorable and no policy counts it, but its data stays: `undelete` makes it live again
  until `purge_after`, `soft_delete_days` later (at once when the vault's soft delete is
  disabled). Garbage collection keeps every chunk it references.
- purge: what frees a point's storage. `purging_at` is set first (from then on no undelete,
  and garbage collection no longer reads its reference list), then its two blobs are deleted in
  every region, a usage event records it, and its record is deleted. Its chunks are then free
  for garbage collection (shared/service/gc.py), unless another point references them.
- stop protection: an item takes no new backups (runs.start_run refuses them); with
  `delete_data` its points are soft-deleted too.

Every operation is idempotent, and each step of a purge can be redone after a crash.
"""
from __future__ import annotations

from datetime import timedelta

from shared.domain import (ItemRecord, PointState, Protection, RecoveryPoint, SoftDelete, UsageEvent, UsageKind,
                           Vault, container_name)
from shared.errors import Invalid, NotFound
from shared.ports import BlobNotFound, Conflict
from shared.service import footprint, metering, protection
from shared.service.context import Services, iso_time, update, update_point
from shared.service.policies import DEFAULT_POLICY_NAME, retention_plan

# Points a sweep purges per vault and run; the rest wait for the next run.
PURGE_BATCH = 500


def soft_delete(services: Services, vault: Vault, point: RecoveryPoint, reason: str,
                alone: dict[str, int] | None = None) -> RecoveryPoint:
    """Soft-delete committed or failed `point` with `reason`, purged after the vault's soft-delete
    days (at once if soft delete is disabled). Idempotent: a deleted point keeps its first
    deletion. A pending point is refused: its commit is still deciding it. The usage event
    bills the bytes it alone keeps stored (`alone`, when the caller measured a batch at once)."""
    if point.state == PointState.PENDING:
        raise Invalid(f"recovery point {point.id} is pending: it can be deleted once it is committed or failed")
    now = services.clock()
    keep = timedelta(days=0 if vault.soft_delete == SoftDelete.DISABLED else vault.soft_delete_days)

    def delete(p: RecoveryPoint) -> bool:
        if p.deleted_at is not None:
            return False
        p.deleted_at, p.deleted_reason, p.purge_after = iso_time(now), reason, iso_time(now + keep)
        return True

    point = update_point(services, point, delete) or point
    if point.state == PointState.COMMITTED and point.deleted_at is not None:
        # Sent again by a repeated deletion: a crash may have come between the two writes.
        size = (alone or {}).get(point.id)
        if size is None:
            size = footprint.alone_bytes(services, vault, [point.id])[point.id]
        metering.record(services, vault, [UsageEvent(
            id=f"softdel-{point.id}-{point.deleted_at}", vault_id=vault.id, kind=UsageKind.POINT_SOFT_DELETED,
            quantity=size, at=point.deleted_at, point_id=point.id, item_id=point.item)])
    return point


def delete_point(services: Services, vault: Vault, point_id: str) -> RecoveryPoint:
    """An operator deletes a point (soft delete). In an immutable vault only a point its policy
    no longer keeps may be deleted (its retention has ended)."""
    point = _point(services, vault, point_id)
    if vault.immutability != "disabled" and point.state == PointState.COMMITTED and point.deleted_at is None:
        plan = retention_plan(services, vault, point.item, services.clock())[0]
        kept = {k.point_id: k for k in plan.decision.keep}
        if point.id in kept:
            protection.refuse_if_immutable(
                vault, f"deleting point {point.id}, which its policy keeps ({', '.join(kept[point.id].reasons)})")
    return soft_delete(services, vault, point, "deleted by an operator")


def undelete_point(services: Services, vault: Vault, point_id: str) -> RecoveryPoint:
    """Make soft-deleted `point_id` live again. Refused once its purge began. Idempotent. An
    expired point undeleted is expired again by the next sweep unless its policy changed: the
    operator lengthens the policy, or stops the item's protection, to keep it."""
    point = _point(services, vault, point_id)
    if point.purging_at is not None:
        raise Invalid(f"recovery point {point_id} is being purged since {point.purging_at}: it cannot be undeleted")

    def restore(p: RecoveryPoint) -> bool:
        if p.purging_at is not None:
            raise Invalid(f"recovery point {point_id} is being purged since {p.purging_at}: it cannot be undeleted")
        if p.deleted_at is None:
            return False
        p.deleted_at = p.deleted_reason = p.purge_after = None
        return True

    deleted_at = point.deleted_at
    point = update_point(services, point, restore) or point
    if deleted_at is not None and point.deleted_at is None:
        metering.record(services, vault, [UsageEvent(
            id=f"undel-{point.id}-{deleted_at}", vault_id=vault.id, kind=UsageKind.POINT_UNDELETED, quantity=0,
            at=iso_time(services.clock()), point_id=point.id, item_id=point.item)])
    return point


def purge_due(services: Services, vault: Vault, limit: int = PURGE_BATCH) -> list[str]:
    """Purge up to `limit` soft-deleted points whose `purge_after` has passed, and finish any
    purge a crash interrupted; returns their ids."""
    now = iso_time(services.clock())
    due = [p for p in services.index.list_points(vault.id)
           if p.purging_at is not None or (p.deleted_at is not None and p.purge_after <= now)]
    purged = []
    for point in sorted(due, key=lambda p: p.purge_after or "")[:limit]:
        purge(services, vault, point)
        purged.append(point.id)
    return purged


def purge(services: Services, vault: Vault, point: RecoveryPoint) -> None:
    """Purge soft-deleted `point`: mark it purging, delete its blobs in every region, record the
    usage event, delete its record. Each step is idempotent, so a crash is finished by the next
    sweep."""
    now = iso_time(services.clock())
    point = update_point(services, point, _mark_purging(now))
    if point is None:
        return
    name = container_name(vault.id)
    freed = 0
    for blob in (point.manifest_blob, point.refs_blob):
        try:
            freed += services.primary.container(name).properties(blob).size
        except BlobNotFound:
            pass  # deleted by an earlier attempt
    for account in reversed(list(services.regions().values())):  # the paired region first
        container = account.container(name)
        for blob in (point.manifest_blob, point.refs_blob):
            container.delete(blob)
    metering.record(services, vault, [UsageEvent(
        id=f"purge-{point.id}", vault_id=vault.id, kind=UsageKind.POINT_PURGED,
        quantity=freed, at=point.purging_at, point_id=point.id, item_id=point.item)])
    services.index.delete_point(vault.id, point.id)


def _mark_purging(now: str):
    def mark(p: RecoveryPoint) -> bool:
        if p.purging_at is not None:
            return False
        if p.deleted_at is None:
            raise Invalid(f"recovery point {p.id} is not deleted (it was undeleted): it is not purged")
        p.purging_at = now
        return True

    return mark


def stop_protection(services: Services, vault: Vault, item: str, delete_data: bool,
                    approval: str | None = None) -> list[str]:
    """Stop `item`'s protection: no new backups; its points stay as they are, or with
    `delete_data` are soft-deleted (refused in an immutable vault; needs the guard's approval
    where there is one). Returns the ids of the points it deleted. Idempotent."""
    points = services.index.list_points(vault.id, item)
    record = services.index.get_item(vault.id, item)
    if not points and record is None:
        raise NotFound(f"vault {vault.name} has no item {item!r}")
    if delete_data:
        protection.refuse_if_immutable(vault, f"stopping the protection of {item} with its data deleted")
        protection.authorize(services, vault, protection.Operation.STOP_PROTECTION_DELETE, item, approval)
    stopped = _set_protection(services, vault, item, record, Protection.STOPPED)
    kind = UsageKind.ITEM_REMOVED if delete_data else UsageKind.ITEM_STOPPED
    # Removal may follow a plain stop (same change time): it is later, so it is timed now.
    at = iso_time(services.clock()) if delete_data else stopped.protection_changed_at
    metering.record(services, vault, [UsageEvent(
        id=f"{kind.value.replace('_', '')}-{item}-{stopped.protection_changed_at}", vault_id=vault.id, kind=kind,
        quantity=0, at=at, item_id=item)])
    deleted = []
    if delete_data:
        doomed = [p for p in points if p.state != PointState.PENDING and p.deleted_at is None]
        alone = footprint.alone_bytes(services, vault, [p.id for p in doomed])
        for point in doomed:
            soft_delete(services, vault, point, f"protection of {item} stopped with its data deleted", alone)
            deleted.append(point.id)
    return deleted


def resume_protection(services: Services, vault: Vault, item: str) -> ItemRecord:
    record = services.index.get_item(vault.id, item)
    if record is None and not services.index.list_points(vault.id, item):
        raise NotFound(f"vault {vault.name} has no item {item!r}")
    resumed = _set_protection(services, vault, item, record, Protection.PROTECTED)
    metering.record(services, vault, [UsageEvent(
        id=f"itemresumed-{item}-{resumed.protection_changed_at}", vault_id=vault.id, kind=UsageKind.ITEM_RESUMED,
        quantity=0, at=resumed.protection_changed_at, item_id=item)])
    return resumed


def _set_protection(services: Services, vault: Vault, item: str, record: ItemRecord | None,
                    state: Protection) -> ItemRecord:
    now = iso_time(services.clock())
    if record is None:
        try:
            return services.index.put_item(ItemRecord(id=item, vault_id=vault.id, policy=DEFAULT_POLICY_NAME,
                                                      protection=state, protection_changed_at=now))
        except Conflict:
            record = services.index.get_item(vault.id, item)

    def change(r: ItemRecord) -> bool:
        if r.protection == state:
            return False
        r.protection, r.protection_changed_at = state, now
        return True

    return update(record, change, services.index.put_item,
                  lambda r: services.index.get_item(r.vault_id, r.id)) or record


def _point(services: Services, vault: Vault, point_id: str) -> RecoveryPoint:
    point = services.index.get_point(vault.id, point_id)
    if point is None:
        raise NotFound(f"no recovery point {point_id} in vault {vault.name}")
    return point

