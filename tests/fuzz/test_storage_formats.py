"""Fuzz of what the service and the agent read back from storage: reference lists
(formats.decode_refs: MalformedMessage), manifest lines (formats.parse_manifest_line: a
ValueError), manifest entries and the manifest root (messages.ManifestEntry and ManifestRoot:
MalformedMessage), and the manifest as the restore reads it (skyvault/restore.py's spooled
manifest: RestoreFailed)."""
from __future__ import annotations

import json

import pytest
from hypothesis import example, given, strategies as st

from shared import formats
from shared.formats import MalformedMessage
from shared.messages import ManifestEntry, ManifestRoot
from skyvault.restore import RestoreFailed, _SpooledManifest
from tests.fuzz.inputs import FUZZ, FUZZ_LARGE, as_parsed, json_values, mutated, mutated_bytes, nasty_texts, to_json

IDS = sorted(f"{n:064x}" for n in (1, 2, 0xabc, 2 ** 255))
ENTRIES = [
    {"path": "home", "mode": 0o755, "mtime": 1, "type": "dir", "uid": 0, "gid": 0, "user": "root", "group": "root",
     "xattrs": {"user.tag": "dmFsdWU="}},
    {"path": "home/a.txt", "mode": 0o644, "mtime": 1_700_000_000_000_000_000, "type": "file", "size": 10,
     "extents": [[IDS[0], 0, 6], [IDS[1], 4, 4]]},
    {"path": "home/b.txt", "mode": 0o644, "mtime": 2, "type": "hardlink", "target": "home/a.txt"},
    {"path": "home/c", "mode": 0o777, "mtime": 3, "type": "symlink", "target": "../etc/passwd"},
    {"path": "home/d", "mode": 0o600, "mtime": 4, "type": "chardev", "major": 1, "minor": 3},
    {"path": "home/e", "mode": 0o600, "mtime": 5, "type": "fifo"},
    {"path": "home/f\udcff", "mode": 0o644, "mtime": 6, "type": "file", "size": 0, "extents": []},
]
ROOT = {"version": 2, "vaultId": "v" * 32, "pointId": "20261202T101500Z-1a2b3c4d", "item": "laptop",
        "createdAt": "2026-12-02T10:15:00+00:00", "sources": ["/home"], "manifestChunks": IDS[:2],
        "stats": {"files": 2}}


# Reference lists

@FUZZ
@given(st.binary(max_size=400) | nasty_texts)
@example(b"\n" * 65)
@example((IDS[1] + "\n" + IDS[0] + "\n").encode())
def test_a_reference_list_of_any_bytes_is_whole_sorted_ids_or_refused(data):
    _refs_or_refused(data)


@FUZZ
@given(mutated_bytes(formats.encode_refs(IDS)))
def test_a_changed_reference_list_is_still_whole_sorted_ids_or_refused(data):
    _refs_or_refused(data)


def _refs_or_refused(data: bytes) -> None:
    try:
        ids = formats.decode_refs(data)
    except MalformedMessage:
        return
    assert formats.encode_refs(ids) == data and ids == sorted(set(ids))


# Manifest lines and entries

def _entry_or_refused(doc) -> None:
    try:
        doc = as_parsed(doc)
    except ValueError:  # json refuses to read the text
        return
    try:
        entry = ManifestEntry.from_doc(doc)
    except MalformedMessage:
        return
    assert ManifestEntry.from_doc(entry.to_doc()) == entry
    assert "\0" not in entry.path and ".." not in entry.path.split("/")


@FUZZ
@given(json_values)
def test_any_json_value_is_a_manifest_entry_or_refused(doc):
    _entry_or_refused(doc)


@FUZZ
@given(st.sampled_from(ENTRIES).flatmap(mutated))
def test_a_changed_manifest_entry_is_one_or_refused(doc):
    _entry_or_refused(doc)


def _line_or_refused(line: bytes) -> None:
    try:
        doc = formats.parse_manifest_line(line)
    except ValueError:  # json's refusal (MalformedMessage is one too)
        return
    _entry_or_refused(doc)


@FUZZ_LARGE
@given(st.binary(max_size=200) | nasty_texts)
def test_a_manifest_line_of_any_bytes_is_parsed_or_refused(line):
    _line_or_refused(line)


@FUZZ
@given(st.sampled_from(list(formats.manifest_lines(ENTRIES))).flatmap(mutated_bytes))
def test_a_changed_manifest_line_is_parsed_or_refused(line):
    _line_or_refused(line)


def _spooled(tmp_path, lines: list[bytes]) -> _SpooledManifest:
    spool = tmp_path / "manifest"
    spool.write_bytes(b"".join(lines))
    return _SpooledManifest(str(spool), ROOT["pointId"])


def _restored_or_refused(tmp_path, lines: list[bytes]) -> None:
    with _spooled(tmp_path, lines) as manifest:
        try:
            manifest.check(None)
            list(manifest.entries(lambda entry: True))
        except RestoreFailed:
            pass


@FUZZ
@given(st.lists(st.sampled_from(list(formats.manifest_lines(ENTRIES))), max_size=8), st.data())
def test_the_restore_refuses_a_changed_manifest_with_restore_failed(tmp_path_factory, lines, data):
    if lines:
        at = data.draw(st.integers(0, len(lines) - 1))
        lines[at] = data.draw(mutated_bytes(lines[at]) | st.sampled_from(ENTRIES).flatmap(mutated).map(
            lambda doc: to_json(doc) + b"\n"))
    _restored_or_refused(tmp_path_factory.mktemp("spool"), lines)


DEEP_LINE = b'{"path": "a", "xattrs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"


def test_a_manifest_line_nested_too_deep_is_refused_as_a_value_error():
    with pytest.raises(ValueError):
        formats.parse_manifest_line(DEEP_LINE)


def test_the_restore_refuses_a_line_nested_too_deep(tmp_path):
    with pytest.raises(RestoreFailed):
        _spooled(tmp_path, [DEEP_LINE]).check(None)


def test_the_restore_refuses_a_path_with_a_lone_surrogate(tmp_path):
    with pytest.raises(RestoreFailed):
        _spooled(tmp_path, [b'{"path":"a\\ud800","mode":420,"mtime":1,"type":"fifo"}\n']).check(None)


def test_an_extended_attribute_value_not_ascii_is_refused():
    with pytest.raises(MalformedMessage):
        ManifestEntry.from_doc({"path": "a", "mode": 0, "mtime": 0, "type": "fifo", "xattrs": {"user.x": "\u00e9"}})


# Manifest root

def _root_or_refused(doc) -> None:
    try:
        doc = as_parsed(doc)
    except ValueError:  # json refuses to read the text
        return
    try:
        root = ManifestRoot.from_doc(doc)
    except MalformedMessage:
        return
    assert ManifestRoot.from_doc(json.loads(json.dumps(root.to_doc()))) == root


@FUZZ
@given(json_values)
def test_any_json_value_is_a_manifest_root_or_refused(doc):
    _root_or_refused(doc)


@FUZZ
@given(mutated(ROOT))
def test_a_changed_manifest_root_is_one_or_refused(doc):
    _root_or_refused(doc)
