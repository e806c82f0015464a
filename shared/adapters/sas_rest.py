"""Blob containers reached through a SAS URL, and the Skyvault API, over HTTP with the standard
library's http.client: what agents hold (a create-only container SAS, a restore job's read-only
SAS; their queue messages go through the API).

Why not the Azure SDKs here: the agent runs as a short command, and importing
azure-storage-blob (with requests) costs it about half a second
of every run, while each SDK call spends milliseconds of CPU in its pipeline. These are a
handful of plain requests (Put Blob, Get Blob, Get Blob Properties, Delete Blob, List
Blobs, Copy Blob) with the errors of the ports, the same as
shared.adapters.azure_storage gives them, and they pass the same contract tests:

- 404 → BlobNotFound; 409 (or 412) on a create-only put → BlobAlreadyExists.
- 403 → PermissionError (the SAS lacks the right, or has expired). With "c" but not
  "w" Azure answers 403, not 409, for a blob that exists.
- 416 → ValueError (a read that starts past the end).
- 408, 429, 5xx, timeouts and connection failures → retried twice with backoff, then
  TransientError, so an unreachable service fails in seconds.

Connections are kept alive, one per thread and host, with TCP_NODELAY (as urllib3, under the
SDKs, sets it): http.client writes a request's headers and its body apart, and with Nagle's
algorithm a small body would wait for the server's delayed ACK of the headers.
"""
from __future__ import annotations

import base64
import http.client
import socket
import threading
from email.utils import parsedate_to_datetime
from typing import Callable, Iterator
from urllib.parse import quote, urlencode, urlsplit

from shared.adapters.blob_copy import copy_source_error, wait_for_copy
from shared.ports import (BlobAlreadyExists, ContainerExists, BlobContainer, BlobNotFound, BlobProperties, ContentMismatch,
                          StorageError,
                          TransientError, pause_before_retry, transient_status)

API_VERSION = "2024-11-04"
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
ATTEMPTS = 3
BACKOFF_S = 0.5
_local = threading.local()


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def error_code(self) -> str | None:
        """Azure's error code: a header on every error, also in the XML body when there is one."""
        return self.header("x-ms-error-code") or _xml_text(self.body, "Code")


def _xml_text(body: bytes, tag: str) -> str | None:
    if not body.startswith(b"<") and not body.startswith(b"\xef\xbb\xbf<"):
        return None
    # XML modules are imported where they are used: an agent's backup usually parses no XML,
    # and they are a tenth of its start-up imports.
    from xml.etree import ElementTree
    try:
        element = ElementTree.fromstring(body).find(tag)
    except ElementTree.ParseError:
        return None
    return element.text if element is not None else None


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def insecure(url: str) -> str | None:
    """Why `url` may not be used (plain http to a host other than the loopback emulators'), or None."""
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return f"{url.split('?', 1)[0]!r} is plain http: only the loopback emulators are reached without TLS"
    return None


class _NoDelay:
    sock: socket.socket

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Connection(_NoDelay, http.client.HTTPConnection):
    pass


class _TlsConnection(_NoDelay, http.client.HTTPSConnection):
    pass


class Endpoint:
    """scheme://host:port and path of a URL (with its SAS query, if any), and requests to it over
    kept-alive connections. Connection failures, and unless `retry_status` is False also 408, 429
    and 5xx answers, are retried ATTEMPTS times in all, then raise TransientError."""

    def __init__(self, url: str, read_timeout: float = READ_TIMEOUT_S):
        self.read_timeout = read_timeout
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not a storage URL: {url.split('?', 1)[0]!r}")
        if why := insecure(url):  # TLS, with the certificate verified (http.client's default context)
            raise ValueError(why)
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = parts.path.rstrip("/")
        self.sas = parts.query

    def _connection(self, fresh: bool) -> http.client.HTTPConnection:
        pool = getattr(_local, "connections", None)
        if pool is None:
            pool = _local.connections = {}
        key = (self.scheme, self.host, self.port)
        connection = pool.get(key)
        if connection is None or fresh:
            if connection is not None:
                connection.close()
            kind = _TlsConnection if self.scheme == "https" else _Connection
            connection = pool[key] = kind(self.host, self.port, timeout=CONNECT_TIMEOUT_S)
        return connection

    def _exchange(self, connection: http.client.HTTPConnection, method: str, target: str,
                  headers: dict[str, str], body: bytes) -> Response:
        connection.request(method, target, body=body or None, headers=headers)
        connection.sock.settimeout(self.read_timeout)
        raw = connection.getresponse()
        return Response(raw.status, raw.headers, raw.read())

    def request(self, what: str, method: str, path: str, query: dict[str, str] | None = None,
                headers: dict[str, str] | Callable[[], dict[str, str]] | None = None, body: bytes = b"",
                retry_status: bool = True) -> Response:
        """`headers` may be a function, called for each attempt: a signed request's nonce is taken
        once, so a retry after a lost answer must be signed anew."""
        target = path + "?" + "&".join(q for q in (urlencode(query or {}), self.sas) if q)

        def sent() -> dict[str, str]:
            return {"x-ms-version": API_VERSION, "Content-Length": str(len(body)),
                    **((headers() if callable(headers) else headers) or {})}

        failure: Exception | None = None
        for attempt in range(ATTEMPTS):
            if attempt:
                pause_before_retry(attempt, BACKOFF_S)
            connection = self._connection(fresh=attempt > 0)
            try:
                try:
                    response = self._exchange(connection, method, target, sent(), body)
                except (ConnectionError, http.client.RemoteDisconnected):
                    if attempt:
                        raise
                    # The server closed a kept-alive connection while it was idle (Azure's load
                    # balancers do after minutes, Azurite after seconds): at once on a new one.
                    response = self._exchange(self._connection(fresh=True), method, target, sent(), body)
            except (OSError, http.client.HTTPException) as e:
                self._connection(fresh=False).close()
                failure = e
                if isinstance(e, ConnectionRefusedError) and attempt:
                    break  # nothing listens there: say so in seconds, not after every backoff
                continue
            if retry_status and transient_status(response.status):
                failure = StorageError(f"HTTP {response.status} {response.error_code or ''}".strip())
                continue
            return response
        raise TransientError(f"{what}: {failure}")


def _error(what: str, response: Response) -> Exception:
    code = response.error_code
    if response.status == 404:
        return BlobNotFound(f"{what}: {code or 'not found'}")
    if response.status == 403:
        return PermissionError(f"{what}: {code or 'forbidden'}")
    if response.status == 416:
        return ValueError(f"{what}: the range starts past the end of the blob")
    if response.status == 400 and (code == "Md5Mismatch" or b"MD5" in response.body):
        # Azure's code; Azurite answers InvalidOperation "Provided contentMD5 doesn't match."
        return ContentMismatch(f"{what}: the body's MD5 differs from the Content-MD5 sent")
    return StorageError(f"{what}: HTTP {response.status} {code}")


def _properties(name: str, response: Response, size: int | None = None) -> BlobProperties:
    md5 = response.header("x-ms-blob-content-md5") or response.header("Content-MD5")
    modified = response.header("Last-Modified")
    return BlobProperties(
        name=name,
        size=int(response.header("Content-Length") or 0) if size is None else size,
        content_md5=base64.b64decode(md5) if md5 else None,
        etag=response.header("ETag") or "",
        last_modified=parsedate_to_datetime(modified) if modified else None,
    )


class SasContainer(BlobContainer):
    """One container through a container SAS URL: the rights are the SAS's."""

    def __init__(self, url: str):
        self._endpoint = Endpoint(url)
        self.name = self._endpoint.path.rsplit("/", 1)[-1]

    def _blob(self, name: str) -> str:
        return f"{self._endpoint.path}/{quote(name, safe='/')}"

    def create(self, *, exist_ok: bool = True) -> None:
        what = f"create container {self.name}"
        response = self._endpoint.request(what, "PUT", self._endpoint.path, {"restype": "container"})
        if response.status == 409 and not exist_ok:
            raise ContainerExists(f"{what}: it exists")
        if response.status not in (201, 409):
            raise _error(what, response)

    def put(self, name: str, data: bytes, *, overwrite: bool = False, md5: bytes | None = None) -> BlobProperties:
        what = f"put {self.name}/{name}"
        headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"}
        if md5 is not None:
            headers["Content-MD5"] = base64.b64encode(md5).decode()
        if not overwrite:
            headers["If-None-Match"] = "*"  # the service itself refuses to replace a blob
        response = self._endpoint.request(what, "PUT", self._blob(name), headers=headers, body=data)
        if response.status == 201:
            return _properties(name, response, size=len(data))
        if response.status in (409, 412) and response.error_code != "ContainerNotFound":
            raise BlobAlreadyExists(what)
        raise _error(what, response)

    def properties(self, name: str) -> BlobProperties:
        what = f"properties of {self.name}/{name}"
        response = self._endpoint.request(what, "HEAD", self._blob(name))
        if response.status != 200:
            raise _error(what, response)
        return _properties(name, response)

    def _get(self, what: str, name: str, offset: int, length: int | None) -> Response:
        end = "" if length is None else str(offset + length - 1)
        headers = {"x-ms-range": f"bytes={offset}-{end}"} if offset or length is not None else {}
        response = self._endpoint.request(what, "GET", self._blob(name), headers=headers)
        if response.status not in (200, 206):
            raise _error(what, response)
        return response

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        what = f"read {self.name}/{name}"
        if length == 0:
            self.properties(name)  # an empty range still reports a missing blob
            return b""
        return self._get(what, name, offset, length).body

    def read_head(self, name: str, length: int) -> tuple[bytes, BlobProperties]:
        response = self._get(f"read the head of {self.name}/{name}", name, 0, length)
        # A ranged read reports the range's length; the blob's size is in Content-Range.
        content_range = response.header("Content-Range")
        size = int(content_range.rsplit("/", 1)[1]) if content_range else len(response.body)
        return response.body, _properties(name, response, size=size)

    def delete(self, name: str) -> None:
        what = f"delete {self.name}/{name}"
        response = self._endpoint.request(what, "DELETE", self._blob(name))
        if response.status not in (202, 404):
            raise _error(what, response)

    def list(self, prefix: str = "") -> Iterator[str]:
        return (name for name, _ in self.list_sizes(prefix))

    def list_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        what = f"list {self.name}/{prefix}"
        marker = ""
        while True:
            query = {"restype": "container", "comp": "list",
                     **({"prefix": prefix} if prefix else {}), **({"marker": marker} if marker else {})}
            response = self._endpoint.request(what, "GET", self._endpoint.path, query)
            if response.status != 200:
                raise _error(what, response)
            from xml.etree import ElementTree
            root = ElementTree.fromstring(response.body)
            for blob in root.iterfind("Blobs/Blob"):
                yield blob.findtext("Name"), int(blob.findtext("Properties/Content-Length") or 0)
            marker = root.findtext("NextMarker") or ""
            if not marker:
                return

    def copy_from(self, name: str, source_url: str) -> BlobProperties:
        """Copy Blob: keeps the source's Content-MD5 and reads it through the source's SAS."""
        what = f"copy into {self.name}/{name}"
        response = self._endpoint.request(what, "PUT", self._blob(name), headers={"x-ms-copy-source": source_url})
        if response.status != 202:
            raise _copy_error(what, response)

        def poll():
            props = self._endpoint.request(what, "HEAD", self._blob(name))
            if props.status != 200:
                raise _error(what, props)
            return (props.header("x-ms-copy-status"), props.header("x-ms-copy-status-description"),
                    _properties(name, props))

        return wait_for_copy(what, poll)


def _copy_error(what: str, response: Response) -> Exception:
    code = response.error_code
    if code == "CannotVerifyCopySource":
        # Azure names the source's status in the body; Azurite answers with it directly.
        try:
            status = int(_xml_text(response.body, "CopySourceStatusCode") or response.status)
        except ValueError:
            status = response.status
        return copy_source_error(what, status)
    if code == "PendingCopyOperation":
        return TransientError(f"{what}: another copy into it is still pending")
    return _error(what, response)

