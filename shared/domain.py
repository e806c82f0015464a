"""Domain records of the service: vaults, chunks, recovery points, jobs, usage events.

Words:
- Vault: one tenant's backup store, with its own blob container in each region.
- Chunk: an encrypted piece of backed-up data, stored once per vault as one blob
  and named by its keyed id (see docs/design.md).
- Recovery point: one backup of one item (a set of paths on one machine). It is
  committed only once every chunk it references is verified.
- Job: a restore the service prepared (a plan and a short-lived read-only SAS).
- Usage event: a metered fact (stored bytes, a protected instance) for billing.
- Item record: which of its vault's named backup policies an item follows.

Plain dataclasses, no I/O. `to_doc`/`from_doc` give the JSON documents the
index stores; `etag` is the index's concurrency token, never stored by us.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class Redundancy(StrEnum):
    LRS = "LRS"  # one region
    GRS = "GRS"  # also copied to the paired region


class ChunkState(StrEnum):
    VERIFIED = "verified"  # its blob matches its declaration: usable by commits
    REJECTED = "rejected"  # its blob contradicts its declaration
    DAMAGED = "damaged"  # no good copy in any region (found by the scrub or an agent's damage report)
    # Garbage collection (docs/design.md, "Garbage collection"): no point references it any more.
    # A look-up, an adoption or a commit that names it again makes it verified again.
    CONDEMNED = "condemned"
    DELETING = "deleting"  # being deleted in every region: nothing may use it or make it live again
    # Rejected and damaged chunks can be stored again: an agent uploads a replacement blob,
    # which ingest verifies and promotes (docs/design.md, "Chunk lifecycle").


class PointState(StrEnum):
    PENDING = "pending"  # waiting for its chunks to be verified
    COMMITTED = "committed"  # every chunk it references was verified: restorable
    FAILED = "failed"  # a chunk or blob of it is bad or never came


class JobStatus(StrEnum):
    READY = "ready"
    FAILED = "failed"
    RUNNING = "running"  # a backup run the agent has started and not ended
    DONE = "done"  # a backup run whose point committed or failed


class JobKind(StrEnum):
    RESTORE = "restore"
    # A backup in progress, from its start (POST runs) to its point's commit; garbage collection
    # deletes no chunk such a run may still reference (docs/design.md, "Garbage collection").
    BACKUP = "backup"


class UsageKind(StrEnum):
    """What a usage event meters (docs/design.md, "Metering"); `quantity` is in bytes unless said."""
    CHUNK_STORED = "chunk_stored"  # ingest recorded a chunk: its envelope's bytes are stored
    CHUNK_PURGED = "chunk_purged"  # a garbage-collected chunk's bytes freed (in every region it was in)
    POINT_COMMITTED = "point_committed"  # its own blobs' bytes; with its item and front-end bytes
    POINT_SOFT_DELETED = "point_soft_deleted"  # the bytes only it keeps stored, when deleted
    POINT_UNDELETED = "point_undeleted"  # quantity 0
    POINT_PURGED = "point_purged"  # a purged point's own blobs (manifest root, reference list) freed
    RESTORE_SERVED = "restore_served"  # a restore job's planned bytes; free
    ITEM_STOPPED = "item_stopped"  # stop protection, retain data; quantity 0
    ITEM_RESUMED = "item_resumed"  # protection resumed; quantity 0
    ITEM_REMOVED = "item_removed"  # stop protection and delete its data; quantity 0


# The kinds that change a vault's stored bytes, with their sign.
STORED_SIGN = {UsageKind.CHUNK_STORED: 1, UsageKind.POINT_COMMITTED: 1,
               UsageKind.CHUNK_PURGED: -1, UsageKind.POINT_PURGED: -1}


class SoftDelete(StrEnum):
    """A vault's soft delete, as Azure Backup's: deleted points stay restorable (undelete) for
    `soft_delete_days` before they are purged, unless it is disabled."""
    DISABLED = "disabled"
    ENABLED = "enabled"
    ALWAYS_ON = "always-on"  # cannot be disabled any more


class Immutability(StrEnum):
    """Enabled or locked: no point is deleted before its retention ends and no change shortens
    retention; locked cannot be disabled any more."""
    DISABLED = "disabled"
    ENABLED = "enabled"
    LOCKED = "locked"


class Protection(StrEnum):
    """An item's protection: stopped, it takes no new backups and its points stay as they are."""
    PROTECTED = "protected"
    STOPPED = "stopped"


REDUNDANCIES = tuple(r.value for r in Redundancy)


def shard_of(chunk_id: str) -> str:
    """The index shard of a chunk: the first two hex digits of its id."""
    return chunk_id[:2]


def container_name(vault_id: str) -> str:
    """The blob container holding a vault's blobs, the same name in every region."""
    return f"vault-{vault_id}"


def chunk_blob_name(chunk_id: str) -> str:
    return f"chunks/{chunk_id[:2]}/{chunk_id}"


def replacement_blob_name(chunk_id: str, nonce: str) -> str:
    """Where an agent uploads a new copy of a rejected or damaged chunk: beside its blob, under a
    name of its own (`nonce`: 16 hex digits), as its create-only SAS cannot overwrite."""
    return f"{chunk_blob_name(chunk_id)}.{nonce}"


class _Doc:
    """to_doc/from_doc for the dataclasses below: snake_case fields ↔ camelCase JSON."""

    _etag_field = "etag"

    def to_doc(self) -> dict[str, Any]:
        doc = {}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name == self._etag_field:
                continue
            doc[_camel(f.name)] = getattr(self, f.name)
        doc.update(self._doc_extra())
        return doc

    def _doc_extra(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]):
        kwargs = {}
        for f in fields(cls):  # type: ignore[arg-type]
            key = _camel(f.name)
            if key in doc:
                kwargs[f.name] = doc[key]
        kwargs["etag"] = doc.get("_etag")
        return cls(**kwargs)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass
class Vault(_Doc):
    id: str
    tenant_id: str
    name: str
    redundancy: str  # a Redundancy
    kdf: dict[str, Any]  # public: algorithm, salt (base64) and parameters
    created_at: str
    first_backup_at: str | None = None
    scrub_cursor: str = ""  # the last chunk id the scrub compared; the next sample starts after it
    # Raised before any verified chunk of the vault stops being usable (the scrub finds it damaged;
    # a purge deletes it): a commit may check a point against a parent only within one epoch.
    chunk_epoch: int = 0
    # The vault's named backup policies: name -> policy document (shared/retention.Policy.to_doc).
    policies: dict[str, Any] = field(default_factory=dict)
    soft_delete: str = SoftDelete.ENABLED  # a SoftDelete
    soft_delete_days: int = 14  # 14-180: how long a deleted point stays restorable
    immutability: str = Immutability.DISABLED  # an Immutability
    # Multi-user authorization: the guard a second operator owns (shared/service/protection.py).
    guard: dict[str, Any] | None = None
    # Garbage collection's progress on this vault (shared/service/gc.py), so a stopped run resumes.
    gc: dict[str, Any] = field(default_factory=dict)
    # Raised before garbage collection deletes chunks: an agent that saw another value forgets the
    # chunks it knew, as a chunk it knew may be gone (its files' extents stay: their point lives).
    gc_epoch: int = 0
    # Enrolment tickets not yet expired: id -> {"secretSha256", "createdAt", "expiresAt"}. Only the
    # digest of a ticket's secret is kept (shared/service/machines.py).
    tickets: dict[str, Any] = field(default_factory=dict)
    etag: str | None = None


@dataclass
class ChunkRecord(_Doc):
    id: str  # the chunk id
    vault_id: str
    size: int
    content_md5: str  # base64, as Azure Storage reports it
    state: str  # a ChunkState
    recorded_at: str
    reason: str | None = None  # why a chunk was rejected or is damaged
    replicated_at: str | None = None  # GRS: when the paired region's copy was made
    generation: int = 0  # how many times a replacement was promoted over its blob
    condemned_at: str | None = None  # garbage collection found no point referencing it
    # When the record was created: recorded_at moves when a replacement is promoted, this never
    # (the record's usage events are named by it). None on records older than metering.
    created_at: str | None = None
    etag: str | None = None

    def _doc_extra(self) -> dict[str, Any]:
        return {"shard": shard_of(self.id)}

    @property
    def lifetime(self) -> str:
        """What names this record's stored bytes in usage events, from its creation to its deletion."""
        return self.created_at or self.recorded_at


@dataclass
class RecoveryPoint(_Doc):
    id: str
    vault_id: str
    item: str
    state: str  # a PointState
    created_at: str
    manifest_blob: str
    refs_blob: str
    chunk_count: int
    stats: dict[str, Any] = field(default_factory=dict)
    committed_at: str | None = None
    reason: str | None = None
    commit_checks: int = 0  # how many times a commit found chunks still unverified
    replicated_blobs: list[str] = field(default_factory=list)  # GRS: the point's own blobs copied
    geo_protected_at: str | None = None  # GRS: when every blob of the point was in the paired region
    # Set at commit: the vault's chunk epoch when its chunks were checked, and the SHA-256 of its
    # reference list; a later point of the same epoch is checked against this one (a delta).
    chunk_epoch: int | None = None
    refs_digest: str | None = None
    checked_against: str | None = None  # the parent point whose chunks were not looked up again
    tags: list[str] = field(default_factory=list)  # the commit message's (backup --tag)
    # What a commit needs without its message (the sweep finishes points whose message was lost):
    # the parent the agent named, and when the service first saw the point (its own clock).
    parent_point_id: str | None = None
    received_at: str | None = None
    checked_at: str | None = None  # when a commit or the sweep last examined the point
    follow_ups_at: str | None = None  # committed: when its follow-ups were all done
    # Soft delete: when the point was deleted (expired by its policy, or by an operator), why,
    # and from when it is purged (its blobs and record deleted; its chunks then free for GC).
    deleted_at: str | None = None
    deleted_reason: str | None = None
    purge_after: str | None = None
    purging_at: str | None = None  # its purge began: no undelete, and GC no longer reads its list
    machine: str | None = None  # the machine whose commit made it (None: older than machine identities)
    etag: str | None = None

    @property
    def live(self) -> bool:
        """Committed and not deleted: restorable without an undelete."""
        return self.state == PointState.COMMITTED and self.deleted_at is None


@dataclass
class Job(_Doc):
    id: str
    vault_id: str
    kind: str  # a JobKind
    point_id: str
    status: str  # a JobStatus
    created_at: str
    plan: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    machine: str | None = None  # the machine that asked for it: only it is answered about the job
    purpose: str | None = None  # restore jobs: "inspect" for ls/diff/find/stats/check (not metered); None a restore
    etag: str | None = None


@dataclass
class UsageEvent(_Doc):
    """A metered fact. The meter keeps one per id (the ledger): ids are deterministic, so an
    event produced or delivered twice counts once."""
    id: str
    vault_id: str
    kind: str  # a UsageKind
    quantity: int
    at: str  # when it happened: its UTC date is the day it is metered on
    point_id: str | None = None
    item_id: str | None = None
    front_end_bytes: int | None = None  # point_committed: the data it protects, before dedup
    etag: str | None = None

    @property
    def day(self) -> str:
        return self.at[:10]


@dataclass
class UsageDay(_Doc):
    """One vault's metered usage on one UTC day (id `YYYY-MM-DD`), kept by the meter
    (shared/service/metering.py). Sums are of the day's events; `items` and `points` keep, per
    item and per point, the day's last state change (LWW by event time, then id) and the
    largest front-end size; `pending` names the events applied here whose ledger entry is not
    yet written (the meter's exactly-once step); `measured` is the reconciliation's reading."""
    id: str
    vault_id: str
    stored_delta: int = 0  # bytes stored minus bytes freed
    restores: int = 0
    restored_bytes: int = 0
    events: int = 0
    items: dict[str, Any] = field(default_factory=dict)
    points: dict[str, Any] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    measured: dict[str, Any] | None = None
    etag: str | None = None


@dataclass
class Machine(_Doc):
    """A registered machine of a vault: only its public key (shared.identity), never a secret."""

    id: str
    vault_id: str
    name: str  # the host name it gave, for people; not unique
    public_key: str  # Ed25519, base64 of the 32 raw bytes
    enrolled_at: str
    ticket_id: str  # the enrolment ticket it registered with
    revoked_at: str | None = None  # from then on none of its requests, messages or commits is accepted
    etag: str | None = None


@dataclass
class Nonce(_Doc):
    """A request nonce seen: kept until the request's date leaves the clock-skew window, so the same
    signed request is accepted once. `ttl` (seconds) lets Cosmos DB delete it then."""

    id: str  # machine id "." nonce
    vault_id: str
    expires_at: str
    ttl: int
    etag: str | None = None


@dataclass
class ItemRecord(_Doc):
    id: str  # the item's name, as agents back it up
    vault_id: str
    policy: str  # the name of one of the vault's policies
    protection: str = Protection.PROTECTED  # a Protection
    protection_changed_at: str | None = None
    etag: str | None = None
