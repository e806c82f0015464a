"""Backup policies of a vault: create, show and replace its named policies, assign one to an
item, and the retention plan: what each item's policy would keep and expire of its committed
points now (docs/design.md, "Retention policies"). Nothing here deletes a point.

Words:
- named policy: one of a vault's policies (at most MAX_POLICIES), kept on the vault's document
  as `policies: {name: policy document}` and changed only by ETag-checked updates.
- default policy: DEFAULT_POLICY, built in under the name DEFAULT_POLICY_NAME; it applies to
  every item without an assignment, and cannot be created or replaced.
- assignment: an item record (the index's items container) naming the item's policy.
- plan: for each item, apply_policy's decision over its committed points, with the reasons.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import formats
from shared.domain import ItemRecord, Vault
from shared.errors import Invalid, NotFound, Refused, Retryable
from shared.ports import Conflict, PreconditionFailed
from shared.retention import Policy, RetentionDecision, apply_policy
from shared.service import protection
from shared.service.context import UPDATE_ATTEMPTS, Services, update_vault

MAX_POLICIES = 50
DEFAULT_POLICY_NAME = "default"
# One backup a day, each kept 30 days: the MARS agent's own example policy for files and folders
# (New-OBRetentionPolicy -RetentionDays 30); 21:00 UTC is our choice, after the working day.
DEFAULT_POLICY = Policy.from_doc({"v": 1, "timeZone": "UTC",
                                  "schedule": {"frequency": "daily", "times": ["21:00"]},
                                  "retention": {"daily": {"days": 30}}})


class UnknownPolicy(NotFound):
    pass


class UnknownItem(NotFound):
    pass


def _check_name(label: str, value: str) -> None:
    if not isinstance(value, str) or not formats.NAME_ID.match(value):
        raise Invalid(f"{label} {str(value)[:70]!r} must be 1-63 letters, digits, '.', '_' or '-', "
                      f"starting with a letter or digit")


def _check_writable(name: str) -> None:
    _check_name("policy name", name)
    if name == DEFAULT_POLICY_NAME:
        raise Refused(f"policy {DEFAULT_POLICY_NAME!r} is the built-in default; give yours another name")


def create_policy(services: Services, vault: Vault, name: str, doc: Any) -> Policy:
    """Add policy `name` to the vault; refused if the name is taken or the vault has
    MAX_POLICIES already. `doc` is the policy's JSON document (Invalid, naming the field)."""
    _check_writable(name)
    policy = Policy.from_doc(doc)

    def add(v: Vault) -> bool:
        if name in v.policies:
            raise Refused(f"vault {v.name} already has a policy named {name!r}; `set` replaces it")
        if len(v.policies) >= MAX_POLICIES:
            raise Refused(f"vault {v.name} has {len(v.policies)} policies, the most it may have")
        v.policies = {**v.policies, name: policy.to_doc()}
        return True

    update_vault(services, vault, add)
    return policy


def set_policy(services: Services, vault: Vault, name: str, doc: Any, approval: str | None = None) -> Policy:
    """Replace policy `name` of the vault. The new retention applies to the points the items
    of the policy already have: a longer one keeps them longer; a shorter one expires them, so
    it is refused in an immutable vault and needs the guard's approval of shorten-retention of
    `policy:NAME` in a guarded one (shared/service/protection.py), used in the same write."""
    _check_writable(name)
    policy = Policy.from_doc(doc)
    now = services.clock()

    def swap(v: Vault) -> bool:
        if name not in v.policies:
            raise UnknownPolicy(f"vault {v.name} has no policy named {name!r}; `create` adds one")
        if v.policies[name] == policy.to_doc():
            return False
        protection.permit_policy_change(v, Policy.from_doc(v.policies[name]), policy,
                                        protection.policy_subject(name), approval, now)
        v.policies = {**v.policies, name: policy.to_doc()}
        return True

    update_vault(services, vault, swap)
    return policy


def policies_of(vault: Vault) -> dict[str, Policy]:
    """The vault's policies by name, the default first, then by name."""
    return {DEFAULT_POLICY_NAME: DEFAULT_POLICY,
            **{name: Policy.from_doc(vault.policies[name]) for name in sorted(vault.policies)}}


def show_policy(vault: Vault, name: str) -> Policy:
    policy = policies_of(vault).get(name)
    if policy is None:
        raise UnknownPolicy(f"vault {vault.name} has no policy named {str(name)[:70]!r}")
    return policy


def assign_policy(services: Services, vault: Vault, item: str, name: str, approval: str | None = None) -> ItemRecord:
    """Item `item` follows policy `name` (the default included) from now on; idempotent. A
    policy shorter than the item's current one is refused in an immutable vault and needs the
    guard's approval of shorten-retention of `item:ITEM` in a guarded one."""
    _check_name("item", item)
    vault = services.index.get_vault(vault.tenant_id, vault.id) or vault  # its protection as it is now
    policy = show_policy(vault, name)
    checked, approved = None, False
    for _ in range(UPDATE_ATTEMPTS):
        record = services.index.get_item(vault.id, item)
        if record is not None and record.policy == name:
            return record
        current = record.policy if record is not None else DEFAULT_POLICY_NAME
        # An approval used covers this item's shortening, whichever policy a racing assignment left.
        if current != checked and not approved:
            approved = protection.check_policy_change(services, vault, policies_of(vault).get(current), policy,
                                                      protection.item_subject(item), approval)
            checked = current
        try:
            if record is None:
                return services.index.put_item(ItemRecord(id=item, vault_id=vault.id, policy=name))
            record.policy = name
            return services.index.put_item(record)
        except (Conflict, PreconditionFailed):
            continue  # another assignment of the item won the race: read it again
    raise Retryable(f"gave up assigning item {item}: {UPDATE_ATTEMPTS} concurrent changes in a row")


@dataclass(frozen=True)
class ItemPlan:
    """What `policy_name`'s policy decides for `item`'s committed points at the plan's time."""

    item: str
    policy_name: str
    assigned: bool  # False: the item has no assignment and follows the default
    decision: RetentionDecision


def retention_plan(services: Services, vault: Vault, item: str | None, now: datetime) -> list[ItemPlan]:
    """For `item`, or every item of the vault (those with points or an assignment, by name), the
    decision of its policy over its committed points at `now` (a point created after `now`
    counts as created at `now`). Reads only; deletes nothing.
    UnknownItem if `item` has neither a point nor an assignment."""
    policies = policies_of(vault)
    if item is None:
        records = {r.id: r for r in services.index.list_items(vault.id)}
        points = services.index.list_points(vault.id)
    else:
        _check_name("item", item)
        record = services.index.get_item(vault.id, item)
        records = {item: record} if record else {}
        points = services.index.list_points(vault.id, item)
        if not points and not records:
            raise UnknownItem(f"vault {vault.name} has no item {item!r}: no point, no assigned policy")
    committed: dict[str, list[tuple[str, datetime]]] = {name: [] for name in records}
    for point in points:
        entries = committed.setdefault(point.item, [])
        if point.live:
            # created_at is the agent's clock: a point from a clock running fast counts as made now.
            entries.append((point.id, min(datetime.fromisoformat(point.created_at), now)))
    plans = []
    for name in sorted(committed):
        record = records.get(name)
        policy_name = record.policy if record else DEFAULT_POLICY_NAME
        plans.append(ItemPlan(item=name, policy_name=policy_name, assigned=record is not None,
                              decision=apply_policy(committed[name], policies[policy_name], now)))
    return plans
