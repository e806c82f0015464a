"""Machine identities: request signatures (what they cover, the headers' form, the clock window,
replays), the one answer every unauthenticated request gets, enrolment with a ticket, and
revocation (docs/design.md, "Machines")."""
from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from functions import api
from shared import bootstrap, errors, formats, identity
from shared.domain import RecoveryPoint
from shared.messages import EnrolRequest, Poisoned
from shared.service import delivery, machines, sweep, vaults
from shared.service.context import iso_time
from skyvault import cli, exitcodes, home
from skyvault.vaultclient import CredentialsError
from tests import inprocess
from tests.unit.pipeline import Clock
from tests.unit.signing import register, signed_json

PASSPHRASE = "identity test passphrase"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def services(clock, request):
    return inprocess.memory_services(request.node.name.replace("_", "-")[:40], clock)


@pytest.fixture
def vault(services):
    return vaults.create_vault(services, "contoso", "laptops", "LRS")[0]


def _path(vault, subpath="points"):
    return f"/api/tenants/{vault.tenant_id}/vaults/{vault.id}/{subpath}"


def _call(services, vault, machine, method="GET", subpath="points", params=None, body=b"", when=None, **changes):
    path = _path(vault, subpath)
    headers = identity.sign_request(machine.private_key, machine.id, method, path, params, body,
                                    when or services.clock())
    headers.update(changes)
    return api.answer(services, api.Call(method, path, dict(params or {}), headers, body))


def test_a_signature_covers_method_path_query_date_nonce_and_body(services, vault):
    machine = register(services, vault)
    path = _path(vault)
    now = services.clock()
    headers = identity.sign_request(machine.private_key, machine.id, "GET", path, {"item": "a"}, b"", now)
    for method, p, params, body in (("POST", path, {"item": "a"}, b""), ("GET", path + "x", {"item": "a"}, b""),
                                    ("GET", path, {"item": "b"}, b""), ("GET", path, {}, b""),
                                    ("GET", path, {"item": "a"}, b"{}")):
        with pytest.raises(errors.Unauthenticated):
            machines.authenticate(services, vault.tenant_id, vault.id, method, p, params, body, headers)
    nonce = headers["x-skyvault-nonce"]
    for header, value in (("x-skyvault-date", (now + timedelta(seconds=1)).isoformat()),
                          ("x-skyvault-nonce", nonce[:-1] + ("1" if nonce[-1] != "1" else "2"))):
        changed = {**headers, header: value}
        with pytest.raises(errors.Unauthenticated, match=machines.NOT_AUTHENTICATED):
            machines.authenticate(services, vault.tenant_id, vault.id, "GET", path, {"item": "a"}, b"", changed)
    assert machines.authenticate(services, vault.tenant_id, vault.id, "GET", path, {"item": "a"}, b"",
                                 headers)[1].id == machine.id


def test_a_request_is_accepted_once(services, vault):
    """A replayed `POST credentials` would hand out fresh SAS: every nonce is taken once."""
    machine = register(services, vault)
    path = _path(vault, "credentials")
    headers = identity.sign_request(machine.private_key, machine.id, "POST", path, None, b"", services.clock())
    first = api.answer(services, api.Call("POST", path, {}, headers, b""))
    again = api.answer(services, api.Call("POST", path, {}, headers, b""))
    assert first[0] == 200 and first[1]["machineId"] == machine.id
    assert again == (401, {"error": "the request was replayed: its nonce was already used"})


@pytest.mark.parametrize("header, value, why", [
    ("x-skyvault-date", "2026-11-25T12:00:00", "time zone"),  # answered 500 before
    ("x-skyvault-date", "2026-11-25T12:00:00\u00e9+00:00", "time zone"),
    ("x-skyvault-date", "yesterday", "time zone"),
    ("x-skyvault-signature", "\u00e9" * 88, "form"),  # a non-ASCII signature answered 500 before
    ("x-skyvault-signature", "0" * 64, "form"),
    ("x-skyvault-machine", "ab" * 16 + "\n", "form"),
    ("x-skyvault-nonce", "", "form"),
])
def test_malformed_identity_headers_answer_401_naming_the_header(services, vault, header, value, why):
    machine = register(services, vault)
    status, body = _call(services, vault, machine, **{header: value})
    assert status == 401 and why in body["error"]


def test_a_date_outside_the_window_is_refused(services, vault, clock):
    machine = register(services, vault)
    for skew in (timedelta(minutes=6), -timedelta(minutes=6)):
        status, body = _call(services, vault, machine, when=services.clock() + skew)
        assert status == 401 and "from the service's clock" in body["error"]
    assert _call(services, vault, machine, when=services.clock() - timedelta(minutes=4))[0] == 200


def test_unknown_tenant_vault_or_machine_answer_as_a_bad_signature_does(services, vault):
    """No existence oracle before authentication: the same status and words for all four."""
    machine = register(services, vault)
    stranger = register(services, vaults.create_vault(services, "fabrikam", "servers", "LRS")[0])
    answers = []
    for tenant, vault_id, signer in (("contoso", vault.id, stranger),  # unknown machine, known vault
                                     ("contoso", "0" * 32, machine),  # unknown vault
                                     ("nobody", vault.id, machine)):  # unknown tenant
        path = f"/api/tenants/{tenant}/vaults/{vault_id}/points"
        headers = identity.sign_request(signer.private_key, signer.id, "GET", path, None, b"", services.clock())
        answers.append(api.answer(services, api.Call("GET", path, {}, headers, b"")))
    headers = identity.sign_request(stranger.private_key, machine.id, "GET", _path(vault), None, b"",
                                    services.clock())  # the right machine's id, another key
    answers.append(api.answer(services, api.Call("GET", _path(vault), {}, headers, b"")))
    assert answers == [(401, {"error": machines.NOT_AUTHENTICATED})] * 4


def _enrol_call(services, vault, ticket, private_key, key_check="ab" * 32, **overrides):
    public_key = identity.public_key_of(private_key)
    body = json.dumps({**EnrolRequest(ticket.ticket_id, ticket.ticket_secret, "laptop-1", public_key,
                                      key_check).to_doc(), **overrides}).encode()
    path = _path(vault, "machines")
    headers = identity.sign_request(private_key, identity.machine_id_of(public_key), "POST", path, None, body,
                                    services.clock())
    return api.answer(services, api.Call("POST", path, {}, headers, body))


def test_enrolment_needs_an_unexpired_ticket_and_keeps_only_the_public_key(services, clock):
    vault, ticket = vaults.create_vault(services, "contoso", "laptops", "LRS")
    key = identity.new_private_key()
    status, body = _enrol_call(services, vault, ticket, key)
    assert status == 200 and body["keyCheck"] == "recorded"
    assert "keyCheck" not in body["credentials"]["kdf"], "the key check value never leaves the service"
    stored = json.dumps([m.to_doc() for m in services.index.list_machines(vault.id)]
                        + [services.index.get_vault("contoso", vault.id).to_doc()])
    assert ticket.ticket_secret not in stored and key not in stored
    assert identity.public_key_of(key) in stored
    again = _enrol_call(services, vault, ticket, key)  # a retried registration: the same machine
    assert again[0] == 200 and again[1]["credentials"]["machineId"] == body["credentials"]["machineId"]
    status, body = _enrol_call(services, vault, ticket, identity.new_private_key(), key_check="cd" * 32)
    assert status == 409 and "passphrase does not match" in body["error"]
    assert len(services.index.list_machines(vault.id)) == 1, "another passphrase registers no machine"
    status, body = _enrol_call(services, vault, ticket, identity.new_private_key(), ticketSecret="0" * 64)
    assert status == 401 and "not valid" in body["error"]
    clock.advance(vaults.TICKET_TTL.total_seconds() + 1)
    status, body = _enrol_call(services, vault, ticket, identity.new_private_key())
    assert status == 401 and "not valid" in body["error"]
    assert len(services.index.list_machines(vault.id)) == 1


def test_a_revoked_machine_is_refused_from_then_on(services, vault):
    machine, other = register(services, vault), register(services, vault, "desktop")
    assert _call(services, vault, machine, "POST", "credentials")[0] == 200
    view = machines.revoke_machine(services, vault, machine.id)
    assert view.revoked_at is not None
    assert machines.revoke_machine(services, vault, machine.id).revoked_at == view.revoked_at, "idempotent"
    assert _call(services, vault, machine, "POST", "credentials") == (401, {"error": machines.NOT_AUTHENTICATED})
    assert _call(services, vault, other, "POST", "credentials")[0] == 200
    listed = {m.id: m.revoked_at for m in machines.list_machines(services, vault)}
    assert listed == {machine.id: view.revoked_at, other.id: None}
    with pytest.raises(errors.NotFound):
        machines.revoke_machine(services, vault, "ef" * 16)


def test_the_operators_commands_issue_tickets_list_and_revoke_machines(services, clock, tmp_path, monkeypatch,
                                                                       capsys):
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "home"))
    home.write_json("stack.json", {"settings": {}})
    monkeypatch.setattr(bootstrap, "build_services", lambda settings: services)
    tenant = ["--tenant", "contoso"]
    ticket_file = tmp_path / "laptops.credentials.json"
    assert cli.main(["vault", "create", "laptops", *tenant, "--out", str(ticket_file), "--valid-hours", "2"]) == 0
    ticket = json.loads(ticket_file.read_text())
    assert ticket_file.stat().st_mode & 0o777 == 0o600 and "signingKey" not in ticket
    agent = inprocess.InProcessVault(ticket, services, PASSPHRASE, name="laptop-1")
    clock.advance(1)  # machines list by registration time
    assert cli.main(["vault", "ticket", "laptops", *tenant, "--out", str(tmp_path / "more.json")]) == 0
    second = inprocess.InProcessVault(json.loads((tmp_path / "more.json").read_text()), services, PASSPHRASE,
                                      name="laptop-2")
    capsys.readouterr()
    assert cli.main(["vault", "machines", "laptops", *tenant, "--json"]) == 0
    *objects, summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert summary == {"type": "summary", "command": "vault machines", "machines": 2}
    listed = [o["machine"] for o in objects if o["type"] == "machine"]
    assert [(m["id"], m["name"], m["revokedAt"]) for m in listed] == [(agent.machine_id, "laptop-1", None),
                                                                      (second.machine_id, "laptop-2", None)]
    assert cli.main(["vault", "revoke-machine", "laptops", agent.machine_id, *tenant]) == 0
    assert "revoked at" in capsys.readouterr().out
    with pytest.raises(CredentialsError, match="not signed by a registered machine"):
        agent.points()
    assert second.points() == []
    assert cli.main(["vault", "revoke-machine", "laptops", "ef" * 16, *tenant]) == exitcodes.FAILURE
    assert "has no machine" in capsys.readouterr().err


def test_a_revoked_machines_queued_messages_and_pending_points_are_refused(services, clock):
    """Revoked after its commit message went out: the message is poisoned when delivered, and a
    point it left pending is failed by the sweep, not committed."""
    vault, ticket = vaults.create_vault(services, "contoso", "laptops", "LRS")
    machine = register(services, vault)
    services.index.create_point(RecoveryPoint(
        id="20261125T120000Z-0000abcd", vault_id=vault.id, item="laptop", state="pending",
        created_at=iso_time(services.clock()), manifest_blob="m", refs_blob="r", chunk_count=0,
        received_at=iso_time(services.clock()), checked_at=iso_time(services.clock()), machine=machine.id))
    text = signed_json({"v": formats.SCHEMA_VERSION, "id": "r1", "type": "restore", "tenantId": "contoso",
                        "vaultId": vault.id, "pointId": "20261125T120000Z-0000abcd"}, machine)
    machines.revoke_machine(services, vault, machine.id)
    delivery.deliver(services, "restore", text.encode(), lambda m: inprocess.QUEUE_HANDLERS["restore"](services, m))
    [poisoned] = services.queue("restore-poison").peek()
    assert "revoked" in Poisoned.parse(base64.b64decode(poisoned)).reason
    assert services.index.get_job(vault.id, "r1") is None
    clock.advance(sweep.SWEEP_IDLE.total_seconds() + 1)
    assert sweep.sweep(services)["failed"] == ["20261125T120000Z-0000abcd"]
    point = services.index.get_point(vault.id, "20261125T120000Z-0000abcd")
    assert point.state == "failed" and f"machine {machine.id}, revoked at" in point.reason


def test_register_refuses_a_weak_passphrase_before_anything_is_sent(services, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "home"))
    vault, ticket = vaults.create_vault(services, "contoso", "laptops", "LRS")
    (tmp_path / "t.json").write_text(json.dumps(ticket.to_doc()))
    monkeypatch.setenv("SKYVAULT_PASSPHRASE", "a" * 16)  # long enough, and guessed at once
    assert cli.main(["register", str(tmp_path / "t.json")]) == exitcodes.FAILURE
    assert "passphrase" in capsys.readouterr().err
    assert services.index.list_machines(vault.id) == [] and "keyCheck" not in vault.kdf
    assert not (tmp_path / "home" / "agent.json").exists()
