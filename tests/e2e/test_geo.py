"""GRS end to end on the local stack: replication to the paired region, geo-protection,
replication lag, a secondary outage and catch-up, scrub, and a primary outage mid-restore."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from shared.service import scrub
from shared.domain import container_name
from shared.ports import BlobNotFound
from skyvault import cli, home
from skyvault.backup import Backup
from skyvault.cache import Cache
from skyvault.restore import Restore
from skyvault.stack import local
from skyvault.treedigest import differences, tree_digest
from skyvault.vaultclient import AgentError, AgentVault
from tests.e2e.support import PASSPHRASE, registered_agent, wait_until


def make_vault(name: str, redundancy: str, tmp: Path) -> AgentVault:
    path = tmp / f"{name}.json"
    assert cli.main(["vault", "create", name, "--tenant", "contoso", "--redundancy", redundancy,
                     "--out", str(path)]) == 0
    return registered_agent(path)


@pytest.fixture(scope="module")
def grs(stack, tmp_path_factory):
    return make_vault("geo", "GRS", tmp_path_factory.mktemp("creds"))


@pytest.fixture(scope="module")
def cache(stack):
    c = Cache(home.home() / "cache.sqlite")
    yield c
    c.close()


def tree(root: Path, name: str, megabytes: int = 3) -> Path:
    data = root / name
    (data / "sub").mkdir(parents=True)
    (data / "big.bin").write_bytes(os.urandom(megabytes * 1024 * 1024))
    (data / "sub" / "notes.txt").write_text("geo-redundant notes\n" * 1000)
    (data / "link").symlink_to("sub/notes.txt")
    return data


def backup(vault, cache, data: Path, item: str):
    report = Backup(vault, cache, item).run([str(data)])
    assert report.state == "committed", report.reason
    return report


def geo_protected(services, vault, point_id):
    return services.index.get_point(vault.vault_id, point_id).geo_protected_at


def secondary_blobs(services, vault) -> list[str]:
    try:
        return list(services.secondary.container(container_name(vault.vault_id)).list())
    except BlobNotFound:
        return []


def test_lrs_vault_writes_nothing_to_the_secondary(stack, services, cache, tmp_path):
    lrs = make_vault("local-only", "LRS", tmp_path)
    backup(lrs, cache, tree(tmp_path, "lrs", 1), "lrs")
    time.sleep(3)
    assert secondary_blobs(services, lrs) == []
    assert lrs.api("GET", "status")["replication"] == {"redundancy": "LRS"}


def test_grs_point_becomes_geo_protected_and_restores_from_the_secondary(grs, services, cache, tmp_path):
    data = tree(tmp_path, "geo")
    report = backup(grs, cache, data, "geo")
    wait_until(lambda: geo_protected(services, grs, report.point_id), what="geo-protection")
    status = grs.api("GET", "status")["replication"]
    assert status["lagSeconds"] == 0 and status["pointsNotGeoProtected"] == 0
    primary = set(services.primary.container(container_name(grs.vault_id)).list())
    assert set(secondary_blobs(services, grs)) == primary
    restored = Restore(grs).run(report.point_id, str(tmp_path / "r"), source="secondary")
    assert restored.regions == ["secondary"]
    assert differences(tree_digest(data), tree_digest(tmp_path / "r" / "geo")) == []


def test_a_secondary_outage_grows_the_lag_and_replication_catches_up(grs, services, cache, tmp_path):
    local.stop_region("secondary")
    try:
        data = tree(tmp_path, "outage")
        report = backup(grs, cache, data, "outage")
        first = wait_until(lambda: grs.api("GET", "status")["replication"]["lagSeconds"], what="a lag")
        time.sleep(2)
        second = grs.api("GET", "status")["replication"]
        assert second["lagSeconds"] >= first + 1.5 and second["pointsNotGeoProtected"] == 1
        with pytest.raises(AgentError, match="not geo-protected yet"):
            Restore(grs).run(report.point_id, str(tmp_path / "never"), source="secondary")
    finally:
        local.start_region("secondary")
    wait_until(lambda: geo_protected(services, grs, report.point_id), timeout=120, what="catch-up")
    assert grs.api("GET", "status")["replication"]["lagSeconds"] == 0
    Restore(grs).run(report.point_id, str(tmp_path / "r"), source="secondary")
    assert differences(tree_digest(data), tree_digest(tmp_path / "r" / "outage")) == []


def test_scrub_heals_a_damaged_secondary_copy(grs, services, cache, tmp_path):
    report = backup(grs, cache, tree(tmp_path, "scrub", 1), "scrub")
    wait_until(lambda: geo_protected(services, grs, report.point_id), what="geo-protection")
    name = next(n for n in services.primary.container(container_name(grs.vault_id)).list("chunks/"))
    good = services.primary.container(container_name(grs.vault_id)).read(name)
    services.secondary.container(container_name(grs.vault_id)).put(name, b"bit rot" * 50, overwrite=True)
    healed = []
    vault = services.index.get_vault("contoso", grs.vault_id)
    for _ in range(50):  # a rolling sample: at most the whole vault
        result = scrub.scrub_vault(services, vault, sample=10)
        healed += result["healed_secondary"]
        vault = services.index.get_vault("contoso", grs.vault_id)
        if not vault.scrub_cursor:
            break
    assert name.rsplit("/", 1)[1] in healed
    assert services.secondary.container(container_name(grs.vault_id)).read(name) == good


def test_a_chunk_corrupted_in_the_primary_is_restored_from_the_secondary_and_healed(grs, services, cache, tmp_path):
    data = tree(tmp_path, "flipped", 2)
    report = backup(grs, cache, data, "flipped")
    wait_until(lambda: geo_protected(services, grs, report.point_id), what="geo-protection")
    primary = services.primary.container(container_name(grs.vault_id))
    cid = cache.previous_file(grs.vault_id, "flipped", "flipped/big.bin").extents[0][0]
    name = f"chunks/{cid[:2]}/{cid}"
    good = primary.read(name)
    flipped = bytearray(good)
    flipped[100] ^= 1  # one flipped byte in the primary's copy
    primary.put(name, bytes(flipped), overwrite=True)
    said = []
    restored = Restore(grs, progress=said.append).run(report.point_id, str(tmp_path / "r"))
    assert differences(tree_digest(data), tree_digest(tmp_path / "r" / "flipped")) == []
    assert [(blob, region) for blob, region, *_ in restored.bad_copies] == [(name, "primary")]
    assert any("the primary region's copy is bad" in s for s in said)
    assert [(o.chunk_id, o.outcome) for o in restored.damage_outcomes] == [(cid, "healed")]
    assert primary.read(name) == good, "the service copied the secondary's good copy over the bad one"


def test_redundancy_is_fixed_by_the_first_backup(stack, services, cache, tmp_path):
    vault = make_vault("switch", "LRS", tmp_path)
    assert cli.main(["vault", "set-redundancy", "switch", "--tenant", "contoso", "--redundancy", "GRS"]) == 0
    assert services.index.get_vault("contoso", vault.vault_id).redundancy == "GRS"
    backup(vault, cache, tree(tmp_path, "switch", 1), "switch")
    assert cli.main(["vault", "set-redundancy", "switch", "--tenant", "contoso", "--redundancy", "LRS"]) == 1
    assert services.index.get_vault("contoso", vault.vault_id).redundancy == "GRS"


def test_restore_falls_back_to_the_secondary_when_the_primary_stops_midway(grs, services, cache, tmp_path,
                                                                           monkeypatch):
    """Last in this module: the primary stays down afterwards."""
    data = tmp_path / "fallback"
    data.mkdir()
    for i in range(8):
        (data / f"part{i}.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    report = backup(grs, cache, data, "fallback")
    wait_until(lambda: geo_protected(services, grs, report.point_id), what="geo-protection")
    real_write = Restore._write_file
    written = []

    def write_then_fail_primary(self, dest, entry, chunks):
        size = real_write(self, dest, entry, chunks)
        written.append(entry.path)
        if len(written) == 1:
            local.stop_region("primary")
        return size

    monkeypatch.setattr(Restore, "_write_file", write_then_fail_primary)
    restored = Restore(grs).run(report.point_id, str(tmp_path / "r"))
    assert restored.regions == ["primary", "secondary"]
    assert differences(tree_digest(data), tree_digest(tmp_path / "r" / "fallback")) == []
