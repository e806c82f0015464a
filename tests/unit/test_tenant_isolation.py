"""Tenants proven apart: a machine of tenant A tries every API route and every agent queue
against tenant B's vault, with its own key and with crafted messages. Every answer is the one a
vault that does not exist gets, and nothing of B's changes (docs/design.md, "Machines")."""
from __future__ import annotations

import base64
import copy
import json

import pytest

from functions import api
from shared import formats, identity
from shared.messages import Poisoned
from shared.service import delivery, vaults
from shared.service.context import AGENT_QUEUES
from tests import inprocess
from tests.unit.signing import SigningMachine, register, signed_json

POINT = "20261125T120000Z-0000abcd"
# Every route of functions/api.py, with a body it would accept from B's own machine.
ROUTES = [
    ("POST", "chunks/lookup", {"ids": ["ab" * 32]}), ("GET", "points", None), ("POST", "commits", {}),
    ("GET", "jobs/job-1", None), ("POST", "keycheck", {"keyCheck": "ab" * 32}), ("POST", "credentials", None),
    ("POST", "restores", {"jobId": "job-2", "pointId": POINT}), ("GET", "status", None), ("GET", "bill", None),
    ("GET", "items/laptop/schedule", None), ("POST", "runs", {"runId": POINT, "item": "laptop"}),
    ("POST", f"runs/{POINT}", {}), ("GET", "chunks/epoch", None), ("POST", "chunks/check", {"ids": ["ab" * 32]}),
    ("POST", "chunks/damage", {"reports": []}),
]


@pytest.fixture
def world(request):
    services = inprocess.memory_services(request.node.name.replace("_", "-")[:40])
    a = vaults.create_vault(services, "contoso", "laptops", "LRS")[0]
    b = vaults.create_vault(services, "fabrikam", "servers", "LRS")[0]
    return services, a, register(services, a), b, register(services, b)


def _snapshot(services) -> dict:
    return copy.deepcopy(services.index._docs)


def _ask(services, signer: SigningMachine, tenant: str, vault_id: str, method: str, subpath: str, body):
    path = f"/api/tenants/{tenant}/vaults/{vault_id}/{subpath}"
    data = json.dumps(body).encode() if body is not None else b""
    headers = identity.sign_request(signer.private_key, signer.id, method, path, None, data, services.clock())
    return api.answer(services, api.Call(method, path, {}, headers, data))


@pytest.mark.parametrize("method, subpath, body", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_route_of_another_tenants_vault_answers_as_a_vault_that_does_not_exist(world, method, subpath,
                                                                                     body):
    services, a, machine_a, b, machine_b = world
    before = _snapshot(services)
    answers = [_ask(services, machine_a, tenant, vault_id, method, subpath, body)
               for tenant, vault_id in (("fabrikam", b.id),  # B's vault, A's own key
                                        ("contoso", b.id),  # B's vault under A's tenant
                                        ("fabrikam", "0" * 32))]  # a vault that does not exist
    after = _snapshot(services)
    assert answers[0] == answers[1] == answers[2] and answers[0][0] == 401
    assert after == before, "nothing of B's (or anyone's) changed, not even a nonce"
    mine = _ask(services, machine_b, "fabrikam", b.id, method, subpath, body)
    assert mine[0] != 401, "the route itself is open to B's own machine"


@pytest.mark.parametrize("queue", AGENT_QUEUES)
def test_crafted_messages_for_another_tenants_vault_are_poisoned_and_change_nothing(world, queue):
    services, a, machine_a, b, machine_b = world
    fields = {"ingest": {"type": "chunks", "chunks": [{"id": "ab" * 32, "size": 100, "md5": "A" * 22 + "=="}]},
              "commit": {"type": "commit", "pointId": POINT, "item": "laptop", "createdAt": "2026-11-25T12:00:00+00:00",
                         "chunkCount": 0, "manifestChunks": 0, "stats": {}},
              "restore": {"type": "restore", "pointId": POINT}}[queue]
    common = {"v": formats.SCHEMA_VERSION, "id": "crafted", **fields}
    crafted = [
        signed_json({**common, "tenantId": "fabrikam", "vaultId": b.id}, machine_a),  # A's key, B's vault
        signed_json({**common, "tenantId": "fabrikam", "vaultId": b.id, "machine": machine_b.id}, machine_a),
        signed_json({**common, "tenantId": "contoso", "vaultId": b.id}, machine_a),  # B's vault in A's tenant
    ]
    handler = inprocess.QUEUE_HANDLERS[queue]
    before = _snapshot(services)
    for text in crafted:
        delivery.deliver(services, queue, text.encode(), lambda message: handler(services, message))
    assert _snapshot(services) == before
    poisoned = [Poisoned.parse(base64.b64decode(m)) for m in services.queue(f"{queue}-poison").peek()]
    assert [p.message for p in poisoned] == crafted and all(p.attempts == 1 for p in poisoned)
