"""`skyvault delete|undelete`, `skyvault protection stop|resume` and `skyvault retention sweep`
through skyvault.cli.main, on a state folder whose stack is the in-memory service; and `points`
showing a deleted point to the agent."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared import bootstrap
from shared.domain import Immutability, RecoveryPoint
from shared.service import retention_sweep, singleton, vaults
from shared.service.context import update_vault
from skyvault import cli, exitcodes, home
from skyvault.commands import points as points_command
from skyvault.vaultclient import ApiError
from tests import inprocess

PASSPHRASE = "deletion commands test passphrase"


class Clock:
    def __init__(self):
        self.now = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


VAULT = ["--vault", "files", "--tenant", "contoso"]
POINT = "20261201T120000Z-0000abcd"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def services(tmp_path, monkeypatch, clock):
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "home"))
    home.write_json("stack.json", {"settings": {}})
    services = inprocess.memory_services("deletion-commands", clock=clock)
    monkeypatch.setattr(bootstrap, "build_services", lambda settings: services)
    vault, _ = vaults.create_vault(services, "contoso", "files", "LRS")
    services.index.create_point(RecoveryPoint(
        id=POINT, vault_id=vault.id, item="laptop", state="committed",
        created_at=(clock.now - timedelta(days=1)).isoformat(), manifest_blob="m", refs_blob="r", chunk_count=1))
    return services


def point(services) -> RecoveryPoint:
    return services.index.get_point(vaults.find_vault(services, "contoso", "files").id, POINT)


def test_delete_then_undelete(services, capsys):
    assert cli.main(["delete", POINT, *VAULT]) == exitcodes.OK
    out = capsys.readouterr().out
    assert "deleted (deleted by an operator)" in out and "2026-12-16T12:00:00+00:00" in out, "14 days of soft delete"
    assert point(services).deleted_at is not None
    assert cli.main(["undelete", POINT, *VAULT]) == exitcodes.OK
    assert "restorable again" in capsys.readouterr().out and point(services).live


def test_deleting_an_unknown_point_fails_and_names_it(services, capsys):
    assert cli.main(["delete", "20261201T120000Z-0000ffff", *VAULT]) == exitcodes.FAILURE
    assert "no recovery point 20261201T120000Z-0000ffff in vault files" in capsys.readouterr().err


def test_an_immutable_vault_refuses_deleting_a_point_its_policy_keeps(services, capsys):
    vault = vaults.find_vault(services, "contoso", "files")
    update_vault(services, vault, lambda v: setattr(v, "immutability", Immutability.LOCKED) or True)
    assert cli.main(["delete", POINT, *VAULT]) == exitcodes.FAILURE
    assert "immutable" in capsys.readouterr().err and point(services).live


def test_stop_protection_keeps_or_deletes_the_points(services, capsys):
    assert cli.main(["protection", "stop", "laptop", *VAULT]) == exitcodes.OK
    assert "its points are kept" in capsys.readouterr().out and point(services).live
    assert cli.main(["protection", "stop", "laptop", *VAULT, "--delete-data"]) == exitcodes.OK
    assert "1 point(s) soft-deleted" in capsys.readouterr().out
    assert "protection of laptop stopped" in point(services).deleted_reason
    assert cli.main(["protection", "resume", "laptop", *VAULT]) == exitcodes.OK
    assert "resumed" in capsys.readouterr().out


def test_retention_sweep_now_and_busy_while_another_instance_sweeps(services, capsys, clock):
    assert cli.main(["delete", POINT, *VAULT]) == exitcodes.OK
    clock.now += timedelta(days=15)
    locks = services.primary.container(retention_sweep.LOCKS_CONTAINER)
    locks.create()
    with singleton.hold(locks, retention_sweep.LOCK_NAME):
        assert cli.main(["retention", "sweep", *VAULT]) == exitcodes.BUSY
        assert "nothing done" in capsys.readouterr().out and point(services) is not None
    assert cli.main(["retention", "sweep", *VAULT]) == exitcodes.OK
    assert "1 purged" in capsys.readouterr().out and point(services) is None


def test_points_shows_a_deleted_point_and_until_when(services, capsys, monkeypatch):
    assert cli.main(["delete", POINT, *VAULT]) == exitcodes.OK
    vault = vaults.find_vault(services, "contoso", "files")
    agent = inprocess.InProcessVault(vaults.issue_ticket(services, vault).to_doc(), services, PASSPHRASE)
    creds = agent.creds
    monkeypatch.setattr(points_command, "AgentVault", lambda creds: agent)
    monkeypatch.setattr(home, "agent_state", lambda: {"credentials": creds})
    capsys.readouterr()
    assert cli.main(["points"]) == exitcodes.OK
    line = capsys.readouterr().out.strip()
    assert POINT in line and " deleted " in line and "undelete until 2026-12-16" in line


def test_agent_credentials_can_delete_nothing(services):
    """Deleting is the operator's: an agent's SAS cannot delete a blob, and no API route of the
    agent's deletes a point."""
    vault = vaults.find_vault(services, "contoso", "files")
    agent = inprocess.InProcessVault(vaults.issue_ticket(services, vault).to_doc(), services, PASSPHRASE)
    container = services.primary.container_from_url(agent.creds["blobContainerUrl"])
    container.put("chunks/aa/" + "aa" * 32, b"x")
    with pytest.raises(PermissionError):
        container.delete("chunks/aa/" + "aa" * 32)
    for method, subpath in (("DELETE", f"points/{POINT}"), ("POST", f"points/{POINT}/delete"),
                            ("POST", f"points/{POINT}/undelete"), ("DELETE", f"runs/{POINT}")):
        with pytest.raises(ApiError) as refused:
            agent.api(method, subpath)
        assert refused.value.status in (404, 405), (method, subpath, refused.value)
    assert point(services).live
