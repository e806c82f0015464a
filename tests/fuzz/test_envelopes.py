"""Fuzz of the chunk envelope and its framing (shared/crypto.py): any bytes, and a valid
envelope cut short, extended or with bits flipped, open to the plaintext they sealed or are
refused with a CryptoError (WrongKeyOrTampered when they do not authenticate, BadEnvelope when
they are not an envelope or frame of this version), never another exception."""
from __future__ import annotations

import dataclasses

import pytest
import zstandard
from hypothesis import example, given, strategies as st

from shared import crypto
from tests.fuzz.inputs import FUZZ, mutated_bytes
from tests.fuzz.world import fixed_keys

KEYS = fixed_keys()
VAULT = "0123456789abcdef0123456789abcdef"
PLAINTEXTS = (b"", b"a", b"hello world " * 100, bytes(range(256)) * 8)
CHUNKS = {crypto.chunk_id(KEYS, p): p for p in PLAINTEXTS}
ENVELOPES = {cid: crypto.encrypt_chunk(KEYS, VAULT, cid, p) for cid, p in CHUNKS.items()}
VALID_HEADER = crypto.HEADER.pack(crypto.MAGIC, crypto.FORMAT_VERSION, crypto.ALG_AES256_GCM, bytes(12))


def _opened_or_refused(cid: str, envelope: bytes) -> None:
    try:
        plaintext = crypto.decrypt_chunk(KEYS, VAULT, cid, envelope)
    except crypto.CryptoError:
        return
    assert plaintext == CHUNKS[cid] and envelope == ENVELOPES[cid]


@FUZZ
@given(st.sampled_from(sorted(CHUNKS)), st.binary(max_size=200) | st.binary(max_size=64).map(VALID_HEADER.__add__))
@example(sorted(CHUNKS)[0], b"")
@example(sorted(CHUNKS)[0], VALID_HEADER)
def test_any_bytes_are_refused_as_a_chunk_envelope(cid, envelope):
    _opened_or_refused(cid, envelope)


@FUZZ
@given(st.sampled_from(sorted(CHUNKS)).flatmap(lambda cid: st.tuples(st.just(cid), mutated_bytes(ENVELOPES[cid]))))
def test_a_changed_envelope_is_refused(chunk_and_envelope):
    _opened_or_refused(*chunk_and_envelope)


@FUZZ
@given(st.sampled_from(sorted(CHUNKS)), st.sampled_from(sorted(CHUNKS)), st.sampled_from(("vault", "key")))
def test_an_envelope_of_another_chunk_vault_or_key_is_refused(cid, other, what):
    envelope = ENVELOPES[other]
    if what == "vault":
        with pytest.raises(crypto.WrongKeyOrTampered):
            crypto.decrypt_chunk(KEYS, "another vault", other, envelope)
    elif what == "key":
        with pytest.raises(crypto.WrongKeyOrTampered):
            crypto.decrypt_chunk(dataclasses.replace(KEYS, chunk_key=bytes(32)), VAULT, other, envelope)
    if cid != other:
        with pytest.raises(crypto.WrongKeyOrTampered):
            crypto.decrypt_chunk(KEYS, VAULT, cid, envelope)


@FUZZ
@given(st.binary(max_size=100))
def test_any_bytes_are_an_envelope_header_or_refused(data):
    try:
        version, algorithm, nonce = crypto.parse_header(data)
    except crypto.BadEnvelope:
        return
    assert (version, algorithm, len(nonce)) == (crypto.FORMAT_VERSION, crypto.ALG_AES256_GCM, 12)


def _frames() -> st.SearchStrategy[bytes]:
    zstd = zstandard.ZstdCompressor()
    valid = [crypto.frame(p) for p in PLAINTEXTS] + [b"\x01" + zstd.compress(b"x" * 1000)]
    return (st.binary(max_size=100) | st.binary(max_size=100).map(b"\x01".__add__)
            | st.sampled_from(valid).flatmap(mutated_bytes))


def _unframed_or_refused(framed: bytes) -> None:
    try:
        plaintext = crypto.unframe(framed)
    except crypto.CryptoError:
        return
    assert len(plaintext) <= crypto.MAX_PLAINTEXT_BYTES


@FUZZ
@given(_frames())
def test_any_frame_is_unframed_or_refused(framed):
    _unframed_or_refused(framed)


@FUZZ
@given(_frames())
def test_a_sealed_bad_frame_is_refused_on_opening(framed):
    """What a buggy agent with the key could store: an envelope that authenticates around a frame
    that is not one."""
    envelope = crypto.seal(KEYS.manifest_key, VAULT, "points/x/manifest", framed)
    assert crypto.open_envelope(KEYS.manifest_key, VAULT, "points/x/manifest", envelope) == framed
    _unframed_or_refused(framed)


@pytest.mark.parametrize("framed", [b"\x01", b"\x01garbage", b"\x01" + zstandard.ZstdCompressor().compress(b"x")[:-2]])
def test_a_bad_zstd_frame_is_refused_as_a_bad_envelope(framed):
    with pytest.raises(crypto.BadEnvelope):
        crypto.unframe(framed)


def test_a_zstd_frame_over_the_largest_chunk_is_refused_before_it_is_decompressed():
    bomb = b"\x01" + zstandard.ZstdCompressor().compress(bytes(crypto.MAX_PLAINTEXT_BYTES + 1))
    with pytest.raises(crypto.BadEnvelope):
        crypto.unframe(bomb)
