"""Soft delete, purge and garbage collection with the real agent on the in-process service (fakes
of two regions, one injected clock): what is freed, what never is, and a backup that runs while
the collector does."""
from __future__ import annotations

import os

import pytest

from shared import formats
from shared.domain import ChunkState, SoftDelete, UsageKind, chunk_blob_name, container_name
from shared.errors import Invalid
from shared.messages import RunRequest
from shared.ports import TransientError
from shared.service import deletion, gc, runs
from shared.service.context import update_vault
from skyvault.backup import Backup
from skyvault.vaultclient import ApiError
from tests.faults import FAULT_KINDS, Crash, Faults, faulty
from tests.unit.agentworld import World, world  # noqa: F401 (a fixture)


def test_a_purged_points_chunks_are_freed_in_both_regions_after_two_passes(world):
    a, b = world.tree("a"), world.tree("b")
    point_a, point_b = world.backup("item-a", a), world.backup("item-b", b)
    only_a = world.refs(point_a) - world.refs(point_b)
    before = world.chunk_blobs()
    assert before["primary"] == before["secondary"] and len(only_a) >= 2

    deletion.delete_point(world.services, world.vault, point_a)
    world.advance_days(1)
    assert world.collect().condemned == 0, "a soft-deleted point's chunks are kept"
    world.advance_days(14)
    assert deletion.purge_due(world.services, world.vault) == [point_a]
    assert world.services.index.get_point(world.agent.vault_id, point_a) is None

    first = world.collect()
    assert first.condemned == len(only_a) and first.deleted == 0
    assert world.chunk_blobs() == before, "a condemned chunk stays whole until the next pass"
    second = world.collect()
    assert second.deleted == len(only_a) and second.bytes_freed > 0
    after = world.chunk_blobs()
    for region in ("primary", "secondary"):
        assert after[region] == before[region] - {chunk_blob_name(c) for c in only_a}, region
    assert sum(e.quantity for e in world.usage(UsageKind.CHUNK_PURGED)) == second.bytes_freed
    assert [e.point_id for e in world.usage(UsageKind.POINT_PURGED)] == [point_a]
    assert world.collect().deleted == 0 and world.restores(point_b, b)


def test_an_undeleted_point_restores_and_keeps_its_chunks(world):
    a = world.tree("a")
    point = world.backup("item-a", a)
    deletion.delete_point(world.services, world.vault, point)
    with pytest.raises(Exception, match="deleted"):
        world.restores(point, a)
    world.advance_days(13)
    deletion.undelete_point(world.services, world.vault, point)
    world.advance_days(30)
    assert deletion.purge_due(world.services, world.vault) == []
    world.collect(), world.collect()
    assert world.restores(point, a)


def test_undelete_is_refused_once_the_purge_began(world):
    point = world.backup("item-a", world.tree("a"))
    deletion.delete_point(world.services, world.vault, point)
    world.advance_days(15)
    faults = Faults()
    faults.arm(1)  # the purge dies right after marking the point purging
    with pytest.raises(Crash):
        deletion.purge_due(faulty(world.services, faults), world.vault)
    with pytest.raises(Invalid, match="being purged"):
        deletion.undelete_point(world.services, world.vault, point)
    assert deletion.purge_due(world.services, world.vault) == [point]


def test_a_vault_without_soft_delete_purges_at_the_next_sweep(world):
    update_vault(world.services, world.vault, lambda v: setattr(v, "soft_delete", SoftDelete.DISABLED) or True)
    point = world.backup("item-a", world.tree("a"))
    deletion.delete_point(world.services, world.vault, point)
    assert deletion.purge_due(world.services, world.vault) == [point]


def test_a_condemned_chunk_backed_up_again_is_live_again(world):
    a = world.tree("a")
    point = world.backup("item-a", a)
    chunks = world.refs(point)
    deletion.delete_point(world.services, world.vault, point)
    world.advance_days(15)
    deletion.purge_due(world.services, world.vault)
    assert world.collect().condemned == len(chunks)
    again = world.backup("item-a", a)  # the GC epoch rose: the cache forgot, the look-up revives
    assert world.refs(again) == chunks
    records = world.services.index.get_chunks(world.agent.vault_id, sorted(chunks))
    assert {r.state for r in records.values()} == {ChunkState.VERIFIED}
    report = world.collect()
    assert report.deleted == 0 and report.condemned == 0
    assert world.restores(again, a)


def test_a_backup_running_while_gc_runs_commits_and_restores(world, monkeypatch):
    """The backup's cache knows the parent's chunks; while it runs, the parent is deleted and
    purged and the collector runs twice. Nothing it references is deleted: the second pass waits
    for the run, and the commit makes the condemned chunks live again."""
    update_vault(world.services, world.vault, lambda v: setattr(v, "soft_delete", SoftDelete.DISABLED) or True)
    a = world.tree("a")
    parent = world.backup("item-a", a)
    world.advance_days(1)
    (a / "new.bin").write_bytes(os.urandom(100_000))
    reports = []
    api = world.agent.api

    def collect_before_commit(method, subpath, *args, **kwargs):
        if subpath == "commits" and not reports:
            deletion.delete_point(world.services, world.vault, parent)
            deletion.purge_due(world.services, world.vault)
            reports.extend([world.collect(), world.collect()])
        return api(method, subpath, *args, **kwargs)

    monkeypatch.setattr(world.agent, "api", collect_before_commit)
    child = world.backup("item-a", a)
    assert reports[0].condemned > 0, "the parent's chunks were condemned while the backup ran"
    assert reports[1].deleted == 0 and reports[1].waiting == reports[0].condemned
    # Once the run ended, what the parent alone referenced (its manifest) goes; nothing of the child's.
    world.collect(), world.collect()
    records = world.services.index.get_chunks(world.agent.vault_id, sorted(world.refs(child)))
    assert {r.state for r in records.values()} == {ChunkState.VERIFIED} and len(records) == len(world.refs(child))
    assert world.chunk_blobs()["secondary"] >= {chunk_blob_name(c) for c in world.refs(child)}
    assert world.restores(child, a)


def test_a_dead_run_stops_holding_back_deletion(world):
    point = world.backup("item-a", world.tree("a"))
    deletion.delete_point(world.services, world.vault, point)
    world.advance_days(15)
    deletion.purge_due(world.services, world.vault)
    runs.start_run(world.services, world.vault, RunRequest(run_id="20261210T000000Z-00000001", item="item-b"))
    condemned = world.collect().condemned
    assert condemned > 0
    assert world.collect().waiting == condemned, "a live run that started before the announcement"
    world.clock.advance(runs.RUN_TIMEOUT.total_seconds() + 60)
    assert world.collect().deleted == condemned, "a run silent for two hours is dead"


def test_gc_deletes_nothing_when_a_reference_list_is_unreadable(world):
    a, b = world.tree("a"), world.tree("b")
    point_a, point_b = world.backup("item-a", a), world.backup("item-b", b)
    deletion.delete_point(world.services, world.vault, point_a)
    world.advance_days(15)
    deletion.purge_due(world.services, world.vault)
    container = world.services.primary.container(container_name(world.agent.vault_id))
    refs = formats.refs_blob(point_b)
    good = container.read(refs)
    lines = good.splitlines(keepends=True)
    for bad in (b"".join(reversed(lines)), good[:-1], b""):
        container.put(refs, bad, overwrite=True)
        if not bad:
            container.delete(refs)
        report = world.collect()
        assert report.skipped and report.deleted == 0, bad[:10]
        condemned = [r for r in world.services.index.chunks_after(world.agent.vault_id, "", 1000)
                     if r.state != ChunkState.VERIFIED]
        assert condemned == [], "what a pass that met a bad list condemned is verified again"
        assert world.vault.gc["blocked"]["reason"] == report.skipped
    container.put(refs, good, overwrite=True)
    assert world.collect().condemned > 0 and "blocked" not in world.vault.gc


def test_orphan_blobs_are_deleted_once_a_day_old(world):
    point = world.backup("item-a", world.tree("a"))
    cid = sorted(world.refs(point))[0]
    name = container_name(world.agent.vault_id)
    orphan = "chunks/ab/" + "ab" * 32
    for account in world.services.regions().values():
        account.container(name).put(orphan, b"never declared")
    world.services.primary.container(name).put(chunk_blob_name(cid) + ".0123abcd", b"a replacement left behind")
    world.advance_days(0.5)
    assert world.collect().orphans_deleted == 0
    world.advance_days(1)
    assert world.collect().orphans_deleted == 3
    blobs = world.chunk_blobs()
    assert chunk_blob_name(cid) in blobs["primary"] and orphan not in blobs["primary"] | blobs["secondary"]
    assert not [b for b in world.services.primary.container(name).list("chunks/") if "." in b]


def test_a_pass_out_of_time_resumes_where_it_stopped(world, monkeypatch):
    point = world.backup("item-a", world.tree("a", files=6, size=300_000))
    chunks = world.refs(point)
    deletion.delete_point(world.services, world.vault, point)
    world.advance_days(15)
    deletion.purge_due(world.services, world.vault)
    ticks = iter(range(10**6))
    monkeypatch.setattr(gc.time, "monotonic", lambda: next(ticks))
    first = gc.collect(world.services, world.vault, deadline=20)
    assert not first.finished and 0 < len(first.shards) < 256
    assert world.vault.gc["cursor"] == first.shards[-1]
    rest = gc.collect(world.services, world.vault, deadline=10**9)
    assert rest.finished and rest.shards[0] > first.shards[-1] and world.vault.gc["cursor"] == ""
    assert first.condemned + rest.condemned == len(chunks)


def _purged_world(world) -> tuple[str, set[str]]:
    a, b = world.tree("a"), world.tree("b")
    point_a, point_b = world.backup("item-a", a), world.backup("item-b", b)
    garbage = world.refs(point_a) - world.refs(point_b)
    deletion.delete_point(world.services, world.vault, point_a)
    world.advance_days(15)
    deletion.purge_due(world.services, world.vault)
    return point_b, garbage


def _effects_of_clean_passes(name: str, tmp_path) -> int:
    world = World(name, tmp_path)
    _purged_world(world)
    faults = Faults()
    world.collect(faulty(world.services, faults)), world.collect(faulty(world.services, faults))
    world.cache.close()
    return len(faults.effects)


CLEAN_EFFECTS = 49  # what two clean passes over the fixture make (checked below: the data is the same each run)


@pytest.mark.parametrize("kind", FAULT_KINDS)
@pytest.mark.parametrize("after", range(1, CLEAN_EFFECTS + 1))
def test_a_fault_at_any_step_of_gc_loses_nothing_and_the_next_passes_finish(world, after, kind, tmp_path):
    kept, garbage = _purged_world(world)
    before = world.chunk_blobs()
    faults = Faults()
    faults.arm(after, kind)
    for _ in range(2):
        faults.revive()
        try:
            world.collect(faulty(world.services, faults))
        except (Crash, TransientError) as e:  # the pass died, or a lost answer ended it
            assert faults.fired, e
    for _ in range(3):
        world.collect()
    gone = {chunk_blob_name(c) for c in garbage}
    assert world.chunk_blobs() == {region: blobs - gone for region, blobs in before.items()}
    records = world.services.index.get_chunks(world.agent.vault_id, sorted(garbage | world.refs(kept)))
    assert set(records) == world.refs(kept)
    freed = world.usage(UsageKind.CHUNK_PURGED)
    assert len(freed) == len({e.id for e in freed}) == len(garbage), "each chunk's bytes counted once"
    assert world.restores(kept, world.tmp / "b")


def test_the_fault_walk_covers_every_effect_of_two_passes(tmp_path):
    effects = _effects_of_clean_passes("gc-walk-clean", tmp_path)
    assert effects == CLEAN_EFFECTS


def test_a_chunk_left_deleting_by_a_crash_is_finished_even_when_a_backup_names_it_again(world):
    """The pass dies right after marking a chunk `deleting`; a backup of the same data finds it
    rejected, uploads a replacement and fails its commit while it is `deleting`; its pending
    point references the chunk, and the next pass still finishes the deletion, so the backup
    after it commits."""
    a = world.tree("a")
    point = world.backup("item-a", a)
    deletion.delete_point(world.services, world.vault, point)
    world.advance_days(15)
    deletion.purge_due(world.services, world.vault)
    assert world.collect().condemned > 0
    # What a pass that died right after deleting the paired region's copy of a chunk leaves.
    records = world.services.index.chunks_after(world.agent.vault_id, "", 1000)
    victim = next(r for r in records if r.state == ChunkState.CONDEMNED)
    victim.state = ChunkState.DELETING
    world.services.index.replace_chunk(victim)
    world.services.secondary.container(container_name(world.agent.vault_id)).delete(chunk_blob_name(victim.id))
    with pytest.raises(ApiError, match="503 .* being garbage-collected"):
        world.backup("item-a", a)
    # Through the queues, the point is recorded pending, waiting for the replacement.
    sent = Backup(world.agent, world.cache, "item-a").run([str(a)], wait=False)
    pending = world.services.index.get_point(world.agent.vault_id, sent.point_id)
    assert pending.state == "pending" and victim.id in world.refs(sent.point_id)
    world.collect()
    assert victim.id not in world.services.index.get_chunks(world.agent.vault_id, [victim.id])
    again = world.backup("item-a", a)
    records = world.services.index.get_chunks(world.agent.vault_id, sorted(world.refs(again)))
    assert {r.state for r in records.values()} == {ChunkState.VERIFIED}
    assert world.restores(again, a)
