"""The retention sweep: the timer that applies every item's policy, purges what soft delete no
longer keeps and collects the garbage, vault after vault.

Words:
- sweep of a vault: record the silent backup runs dead (runs.end_silent_runs); for every item
  whose protection is not stopped, soft-delete the points its policy expires (the reason names
  the policy); purge the soft-deleted points whose time is up (deletion.purge_due); run a
  garbage-collection pass (gc.collect) until the run's deadline. The vault's `gc["sweptAt"]`
  records when it was done.
- single instance: a run holds the lease on `locks/retention-sweep` (shared/service/singleton)
  in the primary account's LOCKS_CONTAINER. A run that finds it held does nothing: the timer,
  an operator's `skyvault retention sweep` and a late run that overlaps the next never sweep at
  once.
- resumes: vaults are swept least recently swept first, and a run stops starting vaults at its
  deadline; garbage collection keeps its own cursor. Every step is idempotent and decided by
  stored state, so a missed, late or repeated run only moves the work.

A stopped item's points are kept as they are (stop protection, retain data). An immutable
vault's expiry is allowed: a point its policy expires has ended its retention.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from shared.domain import Protection, Vault
from shared.ports import TransientError
from shared.service import deletion, footprint, gc, singleton
from shared.service.context import Services, iso_time, update_vault
from shared.service.policies import retention_plan
from shared.service.runs import end_silent_runs

log = logging.getLogger("skyvault.retention")

LOCKS_CONTAINER = "skyvault-locks"
LOCK_NAME = "retention-sweep"
# A run's time: under the Functions host's default timeout (30 minutes on Flex Consumption).
SWEEP_SECONDS = 20 * 60


@dataclass
class VaultSweep:
    vault_id: str
    ended_runs: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    purged: list[str] = field(default_factory=list)
    gc: gc.GcReport | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {"vaultId": self.vault_id, "endedRuns": self.ended_runs, "expired": self.expired,
                "purged": self.purged, "gc": self.gc and self.gc.as_dict(), "error": self.error}


@dataclass
class SweepReport:
    vaults: list[VaultSweep] = field(default_factory=list)
    busy: str | None = None  # another instance held the lock: this run did nothing

    def as_dict(self) -> dict:
        return {"busy": self.busy, "vaults": [v.as_dict() for v in self.vaults]}


def run(services: Services, seconds: float = SWEEP_SECONDS, vault_ids: list[str] | None = None) -> SweepReport:
    """The timer's work: sweep the vaults (or those of `vault_ids`), least recently swept first,
    for at most `seconds`, holding the single-instance lock."""
    report = SweepReport()
    deadline = time.monotonic() + seconds
    locks = services.primary.container(LOCKS_CONTAINER)
    locks.create()
    try:
        with singleton.hold(locks, LOCK_NAME) as lock:
            vaults = [v for v in services.index.list_all_vaults() if vault_ids is None or v.id in vault_ids]
            for vault in sorted(vaults, key=lambda v: (v.gc.get("sweptAt", ""), v.id)):
                if time.monotonic() > deadline:
                    break
                lock.check()
                report.vaults.append(sweep_vault(services, vault, deadline))
    except singleton.Busy as e:
        report.busy = str(e)
        log.info("retention sweep: %s", e)
    return report


def sweep_vault(services: Services, vault: Vault, deadline: float | None = None) -> VaultSweep:
    """Sweep one vault (see the module's words). A vault the index does not answer for is left
    for the next run."""
    done = VaultSweep(vault.id)
    try:
        done.ended_runs = end_silent_runs(services, vault)
        done.expired = expire(services, vault, services.clock())
        done.purged = deletion.purge_due(services, vault)
        vault = services.index.get_vault(vault.tenant_id, vault.id) or vault
        done.gc = gc.collect(services, vault, deadline)
        vault = services.index.get_vault(vault.tenant_id, vault.id) or vault
        update_vault(services, vault, _swept(iso_time(services.clock())))
    except TransientError as e:
        done.error = str(e)
        log.warning("retention sweep of vault %s deferred: %s", vault.id, e)
    return done


def expire(services: Services, vault: Vault, now: datetime) -> list[str]:
    """Soft-delete what each protected item's policy no longer keeps; returns their ids."""
    stopped = {r.id for r in services.index.list_items(vault.id) if r.protection == Protection.STOPPED}
    doomed = []
    for plan in retention_plan(services, vault, None, now):
        if plan.item in stopped:
            continue
        for point_id, _ in plan.decision.expire:
            point = services.index.get_point(vault.id, point_id)
            if point is not None and point.live:
                doomed.append((point, f"expired by policy {plan.policy_name} at {iso_time(now)}: no rule keeps it"))
    # One pass over the reference lists measures what each expired point alone keeps stored.
    alone = footprint.alone_bytes(services, vault, [p.id for p, _ in doomed])
    for point, reason in doomed:
        deletion.soft_delete(services, vault, point, reason, alone)
    return [p.id for p, _ in doomed]


def _swept(now: str):
    def change(v: Vault) -> bool:
        v.gc = {**v.gc, "sweptAt": now}
        return True

    return change
