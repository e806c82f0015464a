"""HTTP triggers: routes, route and query parameters, methods, responses, errors and the status endpoint."""
from __future__ import annotations

import http.client
import json
import logging
import os
import re
import socket
from urllib.parse import urlsplit

import azure.functions as func
import pytest
import requests


def http_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="items/{id:int}", methods=["GET"])
    def item(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps({"id": req.route_params["id"], "params": dict(req.params)}),
                                 mimetype="application/json")

    @app.route(route="items/new", methods=["GET"])
    def new_item(req: func.HttpRequest) -> str:
        return "form"

    @app.route(route="files/{*path}")
    def files(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.route_params.get("path", "<root>"))

    @app.route(route="echo", methods=["POST", "PUT"])
    async def echo(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.get_body(), status_code=201, mimetype="application/octet-stream",
                                 headers={"X-Method": req.method, "X-Token": req.headers.get("x-token", "")})

    @app.route(route="boom")
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise ValueError("kaput")

    @app.route(route="nothing")
    def nothing(req: func.HttpRequest) -> None:
        return None

    return app


@pytest.fixture
def base_url(run_host):
    return run_host(http_app()).url


def test_route_parameters_constraints_and_query(base_url):
    response = requests.get(f"{base_url}/api/items/42", params=[("q", "a b"), ("tag", "x"), ("tag", "y")])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"id": "42", "params": {"q": "a b", "tag": "x,y"}}
    assert requests.get(f"{base_url}/api/items/new").text == "form"
    assert requests.get(f"{base_url}/api/items/abc").status_code == 404
    assert requests.get(f"{base_url}/api/files/2024/report%20v2.pdf").text == "2024/report v2.pdf"
    assert requests.get(f"{base_url}/api/files").text == "<root>"


def test_body_status_headers_and_methods(base_url):
    response = requests.post(f"{base_url}/api/echo", data=b"\x00chunk", headers={"X-Token": "t1"})
    assert response.status_code == 201
    assert response.content == b"\x00chunk"
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert (response.headers["X-Method"], response.headers["X-Token"]) == ("POST", "t1")
    assert requests.put(f"{base_url}/api/echo", data=b"x").status_code == 201
    assert requests.get(f"{base_url}/api/items/1").headers["Content-Type"] == "application/json"
    # A route that exists for other methods answers 404, as the Functions host does.
    assert requests.get(f"{base_url}/api/echo").status_code == 404
    assert requests.delete(f"{base_url}/api/items/1").status_code == 404
    assert requests.get(f"{base_url}/api/unknown").status_code == 404
    assert requests.get(f"{base_url}/items/1").status_code == 404


def test_invocations_are_logged_and_a_failing_function_answers_500(base_url, caplog):
    with caplog.at_level(logging.INFO, logger="funchost"):
        assert requests.get(f"{base_url}/api/items/5").status_code == 200
        response = requests.get(f"{base_url}/api/boom")
        assert response.status_code == 500
        assert response.text == "Exception while executing function: Functions.boom"
        # None cannot be encoded as an HTTP response: the invocation fails, as in the Python worker.
        assert requests.get(f"{base_url}/api/nothing").status_code == 500
    messages = [(r.getMessage(), r.exc_info) for r in caplog.records]
    assert any(re.match(r"Executed 'Functions.item' \(Succeeded, Id=[0-9a-f-]{36}, Duration=\d+ms\) GET /api/items/5",
                        text) for text, _ in messages)
    failed = [exc_info for text, exc_info in messages if text.startswith("Executed 'Functions.boom' (Failed")]
    assert failed and "kaput" in str(failed[0][1])
    assert any(text.startswith("Executed 'Functions.nothing' (Failed") for text, _ in messages)


def test_status_endpoint(base_url):
    response = requests.get(f"{base_url}/admin/host/status")
    assert response.status_code == 200
    assert response.json() == {"state": "Running"}


def test_route_prefix_comes_from_host_json(run_host):
    url = run_host(http_app(), host_json={"version": "2.0", "extensions": {"http": {"routePrefix": ""}}}).url
    assert requests.get(f"{url}/items/7").json()["id"] == "7"
    assert requests.get(f"{url}/api/items/7").status_code == 404


def _own_socket_with_peer(address: tuple[str, int]) -> socket.socket:
    """The socket of this process (the host serves in its threads) connected to `address`."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(fd)))
        except OSError:  # closed meanwhile
            continue
        try:
            if sock.family == socket.AF_INET and sock.getpeername() == address:
                return sock
        except OSError:  # a listening socket: no peer
            pass
        sock.close()
    raise AssertionError(f"no socket of this process is connected to {address}")


def test_answers_are_sent_at_once_not_held_for_the_clients_ack(base_url):
    """The host writes an answer's headers and its body apart; with Nagle's algorithm the body
    would wait for the client's delayed ACK of the headers, 40 ms on every request of a
    kept-alive connection but its first few. Kestrel, the real host's server, sets TCP_NODELAY."""
    url = urlsplit(base_url)
    client = http.client.HTTPConnection(url.hostname, url.port)
    try:
        for _ in range(3):
            client.request("POST", "/api/echo", body=b"chunk")
            assert client.getresponse().read() == b"chunk"
        served = _own_socket_with_peer(client.sock.getsockname())
        with served:
            assert served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        client.close()
