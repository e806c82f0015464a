"""The vault status's items and their missed backups (shared/service/agent_api.py item_statuses,
shared/messages.py ItemStatus), read by an agent through the in-process transport and printed
by `skyvault status` through skyvault.cli.main."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from shared.domain import ItemRecord, RecoveryPoint
from shared.formats import MalformedMessage
from shared.messages import STATUS_MAX_ITEMS, ItemStatus, VaultStatus
from shared.service import agent_api, deletion, policies, vaults
from skyvault import cli, exitcodes, home
from skyvault.commands import status as status_command
from skyvault.vaultclient import AgentVault
from tests import inprocess

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)  # the default policy's last run: 1 December, 21:00 UTC
HOURLY_ISH = {"v": 1, "schedule": {"frequency": "daily", "times": ["06:00", "10:00", "11:30"]},
              "retention": {"daily": {"days": 7}}}


@pytest.fixture
def services():
    return inprocess.memory_services("status", clock=lambda: NOW)


@pytest.fixture
def creds(services):
    return inprocess.new_machine(services, "contoso", "files")


def the_vault(services):
    return vaults.find_vault(services, "contoso", "files")


def add_point(services, point_id: str, item: str, created_at: datetime, state: str = "committed") -> None:
    services.index.create_point(RecoveryPoint(
        id=point_id, vault_id=the_vault(services).id, item=item, state=state, created_at=created_at.isoformat(),
        manifest_blob=f"points/{point_id}/manifest", refs_blob=f"points/{point_id}/refs", chunk_count=1))


def agent(services, creds) -> AgentVault:
    return AgentVault(creds, clock=services.clock, transport=inprocess.InProcessTransport(services))


def test_an_agent_reads_each_items_policy_last_point_and_missed_run(services, creds):
    add_point(services, "p1", "docs", datetime(2026, 12, 1, 21, 10, tzinfo=timezone.utc))
    add_point(services, "p2", "photos", datetime(2026, 11, 30, 21, 10, tzinfo=timezone.utc))
    add_point(services, "p3", "photos", datetime(2026, 12, 1, 21, 5, tzinfo=timezone.utc), state="pending")
    policies.create_policy(services, the_vault(services), "often", HOURLY_ISH)
    policies.assign_policy(services, the_vault(services), "db", "often")  # assigned, never backed up
    policies.assign_policy(services, the_vault(services), "mail", "often")
    add_point(services, "p4", "mail", datetime(2026, 12, 2, 10, 2, tzinfo=timezone.utc))

    status = agent(services, creds).status()

    assert [i.to_doc() for i in status.items] == [
        {"item": "db", "policy": "often", "lastPointAt": None, "missed": True,
         "missedRun": "2026-12-02T10:00:00+00:00"},  # 11:30's run is within its hour of grace
        {"item": "docs", "policy": "default", "lastPointAt": "2026-12-01T21:10:00+00:00", "missed": False,
         "missedRun": None},
        {"item": "mail", "policy": "often", "lastPointAt": "2026-12-02T10:02:00+00:00", "missed": False,
         "missedRun": None},
        # a pending point is no backup yet
        {"item": "photos", "policy": "default", "lastPointAt": "2026-11-30T21:10:00+00:00", "missed": True,
         "missedRun": "2026-12-01T21:00:00+00:00"},
    ]
    assert status.items_left_off == 0


def test_an_item_whose_protection_is_stopped_misses_no_backup(services, creds):
    add_point(services, "p1", "photos", datetime(2026, 11, 20, 21, 10, tzinfo=timezone.utc))
    assert agent(services, creds).status().items[0].missed
    deletion.stop_protection(services, the_vault(services), "photos", delete_data=False)
    [item] = agent(services, creds).status().items
    assert not item.missed and item.last_point_at == "2026-11-20T21:10:00+00:00"


def test_a_point_from_a_clock_running_fast_counts_as_made_now(services, creds):
    add_point(services, "p1", "docs", NOW + timedelta(days=3))
    [item] = agent(services, creds).status().items
    assert item.last_point_at == NOW.isoformat() and not item.missed


def test_the_status_lists_at_most_its_bound_of_items_and_counts_the_rest(services, creds):
    vault = the_vault(services)
    for n in range(STATUS_MAX_ITEMS + 2):
        services.index.put_item(ItemRecord(id=f"item-{n:04d}", vault_id=vault.id, policy="default"))
    status = agent(services, creds).status()
    assert len(status.items) == STATUS_MAX_ITEMS and status.items_left_off == 2
    assert status.items[0].item == "item-0000" and status.items[-1].item == f"item-{STATUS_MAX_ITEMS - 1:04d}"


def status_doc(services) -> dict:
    return agent_api.vault_status(services, the_vault(services)).to_doc()


@pytest.mark.parametrize("change, words", [
    (lambda d: d.pop("items"), "items"),
    (lambda d: d.pop("itemsLeftOff"), "itemsLeftOff"),
    (lambda d: d["items"][0].update(missed=False), "disagrees with field 'missedRun'"),
    (lambda d: d["items"][0].update(extra=1), "unknown field 'extra'"),
    (lambda d: d["items"][0].update(policy="no spaces"), "policy"),
    (lambda d: d.update(items=[d["items"][0]] * (STATUS_MAX_ITEMS + 1)), "items"),
])
def test_a_status_answer_is_parsed_strictly(services, creds, change, words):
    policies.assign_policy(services, the_vault(services), "db", "default")
    doc = status_doc(services)
    assert VaultStatus.from_doc(doc).to_doc() == doc
    change(doc)
    with pytest.raises(MalformedMessage, match=words):
        VaultStatus.from_doc(doc)


def test_item_status_round_trips():
    item = ItemStatus(item="db", policy="default", last_point_at=None, missed_run="2026-12-01T21:00:00+00:00")
    assert ItemStatus.from_doc(item.to_doc()) == item and item.missed


@pytest.fixture
def registered(services, creds, tmp_path, monkeypatch):
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "home"))
    home.write_json("agent.json", {"credentials": creds})
    monkeypatch.setattr(status_command, "AgentVault", lambda c: agent(services, c))


def test_skyvault_status_prints_missed_backups_first(services, registered, capsys):
    add_point(services, "p1", "docs", datetime(2026, 12, 1, 21, 10, tzinfo=timezone.utc))
    add_point(services, "p2", "photos", datetime(2026, 11, 30, 21, 10, tzinfo=timezone.utc))

    assert cli.main(["status"]) == exitcodes.OK

    out = capsys.readouterr().out
    assert ("MISSED BACKUP: item photos (policy default) has no point since its run of "
            "2026-12-01T21:00:00+00:00; last point: 2026-11-30T21:10:00+00:00") in out
    assert "items: 2, 1 missed a backup" in out
    assert "docs: policy default, last point 2026-12-01T21:10:00+00:00\n" in out
    assert "MISSED BACKUP: item docs" not in out
    assert out.index("MISSED BACKUP") < out.index("items: 2")


def test_skyvault_status_json_holds_the_items(services, registered, capsys):
    policies.assign_policy(services, the_vault(services), "db", "default")
    assert cli.main(["status", "--json"]) == exitcodes.OK
    [summary] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (summary["type"], summary["command"]) == ("summary", "status")
    doc = summary["status"]
    assert doc["items"] == [{"item": "db", "policy": "default", "lastPointAt": None, "missed": True,
                             "missedRun": "2026-12-01T21:00:00+00:00"}]
    assert doc["itemsLeftOff"] == 0


def test_skyvault_status_says_when_items_were_left_off(services, registered, capsys, monkeypatch):
    monkeypatch.setattr(agent_api, "STATUS_MAX_ITEMS", 1)
    for name in ("a", "b", "c"):
        policies.assign_policy(services, the_vault(services), name, "default")
    assert cli.main(["status"]) == exitcodes.OK
    assert "... and 2 more items not listed" in capsys.readouterr().out
