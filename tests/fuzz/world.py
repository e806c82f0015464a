"""What the fuzz tests run against: a service on in-memory fakes with one vault and one
registered machine, a snapshot of everything it stores (to show a refusal changed nothing),
and valid inputs to mutate.

Signatures: the only place these tests make a valid one is here (`World.headers`,
`World.signed_doc`), through the public API of the day (vaultclient.enrol, identity.sign_request,
messages.sign); when the signing scheme changes, this module alone follows it.

Words:
- world: the service, its vault and its machine (`World`).
- state: every index document, blob and queued message of the world (`World.state`); the
  nonce table, which records that a signed request was seen, is kept apart (`nonces`).
"""
from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from functions import api
from shared import crypto, formats, identity, messages
from shared.domain import chunk_blob_name, container_name
from shared.service.context import Services
from skyvault.vaultclient import enrol
from tests.inprocess import InProcessTransport, memory_services, new_vault

NOW = datetime(2026, 12, 2, 10, 15, tzinfo=timezone.utc)
API = "/api/tenants/{tenant}/vaults/{vault}/"
TENANT = "contoso"
CHUNK_ID = "ab" * 32
POINT_ID = "20261202T101500Z-1a2b3c4d"
# What the service reads of a chunk's blob without the key: its header, size and MD5.
CHUNK_BLOB = crypto.HEADER.pack(crypto.MAGIC, crypto.FORMAT_VERSION, crypto.ALG_AES256_GCM, bytes(12)) + bytes(982)
MD5 = base64.b64encode(hashlib.md5(CHUNK_BLOB).digest()).decode()


def fixed_keys() -> crypto.VaultKeys:
    """Vault keys without the passphrase's Argon2id (a quarter of a second each): the service
    sees only their key check value. Every field filled by its type, whatever fields the keys
    have."""
    return crypto.VaultKeys(**{f.name: bytes([n]) * 32 if f.type == "bytes" else n
                               for n, f in enumerate(dataclasses.fields(crypto.VaultKeys), 1)})


@dataclass
class State:
    """Everything the world stores, but the nonces; equal states: nothing changed."""

    index: dict
    blobs: dict
    queues: dict

    def changes(self, later: "State") -> list[str]:
        """What differs in `later`, by table, container or queue and key: an assertion's message."""
        out = []
        for part in ("index", "blobs", "queues"):
            mine, theirs = getattr(self, part), getattr(later, part)
            for name in sorted(set(mine) | set(theirs), key=str):
                a, b = mine.get(name, {}), theirs.get(name, {})
                if isinstance(a, dict) and isinstance(b, dict):
                    out += [f"{part} {name} {key}: {str(a.get(key))[:300]} -> {str(b.get(key))[:300]}"
                            for key in sorted(set(a) | set(b), key=str) if a.get(key) != b.get(key)]
                elif a != b:
                    out.append(f"{part} {name}: {str(a)[:300]} -> {str(b)[:300]}")
        return out


class World:
    """A service on fakes, a vault of it and a machine registered with the vault's ticket."""

    def __init__(self, name: str):
        self.services: Services = memory_services(f"fuzz-{name}-{secrets.token_hex(4)}", clock=lambda: NOW)
        self._queues: dict[str, Any] = {}
        make_queue = self.services.queue

        def queue(queue_name: str):
            self._queues[queue_name] = self._queues.get(queue_name) or make_queue(queue_name)
            return self._queues[queue_name]

        self.services.queue = queue
        self.ticket = new_vault(self.services, TENANT, "fuzz")
        self.tenant, self.vault_id = self.ticket["tenantId"], self.ticket["vaultId"]
        credentials = enrol(self.ticket, fixed_keys(), "fuzz-machine", InProcessTransport(self.services),
                            self.services.clock)[0]
        self.machine, self._private_key = credentials["machineId"], credentials["machineKey"]
        self._new_machine_key = identity.new_private_key()  # of the machine `POST machines` registers
        self.new_machine_public_key = identity.public_key_of(self._new_machine_key)
        # The blobs of POINT_ID, uploaded: its commit can commit.
        container = self.services.primary.container(container_name(self.vault_id))
        container.put(chunk_blob_name(CHUNK_ID), CHUNK_BLOB)
        container.put(formats.refs_blob(POINT_ID), formats.encode_refs([CHUNK_ID]))
        container.put(formats.manifest_blob(POINT_ID), CHUNK_BLOB)

    # Valid inputs

    def path(self, subpath: str) -> str:
        return API.format(tenant=self.tenant, vault=self.vault_id) + subpath

    def headers(self, method: str, path: str, params: dict[str, str] | None, body: bytes) -> dict[str, str]:
        """The headers that make this request the machine's, signed now; for `POST machines`, the
        new machine's, which signs its own enrolment."""
        if (method, path) == ("POST", self.path("machines")):
            public_key = self.new_machine_public_key
            return identity.sign_request(self._new_machine_key, identity.machine_id_of(public_key), method, path,
                                         params, body, NOW)
        return identity.sign_request(self._private_key, self.machine, method, path, params, body, NOW)

    def call(self, method: str, subpath: str, body: bytes = b"", params: dict[str, str] | None = None) -> api.Call:
        """A request of the machine, validly signed whatever its body."""
        path = self.path(subpath)
        return api.Call(method, path, dict(params or {}), self.headers(method, path, params, body), body)

    def answer(self, method: str, subpath: str, body: bytes = b"", params: dict[str, str] | None = None
               ) -> tuple[int, Any]:
        """The service's answer to a request of the machine."""
        return api.answer(self.services, self.call(method, subpath, body, params))

    def resigned_body(self, doc: Any) -> Any:
        """A request body whose signed messages (a commit request's) are signed again."""
        if isinstance(doc, dict):
            return {k: self.resigned(v) if k in ("commit", "chunks") else v for k, v in doc.items()}
        return doc

    def signed_doc(self, message_type: type[messages.SignedMessage], **fields: Any) -> dict[str, Any]:
        """The JSON document of a message of the machine, validly signed."""
        fields = {"id": "m-1", "tenant_id": self.tenant, "vault_id": self.vault_id, "machine": self.machine,
                  **fields}
        return messages.sign(message_type, self._private_key, **fields).to_doc()

    def resigned(self, doc: Any) -> Any:
        """`doc` signed by the machine again, as sent, if it is an object with a `sig`: a mutated
        message that still authenticates, so that what parses it goes on to its handler."""
        if not isinstance(doc, dict) or "sig" not in doc:
            return doc
        unsigned = {k: v for k, v in doc.items() if k != "sig"}
        try:
            payload = formats.canonical(unsigned)
        except (TypeError, ValueError):  # a mutation no agent could sign (a 5,000-digit integer)
            return doc
        return {**unsigned, "sig": identity.sign(self._private_key, payload)}

    def chunks_doc(self) -> dict[str, Any]:
        return self.signed_doc(messages.ChunksMessage, chunks=(messages.ChunkDeclaration(CHUNK_ID, 1000, MD5),))

    def commit_doc(self) -> dict[str, Any]:
        return self.signed_doc(messages.CommitMessage, point_id=POINT_ID, item="laptop", created_at=NOW.isoformat(),
                               chunk_count=1, manifest_chunks=1, stats={"files": 1})

    def restore_doc(self) -> dict[str, Any]:
        return self.signed_doc(messages.RestoreMessage, id="job-1", point_id=POINT_ID)

    # What it stores

    def state(self) -> State:
        # A table read for the first time is there, empty: it holds nothing more than before.
        index = copy.deepcopy({name: table for name, table in self.services.index._docs.items()
                               if name != "nonces" and table})
        blobs = {container: {name: blob.data for name, blob in stored.items()}
                 for container, stored in self.services.primary._containers.items()}
        queues = {name: sorted(m.body for m in (q._messages or {}).values()) for name, q in self._queues.items()}
        return State(index, blobs, {name: bodies for name, bodies in queues.items() if bodies})

    def nonces(self) -> int:
        return len(self.services.index._docs.get("nonces", {}))

    def drain(self, queue: str) -> None:
        """Forget what `queue` holds."""
        q = self._queues.get(queue)
        if q is not None and q._messages:
            q._messages.clear()

    def queued(self, queue: str) -> list[str]:
        q = self._queues.get(queue)
        return sorted(m.body for m in (q._messages or {}).values()) if q is not None else []


def body_of(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def valid_requests(world: World) -> dict[str, tuple[str, str, dict[str, str], Any]]:
    """One valid request of each route, by name: (method, subpath, query parameters, JSON body or
    None), as docs/design.md writes them."""
    return {
        "lookup": ("POST", "chunks/lookup", {}, {"ids": [CHUNK_ID]}),
        "points": ("GET", "points", {"item": "laptop"}, None),
        "commit": ("POST", "commits", {}, {"commit": world.commit_doc(), "chunks": world.chunks_doc()}),
        "job": ("GET", "jobs/job-1", {}, None),
        "keycheck": ("POST", "keycheck", {}, {"keyCheck": fixed_keys().key_check_value()}),
        "credentials": ("POST", "credentials", {}, None),
        "restore": ("POST", "restores", {}, {"jobId": "job-1", "pointId": POINT_ID}),
        "status": ("GET", "status", {}, None),
        "bill": ("GET", "bill", {"month": "2026-12"}, None),
        "schedule": ("GET", "items/laptop/schedule", {}, None),
        "run": ("POST", "runs", {}, {"runId": POINT_ID, "item": "laptop", "parentPointId": None}),
        "heartbeat": ("POST", f"runs/{POINT_ID}", {}, None),
        "epoch": ("GET", "chunks/epoch", {}, None),
        "check": ("POST", "chunks/check", {}, {"ids": [CHUNK_ID]}),
        "damage": ("POST", "chunks/damage", {}, {"reports": [{"id": CHUNK_ID, "region": "primary",
                                                              "problem": "failed authentication", "md5": MD5}]}),
        "enrol": ("POST", "machines", {}, {"ticketId": world.ticket["ticketId"],
                                           "ticketSecret": world.ticket["ticketSecret"], "name": "second",
                                           "publicKey": world.new_machine_public_key,
                                           "keyCheck": fixed_keys().key_check_value()}),
    }
