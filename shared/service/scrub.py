"""Scrub: read both regions' copies of a rolling sample of each GRS vault's chunks, heal a
missing or damaged copy from the good one, and mark a chunk bad in both regions damaged, loudly
(with shared.service.damage, which agents' damage reports use too).

The timer runs `scrub`; each vault keeps its cursor (the last chunk id compared), so successive
runs cover the whole vault and then start again."""
from __future__ import annotations

import logging

from shared.domain import ChunkState, Redundancy, Vault
from shared.ports import PreconditionFailed, TransientError
from shared.service.context import Services
from shared.service.damage import good_copies, heal_copies, mark_damaged

log = logging.getLogger("skyvault.scrub")

SCRUB_SAMPLE = 20


def scrub_vault(services: Services, vault: Vault, sample: int = SCRUB_SAMPLE) -> dict[str, list[str]]:
    """Compare both regions' copies of the next `sample` chunks after the vault's scrub cursor,
    by full read (size and MD5 against what ingest verified); heal the bad copy from the good
    one; mark a chunk bad in both regions as damaged and log it as an error."""
    report: dict[str, list[str]] = {"checked": [], "healed_primary": [], "healed_secondary": [], "damaged": []}
    if vault.redundancy != Redundancy.GRS or services.secondary is None:
        return report
    records = services.index.chunks_after(vault.id, vault.scrub_cursor, sample)
    for record in records:
        if record.state != ChunkState.VERIFIED or not record.replicated_at:
            continue
        good = good_copies(vault, record, services.regions())
        report["checked"].append(record.id)
        if all(good.values()):
            continue
        if not any(good.values()):
            vault = mark_damaged(services, vault, record,
                                 "both regions' copies differ from the verified size and MD5")
            report["damaged"].append(record.id)
            continue
        for broken in heal_copies(services, vault, record, good)[1]:
            report[f"healed_{broken}"].append(record.id)
    # The next run starts after this sample, and from the beginning once the vault is covered.
    vault.scrub_cursor = records[-1].id if len(records) == sample else ""
    try:
        services.index.replace_vault(vault)
    except PreconditionFailed:
        pass  # another scrub or a vault change won; the next run resamples
    return report


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
