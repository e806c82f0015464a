"""Fuzz of every parser in shared/messages.py: request bodies (parse_request_body), every class's
from_doc (requests, and the answers the agent reads from the service), the agents' signed
queue messages (parse_signed_message), the service's own queue messages, redelivery wrappers
and poison records. Each gives its message or refuses with a MalformedMessage (an Invalid),
never another exception; a message it gives is one its own to_doc gives back."""
from __future__ import annotations

import inspect
import json

import pytest
from hypothesis import example, given, strategies as st

from functions import api
from shared import messages
from shared.errors import Invalid
from shared.formats import MalformedMessage
from tests.fuzz.inputs import (FUZZ, FUZZ_LARGE, NASTY_STRINGS, as_parsed, in_field, json_values, mutated,
                               mutated_bytes, nasty_texts, to_json)
from tests.fuzz.world import CHUNK_ID, MD5, POINT_ID, World, body_of, valid_requests

WORLD = World("messages")
ROUTES = valid_requests(WORLD)
# Every class that parses a document, found rather than listed: a new one is fuzzed too.
PARSED = sorted((c for c in vars(messages).values() if inspect.isclass(c) and c.__module__ == messages.__name__
                 and "from_doc" in vars(c)), key=lambda c: c.__name__)
REQUESTS = {"lookup": messages.LookupRequest, "commit": messages.CommitRequest, "keycheck": messages.KeyCheckRequest,
            "restore": messages.RestoreRequest, "run": messages.RunRequest, "check": messages.ChunkCheckRequest,
            "damage": messages.DamageRequest, "enrol": messages.EnrolRequest}
ANSWERS = {"lookup": messages.LookupAnswer, "commit": messages.PointView, "keycheck": messages.KeyCheckAnswer,
           "credentials": messages.Credentials, "restore": messages.JobView, "status": messages.VaultStatus,
           "schedule": messages.ItemSchedule, "run": messages.RunAnswer, "heartbeat": messages.RunAnswer,
           "epoch": messages.EpochAnswer, "check": messages.ChunkCheckAnswer, "damage": messages.DamageAnswer,
           "enrol": messages.EnrolAnswer}


def _valid_docs() -> list[tuple[type, dict]]:
    """Valid documents of the classes: the requests as agents send them, the answers as the
    service gave them, and the parts of both."""
    docs = [(REQUESTS[name], ROUTES[name][3]) for name in REQUESTS]
    for name, cls in ANSWERS.items():
        method, subpath, params, doc = ROUTES[name]
        status, answer = api.answer(WORLD.services, WORLD.call(method, subpath, b"" if doc is None else body_of(doc),
                                                               params))
        assert status == 200, (name, answer)
        docs.append((cls, answer))
    docs += [(messages.ChunkDeclaration, {"id": CHUNK_ID, "size": 1000, "md5": MD5}),
             (messages.ChunkDeclaration, {"id": CHUNK_ID, "blob": f"chunks/ab/{CHUNK_ID}.0123456789abcdef"}),
             (messages.EnrolmentTicket, WORLD.ticket),
             (messages.ItemStatus, {"item": "laptop", "policy": "default", "lastPointAt": None, "missed": True,
                                    "missedRun": "2026-12-01T21:00:00+00:00"})]
    for cls, doc in list(docs):
        if cls is messages.JobView:
            docs.append((messages.RestorePlan, doc["plan"]))
            docs.append((messages.RegionAccess, doc["plan"]["regions"][0]))
        if cls is messages.VaultStatus:
            docs.append((messages.ReplicationStatus, doc["replication"]))
        if cls is messages.DamageRequest:
            docs.append((messages.DamageReport, doc["reports"][0]))
        if cls is messages.DamageAnswer:
            docs.append((messages.DamageOutcome, doc["outcomes"][0]))
    return docs


VALID = _valid_docs()


def _parsed_or_refused(cls: type, doc) -> None:
    try:
        doc = as_parsed(doc)
    except ValueError:  # json refuses to read the text
        return
    try:
        parsed = cls.from_doc(doc)
    except MalformedMessage:
        return
    if hasattr(parsed, "to_doc"):
        assert cls.from_doc(as_parsed(parsed.to_doc())) == parsed


def test_every_valid_document_parses_and_gives_itself_back():
    for cls, doc in VALID:
        _parsed_or_refused(cls, doc)
        assert cls.from_doc(doc) is not None


@FUZZ
@given(st.sampled_from(PARSED), json_values)
def test_any_json_value_is_a_message_or_refused(cls, doc):
    _parsed_or_refused(cls, doc)


@FUZZ
@given(st.sampled_from(PARSED), st.dictionaries(st.sampled_from(sorted({k for _, d in VALID for k in d})),
                                                json_values, max_size=8))
def test_an_object_of_known_field_names_is_a_message_or_refused(cls, doc):
    _parsed_or_refused(cls, doc)


@FUZZ
@given(st.sampled_from(VALID).flatmap(lambda valid: st.tuples(st.just(valid[0]), mutated(valid[1]))))
def test_a_changed_valid_document_is_a_message_or_refused(cls_and_doc):
    _parsed_or_refused(*cls_and_doc)


# Request bodies

def _body_or_refused(body: bytes, cls: type | None = None) -> None:
    try:
        doc = messages.parse_request_body(body)
    except MalformedMessage:
        return
    assert isinstance(doc, dict)
    for request in [cls] if cls else REQUESTS.values():
        try:
            request.from_doc(doc)
        except MalformedMessage:
            pass


@FUZZ_LARGE
@given(st.binary(max_size=300) | nasty_texts | json_values.map(to_json))
@example(b'{"ids": ' + b"7" * 5000 + b"}")
@example(b'{"ids": [NaN, Infinity]}')
@example(b"[" * 100_000 + b"]" * 100_000)
@example(b'{"keyCheck": "\\ud800"}')
@example(b'{"keyCheck": "\xed\xa0\x80"}')
@example(b"\xff\xfe")
@example(b'{"ids": [], "ids": {}}')
def test_any_request_body_is_an_object_or_refused(body):
    _body_or_refused(body)


@FUZZ_LARGE
@given(st.sampled_from(sorted(REQUESTS)).flatmap(lambda name: st.tuples(st.just(REQUESTS[name]), st.one_of(
    mutated(ROUTES[name][3]).map(to_json), mutated_bytes(body_of(ROUTES[name][3])),
    st.sampled_from(sorted(ROUTES[name][3])).flatmap(in_field)))))
def test_a_changed_request_body_is_its_request_or_refused(cls_and_body):
    cls, body = cls_and_body
    _body_or_refused(body, cls)


# Agents' signed queue messages

SIGNED = {messages.ChunksMessage: WORLD.chunks_doc(), messages.CommitMessage: WORLD.commit_doc(),
          messages.RestoreMessage: WORLD.restore_doc()}


def _signed_or_refused(text: str | bytes, expected: type | None) -> None:
    try:
        message = messages.parse_signed_message(text, expected)
    except MalformedMessage:
        return
    assert expected is None or type(message) is expected
    assert messages.signed_message_from_doc(as_parsed(message.to_doc())) == message


signed_texts = (st.binary(max_size=300) | nasty_texts | json_values.map(to_json)
                | st.sampled_from(list(SIGNED.values())).flatmap(mutated).map(WORLD.resigned).map(to_json)
                | st.sampled_from(list(SIGNED.values())).map(body_of).flatmap(mutated_bytes))


@FUZZ_LARGE
@given(signed_texts, st.sampled_from([None, *SIGNED]))
def test_any_queue_text_is_an_agent_message_or_refused(text, expected):
    _signed_or_refused(text, expected)


@FUZZ
@given(st.sampled_from(list(SIGNED.values())).flatmap(mutated).map(WORLD.resigned).map(to_json),
       st.sampled_from([None, *SIGNED]))
def test_a_changed_agent_message_decoded_as_text_is_one_or_refused(text, expected):
    try:
        text = text.decode("utf-8")
    except UnicodeDecodeError:
        return
    _signed_or_refused(text, expected)


def test_a_message_text_holding_a_lone_surrogate_is_refused():
    with pytest.raises(MalformedMessage):
        messages.parse_signed_message('{"v": 2, "type": "chunks", "id": "\ud800"}')


# The service's own queue messages, redelivery wrappers and poison records

SERVICE = {messages.ReplicateMessage: messages.ReplicateMessage("contoso", "v" * 32, (f"chunks/ab/{CHUNK_ID}",),
                                                                POINT_ID).to_json(),
           messages.UsageMessage: json.dumps({"v": 1, "tenantId": "contoso", "vaultId": "v" * 32, "events": [
               {"id": f"stored-{CHUNK_ID}", "kind": "stored", "quantity": 1000, "at": "2026-12-02T10:15:00+00:00",
                "pointId": POINT_ID, "itemId": "laptop", "frontEndBytes": 10}]}),
           messages.Poisoned: messages.Poisoned("ingest", "bad", "{}", 1, "2026-12-02T10:15:00+00:00").to_json()}


def _service_message_or_refused(cls: type, text: bytes) -> None:
    try:
        message = cls.parse(text)
    except MalformedMessage:
        return
    assert cls.parse(message.to_json()) == message


service_texts = st.sampled_from(sorted(SERVICE, key=lambda c: c.__name__)).flatmap(lambda cls: st.tuples(
    st.just(cls), st.binary(max_size=200) | nasty_texts | json_values.map(to_json)
    | mutated(json.loads(SERVICE[cls])).map(to_json) | mutated_bytes(SERVICE[cls].encode())))


@FUZZ_LARGE
@given(service_texts)
def test_any_service_queue_text_is_its_message_or_refused(cls_and_text):
    _service_message_or_refused(*cls_and_text)


WRAPPED = messages.Redelivery(json.dumps(WORLD.restore_doc()), 3, "region down").to_json()


@FUZZ_LARGE
@given(st.text(max_size=200) | st.sampled_from(NASTY_STRINGS)
       | (nasty_texts | mutated(json.loads(WRAPPED)).map(to_json) | mutated_bytes(WRAPPED.encode())).map(
           lambda raw: raw.decode("utf-8", "replace")))
@example('{"skyvaultRedelivery": {"attempt": 1, "reason": ""}, "message": "\\ud800"}')
@example('{"skyvaultRedelivery": 1}')
def test_any_text_unwraps_to_its_delivery_or_is_refused(text):
    try:
        delivery = messages.Redelivery.unwrap(text)
    except MalformedMessage:
        return
    assert 0 <= delivery.attempt <= 10_000 and isinstance(delivery.message, str)
    if delivery.attempt == 0 and not delivery.reason:
        assert delivery.message == text or messages.Redelivery.KEY in text[:40]


def test_refusals_are_invalid_errors():
    """What the API answers 400 and delivery poisons at once."""
    assert issubclass(MalformedMessage, Invalid)
