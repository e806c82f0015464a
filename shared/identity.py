"""Machine identities on the wire: each registered machine's Ed25519 key pair, and the
signatures it puts on its API requests and queue messages (docs/design.md, "Machines").

Words:
- machine: one registered agent installation. Its private key is made on it and never leaves
  it; the service keeps only the public key, so nothing the service stores lets anyone act as
  an agent.
- enrolment ticket: the vault credentials file an operator hands out. Short-lived; the
  service keeps only the SHA-256 of its secret (`ticket_digest`).
- request string: what a request's signature covers: method, path, query string, date, nonce
  and the body's SHA-256. The service remembers nonces for the clock-skew window, so a request
  is accepted once.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Mapping
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.errors import Unauthenticated

MAX_CLOCK_SKEW = timedelta(minutes=5)
REQUEST_SCHEME = "skyvault-request-v2"
# Base64 of Ed25519's 64-byte signature and 32-byte keys, with their padding.
SIGNATURE = re.compile(r"[A-Za-z0-9+/]{86}==\Z")
PUBLIC_KEY = re.compile(r"[A-Za-z0-9+/]{43}=\Z")
NONCE = re.compile(r"[0-9a-f]{32}\Z")
MACHINE_ID = re.compile(r"[0-9a-f]{32}\Z")
TICKET_SECRET = re.compile(r"[0-9a-f]{64}\Z")
HEADERS = ("x-skyvault-machine", "x-skyvault-date", "x-skyvault-nonce", "x-skyvault-signature")


def new_private_key() -> str:
    """A new machine key, as the base64 of its 32 raw bytes (kept in the agent's state only)."""
    return _b64(Ed25519PrivateKey.generate().private_bytes_raw())


def _private(private_key: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_key, validate=True))


def public_key_of(private_key: str) -> str:
    return _b64(_private(private_key).public_key().public_bytes_raw())


def sign(private_key: str, payload: bytes) -> str:
    return _b64(_private(private_key).sign(payload))


def verify(public_key: str, payload: bytes, signature: str) -> bool:
    """Whether `signature` is the key's over `payload`; False for any malformed input."""
    if not (SIGNATURE.match(signature) and PUBLIC_KEY.match(public_key)):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key)).verify(base64.b64decode(signature), payload)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def machine_id_of(public_key: str) -> str:
    """A machine's id: the first 32 hex digits of its public key's SHA-256, so that a retried
    registration names the same machine."""
    return hashlib.sha256(base64.b64decode(public_key)).hexdigest()[:32]


def fingerprint(public_key: str) -> str:
    """A short name of a public key, for listings: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(base64.b64decode(public_key)).hexdigest()[:16]


def new_ticket_secret() -> str:
    return secrets.token_hex(32)


def ticket_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def ticket_matches(secret: str, digest: str) -> bool:
    return hmac.compare_digest(ticket_digest(secret), digest)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# Signed requests

def canonical_query(params: Mapping[str, str] | None) -> str:
    """The query string as signed: parameters sorted by name, names and values percent-encoded
    (every byte but unreserved ones), `name=value` joined by `&`; empty for none."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted((params or {}).items()))


def request_string(method: str, path: str, query: str, date: str, nonce: str, body: bytes) -> bytes:
    return "\n".join([REQUEST_SCHEME, method.upper(), path, query, date, nonce,
                      hashlib.sha256(body).hexdigest()]).encode()


def sign_request(private_key: str, machine_id: str, method: str, path: str, params: Mapping[str, str] | None,
                 body: bytes, now: datetime, nonce: str | None = None) -> dict[str, str]:
    date = now.astimezone(timezone.utc).isoformat()
    nonce = nonce or secrets.token_hex(16)
    payload = request_string(method, path, canonical_query(params), date, nonce, body)
    return {"x-skyvault-machine": machine_id, "x-skyvault-date": date, "x-skyvault-nonce": nonce,
            "x-skyvault-signature": sign(private_key, payload)}


@dataclass(frozen=True)
class SignedRequest:
    """A request's identity headers, read and checked for form and date (not yet its signature,
    which needs the machine's public key: `verify_with`)."""

    machine_id: str
    date: str
    when: datetime
    nonce: str
    signature: str
    payload: bytes

    @classmethod
    def read(cls, method: str, path: str, params: Mapping[str, str] | None, body: bytes,
             headers: Mapping[str, str], now: datetime) -> "SignedRequest":
        """Unauthenticated, naming what is wrong, for a missing or malformed header or a date out
        of the window: all checked before anything is looked up, so the answer says nothing of
        which vaults exist."""
        lower = {k.lower(): v for k, v in headers.items()}
        missing = [h for h in HEADERS if h not in lower]
        if missing:
            raise Unauthenticated(f"request lacks the header(s) {', '.join(missing)}")
        machine_id, date, nonce, signature = (lower[h] for h in HEADERS)
        for name, value, pattern in (("x-skyvault-machine", machine_id, MACHINE_ID),
                                     ("x-skyvault-nonce", nonce, NONCE),
                                     ("x-skyvault-signature", signature, SIGNATURE)):
            if not pattern.match(value):
                raise Unauthenticated(f"header {name} is not of its form")
        try:
            when = datetime.fromisoformat(date) if date.isascii() and len(date) <= 40 else None
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise Unauthenticated("header x-skyvault-date is not an ISO 8601 time with its time zone")
        if abs(now - when) > MAX_CLOCK_SKEW:
            raise Unauthenticated(f"request date {date} is more than {MAX_CLOCK_SKEW} from the service's clock")
        try:
            payload = request_string(method, path, canonical_query(params), date, nonce, body)
        except UnicodeEncodeError:  # a lone surrogate: no client could have signed it
            raise Unauthenticated("request path or query is not valid Unicode text") from None
        return cls(machine_id, date, when, nonce, signature, payload)

    def verify_with(self, public_key: str) -> bool:
        return verify(public_key, self.payload, self.signature)
