"""One HTTP transport for the Azure SDK clients of the service, with a connection pool sized
for the Functions host's concurrency: up to batchSize + newBatchThreshold queue messages
run at once and ingest verifies several chunks of each in parallel, while requests'
default pool keeps 10 connections per host and drops (and later reopens) the rest."""
from __future__ import annotations

import os

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

POOL_CONNECTIONS_PER_HOST = 64
# What requests reads from the environment when its session trusts it. It looks at them on every
# request, ~/.netrc included (two stat calls each time); a netrc entry for a storage host would
# even replace the SDK's Authorization header with its own. So the session trusts the
# environment only when one of these names a proxy or a CA bundle.
ENVIRONMENT_SETTINGS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class _NoNetrc(AuthBase):
    """A session auth that changes nothing: requests reads ~/.netrc for a request only when the
    session has no auth of its own, so with this one it never does, even when it trusts the
    environment for a proxy or a CA bundle (measured: the netrc look-ups were 6 % of the Functions
    host's samples during a backup on a machine that sets REQUESTS_CA_BUNDLE)."""

    def __call__(self, request):
        return request


def _environment_configures_http() -> bool:
    return any(os.environ.get(name) or os.environ.get(name.lower()) for name in ENVIRONMENT_SETTINGS)


def pooled_transport(connection_timeout: float) -> RequestsTransport:
    """A transport for one client; the client's own connection_timeout does not reach a
    transport it did not build, so it is given here."""
    session = requests.Session()
    session.trust_env = _environment_configures_http()
    session.auth = _NoNetrc()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_CONNECTIONS_PER_HOST)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=True, connection_timeout=connection_timeout)
