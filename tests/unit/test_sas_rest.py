"""The agents' REST client against a local server that misbehaves as real ones do: it closes
kept-alive connections while they are idle, or answers 503."""
from __future__ import annotations

import http.client
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from shared.adapters import sas_rest
from shared.ports import TransientError


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, status: int = 201):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status, self.connections, self.requests = status, 0, 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.server.connections += 1

    def do_PUT(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.send_header("Content-MD5", "XrY7u+Ae7tCTyyK7j1rNww==")
        self.end_headers()
        # Says keep-alive, then closes: what an idle timeout does to the next request.
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(request):
    server = _Server(getattr(request, "param", 201))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_kept_alive_connection_closed_by_the_server_is_replaced_at_once(server, monkeypatch):
    monkeypatch.setattr(sas_rest, "pause_before_retry",
                        lambda attempt, base_s: pytest.fail(f"backed off before retry {attempt}"))
    container = sas_rest.SasContainer(f"http://127.0.0.1:{server.server_address[1]}/acct/vault-x?sp=c&sig=x")
    for name in ("a", "b", "c"):
        assert container.put(f"chunks/{name}", b"hello").size == 5
    assert server.requests == 3 and server.connections >= 3


@pytest.mark.parametrize("server", [503], indirect=True)
def test_a_service_that_keeps_failing_is_a_transient_error_after_its_retries(server, monkeypatch):
    pauses = []
    monkeypatch.setattr(sas_rest, "pause_before_retry", lambda attempt, base_s: pauses.append(attempt))
    container = sas_rest.SasContainer(f"http://127.0.0.1:{server.server_address[1]}/acct/vault-x?sp=c&sig=x")
    with pytest.raises(TransientError, match="503"):
        container.put("chunks/a", b"hello")
    assert server.requests == sas_rest.ATTEMPTS and len(pauses) == sas_rest.ATTEMPTS - 1


@pytest.mark.parametrize("url, refused", [
    ("http://storage.example.com/c?sig=x", True), ("http://10.0.0.5:10000/acct/c", True),
    ("https://storage.example.com/c?sig=x", False), ("http://127.0.0.1:10000/acct/c", False),
    ("http://localhost:7071/api", False)])
def test_plain_http_is_refused_but_for_the_loopback_emulators(url, refused):
    """A SAS or request sent without TLS to another host could be read or changed on the way."""
    if refused:
        with pytest.raises(ValueError, match="plain http"):
            sas_rest.Endpoint(url)
    else:
        assert sas_rest.Endpoint(url).host


class _LosingHandler(_Handler):
    """Reads the request, keeps its headers, and drops the connection without answering the first
    one: a lost answer, which the client retries."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append(dict(self.headers))
        if len(self.server.seen) == 1:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def test_a_request_retried_after_a_lost_answer_is_signed_anew(monkeypatch):
    """The service takes each nonce once: a retry with the first attempt's headers would be
    refused as a replay whenever the first attempt had reached it."""
    monkeypatch.setattr(sas_rest, "pause_before_retry", lambda attempt, base_s: None)
    server = _Server()
    server.RequestHandlerClass, server.seen = _LosingHandler, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        nonces = iter(["aa" * 16, "bb" * 16, "cc" * 16])
        endpoint = sas_rest.Endpoint(f"http://127.0.0.1:{server.server_address[1]}/api")
        answer = endpoint.request("POST x", "POST", "/api/x", None, lambda: {"x-skyvault-nonce": next(nonces)}, b"{}",
                                  retry_status=False)
    finally:
        server.shutdown()
        server.server_close()
    assert answer.status == 200
    seen = [h["x-skyvault-nonce"] for h in server.seen]
    # Two attempts reached the server, each signed anew (an attempt can also fail before it is
    # sent, a pooled connection found closed: then it is the second and third nonces).
    assert len(seen) == 2 and seen[0] != seen[1] and seen == sorted(seen), seen


def test_requests_are_sent_without_nagles_delay(server):
    """http.client writes a request's headers and its body apart: without TCP_NODELAY a small
    body would wait for the server's delayed ACK of the headers (urllib3, under the SDKs, sets
    it too). The connection a request takes, on plain HTTP and on TLS."""
    endpoint = sas_rest.Endpoint(f"http://127.0.0.1:{server.server_address[1]}/acct/vault-x?sp=c&sig=x")
    connection = endpoint._connection(fresh=True)
    connection.connect()
    try:
        assert connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        connection.close()
    assert issubclass(sas_rest._TlsConnection, http.client.HTTPSConnection)
    assert sas_rest._TlsConnection.connect is sas_rest._Connection.connect
