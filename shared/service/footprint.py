"""Each item's footprint in its vault: the stored bytes it holds alone, and those it shares with
other items through dedup, so an operator sees what deleting an item would free (no anchor
shows this: restic's `stats` and kopia's `content stats` count a repository, not a source).

Words:
- an item's chunks: the union of the reference lists of its points that are kept (committed,
  live or soft-deleted, not being purged): what garbage collection keeps for it.
- unique: a chunk no other item's kept points reference. Deleting every point of the item (and
  the collection that follows) frees exactly its unique bytes.
- shared: a chunk other items reference too; each item sharing it counts it as shared.
- bytes: the envelope's size (the chunk record's), stored once per region.

Streamed as garbage collection streams (shared/service/gc.py): the sorted reference lists are
read a page at a time and merged; chunk sizes are looked up a batch at a time, in id order.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from shared.domain import PointState, RecoveryPoint, Vault, container_name
from shared.service.context import Services
from shared.ports import BlobNotFound
from shared.service.gc import RefsReader, Unreadable, page_lines

SIZES_BATCH = 1000


@dataclass
class ItemFootprint:
    item: str
    unique_bytes: int = 0
    shared_bytes: int = 0
    unique_chunks: int = 0
    shared_chunks: int = 0

    def to_doc(self) -> dict:
        return {"item": self.item, "uniqueBytes": self.unique_bytes, "sharedBytes": self.shared_bytes,
                "uniqueChunks": self.unique_chunks, "sharedChunks": self.shared_chunks}


@dataclass
class VaultFootprint:
    items: list[ItemFootprint]
    stored_bytes: int  # of every chunk a kept point references, once
    chunks: int


def kept_points(services: Services, vault: Vault) -> list[RecoveryPoint]:
    """The points whose chunks garbage collection keeps: committed, live or soft-deleted, not
    being purged."""
    return [p for p in services.index.list_points(vault.id)
            if p.state == PointState.COMMITTED and p.purging_at is None]


def _referenced(services: Services, vault: Vault, points: list[RecoveryPoint],
                tag: Callable[[RecoveryPoint], str], skip_unreadable: bool = False
                ) -> Iterator[tuple[str, int, frozenset[str]]]:
    """Each chunk id `points` reference, once, in id order, with its size and the tags of the
    points referencing it; with `skip_unreadable`, a point whose list is missing or damaged
    is left out instead of failing the whole."""
    container = services.primary.container(container_name(vault.id))
    page = page_lines(len(points))
    streams = []
    for point in points:
        try:
            streams.append(_tagged(RefsReader(container, point, page).ids(""), tag(point)))
        except (BlobNotFound, Unreadable):
            if not skip_unreadable:
                raise
    return _sized(services, vault, _owners(heapq.merge(*streams)))


def footprint(services: Services, vault: Vault) -> VaultFootprint:
    """The footprint of every item with kept points, by name, and the vault's referenced total."""
    points = kept_points(services, vault)
    items = {p.item: ItemFootprint(p.item) for p in points}
    total = chunks = 0
    for cid, size, owners in _referenced(services, vault, points, lambda p: p.item):
        total, chunks = total + size, chunks + 1
        for item in owners:
            found = items[item]
            if len(owners) == 1:
                found.unique_bytes, found.unique_chunks = found.unique_bytes + size, found.unique_chunks + 1
            else:
                found.shared_bytes, found.shared_chunks = found.shared_bytes + size, found.shared_chunks + 1
    return VaultFootprint(items=[items[name] for name in sorted(items)], stored_bytes=total, chunks=chunks)


def alone_bytes(services: Services, vault: Vault, point_ids: Iterable[str]) -> dict[str, int]:
    """For each of `point_ids`, the bytes of the chunks no other kept point references: what the
    point alone keeps stored (a soft-deleted point's billed size). A point whose reference list
    cannot be read counts 0, and counts for no other: this is metering, not collection, and
    must not stop a deletion."""
    wanted = set(point_ids)
    alone = dict.fromkeys(wanted, 0)
    if not wanted:
        return alone  # no list to read for no point
    for _, size, owners in _referenced(services, vault, kept_points(services, vault), lambda p: p.id,
                                       skip_unreadable=True):
        if len(owners) == 1 and (owner := next(iter(owners))) in wanted:
            alone[owner] += size
    return alone


def _tagged(ids: Iterator[str], item: str) -> Iterator[tuple[str, str]]:
    for cid in ids:
        yield cid, item


def _owners(merged: Iterator[tuple[str, str]]) -> Iterator[tuple[str, frozenset[str]]]:
    """Each referenced id once, with the items whose points reference it."""
    for cid, group in itertools.groupby(merged, key=lambda t: t[0]):
        yield cid, frozenset(item for _, item in group)


def _sized(services: Services, vault: Vault,
           owned: Iterator[tuple[str, frozenset[str]]]) -> Iterator[tuple[str, int, frozenset[str]]]:
    """The ids with their stored size (0 for one the index has no record of), a batch of
    look-ups at a time."""
    while batch := list(itertools.islice(owned, SIZES_BATCH)):
        records = services.index.get_chunks(vault.id, [cid for cid, _ in batch])
        for cid, owners in batch:
            record = records.get(cid)
            yield cid, record.size if record is not None else 0, owners
