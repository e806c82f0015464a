"""The service's side of the chunk lifecycle's repair path, on fakes (docs/design.md, "Chunk
lifecycle"): adoption of chunks no message declared, replacements of rejected or damaged chunks."""
from __future__ import annotations

import base64
import hashlib

import pytest

from shared import crypto
from shared.domain import ChunkState, chunk_blob_name, replacement_blob_name
from shared.formats import MalformedMessage
from shared.messages import ChunkDeclaration, ReplicateMessage
from shared.service import commit as commit_use_case
from shared.service.context import REPLICATE_QUEUE
from shared.service.ingest import ChunkNotUploaded
from tests.unit import test_handlers
from tests.unit.test_handlers import POINT, Agent, commit_text, ingest_text

services, keys = test_handlers.services, test_handlers.keys  # the handler tests' fixtures


def envelope_of(agent: Agent, data: bytes) -> tuple[str, bytes]:
    cid = crypto.chunk_id(agent.keys, data)
    return cid, crypto.encrypt_chunk(agent.keys, agent.vault.id, cid, data)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_a_declaration_has_size_and_md5_together_or_neither():
    cid = "ab" * 32
    assert ChunkDeclaration.from_doc({"id": cid}).adopted
    with pytest.raises(MalformedMessage, match="'size' and 'md5' go together"):
        ChunkDeclaration.from_doc({"id": cid, "size": 100})
    with pytest.raises(MalformedMessage, match="not a replacement of chunk"):
        ChunkDeclaration.from_doc({"id": cid, "blob": replacement_blob_name("cd" * 32, "0" * 16)})
    with pytest.raises(MalformedMessage, match="blob"):
        ChunkDeclaration.from_doc({"id": cid, "blob": chunk_blob_name(cid)})


def test_ingest_adopts_a_chunk_from_its_blobs_properties(services, keys):
    agent = Agent(services, keys)
    declared = agent.upload(b"adopted chunk" * 1000)
    assert ingest_text(services, agent.message(type="chunks", chunks=[{"id": declared["id"]}]))["verified"] == 1
    record = services.index.get_chunks(agent.vault.id, [declared["id"]])[declared["id"]]
    assert (record.state, record.size, record.content_md5) == ("verified", declared["size"], declared["md5"])
    with pytest.raises(ChunkNotUploaded):
        ingest_text(services, agent.message(type="chunks", chunks=[{"id": "ef" * 32}]))
    tiny = "cd" * 32
    agent.container.put(chunk_blob_name(tiny), b"SKV1")
    ingest_text(services, agent.message(type="chunks", chunks=[{"id": tiny}]))
    assert "not the size of a chunk envelope" in services.index.get_chunks(agent.vault.id, [tiny])[tiny].reason


def test_a_commit_adopts_the_chunks_no_message_declared(services, keys):
    """An ingest message lost or poisoned: the commit, checking again, finds the blobs itself."""
    agent = Agent(services, keys)
    declared = [agent.upload(b"one" * 5000), agent.upload(b"two" * 5000)]
    text = agent.point(POINT, [d["id"] for d in declared])
    for check in range(commit_use_case.ADOPT_AFTER_CHECKS):
        assert commit_text(services, text).state == "pending", f"check {check} waits for ingest"
    point = commit_text(services, text)
    assert point.state == "committed"
    assert point.stats["storedBytes"] == sum(d["size"] for d in declared)


@pytest.fixture
def rejected(services, keys):
    """A GRS vault's chunk whose declaration contradicted its blob, and its plaintext."""
    agent = Agent(services, keys, redundancy="GRS")
    data = b"rejected, then stored again" * 2000
    declared = agent.upload(data)
    ingest_text(services, agent.message(type="chunks", chunks=[{**declared, "size": declared["size"] + 1}]))
    assert services.index.get_chunks(agent.vault.id, [declared["id"]])[declared["id"]].state == "rejected"
    return agent, declared["id"], data


def upload_replacement(agent: Agent, cid: str, envelope: bytes, nonce: str = "0123456789abcdef") -> dict:
    name = replacement_blob_name(cid, nonce)
    agent.container.put(name, envelope, md5=hashlib.md5(envelope).digest())
    return {"id": cid, "size": len(envelope), "md5": md5_b64(envelope), "blob": name}


def test_a_replacement_is_promoted_over_the_chunks_blob(services, rejected):
    agent, cid, data = rejected
    _, envelope = envelope_of(agent, data)
    entry = upload_replacement(agent, cid, envelope)
    text = agent.message(type="chunks", chunks=[entry])
    services.queue(REPLICATE_QUEUE).receive(32, 30)  # what the rejected declaration queued
    assert ingest_text(services, text) == {"verified": 1, "rejected": 0, "already": 0}
    record = services.index.get_chunks(agent.vault.id, [cid])[cid]
    assert (record.state, record.generation, record.reason, record.size) == ("verified", 1, None, len(envelope))
    assert agent.container.read(chunk_blob_name(cid)) == envelope
    assert list(agent.container.list(chunk_blob_name(cid) + ".")) == [], "the replacement is deleted"
    replicate = [ReplicateMessage.parse(base64.b64decode(m.body).decode())
                 for m in services.queue(REPLICATE_QUEUE).receive(32, 30)]
    assert [m.blobs for m in replicate] == [(chunk_blob_name(cid),)], "the new copy goes to the paired region"
    assert ingest_text(services, text) == {"verified": 0, "rejected": 0, "already": 1}, "a replay changes nothing"
    assert services.index.get_chunks(agent.vault.id, [cid])[cid].etag == record.etag


def test_a_replacement_that_fails_verification_changes_nothing(services, rejected):
    agent, cid, data = rejected
    before = agent.container.read(chunk_blob_name(cid))
    garbage = b"not this chunk's envelope" * 100
    entry = upload_replacement(agent, cid, garbage)
    ingest_text(services, agent.message(type="chunks", chunks=[entry]))
    assert services.index.get_chunks(agent.vault.id, [cid])[cid].state == "rejected"
    assert agent.container.read(chunk_blob_name(cid)) == before
    assert list(agent.container.list(chunk_blob_name(cid) + ".")) == []


def test_a_promotion_interrupted_after_the_overwrite_completes_on_redelivery(services, rejected, monkeypatch):
    agent, cid, data = rejected
    _, envelope = envelope_of(agent, data)
    text = agent.message(type="chunks", chunks=[upload_replacement(agent, cid, envelope)])
    with monkeypatch.context() as m:
        m.setattr(services.index, "replace_chunk", lambda record: (_ for _ in ()).throw(RuntimeError("crash")))
        with pytest.raises(RuntimeError):
            ingest_text(services, text)
    assert agent.container.read(chunk_blob_name(cid)) == envelope
    assert services.index.get_chunks(agent.vault.id, [cid])[cid].state == "rejected"
    ingest_text(services, text)
    assert services.index.get_chunks(agent.vault.id, [cid])[cid].state == "verified"
    assert list(agent.container.list(chunk_blob_name(cid) + ".")) == []


def test_a_commit_waits_for_a_replacement_and_fails_without_one(services, rejected):
    agent, cid, data = rejected
    _, envelope = envelope_of(agent, data)
    entry = upload_replacement(agent, cid, envelope)
    text = agent.point(POINT, [cid])
    assert commit_text(services, text).state == "pending", "its replacement is not verified yet"
    ingest_text(services, agent.message(type="chunks", chunks=[entry]))
    assert commit_text(services, text).state == "committed"

    other_point = POINT[:-4] + "ffff"
    bad = agent.upload(b"rejected for good" * 2000)
    ingest_text(services, agent.message(type="chunks", chunks=[{**bad, "md5": md5_b64(b"other")}]))
    failed = commit_text(services, agent.point(other_point, [cid, bad["id"]]))
    assert failed.state == "failed" and bad["id"] in failed.reason
    assert services.index.get_chunks(agent.vault.id, [bad["id"]])[bad["id"]].state == ChunkState.REJECTED
