"""POST messages/{queue}: how agents post their queue messages (they hold no queue SAS). What
is refused is refused with its reason and queues nothing; what is accepted is on its queue as
the Functions host reads it."""
from __future__ import annotations

import base64
import json

import pytest

from functions import api
from shared import formats, identity
from shared.service import machines, vaults
from shared.service.context import ALL_QUEUES
from tests import inprocess
from tests.unit.pipeline import Clock
from tests.unit.signing import register, signed_json


@pytest.fixture
def services(request):
    return inprocess.memory_services(request.node.name.replace("_", "-")[:40], Clock())


@pytest.fixture
def vault(services):
    return vaults.create_vault(services, "contoso", "laptops", "LRS")[0]


def _chunks(vault, machine, message_id="m1", **changes):
    doc = {"v": formats.SCHEMA_VERSION, "id": message_id, "type": "chunks", "tenantId": vault.tenant_id,
           "vaultId": vault.id, "chunks": [{"id": "ab" * 32, "size": 100, "md5": "A" * 22 + "=="}], **changes}
    return signed_json(doc, machine).encode()


def _post(services, vault, machine, queue, body):
    path = f"/api/tenants/{vault.tenant_id}/vaults/{vault.id}/messages/{queue}"
    headers = identity.sign_request(machine.private_key, machine.id, "POST", path, None, body, services.clock())
    return api.answer(services, api.Call("POST", path, {}, headers, body))


def _queued(services):
    return {name: [base64.b64decode(m) for m in services.queue(name).peek(32)] for name in ALL_QUEUES}


def _nothing_queued(services):
    return all(not messages for messages in _queued(services).values())


def test_a_message_is_queued_base64_as_the_functions_host_reads_it(services, vault):
    machine = register(services, vault)
    body = _chunks(vault, machine)
    assert _post(services, vault, machine, "ingest", body) == (200, {"queued": "m1"})
    assert _queued(services)["ingest"] == [body]


@pytest.mark.parametrize("queue, error", [
    ("usage", "no queue 'usage' takes an agent's messages"),
    ("ingest-poison", "no queue 'ingest-poison' takes an agent's messages"),
    ("commit", "a 'chunks' message where a 'commit' one belongs"),
])
def test_a_queue_agents_do_not_post_to_or_the_wrong_message_is_refused(services, vault, queue, error):
    machine = register(services, vault)
    status, answer = _post(services, vault, machine, queue, _chunks(vault, machine))
    assert status in (400, 404) and error in answer["error"]
    assert _nothing_queued(services)


def test_a_message_of_another_vault_or_machine_is_refused(services, vault):
    machine, other_machine = register(services, vault), register(services, vault, "other")
    other_vault = vaults.create_vault(services, "contoso", "desktops", "LRS")[0]
    theirs = register(services, other_vault)
    for body in (_chunks(other_vault, theirs), _chunks(vault, other_machine)):
        status, answer = _post(services, vault, machine, "ingest", body)
        assert status == 403 and "not the ones that sign this request" in answer["error"]
    assert _nothing_queued(services)


@pytest.mark.parametrize("body, error", [
    (b"not json", "not JSON"),
    (json.dumps({"type": "chunks"}).encode(), "unsupported schema version"),
    (b"{" + b'"a":"' + b"x" * formats.MAX_MESSAGE_BYTES + b'"}', f"over {formats.MAX_MESSAGE_BYTES}"),
])
def test_a_malformed_or_oversized_message_is_a_400_naming_why(services, vault, body, error):
    machine = register(services, vault)
    status, answer = _post(services, vault, machine, "ingest", body)
    assert status == 400 and error in answer["error"], answer
    assert _nothing_queued(services)


def test_a_revoked_machine_posts_nothing(services, vault):
    machine = register(services, vault)
    machines.revoke_machine(services, vault, machine.id)
    status, answer = _post(services, vault, machine, "ingest", _chunks(vault, machine))
    assert status == 401, answer
    assert _nothing_queued(services)
