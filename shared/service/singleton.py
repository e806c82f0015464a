"""Single-instance locks on blob leases: one holder at a time of a named lock, across processes.

Why: the retention sweep's timer, an operator's CLI run of the same sweep and a timer run that
starts late while the previous one is still going must not sweep the same vault at once. The
Functions host keeps only one invocation of a timer function running per app (it takes a blob
lease of its own for that), but it knows nothing of the CLI, so the sweep takes its own lock,
as the host does: a lease on a blob (shared.ports, "lease").

Words:
- lock: the blob `locks/{name}` in a container, created empty when first needed; its content
  means nothing, only its lease does.
- holder: whoever holds the lease on a lock. `hold` takes it, renews it from a daemon thread
  every third of its length and releases it on leaving, so another instance can take it at
  once; an instance that dies without releasing holds it until the lease expires (at most
  `seconds`).
- lost: the holder may no longer hold it: a renewal answered LeaseLost (released, broken, or
  expired and taken by another), failed otherwise for good, or kept failing for longer than the
  lease lasts. The lease is not taken back: a long loop calls `check()` between steps and stops
  when it raises, leaving the rest to the next holder.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from shared.ports import BlobContainer, LeaseHeld, LeaseLost, TransientError

log = logging.getLogger("skyvault.singleton")

LOCKS_PREFIX = "locks/"


class Busy(Exception):
    """Another instance holds the lock: this one should not run now (not worth retrying soon)."""


class Holder:
    """The lease one `hold` took on a lock, and whether it may have been lost (`lost`)."""

    def __init__(self, container: BlobContainer, name: str, lease_id: str, seconds: int, *,
                 renewed_at: float, now: Callable[[], float]):
        self.name = name
        self.blob = f"{LOCKS_PREFIX}{name}"
        self.lease_id = lease_id
        self.seconds = seconds
        self.lost = threading.Event()
        self._container = container
        self._now = now
        self._renewed_at = renewed_at
        self._why: Exception | None = None

    def check(self) -> None:
        """Raise LeaseLost if the lease may have been lost, naming why; else do nothing."""
        if not self.lost.is_set() and self._now() - self._renewed_at >= self.seconds:
            self._lose(LeaseLost(f"not renewed for {self.seconds} s, its whole length"))
        if self.lost.is_set():
            raise LeaseLost(f"lock {self.name!r} ({self.blob}) was lost: {self._why}") from self._why

    def _lose(self, why: Exception) -> None:
        self._why = why
        self.lost.set()

    def renew(self) -> None:
        """Renew the lease once. A transient failure is left for the next renewal, unless the
        lease may have expired since the last that worked; any other failure loses it."""
        started = self._now()
        try:
            self._container.renew_lease(self.blob, self.lease_id)
        except TransientError as e:
            if self._now() - self._renewed_at >= self.seconds:
                self._lose(e)
        except Exception as e:
            # Whatever it was, this thread would end with it, and the holder go on as if held.
            self._lose(e)
        else:
            self._renewed_at = started

    def keep(self, stop: threading.Event, every: float) -> None:
        """Renew every `every` seconds until `stop` is set or the lease is lost."""
        while not stop.wait(every) and not self.lost.is_set():
            self.renew()

    def release(self) -> None:
        """Release the lease (nothing if it is gone). One that does not get through is left to
        expire within its length: not worth hiding the body's own error for."""
        try:
            self._container.release_lease(self.blob, self.lease_id)
        except TransientError as e:
            log.warning("lock %r: release failed, the lease expires within %d s: %s", self.name, self.seconds, e)


@contextmanager
def hold(container: BlobContainer, name: str, seconds: int = 60, *,
         renew_every: float | None = None, now: Callable[[], float] = time.monotonic) -> Iterator[Holder]:
    """Hold lock `name` (the blob locks/{name} in `container`) with a lease of `seconds` (15 to
    60) for the body of the `with`, renewed every `renew_every` seconds (a third of `seconds`
    unless given) and released at the end. Raises Busy if another instance holds it. Yields the
    Holder: its `lost` event is set, and its `check()` raises LeaseLost, once the lease may have
    been lost. `now` is the clock (seconds) that tells how long since the last renewal."""
    every = seconds / 3 if renew_every is None else renew_every
    if not 0 < every < seconds:
        raise ValueError(f"lock {name!r}: renewing every {every} s cannot keep a {seconds} s lease")
    asked_at = now()
    try:
        lease_id = container.acquire_lease(f"{LOCKS_PREFIX}{name}", seconds)
    except LeaseHeld as e:
        raise Busy(f"lock {name!r} ({LOCKS_PREFIX}{name}) is held by another instance") from e
    holder = Holder(container, name, lease_id, seconds, renewed_at=asked_at, now=now)
    stop = threading.Event()
    renewer = threading.Thread(target=holder.keep, args=(stop, every), name=f"lease-renewal-{name}", daemon=True)
    renewer.start()
    try:
        yield holder
    finally:
        stop.set()
        renewer.join()
        holder.release()
