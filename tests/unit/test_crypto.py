"""Keys, keyed chunk ids, the envelope and its tamper detection."""
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared import crypto

PASS = "correct horse battery staple"


@pytest.fixture(scope="module")
def keys():
    return crypto.derive_keys(PASS, b"s" * 16)


def test_short_passphrase_is_refused():
    with pytest.raises(crypto.WeakPassphrase, match="16 characters"):
        crypto.derive_keys("too short", b"s" * 16)


def test_same_passphrase_and_salt_give_same_keys(keys):
    assert crypto.derive_keys(PASS, b"s" * 16) == keys


def test_chunk_ids_are_keyed_per_vault(keys):
    other_vault = crypto.derive_keys(PASS, b"t" * 16)
    data = b"the same file in two tenants"
    assert crypto.chunk_id(keys, data) == crypto.chunk_id(keys, data)
    assert crypto.chunk_id(keys, data) != crypto.chunk_id(other_vault, data)
    assert len(crypto.chunk_id(keys, data)) == 64


def test_envelope_round_trip_compressible_and_not(keys):
    for data in (b"text " * 10000, os.urandom(100_000), b"x"):
        cid = crypto.chunk_id(keys, data)
        envelope = crypto.encrypt_chunk(keys, "vault1", cid, data)
        assert envelope[:4] == crypto.MAGIC
        assert crypto.decrypt_chunk(keys, "vault1", cid, envelope) == data
    text = b"text " * 10000
    assert len(crypto.encrypt_chunk(keys, "v", crypto.chunk_id(keys, text), text)) < len(text) // 10
    noise = os.urandom(10_000)
    raw = crypto.encrypt_chunk(keys, "v", crypto.chunk_id(keys, noise), noise)
    assert len(raw) == crypto.HEADER_BYTES + 1 + len(noise) + crypto.TAG_BYTES


def test_sealer_reuses_its_buffer_for_chunks_of_any_size(keys):
    """Each envelope is whole and right while it is current, whether the buffer grows, stays or
    is larger than the chunk; and it is the envelope AESGCM.encrypt makes of the framed chunk."""
    sealer = crypto.ChunkSealer(keys, "v")
    for data in (b"small", os.urandom(300_000), b"text " * 200_000, b"x" * 10, os.urandom(50_000)):
        cid = crypto.chunk_id(keys, data)
        envelope = sealer.seal(cid, data)
        assert crypto.decrypt_chunk(keys, "v", cid, bytes(envelope)) == data
        header = bytes(envelope[:crypto.HEADER_BYTES])
        nonce = header[6:]
        key = crypto._object_key(keys.chunk_key, cid)
        one_shot = AESGCM(key).encrypt(nonce, crypto.frame(data), crypto._aad(header, "v", cid))
        assert bytes(envelope[crypto.HEADER_BYTES:]) == one_shot
    assert crypto.seal(keys.manifest_key, "v", "m", b"\x00abc", nonce=nonce)[crypto.HEADER_BYTES:] == \
        AESGCM(crypto._object_key(keys.manifest_key, "m")).encrypt(nonce, b"\x00abc", crypto._aad(header, "v", "m"))


def test_envelope_nonces_differ(keys):
    data = b"abc" * 100
    cid = crypto.chunk_id(keys, data)
    assert crypto.encrypt_chunk(keys, "v", cid, data) != crypto.encrypt_chunk(keys, "v", cid, data)


@pytest.mark.parametrize("position", [6, 10, crypto.HEADER_BYTES, crypto.HEADER_BYTES + 5, -1])
def test_any_flipped_byte_is_detected(keys, position):
    data = b"payload " * 1000
    cid = crypto.chunk_id(keys, data)
    envelope = bytearray(crypto.encrypt_chunk(keys, "v", cid, data))
    envelope[position] ^= 0x01
    with pytest.raises(crypto.WrongKeyOrTampered):
        crypto.decrypt_chunk(keys, "v", cid, bytes(envelope))


def test_envelope_is_bound_to_vault_and_chunk_id(keys):
    data = b"payload"
    cid = crypto.chunk_id(keys, data)
    envelope = crypto.encrypt_chunk(keys, "v", cid, data)
    with pytest.raises(crypto.WrongKeyOrTampered):
        crypto.decrypt_chunk(keys, "other-vault", cid, envelope)
    other = crypto.chunk_id(keys, b"other")
    with pytest.raises(crypto.WrongKeyOrTampered):
        crypto.decrypt_chunk(keys, "v", other, envelope)


def test_wrong_passphrase_cannot_decrypt(keys):
    wrong = crypto.derive_keys("a different passphrase!", b"s" * 16)
    data = b"secret"
    cid = crypto.chunk_id(keys, data)
    with pytest.raises(crypto.WrongKeyOrTampered):
        crypto.decrypt_chunk(wrong, "v", cid, crypto.encrypt_chunk(keys, "v", cid, data))
    assert wrong.key_check_value() != keys.key_check_value()


def test_bad_header_is_named(keys):
    with pytest.raises(crypto.BadEnvelope, match="bad magic"):
        crypto.parse_header(b"XXXX" + b"\0" * 30)
    with pytest.raises(crypto.BadEnvelope, match="shorter than its header"):
        crypto.parse_header(b"SKV1")
    with pytest.raises(crypto.BadEnvelope, match="unsupported envelope version 9"):
        crypto.parse_header(crypto.MAGIC + bytes([9, 1]) + b"\0" * 12)


def test_incompressible_data_is_stored_raw_and_mixed_data_compressed(keys):
    noise = os.urandom(1024 * 1024)
    assert crypto.frame(noise)[0] == crypto.FRAME_RAW
    mixed = noise + b"\0" * (1024 * 1024)
    assert crypto.frame(mixed)[0] == crypto.FRAME_ZSTD, "one compressible sample is enough to try"
    assert len(crypto.frame(mixed)) < len(noise) + 1024
    text = b"compressible text " * 100_000
    framed = crypto.frame(text)
    assert framed[0] == crypto.FRAME_ZSTD and crypto.unframe(framed) == text
