"""Contract of Index: the same tests run on MemoryIndex and on CosmosIndex against the
Cosmos DB emulator (a fresh database per test)."""
from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import replace

import pytest

from shared.adapters.cosmos_index import CHUNKS, POINTS, CosmosIndex
from shared.domain import ChunkRecord, ItemRecord, Job, Machine, Nonce, RecoveryPoint, UsageDay, UsageEvent, Vault
from shared.ports import Conflict, PreconditionFailed, TransientError
from skyvault.stack.emulators import COSMOS_DEV_KEY


def a_vault(vault_id="v1", tenant_id="t1", created_at="2024-05-01T10:00:00Z") -> Vault:
    return Vault(id=vault_id, tenant_id=tenant_id, name=f"vault {vault_id}", redundancy="GRS",
                 kdf={"algorithm": "argon2id", "salt": "c2FsdA==", "t": 3},
                 created_at=created_at)


def chunk_id(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def a_chunk(cid: str, vault_id="v1", size=100, state="verified", recorded_at="2024-05-01T10:00:00Z",
            replicated_at=None) -> ChunkRecord:
    md5 = base64.b64encode(hashlib.md5(cid.encode()).digest()).decode()
    return ChunkRecord(id=cid, vault_id=vault_id, size=size, content_md5=md5, state=state,
                       recorded_at=recorded_at, replicated_at=replicated_at)


def at_minute(minute: int) -> str:
    return f"2024-05-01T10:{minute:02d}:00Z"


def a_point(point_id: str, created_at: str, item="host1:/home", vault_id="v1") -> RecoveryPoint:
    return RecoveryPoint(id=point_id, vault_id=vault_id, item=item, state="pending", created_at=created_at,
                         manifest_blob=f"points/{point_id}/manifest", refs_blob=f"points/{point_id}/refs",
                         chunk_count=3)


def without_etag(record):
    return replace(record, etag=None)


def test_create_get_and_list_vaults(index):
    created = index.create_vault(a_vault("v1", created_at="2024-05-01T10:00:00Z"))
    index.create_vault(a_vault("v2", created_at="2024-05-02T10:00:00Z"))
    index.create_vault(a_vault("v3", tenant_id="other"))
    assert created.etag
    assert without_etag(created) == a_vault("v1")

    fetched = index.get_vault("t1", "v1")
    assert fetched == created
    assert index.get_vault("t1", "missing") is None
    assert index.get_vault("other", "v1") is None
    assert [v.id for v in index.list_vaults("t1")] == ["v1", "v2"]
    assert index.list_vaults("nobody") == []


def test_duplicate_vault_is_a_conflict(index):
    index.create_vault(a_vault())
    with pytest.raises(Conflict):
        index.create_vault(replace(a_vault(), name="another"))
    assert index.get_vault("t1", "v1").name == "vault v1"


def test_replace_vault_checks_the_etag(index):
    read = index.create_vault(a_vault())
    updated = index.replace_vault(replace(read, first_backup_at="2024-05-03T00:00:00Z"))
    assert updated.etag != read.etag
    assert index.get_vault("t1", "v1").first_backup_at == "2024-05-03T00:00:00Z"

    with pytest.raises(PreconditionFailed):
        index.replace_vault(replace(read, name="lost update"))
    assert index.get_vault("t1", "v1") == updated


def test_replace_of_a_missing_vault_is_a_failed_precondition(index):
    read = index.create_vault(a_vault())
    with pytest.raises(PreconditionFailed):
        index.replace_vault(replace(read, id="gone"))


def test_replace_needs_an_etag(index):
    index.create_vault(a_vault())
    with pytest.raises(ValueError):
        index.replace_vault(a_vault())


def test_add_chunk_is_idempotent_and_never_changes_a_record(index):
    first = a_chunk(chunk_id(1))
    assert index.add_chunk(first) is True
    assert index.add_chunk(replace(first, size=999, state="rejected")) is False
    stored = index.get_chunks("v1", [first.id])[first.id]
    assert without_etag(stored) == first


def test_get_chunks_across_shards_returns_exactly_the_existing_ones(index):
    ids = [chunk_id(n) for n in range(40)]
    present = ids[::2]
    for cid in present:
        index.add_chunk(a_chunk(cid))
    index.add_chunk(a_chunk(ids[1], vault_id="v2"))
    assert len({cid[:2] for cid in present}) > 10

    found = index.get_chunks("v1", ids + [ids[0]])
    assert sorted(found) == sorted(present)
    assert all(found[cid] == replace(a_chunk(cid), etag=found[cid].etag) for cid in present)
    assert index.get_chunks("v1", []) == {}
    assert list(index.get_chunks("v2", ids)) == [ids[1]]


def test_get_chunks_beyond_one_query_batch(index):
    shard = "ab"
    ids = [f"{shard}{n:062x}" for n in range(1200)]
    for cid in ids[::3]:
        index.add_chunk(a_chunk(cid))
    assert sorted(index.get_chunks("v1", ids)) == ids[::3]


def test_get_chunks_of_an_absent_vault_is_empty(index):
    index.add_chunk(a_chunk(chunk_id(1)))
    assert index.get_chunks("nobody", [chunk_id(1), chunk_id(2)]) == {}


def test_replace_chunk_checks_the_etag(index):
    cid = chunk_id(1)
    index.add_chunk(a_chunk(cid))
    read = index.get_chunks("v1", [cid])[cid]
    updated = index.replace_chunk(replace(read, replicated_at="2024-05-02T00:00:00Z"))
    assert updated.etag != read.etag
    assert index.get_chunks("v1", [cid])[cid] == updated

    with pytest.raises(PreconditionFailed):
        index.replace_chunk(replace(read, state="damaged", reason="lost update"))
    assert index.get_chunks("v1", [cid])[cid] == updated


def test_replace_of_a_missing_chunk_is_a_failed_precondition(index):
    index.add_chunk(a_chunk(chunk_id(1)))
    read = index.get_chunks("v1", [chunk_id(1)])[chunk_id(1)]
    with pytest.raises(PreconditionFailed):
        index.replace_chunk(replace(read, id=chunk_id(2)))
    assert index.get_chunks("v1", [chunk_id(2)]) == {}


def test_oldest_unreplicated_chunk_across_shards(index):
    ids = [chunk_id(n) for n in range(8)]
    assert len({cid[:2] for cid in ids}) == len(ids)
    # Older than the answer, but each ruled out: rejected, damaged, replicated, another vault's.
    index.add_chunk(a_chunk(ids[0], state="rejected", recorded_at=at_minute(1)))
    index.add_chunk(a_chunk(ids[1], state="damaged", recorded_at=at_minute(2)))
    index.add_chunk(a_chunk(ids[2], recorded_at=at_minute(3), replicated_at=at_minute(30)))
    index.add_chunk(a_chunk(ids[3], vault_id="v2", recorded_at=at_minute(4)))
    index.add_chunk(a_chunk(ids[4], recorded_at=at_minute(9)))
    index.add_chunk(a_chunk(ids[5], recorded_at=at_minute(5)))
    index.add_chunk(a_chunk(ids[6], recorded_at=at_minute(7)))

    oldest = index.oldest_unreplicated_chunk("v1")
    assert oldest is not None and oldest.id == ids[5]
    assert oldest == index.get_chunks("v1", [ids[5]])[ids[5]]
    assert index.oldest_unreplicated_chunk("v2").id == ids[3]
    assert index.oldest_unreplicated_chunk("nobody") is None

    index.replace_chunk(replace(oldest, replicated_at=at_minute(31)))
    assert index.oldest_unreplicated_chunk("v1").id == ids[6]
    for cid in (ids[4], ids[6]):
        index.replace_chunk(replace(index.get_chunks("v1", [cid])[cid], replicated_at=at_minute(32)))
    assert index.oldest_unreplicated_chunk("v1") is None


def test_chunks_after_pages_through_a_vault_in_id_order(index):
    ids = sorted(chunk_id(n) for n in range(30))
    assert len({cid[:2] for cid in ids}) > 10
    for cid in ids:
        index.add_chunk(a_chunk(cid))
    index.add_chunk(a_chunk(chunk_id(100), vault_id="v2"))

    seen, after = [], ""
    while page := index.chunks_after("v1", after, 7):
        assert len(page) <= 7
        seen.extend(c.id for c in page)
        assert len(seen) <= len(ids)
        after = page[-1].id
    assert seen == ids

    # after_id need not be a stored id; the page starts at the next one.
    assert [c.id for c in index.chunks_after("v1", ids[10][:-1], 3)] == ids[10:13]
    assert index.chunks_after("v1", ids[-1], 5) == []
    assert [c.id for c in index.chunks_after("v2", "", 5)] == [chunk_id(100)]
    assert index.chunks_after("nobody", "", 5) == []
    with pytest.raises(ValueError):
        index.chunks_after("v1", "", 0)


def test_list_all_vaults_spans_tenants(index):
    index.create_vault(a_vault("v3", tenant_id="t2", created_at="2024-05-03T10:00:00Z"))
    index.create_vault(a_vault("v1", tenant_id="t1", created_at="2024-05-01T10:00:00Z"))
    index.create_vault(a_vault("v2", tenant_id="t3", created_at="2024-05-02T10:00:00Z"))
    index.create_vault(a_vault("v4", tenant_id="t1", created_at="2024-05-04T10:00:00Z"))

    vaults = index.list_all_vaults()
    assert [(v.tenant_id, v.id) for v in vaults] == [("t1", "v1"), ("t3", "v2"), ("t2", "v3"), ("t1", "v4")]
    assert vaults[0] == index.get_vault("t1", "v1")


def test_list_all_vaults_of_an_empty_index(index):
    assert index.list_all_vaults() == []


def test_points_create_get_replace(index):
    created = index.create_point(a_point("p1", "2024-05-01T10:00:00Z"))
    assert index.get_point("v1", "p1") == created
    with pytest.raises(Conflict):
        index.create_point(a_point("p1", "2024-05-09T10:00:00Z"))

    committed = index.replace_point(replace(created, state="committed", committed_at="2024-05-01T10:05:00Z",
                                            stats={"files": 3, "bytes": 1024}))
    assert index.get_point("v1", "p1") == committed
    assert committed.stats == {"files": 3, "bytes": 1024}
    with pytest.raises(PreconditionFailed):
        index.replace_point(replace(created, state="failed"))


def test_get_point_of_a_missing_id_is_none(index):
    index.create_point(a_point("p1", "2024-05-01T10:00:00Z"))
    assert index.get_point("v1", "missing") is None
    assert index.get_point("nobody", "p1") is None


def test_list_points_newest_first_with_an_item_filter(index):
    index.create_point(a_point("p-old", "2024-05-01T10:00:00Z", item="a"))
    index.create_point(a_point("p-new", "2024-05-03T10:00:00Z", item="a"))
    index.create_point(a_point("p-mid", "2024-05-02T10:00:00Z", item="b"))
    index.create_point(a_point("p-elsewhere", "2024-05-04T10:00:00Z", vault_id="v2"))
    assert [p.id for p in index.list_points("v1")] == ["p-new", "p-mid", "p-old"]
    assert [p.id for p in index.list_points("v1", item="a")] == ["p-new", "p-old"]
    assert index.list_points("v1", item="none") == []
    assert index.list_points("nobody") == []


def test_stale_points_are_pending_or_committed_without_follow_ups_oldest_check_first(index):
    def stored(point_id, state, checked_minute, follow_ups=None, vault_id="v1"):
        point = replace(a_point(point_id, at_minute(0), vault_id=vault_id), state=state,
                        checked_at=None if checked_minute is None else at_minute(checked_minute),
                        follow_ups_at=follow_ups)
        index.create_point(point)

    stored("pending-late", "pending", 8)
    stored("pending-early", "pending", 2)
    stored("committed-no-follow-ups", "committed", 5)
    stored("pending-fresh", "pending", 30)  # checked after the cut-off
    stored("committed-done", "committed", 1, follow_ups=at_minute(1))
    stored("failed", "failed", 1)
    stored("never-checked", "pending", None)  # written before checkedAt existed
    stored("elsewhere", "pending", 1, vault_id="v2")

    assert [p.id for p in index.stale_points("v1", at_minute(20), 10)] == [
        "pending-early", "committed-no-follow-ups", "pending-late"]
    assert [p.id for p in index.stale_points("v1", at_minute(20), 2)] == ["pending-early", "committed-no-follow-ups"]
    assert [p.id for p in index.stale_points("v1", at_minute(3), 10)] == ["pending-early"]
    [found] = index.stale_points("v2", at_minute(20), 10)
    assert found == index.get_point("v2", "elsewhere")
    assert index.stale_points("nobody", at_minute(20), 10) == []
    with pytest.raises(ValueError):
        index.stale_points("v1", at_minute(20), 0)


@pytest.mark.emulators
def test_a_point_without_follow_ups_at_counts_as_not_followed_up(cosmos):
    # Documents written before the field existed lack it; to_doc writes null.
    index = CosmosIndex(cosmos.endpoint, cosmos.key, f"db{uuid.uuid4().hex[:16]}")
    index.ensure_schema()
    legacy = replace(a_point("p1", at_minute(0)), state="committed", checked_at=at_minute(1)).to_doc()
    del legacy["followUpsAt"]
    index._container(POINTS).create_item(legacy)
    assert [p.id for p in index.stale_points("v1", at_minute(20), 10)] == ["p1"]


def test_jobs_create_and_get(index):
    job = Job(id="j1", vault_id="v1", kind="restore", point_id="p1", status="ready",
              created_at="2024-05-01T10:00:00Z", plan={"blobs": ["chunks/ab/ab01"], "sas": "https://x"})
    created = index.create_job(job)
    assert without_etag(created) == job
    assert index.get_job("v1", "j1") == created
    assert index.get_job("v1", "missing") is None
    with pytest.raises(Conflict):
        index.create_job(job)


def test_usage_events_are_idempotent(index):
    event = UsageEvent(id="point-p1", vault_id="v1", kind="point_committed", quantity=4096,
                       at="2024-05-01T10:00:00Z", point_id="p1", item_id="host1", front_end_bytes=10_000)
    later = UsageEvent(id="stopped-host1-2024-05-02", vault_id="v1", kind="item_stopped", quantity=0,
                       at="2024-05-02T00:00:00Z", item_id="host1")
    assert index.add_usage_event(event) is True
    assert index.add_usage_event(replace(event, quantity=1)) is False
    assert index.add_usage_event(later) is True
    assert [without_etag(e) for e in index.list_usage_events("v1")] == [event, later]
    assert index.list_usage_events("nobody") == []
    assert index.usage_events_present("v1", ["point-p1", "absent", "stopped-host1-2024-05-02"]) == {
        "point-p1", "stopped-host1-2024-05-02"}
    assert index.usage_events_present("v2", ["point-p1"]) == set()


def test_usage_events_in_batches_create_the_absent_ones_and_keep_the_present(index):
    def event(n: int, vault: str = "v1", quantity: int = 100) -> UsageEvent:
        return UsageEvent(id=f"stored-c{n:03}-2024-05-01", vault_id=vault, kind="chunk_stored", quantity=quantity,
                          at="2024-05-01T10:00:00Z")

    index.add_usage_events([])
    index.add_usage_events([event(n) for n in range(40)] + [event(0, "v2")])  # a batch per vault
    assert [e.id for e in index.list_usage_events("v1")] == [event(n).id for n in range(40)]
    assert [without_etag(e) for e in index.list_usage_events("v2")] == [event(0, "v2")]
    # A redelivery: some present (their first version kept), some not; more than one batch.
    again = [event(n, quantity=1) for n in range(30, 250)]
    index.add_usage_events(again)
    stored = {e.id: e.quantity for e in index.list_usage_events("v1")}
    assert len(stored) == 250
    assert all(stored[event(n).id] == 100 for n in range(40)) and all(stored[event(n).id] == 1 for n in range(40, 250))


def test_usage_days_create_replace_and_list_up_to_a_day(index):
    day = UsageDay(id="2024-05-02", vault_id="v1", stored_delta=-5, events=1, pending=["gc-x"],
                   items={"host1": {"frontEnd": 10, "state": ["2024-05-02T01:00:00Z", "e1", "stopped"]}})
    created = index.create_usage_day(day)
    assert without_etag(created) == day and created.etag
    with pytest.raises(Conflict):
        index.create_usage_day(day)
    index.create_usage_day(UsageDay(id="2024-05-01", vault_id="v1", stored_delta=100))
    index.create_usage_day(UsageDay(id="2024-05-03", vault_id="v1"))
    index.create_usage_day(UsageDay(id="2024-05-01", vault_id="v2", stored_delta=7))
    assert index.get_usage_day("v1", "2024-05-02") == created
    assert index.get_usage_day("v1", "2024-06-01") is None
    created.pending, created.measured = [], {"bytes": 95, "at": "2024-05-02T23:00:00Z"}
    replaced = index.replace_usage_day(created)
    assert replaced.etag != created.etag
    with pytest.raises(PreconditionFailed):
        index.replace_usage_day(created)  # its etag is stale
    assert [d.id for d in index.list_usage_days("v1", "2024-05-02")] == ["2024-05-01", "2024-05-02"]
    assert without_etag(index.list_usage_days("v1", "2024-05-02")[1]) == without_etag(replaced)
    assert [d.stored_delta for d in index.list_usage_days("v2", "2099-12-31")] == [7]


def test_items_create_get_and_list_by_name(index):
    created = index.put_item(ItemRecord(id="host1-srv", vault_id="v1", policy="daily"))
    index.put_item(ItemRecord(id="host1-home", vault_id="v1", policy="weekly"))
    index.put_item(ItemRecord(id="host1-home", vault_id="v2", policy="other"))
    assert created.etag
    assert without_etag(created) == ItemRecord(id="host1-srv", vault_id="v1", policy="daily")
    assert index.get_item("v1", "host1-srv") == created
    assert index.get_item("v1", "missing") is None
    assert index.get_item("v3", "host1-srv") is None
    assert [(r.id, r.policy) for r in index.list_items("v1")] == [("host1-home", "weekly"), ("host1-srv", "daily")]
    assert index.list_items("nobody") == []


def test_put_item_creates_once_then_replaces_by_etag(index):
    read = index.put_item(ItemRecord(id="laptop", vault_id="v1", policy="daily"))
    with pytest.raises(Conflict):
        index.put_item(ItemRecord(id="laptop", vault_id="v1", policy="weekly"))
    updated = index.put_item(replace(read, policy="weekly"))
    assert updated.etag != read.etag
    assert index.get_item("v1", "laptop") == updated

    with pytest.raises(PreconditionFailed):
        index.put_item(replace(read, policy="lost update"))
    with pytest.raises(PreconditionFailed):
        index.put_item(replace(read, id="never-created"))
    assert index.get_item("v1", "laptop").policy == "weekly"
    assert index.get_item("v1", "never-created") is None


def test_vault_policies_round_trip(index):
    policies = {"daily": {"v": 1, "schedule": {"frequency": "daily", "times": ["21:00"]}}}
    read = index.create_vault(a_vault())
    assert read.policies == {}
    index.replace_vault(replace(read, policies=policies))
    assert index.get_vault("t1", "v1").policies == policies


def test_records_read_back_are_independent_copies(index):
    created = index.create_vault(a_vault())
    created.kdf["t"] = 99
    assert index.get_vault("t1", "v1").kdf["t"] == 3


@pytest.mark.emulators
def test_chunk_records_without_replicated_at_count_as_unreplicated(cosmos):
    # Records written before the field existed lack it; to_doc writes null.
    index = CosmosIndex(cosmos.endpoint, cosmos.key, f"db{uuid.uuid4().hex[:16]}")
    index.ensure_schema()
    legacy = a_chunk(chunk_id(1), recorded_at=at_minute(1)).to_doc()
    del legacy["replicatedAt"]
    index._container(CHUNKS).create_item(legacy)
    index.add_chunk(a_chunk(chunk_id(2), recorded_at=at_minute(2)))

    assert index.oldest_unreplicated_chunk("v1").id == chunk_id(1)


def test_unreachable_cosmos_is_a_transient_error_and_fails_fast(closed_port):
    index = CosmosIndex(f"http://127.0.0.1:{closed_port}/", COSMOS_DEV_KEY, "skyvault")
    started = time.monotonic()
    with pytest.raises(TransientError):
        index.get_vault("t1", "v1")
    with pytest.raises(TransientError):
        index.add_chunk(a_chunk(chunk_id(1)))
    assert time.monotonic() - started < 10


def test_delete_chunk_checks_the_etag_and_ignores_an_absent_record(index):
    cid = chunk_id(7)
    index.add_chunk(a_chunk(cid))
    read = index.get_chunks("v1", [cid])[cid]
    changed = index.replace_chunk(replace(read, state="condemned"))
    with pytest.raises(PreconditionFailed):
        index.delete_chunk(read)
    assert index.get_chunks("v1", [cid])[cid].state == "condemned"
    index.delete_chunk(changed)
    assert index.get_chunks("v1", [cid]) == {}
    index.delete_chunk(changed)  # already gone: nothing to do


def test_delete_point_removes_only_that_point(index):
    index.create_point(a_point("p1", at_minute(1)))
    index.create_point(a_point("p2", at_minute(2)))
    index.delete_point("v1", "p1")
    index.delete_point("v1", "p1")
    index.delete_point("v1", "never-was")
    assert [p.id for p in index.list_points("v1")] == ["p2"]
    assert index.get_point("v1", "p1") is None


def test_jobs_replace_and_list_by_kind_and_status(index):
    def a_job(job_id, kind, status, created_at, vault_id="v1"):
        return Job(id=job_id, vault_id=vault_id, kind=kind, point_id=job_id, status=status, created_at=created_at)

    index.create_job(a_job("r2", "backup", "running", at_minute(2)))
    index.create_job(a_job("r1", "backup", "running", at_minute(1)))
    index.create_job(a_job("x1", "restore", "ready", at_minute(1)))
    index.create_job(a_job("r3", "backup", "running", at_minute(3), vault_id="v2"))
    read = index.get_job("v1", "r2")
    done = index.replace_job(replace(read, status="done", plan={"endedAt": at_minute(4)}))
    with pytest.raises(PreconditionFailed):
        index.replace_job(replace(read, status="failed"))
    assert [j.id for j in index.list_jobs("v1", "backup", "running")] == ["r1"]
    assert [j.id for j in index.list_jobs("v1", "backup", "done")] == ["r2"]
    assert done.plan == {"endedAt": at_minute(4)}
    assert index.list_jobs("v1", "restore", "running") == []


def a_machine(machine_id: str, enrolled_at: str, vault_id="v1") -> Machine:
    return Machine(id=machine_id, vault_id=vault_id, name="laptop-1", public_key="A" * 43 + "=",
                   enrolled_at=enrolled_at, ticket_id="ab" * 16)


def test_machines_are_created_once_listed_by_enrolment_and_replaced_by_etag(index):
    first = index.create_machine(a_machine("m2", at_minute(1)))
    index.create_machine(a_machine("m1", at_minute(2)))
    index.create_machine(a_machine("m3", at_minute(0), vault_id="v2"))
    with pytest.raises(Conflict):
        index.create_machine(a_machine("m2", at_minute(5)))
    assert [m.id for m in index.list_machines("v1")] == ["m2", "m1"]
    assert index.get_machine("v1", "m3") is None and index.get_machine("v2", "m3").vault_id == "v2"
    revoked = index.replace_machine(replace(first, revoked_at=at_minute(9)))
    assert index.get_machine("v1", "m2").revoked_at == at_minute(9)
    with pytest.raises(PreconditionFailed):
        index.replace_machine(replace(first, name="stale"))
    assert revoked.etag != first.etag


def test_a_nonce_is_taken_once_until_it_expires(index):
    nonce = Nonce(id="m1.0123", vault_id="v1", expires_at=at_minute(5), ttl=600)
    assert index.add_nonce(nonce, now=at_minute(0))
    assert not index.add_nonce(replace(nonce), now=at_minute(4)), "a replay within the window"
    assert index.add_nonce(replace(nonce, vault_id="v2"), now=at_minute(4)), "nonces are per vault"
    assert index.add_nonce(replace(nonce, expires_at=at_minute(20)), now=at_minute(6)), "expired: taken again"
    assert not index.add_nonce(replace(nonce, expires_at=at_minute(30)), now=at_minute(7))
