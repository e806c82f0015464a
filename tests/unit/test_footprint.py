"""Each item's unique and shared bytes (shared/service/footprint.py) on the real agent's backups:
they add up to what the vault references, and deleting an item frees exactly its unique bytes."""
from __future__ import annotations

import random

from shared.service import deletion, footprint
from tests.unit.agentworld import world  # noqa: F401 (a fixture)

SHARED = random.Random("shared file").randbytes(3 << 20)


def _trees(world):
    a, b = world.tmp / "a", world.tmp / "b"
    a.mkdir(), b.mkdir()
    for root in (a, b):
        (root / "common.bin").write_bytes(SHARED)
        (root / "own.bin").write_bytes(random.Random(root.name).randbytes(2 << 20))
    return a, b


def _sizes(world, ids) -> int:
    return sum(r.size for r in world.services.index.get_chunks(world.agent.vault_id, sorted(ids)).values())


def test_unique_and_shared_bytes_add_up_and_deleting_an_item_frees_its_unique_bytes(world):
    a, b = _trees(world)
    point_a, point_b = world.backup("item-a", a), world.backup("item-b", b)
    (b / "later.bin").write_bytes(random.Random("later").randbytes(1 << 20))
    point_b2 = world.backup("item-b", b)
    refs_a, refs_b = world.refs(point_a), world.refs(point_b) | world.refs(point_b2)

    found = footprint.footprint(world.services, world.vault)
    by_item = {f.item: f for f in found.items}
    assert sorted(by_item) == ["item-a", "item-b"]
    assert by_item["item-a"].unique_bytes == _sizes(world, refs_a - refs_b)
    assert by_item["item-b"].unique_bytes == _sizes(world, refs_b - refs_a)
    shared = _sizes(world, refs_a & refs_b)
    assert shared > 0 and by_item["item-a"].shared_bytes == by_item["item-b"].shared_bytes == shared
    assert found.stored_bytes == _sizes(world, refs_a | refs_b) and found.chunks == len(refs_a | refs_b)

    deletion.delete_point(world.services, world.vault, point_a)
    assert footprint.footprint(world.services, world.vault).items == found.items, "soft-deleted: still kept"
    world.advance_days(15)
    deletion.purge_due(world.services, world.vault)
    world.collect()
    freed = world.collect().bytes_freed
    assert freed == by_item["item-a"].unique_bytes
    after = {f.item: f for f in footprint.footprint(world.services, world.vault).items}
    assert list(after) == ["item-b"] and after["item-b"].unique_bytes == _sizes(world, refs_b)
