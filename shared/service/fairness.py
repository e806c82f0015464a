"""Fair share of a host instance's queue workers between vaults: every tenant's agents post to
the same `ingest`, `commit` and `restore` queues, so a vault that floods them must not hold
every worker while another vault's messages wait (docs/design.md, "Fair share").

Each instance (one FairShare per process) lets at most PER_VAULT deliveries of one vault run at
once. A message of a vault over its share is not handled but queued again with a delay (one
queue write, instead of the storage reads and index writes of handling it), and does not count
as an attempt. The delay is the vault's own backlog: the n-th message of a vault deferred and
not yet due waits about n times the vault's mean handling time over PER_VAULT, so a flood comes
back at the pace the vault is served, not all at once, and each of its messages is deferred
about once. Nothing marks a deferred message (an agent could forge a mark): one that comes back
is admitted or deferred again like any other.

Words:
- share: the deliveries of one vault running at once on this instance.
- backlog: the vault's deferred messages not yet due again.
"""
from __future__ import annotations

import random
import threading
import time
from typing import Callable

PER_VAULT = 8  # of batchSize 16 + newBatchThreshold 8 per queue (host.json)
FIRST_GUESS_S = 1.0  # a vault's mean handling time before one is measured
MIN_DEFER_S, MAX_DEFER_S = 1, 600  # MAX_DEFER_S: the redelivery delay's bound (shared/service/delivery.py)


class FairShare:
    def __init__(self, per_vault: int = PER_VAULT, clock: Callable[[], float] = time.monotonic):
        self.per_vault, self.clock = per_vault, clock
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._due: dict[str, list[float]] = {}
        self._mean: dict[str, float] = {}

    def admit(self, vault_id: str) -> int | None:
        """None: run it (call `done` after); else the seconds to defer this delivery by."""
        with self._lock:
            now = self.clock()
            if self._running.get(vault_id, 0) < self.per_vault:
                self._running[vault_id] = self._running.get(vault_id, 0) + 1
                return None
            due = [t for t in self._due.get(vault_id, ()) if t > now]
            pace = self._mean.get(vault_id, FIRST_GUESS_S) / self.per_vault
            delay = min(MAX_DEFER_S, max(MIN_DEFER_S, round((len(due) + 1) * pace * random.uniform(1.0, 1.2))))
            due.append(now + delay)
            self._due[vault_id] = due
            return delay

    def done(self, vault_id: str, seconds: float) -> None:
        with self._lock:
            self._running[vault_id] -= 1
            if not self._running[vault_id]:
                del self._running[vault_id]
            self._mean[vault_id] = 0.8 * self._mean.get(vault_id, seconds) + 0.2 * seconds
            if not self._running.get(vault_id) and not any(t > self.clock() for t in self._due.get(vault_id, ())):
                self._due.pop(vault_id, None)
                if len(self._mean) > 10_000:  # vaults seen once: keep the table small
                    self._mean.pop(vault_id, None)

    def running(self, vault_id: str) -> int:
        with self._lock:
            return self._running.get(vault_id, 0)
