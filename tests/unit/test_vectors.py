"""The storage format's known answers (tests/vectors/): today's code must give every value the
vector files hold, so that a change to a KDF label, the envelope, canonical JSON, the chunker's
parameters or a manifest line fails here instead of breaking every vault (docs/design.md).

Every value is computed through the public functions of shared.crypto, shared.formats and
skyvault.chunker, never through tests/vectors/generate.py; envelopes are also opened step by
step as the spec describes them, with the cryptography library alone. Tests named "writes"
pin what the code writes; tests named "reads" or "opens" pin what it must go on reading.
Nothing here writes a file.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import io
import json
import unicodedata
from datetime import datetime
from pathlib import Path

import blake3
import pytest
import zstandard
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared import crypto, formats, identity, messages
from shared.domain import chunk_blob_name
from skyvault.chunker import CDC_PARAMS, new_chunker
from skyvault.restore import WalkOrder

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


KEYS, CHUNK, ENVELOPE = _load("keys.json"), _load("chunk.json"), _load("envelope.json")
MESSAGES, REQUEST = _load("messages.json"), _load("request.json")
FASTCDC, MANIFEST = _load("fastcdc.json"), _load("manifest.json")


def _cases(cases: list[dict]):
    return pytest.mark.parametrize("case", cases, ids=[c["name"] for c in cases])


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


def _hkdf(key: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


@functools.cache
def _derived(name: str) -> tuple[bytes, crypto.VaultKeys]:
    """Argon2id costs ~0.13 s: each case's master key and subkeys are derived once."""
    case = next(c for c in KEYS["cases"] if c["name"] == name)
    salt, kdf = _hex(case["salt_hex"]), case["kdf"]
    return (crypto.derive_master_key(case["passphrase"], salt, kdf),
            crypto.derive_keys(case["passphrase"], salt, kdf))


def _vault_keys() -> crypto.VaultKeys:
    """The keys the other files use: keys.json's first case's, as stored there."""
    case = KEYS["cases"][0]
    return crypto.VaultKeys(*(_hex(case[f"{f}_hex"]) for f in ("chunk_id_key", "chunk_key", "manifest_key",
                                                                 "check_key")), chunker_seed=case["chunker_seed"])


# keys.json

def test_kdf_parameters_are_pinned():
    c = KEYS["constants"]
    assert crypto.KDF_PARAMS == c["kdf"]
    assert crypto.MIN_PASSPHRASE_CHARS == c["min_passphrase_chars"]
    assert {name: list(bounds) for name, bounds in crypto.KDF_LIMITS.items()} == c["kdf_limits"]
    assert list(crypto.NORMALIZATIONS) == c["normalizations"] and list(crypto.SALT_BYTES) == c["salt_bytes"]
    seed = c["chunker_seed"]
    assert (crypto.CHUNKER_SEED_LABEL.decode(), crypto.CHUNKER_SEED_BYTES, f"{crypto.CHUNKER_SEED_MASK:016x}") == \
        (seed["hkdf_info"], seed["hkdf_length"], seed["mask_hex"])


@_cases(KEYS["cases"])
def test_argon2id_master_key(case):
    """Of the passphrase's UTF-8 bytes, NFKC-normalized first if the case's kdf says so (every
    new vault's does), as typed if it has no normalization (a vault made before it)."""
    kdf = case["kdf"]
    assert case["passphrase"].encode("utf-8") == _hex(case["passphrase_utf8_hex"])
    hashed = unicodedata.normalize(kdf["normalization"], case["passphrase"]) if "normalization" in kdf \
        else case["passphrase"]
    assert hashed.encode("utf-8") == _hex(case["hashed_utf8_hex"])
    assert base64.b64decode(case["salt_b64"]) == _hex(case["salt_hex"])
    master, _ = _derived(case["name"])
    assert len(master) == KEYS["constants"]["master_key_bytes"]
    assert master.hex() == case["master_key_hex"]
    assert Argon2id(salt=_hex(case["salt_hex"]), length=32, iterations=kdf["iterations"], lanes=kdf["lanes"],
                    memory_cost=kdf["memoryKiB"]).derive(_hex(case["hashed_utf8_hex"])) == master


def test_passphrases_equal_under_nfkc_share_their_keys_and_as_typed_do_not():
    composed, nfkc, as_typed = KEYS["cases"][1:4]
    assert nfkc["passphrase"] == as_typed["passphrase"] != composed["passphrase"]
    assert nfkc["master_key_hex"] == composed["master_key_hex"] != as_typed["master_key_hex"]
    assert "normalization" not in as_typed["kdf"]


@_cases(KEYS["cases"])
def test_chunker_seed(case):
    """The first 8 bytes of HKDF-SHA256(master key, "skyvault chunker seed"), big-endian, top bit cleared."""
    master, keys = _derived(case["name"])
    spec = KEYS["constants"]["chunker_seed"]
    raw = _hkdf(master, spec["hkdf_info"].encode(), spec["hkdf_length"])
    assert raw.hex() == case["chunker_seed_hkdf_hex"]
    assert int.from_bytes(raw, spec["byte_order"]) & int(spec["mask_hex"], 16) == case["chunker_seed"]
    assert keys.chunker_seed == case["chunker_seed"]


def test_remembered_keys_read_and_write():
    """keys.json on the agent's machine: what VaultKeys.to_doc writes and from_doc reads."""
    remembered = KEYS["remembered_keys"]
    _, keys = _derived(remembered["case"])
    assert keys.to_doc() == remembered["doc"]
    assert crypto.VaultKeys.from_doc(remembered["doc"]) == keys == _vault_keys()


@pytest.mark.parametrize("field, label", KEYS["constants"]["subkey_labels"].items())
@_cases(KEYS["cases"])
def test_hkdf_subkey_and_its_label(case, field, label):
    master, keys = _derived(case["name"])
    assert getattr(keys, field).hex() == case[f"{field}_hex"]
    assert _hkdf(master, label.encode()).hex() == case[f"{field}_hex"]


@_cases(KEYS["cases"])
def test_key_check_value(case):
    _, keys = _derived(case["name"])
    assert keys.key_check_value() == case["key_check_value"]
    message = KEYS["constants"]["key_check_message"].encode()
    assert hmac.new(_hex(case["check_key_hex"]), message, hashlib.sha256).hexdigest() == case["key_check_value"]


def test_other_files_use_the_keys_of_keys_json():
    keys = _vault_keys()
    for doc in (CHUNK, ENVELOPE, MANIFEST["stream"]):
        assert doc["chunk_id_key_hex"] == keys.chunk_id_key.hex()
    assert ENVELOPE["chunk_key_hex"] == keys.chunk_key.hex()
    assert ENVELOPE["manifest_key_hex"] == keys.manifest_key.hex()


# chunk.json

@_cases(CHUNK["cases"])
def test_keyed_blake3_chunk_id_and_blob_name(case):
    chunk_id = crypto.chunk_id(_vault_keys(), _hex(case["plaintext_hex"]))
    assert chunk_id == case["chunk_id"]
    assert chunk_blob_name(chunk_id) == case["blob_name"] == f"chunks/{chunk_id[:2]}/{chunk_id}"


# envelope.json

def test_envelope_constants_are_pinned():
    c = ENVELOPE["constants"]
    assert crypto.MAGIC == _hex(c["magic_hex"]) == c["magic_ascii"].encode()
    assert crypto.FORMAT_VERSION == c["format_version"]
    assert crypto.ALG_AES256_GCM == c["algorithm"]["id"]
    assert crypto.HEADER.format == c["header"]["struct"]
    assert crypto.HEADER_BYTES == c["header"]["bytes"] == sum(f["size"] for f in c["header"]["fields"])
    assert crypto.NONCE_BYTES == c["nonce_bytes"]
    assert crypto.TAG_BYTES == c["tag_bytes"]
    assert (crypto.FRAME_RAW, crypto.FRAME_ZSTD) == (c["frame_flags"]["raw"], c["frame_flags"]["zstd"])
    assert crypto.ZSTD_LEVEL == c["zstd_level"]


ENVELOPES = [{**case, "key": "chunk_key"} for case in ENVELOPE["chunks"]] + [
    {**ENVELOPE["manifest_root"], "name": "manifest root", "key": "manifest_key"}]


@_cases(ENVELOPE["chunks"])
def test_chunk_envelope_reads(case):
    keys, envelope = _vault_keys(), _hex(case["envelope_hex"])
    assert crypto.parse_header(envelope) == (ENVELOPE["constants"]["format_version"],
                                             ENVELOPE["constants"]["algorithm"]["id"], _hex(case["nonce_hex"]))
    framed = crypto.open_envelope(keys.chunk_key, ENVELOPE["vault_id"], case["chunk_id"], envelope)
    assert framed.hex() == case["framed_hex"] and framed[0] == case["frame_flag"]
    assert crypto.decrypt_chunk(keys, ENVELOPE["vault_id"], case["chunk_id"], envelope).hex() == case["plaintext_hex"]


@_cases(ENVELOPE["chunks"])
def test_chunk_sealer_writes_the_chunk_envelope(case):
    """Pins the writer, zstd's output included: a zstd that compresses differently fails this
    (and only this) test without breaking any vault, as the reading tests show."""
    plaintext = _hex(case["plaintext_hex"])
    assert crypto.frame(plaintext).hex() == case["framed_hex"]
    sealer = crypto.ChunkSealer(_vault_keys(), ENVELOPE["vault_id"])
    assert bytes(sealer.seal(case["chunk_id"], plaintext, nonce=_hex(case["nonce_hex"]))).hex() == case["envelope_hex"]


def test_manifest_root_envelope_reads():
    root = ENVELOPE["manifest_root"]
    assert root["blob_name"] == formats.manifest_blob(root["root"]["pointId"])
    framed = crypto.open_envelope(_vault_keys().manifest_key, ENVELOPE["vault_id"], root["blob_name"],
                                  _hex(root["envelope_hex"]))
    assert framed.hex() == root["framed_hex"]
    plaintext = crypto.unframe(framed)
    assert plaintext.hex() == root["plaintext_hex"]
    assert json.loads(plaintext) == root["root"]
    assert root["root"]["version"] == messages.ManifestRoot.VERSION
    assert messages.ManifestRoot.from_doc(root["root"]).point_id == root["root"]["pointId"]
    assert root["root"]["manifestChunks"] == [MANIFEST["stream"]["chunk_id"]]


def test_seal_writes_the_manifest_root_envelope():
    root = ENVELOPE["manifest_root"]
    framed = crypto.frame(_hex(root["plaintext_hex"]))
    assert framed.hex() == root["framed_hex"]
    envelope = crypto.seal(_vault_keys().manifest_key, ENVELOPE["vault_id"], root["blob_name"], framed,
                           nonce=_hex(root["nonce_hex"]))
    assert envelope.hex() == root["envelope_hex"]


@_cases(ENVELOPES)
def test_envelope_opens_as_the_spec_describes(case):
    """The header's fields at their offsets, the per-object key, the AAD and AES-256-GCM, from
    the cryptography library alone: what another implementation would do from docs/design.md."""
    c, envelope = ENVELOPE["constants"], _hex(case["envelope_hex"])
    name = case.get("chunk_id") or case["blob_name"]
    fields = {f["name"]: envelope[f["offset"]:f["offset"] + f["size"]] for f in c["header"]["fields"]}
    assert fields["magic"] == _hex(c["magic_hex"])
    assert fields["format_version"][0] == c["format_version"] and fields["algorithm"][0] == c["algorithm"]["id"]
    assert fields["nonce"] == _hex(case["nonce_hex"])
    object_key = _hkdf(_hex(ENVELOPE[f"{case['key']}_hex"]), (c["object_key_info_prefix"] + name).encode())
    assert object_key.hex() == case["object_key_hex"]
    aad = envelope[:c["header"]["aad_prefix_bytes"]] + ENVELOPE["vault_id"].encode() + b"\0" + name.encode()
    assert aad.hex() == case["aad_hex"]
    framed = AESGCM(object_key).decrypt(fields["nonce"], envelope[c["header"]["bytes"]:], aad)
    assert len(envelope) == c["header"]["bytes"] + len(framed) + c["tag_bytes"]
    assert framed.hex() == case["framed_hex"]
    flag, payload = framed[0], framed[1:]
    assert flag in c["frame_flags"].values()
    if flag == c["frame_flags"]["zstd"]:
        # One zstd frame that records its size: readers decompress it in one call, which needs that.
        assert zstandard.get_frame_parameters(payload).content_size == len(_hex(case["plaintext_hex"]))
        payload = zstandard.ZstdDecompressor().decompress(payload)
    assert payload.hex() == case["plaintext_hex"]


# messages.json

def test_message_constants_are_pinned():
    assert formats.SCHEMA_VERSION == MESSAGES["constants"]["schema_version"]
    assert formats.MAX_MESSAGE_BYTES == MESSAGES["constants"]["max_message_bytes"]


@_cases(MESSAGES["cases"])
def test_canonical_json(case):
    canonical = formats.canonical(case["body"])
    assert canonical.hex() == case["canonical_hex"]
    assert canonical == case["canonical_text"].encode("ascii")


def test_the_machine_id_is_its_public_keys_digest():
    assert identity.public_key_of(MESSAGES["machine_private_key_b64"]) == MESSAGES["machine_public_key_b64"]
    assert identity.machine_id_of(MESSAGES["machine_public_key_b64"]) == MESSAGES["machine_id"] == \
        hashlib.sha256(base64.b64decode(MESSAGES["machine_public_key_b64"])).hexdigest()[:32]


@_cases(MESSAGES["cases"])
def test_message_signature_over_canonical_json(case):
    """Ed25519 is deterministic (RFC 8032): the same key and bytes give the same signature."""
    assert "sig" not in case["body"]
    assert identity.sign(MESSAGES["machine_private_key_b64"], formats.canonical(case["body"])) == case["sig"]
    assert identity.verify(MESSAGES["machine_public_key_b64"], _hex(case["canonical_hex"]), case["sig"])


@_cases([c for c in MESSAGES["cases"] if c["name"].endswith(" message")])
def test_typed_messages_sign_and_verify_as_the_vectors(case):
    """The agent signs and the service verifies through shared.messages: its classes must give
    the same canonical JSON, field for field, as the wire rule."""
    parsed = messages.parse_signed_message(json.dumps({**case["body"], "sig": case["sig"]}))
    assert formats.canonical(parsed.unsigned_doc()).hex() == case["canonical_hex"]
    assert parsed.signature_matches(MESSAGES["machine_public_key_b64"])
    fields = {f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed) if f.name != "sig"}
    assert messages.sign(type(parsed), MESSAGES["machine_private_key_b64"], **fields).sig == case["sig"]


def test_chunks_message_declares_the_stored_envelopes():
    """A declared chunk's size and MD5 are those of its envelope, as stored."""
    body = next(c["body"] for c in MESSAGES["cases"] if c["name"] == "chunks message")
    envelopes = {c["chunk_id"]: _hex(c["envelope_hex"]) for c in ENVELOPE["chunks"]}
    assert body["chunks"] == [{"id": cid, "size": len(envelope),
                               "md5": base64.b64encode(hashlib.md5(envelope).digest()).decode()}
                              for cid, envelope in envelopes.items()]


# request.json

def test_request_constants_are_pinned():
    assert identity.MAX_CLOCK_SKEW.total_seconds() == REQUEST["constants"]["max_clock_skew_seconds"]
    assert list(identity.HEADERS) == REQUEST["constants"]["headers"]
    assert identity.REQUEST_SCHEME == REQUEST["constants"]["scheme"]


@_cases(REQUEST["cases"])
def test_request_string_to_sign(case):
    body = _hex(case["body_hex"])
    assert hashlib.sha256(body).hexdigest() == case["body_sha256"]
    assert identity.canonical_query(case["params"]) == case["canonical_query"]
    signed = identity.request_string(case["method"], case["path"], case["canonical_query"],
                                     case["headers"]["x-skyvault-date"], case["headers"]["x-skyvault-nonce"], body)
    assert signed.hex() == case["string_to_sign_hex"]
    assert signed == case["string_to_sign_text"].encode()


@_cases(REQUEST["cases"])
def test_request_signature_headers(case):
    body, now = _hex(case["body_hex"]), datetime.fromisoformat(case["now"])
    headers = identity.sign_request(REQUEST["machine_private_key_b64"], REQUEST["machine_id"], case["method"],
                                    case["path"], case["params"], body, now, case["headers"]["x-skyvault-nonce"])
    assert headers == case["headers"]
    signed = identity.SignedRequest.read(case["method"], case["path"], case["params"], body, headers, now)
    assert signed.verify_with(REQUEST["machine_public_key_b64"])


# fastcdc.json

FASTCDC_CUTS = [{"name": f"{stream['name']}, {seed_name}", "stream": stream["name"],
                 "seed": FASTCDC["seeds"][seed_name], "cuts": cuts}
                for stream in FASTCDC["streams"] for seed_name, cuts in stream["cuts"].items()]


def test_cdc_parameters_are_pinned():
    assert CDC_PARAMS == FASTCDC["constants"]["cdc_params"]
    for seed in FASTCDC["seeds"].values():
        chunker = new_chunker(seed)
        assert (chunker.avg_size, chunker.min_size, chunker.max_size) == tuple(CDC_PARAMS.values())


def test_the_keyed_cuts_use_the_seed_of_keys_json():
    assert FASTCDC["seeds"] == {"unkeyed": 0, "keyed": KEYS["cases"][0]["chunker_seed"]}


def test_only_the_low_bits_of_the_seed_move_cut_points():
    """FastCDC's masks end at bit 47 with these parameters: higher seed bits change nothing."""
    stream, seed, bits = FASTCDC["streams"][0], FASTCDC["seeds"]["keyed"], FASTCDC["constants"]["seed_bits_that_cut"]
    data, keyed = _stream(stream["name"]), stream["cuts"]["keyed"]

    def cuts(s: int) -> list[dict]:
        return [{"offset": c.offset, "length": c.length} for c in new_chunker(s).cut_buf(data)]

    assert cuts(seed ^ (1 << bits)) == keyed
    assert cuts(seed ^ (1 << (bits - 1))) != keyed


def test_zeros_hold_no_cut_point_whatever_the_seed():
    zeros = next(s for s in FASTCDC["streams"] if s["generator"]["kind"] == "zeros")
    assert zeros["cuts"]["keyed"] == zeros["cuts"]["unkeyed"]


@functools.cache
def _stream(name: str) -> bytes:
    generator = next(s["generator"] for s in FASTCDC["streams"] if s["name"] == name)
    if generator["kind"] == "blake3-xof":
        return blake3.blake3(generator["input_text"].encode()).digest(length=generator["length"])
    assert generator["kind"] == "zeros"
    return bytes(generator["length"])


@_cases(FASTCDC["streams"])
def test_cdc_input_stream(case):
    data = _stream(case["name"])
    assert hashlib.sha256(data).hexdigest() == case["sha256"]
    assert all(sum(cut["length"] for cut in cuts) == len(data) for cuts in case["cuts"].values())


@_cases(FASTCDC_CUTS)
def test_fastcdc_cut_points_of_a_buffer(case):
    cuts = [{"offset": c.offset, "length": c.length}
            for c in new_chunker(case["seed"]).cut_buf(_stream(case["stream"]))]
    assert cuts == case["cuts"]


@_cases(FASTCDC_CUTS)
def test_fastcdc_cut_points_of_a_stream(case):
    """The backup cuts file-like streams: cut_stream must cut where cut_buf does."""
    cuts = [{"offset": c.offset, "length": c.length}
            for c in new_chunker(case["seed"]).cut_stream(io.BytesIO(_stream(case["stream"])))]
    assert cuts == case["cuts"]


# manifest.json

@_cases(MANIFEST["entries"])
def test_manifest_line_writes(case):
    assert b"".join(formats.manifest_lines([case["entry"]])).hex() == case["line_hex"]


@_cases(MANIFEST["entries"])
def test_manifest_line_reads(case):
    assert formats.parse_manifest_line(_hex(case["line_hex"])) == case["entry"]


@_cases(MANIFEST["entries"])
def test_manifest_entry_reads_and_writes_its_fields_in_order(case):
    """Every kind of entry, parsed by the agent's reader, gives the same document back, its keys
    in the order docs/design.md fixes (the same entry, the same bytes)."""
    entry = messages.ManifestEntry.from_doc(formats.parse_manifest_line(_hex(case["line_hex"])))
    assert list(entry.to_doc().items()) == list(case["entry"].items())


def test_manifest_entries_are_in_walk_order():
    order = WalkOrder("vectors")
    for case in MANIFEST["entries"]:
        order.check(messages.ManifestEntry.from_doc(case["entry"]))


def test_manifest_keeps_a_name_that_is_not_utf8_byte_for_byte():
    case = next(c for c in MANIFEST["entries"] if "path_bytes_hex" in c)
    name = _hex(case["path_bytes_hex"])
    assert case["entry"]["path"] == name.decode("utf-8", "surrogateescape")  # os.fsdecode on POSIX
    assert b'"path":"' + name + b'"' in _hex(case["line_hex"])


def test_manifest_stream_and_its_chunk_id():
    stream = b"".join(formats.manifest_lines(c["entry"] for c in MANIFEST["entries"]))
    assert hashlib.sha256(stream).hexdigest() == MANIFEST["stream"]["sha256"]
    assert crypto.chunk_id(_vault_keys(), stream) == MANIFEST["stream"]["chunk_id"]


def test_reference_list():
    refs = MANIFEST["refs"]
    assert refs["chunk_ids"] == sorted(set(refs["chunk_ids"]))
    blob = formats.encode_refs(refs["chunk_ids"])
    assert blob.hex() == refs["blob_hex"]
    assert formats.decode_refs(blob) == refs["chunk_ids"]
    assert hashlib.sha256(blob).hexdigest() == refs["refs_digest"]


def test_point_blob_names():
    names = MANIFEST["blob_names"]
    assert formats.manifest_blob(names["point_id"]) == names["manifest"]
    assert formats.refs_blob(names["point_id"]) == names["refs"]
