"""The Index port on Cosmos DB (SQL API): the service's metadata containers and their partition keys.

Owns the database schema (`ensure_schema`), the queries, and turning the
SDK's errors into the ports' errors: 409 → Conflict, 412 → PreconditionFailed,
408/429/5xx and connection failures → TransientError, anything else →
StorageError.

Every call names its partition, with two exceptions. `list_all_vaults` reads
the whole (small) vaults container, the one deliberate cross-partition query.
The vault-wide chunk scans (`oldest_unreplicated_chunk`, `chunks_after`) span
all of a vault's shards: they name the vault in the WHERE clause and run as
cross-partition queries, which the SDK fans out to the physical partitions
and merges (ORDER BY and TOP applied globally). They do not pass the
hierarchical key's prefix ([vault_id]) as partition_key: azure-cosmos 4.17.1
accepts it, but sends one query per physical partition and concatenates the
answers, so ORDER BY and TOP would hold per physical partition only, wrong
once a vault outgrows one; and the emulator ignores the prefix headers and
refuses the query ("missing partition keys").

It uses only what behaves the same on real Cosmos DB and on the local
emulator (@vercel/cosmosdb-server): item create/replace, ETag-checked
replace, and parameterised queries with WHERE (AND, OR), ORDER BY, TOP, ARRAY_CONTAINS,
IS_DEFINED and IS_NULL. Ids are looked up with a query, never with read_item:
the emulator answers a missing id with a 500, and a 500 must stay a
TransientError, not become "not found".
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Iterable, TypeVar
from urllib.parse import urlparse

from azure.core import MatchConditions
from azure.core.exceptions import AzureError
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError, CosmosResourceNotFoundError

from shared.adapters.http_pool import pooled_transport
from shared.adapters.sas_rest import LOOPBACK_HOSTS
from shared.domain import (ChunkRecord, ChunkState, ItemRecord, Job, Machine, Nonce, PointState, RecoveryPoint,
                           UsageDay, UsageEvent, Vault, shard_of)
from shared.ports import (
    Conflict,
    Index,
    PreconditionFailed,
    StorageError,
    TransientError,
)

VAULTS = "vaults"
ITEMS = "items"
POINTS = "recoveryPoints"
CHUNKS = "chunks"
USAGE = "usage"
USAGE_DAYS = "usageDays"
JOBS = "jobs"
MACHINES = "machines"
NONCES = "nonces"

# Chunks are partitioned by vault and then by shard, so that one vault can
# outgrow a single 20 GB logical partition.
PARTITION_KEYS = {
    VAULTS: PartitionKey(path="/tenantId"),
    ITEMS: PartitionKey(path="/vaultId"),
    POINTS: PartitionKey(path="/vaultId"),
    CHUNKS: PartitionKey(path=["/vaultId", "/shard"], kind="MultiHash"),
    USAGE: PartitionKey(path="/vaultId"),
    USAGE_DAYS: PartitionKey(path="/vaultId"),
    JOBS: PartitionKey(path="/vaultId"),
    MACHINES: PartitionKey(path="/vaultId"),
    NONCES: PartitionKey(path="/vaultId"),
}
# Usage events written in one transactional batch: Cosmos DB takes at most 100 operations in one.
USAGE_BATCH = 100
# Containers whose documents carry a `ttl` (seconds): -1 turns Cosmos DB's per-document TTL on
# without a default, so each nonce is deleted when it can no longer be replayed.
DEFAULT_TTL = {NONCES: -1}

# Keeps each ARRAY_CONTAINS parameter, and so each query, well under Cosmos DB's
# limits on query text and parameter size.
CHUNK_QUERY_BATCH = 500

_CLIENT_OPTIONS = dict(retry_total=3, connection_timeout=5)
_TRANSIENT_STATUS = {408, 429, 449}

T = TypeVar("T", Vault, ItemRecord, ChunkRecord, RecoveryPoint, Job, UsageEvent, Machine, Nonce)


@functools.lru_cache(maxsize=None)
def _client(endpoint: str, key: Any) -> CosmosClient:
    # The local emulator runs without TLS on the loopback interface while its account metadata
    # advertises https endpoints: for it alone, no certificate check and no endpoint discovery.
    # Any other endpoint is real Cosmos DB: TLS verified, and its regions discovered.
    return CosmosClient(endpoint, key, **tls_options(endpoint),
                        transport=pooled_transport(_CLIENT_OPTIONS["connection_timeout"]), **_CLIENT_OPTIONS)


def tls_options(endpoint: str) -> dict[str, bool]:
    emulator = urlparse(endpoint).hostname in LOOPBACK_HOSTS
    return {"connection_verify": not emulator, "enable_endpoint_discovery": not emulator}


@contextmanager
def _cosmos_errors(what: str):
    try:
        yield
    except CosmosHttpResponseError as e:
        if e.status_code == 409:
            raise Conflict(what) from e
        if e.status_code == 412:
            raise PreconditionFailed(what) from e
        if e.status_code in _TRANSIENT_STATUS or (e.status_code or 0) >= 500:
            raise TransientError(f"{what}: HTTP {e.status_code}") from e
        raise StorageError(f"{what}: HTTP {e.status_code} {e.message}") from e
    except AzureError as e:
        # Connection refused, timeouts, broken responses.
        raise TransientError(f"{what}: {e}") from e


class CosmosIndex(Index):
    """The index in one Cosmos DB database. No I/O happens until the first call."""

    def __init__(self, endpoint: str, key: Any, database_name: str):
        """`key`: the account key (the local emulator), or a token credential (azure-identity's:
        keyless, through a Cosmos DB SQL role assignment)."""
        self._endpoint = endpoint
        self._key = key
        self.database_name = database_name
        self._containers: dict[str, ContainerProxy] = {}

    def ensure_schema(self) -> None:
        """Create the database and its containers if they are absent; leaves existing ones as they are."""
        with _cosmos_errors(f"create database {self.database_name}"):
            database = _client(self._endpoint, self._key).create_database_if_not_exists(self.database_name)
            for name, partition_key in PARTITION_KEYS.items():
                ttl = {"default_ttl": DEFAULT_TTL[name]} if name in DEFAULT_TTL else {}
                database.create_container_if_not_exists(name, partition_key=partition_key, **ttl)

    def _container(self, name: str) -> ContainerProxy:
        container = self._containers.get(name)
        if container is None:
            with _cosmos_errors(f"connect to {self._endpoint}"):
                database = _client(self._endpoint, self._key).get_database_client(self.database_name)
            container = self._containers[name] = database.get_container_client(name)
        return container

    def _create(self, container: str, record: T) -> T:
        with _cosmos_errors(f"create {container}/{record.id}"):
            return type(record).from_doc(self._container(container).create_item(record.to_doc()))

    def _replace(self, container: str, record: T) -> T:
        if record.etag is None:
            raise ValueError(f"replacing {container}/{record.id} needs the etag it was read with")
        with _cosmos_errors(f"replace {container}/{record.id}"):
            try:
                doc = self._container(container).replace_item(
                    record.id, record.to_doc(),
                    etag=record.etag, match_condition=MatchConditions.IfNotModified,
                )
            except CosmosHttpResponseError as e:
                if e.status_code == 404:
                    raise PreconditionFailed(f"{container}/{record.id} no longer exists") from e
                raise
        return type(record).from_doc(doc)

    def _delete(self, container: str, record_id: str, partition_key: Any, etag: str | None = None) -> None:
        """Delete one document (ETag-checked when `etag` is given); a missing one is not an error."""
        conditions = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        with _cosmos_errors(f"delete {container}/{record_id}"):
            try:
                self._container(container).delete_item(record_id, partition_key=partition_key, **conditions)
            except CosmosResourceNotFoundError:
                pass

    def _query(self, container: str, query: str, partition_key: Any, **parameters: Any) -> list[dict]:
        with _cosmos_errors(f"query {container} in partition {partition_key}"):
            return list(self._container(container).query_items(
                query,
                parameters=[{"name": f"@{name}", "value": value} for name, value in parameters.items()],
                partition_key=partition_key,
            ))

    def _query_vault_chunks(self, query: str, vault_id: str, **parameters: Any) -> list[dict]:
        """A query over all of a vault's shards: `query` must test c.vaultId = @v."""
        with _cosmos_errors(f"query {CHUNKS} across the shards of vault {vault_id}"):
            return list(self._container(CHUNKS).query_items(
                query,
                parameters=[{"name": f"@{name}", "value": value}
                            for name, value in {"v": vault_id, **parameters}.items()],
                enable_cross_partition_query=True,
            ))

    def _find(self, container: str, record_type: type[T], partition_field: str,
              partition_key: str, record_id: str) -> T | None:
        # The partition key is named in the WHERE clause too: the emulator
        # does not scope a query by its partition_key argument alone.
        docs = self._query(
            container, f"SELECT * FROM c WHERE c.{partition_field} = @pk AND c.id = @id",
            partition_key, pk=partition_key, id=record_id,
        )
        return record_type.from_doc(docs[0]) if docs else None

    # vaults

    def create_vault(self, vault: Vault) -> Vault:
        return self._create(VAULTS, vault)

    def get_vault(self, tenant_id: str, vault_id: str) -> Vault | None:
        return self._find(VAULTS, Vault, "tenantId", tenant_id, vault_id)

    def list_vaults(self, tenant_id: str) -> list[Vault]:
        docs = self._query(VAULTS, "SELECT * FROM c WHERE c.tenantId = @t ORDER BY c.createdAt",
                           tenant_id, t=tenant_id)
        return [Vault.from_doc(doc) for doc in docs]

    def list_all_vaults(self) -> list[Vault]:
        """Every tenant's vaults, by creation time (then tenant and id)."""
        with _cosmos_errors(f"query {VAULTS} across tenants"):
            docs = list(self._container(VAULTS).query_items(
                "SELECT * FROM c", enable_cross_partition_query=True))
        return sorted((Vault.from_doc(doc) for doc in docs), key=lambda v: (v.created_at, v.tenant_id, v.id))

    def replace_vault(self, vault: Vault) -> Vault:
        return self._replace(VAULTS, vault)

    # items

    def get_item(self, vault_id: str, item: str) -> ItemRecord | None:
        return self._find(ITEMS, ItemRecord, "vaultId", vault_id, item)

    def put_item(self, record: ItemRecord) -> ItemRecord:
        if record.etag is None:
            return self._create(ITEMS, record)
        return self._replace(ITEMS, record)

    def list_items(self, vault_id: str) -> list[ItemRecord]:
        docs = self._query(ITEMS, "SELECT * FROM c WHERE c.vaultId = @v ORDER BY c.id", vault_id, v=vault_id)
        return [ItemRecord.from_doc(doc) for doc in docs]

    # machines and nonces

    def create_machine(self, machine: Machine) -> Machine:
        return self._create(MACHINES, machine)

    def get_machine(self, vault_id: str, machine_id: str) -> Machine | None:
        return self._find(MACHINES, Machine, "vaultId", vault_id, machine_id)

    def replace_machine(self, machine: Machine) -> Machine:
        return self._replace(MACHINES, machine)

    def list_machines(self, vault_id: str) -> list[Machine]:
        docs = self._query(MACHINES, "SELECT * FROM c WHERE c.vaultId = @v", vault_id, v=vault_id)
        return sorted((Machine.from_doc(doc) for doc in docs), key=lambda m: (m.enrolled_at, m.id))

    def add_nonce(self, nonce: Nonce, now: str) -> bool:
        try:
            self._create(NONCES, nonce)
            return True
        except Conflict:
            seen = self._find(NONCES, Nonce, "vaultId", nonce.vault_id, nonce.id)
        if seen is not None and seen.expires_at > now:
            return False
        try:  # expired, and its TTL has not deleted it yet
            if seen is None:
                self._create(NONCES, nonce)
            else:
                nonce.etag = seen.etag
                self._replace(NONCES, nonce)
        except (Conflict, PreconditionFailed):
            return False  # the same nonce, at the same moment: one of the two is the replay
        return True

    # chunks

    def add_chunk(self, chunk: ChunkRecord) -> bool:
        try:
            self._create(CHUNKS, chunk)
        except Conflict:
            return False
        return True

    def get_chunks(self, vault_id: str, chunk_ids: Iterable[str]) -> dict[str, ChunkRecord]:
        """One query per CHUNK_QUERY_BATCH ids over the vault's shards. The filter on the first
        level of the hierarchical key routes it to the vault's physical partitions only (a
        query per shard would cost up to 256 requests for one batch)."""
        ordered = sorted(set(chunk_ids))
        found: dict[str, ChunkRecord] = {}
        for start in range(0, len(ordered), CHUNK_QUERY_BATCH):
            docs = self._query_vault_chunks(
                "SELECT * FROM c WHERE c.vaultId = @v AND ARRAY_CONTAINS(@ids, c.id)",
                vault_id, ids=ordered[start:start + CHUNK_QUERY_BATCH])
            for doc in docs:
                found[doc["id"]] = ChunkRecord.from_doc(doc)
        return found

    def replace_chunk(self, chunk: ChunkRecord) -> ChunkRecord:
        return self._replace(CHUNKS, chunk)

    def delete_chunk(self, chunk: ChunkRecord) -> None:
        if chunk.etag is None:
            raise ValueError(f"deleting {CHUNKS}/{chunk.id} needs the etag it was read with")
        self._delete(CHUNKS, chunk.id, [chunk.vault_id, shard_of(chunk.id)], chunk.etag)

    def oldest_unreplicated_chunk(self, vault_id: str) -> ChunkRecord | None:
        # Records written before replicatedAt existed lack the field: NOT IS_DEFINED.
        # `c.replicatedAt = null` and IS_NULL alone both skip them.
        docs = self._query_vault_chunks(
            "SELECT TOP 1 * FROM c WHERE c.vaultId = @v AND c.state = @state"
            " AND (NOT IS_DEFINED(c.replicatedAt) OR IS_NULL(c.replicatedAt))"
            " ORDER BY c.recordedAt",
            vault_id, state=ChunkState.VERIFIED.value,
        )
        return ChunkRecord.from_doc(docs[0]) if docs else None

    def chunks_after(self, vault_id: str, after_id: str, limit: int) -> list[ChunkRecord]:
        if limit < 1:
            raise ValueError(f"chunks_after needs a limit of at least 1, not {limit}")
        docs = self._query_vault_chunks(
            "SELECT TOP @limit * FROM c WHERE c.vaultId = @v AND c.id > @after ORDER BY c.id",
            vault_id, after=after_id, limit=limit,
        )
        return [ChunkRecord.from_doc(doc) for doc in docs]

    # recovery points

    def create_point(self, point: RecoveryPoint) -> RecoveryPoint:
        return self._create(POINTS, point)

    def get_point(self, vault_id: str, point_id: str) -> RecoveryPoint | None:
        return self._find(POINTS, RecoveryPoint, "vaultId", vault_id, point_id)

    def replace_point(self, point: RecoveryPoint) -> RecoveryPoint:
        return self._replace(POINTS, point)

    def delete_point(self, vault_id: str, point_id: str) -> None:
        self._delete(POINTS, point_id, vault_id)

    def list_points(self, vault_id: str, item: str | None = None) -> list[RecoveryPoint]:
        if item is None:
            docs = self._query(POINTS, "SELECT * FROM c WHERE c.vaultId = @v ORDER BY c.createdAt DESC",
                               vault_id, v=vault_id)
        else:
            docs = self._query(
                POINTS, "SELECT * FROM c WHERE c.vaultId = @v AND c.item = @item ORDER BY c.createdAt DESC",
                vault_id, v=vault_id, item=item,
            )
        return [RecoveryPoint.from_doc(doc) for doc in docs]

    def stale_points(self, vault_id: str, checked_before: str, limit: int) -> list[RecoveryPoint]:
        if limit < 1:
            raise ValueError(f"stale_points needs a limit of at least 1, not {limit}")
        # A point without checkedAt (written before the field existed) compares as undefined:
        # never stale. followUpsAt may be absent or null.
        docs = self._query(
            POINTS, "SELECT TOP @limit * FROM c WHERE c.vaultId = @v AND c.checkedAt < @before"
            " AND (c.state = @pending OR (c.state = @committed"
            " AND (NOT IS_DEFINED(c.followUpsAt) OR IS_NULL(c.followUpsAt))))"
            " ORDER BY c.checkedAt",
            vault_id, v=vault_id, before=checked_before, limit=limit,
            pending=PointState.PENDING.value, committed=PointState.COMMITTED.value)
        return [RecoveryPoint.from_doc(doc) for doc in docs]

    # jobs

    def create_job(self, job: Job) -> Job:
        return self._create(JOBS, job)

    def get_job(self, vault_id: str, job_id: str) -> Job | None:
        return self._find(JOBS, Job, "vaultId", vault_id, job_id)

    def replace_job(self, job: Job) -> Job:
        return self._replace(JOBS, job)

    def list_jobs(self, vault_id: str, kind: str, status: str) -> list[Job]:
        docs = self._query(JOBS, "SELECT * FROM c WHERE c.vaultId = @v AND c.kind = @kind AND c.status = @status"
                           " ORDER BY c.createdAt", vault_id, v=vault_id, kind=kind, status=status)
        return sorted((Job.from_doc(doc) for doc in docs), key=lambda j: (j.created_at, j.id))

    # usage events

    def add_usage_event(self, event: UsageEvent) -> bool:
        try:
            self._create(USAGE, event)
        except Conflict:
            return False
        return True

    def add_usage_events(self, events: list[UsageEvent]) -> None:
        """Ledger entries in transactional batches of creates (one request for up to USAGE_BATCH,
        each document charged as its own create): a meter's message of 32 chunks' events is one
        request instead of 32. A batch with an entry already there fails whole in Cosmos DB (the
        emulator's goes on past it: it is not atomic); either way its entries are then created
        one by one, a present one skipped, as add_usage_event does."""
        by_vault: dict[str, list[UsageEvent]] = {}
        for event in events:
            by_vault.setdefault(event.vault_id, []).append(event)
        for vault_id, entries in by_vault.items():
            for start in range(0, len(entries), USAGE_BATCH):
                batch = entries[start:start + USAGE_BATCH]
                if len(batch) == 1:
                    self.add_usage_event(batch[0])
                    continue
                with _cosmos_errors(f"create {len(batch)} usage events of vault {vault_id}"):
                    try:
                        self._container(USAGE).execute_item_batch(
                            [("create", (event.to_doc(),)) for event in batch], partition_key=vault_id)
                        continue
                    except CosmosBatchOperationError as e:  # an HttpResponseError: caught before _cosmos_errors
                        if e.status_code != 409:
                            raise
                for event in batch:
                    self.add_usage_event(event)

    def list_usage_events(self, vault_id: str) -> list[UsageEvent]:
        docs = self._query(USAGE, "SELECT * FROM c WHERE c.vaultId = @v ORDER BY c.at", vault_id, v=vault_id)
        return sorted((UsageEvent.from_doc(doc) for doc in docs), key=lambda e: (e.at, e.id))

    def usage_events_present(self, vault_id: str, event_ids: list[str]) -> set[str]:
        docs = self._query(USAGE, "SELECT c.id FROM c WHERE c.vaultId = @v AND ARRAY_CONTAINS(@ids, c.id)",
                           vault_id, v=vault_id, ids=sorted(set(event_ids)))
        return {doc["id"] for doc in docs}

    # daily usage

    def get_usage_day(self, vault_id: str, day: str) -> UsageDay | None:
        return self._find(USAGE_DAYS, UsageDay, "vaultId", vault_id, day)

    def create_usage_day(self, day: UsageDay) -> UsageDay:
        return self._create(USAGE_DAYS, day)

    def replace_usage_day(self, day: UsageDay) -> UsageDay:
        return self._replace(USAGE_DAYS, day)

    def list_usage_days(self, vault_id: str, until: str) -> list[UsageDay]:
        docs = self._query(USAGE_DAYS, "SELECT * FROM c WHERE c.vaultId = @v AND c.id <= @until ORDER BY c.id",
                           vault_id, v=vault_id, until=until)
        return sorted((UsageDay.from_doc(doc) for doc in docs), key=lambda d: d.id)
