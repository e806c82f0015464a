"""The service's HTTP transport: its pool, and what it takes from the environment."""
import pytest
import requests

from shared.adapters import http_pool


@pytest.fixture
def clean_environment(monkeypatch):
    for name in http_pool.ENVIRONMENT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_session_ignores_the_environment_unless_it_names_a_proxy_or_ca_bundle(clean_environment, tmp_path):
    # A ~/.netrc entry would otherwise be read on every request and replace the SDK's own
    # Authorization header.
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login someone password secret\n")
    clean_environment.setenv("HOME", str(tmp_path))
    transport = http_pool.pooled_transport(5)
    assert transport.session.trust_env is False
    prepared = transport.session.prepare_request(
        requests.Request("GET", "http://127.0.0.1:1/x", headers={"Authorization": "SharedKey a:b"}))
    assert prepared.headers["Authorization"] == "SharedKey a:b"
    assert transport.session.adapters["http://"]._pool_maxsize == http_pool.POOL_CONNECTIONS_PER_HOST


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy", "REQUESTS_CA_BUNDLE"])
def test_session_trusts_an_environment_that_configures_http(clean_environment, name):
    clean_environment.setenv(name, "http://proxy.example:3128" if "PROXY" in name.upper() else "/etc/ssl/ca.pem")
    assert http_pool.pooled_transport(5).session.trust_env is True


def test_only_the_loopback_emulator_goes_without_tls_verification():
    from shared.adapters.cosmos_index import tls_options
    off = {"connection_verify": False, "enable_endpoint_discovery": False}
    assert tls_options("http://127.0.0.1:8081/") == tls_options("http://localhost:8081/") == off
    assert tls_options("https://skyvault.documents.azure.com:443/") == {
        "connection_verify": True, "enable_endpoint_discovery": True}


def test_netrc_is_never_read_even_when_the_environment_is_trusted(clean_environment, tmp_path, monkeypatch):
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login someone password secret\n")
    clean_environment.setenv("HOME", str(tmp_path))
    clean_environment.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    looked_up = []
    monkeypatch.setattr(requests.sessions, "get_netrc_auth", lambda *a, **k: looked_up.append(a))
    transport = http_pool.pooled_transport(5)
    assert transport.session.trust_env is True  # for the CA bundle
    prepared = transport.session.prepare_request(
        requests.Request("GET", "http://127.0.0.1:1/x", headers={"Authorization": "SharedKey a:b"}))
    assert prepared.headers["Authorization"] == "SharedKey a:b" and looked_up == []
    settings = transport.session.merge_environment_settings(prepared.url, {}, None, None, None)
    assert settings["verify"] == "/etc/ssl/certs/ca-certificates.crt"  # the bundle still applies
