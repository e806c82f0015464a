"""Id patterns, manifest lines and reference lists (signed requests: test_identity.py)."""
import pytest

from shared import formats, identity

CID = "ab" * 32


def test_manifest_lines_keep_any_file_name():
    entries = [{"path": "dir/é ü 漢字.txt", "type": "file", "size": 1, "extents": [[CID, 0, 1]]},
               {"path": "dir/" + b"bad\xff\xfename".decode("utf-8", "surrogateescape"), "type": "dir"}]
    lines = list(formats.manifest_lines(entries))
    assert [formats.parse_manifest_line(line) for line in lines] == entries


@pytest.mark.parametrize("pattern, good", [
    (formats.HEX_ID, CID), (formats.NAME_ID, "laptop-42"), (formats.POINT_ID, "20261125T120000Z-0000abcd"),
    (formats.B64_MD5, "A" * 22 + "=="), (identity.SIGNATURE, "A" * 86 + "=="),
    (identity.PUBLIC_KEY, "A" * 43 + "="), (identity.MACHINE_ID, "ab" * 16), (identity.NONCE, "cd" * 16)])
def test_id_patterns_refuse_a_trailing_newline(pattern, good):
    """"$" also matches before a final newline: every pattern must end at the string's end."""
    assert pattern.match(good)
    assert not pattern.match(good + "\n") and not pattern.match(good + "\n" + good)


def test_refs_round_trip_and_validation():
    ids = [CID, "cd" * 32]
    assert formats.decode_refs(formats.encode_refs(ids)) == ids
    with pytest.raises(formats.MalformedMessage, match="not whole lines"):
        formats.decode_refs(b"nothex\n")
    with pytest.raises(formats.MalformedMessage, match="bad chunk id .* at line 2"):
        formats.decode_refs(formats.encode_refs([CID]) + b"x" * 64 + b"\n")
    with pytest.raises(formats.MalformedMessage, match="bad chunk id"):
        formats.decode_refs(CID.encode() + b" ")
    for unsorted in ([ids[1], ids[0]], [CID, CID]):
        with pytest.raises(formats.MalformedMessage, match="not sorted distinct ids at line 2"):
            formats.decode_refs(formats.encode_refs(unsorted))
