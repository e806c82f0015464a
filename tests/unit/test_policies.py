"""The vault's named policies, item assignments and the retention plan (shared/service/policies.py),
on the in-memory index."""
from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from shared.domain import ItemRecord, RecoveryPoint
from shared.errors import Invalid, NotFound, Refused
from shared.fakes import MemoryIndex
from shared.service import policies, vaults
from tests import inprocess

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
WEEKLY = {"v": 1, "schedule": {"frequency": "weekly", "times": ["02:00"], "weekdays": ["sunday"]},
          "retention": {"weekly": {"weekday": "sunday", "weeks": 4}}}


def daily(days: int) -> dict:
    return {"v": 1, "schedule": {"frequency": "daily", "times": ["02:00"]}, "retention": {"daily": {"days": days}}}


@pytest.fixture
def services(request):
    return inprocess.memory_services(f"policies-{len(request.node.name)}", clock=lambda: NOW)


@pytest.fixture
def vault(services):
    return vaults.create_vault(services, "contoso", "files", "LRS")[0]


def reread(services, vault):
    return services.index.get_vault(vault.tenant_id, vault.id)


def add_point(services, vault, point_id: str, item: str, days_ago: int, state: str = "committed") -> None:
    services.index.create_point(RecoveryPoint(
        id=point_id, vault_id=vault.id, item=item, state=state,
        created_at=(NOW - timedelta(days=days_ago)).isoformat(),
        manifest_blob=f"points/{point_id}/manifest", refs_blob=f"points/{point_id}/refs", chunk_count=1))


def test_create_stores_the_policy_on_the_vault_and_show_lists_the_default_first(services, vault):
    policies.create_policy(services, vault, "weekly", WEEKLY)
    policies.create_policy(services, reread(services, vault), "short", daily(7))

    stored = reread(services, vault)
    assert stored.policies["weekly"] == policies.Policy.from_doc(WEEKLY).to_doc()
    assert list(policies.policies_of(stored)) == ["default", "short", "weekly"]
    assert policies.show_policy(stored, "short").retention.daily.days == 7
    assert policies.show_policy(stored, "default") == policies.DEFAULT_POLICY


def test_the_default_keeps_30_daily_points_of_a_backup_at_21_utc():
    assert policies.DEFAULT_POLICY.to_doc() == {
        "v": 1, "timeZone": "UTC", "schedule": {"frequency": "daily", "times": ["21:00"]},
        "retention": {"daily": {"days": 30}}}


def test_create_works_from_a_stale_read_of_the_vault(services, vault):
    policies.create_policy(services, vault, "a", daily(7))
    policies.create_policy(services, vault, "b", daily(8))  # `vault` still has the old etag
    assert sorted(reread(services, vault).policies) == ["a", "b"]


@pytest.mark.parametrize("name, doc, error, words", [
    ("weekly", daily(3), Refused, "already has a policy named 'weekly'"),
    ("default", daily(3), Refused, "built-in default"),
    ("bad name", daily(3), Invalid, "policy name 'bad name'"),
    ("", daily(3), Invalid, "policy name ''"),
    ("fine", {**daily(3), "retention": {"daily": {"days": 10000}}}, Invalid, "retention.daily.days"),
    ("fine", {"v": 1}, Invalid, "schedule"),
])
def test_a_bad_create_is_refused_and_changes_nothing(services, vault, name, doc, error, words):
    policies.create_policy(services, vault, "weekly", WEEKLY)
    before = reread(services, vault)
    with pytest.raises(error, match=words):
        policies.create_policy(services, before, name, doc)
    assert reread(services, vault) == before


def test_a_vault_holds_at_most_50_policies(services, vault):
    for n in range(policies.MAX_POLICIES):
        policies.create_policy(services, vault, f"p{n}", daily(n + 1))
    with pytest.raises(Refused, match="has 50 policies"):
        policies.create_policy(services, vault, "one-more", daily(1))
    assert len(reread(services, vault).policies) == 50


def test_set_replaces_a_policy_and_refuses_an_unknown_or_the_default(services, vault):
    policies.create_policy(services, vault, "files", daily(7))
    policies.set_policy(services, vault, "files", daily(60))
    assert policies.show_policy(reread(services, vault), "files").retention.daily.days == 60

    before = reread(services, vault)
    with pytest.raises(NotFound, match="no policy named 'other'"):
        policies.set_policy(services, vault, "other", daily(7))
    with pytest.raises(Refused, match="built-in default"):
        policies.set_policy(services, vault, "default", daily(7))
    with pytest.raises(Invalid, match="retention"):
        policies.set_policy(services, vault, "files", {**daily(7), "retention": {}})
    assert reread(services, vault) == before


def test_show_of_an_unknown_policy_is_not_found(vault):
    with pytest.raises(NotFound, match="no policy named 'nope'"):
        policies.show_policy(vault, "nope")


def test_assign_records_the_item_and_reassigns_it(services, vault):
    policies.create_policy(services, vault, "weekly", WEEKLY)
    vault = reread(services, vault)
    first = policies.assign_policy(services, vault, "laptop", "weekly")
    assert (first.id, first.vault_id, first.policy) == ("laptop", vault.id, "weekly")
    assert policies.assign_policy(services, vault, "laptop", "weekly") == first  # idempotent
    policies.assign_policy(services, vault, "laptop", "default")
    assert [(r.id, r.policy) for r in services.index.list_items(vault.id)] == [("laptop", "default")]


class RacingIndex(MemoryIndex):
    """An index where another operator assigns `item` to `policy` just before our first put."""

    def __init__(self, item: str, policy: str):
        super().__init__()
        self.race = (item, policy)

    def put_item(self, record):
        if self.race:
            item, policy = self.race
            self.race = None
            current = self.get_item(record.vault_id, item)
            super().put_item(ItemRecord(id=item, vault_id=record.vault_id, policy=policy) if current is None
                             else replace(current, policy=policy))
        return super().put_item(record)


@pytest.mark.parametrize("assigned_before", [False, True])
def test_assign_that_loses_a_race_reads_again_and_lands(services, vault, assigned_before):
    policies.create_policy(services, vault, "weekly", WEEKLY)
    vault = reread(services, vault)
    racing = RacingIndex("laptop", "default")
    racing.create_vault(replace(vault, etag=None))
    services.index = racing
    if assigned_before:
        racing.race = None
        policies.assign_policy(services, vault, "laptop", "default")
        racing.race = ("laptop", "other")
    assert policies.assign_policy(services, vault, "laptop", "weekly").policy == "weekly"
    assert [(r.id, r.policy) for r in racing.list_items(vault.id)] == [("laptop", "weekly")]


def test_assign_of_an_unknown_policy_or_a_bad_item_is_refused_and_records_nothing(services, vault):
    with pytest.raises(NotFound, match="no policy named 'weekly'"):
        policies.assign_policy(services, vault, "laptop", "weekly")
    with pytest.raises(Invalid, match="item 'a/b'"):
        policies.assign_policy(services, vault, "a/b", "default")
    assert services.index.list_items(vault.id) == []


def test_plan_applies_each_items_policy_to_its_committed_points(services, vault):
    policies.create_policy(services, vault, "short", daily(3))
    vault = reread(services, vault)
    policies.assign_policy(services, vault, "server", "short")
    for n in range(5):
        add_point(services, vault, f"s{n}", "server", days_ago=n)
        add_point(services, vault, f"l{n}", "laptop", days_ago=n * 10)
    add_point(services, vault, "pending", "server", days_ago=0, state="pending")
    add_point(services, vault, "failed", "laptop", days_ago=1, state="failed")

    plans = policies.retention_plan(services, vault, None, NOW)

    assert [(p.item, p.policy_name, p.assigned) for p in plans] == [("laptop", "default", False),
                                                                   ("server", "short", True)]
    laptop, server = plans
    assert [(k.point_id, k.reasons) for k in laptop.decision.keep] == [
        ("l0", ("daily 1 of 30", "latest")), ("l1", ("daily 11 of 30",)), ("l2", ("daily 21 of 30",))]
    assert [p for p, _ in laptop.decision.expire] == ["l3", "l4"]
    assert [k.point_id for k in server.decision.keep] == ["s0", "s1", "s2"]
    assert [p for p, _ in server.decision.expire] == ["s3", "s4"]


def test_a_longer_policy_keeps_the_points_a_shorter_one_expired(services, vault):
    policies.create_policy(services, vault, "files", daily(3))
    vault = reread(services, vault)
    policies.assign_policy(services, vault, "server", "files")
    for n in range(5):
        add_point(services, vault, f"s{n}", "server", days_ago=n)
    assert len(policies.retention_plan(services, vault, "server", NOW)[0].decision.expire) == 2
    policies.set_policy(services, vault, "files", daily(10))
    assert policies.retention_plan(services, reread(services, vault), "server", NOW)[0].decision.expire == ()


def test_plan_of_one_item(services, vault):
    add_point(services, vault, "a0", "a", days_ago=0)
    add_point(services, vault, "b0", "b", days_ago=0)
    policies.assign_policy(services, vault, "c", "default")
    assert [p.item for p in policies.retention_plan(services, vault, "b", NOW)] == ["b"]
    only_assigned = policies.retention_plan(services, vault, "c", NOW)
    assert [(p.item, p.decision.keep, p.decision.expire) for p in only_assigned] == [("c", (), ())]


def test_plan_of_an_unknown_item_is_not_found(services, vault):
    with pytest.raises(NotFound, match="no item 'ghost'"):
        policies.retention_plan(services, vault, "ghost", NOW)


def test_a_point_from_a_fast_agent_clock_counts_as_made_now(services, vault):
    services.index.create_point(RecoveryPoint(
        id="future", vault_id=vault.id, item="a", state="committed",
        created_at=(NOW + timedelta(minutes=5)).isoformat(), manifest_blob="m", refs_blob="r", chunk_count=1))
    add_point(services, vault, "yesterday", "a", days_ago=1)
    (plan,) = policies.retention_plan(services, vault, "a", NOW)
    assert [(k.point_id, k.reasons) for k in plan.decision.keep] == [
        ("future", ("daily 1 of 30", "latest")), ("yesterday", ("daily 2 of 30",))]


def test_stored_policy_documents_are_not_shared_with_callers(services, vault):
    doc = copy.deepcopy(WEEKLY)
    policies.create_policy(services, vault, "weekly", doc)
    doc["retention"]["weekly"]["weeks"] = 99
    assert policies.show_policy(reread(services, vault), "weekly").retention.weekly.weeks == 4
