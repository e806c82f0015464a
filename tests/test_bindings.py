"""The function app's triggers, read through app.get_functions() as the Functions host reads them,
and each function called through its binding on in-memory fakes."""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

import function_app
from functions import api, ingest
from shared import crypto, formats, identity
from shared.messages import Poisoned
from shared.service.context import Services
from shared.service.vaults import create_vault
from tests.unit.signing import register, signed_json
from shared.domain import chunk_blob_name, container_name
from shared.fakes import MemoryBlobAccount, MemoryIndex, MemoryQueue


# get_functions() validates and indexes the app; a second call on the same app fails.
FUNCTIONS = function_app.app.get_functions()


def functions_by_name():
    return {f.get_function_name(): f for f in FUNCTIONS}


def test_every_function_is_registered_with_its_trigger():
    found = {name: f.get_trigger() for name, f in functions_by_name().items()}
    queues = {name: (t.queue_name, t.connection) for name, t in found.items() if t.get_binding_name() == "queueTrigger"}
    assert queues == {"ingest": ("ingest", "Storage"), "commit": ("commit", "Storage"),
                      "restore": ("restore", "Storage"), "replicate": ("replicate", "Storage"),
                      "meter": ("usage", "Storage")}
    timers = {name: t.schedule for name, t in found.items() if t.get_binding_name() == "timerTrigger"}
    assert timers == {"scrub": "%ScrubSchedule%", "sweep": "%SweepSchedule%", "retention": "%RetentionSchedule%",
                      "reconcile": "%ReconcileSchedule%"}
    routes = {name: (t.route, tuple(m.value if hasattr(m, "value") else m for m in t.methods))
              for name, t in found.items() if t.get_binding_name() == "httpTrigger"}
    vault = "tenants/{tenant}/vaults/{vault}"
    assert routes == {
        "lookup_chunks": (f"{vault}/chunks/lookup", ("POST",)),
        "list_points": (f"{vault}/points", ("GET",)),
        "job_status": (f"{vault}/jobs/{{job}}", ("GET",)),
        "key_check": (f"{vault}/keycheck", ("POST",)),
        "renew_credentials": (f"{vault}/credentials", ("POST",)),
        "commit_point": (f"{vault}/commits", ("POST",)),
        "create_restore": (f"{vault}/restores", ("POST",)),
        "vault_status": (f"{vault}/status", ("GET",)),
        "item_schedule": (f"{vault}/items/{{item}}/schedule", ("GET",)),
        "vault_bill": (f"{vault}/bill", ("GET",)),
        "chunk_epoch": (f"{vault}/chunks/epoch", ("GET",)),
        "start_run": (f"{vault}/runs", ("POST",)),
        "run_heartbeat": (f"{vault}/runs/{{run}}", ("POST",)),
        "check_chunks": (f"{vault}/chunks/check", ("POST",)),
        "report_damage": (f"{vault}/chunks/damage", ("POST",)),
        "enrol_machine": (f"{vault}/machines", ("POST",)),
        "post_message": (f"{vault}/messages/{{queue}}", ("POST",)),
    }


def test_bindings_name_settings_not_secrets():
    text = json.dumps([json.loads(f.get_function_json()) for f in FUNCTIONS])
    assert "AccountKey" not in text and "DefaultEndpointsProtocol" not in text


@pytest.fixture
def fake_services(monkeypatch):
    queues: dict[str, MemoryQueue] = {}

    def queue(name):
        if name not in queues:
            queues[name] = MemoryQueue(name)
            queues[name].create()
        return queues[name]

    services = Services(index=MemoryIndex(), primary=MemoryBlobAccount("primary"), queue=queue)
    for module in (ingest, api):
        monkeypatch.setattr(module, "services", lambda: services)
    return services


def test_ingest_through_its_binding(fake_services):
    vault, _ = create_vault(fake_services, "contoso", "bind", "LRS")
    machine = register(fake_services, vault)
    keys = crypto.derive_keys("bindings test passphrase", b"b" * 16)
    data = b"through the binding" * 100
    cid = crypto.chunk_id(keys, data)
    envelope = crypto.encrypt_chunk(keys, vault.id, cid, data)
    fake_services.primary.container(container_name(vault.id)).put(chunk_blob_name(cid), envelope)
    text = signed_json({"v": formats.SCHEMA_VERSION, "id": "b1", "type": "chunks", "tenantId": "contoso",
                        "vaultId": vault.id, "chunks": [{"id": cid, "size": len(envelope),
                                                         "md5": base64.b64encode(hashlib.md5(envelope).digest()).decode()}]},
                       machine)
    user_function = functions_by_name()["ingest"].get_user_function()
    user_function(QueueMessage(id="m1", body=text.encode(), dequeue_count=1))
    assert fake_services.index.get_chunks(vault.id, [cid])[cid].state == "verified"
    # A message that can never succeed is not failed for the host to retry: the function moves it
    # to ingest-poison itself, with the reason, and completes.
    user_function(QueueMessage(id="m2", body=b"garbage", dequeue_count=1))
    poisoned = [Poisoned.parse(base64.b64decode(m)) for m in fake_services.queue("ingest-poison").peek()]
    assert [(p.message, p.queue, p.attempts) for p in poisoned] == [("garbage", "ingest", 1)]
    assert "not JSON" in poisoned[0].reason


def test_http_lookup_through_its_binding(fake_services):
    vault, _ = create_vault(fake_services, "contoso", "http", "LRS")
    machine = register(fake_services, vault)
    path = f"/api/tenants/contoso/vaults/{vault.id}/chunks/lookup"
    body = json.dumps({"ids": ["ab" * 32]}).encode()

    def signed(body):
        return identity.sign_request(machine.private_key, machine.id, "POST", path, None, body,
                                     datetime.now(timezone.utc))

    headers = signed(body)
    user_function = functions_by_name()["lookup_chunks"].get_user_function()

    def call(headers, body=body):
        return user_function(func.HttpRequest("POST", f"http://localhost{path}", headers=headers, body=body,
                                              route_params={"tenant": "contoso", "vault": vault.id}))

    ok = call(headers)
    assert ok.status_code == 200 and json.loads(ok.get_body()) == {"verified": [], "rejected": []}
    assert call({**signed(body), "x-skyvault-signature": "A" * 86 + "=="}).status_code == 401
    assert call(headers).status_code == 401, "a replay"
    bad_json = call(signed(b"{"), body=b"{")
    assert bad_json.status_code == 400 and "not JSON" in json.loads(bad_json.get_body())["error"]
