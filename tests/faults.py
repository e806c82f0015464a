"""Fault-injecting wrappers around the ports, for crash tests (as kopia's faulty storage,
internal/blobtesting/faulty.go): the same services, with a chosen failure after the Nth side
effect.

Words:
- effect: a call that changes stored state: a blob container's create, put, copy_from,
  delete, acquire_lease, renew_lease or release_lease; a queue's create, send or delete; an
  index's create_*, add_*, replace_*. Reads are not effects. Each is named `port.method`
  (`index.replace_point`, `queue.replicate.send`).
- fault: what happens once the armed effect is done. The effect is always done first: its
  answer is what gets lost, the worst case for the caller.
  - `crash`: the process dies. That call and every later call of the services raise Crash
    until `revive()` (the host starting a new invocation); nothing the handler would do next
    happens, as when a worker is killed.
  - `lost answer`: that call raises TransientError (a time-out after the write went through);
    later calls work, so the handler's own error handling and queue delivery run.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Iterable

from shared.ports import BlobAccount, BlobContainer, BlobProperties, Index, Queue, TransientError
from shared.service.context import Services

CRASH, LOST_ANSWER = "crash", "lost answer"
FAULT_KINDS = (CRASH, LOST_ANSWER)


class Crash(Exception):
    """The worker process died (raised only in tests: no handler catches it)."""


class Faults:
    """The effects done through the wrapped services, and the one armed fault."""

    def __init__(self):
        self._lock = threading.Lock()
        self.effects: list[str] = []
        self.fired: str | None = None  # the effect after which the fault struck
        self._armed_at: int | None = None  # the effect number (1-based, from the first) to fail after
        self._kind = CRASH
        self._dead = False

    def arm(self, after: int, kind: str = CRASH) -> None:
        """Fail after the `after`th effect from now (1 = the next one)."""
        if after < 1 or kind not in FAULT_KINDS:
            raise ValueError(f"arm needs after >= 1 and a kind in {FAULT_KINDS}, not {after}, {kind!r}")
        with self._lock:
            self._armed_at, self._kind, self.fired = len(self.effects) + after, kind, None

    def disarm(self) -> None:
        with self._lock:
            self._armed_at = None

    def revive(self) -> None:
        """A new invocation starts, in a live process."""
        with self._lock:
            self._dead = False

    def before(self, name: str) -> None:
        with self._lock:
            if self._dead:
                raise Crash(f"{name}: the process died after {self.fired}")

    def after(self, name: str) -> None:
        """Record effect `name`, done; raise if it is the armed one."""
        with self._lock:
            self.effects.append(name)
            if self._armed_at != len(self.effects):
                return
            self._armed_at, self.fired = None, name
            if self._kind == CRASH:
                self._dead = True
                raise Crash(f"the process died right after {name}")
        raise TransientError(f"{name}: the answer was lost (the effect was done)")

    def call(self, name: str, effect: bool, function, *args, **kwargs):
        self.before(name)
        result = function(*args, **kwargs)
        if effect:
            self.after(name)
        return result


class FaultyContainer(BlobContainer):
    def __init__(self, inner: BlobContainer, faults: Faults, role: str):
        self._inner, self._faults, self.name = inner, faults, inner.name
        self._port = f"blob.{role}"

    def _do(self, method: str, effect: bool, *args, **kwargs):
        return self._faults.call(f"{self._port}.{method}", effect, getattr(self._inner, method), *args, **kwargs)

    def create(self, *, exist_ok: bool = True) -> None:
        self._do("create", True, exist_ok=exist_ok)

    def put(self, name: str, data: bytes, *, overwrite: bool = False, md5: bytes | None = None) -> BlobProperties:
        return self._do("put", True, name, data, overwrite=overwrite, md5=md5)

    def properties(self, name: str) -> BlobProperties:
        return self._do("properties", False, name)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._do("read", False, name, offset, length)

    def read_head(self, name: str, length: int):
        return self._do("read_head", False, name, length)

    def delete(self, name: str) -> None:
        self._do("delete", True, name)

    def list(self, prefix: str = ""):
        self._faults.before(f"{self._port}.list")
        return self._inner.list(prefix)

    def list_sizes(self, prefix: str = ""):
        self._faults.before(f"{self._port}.list_sizes")
        return self._inner.list_sizes(prefix)

    def copy_from(self, name: str, source_url: str) -> BlobProperties:
        return self._do("copy_from", True, name, source_url)

    def acquire_lease(self, name: str, seconds: int) -> str:
        return self._do("acquire_lease", True, name, seconds)

    def renew_lease(self, name: str, lease_id: str) -> None:
        self._do("renew_lease", True, name, lease_id)

    def release_lease(self, name: str, lease_id: str) -> None:
        self._do("release_lease", True, name, lease_id)


class FaultyBlobAccount(BlobAccount):
    """`role` ("primary", "secondary") names the account in effects, whatever its region."""

    def __init__(self, inner: BlobAccount, faults: Faults, role: str):
        self._inner, self._faults, self.region, self._role = inner, faults, inner.region, role

    def container(self, name: str) -> BlobContainer:
        return FaultyContainer(self._inner.container(name), self._faults, self._role)

    def container_sas_url(self, container: str, permissions: str, expiry) -> str:
        self._faults.before(f"blob.{self._role}.container_sas_url")
        return self._inner.container_sas_url(container, permissions, expiry)

    def container_from_url(self, url: str) -> BlobContainer:
        return FaultyContainer(self._inner.container_from_url(url), self._faults, self._role)


class FaultyQueue(Queue):
    def __init__(self, inner: Queue, faults: Faults):
        self._inner, self._faults, self.name = inner, faults, inner.name

    def _do(self, method: str, effect: bool, *args, **kwargs):
        return self._faults.call(f"queue.{self.name}.{method}", effect, getattr(self._inner, method),
                                 *args, **kwargs)

    def create(self) -> None:
        self._do("create", True)

    def send(self, body: str, *, visibility_timeout: int = 0) -> None:
        self._do("send", True, body, visibility_timeout=visibility_timeout)

    def receive(self, max_messages: int, visibility_timeout: int):
        return self._do("receive", False, max_messages, visibility_timeout)

    def delete(self, message) -> None:
        self._do("delete", True, message)

    def release(self, message, visibility_timeout: int) -> None:
        self._do("release", False, message, visibility_timeout)

    def approximate_count(self) -> int:
        return self._do("approximate_count", False)

    def peek(self, max_messages: int = 32):
        return self._do("peek", False, max_messages)


class FaultyIndex(Index):
    def __init__(self, inner: Index, faults: Faults):
        self._inner, self._faults = inner, faults

    def _write(self, method: str, *args):
        return self._faults.call(f"index.{method}", True, getattr(self._inner, method), *args)

    def _read(self, method: str, *args):
        return self._faults.call(f"index.{method}", False, getattr(self._inner, method), *args)

    def create_vault(self, vault):
        return self._write("create_vault", vault)

    def get_vault(self, tenant_id, vault_id):
        return self._read("get_vault", tenant_id, vault_id)

    def list_vaults(self, tenant_id):
        return self._read("list_vaults", tenant_id)

    def list_all_vaults(self):
        return self._read("list_all_vaults")

    def replace_vault(self, vault):
        return self._write("replace_vault", vault)

    def get_item(self, vault_id, item):
        return self._read("get_item", vault_id, item)

    def put_item(self, record):
        return self._write("put_item", record)

    def list_items(self, vault_id):
        return self._read("list_items", vault_id)

    def add_chunk(self, chunk):
        return self._write("add_chunk", chunk)

    def get_chunks(self, vault_id, chunk_ids: Iterable[str]):
        return self._read("get_chunks", vault_id, list(chunk_ids))

    def replace_chunk(self, chunk):
        return self._write("replace_chunk", chunk)

    def delete_chunk(self, chunk):
        return self._write("delete_chunk", chunk)

    def oldest_unreplicated_chunk(self, vault_id):
        return self._read("oldest_unreplicated_chunk", vault_id)

    def chunks_after(self, vault_id, after_id, limit):
        return self._read("chunks_after", vault_id, after_id, limit)

    def create_point(self, point):
        return self._write("create_point", point)

    def get_point(self, vault_id, point_id):
        return self._read("get_point", vault_id, point_id)

    def replace_point(self, point):
        return self._write("replace_point", point)

    def delete_point(self, vault_id, point_id):
        return self._write("delete_point", vault_id, point_id)

    def list_points(self, vault_id, item=None):
        return self._read("list_points", vault_id, item)

    def replace_job(self, job):
        return self._write("replace_job", job)

    def list_jobs(self, vault_id, kind, status):
        return self._read("list_jobs", vault_id, kind, status)

    def stale_points(self, vault_id, checked_before, limit):
        return self._read("stale_points", vault_id, checked_before, limit)

    def create_machine(self, machine):
        return self._write("create_machine", machine)

    def get_machine(self, vault_id, machine_id):
        return self._read("get_machine", vault_id, machine_id)

    def replace_machine(self, machine):
        return self._write("replace_machine", machine)

    def list_machines(self, vault_id):
        return self._read("list_machines", vault_id)

    def add_nonce(self, nonce, now):
        return self._write("add_nonce", nonce, now)

    def create_job(self, job):
        return self._write("create_job", job)

    def get_job(self, vault_id, job_id):
        return self._read("get_job", vault_id, job_id)

    def add_usage_event(self, event):
        return self._write("add_usage_event", event)

    def list_usage_events(self, vault_id):
        return self._read("list_usage_events", vault_id)

    def usage_events_present(self, vault_id, event_ids):
        return self._read("usage_events_present", vault_id, event_ids)

    def get_usage_day(self, vault_id, day):
        return self._read("get_usage_day", vault_id, day)

    def create_usage_day(self, day):
        return self._write("create_usage_day", day)

    def replace_usage_day(self, day):
        return self._write("replace_usage_day", day)

    def list_usage_days(self, vault_id, until):
        return self._read("list_usage_days", vault_id, until)


def faulty(services: Services, faults: Faults) -> Services:
    """The same services, every port call going through `faults`."""
    queues: dict[str, Queue] = {}

    def queue(name: str) -> Queue:
        if name not in queues:
            queues[name] = FaultyQueue(services.queue(name), faults)
        return queues[name]

    return replace(services, index=FaultyIndex(services.index, faults),
                   primary=FaultyBlobAccount(services.primary, faults, "primary"),
                   secondary=FaultyBlobAccount(services.secondary, faults, "secondary") if services.secondary else None,
                   queue=queue)
