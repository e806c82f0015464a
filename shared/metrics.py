"""Operation counts: what a workload costs in storage transactions, queue messages and
Cosmos DB requests, the figures that make the cloud bill.

Counting wrappers around the ports (like kopia's storage wrappers), switched on by
the app setting `OperationCountsFile`: the function app then writes its counts to
that file as JSON within COUNTS_FLUSH_S seconds of any change, so a benchmark can
read what the service did.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Any, Iterable

from shared.adapters.cosmos_index import CHUNK_QUERY_BATCH, USAGE_BATCH
from shared.ports import BlobAccount, BlobContainer, BlobProperties, Index, Queue

COUNTS_FLUSH_S = 0.5


class OperationCounts:
    def __init__(self, path: str | None = None):
        self._path = path
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._dirty = False
        self.first_at: float | None = None
        self.last_at: float | None = None
        if path:
            threading.Thread(target=self._flush_loop, name="operation-counts", daemon=True).start()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n
            now = time.time()
            self.first_at = self.first_at or now
            self.last_at = now
            self._dirty = True

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counts": dict(self._counts), "firstAt": self.first_at, "lastAt": self.last_at}

    def _flush_loop(self) -> None:
        while True:
            time.sleep(COUNTS_FLUSH_S)
            if self._dirty:
                self._dirty = False
                tmp = f"{self._path}.{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    json.dump(self.snapshot(), f)
                os.replace(tmp, self._path)


class _CountingContainer(BlobContainer):
    def __init__(self, inner: BlobContainer, counts: OperationCounts, region: str):
        self._inner, self._counts, self._region = inner, counts, region
        self.name = inner.name

    def _add(self, op: str, n: int = 1) -> None:
        self._counts.add(f"blob.{self._region}.{op}", n)

    def create(self, *, exist_ok: bool = True) -> None:
        self._add("create_container")
        self._inner.create(exist_ok=exist_ok)

    def put(self, name: str, data: bytes, *, overwrite: bool = False, md5: bytes | None = None) -> BlobProperties:
        self._add("put")
        self._add("bytes_written", len(data))
        return self._inner.put(name, data, overwrite=overwrite, md5=md5)

    def properties(self, name: str) -> BlobProperties:
        self._add("properties")
        return self._inner.properties(name)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self._add("read")
        data = self._inner.read(name, offset, length)
        self._add("bytes_read", len(data))
        return data

    def read_head(self, name: str, length: int):
        self._add("read_head")
        head, props = self._inner.read_head(name, length)
        self._add("bytes_read", len(head))
        return head, props

    def delete(self, name: str) -> None:
        self._add("delete")
        self._inner.delete(name)

    def list(self, prefix: str = ""):
        self._add("list")
        return self._inner.list(prefix)

    def list_sizes(self, prefix: str = ""):
        self._add("list")
        return self._inner.list_sizes(prefix)

    def copy_from(self, name: str, source_url: str) -> BlobProperties:
        self._add("copy")
        return self._inner.copy_from(name, source_url)

    def acquire_lease(self, name: str, seconds: int) -> str:
        self._add("acquire_lease")
        return self._inner.acquire_lease(name, seconds)

    def renew_lease(self, name: str, lease_id: str) -> None:
        self._add("renew_lease")
        self._inner.renew_lease(name, lease_id)

    def release_lease(self, name: str, lease_id: str) -> None:
        self._add("release_lease")
        self._inner.release_lease(name, lease_id)


class CountingBlobAccount(BlobAccount):
    def __init__(self, inner: BlobAccount, counts: OperationCounts):
        self._inner, self._counts = inner, counts
        self.region = inner.region

    def container(self, name: str) -> BlobContainer:
        return _CountingContainer(self._inner.container(name), self._counts, self.region)

    def container_sas_url(self, container: str, permissions: str, expiry) -> str:
        return self._inner.container_sas_url(container, permissions, expiry)

    def container_from_url(self, url: str) -> BlobContainer:
        return _CountingContainer(self._inner.container_from_url(url), self._counts, self.region)


class CountingQueue(Queue):
    def __init__(self, inner: Queue, counts: OperationCounts):
        self._inner, self._counts = inner, counts
        self.name = inner.name

    def create(self) -> None:
        self._inner.create()

    def send(self, body: str, *, visibility_timeout: int = 0) -> None:
        self._counts.add(f"queue.{self.name}.send")
        self._inner.send(body, visibility_timeout=visibility_timeout)

    def receive(self, max_messages: int, visibility_timeout: int):
        return self._inner.receive(max_messages, visibility_timeout)

    def delete(self, message) -> None:
        self._inner.delete(message)

    def release(self, message, visibility_timeout: int) -> None:
        self._inner.release(message, visibility_timeout)

    def approximate_count(self) -> int:
        return self._inner.approximate_count()

    def peek(self, max_messages: int = 32):
        return self._inner.peek(max_messages)


class CountingIndex(Index):
    """Counts Cosmos DB requests: one per write or query, and one per CHUNK_QUERY_BATCH ids
    for chunk look-ups, since that is how the adapter queries them."""

    def __init__(self, inner: Index, counts: OperationCounts):
        self._inner, self._counts = inner, counts

    def _write(self, kind: str, n: int = 1):
        """A write request, counted in all and by its kind (`cosmos.write.add_chunk`), so that a
        report can say where the writes go."""
        self._counts.add("cosmos.write", n)
        self._counts.add(f"cosmos.write.{kind}", n)
        return self._inner

    def _query(self, n: int = 1):
        self._counts.add("cosmos.query", n)
        return self._inner

    def create_vault(self, vault):
        return self._write("create_vault").create_vault(vault)

    def get_vault(self, tenant_id, vault_id):
        return self._query().get_vault(tenant_id, vault_id)

    def list_vaults(self, tenant_id):
        return self._query().list_vaults(tenant_id)

    def list_all_vaults(self):
        return self._query().list_all_vaults()

    def replace_vault(self, vault):
        return self._write("replace_vault").replace_vault(vault)

    def get_item(self, vault_id, item):
        return self._query().get_item(vault_id, item)

    def put_item(self, record):
        return self._write("put_item").put_item(record)

    def list_items(self, vault_id):
        return self._query().list_items(vault_id)

    def add_chunk(self, chunk):
        return self._write("add_chunk").add_chunk(chunk)

    def get_chunks(self, vault_id, chunk_ids: Iterable[str]):
        ids = set(chunk_ids)
        return self._query(-(-len(ids) // CHUNK_QUERY_BATCH)).get_chunks(vault_id, ids)

    def replace_chunk(self, chunk):
        return self._write("replace_chunk").replace_chunk(chunk)

    def delete_chunk(self, chunk):
        return self._write("delete_chunk").delete_chunk(chunk)

    def oldest_unreplicated_chunk(self, vault_id):
        return self._query().oldest_unreplicated_chunk(vault_id)

    def chunks_after(self, vault_id, after_id, limit):
        return self._query().chunks_after(vault_id, after_id, limit)

    def create_point(self, point):
        return self._write("create_point").create_point(point)

    def get_point(self, vault_id, point_id):
        return self._query().get_point(vault_id, point_id)

    def replace_point(self, point):
        return self._write("replace_point").replace_point(point)

    def delete_point(self, vault_id, point_id):
        return self._write("delete_point").delete_point(vault_id, point_id)

    def replace_job(self, job):
        return self._write("replace_job").replace_job(job)

    def list_jobs(self, vault_id, kind, status):
        return self._query().list_jobs(vault_id, kind, status)

    def list_points(self, vault_id, item=None):
        return self._query().list_points(vault_id, item)

    def stale_points(self, vault_id, checked_before, limit):
        return self._query().stale_points(vault_id, checked_before, limit)

    def create_machine(self, machine):
        return self._write("create_machine").create_machine(machine)

    def get_machine(self, vault_id, machine_id):
        return self._query().get_machine(vault_id, machine_id)

    def replace_machine(self, machine):
        return self._write("replace_machine").replace_machine(machine)

    def list_machines(self, vault_id):
        return self._query().list_machines(vault_id)

    def add_nonce(self, nonce, now):
        return self._write("add_nonce").add_nonce(nonce, now)

    def create_job(self, job):
        return self._write("create_job").create_job(job)

    def get_job(self, vault_id, job_id):
        return self._query().get_job(vault_id, job_id)

    def add_usage_event(self, event):
        return self._write("add_usage_event").add_usage_event(event)

    def add_usage_events(self, events):
        """One request per vault's batch of up to USAGE_BATCH, as the Cosmos DB adapter writes them
        (a batch that meets an entry already there is written again one by one: not counted)."""
        per_vault: dict[str, int] = {}
        for event in events:
            per_vault[event.vault_id] = per_vault.get(event.vault_id, 0) + 1
        return self._write("add_usage_events", sum(-(-n // USAGE_BATCH) for n in per_vault.values())
                           ).add_usage_events(events)

    def list_usage_events(self, vault_id):
        return self._query().list_usage_events(vault_id)

    def usage_events_present(self, vault_id, event_ids):
        return self._query().usage_events_present(vault_id, event_ids)

    def get_usage_day(self, vault_id, day):
        return self._query().get_usage_day(vault_id, day)

    def create_usage_day(self, day):
        return self._write("create_usage_day").create_usage_day(day)

    def replace_usage_day(self, day):
        return self._write("replace_usage_day").replace_usage_day(day)

    def list_usage_days(self, vault_id, until):
        return self._query().list_usage_days(vault_id, until)


def counting(services, counts: OperationCounts):
    """The same services with every storage, queue and index call counted."""
    queues: dict[str, Queue] = {}

    def queue(name: str) -> Queue:
        if name not in queues:
            queues[name] = CountingQueue(services.queue(name), counts)
        return queues[name]

    return replace(services, index=CountingIndex(services.index, counts),
                   primary=CountingBlobAccount(services.primary, counts),
                   secondary=CountingBlobAccount(services.secondary, counts) if services.secondary else None,
                   queue=queue)
