"""Damage: a chunk's copies compared in full with what ingest verified, a bad copy healed from a
good one, a chunk no region holds good marked damaged; and the damage agents report
(POST chunks/damage), found by a check or a restore. The scrub uses the same functions.

Words:
- copy: a chunk's blob in one region of its vault. A verified chunk should have one in the
  primary and, for GRS once replicated, one in the paired region (holding_regions).
- good copy: one whose size and MD5, over its bytes read in full, are the record's.
- heal: overwrite a bad or missing copy with a good one, as replication copies.
- damaged: no region holds a good copy, or the good copies fail authentication (the upload
  itself was bad): no commit may use the chunk any more. The vault's chunkEpoch rises first
  (docs/design.md, "Commit"); the next backup holding its data uploads it again.
"""
from __future__ import annotations

import base64
import hashlib
import logging
from collections import defaultdict

from shared.domain import ChunkRecord, ChunkState, Redundancy, Vault, chunk_blob_name, container_name
from shared.messages import MAX_TEXT, DamageAnswer, DamageOutcome, DamageReport, DamageRequest
from shared.ports import BlobAccount, BlobNotFound, TransientError
from shared.service.context import Services, update_chunk
from shared.service.replication import copy_blob
from shared.service.vaults import raise_chunk_epoch

log = logging.getLogger("skyvault.damage")


def copy_digest(account: BlobAccount, container: str, name: str) -> tuple[int, str] | None:
    """The size and MD5 (base64) of a blob read in full; None if it is missing."""
    try:
        data = account.container(container).read(name)
    except BlobNotFound:
        return None
    return len(data), base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def holding_regions(services: Services, vault: Vault, record: ChunkRecord) -> dict[str, BlobAccount]:
    """The regions that should hold a copy of the chunk: the primary and, for a GRS vault, the
    paired region once the chunk is replicated."""
    regions = {"primary": services.primary}
    if vault.redundancy == Redundancy.GRS and services.secondary is not None and record.replicated_at:
        regions["secondary"] = services.secondary
    return regions


def good_copies(vault: Vault, record: ChunkRecord, regions: dict[str, BlobAccount]) -> dict[str, bool]:
    """For each region, whether its copy has the size and MD5 ingest verified (read in full)."""
    expected = (record.size, record.content_md5)
    name = chunk_blob_name(record.id)
    return {region: copy_digest(account, container_name(vault.id), name) == expected
            for region, account in regions.items()}


def heal_copies(services: Services, vault: Vault, record: ChunkRecord, good: dict[str, bool]) -> tuple[str, list[str]]:
    """Copy a good copy over each bad one; gives the region copied from and those healed."""
    regions = services.regions()
    healthy = next(region for region, ok in good.items() if ok)
    healed = []
    for broken in (region for region, ok in good.items() if not ok):
        copy_blob(services, regions[healthy], regions[broken], container_name(vault.id), chunk_blob_name(record.id))
        log.warning("vault %s: healed the %s copy of chunk %s from the %s", vault.id, broken, record.id, healthy)
        healed.append(broken)
    return healthy, healed


def mark_damaged(services: Services, vault: Vault, record: ChunkRecord, reason: str) -> Vault:
    """Mark a chunk damaged, with the reason, after raising the vault's chunk epoch; gives the
    vault as now stored. Idempotent: a chunk already damaged keeps its first reason."""
    log.error("vault %s: chunk %s is DAMAGED: %s; recovery points that reference it cannot be restored in "
              "full until a backup uploads its data again", vault.id, record.id, reason)
    # The epoch first: a commit that starts after this checks every chunk it references.
    vault = raise_chunk_epoch(services, vault)

    def damage(chunk: ChunkRecord) -> bool:
        if chunk.state == ChunkState.DAMAGED:
            return False
        chunk.state, chunk.reason = ChunkState.DAMAGED, reason[:MAX_TEXT]
        return True

    update_chunk(services, record, damage)
    return vault


def report_damage(services: Services, vault: Vault, request: DamageRequest) -> DamageAnswer:
    """For each chunk an agent reports bad in a region: read every copy in full; heal the bad
    ones from a good one; mark the chunk damaged when no copy is good, or when the agent
    downloaded exactly the bytes ingest verified (its MD5 is the record's) and they fail
    authentication, so every copy is bad alike.

    Idempotent: a chunk already damaged is left as it is, and a report repeated after its
    chunk was healed finds every copy good (the agent's MD5 is then not the record's) and does
    nothing. A region that does not answer defers the reports of that chunk."""
    by_chunk: dict[str, list[DamageReport]] = defaultdict(list)
    for report in request.reports:
        log.warning("vault %s: an agent reports the %s copy of chunk %s bad: %s", vault.id, report.region,
                    report.chunk_id, report.problem)
        by_chunk[report.chunk_id].append(report)
    records = services.index.get_chunks(vault.id, by_chunk)
    answers: dict[tuple[str, str], DamageOutcome] = {}
    for chunk_id, reports in by_chunk.items():
        record = records.get(chunk_id)
        if record is None:
            outcome, detail = "unknown", f"vault {vault.id} has no chunk {chunk_id}"
            chunk_reports = reports
        elif record.state != ChunkState.VERIFIED:
            outcome, detail = "ignored", f"the chunk is {record.state} already: {record.reason}"
            chunk_reports = reports
        else:
            regions = holding_regions(services, vault, record)
            for report in reports:
                if report.region not in regions:
                    answers[report.chunk_id, report.region] = DamageOutcome(
                        chunk_id, report.region, "ignored", f"the {report.region} region holds no copy of it "
                        f"({'not replicated yet' if vault.redundancy == Redundancy.GRS else 'an LRS vault'})")
            chunk_reports = [r for r in reports if r.region in regions]
            if not chunk_reports:
                continue
            try:
                outcome, detail, vault = _repair(services, vault, record, regions, chunk_reports)
            except TransientError as e:
                outcome, detail = "deferred", f"a region did not answer; report it again later: {e}"
        for report in chunk_reports:
            answers[report.chunk_id, report.region] = DamageOutcome(chunk_id, report.region, outcome, detail[:MAX_TEXT])
    return DamageAnswer(tuple(answers[r.chunk_id, r.region] for r in request.reports))


def _repair(services: Services, vault: Vault, record: ChunkRecord, regions: dict[str, BlobAccount],
            reports: list[DamageReport]) -> tuple[str, str, Vault]:
    good = good_copies(vault, record, regions)
    authentic = next((r for r in reports if r.md5 == record.content_md5), None)
    if authentic is not None:
        reason = (f"its envelope, stored as declared and verified, fails authentication (an agent read it in the "
                  f"{authentic.region} region): the upload itself was bad")
        return "damaged", reason, mark_damaged(services, vault, record, reason)
    if not any(good.values()):
        reason = (f"no region holds a copy with the verified size and MD5 (an agent reported "
                  f"{', '.join(sorted({r.region for r in reports}))})")
        return "damaged", reason, mark_damaged(services, vault, record, reason)
    if all(good.values()):
        return "good", "every copy has the verified size and MD5 now (healed meanwhile, or damaged in transit)", vault
    healthy, healed = heal_copies(services, vault, record, good)
    return "healed", f"the {' and '.join(healed)} copy healed from the {healthy} region", vault
