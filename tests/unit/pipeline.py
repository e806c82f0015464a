"""A whole service pipeline on fakes for the follow-up, sweep and crash tests: a GRS vault on two
regions and one clock, the queue functions run as the Functions host runs them, a backup's
messages, and the end state of a run in a form two runs can be compared by.

Words:
- host: runs every due message of every queue through its function's own handler and
  shared.service.delivery. A failed invocation (an exception out of delivery, as when the worker
  dies) leaves its message to be delivered again after VISIBILITY_TIMEOUT_S, as host.json's
  visibilityTimeout makes the Storage Queues extension do.
- end state: every index record, blob, usage event and day of the vault, with times reduced to
  whether they are set (a run with faults takes longer, so its times differ) and blobs to
  whether each region's copy is the primary's (envelopes differ between runs by their nonces).
"""
from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

from functions import commit, ingest, meter, replicate, restore
from shared import crypto, formats
from shared.domain import ChunkState, PointState, chunk_blob_name, container_name
from shared.fakes import MemoryBlobAccount, MemoryIndex, MemoryQueue
from shared.service import delivery, vaults
from shared.service.context import (ALL_QUEUES, COMMIT_QUEUE, INGEST_QUEUE, POISON_SUFFIX, RESTORE_QUEUE,
                                    Services)
from tests.faults import FAULT_KINDS, Crash, Faults
from tests.unit.signing import register, signed_json

START = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
VISIBILITY_TIMEOUT_S = 2
HANDLERS: dict[str, Callable[[Services, str], str]] = {
    "ingest": ingest.handle, "commit": commit.handle, "replicate": replicate.handle, "restore": restore.handle,
    "usage": meter.handle}
POINT = "20261125T120000Z-0000abcd"
KEYS = crypto.derive_keys("pipeline test passphrase", b"p" * 16)


class Clock:
    """One time for the service (datetimes) and the queues (seconds)."""

    def __init__(self):
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return (self.now - START).total_seconds()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def memory_services(clock: Clock, name: str) -> Services:
    """A service on fakes with a paired region; `name` keeps the memory regions of one test apart."""
    name = re.sub(r"[^a-z0-9]+", "-", name.lower())  # a host name in the fakes' URLs
    queues: dict[str, MemoryQueue] = {}

    def queue(queue_name: str) -> MemoryQueue:
        if queue_name not in queues:
            queues[queue_name] = MemoryQueue(queue_name, now=clock.seconds)
            queues[queue_name].create()
        return queues[queue_name]

    return Services(index=MemoryIndex(), primary=MemoryBlobAccount(f"primary-{name}", utcnow=clock),
                    secondary=MemoryBlobAccount(f"secondary-{name}", utcnow=clock), queue=queue, clock=clock,
                    replication_retry_max_s=30)


class Backup:
    """An agent's backup of `chunks` into a new vault: blobs uploaded, its messages signed."""

    def __init__(self, services: Services, redundancy: str = "GRS", chunks: int = 3, point: str = POINT):
        self.vault, _ = vaults.create_vault(services, "contoso", "laptops", redundancy)
        self.key = register(services, self.vault)
        self.point = point
        container = services.primary.container(container_name(self.vault.id))
        self.declared = []
        for i in range(chunks):
            data = b"chunk %d of the pipeline test " % i * 400
            cid = crypto.chunk_id(KEYS, data)
            envelope = crypto.encrypt_chunk(KEYS, self.vault.id, cid, data)
            container.put(chunk_blob_name(cid), envelope)
            self.declared.append({"id": cid, "size": len(envelope),
                                  "md5": base64.b64encode(hashlib.md5(envelope).digest()).decode()})
        self.container = container
        self.write_point(point)

    def write_point(self, point: str) -> None:
        """Upload the manifest root and reference list of a point of all the chunks."""
        manifest = formats.manifest_blob(point)
        self.container.put(manifest, crypto.seal(KEYS.manifest_key, self.vault.id, manifest, crypto.frame(b"{}")))
        self.container.put(formats.refs_blob(point), formats.encode_refs(sorted(self.chunk_ids)))

    @property
    def chunk_ids(self) -> list[str]:
        return [d["id"] for d in self.declared]

    def _signed(self, message_id: str, **body: Any) -> str:
        return signed_json({"v": formats.SCHEMA_VERSION, "id": message_id, "tenantId": self.vault.tenant_id,
                            "vaultId": self.vault.id, **body}, self.key)

    def chunks_message(self) -> str:
        return self._signed("m-chunks", type="chunks", chunks=self.declared)

    def commit_message(self, parent: str | None = None, point: str | None = None) -> str:
        return self._signed("m-commit", type="commit", pointId=point or self.point, item="laptop-1",
                            createdAt=START.isoformat(), chunkCount=len(self.declared), manifestChunks=0,
                            stats={"files": 1}, **({"parentPointId": parent} if parent else {}))

    def restore_message(self) -> str:
        return self._signed("job-1", type="restore", pointId=self.point)


def send(services: Services, queue: str, text: str) -> None:
    services.queue(queue).send(base64.b64encode(text.encode()).decode())


class Host:
    """The queue functions of the app, run on `service` (faulty or not) against the queues of
    `raw` (the host's own polling is not the handlers' effect). `faults`, when given, is revived
    before each invocation; `before_delivery(queue, text)` and `after_delivery()` are hooks for
    tests: arming a fault, checking an invariant."""

    def __init__(self, service: Services, raw: Services, clock: Clock, faults: Faults | None = None):
        self.service, self.raw, self.clock, self.faults = service, raw, clock, faults
        self.outcomes: list[tuple[str, str]] = []
        self.before_delivery: Callable[[str, str], None] = lambda queue, text: None
        self.after_delivery: Callable[[], None] = lambda: None

    def deliver_one(self, queue: str) -> bool:
        """Deliver the next due message of `queue`, if any."""
        [message, *_] = self.raw.queue(queue).receive(1, 60) or [None]
        if message is None:
            return False
        body = base64.b64decode(message.body)
        self.before_delivery(queue, body.decode())
        if self.faults:
            self.faults.revive()
        try:
            outcome = delivery.deliver(self.service, queue, body,
                                       lambda text: HANDLERS[queue](self.service, text))
        except Crash as e:
            self.raw.queue(queue).release(message, VISIBILITY_TIMEOUT_S)
            outcome = f"failed: {e}"
        else:
            self.raw.queue(queue).delete(message)
        self.outcomes.append((queue, outcome))
        self.after_delivery()
        return True

    def run(self, rounds: int = 20_000) -> list[tuple[str, str]]:
        """Deliver every message, waiting for the delayed ones, until every queue is empty."""
        for _ in range(rounds):
            if not any(self.deliver_one(queue) for queue in ALL_QUEUES):
                if all(self.raw.queue(q).approximate_count() == 0 for q in ALL_QUEUES):
                    return self.outcomes
                self.clock.advance(1)
        raise AssertionError(f"the queues never emptied: {self.outcomes[-5:]}")


def backup_and_restore(host: Host, backup: Backup) -> None:
    """The agent's messages of one backup, delivered until done; then a restore job's."""
    send(host.raw, INGEST_QUEUE, backup.chunks_message())
    send(host.raw, COMMIT_QUEUE, backup.commit_message())
    host.run()
    send(host.raw, RESTORE_QUEUE, backup.restore_message())
    host.run()


def poisoned(services: Services) -> dict[str, int]:
    return {q: n for q in ALL_QUEUES
            if (n := services.queue(q + POISON_SUFFIX).approximate_count())}


def _set(value: object) -> bool:
    return value is not None


def end_state(services: Services, vault_id: str) -> dict[str, Any]:
    """What a run leaves behind, times reduced to whether they are set."""
    index = services.index
    vault = next(v for v in index.list_all_vaults() if v.id == vault_id)
    points = {p.id: p for p in index.list_points(vault_id)}
    container = container_name(vault_id)
    refs = [cid for p in points.values()
            for cid in formats.decode_refs(services.primary.container(container).read(p.refs_blob))]
    chunks = index.get_chunks(vault_id, refs)
    job = index.get_job(vault_id, "job-1")
    blobs = {region: {name: account.container(container).read(name) for name in account.container(container).list()}
             for region, account in services.regions().items()}
    primary = blobs["primary"]

    def md5_of_primary_blob(cid: str) -> str:
        data = primary.get(chunk_blob_name(cid))
        return data is not None and base64.b64encode(hashlib.md5(data).digest()).decode()

    return {
        "vault": {"firstBackup": _set(vault.first_backup_at), "chunkEpoch": vault.chunk_epoch},
        "chunks": {cid: (c.state, c.size, c.content_md5 == md5_of_primary_blob(cid), c.reason,
                         _set(c.replicated_at))
                   for cid, c in sorted(chunks.items())},
        "points": {pid: (p.state, p.reason, p.stats, p.chunk_count, p.refs_digest, p.chunk_epoch,
                         p.checked_against, sorted(p.replicated_blobs), _set(p.committed_at),
                         _set(p.geo_protected_at), _set(p.follow_ups_at))
                   for pid, p in sorted(points.items())},
        # Event ids and days hold times: the metered figures, and that every event counted once.
        "usage": sorted((e.kind, e.quantity, e.point_id, e.item_id, e.front_end_bytes)
                        for e in index.list_usage_events(vault_id)),
        "days": [(d.stored_delta, d.restores, d.restored_bytes, d.events, d.pending,
                  {i: (v.get("frontEnd"), v.get("protected"), v["last"][2]) for i, v in sorted(d.items.items())},
                  {p: v["last"][2:] for p, v in sorted(d.points.items())})
                 for d in index.list_usage_days(vault_id, "9999-12-31")],
        "job": job and (job.status, job.point_id, job.reason,
                        [(r["region"], r["complete"]) for r in job.plan.get("regions", [])]),
        # Blob bytes differ between runs (random nonces, the vault id in the AAD): their names,
        # and whether each region's copy is the primary's.
        "blobs": {region: {name: data == primary.get(name) for name, data in sorted(held.items())}
                  for region, held in blobs.items()},
    }


def committed_points_with_unverified_chunks(services: Services, vault_id: str) -> list[str]:
    """The invariant every step keeps: a committed point references verified chunks only."""
    bad = []
    container = services.primary.container(container_name(vault_id))
    for point in services.index.list_points(vault_id):
        if point.state != PointState.COMMITTED:
            continue
        refs = formats.decode_refs(container.read(point.refs_blob))
        records = services.index.get_chunks(vault_id, refs)
        if any(cid not in records or records[cid].state != ChunkState.VERIFIED for cid in refs):
            bad.append(point.id)
    return bad


def fault_steps(clean: dict[str, tuple[Any, Any, list[str]]]) -> list:
    """pytest params (target, after, kind) for a fault after each effect each target's clean run
    made, in both ways, each named after the effect it follows."""
    return [pytest.param(target, n, kind, id=f"{target}-after-{n}-{effect}-{kind.replace(' ', '-')}")
            for target, (_, _, effects) in clean.items()
            for n, effect in enumerate(effects, 1)
            for kind in FAULT_KINDS]
