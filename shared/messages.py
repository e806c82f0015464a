"""Every message that crosses the service's boundary, as frozen dataclasses: the agents' signed
queue messages, the service's own queue messages, the HTTP API's requests and answers, the
agent credentials document and the entries of a manifest.

Parsing and validation live here and only here, through shared/jsonfields.py's FieldReader
(shared with the retention policies' parser). `parse_*` and `from_doc` check the schema
version, every field's type and bounds (ids against patterns anchored at both ends) and refuse
fields a message does not have; each error is a MalformedMessage naming the field. `to_doc`
gives the JSON document back, field for field, so that a parsed signed message verifies
against the signature its agent computed (docs/design.md, "Queue messages").
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Iterable, Iterator, Mapping

from shared import crypto, formats, identity
from shared.domain import JobStatus, PointState, Redundancy, UsageEvent, UsageKind, chunk_blob_name
from shared.formats import B64_MD5, HEX_ID, NAME_ID, POINT_ID, MalformedMessage
from shared.identity import MACHINE_ID, PUBLIC_KEY, SIGNATURE, TICKET_SECRET
from shared.jsonfields import MAX_COUNT, MAX_STATS_BYTES, MAX_TEXT, FieldReader
from shared.retention import ZONE_NAME, Schedule

MAX_CHUNK_ENVELOPE = 9 * 1024 * 1024  # an 8 MiB chunk stored raw, with its framing and envelope
MIN_CHUNK_ENVELOPE = crypto.HEADER_BYTES + crypto.TAG_BYTES + 1  # a header, a flag byte and a tag
REPLACEMENT_BLOB = re.compile(r"chunks/[0-9a-f]{2}/[0-9a-f]{64}\.[0-9a-f]{16}\Z")
BLOB_NAME = re.compile(r"(chunks/[0-9a-f]{2}/[0-9a-f]{64}|points/[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}/(manifest|refs))\Z")
LEGACY_CREDENTIALS_KIND = "skyvault-agent-credentials"  # version 1: one signing key per vault


def _json_object(text: str | bytes, what: str, max_bytes: int) -> Any:
    try:
        raw = text.encode() if isinstance(text, str) else bytes(text)
    except UnicodeEncodeError:  # a lone surrogate, as an escaped \ud800 in a redelivery wrapper unwraps to
        raise MalformedMessage(f"{what} is not valid Unicode text") from None
    if len(raw) > max_bytes:
        raise MalformedMessage(f"{what} of {len(raw)} bytes is over {max_bytes}")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: also a 5,000-digit integer
        raise MalformedMessage(f"{what} is not JSON: {str(e)[:200]}") from None


def _drop_none(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None}


# Agents' signed queue messages (also carried by the HTTP commit)

@dataclass(frozen=True)
class ChunkDeclaration:
    """A chunk the agent uploaded: its id, and the size and MD5 of its envelope as stored.

    Without size and MD5 it is an adoption: the agent's create-only Put Blob was refused because
    the blob exists (its own earlier upload, a crashed run's, another machine's), so the service
    takes both from the blob, which, put with Content-MD5, arrived whole. `blob` names a
    replacement (domain.replacement_blob_name) of a rejected or damaged chunk."""

    id: str
    size: int | None = None
    md5: str | None = None
    blob: str | None = None

    @property
    def adopted(self) -> bool:
        return self.size is None

    @classmethod
    def from_doc(cls, doc: Any, where: str = "chunk entry") -> "ChunkDeclaration":
        r = FieldReader(doc, where)
        r.only("id", "size", "md5", "blob")
        cid = r.str("id", HEX_ID)
        size = r.int("size", MIN_CHUNK_ENVELOPE, MAX_CHUNK_ENVELOPE, optional=True)
        md5 = r.str("md5", B64_MD5, optional=True)
        if (size is None) != (md5 is None):
            raise MalformedMessage(f"{where}: fields 'size' and 'md5' go together (neither: an adoption)")
        blob = r.str("blob", REPLACEMENT_BLOB, optional=True)
        if blob is not None and not blob.startswith(chunk_blob_name(cid) + "."):
            raise MalformedMessage(f"{where}: field 'blob' {blob!r} is not a replacement of chunk {cid}")
        return cls(id=cid, size=size, md5=md5, blob=blob)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id}
        if self.size is not None:
            doc.update(size=self.size, md5=self.md5)
        if self.blob is not None:
            doc["blob"] = self.blob
        return doc


@dataclass(frozen=True)
class SignedMessage:
    """Fields every agent message has. `machine` names the registered machine that sent it;
    `sig` is that machine's Ed25519 signature (base64) over the canonical JSON of every other
    field (formats.canonical)."""

    TYPE: ClassVar[str] = ""
    id: str
    tenant_id: str
    vault_id: str
    machine: str
    sig: str

    def body(self) -> dict[str, Any]:
        """The type's own fields, as JSON."""
        raise NotImplementedError

    def unsigned_doc(self) -> dict[str, Any]:
        return {"v": formats.SCHEMA_VERSION, "type": self.TYPE, "id": self.id, "tenantId": self.tenant_id,
                "vaultId": self.vault_id, "machine": self.machine, **self.body()}

    def to_doc(self) -> dict[str, Any]:
        return {**self.unsigned_doc(), "sig": self.sig}

    def to_json(self) -> str:
        return json.dumps(self.to_doc(), separators=(",", ":"))

    def signature_matches(self, public_key: str) -> bool:
        return identity.verify(public_key, formats.canonical(self.unsigned_doc()), self.sig)


def _common(r: FieldReader) -> dict[str, str]:
    r.version("v", formats.SCHEMA_VERSION)
    return {"id": r.str("id", NAME_ID), "tenant_id": r.str("tenantId", NAME_ID),
            "vault_id": r.str("vaultId", NAME_ID), "machine": r.str("machine", MACHINE_ID),
            "sig": r.str("sig", SIGNATURE)}


_COMMON_FIELDS = ("v", "type", "id", "tenantId", "vaultId", "machine", "sig")


@dataclass(frozen=True)
class ChunksMessage(SignedMessage):
    """ingest queue: chunks an agent uploaded, for the service to verify and index."""

    TYPE: ClassVar[str] = "chunks"
    chunks: tuple[ChunkDeclaration, ...] = ()

    def body(self) -> dict[str, Any]:
        return {"chunks": [c.to_doc() for c in self.chunks]}

    @classmethod
    def _parse(cls, r: FieldReader) -> "ChunksMessage":
        r.only(*_COMMON_FIELDS, "chunks")
        entries = r.list("chunks", formats.CHUNKS_PER_MESSAGE, min_len=1)
        return cls(**_common(r), chunks=tuple(ChunkDeclaration.from_doc(e, f"{r.where}: chunks[{i}]")
                                              for i, e in enumerate(entries)))


@dataclass(frozen=True)
class CommitMessage(SignedMessage):
    """commit queue (and the HTTP commit): make recovery point `point_id` committed once every
    chunk of its reference list is verified. `parent_point_id`: the item's last point the
    agent knows, which the commit may be checked against."""

    TYPE: ClassVar[str] = "commit"
    point_id: str = ""
    item: str = ""
    created_at: str = ""
    chunk_count: int = 0
    manifest_chunks: int = 0
    stats: Mapping[str, Any] = field(default_factory=dict)
    parent_point_id: str | None = None
    tags: tuple[str, ...] = ()  # the point's tags (formats.TAG), sorted; absent from the body when none

    def body(self) -> dict[str, Any]:
        return _drop_none({"pointId": self.point_id, "item": self.item, "createdAt": self.created_at,
                           "chunkCount": self.chunk_count, "manifestChunks": self.manifest_chunks,
                           "stats": dict(self.stats), "parentPointId": self.parent_point_id,
                           "tags": list(self.tags) or None})

    @classmethod
    def _parse(cls, r: FieldReader) -> "CommitMessage":
        r.only(*_COMMON_FIELDS, "pointId", "item", "createdAt", "chunkCount", "manifestChunks", "stats",
               "parentPointId", "tags")
        return cls(**_common(r), point_id=r.str("pointId", POINT_ID), item=r.str("item", NAME_ID),
                   created_at=r.str("createdAt", max_len=64), chunk_count=r.int("chunkCount", 0, formats.MAX_POINT_CHUNKS),
                   manifest_chunks=r.int("manifestChunks"), stats=r.obj("stats"),
                   parent_point_id=r.str("parentPointId", POINT_ID, optional=True),
                   tags=read_tags(r, "tags") if r.has("tags") else ())


def read_tags(r: FieldReader, name: str) -> tuple[str, ...]:
    """A list of 1 to MAX_TAGS distinct tags (formats.TAG), in sorted order."""
    tags = r.list(name, formats.MAX_TAGS, min_len=1)
    for tag in tags:
        if not isinstance(tag, str) or not formats.TAG.match(tag):
            raise r.fail(name, f"holds a bad tag: {str(tag)[:80]!r} (letters, digits and ._:=@+-, 1-63 characters)")
    if tags != sorted(set(tags)):
        raise r.fail(name, "must list distinct tags in sorted order")
    return tuple(tags)


@dataclass(frozen=True)
class RestoreMessage(SignedMessage):
    """restore queue: prepare restore job `id` for point `point_id`."""

    TYPE: ClassVar[str] = "restore"
    point_id: str = ""

    def body(self) -> dict[str, Any]:
        return {"pointId": self.point_id}

    @classmethod
    def _parse(cls, r: FieldReader) -> "RestoreMessage":
        r.only(*_COMMON_FIELDS, "pointId")
        return cls(**_common(r), point_id=r.str("pointId", POINT_ID))


AGENT_MESSAGES: dict[str, type[SignedMessage]] = {m.TYPE: m for m in (ChunksMessage, CommitMessage, RestoreMessage)}


def signed_message_from_doc(doc: Any, expected: type[SignedMessage] | None = None,
                            where: str = "message") -> SignedMessage:
    r = FieldReader(doc, where)
    r.version("v", formats.SCHEMA_VERSION)
    kind = r.str("type", max_len=32)
    cls = AGENT_MESSAGES.get(kind)
    if cls is None:
        raise MalformedMessage(f"{where}: unknown message type {kind!r}")
    if expected is not None and cls is not expected:
        raise MalformedMessage(f"{where}: a {kind!r} message where a {expected.TYPE!r} one belongs")
    return cls._parse(r)


def parse_signed_message(text: str | bytes, expected: type[SignedMessage] | None = None) -> SignedMessage:
    """An agent's queue message: size, JSON and schema (not yet the signature, which needs the
    vault's key: SignedMessage.verify)."""
    return signed_message_from_doc(_json_object(text, "message", formats.MAX_MESSAGE_BYTES), expected)


def vault_of(text: str) -> str | None:
    """The vault id an agent's message names, read cheaply and trusting nothing (for sharing the
    workers fairly before the message is parsed and verified); None when it names none."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    vault = doc.get("vaultId") if isinstance(doc, dict) else None
    return vault if isinstance(vault, str) and NAME_ID.match(vault) else None


def sign(message_type: type[SignedMessage], private_key: str, **fields: Any) -> SignedMessage:
    """A message of `message_type` with its machine's signature (the agent's side)."""
    unsigned = message_type(sig="", **fields)
    signed = message_type(**{**fields, "sig": identity.sign(private_key, formats.canonical(unsigned.unsigned_doc()))})
    size = len(signed.to_json().encode())
    if size > formats.MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"message of {size} bytes is over {formats.MAX_MESSAGE_BYTES}")
    return signed


# The service's own queue messages

@dataclass(frozen=True)
class ReplicateMessage:
    """replicate queue: copy `blobs` of a GRS vault to the paired region (the chunks of one ingest
    message, or the two blobs of point `point_id`), or with no blobs check whether point
    `point_id` is geo-protected. `attempt` counts the deliveries that found a region down."""

    tenant_id: str
    vault_id: str
    blobs: tuple[str, ...] = ()
    point_id: str | None = None
    attempt: int = 0

    def to_json(self) -> str:
        return json.dumps({"v": 1, "tenantId": self.tenant_id, "vaultId": self.vault_id, "blobs": list(self.blobs),
                           "pointId": self.point_id, "attempt": self.attempt})

    @classmethod
    def parse(cls, text: str | bytes) -> "ReplicateMessage":
        r = FieldReader(_json_object(text, "replicate message", formats.MAX_MESSAGE_BYTES), "replicate message")
        r.version("v", 1)
        r.only("v", "tenantId", "vaultId", "blobs", "pointId", "attempt")
        blobs = tuple(r.list("blobs", formats.CHUNKS_PER_MESSAGE))
        for blob in blobs:
            if not (isinstance(blob, str) and BLOB_NAME.match(blob)):
                raise MalformedMessage(f"replicate message names a blob outside the vault's layout: {blob!r:.80}")
        message = cls(tenant_id=r.str("tenantId", NAME_ID), vault_id=r.str("vaultId", NAME_ID), blobs=blobs,
                      point_id=r.str("pointId", POINT_ID, optional=True), attempt=r.int("attempt", 0, 10_000))
        if not blobs and message.point_id is None:
            raise MalformedMessage("replicate message names neither blobs nor a recovery point")
        return message


USAGE_EVENT_ID = re.compile(r"[a-z]+-[A-Za-z0-9._:+-]{1,160}\Z")
ISO_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{8,15}(\+00:00|Z)\Z")
USAGE_KINDS = tuple(k.value for k in UsageKind)
USAGE_EVENTS_PER_MESSAGE = 100
USAGE_EVENT_FIELDS = ("id", "kind", "quantity", "at", "pointId", "itemId", "frontEndBytes")


def _usage_event_doc(event: UsageEvent) -> dict[str, Any]:
    return _drop_none({"id": event.id, "kind": event.kind, "quantity": event.quantity, "at": event.at,
                       "pointId": event.point_id, "itemId": event.item_id, "frontEndBytes": event.front_end_bytes})


@dataclass(frozen=True)
class UsageMessage:
    """usage queue: metered facts of one vault for the meter (shared/service/metering.py). The
    service alone writes this queue (an agent's SAS names only its own three queues)."""

    tenant_id: str
    vault_id: str
    events: tuple[UsageEvent, ...]

    def to_json(self) -> str:
        return json.dumps({"v": 1, "tenantId": self.tenant_id, "vaultId": self.vault_id,
                           "events": [_usage_event_doc(e) for e in self.events]})

    @classmethod
    def parse(cls, text: str | bytes) -> "UsageMessage":
        r = FieldReader(_json_object(text, "usage message", formats.MAX_MESSAGE_BYTES), "usage message")
        r.version("v", 1)
        r.only("v", "tenantId", "vaultId", "events")
        vault_id = r.str("vaultId", NAME_ID)
        events = []
        for n, doc in enumerate(r.list("events", USAGE_EVENTS_PER_MESSAGE, min_len=1)):
            e = FieldReader(doc, "usage message", f"events[{n}]")
            e.only(*USAGE_EVENT_FIELDS)
            events.append(UsageEvent(id=e.str("id", USAGE_EVENT_ID), vault_id=vault_id,
                                     kind=e.one_of("kind", USAGE_KINDS),
                                     quantity=e.int("quantity"), at=e.str("at", ISO_INSTANT),
                                     point_id=e.str("pointId", POINT_ID, optional=True),
                                     item_id=e.str("itemId", NAME_ID, optional=True),
                                     front_end_bytes=e.int("frontEndBytes", optional=True)))
        ids = [e.id for e in events]
        if len(set(ids)) != len(ids):
            raise MalformedMessage("usage message: an event id is given twice")
        return cls(tenant_id=r.str("tenantId", NAME_ID), vault_id=vault_id, events=tuple(events))


def usage_messages(tenant_id: str, vault_id: str, events: Iterable[UsageEvent]) -> Iterator[UsageMessage]:
    """`events` as usage messages of at most USAGE_EVENTS_PER_MESSAGE events: each under the size
    limit, as an event's document is at most about 420 bytes (its id, kind, time and names are
    all bounded)."""
    batch: list[UsageEvent] = []
    for event in events:
        batch.append(event)
        if len(batch) == USAGE_EVENTS_PER_MESSAGE:
            yield UsageMessage(tenant_id, vault_id, tuple(batch))
            batch = []
    if batch:
        yield UsageMessage(tenant_id, vault_id, tuple(batch))


@dataclass(frozen=True)
class Redelivery:
    """A message delivered again by the service itself, after `attempt` deliveries failed with a
    retryable error (the last `reason`): `message` is the original text, unchanged."""

    message: str
    attempt: int
    reason: str

    KEY: ClassVar[str] = "skyvaultRedelivery"

    def to_json(self) -> str:
        return json.dumps({self.KEY: {"attempt": self.attempt, "reason": self.reason[:MAX_TEXT]},
                           "message": self.message})

    @classmethod
    def unwrap(cls, text: str) -> "Redelivery":
        """The delivery `text` is: a Redelivery, or a first delivery (attempt 0) of itself."""
        if cls.KEY not in text[:40]:
            return cls(text, 0, "")
        r = FieldReader(_json_object(text, "redelivered message", 2 * formats.MAX_MESSAGE_BYTES), "redelivered message")
        r.only(cls.KEY, "message")
        meta = FieldReader(r.obj(cls.KEY), cls.KEY)
        return cls(message=r.str("message", max_len=formats.MAX_MESSAGE_BYTES), attempt=meta.int("attempt", 0, 10_000),
                   reason=meta.str("reason"))


@dataclass(frozen=True)
class Poisoned:
    """What `<queue>-poison` holds: a message that cannot succeed, the original text unchanged,
    and why."""

    queue: str
    reason: str
    message: str
    attempts: int
    at: str

    def to_json(self) -> str:
        return json.dumps({"poisoned": {"queue": self.queue, "reason": self.reason[:MAX_TEXT],
                                        "attempts": self.attempts, "at": self.at}, "message": self.message})

    @classmethod
    def parse(cls, text: str | bytes) -> "Poisoned":
        r = FieldReader(_json_object(text, "poison message", 2 * formats.MAX_MESSAGE_BYTES), "poison message")
        meta = FieldReader(r.obj("poisoned"), "poisoned")
        return cls(queue=meta.str("queue", NAME_ID), reason=meta.str("reason"), attempts=meta.int("attempts"),
                   at=meta.str("at"), message=r.str("message", max_len=formats.MAX_MESSAGE_BYTES))


# The HTTP API: requests

def parse_request_body(body: bytes) -> dict[str, Any]:
    """A POST body: a JSON object (an empty body is an empty object)."""
    doc = _json_object(body or b"{}", "request body", 4 * formats.MAX_MESSAGE_BYTES)
    if not isinstance(doc, dict):
        raise MalformedMessage("request body is not a JSON object")
    return doc


@dataclass(frozen=True)
class LookupRequest:
    """POST chunks/lookup: which of these chunk ids the vault holds."""

    ids: tuple[str, ...]

    @classmethod
    def from_doc(cls, doc: Any) -> "LookupRequest":
        r = FieldReader(doc, "look-up request")
        r.only("ids")
        ids = r.list("ids", formats.LOOKUP_MAX_IDS)
        for i, cid in enumerate(ids):
            if not (isinstance(cid, str) and HEX_ID.match(cid)):
                raise MalformedMessage(f"look-up request: field 'ids' must hold hex chunk ids; ids[{i}] is "
                                       f"{str(cid)[:80]!r}")
        return cls(tuple(ids))

    def to_doc(self) -> dict[str, Any]:
        return {"ids": list(self.ids)}


@dataclass(frozen=True)
class CommitRequest:
    """POST commits: the agent's signed commit message, with the signed chunks message of its
    last chunks when it has one."""

    commit: CommitMessage
    chunks: ChunksMessage | None = None

    @classmethod
    def from_doc(cls, doc: Any) -> "CommitRequest":
        r = FieldReader(doc, "commit request")
        r.only("commit", "chunks")
        if r.doc.get("commit") is None:
            raise MalformedMessage("commit request: the request holds no 'commit' message")
        chunks = r.obj("chunks", optional=True, max_bytes=formats.MAX_MESSAGE_BYTES)
        return cls(commit=signed_message_from_doc(r.obj("commit", max_bytes=formats.MAX_MESSAGE_BYTES), CommitMessage,
                                                  "commit request: 'commit'"),
                   chunks=None if chunks is None else signed_message_from_doc(chunks, ChunksMessage,
                                                                              "commit request: 'chunks'"))

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({"commit": self.commit.to_doc(), "chunks": self.chunks.to_doc() if self.chunks else None})


@dataclass(frozen=True)
class RestoreRequest:
    """POST restores (and the restore queue's message): a restore job, idempotent on `job_id`.
    `purpose`: "restore", or "inspect" for the agent's read-only looks at a point (ls, diff,
    find, stats, check), which restore nothing and are not metered as restores."""

    job_id: str
    point_id: str
    purpose: str = "restore"

    @classmethod
    def from_doc(cls, doc: Any) -> "RestoreRequest":
        r = FieldReader(doc, "restore request")
        r.only("jobId", "pointId", "purpose")
        return cls(job_id=r.str("jobId", NAME_ID), point_id=r.str("pointId", POINT_ID),
                   purpose=r.one_of("purpose", RESTORE_PURPOSES, optional=True) or "restore")

    def to_doc(self) -> dict[str, Any]:
        doc = {"jobId": self.job_id, "pointId": self.point_id}
        if self.purpose != "restore":  # absent for a restore: what agents before `inspect` sent
            doc["purpose"] = self.purpose
        return doc


RESTORE_PURPOSES = ("restore", "inspect")


@dataclass(frozen=True)
class KeyCheckRequest:
    """POST keycheck: the key check value of the passphrase this agent was given."""

    key_check: str

    @classmethod
    def from_doc(cls, doc: Any) -> "KeyCheckRequest":
        r = FieldReader(doc, "key check request")
        r.only("keyCheck")
        return cls(r.str("keyCheck", HEX_ID))

    def to_doc(self) -> dict[str, Any]:
        return {"keyCheck": self.key_check}


# How often a running backup tells the service it goes on (POST runs/{run}); the service takes a
# run silent for much longer (shared/service/runs.RUN_TIMEOUT) for dead.
RUN_HEARTBEAT = timedelta(minutes=10)


@dataclass(frozen=True)
class RunRequest:
    """POST runs: a backup starts. `run_id` is the recovery point it will commit; `parent_point_id`
    the point whose files' extents the agent's cache will reuse."""

    run_id: str
    item: str
    parent_point_id: str | None = None

    @classmethod
    def from_doc(cls, doc: Any) -> "RunRequest":
        r = FieldReader(doc, "run request")
        r.only("runId", "item", "parentPointId")
        return cls(run_id=r.str("runId", POINT_ID), item=r.str("item", NAME_ID),
                   parent_point_id=r.str("parentPointId", POINT_ID, optional=True))

    def to_doc(self) -> dict[str, Any]:
        return {"runId": self.run_id, "item": self.item, "parentPointId": self.parent_point_id}


# The HTTP API: answers (the agent parses them with the same classes)

@dataclass(frozen=True)
class LookupAnswer:
    verified: tuple[str, ...]
    rejected: tuple[str, ...]

    def to_doc(self) -> dict[str, Any]:
        return {"verified": list(self.verified), "rejected": list(self.rejected)}

    @classmethod
    def from_doc(cls, doc: Any) -> "LookupAnswer":
        r = FieldReader(doc, "look-up answer")
        return cls(tuple(r.list("verified", formats.LOOKUP_MAX_IDS)), tuple(r.list("rejected", formats.LOOKUP_MAX_IDS)))


@dataclass(frozen=True)
class KeyCheckAnswer:
    status: str  # "recorded" (the vault's first agent) or "match"

    RECORDED: ClassVar[str] = "recorded"
    MATCH: ClassVar[str] = "match"

    def to_doc(self) -> dict[str, Any]:
        return {"status": self.status}

    @classmethod
    def from_doc(cls, doc: Any) -> "KeyCheckAnswer":
        return cls(FieldReader(doc, "key check answer").str("status", re.compile(r"(recorded|match)\Z")))


_POINT_FIELDS = (("id", "id"), ("vault_id", "vaultId"), ("item", "item"), ("state", "state"),
                 ("created_at", "createdAt"), ("committed_at", "committedAt"), ("reason", "reason"),
                 ("chunk_count", "chunkCount"), ("stats", "stats"), ("geo_protected_at", "geoProtectedAt"),
                 ("checked_against", "checkedAgainst"), ("deleted_at", "deletedAt"), ("deleted_reason", "deletedReason"),
                 ("purge_after", "purgeAfter"), ("machine", "machine"), ("tags", "tags"))


@dataclass(frozen=True)
class PointView:
    """A recovery point as the API shows it to agents."""

    id: str
    vault_id: str
    item: str
    state: str  # a PointState
    created_at: str
    chunk_count: int
    stats: Mapping[str, Any] = field(default_factory=dict)
    committed_at: str | None = None
    reason: str | None = None
    geo_protected_at: str | None = None
    checked_against: str | None = None
    deleted_at: str | None = None  # soft-deleted: not restorable; an operator may undelete it until purge_after
    deleted_reason: str | None = None
    purge_after: str | None = None
    machine: str | None = None  # the machine that made it
    tags: tuple[str, ...] = ()  # given by `backup --tag`

    @property
    def settled(self) -> bool:
        return self.state != PointState.PENDING

    def to_doc(self) -> dict[str, Any]:
        converted = {"stats": lambda v: dict(v), "tags": list}
        return {key: converted.get(name, lambda v: v)(getattr(self, name)) for name, key in _POINT_FIELDS}

    @classmethod
    def from_doc(cls, doc: Any) -> "PointView":
        r = FieldReader(doc, "recovery point")
        state = r.str("state")
        if state not in set(PointState):
            raise MalformedMessage(f"recovery point: field 'state' is {state!r}")
        return cls(id=r.str("id", POINT_ID), vault_id=r.str("vaultId", NAME_ID), item=r.str("item", NAME_ID),
                   state=PointState(state), created_at=r.str("createdAt"), chunk_count=r.int("chunkCount"),
                   stats=r.obj("stats", max_bytes=2 * MAX_STATS_BYTES), committed_at=r.str("committedAt", optional=True),
                   reason=r.str("reason", optional=True), geo_protected_at=r.str("geoProtectedAt", optional=True),
                   checked_against=r.str("checkedAgainst", POINT_ID, optional=True),
                   deleted_at=r.str("deletedAt", optional=True), deleted_reason=r.str("deletedReason", optional=True),
                   purge_after=r.str("purgeAfter", optional=True), machine=r.str("machine", MACHINE_ID, optional=True),
                   tags=read_tags(r, "tags") if r.has("tags") and r.doc["tags"] else ())


@dataclass(frozen=True)
class RegionAccess:
    """One region a restore may read: a read-only SAS of the vault's container there, and whether
    that region holds all of the point's blobs."""

    region: str
    container_url: str
    complete: bool

    def to_doc(self) -> dict[str, Any]:
        return {"region": self.region, "containerUrl": self.container_url, "complete": self.complete}

    @classmethod
    def from_doc(cls, doc: Any) -> "RegionAccess":
        r = FieldReader(doc, "restore region")
        return cls(r.str("region", re.compile(r"(primary|secondary)\Z")), r.str("containerUrl", max_len=4096),
                   r.bool("complete"))


@dataclass(frozen=True)
class RestorePlan:
    regions: tuple[RegionAccess, ...]
    manifest_blob: str
    expires_at: str

    def to_doc(self) -> dict[str, Any]:
        return {"regions": [r.to_doc() for r in self.regions], "manifestBlob": self.manifest_blob,
                "expiresAt": self.expires_at}

    @classmethod
    def from_doc(cls, doc: Any) -> "RestorePlan":
        r = FieldReader(doc, "restore plan")
        return cls(tuple(RegionAccess.from_doc(d) for d in r.list("regions", 2)), r.str("manifestBlob", BLOB_NAME),
                   r.str("expiresAt"))


@dataclass(frozen=True)
class JobView:
    """A restore job as the API shows it: ready with a plan, or failed with a reason."""

    id: str
    point_id: str
    status: str  # a JobStatus
    created_at: str
    plan: RestorePlan | None = None
    reason: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.id, "pointId": self.point_id, "status": self.status, "createdAt": self.created_at,
                "plan": self.plan.to_doc() if self.plan else None, "reason": self.reason}

    @classmethod
    def from_doc(cls, doc: Any) -> "JobView":
        r = FieldReader(doc, "restore job")
        status = r.str("status")
        if status not in set(JobStatus):
            raise MalformedMessage(f"restore job: field 'status' is {status!r}")
        plan = r.obj("plan", optional=True, max_bytes=64 * 1024)
        return cls(id=r.str("id", NAME_ID), point_id=r.str("pointId", POINT_ID), status=JobStatus(status),
                   created_at=r.str("createdAt"), plan=RestorePlan.from_doc(plan) if plan else None,
                   reason=r.str("reason", optional=True))


@dataclass(frozen=True)
class ReplicationStatus:
    redundancy: str
    lag_seconds: float | None = None
    oldest_unreplicated_chunk: str | None = None
    points_not_geo_protected: int | None = None

    def to_doc(self) -> dict[str, Any]:
        if self.redundancy != Redundancy.GRS:
            return {"redundancy": self.redundancy}
        return {"redundancy": self.redundancy, "lagSeconds": self.lag_seconds,
                "oldestUnreplicatedChunk": self.oldest_unreplicated_chunk,
                "pointsNotGeoProtected": self.points_not_geo_protected}

    @classmethod
    def from_doc(cls, doc: Any) -> "ReplicationStatus":
        r = FieldReader(doc, "replication status")
        lag = r._get("lagSeconds", (int, float), True)
        return cls(r.str("redundancy"), lag, r.str("oldestUnreplicatedChunk", HEX_ID, optional=True),
                   r.int("pointsNotGeoProtected", optional=True))


@dataclass(frozen=True)
class VaultStatus:
    vault_id: str
    name: str
    tenant_id: str
    redundancy: str
    first_backup_at: str | None
    replication: ReplicationStatus
    chunk_epoch: int  # rises when a verified chunk stops being usable: agents forget what they knew
    # The vault's items by name, at most STATUS_MAX_ITEMS; items_left_off counts the others.
    items: tuple["ItemStatus", ...] = ()
    items_left_off: int = 0

    def to_doc(self) -> dict[str, Any]:
        return {"vaultId": self.vault_id, "name": self.name, "tenantId": self.tenant_id,
                "redundancy": self.redundancy, "firstBackupAt": self.first_backup_at,
                "replication": self.replication.to_doc(), "chunkEpoch": self.chunk_epoch,
                "items": [i.to_doc() for i in self.items], "itemsLeftOff": self.items_left_off}

    @classmethod
    def from_doc(cls, doc: Any) -> "VaultStatus":
        r = FieldReader(doc, "vault status")
        return cls(r.str("vaultId", NAME_ID), r.str("name", NAME_ID), r.str("tenantId", NAME_ID),
                   r.str("redundancy"), r.str("firstBackupAt", optional=True),
                   ReplicationStatus.from_doc(r.obj("replication")), r.int("chunkEpoch"),
                   tuple(ItemStatus.from_doc(i) for i in r.list("items", STATUS_MAX_ITEMS)), r.int("itemsLeftOff"))


@dataclass(frozen=True)
class ErrorAnswer:
    """Any refused request: the status says which kind of refusal (functions/api.py)."""

    error: str

    def to_doc(self) -> dict[str, Any]:
        return {"error": self.error}


# Enrolment: the vault credentials file an operator hands out, what a machine posts with it, and
# the machine's own credentials (renewed through the API)

def _kdf(r: FieldReader) -> dict[str, Any]:
    kdf = r.obj("kdf")
    if "keyCheck" in kdf:  # the key check value never leaves the service (docs/design.md, "Keys")
        raise MalformedMessage(f"{r.where}: field 'kdf' holds a key check value")
    return kdf


def _redundancy(r: FieldReader) -> Redundancy:
    redundancy = r.str("redundancy")
    if redundancy not in set(Redundancy):
        raise MalformedMessage(f"{r.where}: field 'redundancy' is {redundancy!r}")
    return Redundancy(redundancy)


def _kind(doc: Any, kind: str, version: int, where: str, older: str) -> FieldReader:
    if not isinstance(doc, dict) or doc.get("kind") not in (kind, LEGACY_CREDENTIALS_KIND):
        raise MalformedMessage(f"{where} is not a Skyvault {older}")
    if doc.get("kind") != kind or doc.get("version") != version:
        raise MalformedMessage(f"{where} is a Skyvault credentials file of an older version (one signing key for "
                               f"every machine): ask the vault's operator for a new one "
                               f"(`skyvault vault ticket`) and register again")
    return FieldReader(doc, where)


@dataclass(frozen=True)
class EnrolmentTicket:
    """The vault credentials file (`vault create`, `vault ticket`): what a machine needs to
    register, valid until `expires_at` (as Azure Backup's vault credentials are). Its secret is
    good for nothing but enrolling machines; the service keeps only its SHA-256."""

    tenant_id: str
    vault_id: str
    vault_name: str
    redundancy: str
    kdf: Mapping[str, Any]
    api_url: str
    ticket_id: str
    ticket_secret: str
    expires_at: str

    KIND: ClassVar[str] = "skyvault-vault-credentials"
    VERSION: ClassVar[int] = 2

    def to_doc(self) -> dict[str, Any]:
        return {"kind": self.KIND, "version": self.VERSION, "tenantId": self.tenant_id, "vaultId": self.vault_id,
                "vaultName": self.vault_name, "redundancy": self.redundancy, "kdf": dict(self.kdf),
                "apiUrl": self.api_url, "ticketId": self.ticket_id, "ticketSecret": self.ticket_secret,
                "expiresAt": self.expires_at}

    @classmethod
    def from_doc(cls, doc: Any, where: str = "vault credentials") -> "EnrolmentTicket":
        r = _kind(doc, cls.KIND, cls.VERSION, where, "vault credentials file")
        r.only("kind", "version", "tenantId", "vaultId", "vaultName", "redundancy", "kdf", "apiUrl", "ticketId",
               "ticketSecret", "expiresAt")
        return cls(tenant_id=r.str("tenantId", NAME_ID), vault_id=r.str("vaultId", NAME_ID),
                   vault_name=r.str("vaultName", NAME_ID), redundancy=_redundancy(r), kdf=_kdf(r),
                   api_url=r.str("apiUrl", max_len=4096), ticket_id=r.str("ticketId", MACHINE_ID),
                   ticket_secret=r.str("ticketSecret", TICKET_SECRET), expires_at=r.str("expiresAt", max_len=64))


@dataclass(frozen=True)
class EnrolRequest:
    """POST machines: a machine registers with a ticket's secret, its new public key (the request
    is signed with the matching private key) and its passphrase's key check value."""

    ticket_id: str
    ticket_secret: str
    name: str
    public_key: str
    key_check: str

    def to_doc(self) -> dict[str, Any]:
        return {"ticketId": self.ticket_id, "ticketSecret": self.ticket_secret, "name": self.name,
                "publicKey": self.public_key, "keyCheck": self.key_check}

    @classmethod
    def from_doc(cls, doc: Any) -> "EnrolRequest":
        r = FieldReader(doc, "enrolment request")
        r.only("ticketId", "ticketSecret", "name", "publicKey", "keyCheck")
        return cls(ticket_id=r.str("ticketId", MACHINE_ID), ticket_secret=r.str("ticketSecret", TICKET_SECRET),
                   name=r.str("name", NAME_ID), public_key=r.str("publicKey", PUBLIC_KEY),
                   key_check=r.str("keyCheck", HEX_ID))


@dataclass(frozen=True)
class Credentials:
    """One machine's credentials: create-only blob SAS for its vault's container, add-only queue
    SAS, the public KDF parameters and the machine's id. No secret: the machine's private key
    stays on it. Short-lived (shared/service/machines.CREDENTIALS_TTL); renewed through the API
    by a machine that is not revoked."""

    tenant_id: str
    vault_id: str
    vault_name: str
    redundancy: str
    kdf: Mapping[str, Any]
    machine_id: str
    api_url: str
    expires_at: str
    blob_container_url: str

    KIND: ClassVar[str] = "skyvault-machine-credentials"
    VERSION: ClassVar[int] = 2

    def to_doc(self) -> dict[str, Any]:
        return {"kind": self.KIND, "version": self.VERSION, "tenantId": self.tenant_id,
                "vaultId": self.vault_id, "vaultName": self.vault_name, "redundancy": self.redundancy,
                "kdf": dict(self.kdf), "machineId": self.machine_id, "apiUrl": self.api_url,
                "expiresAt": self.expires_at, "blobContainerUrl": self.blob_container_url}

    @classmethod
    def from_doc(cls, doc: Any, where: str = "credentials") -> "Credentials":
        # A `queueUrls` field (queue SAS, which agents held before they posted their messages
        # through the API) is left unread: credentials saved then stay usable until renewed.
        r = _kind(doc, cls.KIND, cls.VERSION, where, "machine's credentials")
        return cls(tenant_id=r.str("tenantId", NAME_ID), vault_id=r.str("vaultId", NAME_ID),
                   vault_name=r.str("vaultName", NAME_ID), redundancy=_redundancy(r), kdf=_kdf(r),
                   machine_id=r.str("machineId", MACHINE_ID), api_url=r.str("apiUrl", max_len=4096),
                   expires_at=r.str("expiresAt", max_len=64),
                   blob_container_url=r.str("blobContainerUrl", max_len=4096))


@dataclass(frozen=True)
class EnrolAnswer:
    """POST machines' answer: the machine's credentials, and whether its key check value became
    the vault's (its first machine) or matched it."""

    credentials: Credentials
    key_check: str  # KeyCheckAnswer.RECORDED or MATCH

    def to_doc(self) -> dict[str, Any]:
        return {"credentials": self.credentials.to_doc(), "keyCheck": self.key_check}

    @classmethod
    def from_doc(cls, doc: Any) -> "EnrolAnswer":
        r = FieldReader(doc, "enrolment answer")
        return cls(Credentials.from_doc(r.obj("credentials"), "enrolment answer: credentials"),
                   r.str("keyCheck", re.compile(r"(recorded|match)\Z")))


@dataclass(frozen=True)
class MachineView:
    """A registered machine as `skyvault vault machines` lists it."""

    id: str
    name: str
    fingerprint: str  # of its public key (shared.identity.fingerprint)
    enrolled_at: str
    ticket_id: str
    revoked_at: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "fingerprint": self.fingerprint, "enrolledAt": self.enrolled_at,
                "ticketId": self.ticket_id, "revokedAt": self.revoked_at}


# A recovery point's manifest (decrypted on the agent only; docs/design.md, "Manifest")

ENTRY_TYPES = ("file", "dir", "symlink", "hardlink", "fifo", "chardev", "blockdev")
DEVICE_TYPES = ("chardev", "blockdev")
MAX_MODE = 0o7777
MAX_PATH = 64 * 1024
MAX_OWNER_ID = 2 ** 32 - 1
MAX_OWNER_NAME = 256
MAX_DEVICE_NUMBER = 2 ** 32 - 1
MAX_XATTR_NAME = 255
MAX_XATTRS_BYTES = 1024 * 1024  # Linux caps one attribute's value at 64 KiB; a few dozen of them


@dataclass(frozen=True)
class ManifestEntry:
    """One line of a manifest: a file (with its extents: chunk id, offset in the chunk, length),
    a directory, a symlink (with its target), a hard link (with the earlier path it links to),
    a FIFO or a device (with its major and minor numbers). `path` is relative, "/"-separated;
    a name that was not UTF-8 on disk is kept with surrogate escapes. Owner and extended
    attributes are None and () in lines written before they were recorded, and in hard links
    (the inode's are on its first path)."""

    path: str
    type: str
    mode: int
    mtime: int
    size: int = 0
    extents: tuple[tuple[str, int, int], ...] = ()
    target: str | None = None
    uid: int | None = None
    gid: int | None = None
    user: str | None = None
    group: str | None = None
    major: int | None = None
    minor: int | None = None
    xattrs: tuple[tuple[str, bytes], ...] = ()

    _OWN_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "file": ("size", "extents"), "dir": (), "symlink": ("target",), "fifo": (),
        "chardev": ("major", "minor"), "blockdev": ("major", "minor")}

    @classmethod
    def from_doc(cls, doc: Any) -> "ManifestEntry":
        r = FieldReader(doc, "manifest entry")
        path = r.str("path", max_len=MAX_PATH)
        r.where = f"manifest entry {path[:80]!r}"
        _relative_path(path, r, "path")
        kind = r.str("type")
        if kind not in ENTRY_TYPES:
            raise MalformedMessage(f"{r.where}: field 'type' is {kind!r}, not one of {', '.join(ENTRY_TYPES)}")
        mode, mtime = r.int("mode", 0, MAX_MODE), r.int("mtime", -2 ** 63, 2 ** 63 - 1)  # ns since the epoch
        if kind == "hardlink":
            r.only("path", "type", "mode", "mtime", "target")
            target = r.str("target", max_len=MAX_PATH)
            _relative_path(target, r, "target")
            return cls(path, kind, mode, mtime, target=target)
        r.only("path", "type", "mode", "mtime", "uid", "gid", "user", "group", "xattrs", *cls._OWN_FIELDS[kind])
        metadata = {"uid": r.int("uid", 0, MAX_OWNER_ID, optional=True),
                    "gid": r.int("gid", 0, MAX_OWNER_ID, optional=True),
                    "user": r.str("user", optional=True, max_len=MAX_OWNER_NAME),
                    "group": r.str("group", optional=True, max_len=MAX_OWNER_NAME), "xattrs": _xattrs(r)}
        _os_text(metadata["user"], r, "'user'")
        _os_text(metadata["group"], r, "'group'")
        if kind == "symlink":
            target = r.str("target", max_len=MAX_PATH)
            if "\0" in target:
                raise MalformedMessage(f"{r.where}: field 'target' holds a NUL character")
            _os_text(target, r, "'target'")
            return cls(path, kind, mode, mtime, target=target, **metadata)
        if kind in DEVICE_TYPES:
            return cls(path, kind, mode, mtime, major=r.int("major", 0, MAX_DEVICE_NUMBER),
                       minor=r.int("minor", 0, MAX_DEVICE_NUMBER), **metadata)
        if kind != "file":
            return cls(path, kind, mode, mtime, **metadata)
        extents = r.doc.get("extents", [])
        if not isinstance(extents, list):
            raise MalformedMessage(f"{r.where}: field 'extents' must be a list")
        return cls(path, kind, mode, mtime, size=r.int("size"),
                   extents=tuple(_extent(e, r.where, i) for i, e in enumerate(extents)), **metadata)

    def to_doc(self) -> dict[str, Any]:
        """The line's fields in the order the agent writes them (docs/design.md, "Manifest lines"):
        path, mode, mtime, type, the owner, the extended attributes, then the type's own."""
        doc: dict[str, Any] = {"path": self.path, "mode": self.mode, "mtime": self.mtime, "type": self.type}
        if self.type == "hardlink":
            doc["target"] = self.target
            return doc
        for name in ("uid", "gid", "user", "group"):
            if getattr(self, name) is not None:
                doc[name] = getattr(self, name)
        if self.xattrs:
            doc["xattrs"] = xattrs_doc(self.xattrs)
        if self.type == "symlink":
            doc["target"] = self.target
        elif self.type == "file":
            doc["size"] = self.size
            doc["extents"] = [list(e) for e in self.extents]
        elif self.type in DEVICE_TYPES:
            doc["major"], doc["minor"] = self.major, self.minor
        return doc


def xattrs_doc(xattrs: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """Extended attributes as a manifest line holds them: name → base64 value, sorted by name."""
    return {name: base64.b64encode(value).decode("ascii") for name, value in sorted(xattrs)}


def _xattrs(r: FieldReader) -> tuple[tuple[str, bytes], ...]:
    doc = r.obj("xattrs", optional=True, max_bytes=MAX_XATTRS_BYTES) or {}
    out = []
    for name, value in sorted(doc.items()):
        if not 0 < len(name) <= MAX_XATTR_NAME or "\0" in name or not isinstance(value, str):
            raise MalformedMessage(f"{r.where}: xattrs[{name[:80]!r}] is not a name and a base64 value")
        try:
            out.append((name, base64.b64decode(value, validate=True)))
        except (binascii.Error, ValueError):  # ValueError: a non-ASCII character
            raise MalformedMessage(f"{r.where}: xattrs[{name[:80]!r}] is not base64") from None
        _os_text(name, r, f"xattrs[{name[:80]!r}]")
    return tuple(out)


def _relative_path(path: str, r: FieldReader, name: str) -> None:
    """A path below the restore target: names joined by "/", none of them empty, "." or ".."."""
    if "\0" in path or any(part in ("", ".", "..") for part in path.split("/")):
        raise MalformedMessage(f"{r.where}: field {name!r} is not a relative path of names "
                               f"(an empty, '.' or '..' part, or a NUL): {path[:80]!r}")
    _os_text(path, r, repr(name))


def _os_text(text: str | None, r: FieldReader, name: str) -> None:
    """Text the restore hands to the operating system (a path, a link target, an owner or an
    attribute name): the agent writes a name's undecodable bytes as surrogate escapes (U+DC80 to
    U+DCFF, os.fsdecode); any other lone surrogate encodes to no name at all."""
    if text is not None:
        try:
            text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise MalformedMessage(f"{r.where}: field {name} holds a lone surrogate that is not an "
                                   f"escaped byte: {text[:80]!r}") from None


def _extent(value: Any, where: str, i: int) -> tuple[str, int, int]:
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and HEX_ID.match(value[0])
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_CHUNK_ENVELOPE
                    for n in value[1:])):
        raise MalformedMessage(f"{where}: extents[{i}] is not [chunk id, offset, length]: {str(value)[:80]}")
    return value[0], value[1], value[2]


@dataclass(frozen=True)
class ManifestRoot:
    """The manifest root (`points/{id}/manifest`): which point of which vault it is, and the
    chunks that hold the manifest's lines."""

    vault_id: str
    point_id: str
    item: str
    created_at: str
    sources: tuple[str, ...]
    manifest_chunks: tuple[str, ...]
    stats: Mapping[str, Any] = field(default_factory=dict)

    # 2: the manifest's lines may hold hard links, FIFOs, devices, owners and extended attributes
    # (docs/design.md, "Manifest lines"). A version 1 manifest holds none of them and reads as
    # before; an agent that knows only version 1 refuses a version 2 manifest by its version.
    VERSION: ClassVar[int] = 2
    READS: ClassVar[tuple[int, ...]] = (1, 2)

    @classmethod
    def from_doc(cls, doc: Any) -> "ManifestRoot":
        r = FieldReader(doc, "manifest root")
        r.version("version", *cls.READS)
        chunks = r.list("manifestChunks", MAX_COUNT)
        for i, cid in enumerate(chunks):
            if not (isinstance(cid, str) and HEX_ID.match(cid)):
                raise MalformedMessage(f"manifest root: manifestChunks[{i}] is not a chunk id")
        sources = r.list("sources", 10_000)
        return cls(vault_id=r.str("vaultId", NAME_ID), point_id=r.str("pointId", POINT_ID), item=r.str("item", NAME_ID),
                   created_at=r.str("createdAt"), sources=tuple(str(s) for s in sources),
                   manifest_chunks=tuple(chunks), stats=r.obj("stats", optional=True) or {})

    def to_doc(self) -> dict[str, Any]:
        return {"version": self.VERSION, "vaultId": self.vault_id, "pointId": self.point_id, "item": self.item,
                "createdAt": self.created_at, "sources": list(self.sources),
                "manifestChunks": list(self.manifest_chunks), "stats": dict(self.stats)}


# Check and damage reports (docs/design.md, "Check and damage reports")

CHECK_MAX_IDS = 200  # chunk ids per POST chunks/check: a page's blob look-ups end within seconds
DAMAGE_MAX_REPORTS = 16  # reports per POST chunks/damage: each may read a chunk in full in each region
REGION = re.compile(r"(primary|secondary)\Z")


def _chunk_ids(r: FieldReader, name: str, max_len: int) -> tuple[str, ...]:
    ids = r.list(name, max_len, min_len=1)
    for i, cid in enumerate(ids):
        if not (isinstance(cid, str) and HEX_ID.match(cid)):
            raise MalformedMessage(f"{r.where}: field {name!r} must hold hex chunk ids; {name}[{i}] is "
                                   f"{str(cid)[:80]!r}")
    return tuple(ids)


@dataclass(frozen=True)
class ChunkCheckRequest:
    """POST chunks/check: check these chunks' index records and blobs in every region of the vault."""

    ids: tuple[str, ...]

    @classmethod
    def from_doc(cls, doc: Any) -> "ChunkCheckRequest":
        r = FieldReader(doc, "check request")
        r.only("ids")
        return cls(_chunk_ids(r, "ids", CHECK_MAX_IDS))

    def to_doc(self) -> dict[str, Any]:
        return {"ids": list(self.ids)}


@dataclass(frozen=True)
class ChunkProblem:
    """What is wrong with one chunk: in the index (`region` None) or with its copy in one region.

    Kinds: the index has no record of it (`unknown`), holds it `rejected` or `damaged`; a
    region's blob is `missing`, or its `size` or `md5` property differs from the record (the
    service's check); the agent downloaded the copy and it fails `authentication`."""

    chunk_id: str
    region: str | None
    kind: str
    detail: str

    KINDS: ClassVar[tuple[str, ...]] = ("unknown", "rejected", "damaged", "missing", "size", "md5",
                                        "authentication")

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.chunk_id, "region": self.region, "kind": self.kind, "detail": self.detail}

    @classmethod
    def from_doc(cls, doc: Any) -> "ChunkProblem":
        r = FieldReader(doc, "chunk problem")
        r.only("id", "region", "kind", "detail")
        return cls(r.str("id", HEX_ID), r.str("region", REGION, optional=True), r.one_of("kind", cls.KINDS),
                   r.str("detail"))

    def describe(self) -> str:
        where = f" ({self.region})" if self.region else " (index)"
        return f"chunk {self.chunk_id}{where}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class ChunkCheckAnswer:
    """How many chunks were checked, what is wrong with them, and the regions that did not
    answer (their copies were not checked)."""

    checked: int
    problems: tuple[ChunkProblem, ...] = ()
    unavailable: tuple[str, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        return {"checked": self.checked, "problems": [p.to_doc() for p in self.problems],
                "unavailable": list(self.unavailable)}

    @classmethod
    def from_doc(cls, doc: Any) -> "ChunkCheckAnswer":
        r = FieldReader(doc, "check answer")
        problems = r.list("problems", 2 * CHECK_MAX_IDS)  # one in the index, or one per region
        unavailable = r.list("unavailable", 2)
        for region in unavailable:
            if not (isinstance(region, str) and REGION.match(region)):
                raise MalformedMessage(f"check answer: field 'unavailable' names {str(region)[:80]!r}")
        return cls(r.int("checked", 0, CHECK_MAX_IDS), tuple(ChunkProblem.from_doc(p) for p in problems),
                   tuple(unavailable))


@dataclass(frozen=True)
class DamageReport:
    """One bad copy an agent found: chunk `chunk_id` in `region`. `md5` (base64) is the MD5 of
    the envelope the agent downloaded and found failing authentication; None when it did not
    download it (the service's check found the blob missing or its properties wrong)."""

    chunk_id: str
    region: str
    problem: str
    md5: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({"id": self.chunk_id, "region": self.region, "problem": self.problem, "md5": self.md5})

    @classmethod
    def from_doc(cls, doc: Any, where: str = "damage report") -> "DamageReport":
        r = FieldReader(doc, where)
        r.only("id", "region", "problem", "md5")
        return cls(r.str("id", HEX_ID), r.str("region", REGION), r.str("problem"), r.str("md5", B64_MD5, optional=True))


@dataclass(frozen=True)
class DamageRequest:
    """POST chunks/damage: bad copies of chunks, for the service to heal or mark damaged."""

    reports: tuple[DamageReport, ...]

    @classmethod
    def from_doc(cls, doc: Any) -> "DamageRequest":
        r = FieldReader(doc, "damage request")
        r.only("reports")
        entries = r.list("reports", DAMAGE_MAX_REPORTS, min_len=1)
        return cls(tuple(DamageReport.from_doc(e, f"damage request: reports[{i}]") for i, e in enumerate(entries)))

    def to_doc(self) -> dict[str, Any]:
        return {"reports": [report.to_doc() for report in self.reports]}


@dataclass(frozen=True)
class DamageOutcome:
    """What the service did about one report: `healed` the bad copies from a good one, `damaged`
    (marked so, no good copy left), `good` (every copy matches now: nothing to do), `unknown`
    (no such chunk in the vault: ignored), `ignored` (nothing to do, `detail` says why), or
    `deferred` (a region did not answer: report it again later)."""

    chunk_id: str
    region: str
    outcome: str
    detail: str

    OUTCOMES: ClassVar[tuple[str, ...]] = ("healed", "damaged", "good", "unknown", "ignored", "deferred")

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.chunk_id, "region": self.region, "outcome": self.outcome, "detail": self.detail}

    @classmethod
    def from_doc(cls, doc: Any) -> "DamageOutcome":
        r = FieldReader(doc, "damage outcome")
        r.only("id", "region", "outcome", "detail")
        return cls(r.str("id", HEX_ID), r.str("region", REGION), r.one_of("outcome", cls.OUTCOMES),
                   r.str("detail"))


@dataclass(frozen=True)
class DamageAnswer:
    outcomes: tuple[DamageOutcome, ...]

    def to_doc(self) -> dict[str, Any]:
        return {"outcomes": [o.to_doc() for o in self.outcomes]}

    @classmethod
    def from_doc(cls, doc: Any) -> "DamageAnswer":
        r = FieldReader(doc, "damage answer")
        return cls(tuple(DamageOutcome.from_doc(o) for o in r.list("outcomes", DAMAGE_MAX_REPORTS)))


@dataclass(frozen=True)
class QueuedAnswer:
    """POST messages/{queue}: the id of the agent's message, now on the queue."""

    queued: str

    def to_doc(self) -> dict[str, Any]:
        return {"queued": self.queued}

    @classmethod
    def from_doc(cls, doc: Any) -> "QueuedAnswer":
        r = FieldReader(doc, "queued answer")
        r.only("queued")
        return cls(r.str("queued", NAME_ID))


@dataclass(frozen=True)
class EpochAnswer:
    """GET chunks/epoch: the vault's chunk epoch, which rises when a verified chunk stops being
    usable; an agent whose cache knew another epoch forgets what it knew (docs/design.md,
    "Chunk lifecycle")."""

    chunk_epoch: int

    def to_doc(self) -> dict[str, Any]:
        return {"chunkEpoch": self.chunk_epoch}

    @classmethod
    def from_doc(cls, doc: Any) -> "EpochAnswer":
        r = FieldReader(doc, "chunk epoch answer")
        r.only("chunkEpoch")
        return cls(r.int("chunkEpoch"))


@dataclass(frozen=True)
class RunAnswer:
    """POST runs and POST runs/{run}: the vault's epochs, and whether the parent the run named is
    a live point (committed, not deleted): when it is not, the agent reads every file again
    instead of reusing the parent's extents, whose chunks may be collected (docs/design.md,
    "Garbage collection")."""

    chunk_epoch: int
    gc_epoch: int
    parent_live: bool

    def to_doc(self) -> dict[str, Any]:
        return {"chunkEpoch": self.chunk_epoch, "gcEpoch": self.gc_epoch, "parentLive": self.parent_live}

    @classmethod
    def from_doc(cls, doc: Any) -> "RunAnswer":
        r = FieldReader(doc, "run answer")
        r.only("chunkEpoch", "gcEpoch", "parentLive")
        return cls(r.int("chunkEpoch"), r.int("gcEpoch"), r.bool("parentLive"))


STATUS_MAX_ITEMS = 1000  # items a vault status lists, by name; it counts the rest


@dataclass(frozen=True)
class ItemStatus:
    """One item in the vault status: its policy, its newest committed point's creation time
    (None: none yet), and `missed_run`, the scheduled run it missed (None: not missed;
    shared/retention.py, missed_run)."""

    item: str
    policy: str
    last_point_at: str | None
    missed_run: str | None

    @property
    def missed(self) -> bool:
        return self.missed_run is not None

    def to_doc(self) -> dict[str, Any]:
        return {"item": self.item, "policy": self.policy, "lastPointAt": self.last_point_at,
                "missed": self.missed, "missedRun": self.missed_run}

    @classmethod
    def from_doc(cls, doc: Any) -> "ItemStatus":
        r = FieldReader(doc, "item status")
        r.only("item", "policy", "lastPointAt", "missed", "missedRun")
        item = cls(r.str("item", NAME_ID), r.str("policy", NAME_ID), r.str("lastPointAt", optional=True),
                   r.str("missedRun", optional=True))
        if r.bool("missed") != item.missed:
            raise r.fail("missed", "disagrees with field 'missedRun'")
        return item


@dataclass(frozen=True)
class ItemSchedule:
    """GET items/{item}/schedule: when the item's policy backs it up, its schedule read in
    `time_zone` (shared/retention.py, Schedule), for the agent to turn into a timer or a cron
    entry; `policy` names the policy (`default` for an item without an assignment)."""

    item: str
    policy: str
    schedule: Schedule
    time_zone: str

    def to_doc(self) -> dict[str, Any]:
        return {"item": self.item, "policy": self.policy, "schedule": self.schedule.to_doc(),
                "timeZone": self.time_zone}

    @classmethod
    def from_doc(cls, doc: Any) -> "ItemSchedule":
        r = FieldReader(doc, "item schedule")
        r.only("item", "policy", "schedule", "timeZone")
        return cls(r.str("item", NAME_ID), r.str("policy", NAME_ID), Schedule.from_fields(r.nested("schedule")),
                   r.str("timeZone", ZONE_NAME))
