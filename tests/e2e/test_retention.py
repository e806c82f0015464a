"""Retention end to end on the local stack, its clock moved by days (the stack's ClockOffsetFile,
read by the Functions host, the operator's commands and this agent alike): a week of daily
backups of a GRS vault, a sweep that expires by policy, a soft-deleted point undeleted and
restored, a purge and garbage collection that free storage in both regions (bytes measured
before and after), and a backup that commits and restores while garbage collection runs."""
from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from shared import bootstrap
from shared.domain import SoftDelete, UsageKind, container_name
from shared.service import bills, gc, metering, policies, vaults
from shared.service.context import USAGE_QUEUE, update_vault
from skyvault import cli, exitcodes, home
from skyvault.backup import Backup
from skyvault.cache import Cache
from skyvault.restore import Restore
from skyvault.treedigest import differences, tree_digest
from skyvault.vaultclient import AgentVault
from tests.e2e.support import registered_agent, wait_until

DAY = 86400
THREE_DAYS = {"v": 1, "schedule": {"frequency": "daily", "times": ["21:00"]}, "retention": {"daily": {"days": 3}}}
VAULT = ["--vault", "week", "--tenant", "contoso"]


class World:
    def __init__(self, stack, services, tmp: Path):
        self.offset = Path(stack["settings"][bootstrap.CLOCK_OFFSET_FILE])
        self.services, self.tmp = services, tmp
        path = tmp / "week.json"
        assert cli.main(["vault", "create", "week", "--tenant", "contoso", "--redundancy", "GRS",
                         "--out", str(path)]) == 0
        self.agent = registered_agent(path, clock=bootstrap.offset_clock(str(self.offset)))
        self.cache = Cache(home.home() / "retention-cache.sqlite")

    @property
    def vault(self):
        return vaults.vault_for(self.services, "contoso", self.agent.vault_id)

    def at_day(self, day: float) -> None:
        self.offset.write_text(str(day * DAY))

    def backup(self, root: Path) -> str:
        report = Backup(self.agent, self.cache, "laptop").run([str(root)])
        assert report.state == "committed", report.reason
        wait_until(lambda: self.point(report.point_id).geo_protected_at, what="geo-protection")
        return report.point_id

    def point(self, point_id: str):
        return self.services.index.get_point(self.agent.vault_id, point_id)

    def restores(self, point_id: str, root: Path, digest) -> bool:
        target = self.tmp / f"restore-{point_id}"
        Restore(self.agent).run(point_id, str(target))
        return differences(digest, tree_digest(target / root.name)) == []

    def stored_bytes(self) -> dict[str, int]:
        name = container_name(self.agent.vault_id)
        return {region: sum(account.container(name).properties(b).size for b in account.container(name).list())
                for region, account in self.services.regions().items()}

    def sweep(self, capsys) -> dict:
        """`skyvault retention sweep` of the vault, once the stack's own timer (hourly) is not
        sweeping: a run that finds the lock held is BUSY and does nothing."""
        for _ in range(120):
            capsys.readouterr()
            code = cli.main(["retention", "sweep", *VAULT, "--json"])
            if code != exitcodes.BUSY:
                break
            time.sleep(1)
        assert code == exitcodes.OK
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        [swept] = [line["vault_sweep"] for line in lines if line["type"] == "vault_sweep"]
        return swept

    def metered(self) -> None:
        """Wait until the stack's meter function has taken every usage message."""
        wait_until(lambda: self.services.queue(USAGE_QUEUE).approximate_count() == 0, 60.0,
                   "the usage queue metered")

    def usage(self, kind: str) -> list:
        self.metered()
        return [e for e in self.services.index.list_usage_events(self.agent.vault_id) if e.kind == kind]


@pytest.fixture(scope="module")
def world(stack, services, tmp_path_factory):
    w = World(stack, services, tmp_path_factory.mktemp("retention"))
    yield w
    w.cache.close()
    w.offset.write_text("")


@pytest.fixture(scope="module")
def week(world):
    """Seven daily backups, each adding a file: the points and the tree's digest at each."""
    policies.create_policy(world.services, world.vault, "three-days", THREE_DAYS)
    policies.assign_policy(world.services, world.vault, "laptop", "three-days")
    root = world.tmp / "laptop"
    root.mkdir()
    points, digests = [], []
    for day in range(7):
        world.at_day(day)
        (root / f"day{day}.bin").write_bytes(os.urandom(400_000))
        points.append(world.backup(root))
        digests.append(tree_digest(root))
    return points, digests, root


def test_a_sweep_expires_by_policy_and_an_undeleted_point_restores(world, week, capsys):
    points, digests, root = week
    world.at_day(7)
    [plan] = policies.retention_plan(world.services, world.vault, "laptop", world.services.clock())
    expected = sorted(pid for pid, _ in plan.decision.expire)
    assert expected and points[-1] not in expected
    swept = world.sweep(capsys)
    assert sorted(swept["expired"]) == expected
    day1 = points[1]
    assert day1 in expected and world.point(day1).deleted_at
    with pytest.raises(Exception, match="deleted"):
        Restore(world.agent).run(day1, str(world.tmp / "refused"))
    assert cli.main(["undelete", day1, *VAULT]) == 0
    assert world.restores(day1, root, digests[1])


def test_a_purge_frees_storage_in_both_regions(world, week, capsys):
    points, digests, root = week
    world.at_day(22)  # the first sweep's deletions are 15 days old: past the 14 days of soft delete
    before = world.stored_bytes()
    freed_before = sum(e.quantity for e in world.usage(UsageKind.CHUNK_PURGED) + world.usage(UsageKind.POINT_PURGED))
    first = world.sweep(capsys)
    assert first["purged"] and first["gc"]["condemned"] > 0
    second = world.sweep(capsys)
    assert second["gc"]["deleted"] == first["gc"]["condemned"]
    after = world.stored_bytes()
    freed = sum(e.quantity for e in world.usage(UsageKind.CHUNK_PURGED) + world.usage(UsageKind.POINT_PURGED))
    assert freed - freed_before > 0
    for region in ("primary", "secondary"):
        assert before[region] - after[region] == freed - freed_before, region
    assert world.restores(points[-1], root, digests[-1])


def test_the_bill_meters_the_bytes_in_azurite_and_the_restores_at_zero(world, week, capsys):
    """After backups, a restore, a purge and garbage collection: what the meter counted is what
    Azurite holds, the reconciliation finds no drift, and the bill's storage line prices it."""
    world.metered()
    held = world.stored_bytes()["primary"]
    reading = metering.reconcile(world.services, world.vault)
    assert (reading.measured, reading.metered, reading.drift, reading.pending) == (held, held, 0, 0)
    assert cli.main(["bill", *VAULT, "--json"]) == exitcodes.OK
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [doc] = [line["statement"] for line in lines if line["type"] == "summary"]
    [usage] = doc["usage"]
    assert usage["meteredBytes"] == usage["measuredBytes"] == held
    assert usage["restores"] >= 1 and usage["items"][0]["item"] == "laptop"
    lines = {line["kind"]: line for line in doc["invoice"]["lines"]}
    month = bills.vault_month(world.services, world.vault, world.services.clock().date().replace(day=1),
                              world.services.clock().date())
    today = world.services.clock().date().day - 1
    kept = sum(p.size for p in month.usage.soft_deleted if p.purged_on is None)
    assert month.usage.stored_bytes[today] + kept == held, "the last day's storage is Azurite's bytes"
    assert lines["storage"]["byteDays"] == sum(month.usage.stored_bytes)
    assert lines["protectedInstance"]["itemId"] == "laptop" and lines["protectedInstance"]["daysProtected"] >= 1
    assert (lines["restore"]["amount"], lines["egress"]["amount"]) == ("0.00", "0.00")
    assert lines["restore"]["quantity"] == usage["restores"]
    assert cli.main(["bill", *VAULT, "--csv"]) == exitcodes.OK
    assert capsys.readouterr().out.splitlines()[-1].split(",")[3] == "total"
    assert cli.main(["usage", *VAULT]) == exitcodes.OK
    assert "cost so far" in capsys.readouterr().out


def test_a_backup_running_while_garbage_collection_runs_commits_and_restores(world, week, capsys, monkeypatch):
    """The backup reuses its parent's extents (its cache); before it commits, the parent is
    deleted and purged and two sweeps run. The second waits for the live run; the commit makes
    the condemned chunks live again; nothing the new point references is ever deleted."""
    points, digests, root = week
    # Azurite stamps blobs with its own clock, days behind the stack's: the blobs this backup
    # uploads but declares only in its commit would look days old, orphans to collect.
    monkeypatch.setattr(gc, "ORPHAN_AGE", timedelta(days=365))
    update_vault(world.services, world.vault, lambda v: setattr(v, "soft_delete", SoftDelete.DISABLED) or True)
    world.at_day(24)
    parent = points[-1]
    (root / "new.bin").write_bytes(os.urandom(200_000))
    sweeps = []
    api = world.agent.api

    def sweep_before_commit(method, subpath, *args, **kwargs):
        if subpath == "commits" and not sweeps:
            assert cli.main(["delete", parent, *VAULT]) == 0
            sweeps.extend([world.sweep(capsys), world.sweep(capsys)])
        return api(method, subpath, *args, **kwargs)

    monkeypatch.setattr(world.agent, "api", sweep_before_commit)
    child = world.backup(root)
    assert parent in sweeps[0]["purged"] and sweeps[0]["gc"]["condemned"] > 0
    assert sweeps[1]["gc"]["deleted"] == 0 and sweeps[1]["gc"]["waiting"] == sweeps[0]["gc"]["condemned"]
    world.sweep(capsys), world.sweep(capsys)
    assert world.restores(child, root, tree_digest(root))
