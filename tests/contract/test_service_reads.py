"""The service's own reads of its containers (ingest's header reads, the commit's reference
lists, scrubs, restores' checks) go through a read-only SAS over plain HTTP, not the SDK's
pipeline (shared.adapters.azure_storage): what that SAS may do, and when it is signed anew."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from azure.storage.blob import BlobClient, ContainerClient

from shared.adapters import azure_storage
from shared.adapters.azure_storage import AzureBlobAccount
from shared.adapters.sas_rest import SasContainer
from shared.ports import BlobNotFound
from tests.contract.conftest import unique

pytestmark = pytest.mark.emulators


@pytest.fixture
def account(azurite_primary):
    return AzureBlobAccount(azurite_primary.connection_string, "primary")


def test_reads_take_no_sdk_call_and_their_sas_reads_only(account, monkeypatch):
    container = account.container(unique("reads"))
    container.create()
    data = b"\x01" * 100
    container.put("chunks/ab/x", data, md5=hashlib.md5(data).digest())

    def no_sdk(*args, **kwargs):
        raise AssertionError("a read went through the SDK")

    monkeypatch.setattr(ContainerClient, "download_blob", no_sdk)
    monkeypatch.setattr(BlobClient, "download_blob", no_sdk)
    monkeypatch.setattr(BlobClient, "get_blob_properties", no_sdk)
    head, props = container.read_head("chunks/ab/x", 18)
    assert head == data[:18] and props.size == 100 and props.content_md5 == hashlib.md5(data).digest()
    assert container.read("chunks/ab/x", 90, 10) == data[90:]
    assert container.properties("chunks/ab/x").size == 100
    with pytest.raises(BlobNotFound):
        container.read_head("chunks/ab/missing", 18)
    reader = account._reader(container.name)
    assert isinstance(reader, SasContainer)
    with pytest.raises(PermissionError):  # the SAS the reads go through has "r" only
        reader.put("chunks/ab/y", b"no")
    with pytest.raises(PermissionError):
        reader.delete("chunks/ab/x")
    assert container.read("chunks/ab/x") == data


def test_the_read_sas_is_held_and_signed_anew_before_it_expires(account, monkeypatch):
    name = unique("renew")
    account.container(name).create()
    first = account._reader(name)
    assert account._reader(name) is first, "held while it has more than READ_SAS_RENEW to run"
    monkeypatch.setattr(azure_storage, "READ_SAS_LIFETIME", azure_storage.READ_SAS_RENEW - timedelta(seconds=1))
    short = account._reader(f"{name}short")
    assert account._reader(f"{name}short") is not short, "signed anew: it has less than READ_SAS_RENEW to run"
    monkeypatch.setattr(azure_storage, "READERS_HELD", 2)
    for other in ("a", "b", "c"):
        account._reader(f"{name}{other}")
    assert list(account._readers) == [f"{name}b", f"{name}c"], "the least recently used are let go"


def test_a_refused_read_is_tried_again_through_a_sas_signed_anew(account):
    """After the account's user-delegation keys are revoked, the held SAS answers 403: the read
    is tried once more with a new SAS (keyless, under a new user-delegation key)."""
    container = account.container(unique("revoked"))
    container.create()
    container.put("chunks/ab/x", b"0123456789")
    account._reader(container.name)
    held, expiry = account._readers[container.name]
    refused = SasContainer(account.container_sas_url(container.name, "c", expiry))  # no "r": reads get 403
    account._readers[container.name] = (refused, expiry)
    account._delegation_key = object()  # what a keyless account would hold: dropped with the SAS
    assert container.read("chunks/ab/x", 2, 3) == b"234"
    assert account._readers[container.name][0] is not refused and account._delegation_key is None
    assert container.read_head("chunks/ab/x", 4)[0] == b"0123"


def test_a_read_through_a_sas_url_is_refused_without_a_second_try(account):
    from shared.adapters.azure_storage import container_from_url
    name = unique("urlsas")
    account.container(name).create()
    account.container(name).put("b", b"x")
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)
    create_only = container_from_url(account.container_sas_url(name, "c", expiry))
    with pytest.raises(PermissionError):
        create_only.read("b")
