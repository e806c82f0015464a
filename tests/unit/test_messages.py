"""The typed messages: parsing names the field that is wrong, signatures cover every field,
answers round-trip, and redeliveries and poison records keep the original text."""
import json

import pytest

from shared import formats, identity, messages
from shared.messages import (ChunkDeclaration, ChunksMessage, CommitMessage, CommitRequest, Credentials,
                             EnrolmentTicket, ItemSchedule, JobView, LookupRequest, MalformedMessage, PointView,
                             Poisoned, Redelivery, ReplicateMessage, RestoreMessage, parse_signed_message)
from tests.unit.signing import SigningMachine, signed_json

_PRIVATE = identity.new_private_key()
KEY = SigningMachine(identity.machine_id_of(identity.public_key_of(_PRIVATE)), _PRIVATE)
PUBLIC = identity.public_key_of(_PRIVATE)
SIG = "A" * 86 + "=="
V = formats.SCHEMA_VERSION
CID = "ab" * 32


def chunks_message(**overrides):
    body = {"v": V, "type": "chunks", "id": "m1", "tenantId": "t1", "vaultId": "v1", "machine": KEY.id,
            "chunks": [{"id": CID, "size": 1000, "md5": "A" * 22 + "=="}]}
    body.update(overrides)
    return body


def test_signed_message_round_trip():
    message = parse_signed_message(signed_json(chunks_message(), KEY), ChunksMessage)
    assert message.signature_matches(PUBLIC) and message.machine == KEY.id
    assert message.chunks == (ChunkDeclaration(CID, 1000, "A" * 22 + "=="),)
    assert parse_signed_message(message.to_json()) == message


def test_the_agents_signature_is_the_wire_signature():
    signed = messages.sign(CommitMessage, KEY.private_key, id="c1", tenant_id="t1", vault_id="v1", machine=KEY.id,
                           point_id="20261125T120000Z-0000abcd", item="laptop", created_at="2026-11-25T12:00:00",
                           chunk_count=3, manifest_chunks=1, stats={"files": 2})
    doc = json.loads(signed.to_json())
    assert "parentPointId" not in doc, "an absent optional field is not sent (nor signed)"
    assert json.loads(signed_json(doc, KEY))["sig"] == signed.sig
    assert parse_signed_message(signed.to_json(), CommitMessage).signature_matches(PUBLIC)


def test_altered_message_fails_signature():
    body = json.loads(signed_json(chunks_message(), KEY))
    body["chunks"][0]["size"] = 2000
    assert not parse_signed_message(json.dumps(body)).signature_matches(PUBLIC)
    other = identity.public_key_of(identity.new_private_key())
    assert not parse_signed_message(signed_json(chunks_message(), KEY)).signature_matches(other)
    body = json.loads(signed_json(chunks_message(), KEY))
    body["machine"] = "cd" * 16  # the machine is signed too
    assert not parse_signed_message(json.dumps(body)).signature_matches(PUBLIC)


@pytest.mark.parametrize("text, error", [
    ("not json", "not JSON"),
    ("[1]", "not a JSON object"),
    (json.dumps({"v": 1}), "schema version"),
    (json.dumps({**chunks_message(), "sig": "0" * 64}), "'sig' has a bad format"),
    (json.dumps({**chunks_message(), "sig": SIG, "machine": "laptop"}), "'machine' has a bad format"),
    (json.dumps({**chunks_message(), "sig": SIG, "type": "nope"}), "unknown message type"),
    (json.dumps({**chunks_message(), "sig": SIG, "vaultId": "../x"}), "'vaultId' has a bad format"),
    (json.dumps({**chunks_message(), "sig": SIG, "vaultId": "v1\n"}), "'vaultId' has a bad format"),
    (json.dumps({**chunks_message(chunks=[]), "sig": SIG}), "not 1 to 256"),
    (json.dumps({**chunks_message(chunks=[{"id": "zz", "size": 100, "md5": "A" * 22 + "=="}]), "sig": SIG}),
     r"chunks\[0\]: field 'id' has a bad format"),
    (json.dumps({**chunks_message(chunks=[{"id": CID, "size": True, "md5": "A" * 22 + "=="}]), "sig": SIG}),
     "'size' must be of type int"),
    (json.dumps({**chunks_message(chunks=[{"id": CID, "size": 10 ** 9, "md5": "A" * 22 + "=="}]), "sig": SIG}),
     "'size' is 1000000000, outside"),
    (json.dumps({**chunks_message()}), "'sig' is missing"),
    (json.dumps({**chunks_message(), "sig": SIG, "extra": 1}), "unknown field 'extra'"),
    ("x" * (formats.MAX_MESSAGE_BYTES + 1), "over"),
])
def test_malformed_messages_are_named(text, error):
    with pytest.raises(MalformedMessage, match=error):
        parse_signed_message(text)


def test_a_message_on_the_wrong_queue_is_refused():
    with pytest.raises(MalformedMessage, match="a 'chunks' message where a 'commit' one belongs"):
        parse_signed_message(signed_json(chunks_message(), KEY), CommitMessage)


def test_too_big_message_is_refused_when_signing():
    many = tuple(ChunkDeclaration(f"{i:064x}", 1000, "A" * 22 + "==") for i in range(600))
    with pytest.raises(MalformedMessage, match="over"):
        messages.sign(ChunksMessage, KEY.private_key, id="m1", tenant_id="t1", vault_id="v1", machine=KEY.id,
                      chunks=many)


def test_full_batch_fits():
    full = tuple(ChunkDeclaration(f"{i:064x}", 8 * 1024 * 1024, "A" * 22 + "==")
                 for i in range(formats.CHUNKS_PER_MESSAGE))
    signed = messages.sign(ChunksMessage, KEY.private_key, id="m1", tenant_id="t1", vault_id="v1", machine=KEY.id,
                           chunks=full)
    assert parse_signed_message(signed.to_json()).signature_matches(PUBLIC)


@pytest.mark.parametrize("doc, error", [
    ({"ids": ["x"]}, r"hex chunk ids; ids\[0\]"),
    ({"ids": [CID] * 1001}, "holds 1001 entries"),
    ({"ids": [CID], "more": 1}, "unknown field 'more'"),
    ({}, "'ids' is missing"),
])
def test_lookup_requests_are_bounded(doc, error):
    with pytest.raises(MalformedMessage, match=error):
        LookupRequest.from_doc(doc)


def test_commit_request_names_the_message_at_fault():
    commit = json.loads(signed_json({"v": V, "type": "commit", "id": "c", "tenantId": "t", "vaultId": "v",
                                     "pointId": "20261125T120000Z-0000abcd", "item": "i", "createdAt": "x",
                                     "chunkCount": 0, "manifestChunks": 0, "stats": {}}, KEY))
    assert CommitRequest.from_doc({"commit": commit}).commit.point_id == "20261125T120000Z-0000abcd"
    with pytest.raises(MalformedMessage, match="'commit': field 'chunkCount' is -1"):
        CommitRequest.from_doc({"commit": {**commit, "chunkCount": -1}})
    with pytest.raises(MalformedMessage, match="'chunks': a 'commit' message where a 'chunks' one belongs"):
        CommitRequest.from_doc({"commit": commit, "chunks": commit})
    with pytest.raises(MalformedMessage, match="no 'commit'"):
        CommitRequest.from_doc({"chunks": commit})


def test_restore_message_and_replicate_message():
    restore = parse_signed_message(signed_json({"v": V, "type": "restore", "id": "job-1", "tenantId": "t",
                                                "vaultId": "v", "pointId": "20261125T120000Z-0000abcd"}, KEY))
    assert isinstance(restore, RestoreMessage) and restore.point_id == "20261125T120000Z-0000abcd"
    replicate = ReplicateMessage("t", "v", blobs=(f"chunks/ab/{CID}",), point_id=None, attempt=2)
    assert ReplicateMessage.parse(replicate.to_json()) == replicate
    with pytest.raises(MalformedMessage, match="outside the vault's layout"):
        ReplicateMessage.parse(json.dumps({"v": 1, "tenantId": "t", "vaultId": "v", "blobs": ["../etc/passwd"],
                                           "pointId": None, "attempt": 0}))
    with pytest.raises(MalformedMessage, match="neither blobs nor a recovery point"):
        ReplicateMessage.parse(ReplicateMessage("t", "v").to_json())


def test_redelivery_and_poison_keep_the_original_text():
    original = signed_json(chunks_message(), KEY)
    assert Redelivery.unwrap(original) == Redelivery(original, 0, "")
    again = Redelivery(original, 3, "region down")
    assert Redelivery.unwrap(again.to_json()) == again
    poisoned = Poisoned("ingest", "bad signature", original, 1, "2026-11-25T12:00:00+00:00")
    assert Poisoned.parse(poisoned.to_json()) == poisoned


def test_answers_round_trip():
    point = PointView(id="20261125T120000Z-0000abcd", vault_id="v1", item="laptop", state="committed",
                      created_at="x", chunk_count=3, stats={"files": 1}, checked_against="20261124T120000Z-0000abcd")
    assert PointView.from_doc(point.to_doc()) == point
    with pytest.raises(MalformedMessage, match="'state' is 'lost'"):
        PointView.from_doc({**point.to_doc(), "state": "lost"})
    job = {"id": "j", "pointId": point.id, "status": "ready", "createdAt": "x", "reason": None,
           "plan": {"regions": [{"region": "primary", "containerUrl": "https://a/b?sig", "complete": True}],
                    "manifestBlob": f"points/{point.id}/manifest", "expiresAt": "y"}}
    assert JobView.from_doc(job).to_doc() == job


ITEM_SCHEDULE = {"item": "db", "policy": "weekly", "timeZone": "Europe/Berlin",
                 "schedule": {"frequency": "weekly", "times": ["06:05", "18:00"], "weekdays": ["monday", "friday"]}}


def test_item_schedule_round_trips():
    assert ItemSchedule.from_doc(ITEM_SCHEDULE).to_doc() == ITEM_SCHEDULE
    daily = {**ITEM_SCHEDULE, "timeZone": "UTC", "schedule": {"frequency": "daily", "times": ["21:00"]}}
    assert ItemSchedule.from_doc(daily).to_doc() == daily


@pytest.mark.parametrize("change, error", [
    (lambda d: d.pop("timeZone"), "field 'timeZone' is missing"),
    (lambda d: d.update(timeZone="Europe/../etc"), "field 'timeZone' has a bad format"),
    (lambda d: d.update(item="bad/name"), "field 'item' has a bad format"),
    (lambda d: d.update(extra=1), "unknown field 'extra'"),
    (lambda d: d["schedule"].update(frequency="hourly"), "'schedule.frequency' is 'hourly'"),
    (lambda d: d["schedule"].update(times=["18:00", "06:05"]), "'schedule.times' must be ascending"),
    (lambda d: d["schedule"].update(times=["1", "2", "3", "4"]), "'schedule.times' holds 4 entries"),
    (lambda d: d["schedule"].pop("weekdays"), "'schedule.weekdays' is missing"),
    (lambda d: d["schedule"].update(frequency="daily"), "'schedule.weekdays' is only for a weekly schedule"),
])
def test_a_malformed_item_schedule_is_refused_naming_the_field(change, error):
    doc = json.loads(json.dumps(ITEM_SCHEDULE))
    change(doc)
    with pytest.raises(MalformedMessage, match=error):
        ItemSchedule.from_doc(doc)


def test_credentials_are_checked():
    doc = {"kind": "skyvault-machine-credentials", "version": 2, "tenantId": "t", "vaultId": "v", "vaultName": "n",
           "redundancy": "GRS", "kdf": {"salt": "AA=="}, "machineId": "ab" * 16, "apiUrl": "https://api",
           "expiresAt": "x", "blobContainerUrl": "https://b"}
    assert Credentials.from_doc(doc).to_doc() == doc
    # saved before agents posted their messages through the API: the queue SAS are left unread
    assert Credentials.from_doc({**doc, "queueUrls": {"ingest": "https://q"}}).to_doc() == doc
    with pytest.raises(MalformedMessage, match="'machineId' is missing"):
        Credentials.from_doc({k: v for k, v in doc.items() if k != "machineId"})
    with pytest.raises(MalformedMessage, match="'redundancy' is 'ZRS'"):
        Credentials.from_doc({**doc, "redundancy": "ZRS"})
    with pytest.raises(MalformedMessage, match="not a Skyvault machine's credentials"):
        Credentials.from_doc({**doc, "kind": "other"})
    with pytest.raises(MalformedMessage, match="key check value"):
        Credentials.from_doc({**doc, "kdf": {"salt": "AA==", "keyCheck": "ab" * 32}})


def test_a_vault_credentials_file_is_an_enrolment_ticket():
    ticket = {"kind": "skyvault-vault-credentials", "version": 2, "tenantId": "t", "vaultId": "v", "vaultName": "n",
              "redundancy": "LRS", "kdf": {"salt": "AA=="}, "apiUrl": "https://api", "ticketId": "ab" * 16,
              "ticketSecret": "cd" * 32, "expiresAt": "x"}
    assert EnrolmentTicket.from_doc(ticket).to_doc() == ticket
    old = {"kind": "skyvault-agent-credentials", "version": 1, "tenantId": "t", "vaultId": "v",
           "signingKey": "0" * 64}
    with pytest.raises(MalformedMessage, match="older version .* ask the vault's operator for a new one"):
        EnrolmentTicket.from_doc(old)
    with pytest.raises(MalformedMessage, match="unknown field 'signingKey'"):
        EnrolmentTicket.from_doc({**ticket, "signingKey": "0" * 64})
    with pytest.raises(MalformedMessage, match="'ticketSecret' has a bad format"):
        EnrolmentTicket.from_doc({**ticket, "ticketSecret": "short"})


@pytest.mark.parametrize("doc, error", [
    ({"path": "a", "type": "socket", "mode": 0, "mtime": 0}, "'type' is 'socket'"),
    ({"path": "a/../b", "type": "dir", "mode": 0, "mtime": 0}, "'path' is not a relative path"),
    ({"path": "/etc", "type": "dir", "mode": 0, "mtime": 0}, "'path' is not a relative path"),
    ({"path": "a", "type": "hardlink", "mode": 0, "mtime": 0, "target": "../x"}, "'target' is not a relative"),
    ({"path": "a", "type": "chardev", "mode": 0o600, "mtime": 0, "major": 1}, "'minor' is missing"),
    ({"path": "a", "type": "fifo", "mode": 0o600, "mtime": 0, "xattrs": {"user.x": "not base64!"}},
     r"xattrs\['user.x'\] is not base64"),
    ({"path": "a", "type": "file", "mode": 0o10000, "mtime": 0, "size": 0}, "'mode' is 4096"),
    ({"path": "a", "type": "file", "mode": 0o644, "mtime": 0, "size": 1, "extents": [["zz", 0, 1]]},
     r"extents\[0\] is not \[chunk id, offset, length\]"),
    ({"path": "a", "type": "dir", "mode": 0o755, "mtime": 0, "target": "x"}, "unknown field 'target'"),
    ({"path": "a", "type": "symlink", "mode": 0o777, "mtime": 0}, "'target' is missing"),
])
def test_bad_manifest_entries_are_named(doc, error):
    with pytest.raises(MalformedMessage, match=error):
        messages.ManifestEntry.from_doc(doc)


def test_manifest_entries_round_trip_what_the_backup_writes():
    for doc in ({"path": "d", "mode": 0o755, "mtime": 1_796_202_950_219_780_371, "type": "dir"},
                {"path": "d/l", "mode": 0o777, "mtime": 1, "type": "symlink", "target": "../x"},
                {"path": "d/f", "mode": 0o644, "mtime": 1, "type": "file", "size": 3, "extents": [[CID, 5, 3]]}):
        assert messages.ManifestEntry.from_doc(doc).to_doc() == doc


def test_a_manifest_root_of_either_version_reads_and_another_is_refused():
    """Version 2 roots may list hard links, FIFOs, devices, owners and attributes; points written
    as version 1 before must keep restoring."""
    root = {"vaultId": "v1", "pointId": "20261125T101500Z-1a2b3c4d", "item": "laptop", "createdAt": "x",
            "sources": ["/home"], "manifestChunks": ["ab" * 32], "stats": {}}
    assert messages.ManifestRoot.from_doc({"version": 2, **root}).to_doc() == {"version": 2, **root}
    assert messages.ManifestRoot.from_doc({"version": 1, **root}).point_id == root["pointId"]
    for version in (3, True, None):
        with pytest.raises(MalformedMessage, match=f"manifest root: unsupported schema version {version!r}"):
            messages.ManifestRoot.from_doc({"version": version, **root})


@pytest.mark.parametrize("body, words", [
    (b'{"ids": [' + b"9" * 5000 + b"]}", "not JSON"),  # int() refuses more than 4,300 digits: ValueError
    (b"[" * 50_000 + b"]" * 50_000, "not JSON"),  # RecursionError
], ids=["a 5,000-digit integer", "50,000 nested arrays"])
def test_a_request_body_json_cannot_parse_is_refused_not_a_crash(body, words):
    with pytest.raises(MalformedMessage, match=words):
        messages.parse_request_body(body)


def test_a_restore_requests_purpose_is_restore_unless_inspect_and_nothing_else():
    from shared.messages import RestoreRequest

    point = "20261125T120000Z-0000abcd"
    assert RestoreRequest("j1", point).to_doc() == {"jobId": "j1", "pointId": point}  # what older agents send
    assert RestoreRequest.from_doc({"jobId": "j1", "pointId": point}).purpose == "restore"
    inspect = RestoreRequest("j1", point, "inspect")
    assert RestoreRequest.from_doc(inspect.to_doc()) == inspect
    with pytest.raises(MalformedMessage, match="'purpose' is 'billing', not one of restore, inspect"):
        RestoreRequest.from_doc({"jobId": "j1", "pointId": point, "purpose": "billing"})
