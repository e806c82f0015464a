"""The sweep: finish the recovery points no message will finish any more.

A point's commit message re-checks it at most a minute apart while its chunks are pending, and
a committed point's follow-ups are done by the delivery that committed it. A message can still
be lost: poisoned after its redeliveries ran out (the index did not answer for 40 minutes), a
queue that refused the re-check, an HTTP commit whose agent gave up. Then nothing looks at the
point again, and it would stay `pending`, or committed without its usage event or replicas, for
ever. The sweep timer finds such points from their state and finishes them.

Words:
- stale point: pending, or committed without `follow_ups_at`, and not checked (`checked_at`)
  for SWEEP_IDLE: a live commit message checks it far more often.
- sweep a point: a committed one gets its follow-ups (commit.follow_up); a pending one is
  checked as its commit would check it (commit.check_point, with the parent it recorded), and
  is committed when its chunks are verified now, failed with the reason when a chunk was
  rejected or it has been pending for PENDING_LIMIT, and otherwise recorded as checked, so the
  next sweep after SWEEP_IDLE checks it again.

Bounded: one run sweeps at most SWEEP_BATCH points over all vaults, each query naming its
vault; a swept point is not stale again for SWEEP_IDLE, so a backlog drains run after run.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from shared.domain import PointState, RecoveryPoint, Vault
from shared.ports import PreconditionFailed, TransientError
from shared.service import machines
from shared.service.commit import COMMIT_MAX_CHECKS, check_point, finish_point, follow_up
from shared.service.context import Services, iso_time

log = logging.getLogger("skyvault.sweep")

SWEEP_IDLE = timedelta(minutes=10)
# As long as a commit message re-checks a point (COMMIT_MAX_CHECKS checks, about 3 hours).
PENDING_LIMIT = timedelta(hours=3)
SWEEP_BATCH = 100


def sweep(services: Services, batch: int = SWEEP_BATCH) -> dict[str, list[str]]:
    """The timer's work: sweep up to `batch` stale points, the vaults in creation order.
    Returns the ids of the points by what became of them: `committed`, `failed`, `pending`
    (checked, still waiting), `followed_up` (a committed point's follow-ups redone)."""
    report: dict[str, list[str]] = {"committed": [], "failed": [], "pending": [], "followed_up": []}
    checked_before = iso_time(services.clock() - SWEEP_IDLE)
    for vault in services.index.list_all_vaults():
        left = batch - sum(map(len, report.values()))
        if left <= 0:
            break
        try:
            for point in services.index.stale_points(vault.id, checked_before, left):
                outcome = sweep_point(services, vault, point)
                report[outcome].append(point.id)
        except TransientError as e:
            log.warning("sweep of vault %s deferred: %s", vault.id, e)
    return report


def sweep_point(services: Services, vault: Vault, point: RecoveryPoint) -> str:
    """Finish stale `point` if its state allows; returns which of the report's lists it goes in.
    Idempotent, as the commit and its follow-ups are."""
    if point.state == PointState.COMMITTED:
        follow_up(services, vault, point)
        log.warning("vault %s: point %s was committed without its follow-ups; redone", vault.id, point.id)
        return "followed_up"
    revoked = machines.revoked_at(services, vault, point.machine)
    if revoked is not None:  # its commit messages are refused from then on: so is the point
        finish_point(services, vault, point, PointState.FAILED,
                     f"made by machine {point.machine}, revoked at {revoked} before the point committed")
        return "failed"
    outcome = check_point(services, vault, point, point.parent_point_id)
    if isinstance(outcome, RecoveryPoint):
        log.warning("vault %s: point %s had no live commit; the sweep found it %s", vault.id, point.id, outcome.state)
        return "committed" if outcome.state == PointState.COMMITTED else "failed"
    now = services.clock()
    received = datetime.fromisoformat(point.received_at)
    if now - received >= PENDING_LIMIT or point.commit_checks >= COMMIT_MAX_CHECKS:
        finish_point(services, vault, point, PointState.FAILED,
                     f"pending since {received.isoformat()}, over {PENDING_LIMIT}: "
                     f"{outcome} were never verified")
        return "failed"
    point.checked_at, point.reason = iso_time(now), f"waiting for {outcome} to be verified"
    try:
        services.index.replace_point(point)
    except PreconditionFailed:
        pass  # a commit is working on it after all
    return "pending"
