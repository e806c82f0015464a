"""Vaults: create one with its containers, issue its enrolment tickets, find it, change its
redundancy before its first backup, check a passphrase's key check value, and the vault-wide
counters other use cases move (the chunk epoch, the first backup).

Its machines, who alone may act on it, are shared/service/machines.py's."""
from __future__ import annotations

import base64
import hmac
import secrets
from datetime import timedelta

from shared import crypto, formats, identity
from shared.domain import REDUNDANCIES, Redundancy, Vault, container_name
from shared.errors import Invalid, NotFound, Refused
from shared.messages import EnrolmentTicket, KeyCheckAnswer, KeyCheckRequest
from shared.ports import ContainerExists, PreconditionFailed
from shared.service.context import Services, iso_time, set_once, update_vault

TICKET_TTL = timedelta(days=2)
MAX_TICKET_TTL = timedelta(days=10)


class UnknownVault(NotFound):
    pass


class KeyMismatch(Refused):
    pass


def _check_redundancy(redundancy: str) -> Redundancy:
    if redundancy not in REDUNDANCIES:
        raise Invalid(f"redundancy must be one of {', '.join(REDUNDANCIES)}, not {redundancy!r}")
    return Redundancy(redundancy)


def create_vault(services: Services, tenant_id: str, name: str, redundancy: str,
                 ticket_ttl: timedelta = TICKET_TTL) -> tuple[Vault, EnrolmentTicket]:
    """Create a vault, its containers and its first enrolment ticket (machines register with it).
    Its id is 128 random bits, and a container of that name already there is an error, not
    taken as the vault's: two vaults never share one."""
    redundancy = _check_redundancy(redundancy)
    for label, value in (("tenant", tenant_id), ("vault name", name)):
        if not formats.NAME_ID.match(value):
            raise Invalid(f"{label} {value!r} must be 1-63 letters, digits, '.', '_' or '-'")
    if any(v.name == name for v in services.index.list_vaults(tenant_id)):
        raise Refused(f"tenant {tenant_id} already has a vault named {name!r}")
    vault = Vault(
        id=secrets.token_hex(16), tenant_id=tenant_id, name=name, redundancy=redundancy,
        kdf={**crypto.KDF_PARAMS, "salt": base64.b64encode(crypto.new_salt()).decode()},
        created_at=iso_time(services.clock()),
    )
    try:
        _create_containers(services, vault, exist_ok=False)
    except ContainerExists as e:  # 128 random bits: a container of another vault, or of no vault
        raise Refused(f"cannot create vault {name}: {e}; no vault was created") from None
    vault = services.index.create_vault(vault)
    return vault, issue_ticket(services, vault, ticket_ttl)


def public_kdf(vault: Vault) -> dict:
    """The vault's KDF parameters and salt, which agents derive with: everything but the key
    check value, which never leaves the service."""
    return {k: v for k, v in vault.kdf.items() if k != "keyCheck"}


def _create_containers(services: Services, vault: Vault, exist_ok: bool) -> None:
    if vault.redundancy == Redundancy.GRS and services.secondary is None:
        raise Invalid("GRS needs the paired region's storage (app setting SecondaryStorage)")
    services.primary.container(container_name(vault.id)).create(exist_ok=exist_ok)
    if vault.redundancy == Redundancy.GRS:
        services.secondary.container(container_name(vault.id)).create(exist_ok=exist_ok)


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


def change_redundancy(services: Services, vault: Vault, redundancy: str) -> Vault:
    """LRS or GRS, changeable only until the vault's first backup (as in Azure Backup)."""
    redundancy = _check_redundancy(redundancy)
    if vault.first_backup_at is not None:
        raise Refused(f"vault {vault.name} has backups since {vault.first_backup_at}: its redundancy "
                      f"({vault.redundancy}) can no longer change")
    vault.redundancy = redundancy
    _create_containers(services, vault, exist_ok=True)  # the vault's own: made at its creation, or by a retry
    try:
        return services.index.replace_vault(vault)
    except PreconditionFailed:
        raise Refused(f"vault {vault.name} changed meanwhile (a first backup?); try again") from None


def record_key_check(services: Services, vault: Vault, request: KeyCheckRequest,
                     first: bool = False) -> KeyCheckAnswer:
    """Whether a passphrase's key check value is the vault's (KeyMismatch if not). With `first`
    (a machine registering), a vault that has none yet records it: its first machine's
    passphrase becomes the vault's. The value itself is never answered."""
    outcome = {}

    def keep_first(v: Vault) -> bool:
        stored = v.kdf.get("keyCheck")
        if stored is None and not first:
            raise KeyMismatch("this vault has no passphrase yet: its first machine registering sets it")
        outcome["status"] = KeyCheckAnswer.RECORDED if stored is None else KeyCheckAnswer.MATCH
        if stored is not None and not hmac.compare_digest(stored, request.key_check):
            raise KeyMismatch("the passphrase does not match the one this vault was first used with")
        if stored is None:
            v.kdf = {**v.kdf, "keyCheck": request.key_check}
        return stored is None

    update_vault(services, vault, keep_first)
    return KeyCheckAnswer(outcome["status"])


def issue_ticket(services: Services, vault: Vault, valid_for: timedelta = TICKET_TTL) -> EnrolmentTicket:
    """A new enrolment ticket of `vault`, valid for `valid_for` (at most MAX_TICKET_TTL). Expired
    tickets are dropped from the vault as it is written."""
    if not timedelta(minutes=5) <= valid_for <= MAX_TICKET_TTL:
        raise Invalid(f"a ticket is valid for 5 minutes to {MAX_TICKET_TTL.days} days, not {valid_for}")
    now = services.clock()
    ticket_id, secret = secrets.token_hex(16), identity.new_ticket_secret()
    expires_at = iso_time(now + valid_for)

    def add(v: Vault) -> bool:
        v.tickets = {tid: t for tid, t in v.tickets.items() if t["expiresAt"] > iso_time(now)}
        v.tickets[ticket_id] = {"secretSha256": identity.ticket_digest(secret), "createdAt": iso_time(now),
                                "expiresAt": expires_at}
        return True

    vault = update_vault(services, vault, add)
    return EnrolmentTicket(tenant_id=vault.tenant_id, vault_id=vault.id, vault_name=vault.name,
                           redundancy=vault.redundancy, kdf=public_kdf(vault), api_url=services.api_url,
                           ticket_id=ticket_id, ticket_secret=secret, expires_at=expires_at)


def revoke_ticket(services: Services, vault: Vault, ticket_id: str) -> None:
    """No more machines register with this ticket (those that did stay registered)."""
    if ticket_id not in vault.tickets:
        raise NotFound(f"vault {vault.name} has no unexpired ticket {ticket_id}")
    update_vault(services, vault, lambda v: v.tickets.pop(ticket_id, None) is not None)


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
