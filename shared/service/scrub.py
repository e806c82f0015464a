"""Scrub: read both regions' copies of a rolling sample of each GRS vault's chunks, heal a
missing or damaged copy from the good one, and mark a chunk bad in both regions damaged, loudly.

The timer runs `scrub`; each vault keeps its cursor (the last chunk id compared), so successive
runs cover the whole vault and then start again."""
from __future__ import annotations

import base64
import hashlib
import logging

from shared.domain import ChunkRecord, ChunkState, Redundancy, Vault, chunk_blob_name, container_name
from shared.ports import BlobAccount, BlobNotFound, PreconditionFailed, TransientError
from shared.service.context import Services
from shared.service.replication import copy_blob
from shared.service.vaults import raise_chunk_epoch

log = logging.getLogger("skyvault.scrub")

SCRUB_SAMPLE = 20


def _md5_of(account: BlobAccount, container: str, name: str) -> tuple[int, str] | None:
    try:
        data = account.container(container).read(name)
    except BlobNotFound:
        return None
    return len(data), base64.b64encode(hashlib.md5(data).digest()).decode()


def scrub_vault(services: Services, vault: Vault, sample: int = SCRUB_SAMPLE) -> dict[str, list[str]]:
    """Compare both regions' copies of the next `sample` chunks after the vault's scrub cursor,
    by full read (size and MD5 against what ingest verified); heal the bad copy from the good
    one; mark a chunk bad in both regions as damaged and log it as an error."""
    report: dict[str, list[str]] = {"checked": [], "healed_primary": [], "healed_secondary": [], "damaged": []}
    if vault.redundancy != Redundancy.GRS or services.secondary is None:
        return report
    container = container_name(vault.id)
    records = services.index.chunks_after(vault.id, vault.scrub_cursor, sample)
    for record in records:
        if record.state != ChunkState.VERIFIED or not record.replicated_at:
            continue
        name = chunk_blob_name(record.id)
        expected = (record.size, record.content_md5)
        good = {region: _md5_of(account, container, name) == expected
                for region, account in services.regions().items()}
        report["checked"].append(record.id)
        if all(good.values()):
            continue
        if not any(good.values()):
            vault = _mark_damaged(services, vault, record,
                                  "both regions' copies differ from the verified size and MD5")
            report["damaged"].append(record.id)
            continue
        healthy, broken = ("primary", "secondary") if good["primary"] else ("secondary", "primary")
        regions = services.regions()
        copy_blob(services, regions[healthy], regions[broken], container, name)
        log.warning("vault %s: healed the %s copy of chunk %s from the %s", vault.id, broken, record.id, healthy)
        report[f"healed_{broken}"].append(record.id)
    # The next run starts after this sample, and from the beginning once the vault is covered.
    vault.scrub_cursor = records[-1].id if len(records) == sample else ""
    try:
        services.index.replace_vault(vault)
    except PreconditionFailed:
        pass  # another scrub or a vault change won; the next run resamples
    return report


def _mark_damaged(services: Services, vault: Vault, record: ChunkRecord, reason: str) -> Vault:
    log.error("vault %s: chunk %s is DAMAGED in every region: %s; recovery points that reference it "
              "cannot be restored in full", vault.id, record.id, reason)
    # The epoch first: a commit that starts after this checks every chunk it references.
    vault = raise_chunk_epoch(services, vault)
    record.state, record.reason = ChunkState.DAMAGED, reason
    try:
        services.index.replace_chunk(record)
    except PreconditionFailed:
        pass  # re-examined by the next scrub
    return vault


def scrub(services: Services, sample: int = SCRUB_SAMPLE) -> dict[str, dict[str, list[str]]]:
    """The timer's work: a sample of every GRS vault."""
    reports = {}
    for vault in services.index.list_all_vaults():
        if vault.redundancy == Redundancy.GRS:
            try:
                reports[vault.id] = scrub_vault(services, vault, sample)
            except TransientError as e:
                log.warning("scrub of vault %s deferred: %s", vault.id, e)
    return reports
