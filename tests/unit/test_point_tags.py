"""Tags on recovery points (`backup --tag`): the commit message carries them, signed; the
service keeps them on the point and shows them; a bad list is refused naming the field."""
from __future__ import annotations

import json

import pytest

from shared import formats, identity, messages
from shared.domain import container_name
from shared.messages import CommitMessage, MalformedMessage, PointView, parse_signed_message
from tests.unit.signing import SigningMachine, signed_json

_PRIVATE = identity.new_private_key()
KEY = SigningMachine(identity.machine_id_of(identity.public_key_of(_PRIVATE)), _PRIVATE)


def commit_doc(**overrides):
    doc = {"v": formats.SCHEMA_VERSION, "type": "commit", "id": "c1", "tenantId": "t1", "vaultId": "v1",
           "pointId": "20261125T120000Z-0000abcd", "item": "laptop", "createdAt": "2026-11-25T12:00:00+00:00",
           "chunkCount": 3, "manifestChunks": 1, "stats": {"files": 2}}
    doc.update(overrides)
    return doc


def test_tags_are_signed_and_round_trip():
    signed = messages.sign(CommitMessage, KEY.private_key, id="c1", tenant_id="t1", vault_id="v1", machine=KEY.id,
                           point_id="20261125T120000Z-0000abcd", item="laptop", created_at="2026-11-25T12:00:00",
                           chunk_count=3, manifest_chunks=1, stats={}, tags=("daily", "host=laptop-42"))
    doc = json.loads(signed.to_json())
    assert doc["tags"] == ["daily", "host=laptop-42"]
    parsed = parse_signed_message(signed.to_json(), CommitMessage)
    assert parsed.tags == ("daily", "host=laptop-42")
    assert parsed.signature_matches(identity.public_key_of(_PRIVATE))
    doc["tags"] = ["daily"]  # a tag taken away by someone on the way breaks the signature
    assert not parse_signed_message(json.dumps(doc)).signature_matches(identity.public_key_of(_PRIVATE))


def test_a_point_without_tags_sends_no_tags_field():
    signed = messages.sign(CommitMessage, KEY.private_key, id="c1", tenant_id="t1", vault_id="v1", machine=KEY.id,
                           point_id="20261125T120000Z-0000abcd", item="laptop", created_at="2026-11-25T12:00:00",
                           chunk_count=3, manifest_chunks=1, stats={})
    assert "tags" not in json.loads(signed.to_json())  # older services and the vectors see the same bytes
    assert parse_signed_message(signed.to_json(), CommitMessage).tags == ()


@pytest.mark.parametrize("tags, error", [
    ([], "holds 0 entries"),
    ([f"t{i:02}" for i in range(formats.MAX_TAGS + 1)], f"not 1 to {formats.MAX_TAGS}"),
    (["a,b"], "bad tag"),
    (["has space"], "bad tag"),
    (["-leading"], "bad tag"),
    (["x" * 64], "bad tag"),
    ([7], "bad tag"),
    (["b", "a"], "sorted order"),
    (["a", "a"], "distinct"),
    ("daily", "must be of type list"),
])
def test_a_bad_tag_list_is_refused_naming_the_field(tags, error):
    with pytest.raises(MalformedMessage, match="tags") as refused:
        parse_signed_message(signed_json(commit_doc(tags=tags), KEY), CommitMessage)
    assert error in str(refused.value)


def test_the_point_view_shows_tags_and_reads_an_older_services_point_without_them():
    view = PointView(id="20261125T120000Z-0000abcd", vault_id="v1", item="laptop", state="committed",
                     created_at="2026-11-25T12:00:00+00:00", chunk_count=3, tags=("daily",))
    doc = view.to_doc()
    assert doc["tags"] == ["daily"] and PointView.from_doc(doc) == view
    del doc["tags"]
    assert PointView.from_doc(doc).tags == ()


# --- the agent: `backup --tag`, `points --tag` (skyvault.cli.main on the in-process vault) ---

@pytest.fixture
def registered(agent, monkeypatch):
    """This machine is registered to the in-process vault (`points` reads its credentials)."""
    from skyvault import home
    from skyvault.commands import points as points_command

    monkeypatch.setattr(points_command, "AgentVault", lambda creds: agent)
    home.write_json("agent.json", {"credentials": agent.creds})
    return agent


def json_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_backup_tags_its_point_and_points_lists_by_tag(registered, tmp_path, capsys):
    agent = registered
    from skyvault import cli, exitcodes

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    assert cli.main(["backup", str(data), "--item", "laptop", "--tag", "weekly", "--tag", "host=laptop-42",
                     "--tag", "weekly", "--json"]) == exitcodes.OK
    tagged = json_lines(capsys)[-1]
    assert tagged["type"] == "summary" and tagged["tags"] == ["host=laptop-42", "weekly"]
    assert cli.main(["backup", "--item", "laptop"]) == exitcodes.OK
    assert "tags:" not in capsys.readouterr().out

    stored = {p.id: p for p in agent.points()}
    assert stored[tagged["point_id"]].tags == ("host=laptop-42", "weekly")
    assert [p.tags for p in stored.values() if p.id != tagged["point_id"]] == [()]

    assert cli.main(["points", "--tag", "weekly", "--json"]) == exitcodes.OK
    *listed, summary = json_lines(capsys)
    assert [line["point"]["id"] for line in listed] == [tagged["point_id"]] and summary["points"] == 1
    assert listed[0]["point"]["tags"] == ["host=laptop-42", "weekly"]
    assert cli.main(["points", "--tag", "weekly", "--tag", "monthly", "--json"]) == exitcodes.OK
    assert json_lines(capsys) == [{"type": "summary", "command": "points", "points": 0}]
    assert cli.main(["points"]) == exitcodes.OK
    text = capsys.readouterr().out
    assert "[host=laptop-42, weekly]" in text and len(text.splitlines()) == 2


@pytest.mark.parametrize("tags, error", [
    (["a,b"], "tag 'a,b' must be"),
    ([f"t{i:02}" for i in range(formats.MAX_TAGS + 1)], f"at most {formats.MAX_TAGS}"),
])
def test_a_bad_tag_is_refused_before_anything_is_read_or_sent(registered, tmp_path, capsys, tags, error):
    agent = registered
    from skyvault import cli, exitcodes

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    words = [w for tag in tags for w in ("--tag", tag)]
    assert cli.main(["backup", str(data), "--item", "laptop", *words]) == exitcodes.FAILURE
    assert error in capsys.readouterr().err
    assert agent.points() == []
    assert list(agent.services.primary.container(container_name(agent.vault_id)).list()) == []
