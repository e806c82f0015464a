"""Vaults: create one with its containers, find it, change its redundancy before its first
backup, hand out agent credentials, check a passphrase's key check value, and the vault-wide
counters other use cases move (the chunk epoch, the first backup).

A vault's `signing_key` authenticates its agents' messages and requests (authorized_vault)."""
from __future__ import annotations

import base64
import secrets
from datetime import timedelta

from shared import crypto, formats
from shared.domain import REDUNDANCIES, Redundancy, Vault, container_name
from shared.errors import Invalid, NotFound, Refused
from shared.messages import Credentials, KeyCheckAnswer, KeyCheckRequest, SignedMessage
from shared.ports import PreconditionFailed
from shared.service.context import AGENT_QUEUES, Services, iso_time, set_once, update_vault

AGENT_CREDENTIALS_TTL = timedelta(days=1)


class UnknownVault(NotFound):
    pass


class KeyMismatch(Refused):
    pass


def _check_redundancy(redundancy: str) -> Redundancy:
    if redundancy not in REDUNDANCIES:
        raise Invalid(f"redundancy must be one of {', '.join(REDUNDANCIES)}, not {redundancy!r}")
    return Redundancy(redundancy)


def create_vault(services: Services, tenant_id: str, name: str, redundancy: str) -> tuple[Vault, Credentials]:
    """Create a vault and its container; returns the vault and the agent credentials."""
    redundancy = _check_redundancy(redundancy)
    for label, value in (("tenant", tenant_id), ("vault name", name)):
        if not formats.NAME_ID.match(value):
            raise Invalid(f"{label} {value!r} must be 1-63 letters, digits, '.', '_' or '-'")
    if any(v.name == name for v in services.index.list_vaults(tenant_id)):
        raise Refused(f"tenant {tenant_id} already has a vault named {name!r}")
    vault = Vault(
        id=secrets.token_hex(6), tenant_id=tenant_id, name=name, redundancy=redundancy,
        kdf={**crypto.KDF_PARAMS, "salt": base64.b64encode(crypto.new_salt()).decode()},
        signing_key=secrets.token_hex(32), created_at=iso_time(services.clock()),
    )
    _create_containers(services, vault)
    vault = services.index.create_vault(vault)
    return vault, agent_credentials(services, vault)


def _create_containers(services: Services, vault: Vault) -> None:
    services.primary.container(container_name(vault.id)).create()
    if vault.redundancy == Redundancy.GRS:
        if services.secondary is None:
            raise Invalid("GRS needs the paired region's storage (app setting SecondaryStorage)")
        services.secondary.container(container_name(vault.id)).create()


def find_vault(services: Services, tenant_id: str, name_or_id: str) -> Vault:
    for vault in services.index.list_vaults(tenant_id):
        if name_or_id in (vault.name, vault.id):
            return vault
    raise UnknownVault(f"tenant {tenant_id} has no vault named {name_or_id!r}")


def vault_for(services: Services, tenant_id: str, vault_id: str) -> Vault:
    vault = services.index.get_vault(tenant_id, vault_id)
    if vault is None:
        raise UnknownVault(f"no vault {vault_id} in tenant {tenant_id}")
    return vault


def authorized_vault(services: Services, message: SignedMessage, vault: Vault | None = None) -> Vault:
    """The vault whose agent signed `message` (BadSignature if none did): `vault` when the
    caller has just read it (a request the vault's key signed), else looked up."""
    if vault is None or (vault.tenant_id, vault.id) != (message.tenant_id, message.vault_id):
        vault = vault_for(services, message.tenant_id, message.vault_id)
    message.verify(bytes.fromhex(vault.signing_key))
    return vault


def change_redundancy(services: Services, vault: Vault, redundancy: str) -> Vault:
    """LRS or GRS, changeable only until the vault's first backup (as in Azure Backup)."""
    redundancy = _check_redundancy(redundancy)
    if vault.first_backup_at is not None:
        raise Refused(f"vault {vault.name} has backups since {vault.first_backup_at}: its redundancy "
                      f"({vault.redundancy}) can no longer change")
    vault.redundancy = redundancy
    _create_containers(services, vault)
    try:
        return services.index.replace_vault(vault)
    except PreconditionFailed:
        raise Refused(f"vault {vault.name} changed meanwhile (a first backup?); try again") from None


def agent_credentials(services: Services, vault: Vault) -> Credentials:
    """Create-only blob SAS for the vault's own container, add-only queue SAS, the public KDF
    parameters and the signing key, valid for AGENT_CREDENTIALS_TTL."""
    expiry = services.clock() + AGENT_CREDENTIALS_TTL
    return Credentials(
        tenant_id=vault.tenant_id, vault_id=vault.id, vault_name=vault.name, redundancy=vault.redundancy,
        kdf=vault.kdf, signing_key=vault.signing_key, api_url=services.api_url, expires_at=iso_time(expiry),
        blob_container_url=services.primary.container_sas_url(container_name(vault.id), "c", expiry),
        queue_urls={q: services.queue_sas_url(q, "a", expiry) for q in AGENT_QUEUES})


def record_key_check(services: Services, vault: Vault, request: KeyCheckRequest) -> KeyCheckAnswer:
    """Keep the first agent's key check value; tell later agents whether their passphrase matches."""
    outcome = {}

    def keep_first(v: Vault) -> bool:
        stored = v.kdf.get("keyCheck")
        outcome["status"] = KeyCheckAnswer.RECORDED if stored is None else KeyCheckAnswer.MATCH
        if stored is not None and stored != request.key_check:
            raise KeyMismatch("the passphrase does not match the one this vault was first used with")
        if stored is None:
            v.kdf = {**v.kdf, "keyCheck": request.key_check}
        return stored is None

    update_vault(services, vault, keep_first)
    return KeyCheckAnswer(outcome["status"])


def raise_chunk_epoch(services: Services, vault: Vault) -> Vault:
    """Call before a verified chunk of `vault` stops being usable (found damaged, or purged):
    from then on no commit is checked against a point committed earlier (commit's
    chunks_to_check), so none passes the chunk unchecked. Returns the vault as now stored."""
    def raise_it(v: Vault) -> bool:
        v.chunk_epoch += 1
        return True

    return update_vault(services, vault, raise_it)


def mark_first_backup(services: Services, vault: Vault, now: str) -> None:
    update_vault(services, vault, set_once("first_backup_at", now))
