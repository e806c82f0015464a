"""Signing raw message documents in tests, so that they can forge and malform what no agent
would send: the wire rule of docs/design.md ("Queue messages"), not the agent's code; and
`register`, a machine of a vault put straight into the index, as enrolment would leave it."""
from __future__ import annotations

import json
from dataclasses import dataclass

from shared import formats, identity
from shared.domain import Machine, Vault
from shared.service.context import Services, iso_time


@dataclass(frozen=True)
class SigningMachine:
    id: str
    private_key: str


def register(services: Services, vault: Vault, name: str = "test-machine") -> SigningMachine:
    """A new machine of `vault`, registered as `POST machines` registers one."""
    private_key = identity.new_private_key()
    public_key = identity.public_key_of(private_key)
    machine_id = identity.machine_id_of(public_key)
    services.index.create_machine(Machine(id=machine_id, vault_id=vault.id, name=name, public_key=public_key,
                                          enrolled_at=iso_time(services.clock()), ticket_id="0" * 32))
    return SigningMachine(machine_id, private_key)


def signed_json(doc: dict, machine: SigningMachine) -> str:
    """`doc` as sent by `machine`: its `machine` field set (unless given) and signed."""
    unsigned = {"machine": machine.id, **{k: v for k, v in doc.items() if k != "sig"}}
    return json.dumps({**unsigned, "sig": identity.sign(machine.private_key, formats.canonical(unsigned))},
                      separators=(",", ":"))
