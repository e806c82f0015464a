"""`skyvault policy ...` and `skyvault retention plan` through skyvault.cli.main, on a state folder
of their own whose stack is the in-memory service (bootstrap wires the fakes instead of the
emulators: the commands are what is under test)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from shared import bootstrap
from shared.domain import RecoveryPoint
from shared.service import vaults
from skyvault import cli, exitcodes, home
from tests import inprocess

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
VAULT = ["--vault", "files", "--tenant", "contoso"]


@pytest.fixture
def services(tmp_path, monkeypatch):
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "home"))
    home.write_json("stack.json", {"settings": {}})
    services = inprocess.memory_services("policy-commands", clock=lambda: NOW)
    monkeypatch.setattr(bootstrap, "build_services", lambda settings: services)
    vaults.create_vault(services, "contoso", "files", "LRS")
    return services


def the_vault(services):
    return vaults.find_vault(services, "contoso", "files")


def add_point(services, point_id: str, item: str, days_ago: int) -> None:
    services.index.create_point(RecoveryPoint(
        id=point_id, vault_id=the_vault(services).id, item=item, state="committed",
        created_at=(NOW - timedelta(days=days_ago)).isoformat(), manifest_blob="m", refs_blob="r", chunk_count=1))


def test_create_with_flags_then_show_it(services, capsys):
    assert cli.main(["policy", "create", "short", *VAULT, "--at", "02:00", "--days", "3",
                     "--weeks", "4", "--weekday", "friday"]) == exitcodes.OK
    assert "policy short created" in capsys.readouterr().out
    assert cli.main(["policy", "show", "short", *VAULT]) == exitcodes.OK
    assert json.loads(capsys.readouterr().out) == {
        "v": 1, "timeZone": "UTC", "schedule": {"frequency": "daily", "times": ["02:00"]},
        "retention": {"daily": {"days": 3}, "weekly": {"weekday": "friday", "weeks": 4}}}


def test_create_and_set_from_a_file_and_show_all(services, tmp_path, capsys):
    doc = tmp_path / "policy.json"
    doc.write_text(json.dumps({"v": 1, "schedule": {"frequency": "daily", "times": ["03:00"]},
                               "retention": {"daily": {"days": 7}}}))
    assert cli.main(["policy", "create", "files", *VAULT, "--file", str(doc)]) == exitcodes.OK
    doc.write_text(json.dumps({"v": 1, "schedule": {"frequency": "daily", "times": ["03:00"]},
                               "retention": {"daily": {"days": 90}}}))
    assert cli.main(["policy", "set", "files", *VAULT, "--file", str(doc)]) == exitcodes.OK
    assert "next retention sweep" in capsys.readouterr().out
    assert cli.main(["policy", "show", *VAULT]) == exitcodes.OK
    out = capsys.readouterr().out
    assert out.index("default  (built in") < out.index("files\n")
    assert '"days": 90' in out


@pytest.mark.parametrize("argv, words", [
    (["policy", "create", "p", *VAULT, "--at", "02:00", "--days", "10000"], "retention.daily.days"),
    (["policy", "create", "p", *VAULT, "--days", "3"], "needs --file, or --at"),
    (["policy", "create", "p", *VAULT, "--file", "/nonexistent.json"], "cannot read policy file"),
    (["policy", "show", "nope", *VAULT], "no policy named 'nope'"),
    (["policy", "assign", "laptop", "nope", *VAULT], "no policy named 'nope'"),
    (["policy", "show", "--vault", "other", "--tenant", "contoso"], "no vault named 'other'"),
    (["retention", "plan", *VAULT, "--item", "ghost"], "no item 'ghost'"),
])
def test_a_refusal_is_a_failure_naming_the_problem(services, capsys, argv, words):
    before = the_vault(services)
    assert cli.main(argv) == exitcodes.FAILURE
    assert words in capsys.readouterr().err
    assert the_vault(services) == before
    assert services.index.list_items(before.id) == []


def test_assign_then_plan_prints_each_point_and_deletes_nothing(services, capsys):
    assert cli.main(["policy", "create", "short", *VAULT, "--at", "02:00", "--days", "2"]) == exitcodes.OK
    assert cli.main(["policy", "assign", "server", "short", *VAULT]) == exitcodes.OK
    for n in range(3):
        add_point(services, f"s{n}", "server", days_ago=n)
    add_point(services, "l0", "laptop", days_ago=0)
    capsys.readouterr()

    assert cli.main(["retention", "plan", *VAULT]) == exitcodes.OK

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "item laptop: policy default (no assignment: the default)"
    assert lines[1].startswith("  l0  2026-12-02T12:00:00+00:00  keep    (daily 1 of 30, latest)")
    assert lines[2] == "item server: policy short (assigned)"
    assert lines[3].endswith("keep    (daily 1 of 2, latest)")
    assert lines[4].endswith("keep    (daily 2 of 2)")
    assert lines[5].startswith("  s2  ") and lines[5].endswith("expire")
    assert lines[6] == ("plan at 2026-12-02T12:00:00+00:00: 1 point(s) would expire, 0 would be purged; "
                        "nothing was deleted")
    assert len(services.index.list_points(the_vault(services).id)) == 4


def test_plan_lists_the_soft_deleted_points_and_when_each_is_purged(services, capsys):
    add_point(services, "old", "server", days_ago=20)
    add_point(services, "new", "server", days_ago=1)
    vault = the_vault(services)
    for point_id, days_ago in (("old", 15), ("new", 1)):
        point = services.index.get_point(vault.id, point_id)
        point.deleted_at = (NOW - timedelta(days=days_ago)).isoformat()
        point.deleted_reason = "deleted by an operator"
        point.purge_after = (NOW - timedelta(days=days_ago) + timedelta(days=14)).isoformat()
        services.index.replace_point(point)
    capsys.readouterr()
    assert cli.main(["retention", "plan", *VAULT]) == exitcodes.OK
    out = capsys.readouterr().out
    assert "  old  server  deleted by an operator; purged by the next sweep" in out
    assert "  new  server  deleted by an operator; purged after 2026-12-15T12:00:00+00:00" in out
    assert out.rstrip().endswith("0 point(s) would expire, 1 would be purged; nothing was deleted")
    assert len(services.index.list_points(vault.id)) == 2
