"""Backup runs: the service's record of each backup in progress, so that garbage collection never
deletes a chunk a running backup may still reference, and never waits for one that died.

Words:
- run: one backup, from its start (`POST runs`, which answers the vault's epochs) to the commit
  of its recovery point (the run's id is the point's). A `Job` of kind `backup`: `running`, then
  `done` once its point committed or failed, or once it fell silent.
- heartbeat: `POST runs/{run}`, sent by the agent every RUN_HEARTBEAT while the backup runs (a
  backup reading unchanged files may not talk to the service for hours otherwise).
- live: running and heard from within RUN_TIMEOUT. A run silent for longer is dead: garbage
  collection no longer waits for it, and its next heartbeat is refused, so it cannot come back
  and commit chunks that were collected meanwhile without being told (docs/design.md, "Garbage
  collection").
"""
from __future__ import annotations

from datetime import datetime

from shared.domain import Job, JobKind, JobStatus, Protection, Vault
from shared.errors import Forbidden, Invalid, NotFound
from shared.messages import RUN_HEARTBEAT, RunAnswer, RunRequest
from shared.ports import Conflict
from shared.service.context import Services, iso_time, update

RUN_TIMEOUT = 12 * RUN_HEARTBEAT  # two hours


def start_run(services: Services, vault: Vault, request: RunRequest) -> RunAnswer:
    """Record a backup run as running and answer the vault's epochs. Refused for an item whose
    protection is stopped. Idempotent: a retried start of a running run answers the same."""
    record = services.index.get_item(vault.id, request.item)
    if record is not None and record.protection == Protection.STOPPED:
        raise Forbidden(f"item {request.item}: protection is stopped, so it takes no new backups "
                        f"(an operator resumes it with `skyvault protection resume {request.item}`)")
    now = iso_time(services.clock())
    try:
        job = services.index.create_job(Job(
            id=request.run_id, vault_id=vault.id, kind=JobKind.BACKUP, point_id=request.run_id,
            status=JobStatus.RUNNING, created_at=now,
            plan={"item": request.item, "parentPointId": request.parent_point_id, "lastSeenAt": now}))
    except Conflict:
        job = _running(services, vault, request.run_id)
    return _answer(services, vault, job)


def heartbeat(services: Services, vault: Vault, run_id: str) -> RunAnswer:
    """Record that run `run_id` is still going. Refused (Invalid, naming why) for a run that
    ended or was silent longer than RUN_TIMEOUT: the agent must start its backup again."""
    job = _running(services, vault, run_id)

    def seen(j: Job) -> bool:
        j.plan = {**j.plan, "lastSeenAt": iso_time(services.clock())}
        return True

    job = update(job, seen, services.index.replace_job, lambda j: services.index.get_job(j.vault_id, j.id)) or job
    return _answer(services, vault, job)


def end_run(services: Services, vault_id: str, run_id: str, outcome: str) -> None:
    """Record run `run_id` done, with `outcome` (the point's state, or why it was given up).
    Idempotent; a point without a run record (an older agent) needs nothing."""
    job = services.index.get_job(vault_id, run_id)
    if job is None or job.kind != JobKind.BACKUP:
        return

    def finish(j: Job) -> bool:
        if j.status != JobStatus.RUNNING:
            return False
        j.status, j.reason = JobStatus.DONE, outcome
        j.plan = {**j.plan, "endedAt": iso_time(services.clock())}
        return True

    update(job, finish, services.index.replace_job, lambda j: services.index.get_job(j.vault_id, j.id))


def live_runs(services: Services, vault: Vault) -> list[Job]:
    """The vault's running backups heard from within RUN_TIMEOUT, oldest first."""
    now = services.clock()
    return [j for j in services.index.list_jobs(vault.id, JobKind.BACKUP, JobStatus.RUNNING) if not _silent(j, now)]


def end_silent_runs(services: Services, vault: Vault) -> list[str]:
    """Record done the runs silent for longer than RUN_TIMEOUT (their agents died or slept);
    returns their ids."""
    now = services.clock()
    ended = []
    for job in services.index.list_jobs(vault.id, JobKind.BACKUP, JobStatus.RUNNING):
        if _silent(job, now):
            end_run(services, vault.id, job.id, f"silent since {job.plan.get('lastSeenAt')}")
            ended.append(job.id)
    return ended


def _silent(job: Job, now: datetime) -> bool:
    return now - datetime.fromisoformat(job.plan.get("lastSeenAt") or job.created_at) > RUN_TIMEOUT


def _running(services: Services, vault: Vault, run_id: str) -> Job:
    job = services.index.get_job(vault.id, run_id)
    if job is None or job.kind != JobKind.BACKUP:
        raise NotFound(f"no backup run {run_id} in vault {vault.id}")
    if job.status != JobStatus.RUNNING:
        raise Invalid(f"backup run {run_id} has ended ({job.reason}): start the backup again")
    if _silent(job, services.clock()):
        raise Invalid(f"backup run {run_id} was silent for more than {RUN_TIMEOUT} (since "
                      f"{job.plan.get('lastSeenAt')}): chunks it named may have been collected since; "
                      f"start the backup again")
    return job


def _answer(services: Services, vault: Vault, job: Job) -> RunAnswer:
    parent_id = job.plan.get("parentPointId")
    parent = services.index.get_point(vault.id, parent_id) if parent_id else None
    return RunAnswer(chunk_epoch=vault.chunk_epoch, gc_epoch=vault.gc_epoch,
                     parent_live=parent is not None and parent.live)

