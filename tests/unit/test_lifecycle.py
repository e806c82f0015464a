"""Never lose a backup: the chunk lifecycle's repair path, on fakes (docs/design.md, "Chunk
lifecycle"). A backup interrupted at any stage, a Put Blob whose answer was lost, a SAS that
expires mid-backup, a chunk rejected or damaged: each time the next backup (from the same
machine and from a fresh one) commits and restores byte for byte."""
from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shared.domain import ChunkState, chunk_blob_name, container_name
from shared.ports import BlobAlreadyExists, TransientError
from shared.service import machines, vaults
from skyvault.backup import Backup, committer, uploader
from skyvault import vaultclient
from skyvault.cache import Cache
from skyvault.restore import Restore, RestoreFailed
from skyvault.treedigest import differences, tree_digest
from tests.inprocess import InProcessVault, memory_services, new_vault
from tests.unit.pipeline import Clock

PASSPHRASE = "lifecycle test passphrase"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def services(request, clock):
    return memory_services(re.sub(r"[^a-z0-9]+", "-", f"life-{request.node.name}".lower()), clock)


@pytest.fixture
def creds(services):
    return new_vault(services, "contoso", "life")


@pytest.fixture(autouse=True)
def small_messages(monkeypatch):
    # Two chunks a message, so a small tree makes several; and a point left waiting for chunks
    # that never come fails the test in seconds, not after the commit's 5 minutes.
    monkeypatch.setattr(uploader, "INGEST_BATCH", 2)
    monkeypatch.setattr(committer, "COMMIT_WAIT_S", 2.0)


def agent(services, creds) -> InProcessVault:
    return InProcessVault(creds, services, PASSPHRASE)


def make_data(root: Path) -> Path:
    data = root / "data"
    data.mkdir()
    for i in range(4):  # about a dozen chunks
        (data / f"f{i}.bin").write_bytes(os.urandom(2_000_000 + i))
    (data / "small.txt").write_text("a small file\n")
    return data


def assert_restores(vault, point_id: str, data: Path, target: Path) -> None:
    Restore(vault).run(point_id, str(target))
    assert differences(tree_digest(data), tree_digest(target / data.name)) == []


def undeclared_blobs(services, vault_id: str) -> list[str]:
    container = services.primary.container(container_name(vault_id))
    names = [n for n in container.list("chunks/")]
    indexed = services.index.get_chunks(vault_id, [n.rsplit("/", 1)[1] for n in names])
    return [n for n in names if n.rsplit("/", 1)[1] not in indexed]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, at a chosen point of the backup."""


def interrupt(vault: InProcessVault, monkeypatch, stage: str) -> None:
    if stage == "after upload, before declare":  # the first declaration: an ingest message or the commit's
        send = vault.send

        def send_or_stop(queue, body):
            if queue == "ingest":
                raise Interrupted
            return send(queue, body)

        monkeypatch.setattr(vault, "send", send_or_stop)
        monkeypatch.setattr(vault, "commit", lambda request: (_ for _ in ()).throw(Interrupted()))
    elif stage == "after declare, before commit":
        monkeypatch.setattr(vault, "commit", lambda request: (_ for _ in ()).throw(Interrupted()))
    else:  # during the commit: the service commits, its answer never arrives
        commit = vault.commit
        monkeypatch.setattr(vault, "commit", lambda request: commit(request) and (_ for _ in ()).throw(Interrupted()))


STAGES = ["after upload, before declare", "after declare, before commit", "during commit"]


@pytest.mark.parametrize("machine", ["same machine", "fresh machine"])
@pytest.mark.parametrize("stage", STAGES)
def test_an_interrupted_backup_does_not_block_its_data(services, creds, tmp_path, monkeypatch, stage, machine):
    data = make_data(tmp_path)
    first = agent(services, creds)
    cache = Cache(tmp_path / "cache.sqlite")
    with monkeypatch.context() as m:
        interrupt(first, m, stage)
        with pytest.raises(Interrupted):
            Backup(first, cache, "laptop").run([str(data)])
    if stage == STAGES[0]:
        assert undeclared_blobs(services, first.vault_id), "the interrupted run left chunks no one declared"
    if machine == "fresh machine":
        cache = Cache(tmp_path / "other-machine.sqlite")
    again = agent(services, creds)
    report = Backup(again, cache, "laptop").run([str(data)])
    assert report.state == "committed", report.reason
    assert undeclared_blobs(services, first.vault_id) == []
    assert_restores(again, report.point_id, data, tmp_path / "restored")


@pytest.mark.parametrize("answer", [BlobAlreadyExists, PermissionError])
def test_a_lost_put_blob_answer_is_not_taken_for_another_agents_upload(services, creds, tmp_path, monkeypatch,
                                                                        answer):
    """The adapter retries a Put Blob whose answer was lost; the blob it created itself then
    answers 409 (or 403, through a create-only SAS)."""
    data = make_data(tmp_path)
    vault = agent(services, creds)
    opened = vault.transport.container

    def lossy(url):
        container = opened(url)
        put = container.put

        def put_and_lose_the_answer(name, payload, **kwargs):
            stored = put(name, payload, **kwargs)
            if name.startswith("chunks/"):
                raise answer(f"{name} exists")
            return stored

        container.put = put_and_lose_the_answer
        return container

    monkeypatch.setattr(vault.transport, "container", lossy)
    report = Backup(vault, Cache(tmp_path / "cache.sqlite"), "laptop").run([str(data)])
    assert report.state == "committed", report.reason
    assert_restores(vault, report.point_id, data, tmp_path / "restored")


def test_a_sas_that_expires_during_a_backup_is_renewed(services, creds, clock, tmp_path, monkeypatch):
    data = make_data(tmp_path)
    vault = agent(services, creds)
    send = vault.send

    first_expiry = datetime.fromisoformat(vault.creds["expiresAt"])

    def an_hour_passes(queue, body):  # the first ingest message goes out as the credentials expire
        sent = send(queue, body)
        if clock.now < first_expiry:
            clock.now += machines.CREDENTIALS_TTL + timedelta(minutes=1)
        return sent

    monkeypatch.setattr(vault, "send", an_hour_passes)
    report = Backup(vault, Cache(tmp_path / "cache.sqlite"), "laptop").run([str(data)])
    assert report.state == "committed", report.reason
    assert datetime.fromisoformat(vault.creds["expiresAt"]) > clock.now, "the agent holds renewed credentials"
    assert_restores(vault, report.point_id, data, tmp_path / "restored")


def first_data_chunk(cache: Cache, vault) -> str:
    return cache.previous_file(vault.vault_id, "laptop", "data/f0.bin").extents[0][0]


@pytest.mark.parametrize("machine", ["same machine", "fresh machine"])
def test_a_chunk_damaged_everywhere_is_stored_again_by_the_next_backup(services, creds, tmp_path, machine):
    data = make_data(tmp_path)
    vault = agent(services, creds)
    cache = Cache(tmp_path / "cache.sqlite")
    assert Backup(vault, cache, "laptop").run([str(data)]).state == "committed"
    cid = first_data_chunk(cache, vault)
    container = services.primary.container(container_name(vault.vault_id))
    blob = bytearray(container.read(chunk_blob_name(cid)))
    blob[40] ^= 1
    container.put(chunk_blob_name(cid), bytes(blob), overwrite=True)
    # What the scrub (or an agent's damage report) does once no region holds a good copy.
    stored = vaults.raise_chunk_epoch(services, services.index.get_vault("contoso", vault.vault_id))
    record = services.index.get_chunks(vault.vault_id, [cid])[cid]
    record.state, record.reason = ChunkState.DAMAGED, "both regions' copies differ"
    services.index.replace_chunk(record)
    assert stored.chunk_epoch == 1

    if machine == "fresh machine":
        cache = Cache(tmp_path / "other-machine.sqlite")
    report = Backup(vault, cache, "laptop").run([str(data)])
    assert report.state == "committed", report.reason
    assert services.index.get_chunks(vault.vault_id, [cid])[cid].state == ChunkState.VERIFIED
    assert_restores(vault, report.point_id, data, tmp_path / "restored")


def test_a_rejected_chunk_is_stored_again_by_an_honest_backup(services, creds, tmp_path, monkeypatch):
    data = make_data(tmp_path)
    vault = agent(services, creds)
    cache = Cache(tmp_path / "cache.sqlite")
    signed = vault.sign

    def wrong_sizes(body):  # a buggy agent: every declaration contradicts its blob
        if body["type"] == "chunks":
            body = {**body, "chunks": [{**c, "size": c["size"] + 1} for c in body["chunks"]]}
        return signed(body)

    with monkeypatch.context() as m:
        m.setattr(vault, "sign", wrong_sizes)
        failed = Backup(vault, cache, "laptop").run([str(data)])
    assert failed.state == "failed" and "rejected" in failed.reason
    report = Backup(vault, cache, "laptop").run([str(data)])
    assert report.state == "committed", report.reason
    assert_restores(vault, report.point_id, data, tmp_path / "restored")


def test_a_restore_that_outlives_its_read_sas_renews_it(services, creds, clock, tmp_path, monkeypatch):
    data = make_data(tmp_path)
    vault = agent(services, creds)
    report = Backup(vault, Cache(tmp_path / "cache.sqlite"), "laptop").run([str(data)])
    jobs = []
    start_restore = vault.start_restore
    monkeypatch.setattr(vault, "start_restore", lambda job, point, *purpose: jobs.append(job) or start_restore(job, point, *purpose))
    opened = vault.read_container

    def slow(url):  # each chunk takes twenty minutes to come: the job's hour runs out mid-restore
        container = opened(url)
        read = container.read

        def read_slowly(name, *args, **kwargs):
            clock.now += timedelta(minutes=20)
            return read(name, *args, **kwargs)

        container.read = read_slowly
        return container

    monkeypatch.setattr(vault, "read_container", slow)
    with monkeypatch.context() as m:
        m.setattr("skyvault.restore.DOWNLOAD_WORKERS", 1)
        assert_restores(vault, report.point_id, data, tmp_path / "restored")
    assert len(jobs) > 2, "the restore asked for new jobs as their SAS neared expiry"


def test_a_chunk_failing_authentication_is_read_from_the_other_region(tmp_path, clock):
    from shared.fakes import MemoryBlobAccount
    services = memory_services("bad-copy-primary", clock)
    services.secondary = MemoryBlobAccount("bad-copy-secondary", utcnow=clock)
    creds = new_vault(services, "contoso", "geo", "GRS")
    data = make_data(tmp_path)
    vault = agent(services, creds)
    cache = Cache(tmp_path / "cache.sqlite")
    report = Backup(vault, cache, "laptop").run([str(data)])
    name = container_name(vault.vault_id)
    primary, secondary = services.primary.container(name), services.secondary.container(name)
    for blob in primary.list():  # what replication does
        secondary.put(blob, primary.read(blob), overwrite=True)
        if blob.startswith("chunks/"):
            cid = blob.rsplit("/", 1)[1]
            record = services.index.get_chunks(vault.vault_id, [cid])[cid]
            record.replicated_at = clock().isoformat()
            services.index.replace_chunk(record)
    cid = first_data_chunk(cache, vault)
    bad = bytearray(primary.read(chunk_blob_name(cid)))
    bad[40] ^= 1
    primary.put(chunk_blob_name(cid), bytes(bad), overwrite=True)
    said = []
    restored = Restore(vault, progress=said.append).run(report.point_id, str(tmp_path / "restored"))
    assert differences(tree_digest(data), tree_digest(tmp_path / "restored" / "data")) == []
    assert [(blob, region) for blob, region, *_ in restored.bad_copies] == [(chunk_blob_name(cid), "primary")]
    assert restored.regions == ["primary", "secondary"]
    assert any("the primary region's copy is bad" in s and "read the secondary region's" in s for s in said)
    assert [(o.chunk_id, o.region, o.outcome) for o in restored.damage_outcomes] == [(cid, "primary", "healed")]
    assert primary.read(chunk_blob_name(cid)) == secondary.read(chunk_blob_name(cid)), "the service healed it"
    assert services.index.get_chunks(vault.vault_id, [cid])[cid].state == ChunkState.VERIFIED


def test_a_chunk_bad_in_its_only_region_is_reported_and_stored_again_by_the_next_backup(services, creds,
                                                                                      tmp_path):
    data = make_data(tmp_path)
    vault = agent(services, creds)
    cache = Cache(tmp_path / "cache.sqlite")
    first = Backup(vault, cache, "laptop").run([str(data)])
    cid = first_data_chunk(cache, vault)
    container = services.primary.container(container_name(vault.vault_id))
    bad = bytearray(container.read(chunk_blob_name(cid)))
    bad[40] ^= 1  # rotted at rest: its recorded MD5 no longer that of its bytes
    container.put(chunk_blob_name(cid), bytes(bad), overwrite=True)
    with pytest.raises(RestoreFailed, match="f0.bin"):
        Restore(vault).run(first.point_id, str(tmp_path / "partial"))
    assert services.index.get_chunks(vault.vault_id, [cid])[cid].state == ChunkState.DAMAGED
    assert (tmp_path / "partial" / "data" / "f1.bin").read_bytes() == (data / "f1.bin").read_bytes()
    report = Backup(vault, cache, "laptop").run([str(data)])
    assert report.state == "committed", report.reason
    assert services.index.get_chunks(vault.vault_id, [cid])[cid].state == ChunkState.VERIFIED
    assert_restores(vault, report.point_id, data, tmp_path / "restored")


def test_a_commit_the_service_answers_503_is_sent_again_and_commits(services, creds, tmp_path, monkeypatch):
    """The index dropped a connection under the commit (a retryable refusal, 503): the agent
    sends the same commit again, signed anew, instead of failing a backup whose chunks are all
    uploaded."""
    data = make_data(tmp_path)
    vault = agent(services, creds)
    create_point, refused = services.index.create_point, []

    def drop_the_first(point):
        if not refused:
            refused.append(point.id)
            raise TransientError("create points/...: ('Connection aborted.', RemoteDisconnected(...))")
        return create_point(point)

    monkeypatch.setattr(services.index, "create_point", drop_the_first)
    report = Backup(vault, Cache(tmp_path / "cache.sqlite"), "laptop").run([str(data)])
    assert refused == [report.point_id]
    assert report.state == "committed", report.reason
    assert_restores(vault, report.point_id, data, tmp_path / "restored")


def test_a_service_that_keeps_answering_503_fails_the_request_with_its_reason(services, creds, monkeypatch):
    vault = agent(services, creds)
    calls = []

    def never(vault_id, item=None):
        calls.append(vault_id)
        raise TransientError("the index did not answer")

    monkeypatch.setattr(services.index, "list_points", never)
    with pytest.raises(vaultclient.ApiError, match="503 .*the index did not answer") as e:
        vault.points()
    assert e.value.status == 503
    assert len(calls) == vaultclient.API_ATTEMPTS
