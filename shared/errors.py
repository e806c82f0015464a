"""What every layer of the service raises when it refuses or cannot finish: errors that say
whether trying again can help, never how a transport reports them.

Words:
- permanent: the input is wrong (malformed, forged, unknown, contradicting what is stored);
  the same input fails the same way, so a queue message is poisoned at once and an API
  request answered with a 4xx.
- retryable: something the service depends on did not answer, or the input is not ready yet;
  the same input may succeed later, so it is delivered again with a growing delay.

The HTTP statuses live in functions/api.py alone; queue delivery in shared/service/delivery.py.
"""
from __future__ import annotations


class ServiceError(Exception):
    """Base of the service's refusals. `retryable` says whether the same input may succeed later."""

    retryable = False


class Permanent(ServiceError):
    """Trying again cannot help."""


class Invalid(Permanent):
    """The input does not match its schema or breaks a rule (names the field or rule)."""


class Forbidden(Permanent):
    """The input is not from an agent of the vault it names: bad signature, another vault's."""


class NotFound(Permanent):
    """The input names a vault, job or point that does not exist."""


class Refused(Permanent):
    """Well-formed, but contradicts what is stored: a taken name, a locked setting, another passphrase."""


class Retryable(ServiceError):
    """The same input may succeed later: a dependency did not answer, or the input is not ready yet."""

    retryable = True


class Unauthenticated(Forbidden):
    """A request that does not prove it comes from a registered, unrevoked machine of the vault it
    names. An unknown tenant, vault or machine answers exactly as a bad signature does."""
