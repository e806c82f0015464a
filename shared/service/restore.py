"""Restore jobs: a plan and short-lived read-only SAS for each region that holds the point.

Restores are free: a ready job's usage event (`restore_served`, the point's stored bytes) puts
a zero-priced line on the bill; an `inspect` job (the agent's ls, diff, find, stats and check,
which restore nothing) has none, so looking at points does not count as restores. A job needs only the index, so it can be prepared while the
primary region's storage is down."""
from __future__ import annotations

from datetime import timedelta

from shared.domain import Job, JobKind, JobStatus, PointState, Redundancy, UsageEvent, UsageKind, Vault, container_name
from shared.messages import RegionAccess, RestoreMessage, RestorePlan, RestoreRequest
from shared.ports import Conflict
from shared.service import metering
from shared.service.context import Services, iso_time
from shared.service.machines import authorized_vault

RESTORE_SAS_TTL = timedelta(hours=1)


def prepare_restore(services: Services, message: RestoreMessage) -> Job:
    """The restore queue's entry of create_restore_job. Idempotent on the job id the agent chose."""
    vault = authorized_vault(services, message)
    return create_restore_job(services, vault, RestoreRequest(job_id=message.id, point_id=message.point_id),
                              message.machine)


def create_restore_job(services: Services, vault: Vault, request: RestoreRequest, machine: str | None = None) -> Job:
    """Create restore job `request.job_id` of `machine` for a committed point (a failed job,
    with the reason, for any other). Idempotent on the job id the agent chose."""
    existing = services.index.get_job(vault.id, request.job_id)
    if existing is not None:
        return _served(services, vault, existing)  # a crash may have come before its usage event
    now = services.clock()
    point = services.index.get_point(vault.id, request.point_id)
    job = Job(id=request.job_id, vault_id=vault.id, kind=JobKind.RESTORE, point_id=request.point_id,
              status=JobStatus.READY, created_at=iso_time(now), machine=machine,
              purpose=None if request.purpose == "restore" else request.purpose)
    if point is None or point.state != PointState.COMMITTED:
        job.status = JobStatus.FAILED
        job.reason = (f"recovery point {request.point_id} is {'unknown' if point is None else point.state}, "
                      f"not committed")
    elif point.deleted_at is not None:
        job.status = JobStatus.FAILED
        job.reason = (f"recovery point {request.point_id} was deleted at {point.deleted_at} ({point.deleted_reason}); "
                      f"an operator can undelete it until {point.purge_after}")
    else:
        expiry = now + RESTORE_SAS_TTL
        container = container_name(vault.id)
        regions = [RegionAccess("primary", services.primary.container_sas_url(container, "r", expiry), True)]
        if vault.redundancy == Redundancy.GRS and services.secondary is not None:
            regions.append(RegionAccess("secondary", services.secondary.container_sas_url(container, "r", expiry),
                                        point.geo_protected_at is not None))
        job.plan = RestorePlan(tuple(regions), point.manifest_blob, iso_time(expiry)).to_doc()
    try:
        job = services.index.create_job(job)
    except Conflict:
        job = services.index.get_job(vault.id, job.id)
    return _served(services, vault, job)


def _served(services: Services, vault: Vault, job: Job) -> Job:
    if job.status == JobStatus.READY and job.purpose is None:
        point = services.index.get_point(vault.id, job.point_id)
        size = point.stats.get("storedBytes", 0) if point is not None else 0
        metering.record(services, vault, [UsageEvent(
            id=f"restore-{job.id}", vault_id=vault.id, kind=UsageKind.RESTORE_SERVED, quantity=size,
            at=job.created_at, point_id=job.point_id)])
    return job
