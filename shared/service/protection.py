"""Immutable vaults and multi-user authorization (interim: the rules' interface only)."""
from __future__ import annotations

from enum import StrEnum

from shared.domain import Immutability, Vault
from shared.errors import Forbidden
from shared.service.context import Services


class Operation(StrEnum):
    DISABLE_SOFT_DELETE = "disable-soft-delete"
    DISABLE_GUARD = "disable-guard"
    SHORTEN_RETENTION = "shorten-retention"
    STOP_PROTECTION_DELETE = "stop-protection-delete"
    DELETE_VAULT = "delete-vault"


def authorize(services: Services, vault: Vault, operation: Operation, subject: str, approval: str | None) -> None:
    if vault.guard:
        raise Forbidden(f"vault {vault.name}: {operation} of {subject} needs the guard owner's approval")


def refuse_if_immutable(vault: Vault, what: str) -> None:
    if vault.immutability != Immutability.DISABLED:
        raise Forbidden(f"vault {vault.name} is immutable ({vault.immutability}): {what} is refused")
