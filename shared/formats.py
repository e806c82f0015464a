"""Bytes on the wire and in storage: the id patterns, canonical JSON (what signatures cover;
the signatures themselves are shared.identity's), a point's blob names, manifest lines and reference lists.

The typed messages built on these live in shared.messages. A queue message's JSON is at most
MAX_MESSAGE_BYTES, so that with the base64 the queue carries it stays under Azure's 64 KiB.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Iterator

from shared.errors import Forbidden, Invalid

SCHEMA_VERSION = 2  # 2: messages name their machine and carry its Ed25519 signature
MAX_MESSAGE_BYTES = 48 * 1024
LOOKUP_MAX_IDS = 1000  # chunk ids per dedup look-up (POST chunks/lookup)
CHUNKS_PER_MESSAGE = 256  # ~130 bytes each: a full batch stays well under MAX_MESSAGE_BYTES
# The chunks one point may reference: its reference list is at most about 1 GiB, which the
# service streams; 16 TiB of ~1 MiB chunks (docs/design.md, "Known limits").
MAX_POINT_CHUNKS = 1 << 24

# Anchored with \Z, not $: "$" also matches before a final newline, which would let an id
# such as "laptop\n" through into blob names and index keys.
HEX_ID = re.compile(r"[0-9a-f]{64}\Z")
NAME_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
POINT_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}\Z")
# A recovery point's tags (`backup --tag`): words of letters, digits and ._:=@+- (no comma or
# space, so a list of them reads unambiguously), at most MAX_TAGS to a point.
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=@+-]{0,62}\Z")
MAX_TAGS = 16
B64_MD5 = re.compile(r"[A-Za-z0-9+/]{22}==\Z")


class MalformedMessage(Invalid, ValueError):
    """Bytes that do not match their format (a message, a request, a reference list)."""


class BadSignature(Forbidden, ValueError):
    """The signature does not match: not from a registered, unrevoked machine of this vault, or altered."""


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


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
    """A manifest line's JSON; ValueError (its callers' one error) for anything json refuses,
    nesting deeper than the recursion limit included."""
    try:
        return json.loads(line.decode("utf-8", "surrogateescape"))
    except RecursionError:
        raise ValueError("manifest line is nested too deeply") from None


def encode_refs(chunk_ids: Iterable[str]) -> bytes:
    return "".join(f"{cid}\n" for cid in chunk_ids).encode()


REF_LINE = 65  # a reference list's line: 64 hex digits and "\n"


def decode_refs(data: bytes) -> list[str]:
    """The ids of a reference list, which must be one 64-hex-digit id a line, each line ended by
    a newline, sorted and distinct: garbage collection reads lists by fixed-width lines and
    merges them in order, so a commit refuses any other list (docs/design.md)."""
    if len(data) % REF_LINE:
        raise MalformedMessage(f"reference list is {len(data)} bytes, not whole lines of one id and a newline")
    ids: list[str] = []
    previous = ""
    for n in range(0, len(data), REF_LINE):
        cid = data[n:n + 64].decode("ascii", "replace")
        if data[n + 64] != 0x0A or not HEX_ID.match(cid):
            raise MalformedMessage(f"reference list holds a bad chunk id {cid!r} at line {n // REF_LINE + 1}")
        if cid <= previous:
            raise MalformedMessage(f"reference list is not sorted distinct ids at line {n // REF_LINE + 1} ({cid})")
        ids.append(cid)
        previous = cid
    return ids
