"""The service keyless, as a deployment with shared keys and Cosmos DB local auth off runs it:
Azurite over HTTPS with `--oauth basic` takes Entra ID bearer tokens for the service's own
requests and hands out user-delegation keys, whose SAS the agents then use; the Cosmos DB
emulator over HTTPS takes the SDK's bearer tokens. The token is made here (Azurite checks its
lifetime, issuer and audience, not its signature); everything else is real: TLS (the storage
certificate verified; azure-cosmos itself never verifies 127.0.0.1's), the SDKs' bearer-token policies, the user-delegation SAS, the agent's REST client,
and at the end a whole backup and restore built from a deployment's keyless app settings."""
from __future__ import annotations

import base64
import ipaddress
import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared import bootstrap
from shared.adapters.azure_storage import AzureBlobAccount, AzureQueue, IdentityConnection
from shared.adapters.sas_rest import SasContainer
from shared.ports import blob_url
from shared.service.context import ALL_QUEUES
from skyvault.backup import Backup
from skyvault.cache import Cache
from skyvault.restore import Restore
from skyvault.stack import emulators
from skyvault.treedigest import differences, tree_digest
from tests.inprocess import InProcessVault, new_vault

pytestmark = pytest.mark.emulators

STORAGE_SCOPE = "https://storage.azure.com/.default"
COSMOS_SCOPE = "https://127.0.0.1/.default"  # azure-cosmos asks for its account's own audience
TENANT, OBJECT = "72f988bf-86f1-41af-91ab-2d7cd011db47", "11059fcc-5514-4800-b5f8-49808b9cfab6"


class EntraLikeCredential:
    """A TokenCredential whose tokens carry the claims Azure Storage reads; counts its calls."""

    def __init__(self):
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        now = int(time.time())
        claims = {"aud": "https://storage.azure.com", "iss": f"https://sts.windows.net/{TENANT}/",
                  "iat": now, "nbf": now - 60, "exp": now + 3600, "oid": OBJECT, "tid": TENANT}
        parts = [{"alg": "none", "typ": "JWT"}, claims]
        token = ".".join(base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=").decode() for p in parts)
        return AccessToken(token + ".unsigned", now + 3600)


def _self_signed(directory) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "azurite-cert.pem", directory / "azurite-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("keyless")
    return workdir, _self_signed(workdir)


@pytest.fixture(scope="module")
def tls_azurite(tls):
    workdir, pem = tls
    instance = emulators.start_azurite("keyless", "skyvaultkeyless", workdir, in_memory=True, oauth_tls=pem)
    yield instance
    emulators.stop_pid(instance.pid)


@pytest.fixture(scope="module")
def tls_cosmos(tls):
    workdir, pem = tls
    instance = emulators.start_cosmos(workdir / "cosmos", tls=pem)
    yield instance
    emulators.stop_pid(instance.pid)


@pytest.fixture
def trusted(tls, monkeypatch):
    """The emulators' certificate trusted (by requests for the SDKs, by OpenSSL for the agent's
    http.client), and no other."""
    _, (cert, _) = tls
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))


@pytest.fixture
def azurite(tls_azurite, trusted):
    return tls_azurite


@pytest.fixture
def credential():
    return EntraLikeCredential()


@pytest.fixture
def account(azurite, credential):
    return AzureBlobAccount(IdentityConnection(azurite.blob_url, None, credential), "primary")


def in_an_hour() -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=1)


def test_the_service_reaches_blobs_with_its_identity_token(account, credential):
    container = account.container(f"vault-{time.time_ns()}")
    container.create(exist_ok=False)
    container.put("config", b"sealed")
    assert container.read("config") == b"sealed"
    assert credential.scopes and all(s == (STORAGE_SCOPE,) for s in credential.scopes)


def test_an_agent_writes_with_a_user_delegation_sas_and_only_creates(account):
    name = f"vault-{time.time_ns()}"
    account.container(name).create()
    url = account.container_sas_url(name, "c", in_an_hour())
    query = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
    # signed with the identity's delegation key, not an account key
    assert (query["skoid"], query["sktid"]) == (OBJECT, TENANT)
    agent = SasContainer(url)
    agent.put("chunks/ab/abcd", b"encrypted chunk")
    with pytest.raises(PermissionError):
        agent.read("chunks/ab/abcd")
    assert account.container(name).read("chunks/ab/abcd") == b"encrypted chunk"


def test_a_user_delegation_sas_refuses_what_it_does_not_grant_and_a_forged_one_refuses_all(account):
    name = f"vault-{time.time_ns()}"
    account.container(name).create()
    account.container(name).put("a", b"bytes")
    reader = SasContainer(account.container_sas_url(name, "r", in_an_hour()))
    assert reader.read("a") == b"bytes"
    with pytest.raises(PermissionError):
        reader.put("b", b"more")
    url = account.container_sas_url(name, "r", in_an_hour())
    signature = url.rsplit("sig=", 1)[1].split("&", 1)[0]
    forged = SasContainer(url.replace(f"sig={signature}", "sig=" + "A" * len(signature)))
    with pytest.raises(PermissionError):
        forged.read("a")


def test_one_delegation_key_signs_many_sas_until_a_sas_would_outlive_it(account, monkeypatch):
    asked = []
    original = account._service.get_user_delegation_key
    monkeypatch.setattr(account._service, "get_user_delegation_key",
                        lambda start, expiry, **kw: asked.append(expiry) or original(start, expiry, **kw))
    name = f"vault-{time.time_ns()}"
    account.container(name).create()
    for _ in range(3):
        account.container_sas_url(name, "c", in_an_hour())
    assert len(asked) == 1
    account.container_sas_url(name, "r", datetime.now(timezone.utc) + timedelta(days=2))
    assert len(asked) == 2


def test_a_copy_from_a_user_delegation_sas_source(account):
    source, target = f"vault-{time.time_ns()}", f"vault-{time.time_ns() + 1}"
    account.container(source).create()
    account.container(target).create()
    account.container(source).put("chunks/cd/cdef", b"replicated bytes")
    url = blob_url(account.container_sas_url(source, "r", in_an_hour()), "chunks/cd/cdef")
    account.container(target).copy_from("chunks/cd/cdef", url)
    assert account.container(target).read("chunks/cd/cdef") == b"replicated bytes"


def test_the_service_reaches_queues_with_its_identity_token(azurite, credential):
    queue = AzureQueue(IdentityConnection(None, azurite.queue_url, credential), f"ingest{time.time_ns()}")
    queue.create()
    queue.send('{"kind": "chunks"}')
    (message,) = queue.receive(1, 30)
    assert message.body == '{"kind": "chunks"}'
    queue.delete(message)
    assert queue.approximate_count() == 0


def test_without_a_token_nothing_is_served(azurite):
    class NoToken(EntraLikeCredential):
        def get_token(self, *scopes, **kwargs):
            token = super().get_token(*scopes, **kwargs)
            return AccessToken("not-a-jwt", token.expires_on)

    account = AzureBlobAccount(IdentityConnection(azurite.blob_url, None, NoToken()), "primary")
    with pytest.raises(PermissionError):
        account.container(f"vault-{time.time_ns()}").create()


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request is being made to host '127.0.0.1'")
def test_a_backup_and_restore_through_a_service_built_from_keyless_app_settings(
        tls_azurite, tls_cosmos, trusted, credential, monkeypatch, tmp_path):
    settings = {  # what infra/ gives the function app, pointed at the emulators
        "Storage__blobServiceUri": tls_azurite.blob_url, "Storage__queueServiceUri": tls_azurite.queue_url,
        "Storage__credential": "managedidentity", "Storage__clientId": "client-of-the-app-identity",
        "CosmosDb__accountEndpoint": tls_cosmos.endpoint, "CosmosDb__credential": "managedidentity",
        "CosmosDb__clientId": "client-of-the-app-identity", "CosmosDbDatabase": "keyless",
        "PublicApiUrl": "https://skyvault.example.net/api"}
    asked = []
    monkeypatch.setattr(bootstrap, "_credential", lambda kind, client: asked.append((kind, client)) or credential)
    services = bootstrap.build_services(settings)
    assert services.primary._keyless
    assert set(asked) == {("managedidentity", "client-of-the-app-identity")}
    services.index.ensure_schema()
    for name in ALL_QUEUES:
        services.queue(name).create()

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"f{i}.bin").write_bytes(os.urandom(300_000 + i))
    vault = InProcessVault(new_vault(services, "contoso", "keyless"), services, "keyless test passphrase")
    assert "skoid=" in vault.creds["blobContainerUrl"]  # the agent holds a user-delegation SAS
    report = Backup(vault, Cache(tmp_path / "cache.sqlite"), "laptop").run([str(data)])
    assert report.state == "committed", report.reason
    Restore(vault).run(report.point_id, str(tmp_path / "restored"))
    assert differences(tree_digest(data), tree_digest(tmp_path / "restored" / "data")) == []
    assert {scopes for scopes in credential.scopes} == {(STORAGE_SCOPE,), (COSMOS_SCOPE,)}
