"""Wire and storage formats: queue messages, signed HTTP requests, manifests and reference lists.

Queue messages are JSON objects with a schema version `v`, a `type`, an `id`
used for idempotency, the tenant and vault, and `sig`: the agent's HMAC-SHA256
over the canonical JSON of every other field. A message's JSON is at most
MAX_MESSAGE_BYTES, so that with the base64 the queue carries it stays under
Azure's 64 KiB. Parsing is strict: a message that does not match its schema is
rejected with MalformedMessage naming what is wrong.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator

from shared import crypto

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 48 * 1024
LOOKUP_MAX_IDS = 1000  # chunk ids per dedup look-up (POST chunks/lookup)
CHUNKS_PER_MESSAGE = 256  # ~130 bytes each: a full batch stays well under MAX_MESSAGE_BYTES
MAX_CLOCK_SKEW = timedelta(minutes=5)

HEX_ID = re.compile(r"^[0-9a-f]{64}$")
NAME_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
POINT_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
B64_MD5 = re.compile(r"^[A-Za-z0-9+/]{22}==$")


class MalformedMessage(ValueError):
    """A message or request that does not match its schema; retrying cannot help."""


class BadSignature(ValueError):
    """The signature does not match: not from an agent of this vault, or altered."""


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signed_message(body: dict[str, Any], signing_key: bytes) -> str:
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    text = json.dumps({**unsigned, "sig": crypto.sign(signing_key, canonical(unsigned))},
                      separators=(",", ":"))
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"message of {len(text)} bytes is over {MAX_MESSAGE_BYTES}")
    return text


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise MalformedMessage(what)


def _field(body: dict, name: str, kind: type, pattern: re.Pattern | None = None):
    value = body.get(name)
    _require(isinstance(value, kind) and not isinstance(value, bool),
             f"field {name!r} is missing or not of type {kind.__name__}")
    if pattern is not None:
        _require(bool(pattern.match(value)), f"field {name!r} has a bad format: {str(value)[:80]!r}")
    return value


def parse_message(text: str | bytes) -> dict[str, Any]:
    """Check size, JSON and schema (not yet the signature, which needs the vault's key)."""
    raw = text.encode() if isinstance(text, str) else text
    _require(len(raw) <= MAX_MESSAGE_BYTES, f"message of {len(raw)} bytes is over {MAX_MESSAGE_BYTES}")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedMessage(f"message is not JSON: {e}") from None
    _require(isinstance(body, dict), "message is not a JSON object")
    _require(body.get("v") == SCHEMA_VERSION, f"unsupported schema version {body.get('v')!r}")
    kind = _field(body, "type", str)
    _field(body, "id", str, NAME_ID)
    _field(body, "tenantId", str, NAME_ID)
    _field(body, "vaultId", str, NAME_ID)
    _field(body, "sig", str, re.compile(r"^[0-9a-f]{64}$"))
    validator = _VALIDATORS.get(kind)
    _require(validator is not None, f"unknown message type {kind!r}")
    validator(body)
    return body


def _validate_chunks(body: dict) -> None:
    chunks = _field(body, "chunks", list)
    _require(0 < len(chunks) <= CHUNKS_PER_MESSAGE, f"a chunks message holds 1 to {CHUNKS_PER_MESSAGE} chunks")
    for entry in chunks:
        _require(isinstance(entry, dict), "chunk entry is not an object")
        _field(entry, "id", str, HEX_ID)
        size = _field(entry, "size", int)
        _require(crypto.HEADER_BYTES + crypto.TAG_BYTES < size <= 9 * 1024 * 1024, f"chunk size {size} out of range")
        _field(entry, "md5", str, B64_MD5)


def _validate_commit(body: dict) -> None:
    _field(body, "pointId", str, POINT_ID)
    _field(body, "item", str, NAME_ID)
    _field(body, "createdAt", str)
    count = _field(body, "chunkCount", int)
    _require(count >= 0, "chunkCount is negative")
    _field(body, "stats", dict)
    _field(body, "manifestChunks", int)
    if "parentPointId" in body:  # the item's previous point, which the commit may be checked against
        _field(body, "parentPointId", str, POINT_ID)


def _validate_restore(body: dict) -> None:
    _field(body, "pointId", str, POINT_ID)


_VALIDATORS: dict[str, Callable[[dict], None]] = {
    "chunks": _validate_chunks,
    "commit": _validate_commit,
    "restore": _validate_restore,
}


def verify_message(body: dict[str, Any], signing_key: bytes) -> None:
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    if not crypto.verify_signature(signing_key, canonical(unsigned), body["sig"]):
        raise BadSignature(f"message {body['id']}: signature does not match vault {body['vaultId']}")


# Signed HTTP requests: the agent signs method, path, date and the body's hash.

def request_string(method: str, path: str, date: str, body: bytes) -> bytes:
    return "\n".join([method.upper(), path, date, hashlib.sha256(body).hexdigest()]).encode()


def sign_request(signing_key: bytes, method: str, path: str, body: bytes, now: datetime) -> dict[str, str]:
    date = now.astimezone(timezone.utc).isoformat()
    return {"x-skyvault-date": date,
            "x-skyvault-signature": crypto.sign(signing_key, request_string(method, path, date, body))}


def verify_request(signing_key: bytes, method: str, path: str, body: bytes,
                   headers: dict[str, str], now: datetime) -> None:
    date = headers.get("x-skyvault-date", "")
    signature = headers.get("x-skyvault-signature", "")
    try:
        when = datetime.fromisoformat(date)
    except ValueError:
        raise BadSignature("missing or unreadable x-skyvault-date header") from None
    if abs(now - when) > MAX_CLOCK_SKEW:
        raise BadSignature(f"request date {date} is more than {MAX_CLOCK_SKEW} from the service's clock")
    if not crypto.verify_signature(signing_key, request_string(method, path, date, body), signature):
        raise BadSignature("request signature does not match")


# Blob names of a recovery point.

def manifest_blob(point_id: str) -> str:
    return f"points/{point_id}/manifest"


def refs_blob(point_id: str) -> str:
    return f"points/{point_id}/refs"


# Manifest: one JSON object per line (see docs/design.md for the fields).

def manifest_lines(entries: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    for entry in entries:
        yield json.dumps(entry, separators=(",", ":"), ensure_ascii=False,
                         ).encode("utf-8", "surrogateescape") + b"\n"


def parse_manifest_line(line: bytes) -> dict[str, Any]:
    return json.loads(line.decode("utf-8", "surrogateescape"))


def encode_refs(chunk_ids: Iterable[str]) -> bytes:
    return "".join(f"{cid}\n" for cid in chunk_ids).encode()


def decode_refs(data: bytes) -> list[str]:
    ids = data.decode("ascii", "strict").split()
    for cid in ids:
        if not HEX_ID.match(cid):
            raise MalformedMessage(f"reference list holds a bad chunk id {cid[:80]!r}")
    return ids
