"""A model-based stress test of retention (hypothesis stateful): backups from several machines of
items that share data, restores, policy changes, sweeps, deletes, undeletes and garbage
collection with a crash injected at any of its steps, a backup that commits while garbage
collection runs, on one simulated clock.

After every step: every point that is not purged (live or soft-deleted) has every chunk it
references stored (a verified or condemned record, and its blob in both regions), and the point
restored is byte-identical to the tree it was made of. At the end, past the safety window
(every soft delete purged, two collection passes), storage holds no chunk nothing references,
in either region.

`make test` runs the short profile; `make stress` the long one (HYPOTHESIS_PROFILE=stress)."""
from __future__ import annotations

import itertools
import os
import random
import tempfile
from datetime import timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from shared.domain import ChunkState, SoftDelete, chunk_blob_name, container_name
from shared.service import deletion, gc, policies, retention_sweep
from shared.service.context import update_vault
from shared import crypto
from skyvault import backup as agent_backup
from skyvault.backup import Backup, committer
from skyvault.cache import Cache
from skyvault.treedigest import tree_digest
from skyvault.vaultclient import ApiError
from tests.faults import Crash, Faults, faulty
from tests.unit.agentworld import World

settings.register_profile("short", max_examples=6, stateful_step_count=14, deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("stress", max_examples=200, stateful_step_count=40, deadline=None,
                          suppress_health_check=list(HealthCheck))
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "short")

MACHINES, ITEMS = 2, 3
# File contents the items share, each a few chunks (at least 512 KiB each), so backups share chunks.
POOL = [random.Random(f"pool-{n}").randbytes((1_500 + 170 * n) << 10) for n in range(6)]


def policy(days: int) -> dict:
    return {"v": 1, "schedule": {"frequency": "daily", "times": ["02:00"]}, "retention": {"daily": {"days": days}}}


class Retention(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # The same choices must replay the same run, for hypothesis to shrink a failure: chunk
        # ids (keyed by the vault's salt) and point ids (their random suffix) made repeatable.
        self._patched = [(crypto, "new_salt", crypto.new_salt),
                         (agent_backup, "new_point_id", agent_backup.new_point_id)]
        points = itertools.count()
        crypto.new_salt = lambda: b"stress test salt"
        agent_backup.new_point_id = lambda now: f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{next(points):08x}"
        self._tmp = tempfile.TemporaryDirectory()
        tmp = Path(self._tmp.name)
        self.world = World(f"stress-{random.getrandbits(32):08x}", tmp)  # names only its fakes' URLs
        self.caches = [self.world.cache] + [Cache(tmp / f"cache-{m}.sqlite") for m in range(1, MACHINES)]
        self.trees = {}
        for i in range(ITEMS):
            root = tmp / f"item{i}"
            root.mkdir()
            self.trees[f"item{i}"] = root
        self.digests: dict[str, object] = {}  # point id -> the tree it was made of
        self.items: dict[str, str] = {}  # point id -> item
        for days in (1, 3, 7):
            policies.create_policy(self.world.services, self.world.vault, f"d{days}", policy(days))
        # A commit that cannot complete (a chunk collected under it) fails the rule at once.
        self._commit_wait, committer.COMMIT_WAIT_S = committer.COMMIT_WAIT_S, 1

    @initialize(soft_delete=st.booleans())
    def vault_settings(self, soft_delete):
        """Without soft delete a deleted point is purged at the next sweep, even while a backup
        that started from it runs."""
        if not soft_delete:
            update_vault(self.world.services, self.world.vault,
                         lambda v: setattr(v, "soft_delete", SoftDelete.DISABLED) or True)

    def teardown(self):
        committer.COMMIT_WAIT_S = self._commit_wait
        for module, name, value in self._patched:
            setattr(module, name, value)
        for cache in self.caches:
            cache.close()
        self._tmp.cleanup()

    # What the service holds

    def points(self):
        return {p.id: p for p in self.world.services.index.list_points(self.world.agent.vault_id)}

    def live(self) -> list[str]:
        """In the order they were made (their ids end in random digits: no order to replay by)."""
        points = self.points()
        return [pid for pid in self.digests if pid in points and points[pid].live]

    def deleted(self) -> list[str]:
        points = self.points()
        return [pid for pid in self.digests if pid in points and points[pid].deleted_at and not points[pid].purging_at]

    def pick(self, data, ids: list[str]) -> str:
        return ids[data.draw(st.integers(0, len(ids) - 1))]

    # Rules

    @rule(machine=st.integers(0, MACHINES - 1), item=st.integers(0, ITEMS - 1),
          files=st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=3),
          meanwhile=st.sampled_from(["nothing", "collect", "delete the parent and sweep"]))
    def backup(self, machine, item, files, meanwhile):
        name = f"item{item}"
        root = self.trees[name]
        wanted = {f"f{pool}.bin": pool for pool in files}
        for old in root.iterdir():
            if old.name not in wanted:
                old.unlink()
        for file, pool in wanted.items():  # a file kept is not written again: the cache reuses its chunks
            if not (root / file).exists():
                (root / file).write_bytes(POOL[pool])
        parents = [pid for pid in self.live() if self.items[pid] == name]
        if meanwhile != "nothing":  # between the backup's uploads and its commit
            api = self.world.agent.api

            def collect_before_commit(method, subpath, *args, **kwargs):
                if subpath == "commits":
                    self.world.agent.api = api
                    if meanwhile == "collect":
                        self.world.collect(), self.world.collect()
                    else:
                        if parents:
                            deletion.delete_point(self.world.services, self.world.vault, parents[-1])
                        retention_sweep.run(self.world.services), retention_sweep.run(self.world.services)
                return api(method, subpath, *args, **kwargs)

            self.world.agent.api = collect_before_commit
        try:
            report = Backup(self.world.agent, self.caches[machine], name).run([str(root)])
        except ApiError as e:
            # A chunk a crashed collection left `deleting` cannot take a replacement until a
            # pass finishes deleting it (docs/design.md, "Known limits"): the backup fails
            # saying so, and the one after the next pass commits.
            assert e.status == 503 and "being garbage-collected" in str(e), e
            self.world.agent.__dict__.pop("api", None)
            self.world.collect()
            report = Backup(self.world.agent, self.caches[machine], name).run([str(root)])
        finally:
            self.world.agent.__dict__.pop("api", None)
        assert report.state == "committed", report.reason
        self.world.replicate()
        self.digests[report.point_id], self.items[report.point_id] = tree_digest(root), name

    @rule(hours=st.sampled_from([1, 6, 24, 8 * 24, 15 * 24]))  # up to past the soft delete's 14 days
    def time_passes(self, hours):
        self.world.clock.advance(hours * 3600)

    @rule(item=st.integers(0, ITEMS - 1), days=st.sampled_from([1, 3, 7, "default"]))
    def assign(self, item, days):
        name = "default" if days == "default" else f"d{days}"
        policies.assign_policy(self.world.services, self.world.vault, f"item{item}", name)

    @rule()
    def sweep(self):
        assert retention_sweep.run(self.world.services).busy is None

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def delete(self, data):
        deletion.delete_point(self.world.services, self.world.vault, self.pick(data, self.live()))

    @precondition(lambda self: self.deleted())
    @rule(data=st.data())
    def undelete(self, data):
        deletion.undelete_point(self.world.services, self.world.vault, self.pick(data, self.deleted()))

    @rule(after=st.integers(1, 30))
    def collect_and_crash(self, after):
        faults = Faults()
        faults.arm(after)
        try:
            gc.collect(faulty(self.world.services, faults), self.world.vault)
        except Crash:
            pass

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def restore(self, data):
        point = self.pick(data, self.live())
        assert self.world.restores(point, self.trees[self.items[point]], self.digests[point])

    # Invariants

    @invariant()
    def every_kept_point_has_its_chunks(self):
        services, vault_id = self.world.services, self.world.agent.vault_id
        name = container_name(vault_id)
        blobs = {region: set(account.container(name).list("chunks/")) for region, account in services.regions().items()}
        for pid, point in self.points().items():
            if point.purging_at is not None or point.state != "committed":
                continue
            refs = self.world.refs(pid)
            records = services.index.get_chunks(vault_id, sorted(refs))
            for cid in refs:
                assert cid in records and records[cid].state in (ChunkState.VERIFIED, ChunkState.CONDEMNED), \
                    (pid, cid, records.get(cid))
                for region, held in blobs.items():
                    assert chunk_blob_name(cid) in held, (pid, cid, region)

    def _quiesce(self):
        """Past the safety window: every deletion purged, then two collection passes."""
        for _ in range(3):
            self.world.advance_days(200)
            retention_sweep.run(self.world.services)

    def check_no_garbage_left(self):
        self._quiesce()
        for pid in self.live():
            assert self.world.restores(pid, self.trees[self.items[pid]], self.digests[pid])
        referenced = set()
        for pid in self.points():
            referenced |= self.world.refs(pid)
        for region, held in self.world.chunk_blobs().items():
            stored = {b.rsplit("/", 1)[1] for b in held}
            assert stored == referenced, (region, len(stored - referenced), len(referenced - stored))
        records = self.world.services.index.chunks_after(self.world.agent.vault_id, "", 10_000)
        assert {r.id for r in records} == referenced


class RetentionWithEnd(Retention):
    def teardown(self):
        try:
            self.check_no_garbage_left()
        finally:
            super().teardown()


# One pytest test runs every example: the long profile takes longer than the suite's 300 s.
TestRetention = pytest.mark.timeout(3600 if PROFILE == "stress" else 300)(RetentionWithEnd.TestCase)
TestRetention.settings = settings.get_profile(PROFILE)
