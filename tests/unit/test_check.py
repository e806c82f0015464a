"""`skyvault check` and damage reports on the in-process stack: the service's check of index
against storage, the agent's --read-data and --subset, and the service healing or marking
damaged what the agent reports (LRS and GRS)."""
from __future__ import annotations

import base64
import hashlib
import os
import random
from datetime import datetime, timezone

import pytest

from shared import crypto
from shared.domain import chunk_blob_name, container_name
from shared.fakes import MemoryBlobAccount, MemoryIndex, MemoryQueue
from shared.messages import CHECK_MAX_IDS, DamageReport, DamageRequest, ReplicateMessage
from shared.service import damage, replication
from shared.service.context import REPLICATE_QUEUE, Services
from skyvault import check
from skyvault.backup import Backup
from skyvault.cache import Cache
from skyvault.check import Check, parse_subset
from skyvault.vaultclient import AgentError, AgentVault, ApiError
from tests.inprocess import InProcessTransport, InProcessVault, memory_services, new_vault, record_reads
from tests.unit.conftest import PASSPHRASE
from tests.unit.test_handlers import POINT, Agent, commit_text, ingest_text
from tests.unit.test_replication import Outage


class Ticks:
    """The queues' clock (seconds): replication's point check waits a second."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class DamageWatchingIndex(MemoryIndex):
    """The index, noting the vault's chunk epoch at the moment a chunk is stored damaged."""

    def __init__(self):
        super().__init__()
        self.epoch_when_damaged: list[int] = []

    def replace_chunk(self, chunk):
        if chunk.state == "damaged":
            vault = next(v for v in self.list_all_vaults() if v.id == chunk.vault_id)
            self.epoch_when_damaged.append(vault.chunk_epoch)
        return super().replace_chunk(chunk)


def grs_services(name: str, ticks: Ticks) -> Services:
    queues: dict[str, MemoryQueue] = {}

    def queue(queue_name: str) -> MemoryQueue:
        if queue_name not in queues:
            queues[queue_name] = MemoryQueue(queue_name, now=ticks)
            queues[queue_name].create()
        return queues[queue_name]

    return Services(index=DamageWatchingIndex(), primary=MemoryBlobAccount(f"primary-{name}"),
                    secondary=Outage(MemoryBlobAccount(f"secondary-{name}")), queue=queue, clock=lambda: datetime.now(timezone.utc))


def replicate_all(services: Services, ticks: Ticks) -> None:
    """Run the replicate function on every message, waiting out their delays."""
    queue = services.queue(REPLICATE_QUEUE)
    for _ in range(100):
        if queue.approximate_count() == 0:
            return
        for message in queue.receive(32, 60):
            replication.replicate(services, ReplicateMessage.parse(base64.b64decode(message.body)))
            queue.delete(message)
        ticks.now += 1
    raise AssertionError("replication did not finish")


@pytest.fixture
def lrs(request):
    services = memory_services(f"check-{request.node.name}")
    services.index = DamageWatchingIndex()
    return InProcessVault(new_vault(services, "contoso", "checked"), services, PASSPHRASE)


@pytest.fixture
def ticks():
    return Ticks()


@pytest.fixture
def grs(request, ticks):
    services = grs_services(request.node.name, ticks)
    return InProcessVault(new_vault(services, "contoso", "geo", "GRS"), services, PASSPHRASE)


@pytest.fixture
def cache(tmp_path):
    c = Cache(tmp_path / "cache.sqlite")
    yield c
    c.close()


def backed_up(vault, cache, tmp_path, name="data", files=3) -> tuple[str, list[str]]:
    """A committed point of a few random files: its id and `files` distinct data chunk ids."""
    data = tmp_path / name
    data.mkdir()
    for i in range(files):
        (data / f"part{i}.bin").write_bytes(os.urandom(1_500_000))
    report = Backup(vault, cache, "laptop").run([str(data)])
    assert report.state == "committed"
    ids = dict.fromkeys(cid for i in range(files)
                        for cid, _, _ in cache.previous_file(vault.vault_id, "laptop", f"{name}/part{i}.bin").extents)
    assert len(ids) >= files, "4.5 MB of random data makes more chunks than files"
    return report.point_id, list(ids)[:files]


def container(vault, region="primary"):
    return vault.services.regions()[region].container(container_name(vault.vault_id))


def record(vault, cid):
    return vault.services.index.get_chunks(vault.vault_id, [cid])[cid]


def epoch(vault) -> int:
    return vault.services.index.get_vault("contoso", vault.vault_id).chunk_epoch


def problems(report) -> list[tuple[str, str | None, str]]:
    return [(p.chunk_id, p.region, p.kind) for p in report.problems]


def test_check_reports_a_missing_chunk_and_the_service_marks_it_damaged(lrs, cache, tmp_path):
    _, (cid, *_) = backed_up(lrs, cache, tmp_path)
    assert Check(lrs).run().exit_code == 0
    container(lrs).delete(chunk_blob_name(cid))
    said = []
    report = Check(lrs, progress=said.append).run()
    assert problems(report) == [(cid, "primary", "missing")] and report.exit_code == check.exitcodes.PROBLEMS
    assert any(cid in line and "(primary): missing" in line for line in said)
    assert [(o.chunk_id, o.outcome) for o in report.outcomes] == [(cid, "damaged")]
    assert record(lrs, cid).state == "damaged" and "no region holds" in record(lrs, cid).reason
    assert epoch(lrs) == 1 and lrs.services.index.epoch_when_damaged == [1], "the epoch rose first"


def test_a_flipped_byte_is_found_by_read_data_only_and_marked_damaged_on_lrs(lrs, cache, tmp_path):
    point, (cid, *_) = backed_up(lrs, cache, tmp_path)
    container(lrs).rot(chunk_blob_name(cid), 1000)
    plain = Check(lrs).run()
    assert plain.problems == [] and plain.exit_code == 0, "its MD5 property is the one recorded on upload"
    assert record(lrs, cid).state == "verified"
    report = Check(lrs).run(read_data=True)
    assert problems(report) == [(cid, "primary", "authentication")] and report.exit_code == check.exitcodes.PROBLEMS
    assert report.copies_read == report.chunks
    assert [(o.chunk_id, o.region, o.outcome) for o in report.outcomes] == [(cid, "primary", "damaged")]
    assert record(lrs, cid).state == "damaged" and epoch(lrs) == 1
    assert lrs.services.index.epoch_when_damaged == [1]
    # Checked again: the index says so, and the report is not repeated.
    again = Check(lrs).run([point], read_data=True)
    assert (cid, None, "damaged") in problems(again) and again.outcomes[0].outcome == "ignored" and epoch(lrs) == 1


def test_read_data_heals_a_flipped_byte_in_one_region_of_a_grs_vault(grs, cache, tmp_path, ticks):
    point, (cid, *_) = backed_up(grs, cache, tmp_path)
    replicate_all(grs.services, ticks)
    assert grs.services.index.get_point(grs.vault_id, point).geo_protected_at
    name = chunk_blob_name(cid)
    good = container(grs).read(name)
    container(grs, "secondary").rot(name, 5000)
    assert Check(grs).run().problems == []
    report = Check(grs).run(read_data=True)
    assert problems(report) == [(cid, "secondary", "authentication")]
    assert report.copies_read == 2 * report.chunks, "every chunk read in both regions"
    assert [(o.region, o.outcome) for o in report.outcomes] == [("secondary", "healed")]
    assert container(grs, "secondary").read(name) == good
    assert record(grs, cid).state == "verified" and epoch(grs) == 0
    assert Check(grs).run(read_data=True).exit_code == 0


def test_a_report_repeated_after_the_heal_changes_nothing(grs, cache, tmp_path, ticks):
    _, (cid, *_) = backed_up(grs, cache, tmp_path)
    replicate_all(grs.services, ticks)
    name = chunk_blob_name(cid)
    container(grs, "secondary").rot(name, 10)
    rotten = base64.b64encode(hashlib.md5(container(grs, "secondary").read(name)).digest()).decode()
    report = DamageReport(cid, "secondary", "failed authentication", md5=rotten)
    vault = grs.services.index.get_vault("contoso", grs.vault_id)
    first = damage.report_damage(grs.services, vault, DamageRequest((report,)))
    again = damage.report_damage(grs.services, vault, DamageRequest((report,)))
    assert [o.outcome for o in first.outcomes + again.outcomes] == ["healed", "good"]
    assert record(grs, cid).state == "verified" and epoch(grs) == 0


def test_an_upload_that_was_bad_is_marked_damaged_though_every_copy_matches(ticks, request):
    """The envelope as declared (size and MD5 verified, header sound) fails authentication:
    both regions hold the same bad bytes, so there is nothing to heal from."""
    services = grs_services(request.node.name, ticks)
    keys = crypto.derive_keys("check test passphrase", b"c" * 16)
    agent = Agent(services, keys, redundancy="GRS")
    data = os.urandom(5000)
    cid = crypto.chunk_id(keys, data)
    envelope = bytearray(crypto.encrypt_chunk(keys, agent.vault.id, cid, data))
    envelope[-1] ^= 1  # the tag: only decryption notices
    agent.container.put(chunk_blob_name(cid), bytes(envelope))
    md5 = base64.b64encode(hashlib.md5(envelope).digest()).decode()
    ingest_text(services, agent.message(type="chunks", chunks=[{"id": cid, "size": len(envelope), "md5": md5}]))
    assert commit_text(services, agent.point(POINT, [cid])).state == "committed"
    replicate_all(services, ticks)
    vault = AgentVault(agent.creds, keys, transport=InProcessTransport(services))
    report = Check(vault).run(read_data=True)
    assert sorted(problems(report)) == [(cid, "primary", "authentication"), (cid, "secondary", "authentication")]
    assert {o.outcome for o in report.outcomes} == {"damaged"}
    stored = services.index.get_chunks(agent.vault.id, [cid])[cid]
    assert stored.state == "damaged" and "the upload itself was bad" in stored.reason
    assert services.index.epoch_when_damaged == [1]


def test_damage_reports_of_unknown_chunks_and_absent_regions_are_ignored(lrs, cache, tmp_path):
    _, (cid, *_) = backed_up(lrs, cache, tmp_path)
    answer = lrs.report_damage([DamageReport("ab" * 32, "primary", "failed authentication"),
                                DamageReport(cid, "secondary", "failed authentication")])
    assert [(o.outcome, o.detail) for o in answer.outcomes] == [
        ("unknown", f"vault {lrs.vault_id} has no chunk {'ab' * 32}"),
        ("ignored", "the secondary region holds no copy of it (an LRS vault)")]
    assert record(lrs, cid).state == "verified" and epoch(lrs) == 0


def test_the_service_check_names_what_is_wrong_with_each_copy(grs, cache, tmp_path, ticks):
    _, (resized, rewritten, fine) = backed_up(grs, cache, tmp_path)
    replicate_all(grs.services, ticks)
    secondary = container(grs, "secondary")
    secondary.put(chunk_blob_name(resized), b"short", overwrite=True)
    size = len(secondary.read(chunk_blob_name(rewritten)))
    secondary.put(chunk_blob_name(rewritten), os.urandom(size), overwrite=True)
    unknown = "cd" * 32
    answer = grs.check_chunks([resized, rewritten, fine, unknown])
    assert answer.checked == 4 and answer.unavailable == ()
    assert sorted((p.chunk_id, p.region, p.kind) for p in answer.problems) == sorted([
        (resized, "secondary", "size"), (rewritten, "secondary", "md5"), (unknown, None, "unknown")])
    grs.services.secondary.down = True
    down = grs.check_chunks([fine])
    assert down.problems == () and down.unavailable == ("secondary",)


def test_check_requests_are_bounded_and_strict(lrs):
    with pytest.raises(ApiError, match="holds 201 entries") as too_many:
        lrs.check_chunks(["ab" * 32] * (CHECK_MAX_IDS + 1))
    assert too_many.value.status == 400
    with pytest.raises(ApiError, match="'region' has a bad format") as bad_region:
        lrs.api("POST", "chunks/damage", {"reports": [{"id": "ab" * 32, "region": "mars", "problem": "x"}]})
    assert bad_region.value.status == 400


def test_a_region_that_does_not_answer_leaves_the_check_incomplete(grs, cache, tmp_path, ticks):
    backed_up(grs, cache, tmp_path)
    replicate_all(grs.services, ticks)
    grs.services.secondary.down = True
    report = Check(grs).run(read_data=True)
    assert report.problems == [] and report.exit_code == check.exitcodes.INCOMPLETE
    assert any("secondary" in line for line in report.unchecked)


def test_distinct_chunks_of_every_point_are_checked_once_from_paged_lists(lrs, cache, tmp_path, monkeypatch):
    monkeypatch.setattr(check, "REFS_PAGE_BYTES", 100)  # ids cut across pages
    first, _ = backed_up(lrs, cache, tmp_path)
    (tmp_path / "data" / "part1.bin").write_bytes(os.urandom(1_500_000))
    second = Backup(lrs, cache, "laptop").run([str(tmp_path / "data")]).point_id
    refs = {p: container(lrs).read(f"points/{p}/refs").split() for p in (first, second)}
    assert set(refs[first]) != set(refs[second])
    report = Check(lrs).run(read_data=True)
    assert sorted(report.points) == sorted([first, second])
    assert report.chunks == report.copies_read == len(set(refs[first]) | set(refs[second]))
    assert Check(lrs).run([first]).chunks == len(refs[first])


def test_a_point_whose_reference_list_is_gone_is_a_problem(lrs, cache, tmp_path):
    point, _ = backed_up(lrs, cache, tmp_path)
    container(lrs).delete(f"points/{point}/refs")
    report = Check(lrs).run()
    assert report.point_problems == [f"recovery point {point}: its reference list points/{point}/refs is missing"]
    assert report.exit_code == check.exitcodes.PROBLEMS


def test_subset_reads_about_the_share_asked_a_new_sample_each_run(request):
    services = memory_services(f"subset-{request.node.name}")
    keys = crypto.derive_keys("subset test passphrase", b"s" * 16)
    agent = Agent(services, keys)
    declared = [agent.upload(os.urandom(100)) for _ in range(400)]
    for start in range(0, 400, 200):
        ingest_text(services, agent.message(type="chunks", chunks=declared[start:start + 200]))
    assert commit_text(services, agent.point(POINT, [d["id"] for d in declared])).state == "committed"
    vault = AgentVault(agent.creds, keys, transport=InProcessTransport(services))
    reads = record_reads(vault)
    samples = []
    for seed in (1, 2):
        reads.clear()
        report = Check(vault, rng=random.Random(seed)).run(read_data=True, subset=0.25)
        assert report.chunks == 400 and report.problems == []
        chunk_reads = {name for name in reads if name.startswith("chunks/")}
        assert len(chunk_reads) == report.copies_read and 60 <= report.copies_read <= 140
        samples.append(chunk_reads)
    assert samples[0] != samples[1], "a random sample, drawn anew each run"


@pytest.mark.parametrize("text, fraction", [("10", 0.1), ("10%", 0.1), ("2.5%", 0.025), ("100", 1.0)])
def test_subset_takes_a_percentage(text, fraction):
    assert parse_subset(text) == pytest.approx(fraction)


@pytest.mark.parametrize("text, error", [("0", "more than 0%"), ("0%", "more than 0%"), ("100.5", "at most 100%"),
                                         ("-5", "more than 0%"), ("nan", "more than 0%"),
                                         ("ten", "not a percentage")])
def test_subset_refuses_what_is_not_a_share(text, error):
    with pytest.raises(AgentError, match=error):
        parse_subset(text)


def test_read_data_needs_the_keys(lrs):
    keyless = AgentVault(lrs.creds, transport=lrs.transport)
    with pytest.raises(AgentError, match="needs the vault keys"):
        Check(keyless).run(read_data=True)


def test_a_long_check_takes_a_new_restore_job_before_the_sas_expires(lrs, cache, tmp_path, monkeypatch):
    backed_up(lrs, cache, tmp_path)
    monkeypatch.setattr(check, "REFS_PAGE_BYTES", 100)
    start = datetime.now(timezone.utc)
    calls = []

    def agent_clock() -> datetime:  # ten minutes pass between any two looks of the agent's
        calls.append(None)
        return service_clock()

    def service_clock() -> datetime:
        return start + len(calls) * check.RENEW_ACCESS_AFTER / 4.5

    lrs.clock, lrs.services.clock = agent_clock, service_clock
    jobs = []
    start_restore = lrs.start_restore
    lrs.start_restore = lambda job_id, point_id, *purpose: jobs.append(job_id) or start_restore(job_id, point_id, *purpose)
    report = Check(lrs).run(read_data=True)
    assert report.exit_code == 0 and report.copies_read == report.chunks
    assert len(jobs) > 1, "each job's SAS is renewed after RENEW_ACCESS_AFTER"
