"""Contract of BlobContainer and BlobAccount: the same tests run on MemoryBlobAccount and on
AzureBlobAccount against Azurite (and, but for leases, the agents' way over a SAS)."""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from shared.adapters.azure_storage import AzureBlobAccount
from shared.adapters.sas_rest import SasContainer
from shared.ports import (BlobAlreadyExists, BlobNotFound, ContainerExists, ContentMismatch, LeaseHeld, LeaseLost, StorageError,
                          TransientError, blob_url)
from skyvault.stack.emulators import DEV_ACCOUNT_KEY


def in_an_hour() -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=1)


def five_minutes_ago() -> datetime:
    return datetime.now(timezone.utc) - timedelta(minutes=5)


def source_url(account, container, name: str, permissions: str = "r", expiry: datetime | None = None) -> str:
    return blob_url(account.container_sas_url(container.name, permissions, expiry or in_an_hour()), name)


def test_put_is_create_only_and_keeps_the_first_bytes(container):
    container.put("a", b"first")
    with pytest.raises(BlobAlreadyExists):
        container.put("a", b"second")
    assert container.read("a") == b"first"


def test_concurrent_create_only_puts_have_one_winner(container):
    def attempt(writer: int) -> int | None:
        try:
            container.put("race", f"writer {writer}".encode())
        except BlobAlreadyExists:
            return None
        return writer

    with ThreadPoolExecutor(max_workers=8) as pool:
        winners = [w for w in pool.map(attempt, range(16)) if w is not None]
    assert len(winners) == 1
    assert container.read("race") == f"writer {winners[0]}".encode()


def test_put_with_overwrite_replaces(container):
    container.put("a", b"first")
    container.put("a", b"second", overwrite=True)
    assert container.read("a") == b"second"


def test_properties_give_size_and_the_md5_of_the_data(container):
    data = b"some chunk bytes" * 1000
    put = container.put("chunks/ab/abcd", data)
    props = container.properties("chunks/ab/abcd")
    assert props.name == "chunks/ab/abcd"
    assert props.size == len(data) == put.size
    assert props.content_md5 == put.content_md5 == hashlib.md5(data).digest()
    assert props.etag == put.etag


def test_a_put_with_the_md5_of_its_data_records_it(container):
    data = b"an envelope" * 100
    put = container.put("chunks/ab/md5", data, md5=hashlib.md5(data).digest())
    assert put.content_md5 == container.properties("chunks/ab/md5").content_md5 == hashlib.md5(data).digest()


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_put_whose_body_differs_from_its_md5_is_refused_and_stores_nothing(container, overwrite):
    if overwrite:
        container.put("chunks/ab/md5", b"what was there")
    with pytest.raises(ContentMismatch):
        container.put("chunks/ab/md5", b"bytes changed on the way", overwrite=overwrite,
                      md5=hashlib.md5(b"bytes as sent").digest())
    if overwrite:
        assert container.read("chunks/ab/md5") == b"what was there"
    else:
        with pytest.raises(BlobNotFound):
            container.properties("chunks/ab/md5")


def test_etag_changes_on_overwrite(container):
    first = container.put("a", b"1")
    second = container.put("a", b"2", overwrite=True)
    assert first.etag != second.etag


def test_read_ranges(container):
    container.put("a", b"0123456789")
    assert container.read("a", offset=2, length=3) == b"234"
    assert container.read("a", offset=7) == b"789"
    assert container.read("a", offset=8, length=100) == b"89"
    assert container.read("a", offset=4, length=0) == b""


def test_read_head_gives_the_first_bytes_and_the_whole_blobs_properties(container):
    data = b"SKV1" + bytes(range(256)) * 40
    put = container.put("chunks/ab/head", data)
    head, props = container.read_head("chunks/ab/head", 18)
    assert head == data[:18]
    assert props.size == len(data) and props.content_md5 == hashlib.md5(data).digest() == put.content_md5
    short, props = container.read_head("chunks/ab/head", len(data) + 100)
    assert short == data and props.size == len(data)
    with pytest.raises(BlobNotFound):
        container.read_head("chunks/ab/missing", 18)


def test_an_empty_blob_reads_as_no_bytes(container):
    container.put("locks/empty", b"")
    assert container.read("locks/empty") == b""


def test_read_starting_past_the_end_is_a_value_error(container):
    container.put("a", b"0123")
    with pytest.raises(ValueError):
        container.read("a", offset=10, length=2)


def test_missing_blob_is_blob_not_found(container):
    with pytest.raises(BlobNotFound):
        container.properties("missing")
    with pytest.raises(BlobNotFound):
        container.read("missing")
    with pytest.raises(BlobNotFound):
        container.read("missing", offset=1, length=0)


def test_container_must_be_created_first(blob_account):
    container = blob_account.container("never-created")
    with pytest.raises(BlobNotFound):
        container.put("a", b"x")
    with pytest.raises(BlobNotFound):
        list(container.list())
    container.delete("a")


def test_create_twice_is_harmless_unless_asked_for_a_new_one(container):
    container.put("a", b"x")
    container.create()
    with pytest.raises(ContainerExists):
        container.create(exist_ok=False)  # a new vault's container: another one's must not be taken
    assert container.read("a") == b"x"


def test_delete_is_idempotent(container):
    container.put("a", b"x")
    container.delete("a")
    container.delete("a")
    with pytest.raises(BlobNotFound):
        container.properties("a")


def test_list_by_prefix_in_lexical_order(container):
    for name in ["points/p2/refs", "chunks/ab/ab02", "chunks/ab/ab01", "chunks/cd/cd01", "points/p1/manifest"]:
        container.put(name, b"x")
    assert list(container.list("chunks/")) == ["chunks/ab/ab01", "chunks/ab/ab02", "chunks/cd/cd01"]
    assert list(container.list("chunks/cd/")) == ["chunks/cd/cd01"]
    assert list(container.list("nothing/")) == []
    assert list(container.list()) == sorted(list(container.list("chunks/")) + list(container.list("points/")))


def test_list_sizes_gives_each_blobs_bytes_in_lexical_order(container):
    container.put("chunks/ab/ab02", b"x" * 300)
    container.put("chunks/ab/ab01", b"")
    container.put("points/p1/refs", b"y" * 65)
    assert list(container.list_sizes("chunks/")) == [("chunks/ab/ab01", 0), ("chunks/ab/ab02", 300)]
    assert list(container.list_sizes()) == [("chunks/ab/ab01", 0), ("chunks/ab/ab02", 300), ("points/p1/refs", 65)]
    assert list(container.list_sizes("nothing/")) == []


def test_create_only_sas_can_add_blobs_and_nothing_else(blob_account, container):
    container.put("existing", b"old")
    agent = blob_account.container_from_url(
        blob_account.container_sas_url(container.name, "c", in_an_hour()))

    agent.put("new", b"fresh")
    assert container.read("new") == b"fresh"

    with pytest.raises(PermissionError):
        agent.put("existing", b"replaced")
    with pytest.raises(PermissionError):
        agent.put("existing", b"replaced", overwrite=True)
    with pytest.raises(PermissionError):
        agent.read("new")
    with pytest.raises(PermissionError):
        agent.properties("missing")
    with pytest.raises(PermissionError):
        list(agent.list())
    with pytest.raises(PermissionError):
        agent.delete("new")
    with pytest.raises(PermissionError):
        agent.create()
    assert container.read("existing") == b"old"


def test_read_only_sas_can_read_but_not_write(blob_account, container):
    container.put("a", b"data")
    reader = blob_account.container_from_url(
        blob_account.container_sas_url(container.name, "r", in_an_hour()))

    assert reader.read("a", offset=1, length=2) == b"at"
    assert reader.properties("a").size == 4
    with pytest.raises(BlobNotFound):
        reader.read("missing")
    with pytest.raises(PermissionError):
        reader.put("b", b"x")
    with pytest.raises(PermissionError):
        reader.delete("a")
    with pytest.raises(PermissionError):
        list(reader.list())


def test_write_sas_gets_blob_already_exists_without_overwrite(blob_account, container):
    container.put("a", b"old")
    writer = blob_account.container_from_url(
        blob_account.container_sas_url(container.name, "cw", in_an_hour()))
    with pytest.raises(BlobAlreadyExists):
        writer.put("a", b"new")
    writer.put("a", b"new", overwrite=True)
    assert container.read("a") == b"new"


def test_list_and_delete_sas(blob_account, container):
    container.put("x/1", b"1")
    container.put("x/2", b"2")
    janitor = blob_account.container_from_url(
        blob_account.container_sas_url(container.name, "ld", in_an_hour()))
    assert list(janitor.list("x/")) == ["x/1", "x/2"]
    janitor.delete("x/1")
    assert list(container.list()) == ["x/2"]


def test_expired_sas_is_refused(blob_account, container):
    container.put("a", b"x")
    expired = blob_account.container_from_url(blob_account.container_sas_url(
        container.name, "rl", datetime.now(timezone.utc) - timedelta(minutes=5)))
    with pytest.raises(PermissionError):
        expired.read("a")


def test_copy_from_another_account_copies_the_bytes_and_their_md5(blob_account, container, target):
    data = b"encrypted chunk bytes " * 5000
    container.put("chunks/ab/abcd", data)

    copied = target.copy_from("chunks/ab/abcd", source_url(blob_account, container, "chunks/ab/abcd"))

    assert copied.name == "chunks/ab/abcd"
    assert copied.size == len(data)
    assert copied.content_md5 == hashlib.md5(data).digest()
    assert target.properties("chunks/ab/abcd") == copied
    assert target.read("chunks/ab/abcd") == data
    assert container.read("chunks/ab/abcd") == data


def test_copy_from_replaces_what_is_there(blob_account, container, target):
    container.put("points/p1/manifest", b"the real manifest")
    before = target.put("points/p1/manifest", b"a stale copy")

    copied = target.copy_from("points/p1/manifest", source_url(blob_account, container, "points/p1/manifest"))

    assert copied.etag != before.etag
    assert copied.content_md5 == hashlib.md5(b"the real manifest").digest()
    assert target.read("points/p1/manifest") == b"the real manifest"


def test_copy_from_a_missing_source_is_blob_not_found_and_writes_nothing(blob_account, container, target):
    target.put("kept", b"old")
    with pytest.raises(BlobNotFound):
        target.copy_from("new", source_url(blob_account, container, "missing"))
    with pytest.raises(BlobNotFound):
        target.copy_from("kept", source_url(blob_account, container, "missing"))
    with pytest.raises(BlobNotFound):
        target.copy_from("new", source_url(blob_account, blob_account.container("never-created"), "a"))
    with pytest.raises(BlobNotFound):
        target.properties("new")
    assert target.read("kept") == b"old"


# A source URL that may not read is a PermissionError, not BlobNotFound: a
# wrong or expired SAS must not pass for a lost source.
@pytest.mark.parametrize("permissions, expiry", [
    ("l", in_an_hour), ("cw", in_an_hour), ("r", five_minutes_ago),
], ids=["list-only", "write-only", "expired"])
def test_copy_from_needs_a_source_url_that_may_read(blob_account, container, target, permissions, expiry):
    container.put("a", b"source")
    target.put("a", b"old")
    with pytest.raises(PermissionError):
        target.copy_from("a", source_url(blob_account, container, "a", permissions, expiry()))
    assert target.read("a") == b"old"


def test_copy_into_a_missing_container_is_blob_not_found(blob_account, container, other_account):
    container.put("a", b"x")
    with pytest.raises(BlobNotFound):
        other_account.container("never-created").copy_from("a", source_url(blob_account, container, "a"))


@pytest.fixture
def leasing(container, blob_backend):
    """The container, on the backends that take leases: agents' SAS containers do not."""
    if blob_backend == "sas":
        pytest.skip("the agents' SAS containers take no leases")
    return container


def test_acquire_lease_creates_the_blob_empty_and_a_second_acquire_is_lease_held(leasing):
    lease_id = leasing.acquire_lease("locks/sweep", 15)
    assert lease_id
    assert leasing.read("locks/sweep") == b""
    with pytest.raises(LeaseHeld):
        leasing.acquire_lease("locks/sweep", 15)


def test_acquire_lease_on_an_existing_blob_leaves_it_as_it_was(leasing):
    put = leasing.put("locks/sweep", b"left by an operator")
    leasing.acquire_lease("locks/sweep", 30)
    assert leasing.read("locks/sweep") == b"left by an operator"
    assert leasing.properties("locks/sweep") == put


def test_renew_lease_keeps_it(leasing):
    lease_id = leasing.acquire_lease("locks/sweep", 15)
    leasing.renew_lease("locks/sweep", lease_id)
    leasing.renew_lease("locks/sweep", lease_id)
    with pytest.raises(LeaseHeld):
        leasing.acquire_lease("locks/sweep", 15)


def test_release_lease_lets_another_acquire(leasing):
    first = leasing.acquire_lease("locks/sweep", 15)
    leasing.release_lease("locks/sweep", first)
    second = leasing.acquire_lease("locks/sweep", 15)
    assert second != first


def test_renew_after_release_is_lease_lost(leasing):
    lease_id = leasing.acquire_lease("locks/sweep", 15)
    leasing.release_lease("locks/sweep", lease_id)
    with pytest.raises(LeaseLost):
        leasing.renew_lease("locks/sweep", lease_id)


def test_renew_of_a_lease_another_took_since_is_lease_lost(leasing):
    first = leasing.acquire_lease("locks/sweep", 15)
    leasing.release_lease("locks/sweep", first)
    leasing.acquire_lease("locks/sweep", 15)
    with pytest.raises(LeaseLost):
        leasing.renew_lease("locks/sweep", first)


def test_release_of_a_released_lease_does_nothing(leasing):
    lease_id = leasing.acquire_lease("locks/sweep", 15)
    leasing.release_lease("locks/sweep", lease_id)
    leasing.release_lease("locks/sweep", lease_id)


def test_release_of_a_lease_another_took_since_leaves_theirs(leasing):
    first = leasing.acquire_lease("locks/sweep", 15)
    leasing.release_lease("locks/sweep", first)
    second = leasing.acquire_lease("locks/sweep", 15)
    leasing.release_lease("locks/sweep", first)
    with pytest.raises(LeaseHeld):
        leasing.acquire_lease("locks/sweep", 15)
    leasing.renew_lease("locks/sweep", second)


def test_lease_on_a_missing_blob_renews_lost_and_releases_nothing(leasing):
    lease_id = leasing.acquire_lease("locks/other", 15)
    with pytest.raises(LeaseLost):
        leasing.renew_lease("locks/missing", lease_id)
    leasing.release_lease("locks/missing", lease_id)


def test_a_leased_blob_is_not_overwritten_or_deleted_without_its_lease(leasing):
    leasing.acquire_lease("locks/sweep", 15)
    with pytest.raises(BlobAlreadyExists):
        leasing.put("locks/sweep", b"x")
    with pytest.raises(StorageError):
        leasing.put("locks/sweep", b"x", overwrite=True)
    with pytest.raises(StorageError):
        leasing.delete("locks/sweep")
    assert leasing.read("locks/sweep") == b""


@pytest.mark.parametrize("seconds", [14, 61, -1])
def test_a_lease_lasts_15_to_60_seconds(leasing, seconds):
    with pytest.raises(ValueError):
        leasing.acquire_lease("locks/sweep", seconds)
    assert list(leasing.list("locks/")) == []


def test_acquire_lease_in_a_missing_container_is_blob_not_found(blob_account, blob_backend):
    if blob_backend == "sas":
        pytest.skip("the agents' SAS containers take no leases")
    with pytest.raises(BlobNotFound):
        blob_account.container("never-created").acquire_lease("locks/sweep", 15)


def _unreachable_account(closed_port: int, region: str) -> AzureBlobAccount:
    return AzureBlobAccount(
        f"DefaultEndpointsProtocol=http;AccountName=nobody;AccountKey={DEV_ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{closed_port}/nobody;", region)


def test_copy_into_unreachable_storage_is_a_transient_error_and_fails_fast(closed_port):
    target = _unreachable_account(closed_port, "paired").container("gone")
    started = time.monotonic()
    with pytest.raises(TransientError):
        target.copy_from("a", f"http://127.0.0.1:{closed_port}/somebody/c/a?sp=r&sig=x")
    assert time.monotonic() - started < 10


def test_unreachable_storage_is_a_transient_error_and_fails_fast(closed_port):
    container = _unreachable_account(closed_port, "primary").container("gone")
    started = time.monotonic()
    with pytest.raises(TransientError):
        container.put("a", b"x")
    assert time.monotonic() - started < 10


def test_agents_unreachable_storage_is_a_transient_error_and_fails_fast(closed_port):
    container = SasContainer(f"http://127.0.0.1:{closed_port}/nobody/gone?sp=c&sig=x")
    started = time.monotonic()
    with pytest.raises(TransientError):
        container.put("a", b"x")
    assert time.monotonic() - started < 10


def test_leases_on_unreachable_storage_are_transient_errors_and_fail_fast(closed_port):
    container = _unreachable_account(closed_port, "primary").container("gone")
    started = time.monotonic()
    for call in (lambda: container.acquire_lease("locks/sweep", 15),
                 lambda: container.renew_lease("locks/sweep", "00000000-0000-0000-0000-000000000001"),
                 lambda: container.release_lease("locks/sweep", "00000000-0000-0000-0000-000000000001")):
        with pytest.raises(TransientError):
            call()
    assert time.monotonic() - started < 20
