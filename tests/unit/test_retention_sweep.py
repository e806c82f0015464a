"""The retention sweep on the in-process service with the real agent: ten days of daily backups
under a 7-day policy, swept; an expired point undeleted and restored; the purge and garbage
collection that free storage in both regions; a stopped item; a second instance."""
from __future__ import annotations

import os

from shared.domain import UsageKind, container_name
from shared.service import deletion, policies, retention_sweep, singleton
from skyvault.treedigest import tree_digest
from tests.unit.agentworld import world  # noqa: F401 (a fixture)

DAILY_7 = {"v": 1, "schedule": {"frequency": "daily", "times": ["02:00"]}, "retention": {"daily": {"days": 7}}}


def _ten_days(world, item: str = "laptop") -> tuple[list[str], list, object]:
    """Ten daily backups of `item` under a 7-day policy: the points, the tree's digest at each,
    and the tree."""
    policies.create_policy(world.services, world.vault, "week", DAILY_7)
    policies.assign_policy(world.services, world.vault, item, "week")
    root = world.tree(item, files=1)
    points, digests = [], []
    for day in range(10):
        (root / f"day{day}.bin").write_bytes(os.urandom(150_000))  # each day's own chunks
        points.append(world.backup(item, root))
        digests.append(tree_digest(root))
        world.advance_days(1)
    return points, digests, root


def _bytes(world) -> dict[str, int]:
    """The bytes of the vault's blobs in each region."""
    name = container_name(world.agent.vault_id)
    return {region: sum(account.container(name).properties(b).size for b in account.container(name).list())
            for region, account in world.services.regions().items()}


def test_a_sweep_expires_by_policy_and_an_undeleted_point_restores(world):
    points, digests, root = _ten_days(world)
    report = retention_sweep.run(world.services)
    assert report.busy is None
    [swept] = report.vaults
    # Swept on day 10: the seven days kept are days 4 to 10, so days 0 to 3 expire.
    assert sorted(swept.expired) == sorted(points[:4])
    for pid in points[:4]:
        point = world.services.index.get_point(world.agent.vault_id, pid)
        assert point.deleted_at and "expired by policy week" in point.deleted_reason
    assert retention_sweep.run(world.services).vaults[0].expired == [], "a second sweep changes nothing"

    deletion.undelete_point(world.services, world.vault, points[0])
    assert world.services.index.get_point(world.agent.vault_id, points[0]).live
    assert world.restores(points[0], root, digests[0])


def test_a_purge_after_soft_delete_frees_storage_in_both_regions(world):
    points, _, root = _ten_days(world)
    retention_sweep.run(world.services)
    before = _bytes(world)
    world.advance_days(15)
    retention_sweep.run(world.services)  # purges (the 14 days are over) and condemns
    swept = retention_sweep.run(world.services).vaults[0]  # deletes what was condemned
    after = _bytes(world)
    assert swept.gc.deleted > 0
    for region in ("primary", "secondary"):
        assert after[region] < before[region], region
    assert sum(e.quantity for e in world.usage(UsageKind.CHUNK_PURGED)) == swept.gc.bytes_freed
    assert sorted(e.point_id for e in world.usage(UsageKind.POINT_PURGED)) == sorted(points[:4])
    assert world.restores(points[-1], root)


def test_a_stopped_item_keeps_its_points(world):
    points, _, _ = _ten_days(world)
    deletion.stop_protection(world.services, world.vault, "laptop", delete_data=False)
    assert retention_sweep.run(world.services).vaults[0].expired == []
    assert all(world.services.index.get_point(world.agent.vault_id, p).live for p in points)


def test_a_second_instance_does_nothing_while_the_first_holds_the_lock(world):
    points, _, _ = _ten_days(world)
    locks = world.services.primary.container(retention_sweep.LOCKS_CONTAINER)
    locks.create()
    with singleton.hold(locks, retention_sweep.LOCK_NAME):
        report = retention_sweep.run(world.services)
        assert report.busy and "retention-sweep" in report.busy and report.vaults == []
    assert all(world.services.index.get_point(world.agent.vault_id, p).live for p in points)
    assert len(retention_sweep.run(world.services).vaults[0].expired) == 4, "the lock was released"
