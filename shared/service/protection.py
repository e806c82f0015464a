"""Immutable vaults, soft-delete settings and multi-user authorization (MUA): the rules that keep
one operator, or a stolen operator login, from destroying a vault's backups alone
(docs/design.md, "Immutable vaults and multi-user authorization").

Words:
- immutability: `disabled`, `enabled` or `locked` (irreversible). Enabled or locked, no point
  is deleted before its retention ends, no change shortens retention (a policy's, an item's or
  the soft-delete days) and no item's protection is stopped with its data deleted.
- shortening: a policy change that can expire a point sooner: a rule removed, a rule's count
  lowered, a rule keeping other days (weekday, day of the month, month), another time zone (its
  days pick other points of a day); assigning an item a policy that is shorter in that sense
  than its current one; fewer soft-delete days.
- guard: a second operator identity that owns an Ed25519 key pair (its private key never
  reaches the service). With a guard on, the guarded operations (Operation) each need an
  approval of their own.
- request: what an operator asks the guard's owner to approve: an operation and its subject,
  kept on the vault (`guard.requests`) for REQUEST_KEPT.
- subject: what a request's operation applies to: `policy:NAME`, `item:NAME` or
  `soft-delete-days` for shorten-retention, the item for stop-protection-delete, the vault's
  name for the others. An approval is for one operation of one subject.
- approval: a token the owner makes on their own machine (`approve`): a signature over the
  canonical bytes naming the vault, the request, its operation, its subject and an expiry at
  most MAX_APPROVAL_TTL after the request. It is used once: the request is marked used in
  the same ETag-checked write as the change it approves (`permit`), or just before the
  change (`authorize`).

Every refusal of a guard is a Forbidden naming the operation, the subject and what is missing;
a setting that can no longer change (locked, always-on) is Refused; a bad value is Invalid.
"""
from __future__ import annotations

import base64
import binascii
import calendar
import json
import re
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared import formats
from shared.domain import Immutability, SoftDelete, Vault
from shared.errors import Forbidden, Invalid, NotFound, Refused
from shared.retention import Policy
from shared.service.context import Services, iso_time, update_vault

SOFT_DELETE_DAYS = (14, 180)
APPROVAL_TTL = timedelta(hours=12)
MAX_APPROVAL_TTL = timedelta(hours=24)  # after the request, not after the signature
MAX_APPROVAL_HOURS = MAX_APPROVAL_TTL // timedelta(hours=1)
REQUEST_KEPT = timedelta(days=7)  # long after its approvals can have expired: an audit trail
MAX_REQUESTS = 100  # on the vault document at once
SOFT_DELETE_DAYS_SUBJECT = "soft-delete-days"
TOKEN_PREFIX = "sva1"
SIGNED_PREFIX = b"skyvault guard approval v1\n"
MAX_TOKEN_CHARS = 4096
GUARD_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._+ -]{0,99}\Z")
REQUEST_ID = re.compile(r"[0-9a-f]{16}\Z")
URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]*\Z")
PAYLOAD_FIELDS = ("v", "vault", "request", "operation", "subject", "expiresAt")


class Operation(StrEnum):
    DISABLE_SOFT_DELETE = "disable-soft-delete"
    DISABLE_GUARD = "disable-guard"
    SHORTEN_RETENTION = "shorten-retention"
    STOP_PROTECTION_DELETE = "stop-protection-delete"
    DELETE_VAULT = "delete-vault"


OPERATIONS = tuple(o.value for o in Operation)
# Operations whose subject is the vault itself (its name).
VAULT_OPERATIONS = (Operation.DISABLE_SOFT_DELETE, Operation.DISABLE_GUARD, Operation.DELETE_VAULT)


def policy_subject(name: str) -> str:
    return f"policy:{name}"


def item_subject(item: str) -> str:
    return f"item:{item}"


# Immutability.

def refuse_if_immutable(vault: Vault, what: str) -> None:
    if vault.immutability != Immutability.DISABLED:
        raise Forbidden(f"vault {vault.name} is immutable ({vault.immutability}): {what} is refused")


def set_immutability(services: Services, vault: Vault, state: str) -> Vault:
    """Disabled, enabled or locked; locked is irreversible (Refused). Idempotent."""
    state = _choice("immutability", state, Immutability)

    def change(v: Vault) -> bool:
        if v.immutability == state:
            return False
        if v.immutability == Immutability.LOCKED:
            raise Refused(f"vault {v.name}'s immutability is locked, which is irreversible: it cannot become {state}")
        v.immutability = state
        return True

    return _update(services, vault, change)


# Shortening retention.

def shortenings(old: Policy | None, new: Policy) -> list[str]:
    """What in `new` can expire a point sooner than `old` does (empty: nothing; `old` None:
    there was no policy). Pure."""
    if old is None:
        return []
    found = []
    if new.time_zone != old.time_zone:
        found.append(f"time zone {new.time_zone} instead of {old.time_zone} (its days pick other points)")
    for kind, unit, count, selector in _RULE_PARTS:
        before, after = getattr(old.retention, kind), getattr(new.retention, kind)
        if before is None:
            continue
        if after is None:
            found.append(f"{kind} rule removed (it kept {count(before)} {unit})")
            continue
        if selector(after) != selector(before):
            found.append(f"{kind} rule keeps {selector(after)} instead of {selector(before)}")
        if count(after) < count(before):
            found.append(f"{kind} rule keeps {count(after)} {unit} instead of {count(before)}")
    return found


_RULE_PARTS: tuple[tuple[str, str, Callable[[Any], int], Callable[[Any], str]], ...] = (
    ("daily", "days", lambda r: r.days, lambda r: "every day"),
    ("weekly", "weeks", lambda r: r.weeks, lambda r: r.weekday.capitalize()),
    ("monthly", "months", lambda r: r.months, lambda r: r.on.label()),
    ("yearly", "years", lambda r: r.years, lambda r: f"{calendar.month_name[r.month]}, {r.on.label()}"),
)


def permit_policy_change(vault: Vault, old: Policy | None, new: Policy, subject: str, approval: str | None,
                         now: datetime) -> bool:
    """Inside an ETag-checked change of `vault`: refuse a shortening in an immutable vault, and
    in a guarded one use the approval of shorten-retention of `subject` (marked used on
    `vault`). Returns whether it changed `vault`."""
    shorter = shortenings(old, new)
    if not shorter:
        return False
    refuse_if_immutable(vault, f"shortening the retention of {subject} ({'; '.join(shorter)})")
    return permit(vault, Operation.SHORTEN_RETENTION, subject, approval, now)


def check_policy_change(services: Services, vault: Vault, old: Policy | None, new: Policy, subject: str,
                        approval: str | None) -> bool:
    """For a change stored outside the vault document (an item's assignment): refuse a
    shortening in an immutable vault (as `vault` says), and in a guarded one use the approval
    of shorten-retention of `subject` now. Returns whether an approval was used."""
    shorter = shortenings(old, new)
    if not shorter:
        return False
    refuse_if_immutable(vault, f"shortening the retention of {subject} ({'; '.join(shorter)})")
    return authorize(services, vault, Operation.SHORTEN_RETENTION, subject, approval)


# Soft delete.

def set_soft_delete(services: Services, vault: Vault, state: str | None = None, days: int | None = None,
                    approval: str | None = None) -> Vault:
    """Change the vault's soft delete (`state`: disabled, enabled, always-on) and its days
    (14-180); either may be None (unchanged). Always-on is irreversible (Refused). Fewer days
    shorten retention: refused in an immutable vault, and with a guard on they need an approval
    of shorten-retention of `soft-delete-days`; disabling needs one of disable-soft-delete of
    the vault. Idempotent."""
    if state is None and days is None:
        raise Invalid("give a soft-delete state, a number of days, or both")
    if state is not None:
        state = _choice("soft delete", state, SoftDelete)
    if days is not None and (not isinstance(days, int) or isinstance(days, bool)
                             or not SOFT_DELETE_DAYS[0] <= days <= SOFT_DELETE_DAYS[1]):
        raise Invalid(f"soft-delete days must be {SOFT_DELETE_DAYS[0]}-{SOFT_DELETE_DAYS[1]}, not {str(days)[:20]!r}")
    now = services.clock()

    def change(v: Vault) -> bool:
        new_state = state or v.soft_delete
        new_days = v.soft_delete_days if days is None else days
        if (new_state, new_days) == (v.soft_delete, v.soft_delete_days):
            return False
        if v.soft_delete == SoftDelete.ALWAYS_ON and new_state != SoftDelete.ALWAYS_ON:
            raise Refused(f"vault {v.name}'s soft delete is always-on, which is irreversible: "
                          f"it cannot become {new_state}")
        disabling = new_state == SoftDelete.DISABLED and v.soft_delete != SoftDelete.DISABLED
        shortening = new_days < v.soft_delete_days
        if shortening:
            refuse_if_immutable(v, f"shortening soft delete from {v.soft_delete_days} to {new_days} days")
        if disabling and shortening and v.guard:
            raise Invalid(f"vault {v.name}: disable soft delete and shorten its days in two steps; "
                          f"each needs an approval of its own")
        if disabling:
            permit(v, Operation.DISABLE_SOFT_DELETE, v.name, approval, now)
        if shortening:
            permit(v, Operation.SHORTEN_RETENTION, SOFT_DELETE_DAYS_SUBJECT, approval, now)
        v.soft_delete, v.soft_delete_days = new_state, new_days
        return True

    return _update(services, vault, change)


# The guard.

def enable_guard(services: Services, vault: Vault, owner: str, public_key: str) -> Vault:
    """Put the vault under the guard of `owner`, whose Ed25519 public key is `public_key`
    (base64 of its 32 bytes). Allowed freely; idempotent for the same owner and key. Another
    guard is Refused: the vault's must be disabled first, which needs its owner's approval."""
    if not isinstance(owner, str) or not GUARD_OWNER.match(owner):
        raise Invalid(f"guard owner {str(owner)[:40]!r} must be 1-100 letters, digits, spaces or '@._+-'")
    _public_key(public_key)
    now = iso_time(services.clock())

    def change(v: Vault) -> bool:
        if v.guard and (v.guard["owner"], v.guard["publicKey"]) == (owner, public_key):
            return False
        if v.guard:
            raise Refused(f"vault {v.name} is guarded by {v.guard['owner']} already (since {v.guard['enabledAt']}); "
                          f"disabling that guard needs its owner's approval")
        v.guard = {"owner": owner, "publicKey": public_key, "enabledAt": now, "requests": {}}
        return True

    return _update(services, vault, change)


def disable_guard(services: Services, vault: Vault, approval: str | None) -> Vault:
    """Remove the vault's guard, with its owner's approval of disable-guard of the vault.
    Idempotent: a vault without a guard is left as it is."""
    now = services.clock()

    def change(v: Vault) -> bool:
        if not v.guard:
            return False
        permit(v, Operation.DISABLE_GUARD, v.name, approval, now)
        v.guard = None
        return True

    return _update(services, vault, change)


def request_approval(services: Services, vault: Vault, operation: str, subject: str,
                     new_id: Callable[[], str] = lambda: secrets.token_hex(8)) -> str:
    """Record a request for the guard owner's approval of `operation` of `subject`; returns its
    id (`request_document` is what the owner approves). Each call is a new request; requests
    older than REQUEST_KEPT are dropped, and at most MAX_REQUESTS are kept."""
    operation = _choice("operation", operation, Operation)
    check_subject(vault, operation, subject)
    request_id = new_id()
    now = services.clock()

    def add(v: Vault) -> bool:
        if not v.guard:
            raise Refused(f"vault {v.name} has no guard: {operation} of {subject} needs no approval")
        kept = {rid: r for rid, r in v.guard["requests"].items()
                if datetime.fromisoformat(r["requestedAt"]) > now - REQUEST_KEPT}
        if len(kept) >= MAX_REQUESTS:
            raise Refused(f"vault {v.name} holds {len(kept)} approval requests of the last "
                          f"{REQUEST_KEPT.days} days, the most it keeps")
        kept[request_id] = {"operation": operation, "subject": subject, "requestedAt": iso_time(now), "usedAt": None}
        v.guard = {**v.guard, "requests": kept}
        return True

    _update(services, vault, add)
    return request_id


def request_document(vault: Vault, request_id: str) -> dict[str, Any]:
    """What the guard's owner approves (`approve`): the vault, the request and its time."""
    request = (vault.guard or {}).get("requests", {}).get(request_id)
    if request is None:
        raise NotFound(f"vault {vault.name} holds no approval request {request_id!r}")
    return {"v": 1, "tenant": vault.tenant_id, "vault": vault.id, "vaultName": vault.name, "request": request_id,
            "operation": request["operation"], "subject": request["subject"],
            "requestedAt": request["requestedAt"]}


def check_subject(vault: Vault, operation: Operation, subject: str) -> None:
    """Invalid unless `subject` is one `operation` applies to (see the module's words)."""
    if operation in VAULT_OPERATIONS:
        if subject != vault.name:
            raise Invalid(f"the subject of {operation} is the vault's name {vault.name!r}, not {str(subject)[:70]!r}")
        return
    if operation == Operation.STOP_PROTECTION_DELETE:
        if not isinstance(subject, str) or not formats.NAME_ID.match(subject):
            raise Invalid(f"the subject of {operation} is an item's name, not {str(subject)[:70]!r}")
        return
    kind, _, name = subject.partition(":") if isinstance(subject, str) else ("", "", "")
    if subject != SOFT_DELETE_DAYS_SUBJECT and (kind not in ("policy", "item") or not formats.NAME_ID.match(name)):
        raise Invalid(f"the subject of {operation} is policy:NAME, item:NAME or {SOFT_DELETE_DAYS_SUBJECT}, "
                      f"not {str(subject)[:70]!r}")


def authorize(services: Services, vault: Vault, operation: Operation, subject: str, approval: str | None) -> bool:
    """Before a guarded operation stored outside the vault document: with a guard on (as the
    index holds the vault now), check `approval` and mark its request used (Forbidden if it is
    missing or not good for this operation of this subject). Returns whether one was used."""
    now = services.clock()
    current = services.index.get_vault(vault.tenant_id, vault.id) or vault
    used = []

    def use(v: Vault) -> bool:
        used[:] = [permit(v, operation, subject, approval, now)]
        return used[0]

    update_vault(services, current, use)
    return bool(used and used[0])


def permit(vault: Vault, operation: Operation, subject: str, approval: str | None, now: datetime) -> bool:
    """Inside an ETag-checked change of `vault`: with a guard on, check that `approval` is the
    owner's, for this vault, for a request it holds of this operation and subject, not expired
    at `now` and not used; mark its request used on `vault` (the caller's write stores it).
    Returns whether it changed `vault` (False: no guard)."""
    guard = vault.guard
    if not guard:
        return False
    what = f"vault {vault.name}: {operation} of {subject}"
    if not approval:
        raise Forbidden(f"{what} needs the approval of the guard's owner {guard['owner']}, and none was given "
                        f"(`skyvault guard request`, then the owner's `skyvault guard approve`)")
    payload, signature = _parse_token(approval, what)
    try:
        _public_key(guard["publicKey"]).verify(signature, signed_bytes(payload))
    except InvalidSignature:
        raise Forbidden(f"{what}: the approval has a bad signature (not made with the key of "
                        f"{guard['owner']}'s guard, or altered)") from None
    if payload["vault"] != vault.id:
        raise Forbidden(f"{what}: the approval is for another vault ({payload['vault']})")
    request = guard["requests"].get(payload["request"])
    if request is None:
        raise Forbidden(f"{what}: the approval is for request {payload['request']}, which the vault does not hold "
                        f"(made under another guard, or older than {REQUEST_KEPT.days} days)")
    if payload["operation"] != operation:
        raise Forbidden(f"{what}: the approval is for another operation ({payload['operation']})")
    if payload["subject"] != subject:
        raise Forbidden(f"{what}: the approval is for another subject ({payload['subject']})")
    if (request["operation"], request["subject"]) != (operation, subject):
        raise Forbidden(f"{what}: the approval does not match its request "
                        f"({request['operation']} of {request['subject']})")
    expires = _aware_time(payload["expiresAt"])
    if expires is None:
        raise Forbidden(f"{what}: the approval's expiry {payload['expiresAt'][:40]!r} is not a time with its offset")
    if now >= expires:
        raise Forbidden(f"{what}: the approval expired at {payload['expiresAt']}")
    if expires > datetime.fromisoformat(request["requestedAt"]) + MAX_APPROVAL_TTL:
        raise Forbidden(f"{what}: the approval lasts past {MAX_APPROVAL_HOURS} hours after its request")
    if request.get("usedAt"):
        raise Forbidden(f"{what}: the approval was already used, at {request['usedAt']}")
    # Copies: the record as read must not change unless this write is stored.
    vault.guard = {**guard, "requests": {**guard["requests"],
                                         payload["request"]: {**request, "usedAt": iso_time(now)}}}
    return True


# The guard owner's side: pure functions run on the owner's own machine.

def new_guard_key() -> tuple[bytes, str]:
    """A new key pair for a guard's owner: (the private key as unencrypted PKCS#8 PEM, the
    public key as base64 of its 32 bytes, what `enable_guard` takes)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, public_key_of(key)


def public_key_of(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def approve(private_key: bytes | str | Ed25519PrivateKey, vault_id: str, request: dict[str, Any], now: datetime,
            ttl: timedelta = APPROVAL_TTL) -> str:
    """The owner's approval token of `request` (a `request_document`) in vault `vault_id`,
    signed with `private_key` (PEM, its 32 raw bytes, or the key), valid from `now` for `ttl`
    (at most MAX_APPROVAL_TTL) and no later than MAX_APPROVAL_TTL after the request."""
    key = _private_key(private_key)
    if not timedelta(0) < ttl <= MAX_APPROVAL_TTL:
        raise Invalid(f"an approval lasts more than 0 and at most {MAX_APPROVAL_HOURS} hours, "
                      f"not {ttl / timedelta(hours=1):g}")
    if not isinstance(request, dict):
        raise Invalid("the request to approve must be a JSON object, as `skyvault guard request` prints it")
    values = {}
    for name in ("request", "operation", "subject", "requestedAt"):
        if not isinstance(request.get(name), str):
            raise Invalid(f"the request to approve has no {name!r}: give it as `skyvault guard request` prints it")
        values[name] = request[name]
    if request.get("vault", vault_id) != vault_id:
        raise Invalid(f"the request is for vault {request['vault']}, not {vault_id}")
    if not REQUEST_ID.match(values["request"]):
        raise Invalid(f"request id {values['request'][:40]!r} is not one a vault makes")
    _choice("operation", values["operation"], Operation)
    requested_at = _aware_time(values["requestedAt"])
    if requested_at is None:
        raise Invalid(f"the request's requestedAt {values['requestedAt'][:40]!r} is not a time with its offset")
    if now.tzinfo is None:
        raise ValueError("approve: now must be an aware datetime")
    if requested_at > now + MAX_APPROVAL_TTL:  # also keeps the sum below the year 9999
        raise Invalid(f"the request's requestedAt {values['requestedAt'][:40]} is in the future: "
                      f"give it as `skyvault guard request` prints it")
    expires = min(now + ttl, requested_at + MAX_APPROVAL_TTL)
    if expires <= now:
        raise Invalid(f"the request was made at {values['requestedAt']}, more than {MAX_APPROVAL_HOURS} hours ago: "
                      f"it can no longer be approved; ask for a new one")
    payload = {"v": 1, "vault": vault_id, "request": values["request"], "operation": values["operation"],
               "subject": values["subject"], "expiresAt": iso_time(expires)}
    signature = key.sign(signed_bytes(payload))
    token = ".".join((TOKEN_PREFIX, _b64(formats.canonical(payload)), _b64(signature)))
    if len(token) > MAX_TOKEN_CHARS:  # a subject no vault would have made, and no vault would read
        raise Invalid(f"the request's subject is too long for an approval ({len(values['subject'])} characters)")
    return token


def signed_bytes(payload: dict[str, Any]) -> bytes:
    """What an approval's signature covers: SIGNED_PREFIX, then the canonical JSON of the
    payload (v, vault, request, operation, subject, expiresAt)."""
    return SIGNED_PREFIX + formats.canonical({name: payload[name] for name in PAYLOAD_FIELDS})


def approval_payload(token: str) -> dict[str, Any]:
    """What an approval token says (unverified), for showing it."""
    return _parse_token(token, "approval")[0]


def _parse_token(token: str, what: str) -> tuple[dict[str, Any], bytes]:
    malformed = Forbidden(f"{what}: the approval is not an approval token (malformed)")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise malformed
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise malformed
    try:
        payload = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise malformed from None
    if (not isinstance(payload, dict) or set(payload) != set(PAYLOAD_FIELDS) or payload["v"] != 1
            or not all(isinstance(payload[name], str) for name in PAYLOAD_FIELDS[1:])):
        raise malformed
    return payload, signature


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    if not URLSAFE_B64.match(text):
        raise ValueError("not unpadded base64url")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error as e:
        raise ValueError(str(e)) from None


def _public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise Invalid(f"guard public key {str(text)[:60]!r} is not base64 of an Ed25519 public key's 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def _private_key(key: bytes | str | Ed25519PrivateKey) -> Ed25519PrivateKey:
    if isinstance(key, Ed25519PrivateKey):
        return key
    if isinstance(key, str):
        key = key.encode("ascii", "replace")
    if isinstance(key, bytes) and len(key) == 32:
        return Ed25519PrivateKey.from_private_bytes(key)
    try:
        loaded = serialization.load_pem_private_key(key, password=None)
    except (TypeError, ValueError):
        raise Invalid("the guard key is not an unencrypted PEM private key") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise Invalid("the guard key is not an Ed25519 key")
    return loaded


def _aware_time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else None


def _choice(label: str, value: str, kind: type[StrEnum]) -> Any:
    values = tuple(k.value for k in kind)
    if value not in values:
        raise Invalid(f"{label} must be one of {', '.join(values)}, not {str(value)[:40]!r}")
    return kind(value)


def _update(services: Services, vault: Vault, change: Callable[[Vault], bool]) -> Vault:
    stored = update_vault(services, vault, change)
    if stored is None:
        raise NotFound(f"vault {vault.name} ({vault.id}) no longer exists")
    return stored
