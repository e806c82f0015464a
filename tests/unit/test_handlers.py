"""The service's handlers on in-memory fakes: ingest, commit, restore, look-ups."""
from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from shared import crypto, errors, formats, identity
from shared.domain import chunk_blob_name, container_name
from shared.fakes import MemoryBlobAccount, MemoryIndex, MemoryQueue
from shared.messages import (UsageMessage, ChunksMessage, CommitMessage, CommitRequest, KeyCheckRequest, LookupRequest,
                             RestoreMessage, parse_signed_message)
from shared.service import agent_api, commit as commit_use_case, ingest, machines, restore, vaults
from shared.service.context import COMMIT_QUEUE, REPLICATE_QUEUE, USAGE_QUEUE, Services
from tests.unit.signing import SigningMachine, register, signed_json

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


# The use cases, given the text and documents an agent sends, parsed as the triggers parse them.

def ingest_text(services, text, vault=None) -> dict:
    return ingest.ingest_chunks(services, parse_signed_message(text, ChunksMessage), vault).as_dict()


def commit_text(services, text):
    return commit_use_case.commit_point(services, parse_signed_message(text, CommitMessage))


def restore_text(services, text):
    return restore.prepare_restore(services, parse_signed_message(text, RestoreMessage))


def commit_http(services, vault, doc) -> dict:
    """POST commits by the vault's (first) machine."""
    machine = services.index.list_machines(vault.id)[0]
    return agent_api.commit_request(services, vault, machine, CommitRequest.from_doc(doc)).to_doc()


def lookup(services, vault, doc) -> dict:
    return agent_api.lookup_chunks(services, vault, LookupRequest.from_doc(doc)).to_doc()


def key_check(services, vault, doc, first=False) -> dict:
    return vaults.record_key_check(services, vault, KeyCheckRequest.from_doc(doc), first).to_doc()


def create_vault(services, tenant, name, redundancy):
    """A vault, and the credentials of a machine registered with it."""
    vault, _ = vaults.create_vault(services, tenant, name, redundancy)
    machine = register(services, vault)
    record = services.index.get_machine(vault.id, machine.id)
    return vault, machines.machine_credentials(services, vault, record).to_doc()


@pytest.fixture(scope="module")
def keys():
    return crypto.derive_keys("unit test passphrase", b"u" * 16)


def _created(queue: MemoryQueue) -> MemoryQueue:
    queue.create()
    return queue


@pytest.fixture
def services():
    queues: dict[str, MemoryQueue] = {}
    return Services(
        index=MemoryIndex(),
        primary=MemoryBlobAccount("primary", utcnow=lambda: NOW),
        queue=lambda name: queues.get(name) or queues.setdefault(name, _created(MemoryQueue(name))),
        api_url="http://api",
        clock=lambda: NOW,
        secondary=MemoryBlobAccount("secondary", utcnow=lambda: NOW),
    )


class Agent:
    """Just enough of an agent to drive the handlers: uploads chunks and signs messages."""

    def __init__(self, services, keys, tenant="contoso", name="laptops", redundancy="LRS"):
        self.vault, _ = vaults.create_vault(services, tenant, name, redundancy)
        self.services, self.keys = services, keys
        self.container = services.primary.container(container_name(self.vault.id))
        self.key = register(services, self.vault)
        record = services.index.get_machine(self.vault.id, self.key.id)
        self.creds = {**machines.machine_credentials(services, self.vault, record).to_doc(),
                      "machineKey": self.key.private_key}

    def upload(self, data: bytes) -> dict:
        cid = crypto.chunk_id(self.keys, data)
        envelope = crypto.encrypt_chunk(self.keys, self.vault.id, cid, data)
        self.container.put(chunk_blob_name(cid), envelope)
        return {"id": cid, "size": len(envelope), "md5": base64.b64encode(hashlib.md5(envelope).digest()).decode()}

    def message(self, **body) -> str:
        return signed_json({"v": formats.SCHEMA_VERSION, "id": "m-" + body.get("type", "x"), "tenantId": self.vault.tenant_id,
                                       "vaultId": self.vault.id, **body}, self.key)

    def point(self, point_id: str, chunk_ids: list[str], parent: str | None = None) -> str:
        name = formats.manifest_blob(point_id)
        self.container.put(name, crypto.seal(self.keys.manifest_key, self.vault.id, name, crypto.frame(b"{}")))
        self.container.put(formats.refs_blob(point_id), formats.encode_refs(sorted(chunk_ids)))
        return self.message(type="commit", pointId=point_id, item="laptop-1", createdAt=NOW.isoformat(),
                            chunkCount=len(chunk_ids), manifestChunks=0, stats={"files": 1},
                            **({"parentPointId": parent} if parent else {}))


POINT = "20261125T120000Z-0000abcd"


def test_create_vault_gives_scoped_credentials(services):
    vault, creds = create_vault(services, "contoso", "laptops", "GRS")
    assert services.index.get_vault("contoso", vault.id).redundancy == "GRS"
    assert "sp=c&" in creds["blobContainerUrl"] and container_name(vault.id) in creds["blobContainerUrl"]
    assert "passphrase" not in json.dumps(creds).lower()
    agent_view = services.primary.container_from_url(creds["blobContainerUrl"])
    agent_view.put("chunks/aa/new", b"x")
    with pytest.raises(PermissionError):
        agent_view.read("chunks/aa/new")
    with pytest.raises(errors.ServiceError, match="already has a vault named"):
        create_vault(services, "contoso", "laptops", "LRS")
    with pytest.raises(errors.ServiceError, match="redundancy"):
        create_vault(services, "contoso", "other", "ZRS")


def test_ingest_verifies_and_indexes_idempotently(services, keys):
    agent = Agent(services, keys)
    declared = [agent.upload(b"chunk one" * 1000), agent.upload(b"chunk two" * 1000)]
    text = agent.message(type="chunks", chunks=declared)
    assert ingest_text(services, text) == {"verified": 2, "rejected": 0, "already": 0}
    records = services.index.get_chunks(agent.vault.id, [d["id"] for d in declared])
    assert {r.state for r in records.values()} == {"verified"}
    assert ingest_text(services, text) == {"verified": 0, "rejected": 0, "already": 2}
    again = services.index.get_chunks(agent.vault.id, [d["id"] for d in declared])
    assert {cid: r.etag for cid, r in again.items()} == {cid: r.etag for cid, r in records.items()}


@pytest.mark.parametrize("tamper, reason", [
    (lambda d: {**d, "size": d["size"] + 1}, "message declares"),
    (lambda d: {**d, "md5": base64.b64encode(b"\0" * 16).decode()}, "MD5"),
])
def test_ingest_rejects_a_chunk_that_contradicts_its_message(services, keys, tamper, reason):
    agent = Agent(services, keys)
    declared = tamper(agent.upload(b"data" * 500))
    ingest_text(services, agent.message(type="chunks", chunks=[declared]))
    record = services.index.get_chunks(agent.vault.id, [declared["id"]])[declared["id"]]
    assert record.state == "rejected" and reason in record.reason


def test_ingest_rejects_a_blob_that_is_not_an_envelope(services, keys):
    agent = Agent(services, keys)
    blob = b"not an envelope at all, just bytes of the right length" * 10
    cid = "ab" * 32
    agent.container.put(chunk_blob_name(cid), blob)
    entry = {"id": cid, "size": len(blob), "md5": base64.b64encode(hashlib.md5(blob).digest()).decode()}
    ingest_text(services, agent.message(type="chunks", chunks=[entry]))
    assert "bad magic" in services.index.get_chunks(agent.vault.id, [cid])[cid].reason


def test_ingest_refuses_forged_foreign_and_missing(services, keys):
    agent = Agent(services, keys)
    declared = agent.upload(b"abc" * 1000)
    other = Agent(services, keys, tenant="fabrikam", name="servers")
    forged = signed_json({"v": formats.SCHEMA_VERSION, "id": "f", "type": "chunks", "tenantId": "contoso",
                          "vaultId": agent.vault.id, "chunks": [declared]},
                         SigningMachine(agent.key.id, identity.new_private_key()))  # its id, another key
    with pytest.raises(formats.BadSignature):
        ingest_text(services, forged)
    foreign = other.message(type="chunks", chunks=[declared])  # signed by another vault's agent
    with pytest.raises(formats.BadSignature):
        ingest_text(services, foreign.replace(other.vault.id, agent.vault.id).replace(
            '"fabrikam"', '"contoso"'))
    with pytest.raises(vaults.UnknownVault):
        ingest_text(services, agent.message(type="chunks", chunks=[declared]).replace(
            agent.vault.id, "0" * 32))
    missing = {**declared, "id": "cd" * 32}
    with pytest.raises(ingest.ChunkNotUploaded):
        ingest_text(services, agent.message(type="chunks", chunks=[missing]))
    assert services.index.get_chunks(agent.vault.id, [declared["id"], missing["id"]]) == {}


def test_ingest_queues_replication_only_for_grs(services, keys):
    lrs, grs = Agent(services, keys, name="lrs"), Agent(services, keys, name="grs", redundancy="GRS")
    ingest_text(services, lrs.message(type="chunks", chunks=[lrs.upload(b"l" * 3000)]))
    assert services.queue(REPLICATE_QUEUE).approximate_count() == 0
    ingest_text(services, grs.message(type="chunks", chunks=[grs.upload(b"g" * 3000),
                                                                         grs.upload(b"h" * 3000)]))
    assert services.queue(REPLICATE_QUEUE).approximate_count() == 1, "one message per ingest message"


def test_commit_waits_for_chunks_then_commits_once(services, keys):
    agent = Agent(services, keys)
    declared = [agent.upload(b"one" * 1000), agent.upload(b"two" * 1000)]
    commit = agent.point(POINT, [d["id"] for d in declared])
    ingest_text(services, agent.message(type="chunks", chunks=declared[:1]))
    pending = commit_text(services, commit)
    assert pending.state == "pending" and pending.commit_checks == 1 and "1 of 2" in pending.reason
    commit_queue = services.queue(COMMIT_QUEUE)
    assert commit_queue.peek() == [], "the re-check is delayed"
    assert commit_queue.approximate_count() == 1
    ingest_text(services, agent.message(type="chunks", chunks=declared[1:]))
    point = commit_text(services, commit)
    assert point.state == "committed" and point.stats["storedBytes"] == sum(d["size"] for d in declared)
    assert services.index.get_vault("contoso", agent.vault.id).first_backup_at is not None
    assert queued_usage(services) == ["chunk_stored", "chunk_stored", "point_committed"]
    replay = commit_text(services, commit)
    assert replay.etag == point.etag
    assert queued_usage(services) == ["chunk_stored", "chunk_stored", "point_committed"], "not sent again"


def queued_usage(services) -> list[str]:
    """The kinds of the usage events queued for the meter (no meter runs here)."""
    return [e.kind for body in services.queue(USAGE_QUEUE).peek()
            for e in UsageMessage.parse(base64.b64decode(body)).events]


def test_ingest_indexes_a_messages_last_chunk_after_all_the_others(services, keys, monkeypatch):
    """Agents wait for a message by looking up its last chunk: it must be indexed last."""
    agent = Agent(services, keys)
    declared = [agent.upload(b"chunk %d " % i * 500) for i in range(20)]
    order = []
    add_chunk = services.index.add_chunk

    def recording(record):
        time.sleep(0.002 if record.id == declared[0]["id"] else 0)  # a slow first chunk
        order.append(record.id)
        return add_chunk(record)

    monkeypatch.setattr(services.index, "add_chunk", recording)
    counts = ingest_text(services, agent.message(type="chunks", chunks=declared))
    assert counts == {"verified": 20, "rejected": 0, "already": 0}
    assert sorted(order) == sorted(d["id"] for d in declared) and order[-1] == declared[-1]["id"]


def test_commit_over_http_answers_at_once_and_hands_pending_points_to_the_queue(services, keys):
    agent = Agent(services, keys)
    declared = [agent.upload(b"one" * 1000), agent.upload(b"two" * 1000)]
    ingest_text(services, agent.message(type="chunks", chunks=declared[:1]))
    request = {"commit": json.loads(agent.point(POINT, [d["id"] for d in declared]))}
    pending = commit_http(services, agent.vault, request)
    assert pending["state"] == "pending" and "1 of 2" in pending["reason"]
    assert services.queue(COMMIT_QUEUE).approximate_count() == 1, "re-checked from the queue"
    ingest_text(services, agent.message(type="chunks", chunks=declared[1:]))
    committed = commit_http(services, agent.vault, request)
    assert committed["state"] == "committed"
    assert commit_http(services, agent.vault, request) == committed, "idempotent"


def test_commit_over_http_verifies_the_last_chunks_it_carries(services, keys):
    agent = Agent(services, keys)
    declared = [agent.upload(b"one" * 1000), agent.upload(b"two" * 1000)]
    request = {"commit": json.loads(agent.point(POINT, [d["id"] for d in declared])),
               "chunks": json.loads(agent.message(type="chunks", chunks=declared))}
    assert commit_http(services, agent.vault, request)["state"] == "committed"
    records = services.index.get_chunks(agent.vault.id, [d["id"] for d in declared])
    assert {r.state for r in records.values()} == {"verified"} and len(records) == 2
    assert services.queue(COMMIT_QUEUE).approximate_count() == 0


def test_commit_over_http_refuses_another_vaults_forged_or_malformed_message(services, keys):
    agent, other = Agent(services, keys), Agent(services, keys, name="desktops")
    message = json.loads(agent.point(POINT, []))
    with pytest.raises(errors.Forbidden, match="not for vault"):
        commit_http(services, other.vault, {"commit": message})
    with pytest.raises(errors.Forbidden, match="signature"):
        commit_http(services, agent.vault, {"commit": {**message, "chunkCount": 5}})
    with pytest.raises(errors.ServiceError, match="pointId"):
        commit_http(services, agent.vault, {"commit": {**message, "pointId": "../x"}})
    with pytest.raises(errors.ServiceError, match="no 'commit'"):
        commit_http(services, agent.vault, {"chunks": message})
    never = {"id": "ab" * 32, "size": 100, "md5": "A" * 22 + "=="}
    with pytest.raises(errors.ServiceError, match="not uploaded"):
        commit_http(services, agent.vault, {
            "commit": message, "chunks": json.loads(agent.message(type="chunks", chunks=[never]))})
    assert services.index.get_point(agent.vault.id, POINT) is None


def test_commit_of_chunks_that_never_come_fails_after_its_checks(services, keys, monkeypatch):
    monkeypatch.setattr(commit_use_case, "COMMIT_MAX_CHECKS", 3)
    agent = Agent(services, keys)
    never = "ab" * 32  # never uploaded (one uploaded but not declared is adopted: test_repair)
    commit = agent.point(POINT, [never])
    states = [commit_text(services, commit).state for _ in range(4)]
    assert states == ["pending", "pending", "pending", "failed"]
    point = services.index.get_point(agent.vault.id, POINT)
    assert "1 of 1 chunks were never verified after 3 checks" in point.reason
    assert services.queue(COMMIT_QUEUE).approximate_count() == 3


def _recording_lookups(services, monkeypatch) -> list[str]:
    """The chunk ids the handlers ask the index for, from now on."""
    asked: list[str] = []
    get_chunks = services.index.get_chunks

    def recording(vault_id, chunk_ids):
        chunk_ids = list(chunk_ids)
        asked.extend(chunk_ids)
        return get_chunks(vault_id, chunk_ids)

    monkeypatch.setattr(services.index, "get_chunks", recording)
    return asked


def test_commit_against_its_parent_looks_up_only_the_chunks_that_changed(services, keys, monkeypatch):
    agent = Agent(services, keys)
    declared = [agent.upload(b"chunk %d " % i * 500) for i in range(6)]
    ingest_text(services, agent.message(type="chunks", chunks=declared))
    ids, size = [d["id"] for d in declared], {d["id"]: d["size"] for d in declared}
    first = commit_text(services, agent.point(POINT, ids[:4]))
    assert first.state == "committed" and first.chunk_epoch == 0 and first.refs_digest
    asked = _recording_lookups(services, monkeypatch)

    same = commit_text(services, agent.point("20261125T120100Z-00000001", ids[:4], parent=POINT))
    assert same.state == "committed" and asked == [], "an unchanged point looks up no chunk"
    assert same.checked_against == POINT and first.checked_against is None
    assert same.stats["storedBytes"] == first.stats["storedBytes"] == sum(size[i] for i in ids[:4])

    changed = commit_text(services, agent.point("20261125T120200Z-00000002", ids[1:],
                                                          parent="20261125T120100Z-00000001"))
    assert changed.state == "committed"
    assert sorted(asked) == sorted([ids[0], ids[4], ids[5]]), "what it adds, and what it drops for its bytes"
    assert changed.stats["storedBytes"] == sum(size[i] for i in ids[1:])

    unverified = agent.upload(b"not declared yet" * 100)
    pending = commit_text(services, agent.point("20261125T120300Z-00000003",
                                                          [*ids[1:], unverified["id"]],
                                                          parent="20261125T120200Z-00000002"))
    assert pending.state == "pending" and "1 of 6 chunks" in pending.reason


@pytest.mark.parametrize("parent", ["20261125T115900Z-0000dead", "pending", "another vault's"])
def test_commit_checks_every_chunk_when_its_parent_cannot_vouch_for_them(services, keys, monkeypatch, parent):
    agent, other = Agent(services, keys), Agent(services, keys, name="desktops")
    declared = [agent.upload(b"one" * 1000), agent.upload(b"two" * 1000)]
    ingest_text(services, agent.message(type="chunks", chunks=declared))
    ids = [d["id"] for d in declared]
    if parent == "pending":  # a parent still waiting for a chunk
        parent = "20261125T115900Z-0000beef"
        never = agent.upload(b"never declared" * 100)
        assert commit_text(services, agent.point(parent, [never["id"]])).state == "pending"
    elif parent == "another vault's":  # a point id of another vault: not this vault's point
        parent = "20261125T115900Z-0000cafe"
        theirs = other.upload(b"one" * 1000)
        ingest_text(services, other.message(type="chunks", chunks=[theirs]))
        assert commit_text(services, other.point(parent, [theirs["id"]])).state == "committed"
    asked = _recording_lookups(services, monkeypatch)
    point = commit_text(services, agent.point(POINT, ids, parent=parent))
    assert point.state == "committed" and sorted(asked) == sorted(ids) and point.checked_against is None
    assert point.stats["storedBytes"] == sum(d["size"] for d in declared)


def test_a_raised_chunk_epoch_makes_the_next_commit_check_every_chunk(services, keys, monkeypatch):
    """What the scrub does before it marks a chunk damaged: a later point with the same
    references must not commit on its parent's word."""
    agent = Agent(services, keys)
    declared = [agent.upload(b"one" * 1000), agent.upload(b"two" * 1000)]
    ingest_text(services, agent.message(type="chunks", chunks=declared))
    ids = [d["id"] for d in declared]
    assert commit_text(services, agent.point(POINT, ids)).state == "committed"
    vault = vaults.raise_chunk_epoch(services, services.index.get_vault("contoso", agent.vault.id))
    assert vault.chunk_epoch == 1 and services.index.get_vault("contoso", agent.vault.id).chunk_epoch == 1
    record = services.index.get_chunks(agent.vault.id, ids[:1])[ids[0]]
    record.state, record.reason = "damaged", "bad in every region"
    services.index.replace_chunk(record)
    asked = _recording_lookups(services, monkeypatch)
    point = commit_text(services, agent.point("20261125T120100Z-00000001", ids, parent=POINT))
    assert point.state == "failed" and "bad in every region" in point.reason
    assert sorted(asked) == sorted(ids)


def test_commit_refuses_a_malformed_parent_point_id(services, keys):
    agent = Agent(services, keys)
    with pytest.raises(formats.MalformedMessage, match="parentPointId"):
        commit_text(services, agent.point(POINT, [], parent="../../points"))


def test_commit_fails_on_a_rejected_chunk_or_a_short_reference_list(services, keys):
    agent = Agent(services, keys)
    uploaded = agent.upload(b"x" * 3000)
    bad = {**uploaded, "size": uploaded["size"] + 1}
    ingest_text(services, agent.message(type="chunks", chunks=[bad]))
    point = commit_text(services, agent.point(POINT, [bad["id"]]))
    assert point.state == "failed" and "rejected" in point.reason
    other = "20261125T120000Z-0000beef"
    text = agent.point(other, [bad["id"]])
    body = json.loads(text)
    body["chunkCount"] = 3
    body.pop("sig")
    point = commit_text(services, signed_json(body, agent.key))
    assert point.state == "failed" and "declares 3" in point.reason


@pytest.mark.parametrize("layout", ["unsorted", "repeated", "spaces"])
def test_commit_fails_on_a_reference_list_garbage_collection_could_not_read(services, keys, layout):
    """Garbage collection reads lists as sorted fixed-width lines: a commit refuses any other."""
    agent = Agent(services, keys)
    declared = [agent.upload(b"one" * 1000), agent.upload(b"two" * 1000)]
    ingest_text(services, agent.message(type="chunks", chunks=declared))
    text = agent.point(POINT, [d["id"] for d in declared])
    a, b = sorted(d["id"] for d in declared)
    data = {"unsorted": f"{b}\n{a}\n", "repeated": f"{a}\n{a}\n", "spaces": f"{a} {b}\n"}[layout]
    agent.container.put(formats.refs_blob(POINT), data.encode(), overwrite=True)
    point = commit_text(services, text)
    assert point.state == "failed" and "bad point blob: reference list" in point.reason


def test_restore_job_is_free_and_read_only(services, keys):
    agent = Agent(services, keys)
    declared = agent.upload(b"restore me" * 1000)
    ingest_text(services, agent.message(type="chunks", chunks=[declared]))
    commit_text(services, agent.point(POINT, [declared["id"]]))
    usage_before = len(services.index.list_usage_events(agent.vault.id))
    request = agent.message(type="restore", id="job1", pointId=POINT)
    job = restore_text(services, request)
    assert job.status == "ready"
    assert [r["region"] for r in job.plan["regions"]] == ["primary"]
    reader = services.primary.container_from_url(job.plan["regions"][0]["containerUrl"])
    assert reader.read(chunk_blob_name(declared["id"]))
    with pytest.raises(PermissionError):
        reader.put("chunks/zz/evil", b"x")
    assert len(services.index.list_usage_events(agent.vault.id)) == usage_before
    assert restore_text(services, request).etag == job.etag
    unknown = restore_text(services, agent.message(type="restore", id="job2",
                                                                pointId="20260101T000000Z-00000000"))
    assert unknown.status == "failed" and "unknown" in unknown.reason


def test_lookup_key_check_and_request_auth(services, keys):
    agent = Agent(services, keys)
    verified = agent.upload(b"known" * 1000)
    ingest_text(services, agent.message(type="chunks", chunks=[verified]))
    vault = services.index.get_vault("contoso", agent.vault.id)
    answer = lookup(services, vault, {"ids": [verified["id"], "ef" * 32]})
    assert answer == {"verified": [verified["id"]], "rejected": []}
    with pytest.raises(errors.ServiceError, match="hex chunk ids"):
        lookup(services, vault, {"ids": ["x"]})
    with pytest.raises(vaults.KeyMismatch, match="no passphrase yet"):  # only a registration records it
        key_check(services, vault, {"keyCheck": keys.key_check_value()})
    assert key_check(services, vault, {"keyCheck": keys.key_check_value()}, first=True)["status"] == "recorded"
    vault = services.index.get_vault("contoso", agent.vault.id)
    assert key_check(services, vault, {"keyCheck": keys.key_check_value()})["status"] == "match"
    with pytest.raises(vaults.KeyMismatch):
        key_check(services, vault, {"keyCheck": "0" * 64})
    path = f"/api/tenants/contoso/vaults/{vault.id}/points"
    headers = identity.sign_request(agent.key.private_key, agent.key.id, "GET", path, None, b"", NOW)
    assert machines.authenticate(services, "contoso", vault.id, "GET", path, None, b"", headers)[0].id == vault.id
    headers = identity.sign_request(agent.key.private_key, agent.key.id, "GET", path, None, b"", NOW)
    with pytest.raises(errors.Unauthenticated):
        machines.authenticate(services, "contoso", vault.id, "GET", path + "x", None, b"", headers)
    late = identity.sign_request(agent.key.private_key, agent.key.id, "GET", path, None, b"", NOW - timedelta(hours=1))
    with pytest.raises(errors.Unauthenticated, match="clock"):
        machines.authenticate(services, "contoso", vault.id, "GET", path, None, b"", late)


# Bounded work: reference lists streamed, an HTTP commit answered within its budget.

def _recording_reads(monkeypatch) -> list[tuple[str, int | None]]:
    """(blob, bytes asked) of every read of a reference list from now on."""
    from shared.fakes import MemoryBlobContainer
    reads: list[tuple[str, int | None]] = []
    read = MemoryBlobContainer.read

    def recording(self, name, offset=0, length=None):
        data = read(self, name, offset, length)
        if name.endswith("/refs"):
            reads.append((name, len(data)))
        return data

    monkeypatch.setattr(MemoryBlobContainer, "read", recording)
    return reads


def test_commit_refuses_a_reference_list_of_another_length_without_reading_it(services, keys, monkeypatch):
    agent = Agent(services, keys)
    declared = [agent.upload(b"chunk %d " % i * 500) for i in range(3)]
    ingest_text(services, agent.message(type="chunks", chunks=declared))
    commit = agent.point(POINT, [d["id"] for d in declared])
    services.primary.container(container_name(agent.vault.id)).put(
        formats.refs_blob(POINT), formats.encode_refs(sorted(d["id"] for d in declared)[:2]), overwrite=True)
    reads = _recording_reads(monkeypatch)
    point = commit_text(services, commit)
    assert point.state == "failed" and point.reason == "reference list holds 2 chunks, the commit declares 3"
    assert reads == [], "the size said it: nothing of the list was read"


def test_commit_streams_its_and_its_parents_reference_lists_a_page_at_a_time(services, keys, monkeypatch):
    from shared import refs
    monkeypatch.setattr(refs, "PAGE_LINES", 4)
    monkeypatch.setattr(commit_use_case, "REFS_QUERY_BATCH", 3)
    agent = Agent(services, keys)
    declared = [agent.upload(b"chunk %d " % i * 50) for i in range(30)]
    for start in range(0, 30, 10):
        ingest_text(services, agent.message(type="chunks", chunks=declared[start:start + 10]))
    ids, size = [d["id"] for d in declared], {d["id"]: d["size"] for d in declared}
    reads = _recording_reads(monkeypatch)
    asked = _recording_lookups(services, monkeypatch)
    first = commit_text(services, agent.point(POINT, ids[:20]))
    assert first.state == "committed" and first.stats["storedBytes"] == sum(size[i] for i in ids[:20])
    assert first.refs_digest == hashlib.sha256(formats.encode_refs(sorted(ids[:20]))).hexdigest()
    assert sorted(asked) == sorted(ids[:20])
    asked.clear()
    second = commit_text(services, agent.point("20261125T120100Z-00000001", ids[5:], parent=POINT))
    assert second.state == "committed" and second.checked_against == POINT
    assert second.stats["storedBytes"] == sum(size[i] for i in ids[5:])
    assert sorted(asked) == sorted(ids[:5] + ids[20:]), "what it drops, for their bytes, and what it adds"
    assert reads and max(n for _, n in reads) <= 4 * formats.REF_LINE, "never more than a page at once"
    assert {name for name, _ in reads} == {formats.refs_blob(POINT), formats.refs_blob("20261125T120100Z-00000001")}


def test_commit_checks_everything_when_its_parents_list_does_not_match_its_digest(services, keys, monkeypatch):
    agent = Agent(services, keys)
    declared = [agent.upload(b"chunk %d " % i * 500) for i in range(4)]
    ingest_text(services, agent.message(type="chunks", chunks=declared))
    ids = sorted(d["id"] for d in declared)
    assert commit_text(services, agent.point(POINT, ids[:3])).state == "committed"
    services.primary.container(container_name(agent.vault.id)).put(  # changed behind its digest
        formats.refs_blob(POINT), formats.encode_refs(ids[:2]), overwrite=True)
    asked = _recording_lookups(services, monkeypatch)
    point = commit_text(services, agent.point("20261125T120100Z-00000001", ids[1:], parent=POINT))
    assert point.state == "committed" and point.checked_against is None
    assert set(ids[1:]) <= set(asked)
    assert point.stats["storedBytes"] == sum(d["size"] for d in declared if d["id"] in ids[1:])


def test_an_http_commit_out_of_time_answers_pending_and_the_commit_queue_finishes_it(services, keys, monkeypatch):
    monkeypatch.setattr(agent_api, "HTTP_COMMIT_BUDGET_S", -1)  # already spent: the check stops at once
    agent = Agent(services, keys)
    declared = [agent.upload(b"chunk %d " % i * 500) for i in range(3)]
    ingest_text(services, agent.message(type="chunks", chunks=declared))
    request = {"commit": json.loads(agent.point(POINT, [d["id"] for d in declared]))}
    answer = commit_http(services, agent.vault, request)
    assert answer["state"] == "pending" and "continued from the commit queue" in answer["reason"]
    asked = _recording_lookups(services, monkeypatch)
    assert commit_http(services, agent.vault, request) == answer, "the queue has it: answered at once"
    assert asked == []
    queued = services.queue(COMMIT_QUEUE).receive(10, 60)
    assert len(queued) == 1 and services.index.get_point(agent.vault.id, POINT).commit_checks == 0
    assert commit_text(services, base64.b64decode(queued[0].body).decode()).state == "committed"
    assert sorted(asked) == sorted(d["id"] for d in declared)
