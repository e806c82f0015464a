"""Check: a vault's index against its storage, a page of chunk ids at a time (POST chunks/check),
for `skyvault check`: each chunk's record, and in each region that should hold a copy of it, the
blob's presence, size and the MD5 Azure recorded on upload.

Read-only, and it reads no blob's content: a copy whose bytes rotted at rest keeps its MD5
property, and only the agent's `check --read-data` (or the scrub) finds it. A region that does
not answer is named in the answer, its copies unchecked."""
from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

from shared.domain import ChunkRecord, ChunkState, Vault, chunk_blob_name, container_name
from shared.messages import MAX_TEXT, ChunkCheckAnswer, ChunkCheckRequest, ChunkProblem
from shared.ports import BlobAccount, BlobNotFound, BlobProperties, TransientError
from shared.service.context import Services
from shared.service.damage import holding_regions

# Blob look-ups at once: a page of CHECK_MAX_IDS chunks in two regions in about 50 round trips.
CHECK_WORKERS = 8


def check_chunks(services: Services, vault: Vault, request: ChunkCheckRequest) -> ChunkCheckAnswer:
    """The problems of the given chunks: no record, a record not verified, or a copy missing or
    whose size or MD5 property differs from the record."""
    ids = list(dict.fromkeys(request.ids))
    records = services.index.get_chunks(vault.id, ids)
    problems: list[ChunkProblem] = []
    copies: list[tuple[ChunkRecord, str, BlobAccount]] = []
    for cid in ids:
        record = records.get(cid)
        if record is None:
            problems.append(ChunkProblem(cid, None, "unknown", "the index has no record of it"))
        elif record.state != ChunkState.VERIFIED:
            reason = record.reason or f"it is {record.state}"
            problems.append(ChunkProblem(cid, None, record.state, reason[:MAX_TEXT]))
        else:
            copies += [(record, region, account)
                       for region, account in holding_regions(services, vault, record).items()]
    container = container_name(vault.id)

    def look_up(copy: tuple[ChunkRecord, str, BlobAccount]) -> BlobProperties | None | TransientError:
        record, _, account = copy
        try:
            return account.container(container).properties(chunk_blob_name(record.id))
        except BlobNotFound:
            return None
        except TransientError as e:
            return e

    unavailable: set[str] = set()
    with ThreadPoolExecutor(CHECK_WORKERS) as pool:
        for (record, region, _), found in zip(copies, pool.map(look_up, copies)):
            if isinstance(found, TransientError):
                unavailable.add(region)
                continue
            problem = _copy_problem(record, found)
            if problem is not None:
                problems.append(ChunkProblem(record.id, region, *problem))
    return ChunkCheckAnswer(len(ids), tuple(problems), tuple(sorted(unavailable)))


def _copy_problem(record: ChunkRecord, found: BlobProperties | None) -> tuple[str, str] | None:
    if found is None:
        return "missing", f"no blob {chunk_blob_name(record.id)}"
    if found.size != record.size:
        return "size", f"the blob holds {found.size} bytes, the record {record.size}"
    md5 = base64.b64encode(found.content_md5).decode() if found.content_md5 else None
    if md5 != record.content_md5:
        return "md5", f"the blob's MD5 property is {md5 or 'absent'}, the record's {record.content_md5}"
    return None
