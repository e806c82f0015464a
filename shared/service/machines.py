"""Machines: registering a machine with an enrolment ticket, the
authentication of every request and message a machine signs, its short-lived credentials, and
listing and revoking machines (docs/design.md, "Machines").

Words:
- ticket: the vault credentials file (messages.EnrolmentTicket, issued by vaults.issue_ticket).
  Good for registering machines until it expires; the vault keeps the SHA-256 of its secret only.
- machine: a registered agent installation (domain.Machine): its id is derived from its public
  key; the service holds nothing that would let anyone act as it.
- revoked: a machine whose requests, messages and commits are refused from then on; the SAS it
  holds end within CREDENTIALS_TTL (restore jobs' read SAS within restore.RESTORE_SAS_TTL), as
  it can renew neither.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Mapping

from shared import identity
from shared.domain import Machine, Nonce, Vault, container_name
from shared.errors import NotFound, Unauthenticated
from shared.formats import BadSignature
from shared.messages import Credentials, EnrolAnswer, EnrolRequest, KeyCheckRequest, MachineView, SignedMessage
from shared.ports import Conflict
from shared.service.context import Services, iso_time, set_once, update
from shared.service.vaults import public_kdf, record_key_check, vault_for

log = logging.getLogger("skyvault.machines")

CREDENTIALS_TTL = timedelta(hours=1)  # how long a revoked machine's SAS outlive its revocation, at most
# One answer for every request that does not authenticate, whatever the reason: an unknown
# tenant, vault or machine must not be told apart from a bad signature (no existence oracle).
NOT_AUTHENTICATED = "the request is not signed by a registered machine of this vault"


def _signed(services: Services, method: str, path: str, params: Mapping[str, str] | None, body: bytes,
            headers: Mapping[str, str]) -> identity.SignedRequest:
    return identity.SignedRequest.read(method, path, params, body, headers, services.clock())


def _fresh(services: Services, vault: Vault, signed: identity.SignedRequest) -> None:
    """Refuse a request whose nonce this machine used within the window: a replay."""
    expires = signed.when + identity.MAX_CLOCK_SKEW
    nonce = Nonce(id=f"{signed.machine_id}.{signed.nonce}", vault_id=vault.id, expires_at=iso_time(expires),
                  ttl=int(2 * identity.MAX_CLOCK_SKEW.total_seconds()))
    if not services.index.add_nonce(nonce, iso_time(services.clock())):
        raise Unauthenticated("the request was replayed: its nonce was already used")


def authenticate(services: Services, tenant_id: str, vault_id: str, method: str, path: str,
                 params: Mapping[str, str] | None, body: bytes, headers: Mapping[str, str]) -> tuple[Vault, Machine]:
    """The vault and the unrevoked machine a request's signature proves; Unauthenticated,
    always with the same words, for anything else."""
    signed = _signed(services, method, path, params, body, headers)
    vault = services.index.get_vault(tenant_id, vault_id)
    machine = services.index.get_machine(vault.id, signed.machine_id) if vault is not None else None
    if machine is None or machine.revoked_at is not None or not signed.verify_with(machine.public_key):
        raise Unauthenticated(NOT_AUTHENTICATED)
    _fresh(services, vault, signed)
    return vault, machine


def enrol(services: Services, tenant_id: str, vault_id: str, method: str, path: str,
          params: Mapping[str, str] | None, body: bytes, headers: Mapping[str, str],
          request: EnrolRequest) -> EnrolAnswer:
    """Register the machine whose new public key signed this request, with an unexpired ticket
    of the vault, once its key check value is the vault's (the first machine's becomes it;
    KeyMismatch, and no machine, for another passphrase). Idempotent: registering the same key
    again answers fresh credentials, unless it was revoked."""
    signed = _signed(services, method, path, params, body, headers)
    vault = services.index.get_vault(tenant_id, vault_id)
    ticket = vault.tickets.get(request.ticket_id) if vault is not None else None
    if (ticket is None or not identity.ticket_matches(request.ticket_secret, ticket["secretSha256"])
            or ticket["expiresAt"] <= iso_time(services.clock())):
        raise Unauthenticated("these vault credentials are not valid (expired, revoked, or not this vault's): "
                              "ask the vault's operator for new ones")
    if signed.machine_id != identity.machine_id_of(request.public_key) or not signed.verify_with(request.public_key):
        raise Unauthenticated("the enrolment request is not signed with the key it registers")
    _fresh(services, vault, signed)
    key_check = record_key_check(services, vault, KeyCheckRequest(request.key_check), first=True)
    machine = Machine(id=signed.machine_id, vault_id=vault.id, name=request.name, public_key=request.public_key,
                      enrolled_at=iso_time(services.clock()), ticket_id=request.ticket_id)
    try:
        machine = services.index.create_machine(machine)
        log.info("vault %s: machine %s (%s) registered with ticket %s", vault.id, machine.id, machine.name,
                 request.ticket_id)
    except Conflict:
        machine = services.index.get_machine(vault.id, machine.id)
        if machine.revoked_at is not None:
            raise Unauthenticated(f"machine {machine.id} was revoked at {machine.revoked_at}: register with a "
                                  f"new key") from None
    return EnrolAnswer(machine_credentials(services, vault, machine), key_check.status)


def machine_credentials(services: Services, vault: Vault, machine: Machine) -> Credentials:
    """Create-only blob SAS for the vault's container, for CREDENTIALS_TTL (no queue SAS: agents
    post their messages through the API, `POST messages/{queue}`)."""
    expiry = services.clock() + CREDENTIALS_TTL
    return Credentials(
        tenant_id=vault.tenant_id, vault_id=vault.id, vault_name=vault.name, redundancy=vault.redundancy,
        kdf=public_kdf(vault), machine_id=machine.id, api_url=services.api_url, expires_at=iso_time(expiry),
        blob_container_url=services.primary.container_sas_url(container_name(vault.id), "c", expiry))


def authorized_vault(services: Services, message: SignedMessage, vault: Vault | None = None) -> Vault:
    """The vault whose unrevoked machine signed `message` (BadSignature if none did): `vault`
    when the caller has just read it (an authenticated request's), else looked up."""
    if vault is None or (vault.tenant_id, vault.id) != (message.tenant_id, message.vault_id):
        vault = vault_for(services, message.tenant_id, message.vault_id)
    message_machine(services, vault, message)
    return vault


def message_machine(services: Services, vault: Vault, message: SignedMessage,
                    machine: Machine | None = None) -> Machine:
    """The unrevoked machine of `vault` that signed `message`; BadSignature otherwise (the
    message is poisoned: no later delivery can make it good). `machine`: the record when the
    caller has just read it (an authenticated request's), else looked up."""
    if machine is None or machine.id != message.machine:
        machine = services.index.get_machine(vault.id, message.machine)
    if machine is None or machine.revoked_at is not None or not message.signature_matches(machine.public_key):
        why = "is revoked" if machine is not None and machine.revoked_at is not None else "did not sign it"
        raise BadSignature(f"message {message.id}: signature refused: machine {message.machine} of vault "
                           f"{vault.id} {why}")
    return machine


def _view(machine: Machine) -> MachineView:
    return MachineView(id=machine.id, name=machine.name, fingerprint=identity.fingerprint(machine.public_key),
                       enrolled_at=machine.enrolled_at, ticket_id=machine.ticket_id, revoked_at=machine.revoked_at)


def list_machines(services: Services, vault: Vault) -> list[MachineView]:
    return [_view(m) for m in services.index.list_machines(vault.id)]


def revoke_machine(services: Services, vault: Vault, machine_id: str) -> MachineView:
    """From now on the machine's requests, queued messages and pending commits are refused.
    Idempotent: a revoked machine keeps its first revocation time."""
    machine = services.index.get_machine(vault.id, machine_id)
    if machine is None:
        raise NotFound(f"vault {vault.name} has no machine {machine_id}")
    machine = update(machine, set_once("revoked_at", iso_time(services.clock())), services.index.replace_machine,
                     lambda m: services.index.get_machine(m.vault_id, m.id))
    log.warning("vault %s: machine %s (%s) revoked at %s", vault.id, machine.id, machine.name, machine.revoked_at)
    return _view(machine)


def revoked_at(services: Services, vault: Vault, machine_id: str | None) -> str | None:
    """When the machine that made a point was revoked (None: it was not, or the point predates
    machine identities)."""
    if machine_id is None:
        return None
    machine = services.index.get_machine(vault.id, machine_id)
    return machine.revoked_at if machine is not None else "unknown (the machine is not registered)"
