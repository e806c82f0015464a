"""`skyvault check` end to end on the local stack: bytes that rot at rest in Azurite keep the
MD5 it recorded on upload, so only --read-data finds them (through a restore job's SAS and the
agent's REST reads, paged reference lists included); the report goes through the Functions
host to the service, which heals the bad region's copy from the other (two Azurite processes,
streamed) or, with no good copy left, marks the chunk damaged in the Cosmos DB emulator."""
from __future__ import annotations

import os
from pathlib import Path

from azure.storage.blob import BlobServiceClient, ContentSettings

from shared import bootstrap
from shared.domain import container_name
from skyvault import check, cli, exitcodes
from skyvault.check import Check
from tests.e2e.support import wait_until
from tests.e2e.test_geo import backup, cache, geo_protected, make_vault  # noqa: F401 (cache: a fixture)


def rot(connection_string: str, container: str, name: str) -> None:
    """Flip a byte of a blob and put back the MD5 recorded on its upload, as bit rot at rest
    leaves it."""
    blob = BlobServiceClient.from_connection_string(connection_string).get_blob_client(container, name)
    recorded = blob.get_blob_properties().content_settings.content_md5
    data = bytearray(blob.download_blob().readall())
    data[len(data) // 2] ^= 0xFF
    blob.upload_blob(bytes(data), overwrite=True)
    blob.set_http_headers(ContentSettings(content_md5=recorded))


def tree(root: Path, name: str) -> Path:
    data = root / name
    data.mkdir()
    for i in range(3):
        (data / f"part{i}.bin").write_bytes(os.urandom(1024 * 1024))
    return data


def first_chunk(services, vault) -> str:
    return next(services.primary.container(container_name(vault.vault_id)).list("chunks/"))


def test_check_read_data_heals_a_rotten_copy_in_one_region(stack, services, cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(check, "REFS_PAGE_BYTES", 200)  # ranged reads of the reference list, ids cut across
    vault = make_vault("checked-geo", "GRS", tmp_path)
    assert cli.main(["register", str(tmp_path / "checked-geo.json")]) == exitcodes.OK
    report = backup(vault, cache, tree(tmp_path, "geo"), "geo")
    wait_until(lambda: geo_protected(services, vault, report.point_id), what="geo-protection")
    name = first_chunk(services, vault)
    good = services.primary.container(container_name(vault.vault_id)).read(name)
    rot(stack["settings"][bootstrap.SECONDARY_STORAGE], container_name(vault.vault_id), name)
    capsys.readouterr()
    assert cli.main(["check"]) == exitcodes.OK, "the MD5 property is unchanged"
    assert cli.main(["check", "--read-data"]) == exitcodes.PROBLEMS
    err = capsys.readouterr().err
    cid = name.rsplit("/", 1)[1]
    assert f"problem: chunk {cid} (secondary): authentication" in err
    assert f"reported chunk {cid} (secondary): healed" in err
    assert services.secondary.container(container_name(vault.vault_id)).read(name) == good
    assert cli.main(["check", "--read-data"]) == exitcodes.OK


def test_check_read_data_marks_a_rotten_chunk_of_an_lrs_vault_damaged(stack, services, cache, tmp_path):
    vault = make_vault("checked-local", "LRS", tmp_path)
    report = backup(vault, cache, tree(tmp_path, "local"), "local")
    name = first_chunk(services, vault)
    rot(stack["settings"][bootstrap.STORAGE], container_name(vault.vault_id), name)
    assert Check(vault).run([report.point_id]).exit_code == exitcodes.OK
    found = Check(vault).run([report.point_id], read_data=True)
    cid = name.rsplit("/", 1)[1]
    assert [(p.chunk_id, p.region, p.kind) for p in found.problems] == [(cid, "primary", "authentication")]
    assert [o.outcome for o in found.outcomes] == ["damaged"]
    assert services.index.get_chunks(vault.vault_id, [cid])[cid].state == "damaged"
    assert services.index.get_vault("contoso", vault.vault_id).chunk_epoch == 1
    again = Check(vault).run([report.point_id])
    assert (cid, None, "damaged") in [(p.chunk_id, p.region, p.kind) for p in again.problems]
