"""Fuzz of multi-user authorization's inputs (shared/service/protection.py): the approval token
an operator passes (`--approval`), which permit() checks, and the request document the guard's
owner approves on their own machine (approve(), from `skyvault guard approve --request-file`).
A token is good for its request or refused with a Forbidden, a request document gives a token
or is refused with an Invalid; never another exception, and a refused token changes nothing."""
from __future__ import annotations

import base64
import copy
import json
from datetime import timedelta

import pytest
from hypothesis import example, given, strategies as st

from shared import formats
from shared.errors import Forbidden, Invalid
from shared.service import protection
from shared.service.protection import Operation
from skyvault.commands import guard as guard_command
from skyvault.vaultclient import AgentError
from tests.fuzz.inputs import (FUZZ, FUZZ_LARGE, NASTY_STRINGS, as_parsed, json_values, mutated, mutated_bytes,
                               nasty_texts, read_or_refused, to_json)
from tests.fuzz.world import NOW, World

WORLD = World("guard")
KEY_PEM, PUBLIC_KEY = protection.new_guard_key()
_vault = WORLD.services.index.get_vault(WORLD.tenant, WORLD.vault_id)
_vault = protection.enable_guard(WORLD.services, _vault, "alice", PUBLIC_KEY)
REQUEST_ID = protection.request_approval(WORLD.services, _vault, Operation.DISABLE_GUARD, _vault.name)
VAULT = WORLD.services.index.get_vault(WORLD.tenant, WORLD.vault_id)
REQUEST = protection.request_document(VAULT, REQUEST_ID)
TOKEN = protection.approve(KEY_PEM, VAULT.id, REQUEST, NOW)
PAYLOAD = protection.approval_payload(TOKEN)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _signed_token(payload_json: bytes) -> str:
    """A token of these payload bytes, signed with the guard owner's key, as approve() signs."""
    key = protection._private_key(KEY_PEM)
    try:
        signature = key.sign(protection.signed_bytes(json.loads(payload_json)))
    except (ValueError, TypeError, KeyError, RecursionError):
        signature = bytes(64)
    return ".".join((protection.TOKEN_PREFIX, _b64(payload_json), _b64(signature)))


def _permitted_or_refused(token) -> None:
    vault = copy.deepcopy(VAULT)
    try:
        used = protection.permit(vault, Operation.DISABLE_GUARD, vault.name, token, NOW)
    except Forbidden:
        assert vault.guard == VAULT.guard
        return
    assert used and vault.guard["requests"][REQUEST_ID]["usedAt"]


tokens = (st.text(max_size=100) | st.sampled_from(NASTY_STRINGS)
          | st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=200).map("sva1.".__add__)
          | mutated_bytes(TOKEN.encode()).map(lambda raw: raw.decode("utf-8", "replace"))
          | (json_values.map(to_json) | mutated(PAYLOAD).map(to_json) | nasty_texts.filter(lambda t: len(t) < 3000)
             ).map(_signed_token))


@FUZZ_LARGE
@given(tokens)
@example(TOKEN)
@example(TOKEN + ".")
@example(" " + TOKEN + "\n")
@example("sva1." + "A" * 4090)
def test_any_approval_token_is_good_for_its_request_or_refused(token):
    _permitted_or_refused(token)


def test_an_approval_token_nested_too_deep_is_refused():
    token = "sva1." + _b64(b"[" * 1500 + b"]" * 1500) + "." + _b64(bytes(64))
    assert len(token) <= protection.MAX_TOKEN_CHARS
    with pytest.raises(Forbidden):
        protection.permit(copy.deepcopy(VAULT), Operation.DISABLE_GUARD, VAULT.name, token, NOW)


# The owner's side

def _approved_or_refused(request) -> None:
    try:
        request = as_parsed(request)
    except ValueError:
        return
    try:
        token = protection.approve(KEY_PEM, VAULT.id, request, NOW)
    except Invalid:
        return
    payload = protection.approval_payload(token)
    assert payload["vault"] == VAULT.id and payload["request"] == request["request"]


@FUZZ
@given(json_values | mutated(REQUEST))
@example({**REQUEST, "requestedAt": "9999-12-31T23:00:00+00:00"})
@example({**REQUEST, "requestedAt": "0001-01-01T00:00:00+14:00"})
def test_any_request_document_is_approved_or_refused(request):
    _approved_or_refused(request)


def test_a_request_dated_at_the_end_of_time_is_refused():
    with pytest.raises(Invalid):
        protection.approve(KEY_PEM, VAULT.id, {**REQUEST, "requestedAt": "9999-12-31T23:00:00+00:00"}, NOW,
                           timedelta(hours=1))




@FUZZ_LARGE
@given(st.binary(max_size=200) | nasty_texts.filter(lambda t: len(t) < 10_000 or t.startswith(b"{"))
       | mutated_bytes(formats.canonical(REQUEST)))
def test_any_request_file_is_read_or_refused(tmp_path_factory, data):
    read_or_refused(tmp_path_factory.mktemp("request") / "request.json", data, guard_command._read_request)


@pytest.mark.parametrize("data", [b'{"v": ' + b"1" * 5000 + b"}", b"[" * 100_000 + b"]" * 100_000],
                         ids=["5000-digit integer", "deep nesting"])
def test_a_request_file_that_json_cannot_read_is_refused(tmp_path, data):
    path = tmp_path / "request.json"
    path.write_bytes(data)
    with pytest.raises(AgentError):
        guard_command._read_request(str(path))
