"""The HTTP front end: HTTP triggers and the host's own status endpoint.

Owns serving requests on a local ThreadingHTTPServer (one thread per
connection, so functions run concurrently), building the
azure.functions.HttpRequest a function receives and writing back what it
returned. The result is encoded with azure.functions' own
HttpResponseConverter, the worker's encoder: an HttpResponse keeps its
status, headers, cookies and body, and gets `Content-Type: mimetype;
charset=...` when it set none; a str is a 200 text body; anything else
(None included) fails the invocation, as in Azure. A failed invocation
answers 500, and so does one past functionTimeout. Unknown routes answer 404.
Request bodies need a Content-Length (chunked uploads get 411). Accepted
connections have TCP_NODELAY, as Kestrel (the real host's server) sets by
default: an answer's headers and body are written apart, and with Nagle's
algorithm the body would wait for the client's delayed ACK of the headers,
40 ms on each request of a kept-alive connection but its first few.

The limits Azure puts in front of HTTP functions hold here too:
- a body over the app setting FUNCTIONS_REQUEST_BODY_SIZE_LIMIT (default
  104857600 bytes, "App settings reference for Azure Functions") gets 413,
  decided from Content-Length before any of the body is read (a client that
  sends `Expect: 100-continue` gets the 413 instead of 100 Continue), and the
  connection is closed rather than the body read;
- a function that has not answered within HTTP_RESPONSE_LIMIT (230 s: "Regardless
  of the function app timeout setting, 230 seconds is the maximum amount of time
  that an HTTP triggered function can take to respond", the Azure Load Balancer's
  idle timeout; the HTTP trigger's "Limits" say the caller gets 502) gets 502,
  and the invocation goes on until it ends or reaches functionTimeout ("The
  function will continue running but will be unable to return an HTTP
  response").

Auth levels are not enforced, as with `func start`: keys exist only in Azure.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
from azure.functions.http import HttpResponseConverter

from funchost.config import DEFAULT_REQUEST_BODY_SIZE_LIMIT
from funchost.invoker import InvocationFailed, Invoker
from funchost.routes import RouteTable

log = logging.getLogger("funchost")

STATUS_PATH = "/admin/host/status"
# Seconds a function has to answer, counted once its request has arrived; read at each request.
HTTP_RESPONSE_LIMIT = 230.0
_TEXT = {"content-type": "text/plain; charset=utf-8"}


class WebServer:
    def __init__(self, routes: RouteTable, invoker: Invoker, host: str, port: int,
                 body_limit: int = DEFAULT_REQUEST_BODY_SIZE_LIMIT) -> None:
        self.routes = routes
        self.invoker = invoker
        self.body_limit = body_limit
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the HTTP server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(self._address, _Handler)
        self._server.web = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="funchost-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting requests; invocations under way finish (the invoker counts them)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None


def _encode_result(result: object):
    return HttpResponseConverter.encode(result, expected_type=None)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "funchost"
    # TCP_NODELAY, as Kestrel (the real host's server) sets it: the status line and headers go
    # in one write and the body in another, and with Nagle's algorithm the body would wait for
    # the client's delayed ACK of the headers (40 ms on Linux) on every request but a
    # connection's first few.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        web: WebServer = self.server.web
        target = urlsplit(self.path)
        if self._refuse_body():
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if target.path.rstrip("/") == STATUS_PATH and self.command == "GET":
            self._reply(200, {"content-type": "application/json; charset=utf-8"},
                        json.dumps({"state": "Running"}).encode())
            return
        found = web.routes.match(self.command, target.path)
        if found is None:
            methods = web.routes.methods_at(target.path)
            if methods:
                log.info("%s %s: no function accepts %s here (only %s)", self.command, target.path,
                         self.command, ", ".join(sorted(methods)))
            self._reply(404, {}, b"")
            return
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        request = func.HttpRequest(
            self.command, f"http://{host}{self.path}",
            headers={name: ", ".join(self.headers.get_all(name)) for name in self.headers.keys()},
            params={key: ",".join(values) for key, values in parse_qs(target.query, keep_blank_values=True).items()},
            route_params=found.route_params, body=body)
        invocation = web.invoker.submit(found.spec, request, f"{self.command} {target.path}", convert=_encode_result)
        limit = HTTP_RESPONSE_LIMIT
        if not invocation.wait(limit):
            log.warning("%s %s: Functions.%s has not answered within %gs, where Azure's load balancer answers 502 "
                        "in its place; the invocation goes on", self.command, target.path, found.spec.name, limit)
            self.close_connection = True
            self._reply(502, _TEXT, f"No response from the function within {limit:g} seconds".encode())
            return
        try:
            datum = invocation.result()
        except InvocationFailed:
            self._reply(500, _TEXT, f"Exception while executing function: Functions.{found.spec.name}".encode())
            return
        self._write_datum(datum)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def handle_expect_100(self) -> bool:
        # Refused before the client sends the body it is holding back.
        return not self._refuse_body() and super().handle_expect_100()

    def _refuse_body(self) -> bool:
        """Answer, and close the connection, if the body must not be read: True if so.

        http.server does not decode chunked bodies (411); a Content-Length that
        is not a number is a 400, and one over the limit a 413. The body is left
        unread, so the connection cannot carry another request.
        """
        length = self.headers.get("Content-Length")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            refusal = 411, "Send a Content-Length header"
        elif length is not None and not re.fullmatch(r"[0-9]+", length.strip()):
            refusal = 400, f"Content-Length {length!r} is not a number of bytes"
        elif length is not None and int(length) > self.server.web.body_limit:
            refusal = 413, (f"The request body of {int(length)} bytes is over the limit of "
                            f"{self.server.web.body_limit} (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT)")
        else:
            return False
        log.info("%s %s: %d %s", self.command, self.path, *refusal)
        self.close_connection = True
        self._reply(refusal[0], _TEXT, refusal[1].encode())
        return True

    def _write_datum(self, datum) -> None:
        if datum.type == "string":
            self._reply(200, {"content-type": "text/plain; charset=utf-8"}, datum.value.encode("utf-8"))
            return
        response = datum.value
        headers = {name: header.value for name, header in response["headers"].items()}
        cookies = [morsel.OutputString() for cookie in response["cookies"] or [] for morsel in cookie.values()]
        self._reply(int(response["status_code"].value), headers, response["body"].value or b"", cookies)

    def _reply(self, status: int, headers: dict[str, str], body: bytes, cookies: list[str] = ()) -> None:
        if status in (204, 304):
            body = b""
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        for cookie in cookies:
            self.send_header("Set-Cookie", cookie)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)
