"""Geo-redundancy on in-memory fakes: replication, geo-protection, lag, outages, scrub."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

from shared import errors
from shared.domain import chunk_blob_name, container_name
from shared.fakes import MemoryBlobAccount, MemoryIndex, MemoryQueue
from shared.messages import ReplicateMessage, RestoreRequest
from shared.ports import BlobAccount, BlobNotFound, TransientError
from shared.service import replication, restore, scrub, vaults
from shared.service.context import REPLICATE_QUEUE, Services
from tests.unit.test_handlers import POINT, Agent, commit_text, ingest_text


def status(services, vault) -> dict:
    return replication.replication_status(services, vault).to_doc()


def replicate_text(services, text):
    return replication.replicate(services, ReplicateMessage.parse(text))

START = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return (self.now - START).total_seconds()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class _Down:
    """A container of a stopped region: every operation fails as a refused connection does."""

    def __getattr__(self, name):
        def unreachable(*_args, **_kwargs):
            raise TransientError("connection refused")
        return unreachable


class Outage(BlobAccount):
    """A region that can be switched off: every call then fails as a stopped service does."""

    def __init__(self, account: MemoryBlobAccount):
        self.account, self.region, self.down = account, account.region, False

    def container(self, name):
        return _Down() if self.down else self.account.container(name)

    def container_sas_url(self, *args):
        return self.account.container_sas_url(*args)

    def container_from_url(self, url):
        return _Down() if self.down else self.account.container_from_url(url)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def services(clock, request):
    queues: dict[str, MemoryQueue] = {}

    def queue(name):
        if name not in queues:
            queues[name] = MemoryQueue(name, now=clock.monotonic)
            queues[name].create()
        return queues[name]

    suffix = request.node.name
    return Services(
        index=MemoryIndex(), primary=MemoryBlobAccount(f"primary-{suffix}", utcnow=clock),
        secondary=Outage(MemoryBlobAccount(f"secondary-{suffix}", utcnow=clock)), queue=queue, clock=clock, replication_retry_max_s=30)


@pytest.fixture(scope="module")
def keys():
    from shared import crypto
    return crypto.derive_keys("replication test passphrase", b"r" * 16)


def drain(services, clock, rounds=50) -> list[str]:
    """Run the replicate function on every message due, advancing time to the next one."""
    outcomes = []
    queue = services.queue(REPLICATE_QUEUE)
    for _ in range(rounds):
        messages = queue.receive(32, 60)
        if not messages:
            if queue.approximate_count() == 0:
                return outcomes
            clock.advance(1)
            continue
        for message in messages:
            outcomes.append(replicate_text(services, base64.b64decode(message.body)))
            queue.delete(message)
    return outcomes


def backup(agent: Agent, services, chunks: list[bytes], point=POINT):
    declared = [agent.upload(data) for data in chunks]
    ingest_text(services, agent.message(type="chunks", chunks=declared))
    committed = commit_text(services, agent.point(point, [d["id"] for d in declared]))
    assert committed.state == "committed"
    return declared


def test_grs_copies_every_blob_and_marks_the_point_geo_protected(services, clock, keys):
    agent = Agent(services, keys, redundancy="GRS")
    declared = backup(agent, services, [b"one" * 1000, b"two" * 1000])
    assert status(services, agent.vault)["pointsNotGeoProtected"] == 1
    clock.advance(10)
    assert status(services, agent.vault)["lagSeconds"] == 10
    drain(services, clock)
    secondary = services.secondary.container(container_name(agent.vault.id))
    for d in declared:
        assert secondary.read(chunk_blob_name(d["id"])) == agent.container.read(chunk_blob_name(d["id"]))
    for name in ("manifest", "refs"):
        assert secondary.read(f"points/{POINT}/{name}") == agent.container.read(f"points/{POINT}/{name}")
    assert all(r.replicated_at for r in services.index.get_chunks(agent.vault.id, [d["id"] for d in declared]).values())
    assert services.index.get_point(agent.vault.id, POINT).geo_protected_at
    assert status(services, agent.vault) == {
        "redundancy": "GRS", "lagSeconds": 0.0, "oldestUnreplicatedChunk": None, "pointsNotGeoProtected": 0}


def test_replication_is_idempotent(services, clock, keys):
    agent = Agent(services, keys, redundancy="GRS")
    declared = backup(agent, services, [b"x" * 3000])
    drain(services, clock)
    record = services.index.get_chunks(agent.vault.id, [declared[0]["id"]])[declared[0]["id"]]
    message = ReplicateMessage(agent.vault.tenant_id, agent.vault.id, blobs=(chunk_blob_name(declared[0]["id"]),))
    assert replication.replicate(services, message) == "already copied"
    assert services.index.get_chunks(agent.vault.id, [record.id])[record.id].etag == record.etag


def test_lrs_writes_nothing_to_the_secondary(services, clock, keys):
    agent = Agent(services, keys, redundancy="LRS")
    declared = backup(agent, services, [b"lrs" * 1000])
    assert drain(services, clock) == []
    message = ReplicateMessage(agent.vault.tenant_id, agent.vault.id, blobs=(chunk_blob_name(declared[0]["id"]),))
    assert replication.replicate(services, message).startswith("skipped")
    with pytest.raises(BlobNotFound):
        list(services.secondary.container(container_name(agent.vault.id)).list())


def test_an_outage_of_the_secondary_grows_the_lag_and_replication_catches_up(services, clock, keys):
    agent = Agent(services, keys, redundancy="GRS")
    services.secondary.down = True
    declared = backup(agent, services, [b"during the outage" * 200, b"and more" * 300])
    outcomes = drain(services, clock, rounds=40)
    assert any(o.startswith("deferred") for o in outcomes)
    lag_during = status(services, agent.vault)["lagSeconds"]
    clock.advance(60)
    assert status(services, agent.vault)["lagSeconds"] == lag_during + 60
    services.secondary.down = False
    drain(services, clock, rounds=200)
    assert services.index.get_point(agent.vault.id, POINT).geo_protected_at
    assert status(services, agent.vault)["lagSeconds"] == 0
    secondary = services.secondary.container(container_name(agent.vault.id))
    assert all(secondary.read(chunk_blob_name(d["id"])) for d in declared)


def test_scrub_heals_either_copy_and_reports_a_chunk_bad_in_both(services, clock, keys):
    agent = Agent(services, keys, redundancy="GRS")
    declared = backup(agent, services, [b"alpha" * 1000, b"beta" * 1000, b"gamma" * 1000])
    drain(services, clock)
    container = container_name(agent.vault.id)
    primary, secondary = services.primary.container(container), services.secondary.container(container)
    damaged_secondary, missing_primary, lost = (chunk_blob_name(d["id"]) for d in declared)
    good = {name: primary.read(name) for name in (damaged_secondary, missing_primary, lost)}
    secondary.put(damaged_secondary, b"rot" * 100, overwrite=True)
    primary.delete(missing_primary)
    primary.put(lost, b"bad" * 100, overwrite=True)
    secondary.delete(lost)
    vault = services.index.get_vault("contoso", agent.vault.id)
    report = scrub.scrub_vault(services, vault, sample=3)
    ids = {chunk_blob_name(cid): cid for cid in report["checked"]}
    assert [chunk_blob_name(c) for c in report["healed_secondary"]] == [damaged_secondary]
    assert [chunk_blob_name(c) for c in report["healed_primary"]] == [missing_primary]
    assert [chunk_blob_name(c) for c in report["damaged"]] == [lost]
    assert len(ids) == 3
    assert secondary.read(damaged_secondary) == good[damaged_secondary]
    assert primary.read(missing_primary) == good[missing_primary]
    lost_id = lost.rsplit("/", 1)[1]
    assert services.index.get_chunks(agent.vault.id, [lost_id])[lost_id].state == "damaged"
    vault = services.index.get_vault("contoso", agent.vault.id)
    assert vault.chunk_epoch == 1 and vault.scrub_cursor == max(ids.values()), "the epoch rose, the cursor moved"
    # An unchanged backup after the scrub names the last point as its parent: the damage still shows.
    again = commit_text(services, agent.point("20261125T130000Z-00000001",
                                                        [d["id"] for d in declared], parent=POINT))
    assert again.state == "failed" and "1 chunks were rejected" in again.reason


def test_scrub_rolls_through_the_vault_in_samples(services, clock, keys):
    agent = Agent(services, keys, redundancy="GRS")
    declared = backup(agent, services, [bytes([i]) * 2000 for i in range(5)])
    drain(services, clock)
    seen = []
    for _ in range(3):
        vault = services.index.get_vault("contoso", agent.vault.id)
        seen += scrub.scrub_vault(services, vault, sample=2)["checked"]
    assert sorted(seen) == sorted(d["id"] for d in declared)


def test_redundancy_changes_only_before_the_first_backup(services, clock, keys):
    agent = Agent(services, keys, redundancy="LRS")
    vault = vaults.change_redundancy(services, services.index.get_vault("contoso", agent.vault.id), "GRS")
    assert vault.redundancy == "GRS"
    backup(agent, services, [b"first" * 1000])
    vault = services.index.get_vault("contoso", agent.vault.id)
    with pytest.raises(errors.ServiceError, match="can no longer change"):
        vaults.change_redundancy(services, vault, "LRS")
    assert services.index.get_vault("contoso", agent.vault.id).redundancy == "GRS"


def test_restore_plan_offers_the_secondary_once_geo_protected(services, clock, keys):
    agent = Agent(services, keys, redundancy="GRS")
    backup(agent, services, [b"restore" * 1000])
    vault = services.index.get_vault("contoso", agent.vault.id)
    early = restore.create_restore_job(services, vault, RestoreRequest("j1", POINT))
    assert [(r["region"], r["complete"]) for r in early.plan["regions"]] == [("primary", True), ("secondary", False)]
    drain(services, clock)
    later = restore.create_restore_job(services, vault, RestoreRequest("j2", POINT))
    assert [(r["region"], r["complete"]) for r in later.plan["regions"]] == [("primary", True), ("secondary", True)]


def test_a_replicate_message_looks_its_chunks_up_in_one_query_not_one_each(services, clock, keys):
    from dataclasses import replace as replaced

    from shared.metrics import CountingIndex, OperationCounts

    agent = Agent(services, keys, redundancy="GRS")
    declared = backup(agent, services, [bytes([n]) * 3000 for n in range(32)])
    services.queue(REPLICATE_QUEUE).receive(32, 3600)  # what ingest and commit queued: this test sends its own
    counts = OperationCounts()
    counted = replaced(services, index=CountingIndex(services.index, counts))
    message = ReplicateMessage(agent.vault.tenant_id, agent.vault.id,
                               blobs=tuple(chunk_blob_name(d["id"]) for d in declared))
    assert replication.replicate(counted, message) == "copied"
    done = counts.snapshot()["counts"]
    # the vault and the 32 records in one look-up (33 when each chunk was looked up alone); a mark per copy
    assert done.get("cosmos.query") == 2 and done.get("cosmos.write") == 32
    assert all(r.replicated_at for r in services.index.get_chunks(agent.vault.id, [d["id"] for d in declared]).values())
