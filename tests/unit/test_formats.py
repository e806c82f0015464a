"""Queue messages, signed requests, manifest lines and reference lists."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from shared import formats

KEY = b"k" * 32
CID = "ab" * 32


def chunks_message(**overrides):
    body = {"v": 1, "type": "chunks", "id": "m1", "tenantId": "t1", "vaultId": "v1",
            "chunks": [{"id": CID, "size": 1000, "md5": "A" * 22 + "=="}]}
    body.update(overrides)
    return body


def test_signed_message_round_trip():
    text = formats.signed_message(chunks_message(), KEY)
    body = formats.parse_message(text)
    formats.verify_message(body, KEY)
    assert body["chunks"][0]["id"] == CID


def test_altered_message_fails_signature():
    body = json.loads(formats.signed_message(chunks_message(), KEY))
    body["chunks"][0]["size"] = 2000
    with pytest.raises(formats.BadSignature):
        formats.verify_message(formats.parse_message(json.dumps(body)), KEY)
    with pytest.raises(formats.BadSignature):
        formats.verify_message(formats.parse_message(formats.signed_message(chunks_message(), KEY)), b"x" * 32)


@pytest.mark.parametrize("text, error", [
    ("not json", "not JSON"),
    ("[1]", "not a JSON object"),
    (json.dumps({"v": 2}), "schema version"),
    (json.dumps({**chunks_message(), "sig": "0" * 64, "type": "nope"}), "unknown message type"),
    (json.dumps({**chunks_message(), "sig": "0" * 64, "vaultId": "../x"}), "'vaultId' has a bad format"),
    (json.dumps({**chunks_message(chunks=[]), "sig": "0" * 64}), "1 to 256 chunks"),
    (json.dumps({**chunks_message(chunks=[{"id": "zz", "size": 100, "md5": "A" * 22 + "=="}]), "sig": "0" * 64}),
     "'id' has a bad format"),
    (json.dumps({**chunks_message()}), "'sig' is missing"),
    ("x" * (formats.MAX_MESSAGE_BYTES + 1), "over"),
])
def test_malformed_messages_are_named(text, error):
    with pytest.raises(formats.MalformedMessage, match=error):
        formats.parse_message(text)


def test_too_big_message_is_refused_when_signing():
    many = [{"id": f"{i:064x}", "size": 1000, "md5": "A" * 22 + "=="} for i in range(600)]
    with pytest.raises(formats.MalformedMessage, match="over"):
        formats.signed_message(chunks_message(chunks=many), KEY)


def test_full_batch_fits():
    full = [{"id": f"{i:064x}", "size": 8 * 1024 * 1024, "md5": "A" * 22 + "=="}
            for i in range(formats.CHUNKS_PER_MESSAGE)]
    formats.parse_message(formats.signed_message(chunks_message(chunks=full), KEY))


def test_request_signatures():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    headers = formats.sign_request(KEY, "POST", "/api/x", b"{}", now)
    formats.verify_request(KEY, "POST", "/api/x", b"{}", headers, now + timedelta(seconds=30))
    with pytest.raises(formats.BadSignature, match="signature"):
        formats.verify_request(KEY, "POST", "/api/y", b"{}", headers, now)
    with pytest.raises(formats.BadSignature, match="signature"):
        formats.verify_request(KEY, "POST", "/api/x", b"{1}", headers, now)
    with pytest.raises(formats.BadSignature, match="from the service's clock"):
        formats.verify_request(KEY, "POST", "/api/x", b"{}", headers, now + timedelta(hours=1))
    with pytest.raises(formats.BadSignature, match="date"):
        formats.verify_request(KEY, "POST", "/api/x", b"{}", {}, now)


def test_manifest_lines_keep_any_file_name():
    entries = [{"path": "dir/é ü 漢字.txt", "type": "file", "size": 1, "extents": [[CID, 0, 1]]},
               {"path": "dir/" + b"bad\xff\xfename".decode("utf-8", "surrogateescape"), "type": "dir"}]
    lines = list(formats.manifest_lines(entries))
    assert [formats.parse_manifest_line(line) for line in lines] == entries


def test_refs_round_trip_and_validation():
    ids = [CID, "cd" * 32]
    assert formats.decode_refs(formats.encode_refs(ids)) == ids
    with pytest.raises(formats.MalformedMessage, match="bad chunk id"):
        formats.decode_refs(b"nothex\n")
