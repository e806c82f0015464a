"""Immutable vaults, soft-delete settings and multi-user authorization (shared/service/protection.py),
through the use cases they guard (policies, deletion), on the in-memory service with a clock the
tests move; and the `skyvault guard` flow through skyvault.cli.main."""
from __future__ import annotations

import base64
import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from shared import bootstrap
from shared.domain import Immutability, RecoveryPoint, SoftDelete
from shared.errors import Forbidden, Invalid, NotFound, Refused
from shared.retention import Policy
from shared.service import deletion, policies, protection, vaults
from shared.service.context import update_vault
from shared.service.protection import Operation
from skyvault import cli, exitcodes, home
from skyvault.commands import guard as guard_command
from tests import inprocess

START = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def daily(days: int, weeks: int | None = None, weekday: str = "sunday", zone: str = "UTC") -> dict:
    retention = {"daily": {"days": days}}
    if weeks is not None:
        retention["weekly"] = {"weekday": weekday, "weeks": weeks}
    return {"v": 1, "timeZone": zone, "schedule": {"frequency": "daily", "times": ["02:00"]}, "retention": retention}


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def services(request, clock):
    return inprocess.memory_services(f"protection-{len(request.node.name)}", clock=clock)


@pytest.fixture
def vault(services, clock):
    """Vault `files`: policy `files` (30 days, 4 Sundays) that item `laptop` follows, with a
    point of yesterday and one of 40 days ago (which no rule keeps)."""
    vault = vaults.create_vault(services, "contoso", "files", "LRS")[0]
    policies.create_policy(services, vault, "files", daily(30, weeks=4))
    policies.create_policy(services, reread(services, vault), "short", daily(7))
    policies.create_policy(services, reread(services, vault), "long", daily(90, weeks=8))
    policies.assign_policy(services, reread(services, vault), "laptop", "files")
    for point_id, days_ago in (("kept", 1), ("old", 40)):
        services.index.create_point(RecoveryPoint(
            id=point_id, vault_id=vault.id, item="laptop", state="committed",
            created_at=(clock.now - timedelta(days=days_ago)).isoformat(), manifest_blob=f"points/{point_id}/m",
            refs_blob=f"points/{point_id}/r", chunk_count=1))
    return reread(services, vault)


def reread(services, vault):
    return services.index.get_vault(vault.tenant_id, vault.id)


def immutable(services, vault, state: str = Immutability.LOCKED):
    return protection.set_immutability(services, vault, state)


def policy_days(services, vault, name: str = "files") -> int:
    return policies.show_policy(reread(services, vault), name).retention.daily.days


# Immutability.

@pytest.mark.parametrize("state", [Immutability.ENABLED, Immutability.LOCKED])
def test_an_immutable_vault_refuses_shortening_a_policy_and_changes_nothing(services, vault, state):
    vault = immutable(services, vault, state)
    with pytest.raises(Forbidden, match=r"immutable \(.*shortening the retention of policy:files "
                                        r"\(daily rule keeps 7 days instead of 30; weekly rule removed"):
        policies.set_policy(services, vault, "files", daily(7))
    assert reread(services, vault) == vault


@pytest.mark.parametrize("state", [Immutability.ENABLED, Immutability.LOCKED])
def test_an_immutable_vault_refuses_assigning_a_shorter_policy(services, vault, state):
    vault = immutable(services, vault, state)
    with pytest.raises(Forbidden, match="shortening the retention of item:laptop"):
        policies.assign_policy(services, vault, "laptop", "short")
    with pytest.raises(Forbidden, match="item:desktop"):  # an item without a record follows the default (30 days)
        policies.assign_policy(services, vault, "desktop", "short")
    assert [(r.id, r.policy) for r in services.index.list_items(vault.id)] == [("laptop", "files")]


def test_an_immutable_vault_refuses_stopping_protection_with_the_data_deleted(services, vault):
    vault = immutable(services, vault)
    with pytest.raises(Forbidden, match="immutable .*stopping the protection of laptop with its data deleted"):
        deletion.stop_protection(services, vault, "laptop", delete_data=True)
    assert services.index.get_item(vault.id, "laptop").protection == "protected"
    assert all(p.live for p in services.index.list_points(vault.id))
    assert deletion.stop_protection(services, vault, "laptop", delete_data=False) == []  # retain data: allowed


def test_an_immutable_vault_refuses_deleting_a_point_its_policy_keeps_but_not_one_it_expires(services, vault):
    vault = immutable(services, vault)
    with pytest.raises(Forbidden, match="deleting point kept, which its policy keeps"):
        deletion.delete_point(services, vault, "kept")
    assert services.index.get_point(vault.id, "kept").live
    assert deletion.delete_point(services, vault, "old").deleted_at == START.isoformat()


def test_locked_is_irreversible_and_enabled_can_be_disabled(services, vault):
    vault = immutable(services, vault, Immutability.ENABLED)
    vault = immutable(services, vault, Immutability.DISABLED)
    assert vault.immutability == Immutability.DISABLED
    vault = immutable(services, vault, Immutability.LOCKED)
    for state in (Immutability.DISABLED, Immutability.ENABLED):
        with pytest.raises(Refused, match="immutability is locked, which is irreversible"):
            immutable(services, vault, state)
    assert immutable(services, vault, Immutability.LOCKED) == reread(services, vault)  # idempotent
    with pytest.raises(Invalid, match="immutability must be one of disabled, enabled, locked, not 'frozen'"):
        immutable(services, vault, "frozen")


def test_an_immutable_vault_lets_retention_grow(services, vault):
    vault = immutable(services, vault)
    policies.set_policy(services, vault, "files", daily(60, weeks=4))
    policies.set_policy(services, vault, "files", daily(60, weeks=4))  # idempotent
    assert policy_days(services, vault) == 60
    assert policies.assign_policy(services, vault, "laptop", "long").policy == "long"
    assert protection.set_soft_delete(services, vault, days=30).soft_delete_days == 30
    with pytest.raises(Forbidden, match="shortening soft delete from 30 to 20 days"):
        protection.set_soft_delete(services, vault, days=20)


@pytest.mark.parametrize("old, new, found", [
    (daily(30, weeks=4), daily(30, weeks=4), []),
    (daily(30, weeks=4), daily(31, weeks=5), []),
    (daily(30), daily(30, weeks=4), []),  # a rule added
    (daily(30, weeks=4), daily(29, weeks=4), ["daily rule keeps 29 days instead of 30"]),
    (daily(30, weeks=4), daily(30), ["weekly rule removed (it kept 4 weeks)"]),
    (daily(30, weeks=4), daily(30, weeks=9, weekday="friday"), ["weekly rule keeps Friday instead of Sunday"]),
    (daily(30), daily(90, zone="Europe/Paris"),
     ["time zone Europe/Paris instead of UTC (its days pick other points)"]),
    ({"v": 1, "schedule": {"frequency": "daily", "times": ["02:00"]},
      "retention": {"monthly": {"on": {"day": "last"}, "months": 12},
                    "yearly": {"month": 12, "on": {"day": 31}, "years": 7}}},
     {"v": 1, "schedule": {"frequency": "daily", "times": ["02:00"]},
      "retention": {"monthly": {"on": {"day": 1}, "months": 12},
                    "yearly": {"month": 1, "on": {"day": 31}, "years": 3}}},
     ["monthly rule keeps day 1 instead of last day", "yearly rule keeps January, day 31 instead of December, day 31",
      "yearly rule keeps 3 years instead of 7"]),
])
def test_shortenings_name_what_can_expire_a_point_sooner(old, new, found):
    assert protection.shortenings(Policy.from_doc(old), Policy.from_doc(new)) == found
    assert protection.shortenings(None, Policy.from_doc(new)) == []


# Soft delete.

def test_always_on_soft_delete_cannot_be_disabled(services, vault):
    vault = protection.set_soft_delete(services, vault, SoftDelete.ALWAYS_ON)
    for state in (SoftDelete.DISABLED, SoftDelete.ENABLED):
        with pytest.raises(Refused, match="always-on, which is irreversible"):
            protection.set_soft_delete(services, vault, state)
    assert protection.set_soft_delete(services, vault, days=90).soft_delete_days == 90  # days still change
    assert reread(services, vault).soft_delete == SoftDelete.ALWAYS_ON


def test_soft_delete_can_be_disabled_and_enabled_without_a_guard(services, vault):
    vault = protection.set_soft_delete(services, vault, SoftDelete.DISABLED)
    assert (vault.soft_delete, vault.soft_delete_days) == (SoftDelete.DISABLED, 14)
    vault = protection.set_soft_delete(services, vault, SoftDelete.ENABLED, 180)
    assert (vault.soft_delete, vault.soft_delete_days) == (SoftDelete.ENABLED, 180)
    assert protection.set_soft_delete(services, vault, SoftDelete.ENABLED, 180) == vault  # idempotent


@pytest.mark.parametrize("days", [13, 181, 0, -14, True, "30", 30.0])
def test_soft_delete_days_outside_14_to_180_are_invalid(services, vault, days):
    with pytest.raises(Invalid, match="soft-delete days must be 14-180"):
        protection.set_soft_delete(services, vault, days=days)
    assert reread(services, vault) == vault


def test_soft_delete_needs_a_state_or_days(services, vault):
    with pytest.raises(Invalid, match="soft-delete state, a number of days, or both"):
        protection.set_soft_delete(services, vault)
    with pytest.raises(Invalid, match="soft delete must be one of disabled, enabled, always-on"):
        protection.set_soft_delete(services, vault, "off")


# The guard.

@pytest.fixture
def owner_key():
    return protection.new_guard_key()


@pytest.fixture
def guarded(services, vault, owner_key):
    return protection.enable_guard(services, vault, "Grace Hopper", owner_key[1])


def approval(services, vault, key: bytes, operation: str, subject: str, ttl: timedelta = protection.APPROVAL_TTL,
             vault_id: str | None = None) -> str:
    """What an operator's request and the owner's approval of it make, as the commands do."""
    request_id = protection.request_approval(services, vault, operation, subject)
    document = protection.request_document(reread(services, vault), request_id)
    return protection.approve(key, vault_id or vault.id, document, services.clock(), ttl)


# Each guarded operation: how it is run with an approval, what it approves, what it changed.
GUARDED = {
    "shorten a policy": (lambda s, v, a: policies.set_policy(s, v, "files", daily(7), a),
                         Operation.SHORTEN_RETENTION, "policy:files",
                         lambda s, v: policy_days(s, v) == 7),
    "assign a shorter policy": (lambda s, v, a: policies.assign_policy(s, v, "laptop", "short", a),
                                Operation.SHORTEN_RETENTION, "item:laptop",
                                lambda s, v: s.index.get_item(v.id, "laptop").policy == "short"),
    "fewer soft-delete days": (lambda s, v, a: protection.set_soft_delete(s, v, days=14, approval=a),
                               Operation.SHORTEN_RETENTION, "soft-delete-days",
                               lambda s, v: reread(s, v).soft_delete_days == 14),
    "disable soft delete": (lambda s, v, a: protection.set_soft_delete(s, v, SoftDelete.DISABLED, approval=a),
                            Operation.DISABLE_SOFT_DELETE, "files",
                            lambda s, v: reread(s, v).soft_delete == SoftDelete.DISABLED),
    "stop protection, delete the data": (lambda s, v, a: deletion.stop_protection(s, v, "laptop", True, a),
                                         Operation.STOP_PROTECTION_DELETE, "laptop",
                                         lambda s, v: not any(p.live for p in s.index.list_points(v.id))),
    "disable the guard": (lambda s, v, a: protection.disable_guard(s, v, a), Operation.DISABLE_GUARD, "files",
                          lambda s, v: reread(s, v).guard is None),
    "delete the vault": (lambda s, v, a: protection.authorize(s, v, Operation.DELETE_VAULT, "files", a),
                         Operation.DELETE_VAULT, "files",
                         lambda s, v: any(r["usedAt"] for r in reread(s, v).guard["requests"].values())),
}


@pytest.fixture
def longer_soft_delete(services, guarded):
    """Soft delete of 30 days, which the guarded operation 'fewer soft-delete days' shortens."""
    return protection.set_soft_delete(services, guarded, days=30)


@pytest.mark.parametrize("name", list(GUARDED))
def test_each_guarded_operation_needs_an_approval_of_its_own(services, longer_soft_delete, owner_key, name):
    run, operation, subject, done = GUARDED[name]
    vault = longer_soft_delete
    with pytest.raises(Forbidden, match=f"vault files: {operation} of {subject} needs the approval of the "
                                        f"guard's owner Grace Hopper, and none was given"):
        run(services, vault, None)
    assert reread(services, vault) == vault and not done(services, vault)

    token = approval(services, vault, owner_key[0], operation, subject)
    run(services, vault, token)
    assert done(services, vault)


def test_an_approval_is_used_once(services, guarded, owner_key):
    token = approval(services, guarded, owner_key[0], Operation.SHORTEN_RETENTION, "policy:files")
    policies.set_policy(services, guarded, "files", daily(20, weeks=4), token)
    with pytest.raises(Forbidden, match=r"shorten-retention of policy:files: the approval was already used, "
                                        r"at 2026-12-02T12:00:00\+00:00"):
        policies.set_policy(services, guarded, "files", daily(10, weeks=4), token)
    assert policy_days(services, guarded) == 20

    token = approval(services, guarded, owner_key[0], Operation.DELETE_VAULT, "files")
    assert protection.authorize(services, guarded, Operation.DELETE_VAULT, "files", token) is True
    with pytest.raises(Forbidden, match="already used"):
        protection.authorize(services, guarded, Operation.DELETE_VAULT, "files", token)


def test_a_refused_change_leaves_its_approval_unused(services, guarded, owner_key):
    token = approval(services, guarded, owner_key[0], Operation.SHORTEN_RETENTION, "policy:files")
    with pytest.raises(Invalid):
        policies.set_policy(services, guarded, "files", {"v": 1}, token)
    immutable(services, guarded, Immutability.ENABLED)
    with pytest.raises(Forbidden, match="immutable"):  # immutability outranks any approval
        policies.set_policy(services, guarded, "files", daily(7), token)
    immutable(services, guarded, Immutability.DISABLED)
    policies.set_policy(services, guarded, "files", daily(7), token)
    assert policy_days(services, guarded) == 7


def test_lengthening_needs_no_approval_in_a_guarded_vault(services, guarded):
    policies.set_policy(services, guarded, "files", daily(60, weeks=4))
    policies.assign_policy(services, guarded, "laptop", "long")
    protection.set_soft_delete(services, guarded, SoftDelete.ALWAYS_ON, 90)
    assert reread(services, guarded).guard["requests"] == {}


@pytest.mark.parametrize("approved, words", [
    ((Operation.DELETE_VAULT, "files"), "the approval is for another operation (delete-vault)"),
    ((Operation.SHORTEN_RETENTION, "policy:short"), "the approval is for another subject (policy:short)"),
    ((Operation.SHORTEN_RETENTION, "item:files"), "the approval is for another subject (item:files)"),
])
def test_an_approval_is_for_its_operation_and_subject_only(services, guarded, owner_key, approved, words):
    token = approval(services, guarded, owner_key[0], *approved)
    with pytest.raises(Forbidden, match=re.escape(f"vault files: shorten-retention of policy:files: {words}")):
        policies.set_policy(services, guarded, "files", daily(7), token)
    assert policy_days(services, guarded) == 30


def test_an_approval_expires(services, guarded, owner_key, clock):
    token = approval(services, guarded, owner_key[0], Operation.DELETE_VAULT, "files", ttl=timedelta(hours=1))
    clock.advance(timedelta(hours=1))
    with pytest.raises(Forbidden, match=r"delete-vault of files: the approval expired at 2026-12-02T13:00:00\+00:00"):
        protection.authorize(services, guarded, Operation.DELETE_VAULT, "files", token)


def test_an_approval_ends_24_hours_after_its_request(services, guarded, owner_key, clock):
    request_id = protection.request_approval(services, guarded, Operation.DELETE_VAULT, "files")
    document = protection.request_document(reread(services, guarded), request_id)
    late = protection.approve(owner_key[0], guarded.id, document, START + timedelta(hours=20))
    assert protection.approval_payload(late)["expiresAt"] == (START + timedelta(hours=24)).isoformat()
    with pytest.raises(Invalid, match="more than 24 hours ago: it can no longer be approved"):
        protection.approve(owner_key[0], guarded.id, document, START + timedelta(hours=24))
    with pytest.raises(Invalid, match="at most 24 hours, not 25"):
        protection.approve(owner_key[0], guarded.id, document, START, timedelta(hours=25))
    with pytest.raises(Invalid, match=f"request is for vault {guarded.id}, not other"):
        protection.approve(owner_key[0], "other", document, START)


def test_an_approval_signed_with_another_key_is_refused(services, guarded):
    stranger = protection.new_guard_key()[0]
    token = approval(services, guarded, stranger, Operation.DELETE_VAULT, "files")
    with pytest.raises(Forbidden, match=r"bad signature \(not made with the key of Grace Hopper's guard, or altered"):
        protection.authorize(services, guarded, Operation.DELETE_VAULT, "files", token)


def tampered(token: str, **changes) -> str:
    prefix, payload, signature = token.split(".")
    doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    doc.update(changes)
    return ".".join((prefix, base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("="), signature))


@pytest.mark.parametrize("alter, words", [
    (lambda t: tampered(t, subject="policy:files"), "bad signature"),
    (lambda t: tampered(t, expiresAt="2027-12-02T12:00:00+00:00"), "bad signature"),
    (lambda t: t[:-3] + ("AAA" if not t.endswith("AAA") else "BBB"), "bad signature"),
    (lambda t: t.replace("sva1.", "sva2."), "malformed"),
    (lambda t: t + ".x", "malformed"),
    (lambda t: t.replace(".", ".!", 1), "malformed"),
    (lambda t: "not a token", "malformed"),
    (lambda t: tampered(t, extra="field"), "malformed"),
])
def test_a_tampered_token_is_refused(services, guarded, owner_key, alter, words):
    token = approval(services, guarded, owner_key[0], Operation.SHORTEN_RETENTION, "policy:short")
    with pytest.raises(Forbidden, match=words):
        policies.set_policy(services, guarded, "short", daily(3), alter(token))
    assert policy_days(services, guarded, "short") == 7


def test_an_approval_for_another_vault_or_an_unknown_request_is_refused(services, guarded, owner_key):
    other = protection.enable_guard(services, vaults.create_vault(services, "contoso", "other", "LRS")[0],
                                    "Grace Hopper", owner_key[1])
    token = approval(services, other, owner_key[0], Operation.DELETE_VAULT, "other")
    with pytest.raises(Forbidden, match=f"the approval is for another vault \\({other.id}\\)"):
        protection.authorize(services, guarded, Operation.DELETE_VAULT, "files", token)
    forged_request = protection.approve(owner_key[0], guarded.id, {
        "request": "0123456789abcdef", "operation": "delete-vault", "subject": "files",
        "requestedAt": START.isoformat()}, START)
    with pytest.raises(Forbidden, match="request 0123456789abcdef, which the vault does not hold"):
        protection.authorize(services, guarded, Operation.DELETE_VAULT, "files", forged_request)


def test_authorize_reads_the_guard_as_stored_now(services, vault, owner_key):
    stale = vault
    protection.enable_guard(services, vault, "Grace Hopper", owner_key[1])
    with pytest.raises(Forbidden, match="none was given"):
        protection.authorize(services, stale, Operation.DELETE_VAULT, "files", None)


def test_without_a_guard_nothing_needs_or_takes_an_approval(services, vault):
    assert protection.authorize(services, vault, Operation.DELETE_VAULT, "files", None) is False
    with pytest.raises(Refused, match="vault files has no guard: delete-vault of files needs no approval"):
        protection.request_approval(services, vault, Operation.DELETE_VAULT, "files")
    assert protection.disable_guard(services, vault, None).guard is None  # idempotent


def test_enable_is_idempotent_and_refuses_another_guard(services, guarded, owner_key):
    assert protection.enable_guard(services, guarded, "Grace Hopper", owner_key[1]) == guarded
    with pytest.raises(Refused, match="guarded by Grace Hopper already"):
        protection.enable_guard(services, guarded, "Mallory", protection.new_guard_key()[1])
    for owner, key, words in (("Mallory", "not base64!", "not base64 of an Ed25519"),
                              ("Mallory", base64.b64encode(b"short").decode(), "not base64 of an Ed25519"),
                              ("", owner_key[1], "guard owner ''")):
        with pytest.raises(Invalid, match=words):
            protection.enable_guard(services, guarded, owner, key)
    assert reread(services, guarded) == guarded


@pytest.mark.parametrize("operation, subject, words", [
    ("format-disk", "files", "operation must be one of"),
    (Operation.DISABLE_GUARD, "other", "the subject of disable-guard is the vault's name 'files'"),
    (Operation.SHORTEN_RETENTION, "files", "policy:NAME, item:NAME or soft-delete-days"),
    (Operation.SHORTEN_RETENTION, "policy:a/b", "policy:NAME, item:NAME or soft-delete-days"),
    (Operation.STOP_PROTECTION_DELETE, "item:laptop", "an item's name"),
])
def test_a_request_names_a_subject_its_operation_applies_to(services, guarded, operation, subject, words):
    with pytest.raises(Invalid, match=words):
        protection.request_approval(services, guarded, operation, subject)
    assert reread(services, guarded) == guarded


def test_requests_older_than_seven_days_are_dropped_and_their_number_is_bounded(services, guarded, clock,
                                                                               monkeypatch):
    first = protection.request_approval(services, guarded, Operation.DELETE_VAULT, "files")
    clock.advance(protection.REQUEST_KEPT)
    second = protection.request_approval(services, guarded, Operation.DELETE_VAULT, "files")
    assert list(reread(services, guarded).guard["requests"]) == [second] and first != second
    monkeypatch.setattr(protection, "MAX_REQUESTS", 2)
    protection.request_approval(services, guarded, Operation.DELETE_VAULT, "files")
    with pytest.raises(Refused, match="holds 2 approval requests of the last 7 days, the most it keeps"):
        protection.request_approval(services, guarded, Operation.DELETE_VAULT, "files")


def test_disabling_soft_delete_and_shortening_its_days_are_two_approvals(services, longer_soft_delete, owner_key):
    token = approval(services, longer_soft_delete, owner_key[0], Operation.DISABLE_SOFT_DELETE, "files")
    with pytest.raises(Invalid, match="in two steps"):
        protection.set_soft_delete(services, longer_soft_delete, SoftDelete.DISABLED, 14, token)
    protection.set_soft_delete(services, longer_soft_delete, SoftDelete.DISABLED, approval=token)
    assert reread(services, longer_soft_delete).soft_delete == SoftDelete.DISABLED


def test_a_lost_race_applies_the_approval_to_the_vault_as_it_is_now(services, guarded, owner_key):
    token = approval(services, guarded, owner_key[0], Operation.SHORTEN_RETENTION, "policy:files")
    stale = reread(services, guarded)
    update_vault(services, guarded, lambda v: setattr(v, "scrub_cursor", "ff") or True)
    policies.set_policy(services, stale, "files", daily(7), token)  # `stale` has the old etag
    stored = reread(services, guarded)
    assert (policy_days(services, guarded), stored.scrub_cursor) == (7, "ff")
    assert [r["usedAt"] for r in stored.guard["requests"].values()] == [START.isoformat()]


# The commands.

TENANT = ["--tenant", "contoso"]


@pytest.fixture
def stack(tmp_path, monkeypatch):
    """The commands' stack is an in-memory service on the real clock (the owner's `approve`
    reads the machine's clock), with vault `files` and its policy `files` of 30 days."""
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "home"))
    home.write_json("stack.json", {"settings": {}})
    services = inprocess.memory_services("guard-commands")
    monkeypatch.setattr(bootstrap, "build_services", lambda settings: services)
    vault = vaults.create_vault(services, "contoso", "files", "LRS")[0]
    policies.create_policy(services, vault, "files", daily(30))
    return services


def test_the_guard_flow_through_the_commands(stack, tmp_path, capsys, monkeypatch):
    key = tmp_path / "owner.pem"
    assert cli.main(["guard", "keygen", "--out", str(key)]) == exitcodes.OK
    public_key = capsys.readouterr().out.strip()
    assert key.stat().st_mode & 0o777 == 0o600
    assert cli.main(["guard", "keygen", "--out", str(key)]) == exitcodes.FAILURE
    assert "never overwritten" in capsys.readouterr().err
    assert cli.main(["guard", "enable", "--vault", "files", *TENANT, "--owner", "Grace",
                     "--public-key", public_key]) == exitcodes.OK
    assert "guarded by Grace" in capsys.readouterr().out

    policy_file = tmp_path / "short.json"
    policy_file.write_text(json.dumps(daily(7)))
    replace = ["policy", "set", "files", "--vault", "files", *TENANT, "--file", str(policy_file)]
    assert cli.main(replace) == exitcodes.FAILURE
    assert "shorten-retention of policy:files needs the approval" in capsys.readouterr().err

    request_file = tmp_path / "request.json"
    assert cli.main(["guard", "request", "shorten-retention", "policy:files", "--vault", "files", *TENANT,
                     "--out", str(request_file)]) == exitcodes.OK
    printed = capsys.readouterr().out
    request = json.loads(printed)
    assert json.loads(request_file.read_text()) == request
    assert (request["operation"], request["subject"], request["vaultName"]) == ("shorten-retention", "policy:files",
                                                                              "files")
    assert cli.main(["guard", "approve", "--key", str(key), "--vault-id", "wrong", "--request-file",
                     str(request_file)]) == exitcodes.FAILURE
    assert f"the request is for vault {request['vault']}, not wrong" in capsys.readouterr().err
    assert cli.main(["guard", "approve", "--key", str(key), "--vault-id", request["vault"], "--request-file",
                     str(request_file)]) == exitcodes.OK
    out = capsys.readouterr()
    token = out.out.strip()
    assert "approved shorten-retention of policy:files in vault files" in out.err

    assert cli.main([*replace, "--approval", token]) == exitcodes.OK
    assert '"days": 7' in capsys.readouterr().out
    assert cli.main([*replace[:-1], str(policy_file), "--approval", token]) == exitcodes.OK  # the same: no change
    policy_file.write_text(json.dumps(daily(3)))
    assert cli.main([*replace, "--approval", token]) == exitcodes.FAILURE
    assert "already used" in capsys.readouterr().err

    assert cli.main(["guard", "show", "--vault", "files", *TENANT]) == exitcodes.OK
    assert "shorten-retention of policy:files  (used at" in capsys.readouterr().out

    assert cli.main(["guard", "request", "disable-guard", "--vault", "files", *TENANT]) == exitcodes.OK
    request = capsys.readouterr().out
    approve = ["guard", "approve", "--key", str(key), "--vault-id", json.loads(request)["vault"],
               "--request-file", "-"]
    monkeypatch.setattr("sys.stdin", io.StringIO(request))
    assert cli.main(approve) == exitcodes.OK
    token = capsys.readouterr().out.strip()
    assert cli.main(["guard", "disable", "--vault", "files", *TENANT, "--approval", token]) == exitcodes.OK
    assert "has no guard any more" in capsys.readouterr().out
    assert vaults.find_vault(stack, "contoso", "files").guard is None


def test_the_vault_settings_commands(stack, capsys):
    assert cli.main(["vault", "soft-delete", "files", *TENANT, "--days", "30"]) == exitcodes.OK
    assert "soft delete enabled, 30 days" in capsys.readouterr().out
    assert cli.main(["vault", "soft-delete", "files", *TENANT, "--days", "200"]) == exitcodes.FAILURE
    assert "soft-delete days must be 14-180" in capsys.readouterr().err
    assert cli.main(["vault", "immutability", "files", *TENANT, "--state", "locked"]) == exitcodes.OK
    assert "immutability locked (irreversible)" in capsys.readouterr().out
    assert cli.main(["vault", "immutability", "files", *TENANT, "--state", "disabled"]) == exitcodes.FAILURE
    assert "irreversible" in capsys.readouterr().err
    assert cli.main(["vault", "soft-delete", "files", *TENANT, "--days", "14"]) == exitcodes.FAILURE
    assert "is immutable (locked): shortening soft delete from 30 to 14 days is refused" in capsys.readouterr().err
    assert cli.main(["vault", "soft-delete", "files", *TENANT, "--state", "always-on"]) == exitcodes.OK
    vault = vaults.find_vault(stack, "contoso", "files")
    assert (vault.soft_delete, vault.soft_delete_days, vault.immutability) == ("always-on", 30, "locked")


def test_the_command_lists_the_service_operations():
    assert guard_command.OPERATIONS == protection.OPERATIONS


def test_an_unknown_request_cannot_be_shown(services, guarded):
    with pytest.raises(NotFound, match="no approval request 'nope'"):
        protection.request_document(guarded, "nope")
