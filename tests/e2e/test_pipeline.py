"""End to end through the local Functions host on the emulators: the agent backs up,
the pipeline verifies, indexes and commits, the agent restores byte for byte."""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared import bootstrap, crypto, identity
from shared.messages import Poisoned
from shared.service.vaults import create_vault
from shared.adapters.azure_storage import AzureQueue
from shared.domain import container_name
from skyvault import backup as backup_module
from skyvault import cli, home
from skyvault.backup import Backup
from skyvault.backup import changes as backup_changes
from skyvault.cache import Cache
from skyvault.restore import Restore, RestoreFailed
from skyvault.treedigest import differences, tree_digest
from skyvault.vaultclient import AgentError, AgentVault, CredentialsError
from tests.e2e.support import PASSPHRASE, wait_until



@pytest.fixture(scope="module")
def ticket(stack, tmp_path_factory):
    """The vault credentials file of the module's vault."""
    creds_path = tmp_path_factory.mktemp("creds") / "e2e.credentials.json"
    assert cli.main(["vault", "create", "e2e", "--tenant", "contoso", "--redundancy", "LRS",
                     "--out", str(creds_path)]) == 0
    return creds_path


@pytest.fixture(scope="module")
def vault(ticket):
    assert cli.main(["register", str(ticket)]) == 0
    creds = home.agent_state()["credentials"]
    return AgentVault(creds, AgentVault.derive_keys(creds, PASSPHRASE))


@pytest.fixture(scope="module")
def cache(stack):
    c = Cache(home.home() / "cache.sqlite")
    yield c
    c.close()


def make_tree(root: Path) -> Path:
    """Every kind of entry a backup must keep."""
    data = root / "data"
    (data / "docs" / "nested").mkdir(parents=True)
    (data / "empty-dir").mkdir()
    (data / "docs" / "hello.txt").write_text("hello world\n")
    (data / "docs" / "empty.bin").write_bytes(b"")
    (data / "docs" / "nested" / "großes Ärgernis 漢字.txt").write_text("non-ascii name\n" * 100)
    (data / "random.bin").write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    (data / "text.log").write_bytes(b"".join(b"line %d of a log file\n" % i for i in range(400_000)))
    small = data / "small"
    small.mkdir()
    for i in range(300):
        (small / f"f{i:04}.txt").write_text(f"small file {i}\n" * (i % 7))
    script = data / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o750)
    (data / "link-to-hello").symlink_to("docs/hello.txt")
    (data / "dangling").symlink_to("does/not/exist")
    os.utime(data / "docs" / "hello.txt", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return data


def run_backup(vault, cache, paths, item="e2e") -> backup_module.BackupReport:
    report = Backup(vault, cache, item).run([str(p) for p in paths])
    assert report.state == "committed", report.reason
    return report


def restore_and_compare(vault, point_id, target: Path, expected: dict, name="data"):
    Restore(vault).run(point_id, str(target))
    assert differences(expected, tree_digest(target / name)) == []


def test_backup_incremental_and_restore_both_points(vault, cache, tmp_path):
    data = make_tree(tmp_path)
    first = run_backup(vault, cache, [data])
    v1 = tree_digest(data)
    assert first.files == 306 and first.files_read == 306 and first.symlinks == 2
    assert first.chunks_uploaded >= 5

    (data / "docs" / "hello.txt").write_text("hello again\n")
    (data / "small" / "f0007.txt").unlink()
    (data / "new.txt").write_text("new file\n")
    second = run_backup(vault, cache, [data])
    v2 = tree_digest(data)
    assert second.files_read == 2, "only the changed and the new file are read"
    assert second.files_unchanged == 304
    assert second.chunks_uploaded <= 3

    restore_and_compare(vault, first.point_id, tmp_path / "r1", v1)
    restore_and_compare(vault, second.point_id, tmp_path / "r2", v2)

    third = run_backup(vault, cache, [data])
    assert third.chunks_uploaded == 0 and third.bytes_uploaded == 0 and third.files_read == 0
    # Each commit was checked against the point before it: only what changed was looked up.
    points = {p["id"]: p for p in vault.api("GET", "points", params={"item": "e2e"})["points"]}
    assert points[first.point_id]["checkedAgainst"] is None
    assert points[second.point_id]["checkedAgainst"] == first.point_id
    assert points[third.point_id]["checkedAgainst"] == second.point_id
    assert points[third.point_id]["stats"]["storedBytes"] == points[second.point_id]["stats"]["storedBytes"]


def test_unchanged_data_from_a_new_machine_uploads_nothing(vault, tmp_path):
    """With an empty local cache, every file is read, and the service's look-up skips every chunk."""
    data = make_tree(tmp_path)
    first = run_backup(vault, Cache(tmp_path / "one.sqlite"), [data], item="machine-a")
    assert first.chunks_uploaded > 0
    again = run_backup(vault, Cache(tmp_path / "two.sqlite"), [data], item="machine-b")
    assert again.files_read == first.files_read
    assert again.chunks_uploaded == 0
    assert again.chunks_deduplicated == again.chunks_referenced


def test_ten_thousand_small_files_make_few_blobs(vault, cache, services, tmp_path):
    data = tmp_path / "many"
    data.mkdir()
    for i in range(10_000):
        (data / f"{i:05}.txt").write_text(f"file number {i} " * 5)
    container = services.primary.container(container_name(vault.vault_id))
    before = sum(1 for _ in container.list("chunks/"))
    report = run_backup(vault, cache, [data], item="many")
    blobs = sum(1 for _ in container.list("chunks/")) - before
    assert report.files == 10_000
    # FastCDC cuts no chunk under 512 KiB: the 0.8 MB of data make at most 2, the manifest
    # (about 2.3 MB since its lines hold owners: the files' names, times, owners and extents) at
    # most 5, wherever the cuts fall.
    assert report.bytes_read < 2 * 512 * 1024
    assert blobs <= 7, f"{blobs} chunk blobs for 10,000 small files"
    Restore(vault).run(report.point_id, str(tmp_path / "r"), include=["many/09999.txt", "many/00000.txt"])
    assert (tmp_path / "r" / "many" / "09999.txt").read_text() == "file number 9999 " * 5
    assert sorted(p.name for p in (tmp_path / "r" / "many").iterdir()) == ["00000.txt", "09999.txt"]


def test_unreadable_file_is_reported_and_the_rest_is_backed_up(vault, cache, tmp_path, monkeypatch):
    data = tmp_path / "d"
    data.mkdir()
    (data / "good.txt").write_text("good\n")
    (data / "bad.txt").write_text("bad\n")
    real_open = open

    def failing_open(path, *args, **kwargs):
        if str(path).endswith("bad.txt"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(backup_changes, "open", failing_open, raising=False)
    report = run_backup(vault, cache, [data], item="partial")
    assert report.files == 1
    assert any("bad.txt" in w for w in report.warnings)
    Restore(vault).run(report.point_id, str(tmp_path / "r"))
    assert sorted(p.name for p in (tmp_path / "r" / "d").iterdir()) == ["good.txt"]


def test_tampered_chunk_fails_restore_naming_the_file(vault, cache, services, tmp_path):
    data = tmp_path / "t"
    data.mkdir()
    (data / "a-bystander.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (data / "b-victim.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    report = run_backup(vault, cache, [data], item="tamper")
    extents = {name: [e[0] for e in cache.previous_file(vault.vault_id, "tamper", f"t/{name}").extents]
               for name in ("a-bystander.bin", "b-victim.bin")}
    victim_chunk = extents["b-victim.bin"][-1]
    assert victim_chunk not in extents["a-bystander.bin"]
    container = services.primary.container(container_name(vault.vault_id))
    name = f"chunks/{victim_chunk[:2]}/{victim_chunk}"
    blob = bytearray(container.read(name))
    blob[100] ^= 0xFF
    container.put(name, bytes(blob), overwrite=True)
    with pytest.raises(RestoreFailed, match="b-victim.bin") as failure:
        Restore(vault).run(report.point_id, str(tmp_path / "r"))
    assert "a-bystander" not in str(failure.value)
    assert not (tmp_path / "r" / "t" / "b-victim.bin").exists()
    assert (tmp_path / "r" / "t" / "a-bystander.bin").read_bytes() == (data / "a-bystander.bin").read_bytes()
    assert not [p for p in (tmp_path / "r" / "t").iterdir() if p.name.startswith(".skyvault-")]


def poisoned(queue: AzureQueue) -> list[Poisoned]:
    return [Poisoned.parse(base64.b64decode(m)) for m in queue.peek(32)]


def _chunk_count(services, vault_id):
    container = services.index._container("chunks")
    return list(container.query_items("SELECT VALUE COUNT(1) FROM c WHERE c.vaultId=@v",
                                      parameters=[{"name": "@v", "value": vault_id}],
                                      enable_cross_partition_query=True))[0]


@pytest.mark.parametrize("body", [
    b"this is not json",
    json.dumps({"v": 2, "type": "chunks", "id": "x", "tenantId": "contoso", "vaultId": "nope", "machine": "ab" * 16,
                "sig": "A" * 86 + "==", "chunks": [{"id": "ab" * 32, "size": 100, "md5": "A" * 22 + "=="}]}).encode(),
])
def test_malformed_message_lands_in_poison_and_changes_nothing(vault, services, stack, body):
    before = _chunk_count(services, vault.vault_id)
    conn = stack["settings"][bootstrap.STORAGE]
    poison = AzureQueue(conn, "ingest-poison")
    poison.create()
    # Straight onto the queue, as only the service could: through the API it is refused (400).
    AzureQueue(conn, "ingest").send(base64.b64encode(body).decode())
    found = wait_until(lambda: [p for p in poisoned(poison) if p.message == body.decode()], timeout=90,
                       what="the message in ingest-poison")
    assert found[0].attempts == 1, "a message that can never succeed is poisoned at its first delivery"
    assert ("not JSON" if body.startswith(b"this") else "no vault nope") in found[0].reason
    assert _chunk_count(services, vault.vault_id) == before


def test_forged_signature_is_refused(vault, services, stack):
    """A message for this vault signed with another key, in the name of its machine, never
    reaches the index: the API refuses to queue it, and put on the queue directly (as only
    someone holding the service's storage could) it is poisoned."""
    forged = AgentVault({**vault.creds, "machineKey": identity.new_private_key()}, vault.keys)
    cid = crypto.chunk_id(vault.keys, b"forged")
    before = _chunk_count(services, vault.vault_id)
    body = {"type": "chunks", "chunks": [{"id": cid, "size": 100, "md5": "A" * 22 + "=="}]}
    with pytest.raises(CredentialsError, match="not signed by a registered machine"):
        forged.send("ingest", dict(body))
    AzureQueue(stack["settings"][bootstrap.STORAGE], "ingest").send(
        base64.b64encode(forged.sign(dict(body)).to_json().encode()).decode())
    poison = AzureQueue(stack["settings"][bootstrap.STORAGE], "ingest-poison")
    found = wait_until(lambda: [p for p in poisoned(poison) if cid in p.message], timeout=90,
                       what="the forged message in ingest-poison")
    assert found[0].attempts == 1 and "signature refused" in found[0].reason
    assert _chunk_count(services, vault.vault_id) == before


def test_replayed_messages_change_nothing(vault, cache, services, stack, tmp_path):
    data = tmp_path / "replay"
    data.mkdir()
    (data / "a.bin").write_bytes(os.urandom(600_000))
    report = run_backup(vault, cache, [data], item="replay")
    cid = cache.previous_file(vault.vault_id, "replay", "replay/a.bin").extents[0][0]
    record = services.index.get_chunks(vault.vault_id, [cid])[cid]
    point = services.index.get_point(vault.vault_id, report.point_id)
    message = {"type": "chunks", "chunks": [{"id": cid, "size": record.size, "md5": record.content_md5}]}
    vault.send("ingest", dict(message, id="replayed-ingest"))
    vault.send("ingest", dict(message, id="replayed-ingest"))
    vault.send("commit", {"id": "replayed-commit", "type": "commit", "pointId": report.point_id, "item": "replay",
                          "createdAt": point.created_at, "chunkCount": point.chunk_count,
                          "manifestChunks": 1, "stats": {}})
    queues = [AzureQueue(stack["settings"][bootstrap.STORAGE], q) for q in ("ingest", "commit")]
    wait_until(lambda: all(q.approximate_count() == 0 for q in queues), what="the replayed messages to be handled")
    time.sleep(1)
    assert services.index.get_chunks(vault.vault_id, [cid])[cid].etag == record.etag
    assert services.index.get_point(vault.vault_id, report.point_id).etag == point.etag


def test_wrong_passphrase_is_refused(vault, ticket, stack, tmp_path, monkeypatch):
    path = ticket
    monkeypatch.setenv("SKYVAULT_PASSPHRASE", "a wrong but long passphrase")
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "other-home"))
    assert cli.main(["register", str(path)]) == 2
    assert not (tmp_path / "other-home" / "agent.json").exists()


def test_registration_remembers_the_keys_on_this_machine_unless_told_not_to(vault, ticket, stack, tmp_path,
                                                                            monkeypatch):
    path = ticket
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("remembered\n")
    shutil.copy(home.home() / "stack.json", tmp_path / "stack.json")
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path))
    assert cli.main(["register", str(path)]) == 0
    keys_file = tmp_path / "keys.json"
    assert keys_file.stat().st_mode & 0o777 == 0o600
    assert json.loads(keys_file.read_text())["keys"] == vault.keys.to_doc()
    monkeypatch.delenv("SKYVAULT_PASSPHRASE")
    assert cli.main(["backup", str(tmp_path / "data"), "--item", "remembered"]) == 0, "no passphrase needed"

    monkeypatch.setenv("SKYVAULT_PASSPHRASE", PASSPHRASE)
    assert cli.main(["register", str(path), "--no-remember-keys"]) == 0
    assert not keys_file.exists()
    monkeypatch.setenv("SKYVAULT_PASSPHRASE", "a wrong but long passphrase")
    assert cli.main(["backup", str(tmp_path / "data"), "--item", "remembered"]) == 2
    monkeypatch.delenv("SKYVAULT_PASSPHRASE")
    assert cli.main(["backup", str(tmp_path / "data"), "--item", "remembered"]) == 1


def test_restore_of_unknown_point_is_refused(vault):
    with pytest.raises(AgentError, match="unknown, not committed"):
        Restore(vault).run("20990101T000000Z-deadbeef", "/tmp/never-written")
    assert not Path("/tmp/never-written").exists()


def test_agent_credentials_only_create_in_their_own_vault(vault, services, stack, tmp_path):
    """The agent's SAS creates new blobs in its own container and nothing else."""
    agent_view = vault.container
    agent_view.put("chunks/zz/agent-probe", b"new blob")
    for action in (lambda: agent_view.read("chunks/zz/agent-probe"),
                   lambda: list(agent_view.list("chunks/")),
                   lambda: agent_view.put("chunks/zz/agent-probe", b"overwrite", overwrite=True),
                   lambda: agent_view.delete("chunks/zz/agent-probe")):
        with pytest.raises(PermissionError):
            action()
    assert services.primary.container(container_name(vault.vault_id)).read("chunks/zz/agent-probe") == b"new blob"
    other, _ = create_vault(
        services, "fabrikam", "neighbour", "LRS")
    foreign_url = vault.creds["blobContainerUrl"].replace(container_name(vault.vault_id), container_name(other.id))
    with pytest.raises(PermissionError):
        vault.read_container(foreign_url).put("chunks/zz/intruder", b"x")
    assert "queueUrls" not in vault.creds, "agents hold no queue SAS: their messages go through the API"


def test_a_backup_stopped_by_ctrl_c_is_completed_by_the_next_one(vault, ticket, services, stack, tmp_path):
    """A real Ctrl-C of the agent's process once its first chunks are uploaded, on the local
    stack (the other stages are tests/unit/test_lifecycle.py's); then the same machine backs up
    again, and a fresh one (its own state folder, registered anew) does too."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(8):  # long enough a backup (about 60 chunks) to be stopped in the middle
        (data / f"f{i}.bin").write_bytes(os.urandom(6 * 1024 * 1024 + i))
    item = "ctrl-c"
    container = services.primary.container(container_name(vault.vault_id))
    before = set(container.list("chunks/"))
    agent = subprocess.Popen([sys.executable, "-m", "skyvault.cli", "backup", str(data), "--item", item],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not set(container.list("chunks/")) - before:
        assert agent.poll() is None, agent.communicate()[0].decode()
        assert time.monotonic() < deadline, "the backup uploaded nothing in a minute"
        time.sleep(0.02)
    agent.send_signal(signal.SIGINT)
    output = agent.communicate(timeout=60)[0].decode()
    assert agent.returncode == 130, output
    assert not [p for p in vault.points(item) if p.state == "committed"]

    fresh = tmp_path / "fresh-machine"
    fresh.mkdir()
    shutil.copy(home.home() / "stack.json", fresh / "stack.json")
    shutil.copy(ticket, fresh / "credentials.json")
    for env in ({}, {"SKYVAULT_HOME": str(fresh)}):
        environment = {**os.environ, **env}
        if env:
            subprocess.run([sys.executable, "-m", "skyvault.cli", "register", str(fresh / "credentials.json")],
                           env=environment, check=True, capture_output=True)
        again = subprocess.run([sys.executable, "-m", "skyvault.cli", "backup", str(data), "--item", item],
                               env=environment, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stdout + again.stderr
    points = [p for p in vault.points(item) if p.state == "committed"]
    assert len(points) == 2
    for point in points:
        restore_and_compare(vault, point.id, tmp_path / point.id, tree_digest(data))
