"""Fuzz of the whole HTTP path (functions.api.answer on in-memory services): a request of any
method, path, query, headers and body, a valid request of each route with its body changed and
signed again, and one with its signed parts changed after signing. Every answer is 200 or a
4xx with an {"error": text} body, never a 5xx or an exception; a refused request changes
nothing the service stores (a validly signed one records its nonce, which is what makes a
replay fail, and nothing else)."""
from __future__ import annotations

import json

import pytest
from hypothesis import example, given, strategies as st

from functions import api
from shared import identity
from shared.domain import chunk_blob_name, container_name
from shared.messages import ChunkDeclaration, ChunksMessage
from tests.fuzz.inputs import (FUZZ, FUZZ_LARGE, NASTY_STRINGS, NASTY_TEXTS, in_field, json_values, mutated,
                               mutated_bytes, nasty_texts, to_json)
from tests.fuzz.world import CHUNK_BLOB, MD5, NOW, World, body_of, valid_requests

WORLD = World("api")
ROUTES = valid_requests(WORLD)
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", "post", "", "POST ", "G\u00c9T")
SUBPATHS = sorted({subpath for _, subpath, _, _ in ROUTES.values()} | {"", "/", "machines/", "chunks", "runs/",
                                                                      "jobs/", "jobs/a/b", "items//schedule",
                                                                      "chunks/lookup/", "chunks/lookup\n"})
texts = st.text(max_size=40) | st.sampled_from(NASTY_STRINGS)


def _answered(call: api.Call, signed: bool) -> tuple[int, dict]:
    """The answer of `call`, checked: 200, or a 4xx with an error that
    changed nothing stored (but a signed call's nonce)."""
    before, nonces = WORLD.state(), WORLD.nonces()
    status, answer = api.answer(WORLD.services, call)
    json.dumps(answer)  # what _serve sends
    assert status == 200 or 400 <= status < 500, (status, answer)
    if status != 200:
        assert set(answer) == {"error"} and isinstance(answer["error"], str) and answer["error"]
        after = WORLD.state()
        assert after == before, (status, answer, before.changes(after))
        assert WORLD.nonces() - nonces <= (1 if signed else 0)
    return status, answer


def _path(draw_subpath: str, tenant: str | None = None, vault: str | None = None) -> str:
    return f"/api/tenants/{tenant or WORLD.tenant}/vaults/{vault or WORLD.vault_id}/{draw_subpath}"


paths = (texts | st.sampled_from(SUBPATHS).map(_path) | st.tuples(st.sampled_from(SUBPATHS), texts, texts).map(
    lambda t: _path(*t)) | st.sampled_from(SUBPATHS).map(lambda s: "/api/tenants/contoso/vaults/fuzz/" + s))
header_names = st.sampled_from(identity.HEADERS + ("X-Skyvault-Signature", "content-type")) | texts
headers = st.dictionaries(header_names, texts, max_size=6)
bodies = st.binary(max_size=200) | nasty_texts | json_values.map(to_json)


@FUZZ_LARGE
@given(st.sampled_from(METHODS) | texts, paths, st.dictionaries(texts, texts, max_size=3), headers, bodies)
@example("POST", _path("chunks/lookup"), {}, {}, b"")
def test_any_request_is_refused_with_a_4xx_and_changes_nothing(method, path, params, headers, body):
    status, _ = _answered(api.Call(method, path, params, headers, body), signed=False)
    # Enrolment reads its body (which holds the ticket) before anything: 400 for any vault alike.
    assert status in (401, 404) or status == 400 and method == "POST" and path.endswith("/machines")


def _signed(name: str, body: bytes | None = None, params: dict[str, str] | None = None) -> api.Call:
    method, subpath, valid_params, doc = ROUTES[name]
    if body is None:
        body = b"" if doc is None else body_of(doc)
    return WORLD.call(method, subpath, body, valid_params if params is None else params)


def test_every_valid_request_is_answered():
    for name in ROUTES:
        status, answer = _answered(_signed(name), signed=True)
        assert status in (200, 404), (name, status, answer)  # 404: a job not made yet


@st.composite
def _changed_bodies(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(ROUTES)))
    doc = ROUTES[name][3]
    if doc is None:
        return name, draw(bodies)
    how = draw(st.sampled_from(("doc", "doc", "doc", "bytes", "field", "nasty")))
    if how == "doc":
        return name, to_json(WORLD.resigned_body(draw(mutated(doc))))
    if how == "bytes":
        return name, draw(mutated_bytes(body_of(doc)))
    if how == "field":
        return name, draw(in_field(draw(st.sampled_from(sorted(doc)))))
    return name, draw(nasty_texts)


@FUZZ_LARGE
@given(_changed_bodies())
@example(("lookup", b'{"ids": ' + b"7" * 5000 + b"}"))
@example(("lookup", b'{"ids": [' + b"[" * 990 + b"]" * 990 + b"]}"))
@example(("commit", b'{"commit": {"v": 2, "stats": {"a": ' + b"[" * 990 + b"]" * 990 + b"}}}"))
@example(("run", b'{"runId": NaN, "item": Infinity}'))
@example(("keycheck", b'{"keyCheck": "\\ud800"}'))
@example(("keycheck", b'{"keyCheck": "\xed\xa0\x80"}'))
@example(("restore", b'{"jobId": "a", "jobId": "b", "pointId": "20261202T101500Z-1a2b3c4d"}'))
@example(("lookup", b" " * (4 * 48 * 1024 + 1)))
@example(("damage", b"\xff\xfe\xfd"))
def test_a_valid_request_with_a_changed_body_is_answered_200_or_refused(name_and_body):
    name, body = name_and_body
    _answered(_signed(name, body), signed=True)


def test_a_commit_request_with_a_forged_commit_changes_nothing():
    fresh = "cd" * 32  # a chunk uploaded, not yet ingested
    WORLD.services.primary.container(container_name(WORLD.vault_id)).put(chunk_blob_name(fresh), CHUNK_BLOB)
    chunks = WORLD.signed_doc(ChunksMessage, id="m-2", chunks=(ChunkDeclaration(fresh, len(CHUNK_BLOB), MD5),))
    forged = {"commit": {**WORLD.commit_doc(), "sig": "A" * 86 + "=="}, "chunks": chunks}
    before = WORLD.state()
    status, _ = api.answer(WORLD.services, _signed("commit", body_of(forged)))
    assert status == 403
    assert WORLD.state() == before, before.changes(WORLD.state())


def _nasty_header(value: str) -> st.SearchStrategy[str]:
    return st.sampled_from([
        value + "\n", value.upper(), value[:-1], value + "=", " " + value, value.replace("+00:00", ""),
        value.replace("+00:00", "Z"), value.replace("2026", "1970"), value.replace("2026", "9999"),
        "\u00e9" * len(value), value[:-2] + "\u00e9=", "x" * 100_000, "", "2026-12-02T10:15:00",
        "2026-12-02", "2026-12-02T10:15:00+25:00", "0" * 40, "1" * 5000, "\ud800", NOW.isoformat()])


@st.composite
def _changed_signed_calls(draw) -> tuple[api.Call, bool]:
    """A valid request changed after signing (refused: 401), or with a header it may change
    (the content type, which is not signed), and whether it may still be accepted."""
    call = _signed(draw(st.sampled_from(sorted(ROUTES))))
    what = draw(st.sampled_from(("header", "header", "drop", "path", "method", "params", "body", "unsigned")))
    headers = dict(call.headers)
    if what == "header":
        name = draw(st.sampled_from(identity.HEADERS))
        headers[name] = draw(_nasty_header(headers[name]) | texts)
        return api.Call(call.method, call.path, call.params, headers, call.body), headers[name] == call.headers[name]
    if what == "drop":
        del headers[draw(st.sampled_from(identity.HEADERS))]
        return api.Call(call.method, call.path, call.params, headers, call.body), False
    if what == "path":
        path = draw(st.sampled_from([call.path + "/", call.path.upper(), call.path.replace("/api", ""),
                                     call.path.replace(WORLD.vault_id, WORLD.vault_id[::-1]), call.path + "x"]))
        return api.Call(call.method, path, call.params, headers, call.body), path == call.path
    if what == "method":
        method = draw(st.sampled_from(METHODS))  # the signature covers it in upper case
        return api.Call(method, call.path, call.params, headers, call.body), method.upper() == call.method
    if what == "params":
        params = draw(st.dictionaries(texts, texts, min_size=1, max_size=3))
        return api.Call(call.method, call.path, params, headers, call.body), params == call.params
    if what == "body":
        body = draw(mutated_bytes(call.body))
        return api.Call(call.method, call.path, call.params, headers, body), body == call.body
    headers["content-type"] = draw(texts)
    return api.Call(call.method, call.path, call.params, headers, call.body), True


@FUZZ_LARGE
@given(_changed_signed_calls())
def test_a_request_changed_after_signing_is_refused_and_changes_nothing(call_and_valid):
    call, still_valid = call_and_valid
    status, _ = _answered(call, signed=still_valid)
    enrolment = call.path == WORLD.path("machines")  # its body, which holds the ticket, is read first
    if not still_valid:
        assert status in (401, 404) or enrolment and status == 400


@pytest.mark.parametrize("where", ["params", "path"])
def test_a_request_with_a_lone_surrogate_in_its_path_or_query_is_refused(where):
    call = _signed("points")
    if where == "params":
        call = api.Call(call.method, call.path, {"item": "\ud800"}, call.headers, call.body)
    else:
        call = api.Call(call.method, call.path.replace("points", "items/\ud800/schedule"), {}, call.headers, b"")
    assert api.answer(WORLD.services, call)[0] == 401


@pytest.mark.parametrize("header, value", [
    ("x-skyvault-date", "2026-12-02T10:15:00"), ("x-skyvault-date", "2026-12-02"),
    ("x-skyvault-date", "2026-12-02T10:15:00+00:00\n"), ("x-skyvault-date", "\u0662026-12-02T10:15:00+00:00"),
    ("x-skyvault-date", "2026-12-02T10:15:00+00:00" + " " * 100_000), ("x-skyvault-signature", "\u00e9" * 88),
    ("x-skyvault-signature", "A" * 86 + "\u00e9="), ("x-skyvault-signature", "\ud800"),
    ("x-skyvault-machine", "\uff10" * 32), ("x-skyvault-nonce", "0" * 31 + "\n"),
], ids=["date without zone", "date alone", "date and newline", "non-ASCII digit", "huge date",
        "non-ASCII signature", "signature ending non-ASCII", "lone surrogate", "fullwidth digits", "nonce newline"])
def test_a_request_with_a_nasty_identity_header_is_refused_401(header, value):
    call = _signed("lookup")
    status, answer = _answered(api.Call(call.method, call.path, call.params, {**call.headers, header: value},
                                        call.body), signed=False)
    assert status == 401, answer


def test_a_replayed_request_is_refused_and_changes_nothing():
    call = _signed("lookup")
    assert _answered(call, signed=True)[0] == 200
    assert _answered(call, signed=False)[0] == 401


@FUZZ
@given(st.sampled_from(sorted(ROUTES)), st.sampled_from(NASTY_TEXTS[:20]) | st.binary(max_size=64))
def test_a_request_whose_route_takes_no_body_ignores_or_refuses_any(name, body):
    _answered(_signed(name, body), signed=True)
