"""Writes the known-answer vector files of tests/vectors/ from fixed inputs and today's code.

The vectors pin the storage format (docs/design.md): rewriting them accepts whatever the code
now writes as the format, so this refuses to run without --regenerate. Run it only for a
deliberate format change (a new format version) or a new vector, and review the diff:

    .venv/bin/python -m tests.vectors.generate --regenerate

tests/unit/test_vectors.py checks the files against the code without using this module.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import blake3
import pyfastcdc

from shared import crypto, formats, identity
from shared.domain import chunk_blob_name
from shared.messages import ManifestRoot
from skyvault.chunker import CDC_PARAMS, new_chunker

HERE = Path(__file__).resolve().parent

LEGACY_KDF = {k: v for k, v in crypto.KDF_PARAMS.items() if k != "normalization"}  # vaults made before it
TYPED_OTHERWISE = "\uff34resor-Schlu\u0308ssel fu\u0308r Ko\u0308ln"  # fullwidth T, combining diaereses
KEY_CASES = [  # (name, passphrase, salt, kdf): the second passphrase's UTF-8 bytes differ from its characters
    ("ascii passphrase", "correct horse battery staple", bytes(range(16)), crypto.KDF_PARAMS),
    ("non-ASCII passphrase", "Tresor-Schl\u00fcssel f\u00fcr K\u00f6ln", bytes(range(16, 32)), crypto.KDF_PARAMS),
    ("the second passphrase typed otherwise, NFKC-normalized: the second's keys", TYPED_OTHERWISE,
     bytes(range(16, 32)), crypto.KDF_PARAMS),
    ("the same typed otherwise, as typed: a vault made before normalization", TYPED_OTHERWISE,
     bytes(range(16, 32)), LEGACY_KDF),
]
SUBKEY_LABELS = {"chunk_id_key": "skyvault chunk id", "chunk_key": "skyvault chunk encryption",
                 "manifest_key": "skyvault manifest", "check_key": "skyvault key check"}
TENANT_ID = "contoso"
VAULT_ID = "5f3a9c1b7d4e"
MACHINE_KEY = base64.b64encode(bytes(range(0x40, 0x60))).decode()  # an Ed25519 private key's 32 raw bytes
MACHINE_ID = identity.machine_id_of(identity.public_key_of(MACHINE_KEY))
REQUEST_NONCE = "0123456789abcdef0123456789abcdef"
POINT_ID = "20261125T101500Z-1a2b3c4d"
PARENT_POINT_ID = "20261124T101500Z-0a0b0c0d"
CREATED_AT = "2026-11-25T10:15:00.250000+00:00"

COMPRESSIBLE = b"Skyvault known-answer vector: a compressible chunk. " * 32
INCOMPRESSIBLE = blake3.blake3(b"skyvault test vectors: incompressible chunk").digest(length=256)
SHORT = b"abc"
CHUNK_NONCES = {"compressible": bytes(range(12)), "incompressible": bytes(range(12, 24))}
MANIFEST_NONCE = bytes(range(0xa0, 0xac))

CDC_STREAM_LENGTH = 20 * 1024 * 1024
CDC_STREAM_INPUT = "skyvault test vectors: fastcdc stream"

NON_UTF8_NAME = b"Documents/caf\xe9.txt"  # Latin-1 "café.txt", as an old file system may hold it


def _write(name: str, doc: dict[str, Any]) -> None:
    # ensure_ascii: a name that is not UTF-8 is a lone surrogate, which only an escape can hold.
    (HERE / name).write_text(json.dumps(doc, indent=2, ensure_ascii=True) + "\n")


def _hashed_passphrase(passphrase: str, kdf: dict) -> bytes:
    """What Argon2id hashes, as docs/design.md says it: UTF-8, after the vault's normalization if it has one."""
    return (unicodedata.normalize(kdf["normalization"], passphrase) if "normalization" in kdf
            else passphrase).encode("utf-8")


def _first_case_keys() -> crypto.VaultKeys:
    _, passphrase, salt, kdf = KEY_CASES[0]
    return crypto.derive_keys(passphrase, salt, kdf)


def _keys_doc() -> tuple[dict, crypto.VaultKeys]:
    """keys.json, and the first case's keys, which the other files use."""
    cases, derived = [], []
    for name, passphrase, salt, kdf in KEY_CASES:
        master = crypto.derive_master_key(passphrase, salt, kdf)
        keys = crypto.derive_keys(passphrase, salt, kdf)
        derived.append(keys)
        cases.append({
            "name": name,
            "passphrase": passphrase,
            "passphrase_utf8_hex": passphrase.encode("utf-8").hex(),
            "kdf": kdf,
            "hashed_utf8_hex": _hashed_passphrase(passphrase, kdf).hex(),
            "salt_hex": salt.hex(),
            "salt_b64": base64.b64encode(salt).decode(),
            "master_key_hex": master.hex(),
            **{f"{field}_hex": getattr(keys, field).hex() for field in SUBKEY_LABELS},
            "chunker_seed_hkdf_hex": crypto._hkdf(master, crypto.CHUNKER_SEED_LABEL, crypto.CHUNKER_SEED_BYTES).hex(),
            "chunker_seed": keys.chunker_seed,
            "key_check_value": keys.key_check_value(),
        })
    doc = {
        "about": "Argon2id master key (of the passphrase NFKC-normalized, or as typed where the kdf has no "
                 "normalization), its HKDF-SHA256 subkeys, the chunker seed and the key check value; the "
                 "keys as an agent remembers them (docs/design.md, Keys).",
        "constants": {
            "kdf": crypto.KDF_PARAMS,
            "kdf_limits": {name: list(bounds) for name, bounds in crypto.KDF_LIMITS.items()},
            "normalizations": list(crypto.NORMALIZATIONS),
            "salt_bytes": list(crypto.SALT_BYTES),
            "master_key_bytes": 32,
            "min_passphrase_chars": crypto.MIN_PASSPHRASE_CHARS,
            "hkdf": {"hash": "SHA-256", "salt": None, "length": 32},
            "subkey_labels": SUBKEY_LABELS,
            "chunker_seed": {"hkdf_info": crypto.CHUNKER_SEED_LABEL.decode(), "hkdf_length": crypto.CHUNKER_SEED_BYTES,
                             "byte_order": "big", "mask_hex": f"{crypto.CHUNKER_SEED_MASK:016x}"},
            "key_check_message": "skyvault key check v1",
        },
        "cases": cases,
        "remembered_keys": {"case": KEY_CASES[0][0], "doc": derived[0].to_doc()},
    }
    return doc, derived[0]


def _chunk_doc(keys: crypto.VaultKeys) -> dict:
    return {
        "about": "Chunk ids: keyed BLAKE3 of the plaintext, and the chunk's blob name "
                 "(docs/design.md, Chunk ids and chunking). The key is keys.json's first case's.",
        "chunk_id_key_hex": keys.chunk_id_key.hex(),
        "cases": [{"name": name, "plaintext_hex": data.hex(), "chunk_id": crypto.chunk_id(keys, data),
                   "blob_name": chunk_blob_name(crypto.chunk_id(keys, data))}
                  for name, data in (("3 bytes", SHORT), ("compressible, 1664 bytes", COMPRESSIBLE),
                                     ("incompressible, 256 bytes", INCOMPRESSIBLE))],
    }


def _spec_fields(key: bytes, name: str, envelope: bytes) -> dict[str, str]:
    """The envelope's derived values as the spec states them, for a reader to check step by step."""
    header = envelope[:crypto.HEADER_BYTES]
    object_key = crypto._object_key(key, name)
    return {"object_key_hex": object_key.hex(), "aad_hex": crypto._aad(header, VAULT_ID, name).hex()}


def _manifest_entries(keys: crypto.VaultKeys) -> list[tuple[str, dict, dict]]:
    """(name, entry, extra vector fields), in walk order; fields in the order the agent writes them."""
    short, comp, incomp = (crypto.chunk_id(keys, d) for d in (SHORT, COMPRESSIBLE, INCOMPRESSIBLE))
    return [
        ("dir", {"path": "Documents", "mode": 0o755, "mtime": 1764065700000000000, "type": "dir"}, {}),
        ("file whose name is not UTF-8",
         {"path": NON_UTF8_NAME.decode("utf-8", "surrogateescape"), "mode": 0o644,
          "mtime": 1764065701000000000, "type": "file", "size": 3, "extents": [[short, 0, 3]]},
         {"path_bytes_hex": NON_UTF8_NAME.hex()}),
        ("symlink", {"path": "Documents/latest", "mode": 0o777, "mtime": 1764065702000000000,
                     "type": "symlink", "target": "r\u00e9sum\u00e9.txt"}, {}),
        ("file with extents in two chunks",
         {"path": "Documents/r\u00e9sum\u00e9.txt", "mode": 0o600, "mtime": 1764065703123456789,
          "type": "file", "size": 920, "extents": [[comp, 1000, 664], [incomp, 0, 256]]}, {}),
        ("file with its owner and extended attributes",
         {"path": "Documents/tagged.txt", "mode": 0o4750, "mtime": 1764065704000000000, "type": "file",
          "uid": 1000, "gid": 100, "user": "ada", "group": "users",
          "xattrs": {"system.posix_acl_access": "AgAAAAEABgD/////BAAEAP////8gAAQA/////w==",
                     "user.origin": "AGJpbmFyef8="},
          "size": 3, "extents": [[short, 0, 3]]}, {}),
        ("hard link", {"path": "Documents/tagged.txt.link", "mode": 0o4750, "mtime": 1764065704000000000,
                       "type": "hardlink", "target": "Documents/tagged.txt"}, {}),
        ("character device, ids without names",
         {"path": "Documents/znull", "mode": 0o666, "mtime": 1764065706000000000, "type": "chardev",
          "uid": 0, "gid": 4242, "major": 1, "minor": 3}, {}),
        ("fifo", {"path": "Documents/zpipe", "mode": 0o640, "mtime": 1764065705000000000, "type": "fifo",
                  "uid": 1000, "gid": 100, "user": "ada", "group": "users"}, {}),
    ]


def _manifest_doc(keys: crypto.VaultKeys) -> dict:
    entries = _manifest_entries(keys)
    lines = [next(formats.manifest_lines([entry])) for _, entry, _ in entries]
    stream = b"".join(lines)
    manifest_chunk = crypto.chunk_id(keys, stream)
    refs = sorted({manifest_chunk, *(e[0] for _, entry, _ in entries for e in entry.get("extents", ()))})
    refs_blob = formats.encode_refs(refs)
    return {
        "about": "Manifest lines (one JSON object per line, UTF-8 with surrogateescape), the "
                 "reference list and a point's blob names (docs/design.md, Manifest).",
        "constants": {"json_separators": [",", ":"], "ensure_ascii": False,
                      "encoding": "utf-8, surrogateescape", "line_end": "\n"},
        "entries": [{"name": name, **extra, "entry": entry, "line_hex": line.hex()}
                    for (name, entry, extra), line in zip(entries, lines)],
        "stream": {"sha256": hashlib.sha256(stream).hexdigest(),
                   "chunk_id": manifest_chunk, "chunk_id_key_hex": keys.chunk_id_key.hex()},
        "refs": {"chunk_ids": refs, "blob_hex": refs_blob.hex(),
                 "refs_digest": hashlib.sha256(refs_blob).hexdigest()},
        "blob_names": {"point_id": POINT_ID, "manifest": formats.manifest_blob(POINT_ID),
                       "refs": formats.refs_blob(POINT_ID)},
    }


def _envelope_doc(keys: crypto.VaultKeys, manifest_chunk: str) -> dict:
    chunks = []
    for name, data in (("compressible", COMPRESSIBLE), ("incompressible", INCOMPRESSIBLE)):
        cid = crypto.chunk_id(keys, data)
        nonce = CHUNK_NONCES[name]
        envelope = bytes(crypto.ChunkSealer(keys, VAULT_ID).seal(cid, data, nonce=nonce))
        framed = crypto.open_envelope(keys.chunk_key, VAULT_ID, cid, envelope)
        chunks.append({"name": name, "plaintext_hex": data.hex(), "chunk_id": cid, "nonce_hex": nonce.hex(),
                       "frame_flag": framed[0], "framed_hex": framed.hex(),
                       **_spec_fields(keys.chunk_key, cid, envelope), "envelope_hex": envelope.hex()})
    blob = formats.manifest_blob(POINT_ID)
    root = {"version": ManifestRoot.VERSION, "vaultId": VAULT_ID, "pointId": POINT_ID, "item": "laptop-42",
            "createdAt": CREATED_AT, "sources": ["/home/ada/Documents"], "manifestChunks": [manifest_chunk],
            "stats": _stats()}
    plaintext = json.dumps(root).encode()  # as skyvault.backup writes it
    framed = crypto.frame(plaintext)
    envelope = crypto.seal(keys.manifest_key, VAULT_ID, blob, framed, nonce=MANIFEST_NONCE)
    return {
        "about": "Chunk and manifest-root envelopes with fixed nonces (docs/design.md, Chunk "
                 "envelope and Manifest). Keys: keys.json's first case's.",
        "constants": {
            "magic_hex": crypto.MAGIC.hex(), "magic_ascii": crypto.MAGIC.decode(),
            "format_version": crypto.FORMAT_VERSION,
            "algorithm": {"id": crypto.ALG_AES256_GCM, "name": "AES-256-GCM"},
            "header": {"struct": crypto.HEADER.format, "bytes": crypto.HEADER_BYTES,
                       "fields": [{"name": "magic", "offset": 0, "size": 4},
                                  {"name": "format_version", "offset": 4, "size": 1},
                                  {"name": "algorithm", "offset": 5, "size": 1},
                                  {"name": "nonce", "offset": 6, "size": crypto.NONCE_BYTES}],
                       "aad_prefix_bytes": 6},
            "nonce_bytes": crypto.NONCE_BYTES,
            "tag_bytes": crypto.TAG_BYTES,
            "frame_flags": {"raw": crypto.FRAME_RAW, "zstd": crypto.FRAME_ZSTD},
            "zstd_level": crypto.ZSTD_LEVEL,
            "object_key_info_prefix": "skyvault object ",
        },
        "vault_id": VAULT_ID,
        "chunk_id_key_hex": keys.chunk_id_key.hex(),
        "chunk_key_hex": keys.chunk_key.hex(),
        "manifest_key_hex": keys.manifest_key.hex(),
        "chunks": chunks,
        "manifest_root": {"blob_name": blob, "root": root, "plaintext_hex": plaintext.hex(),
                          "nonce_hex": MANIFEST_NONCE.hex(), "framed_hex": framed.hex(),
                          **_spec_fields(keys.manifest_key, blob, envelope), "envelope_hex": envelope.hex()},
    }


def _stats() -> dict[str, int]:
    return {"files": 2, "dirs": 1, "symlinks": 1, "bytes_total": 923, "files_read": 2, "bytes_read": 923,
            "files_unchanged": 0, "chunks_uploaded": 4, "bytes_uploaded": 1185}


def _messages_doc(keys: crypto.VaultKeys) -> dict:
    common = {"v": formats.SCHEMA_VERSION, "tenantId": TENANT_ID, "vaultId": VAULT_ID, "machine": MACHINE_ID}
    declared = []
    for data, nonce in ((COMPRESSIBLE, CHUNK_NONCES["compressible"]),
                        (INCOMPRESSIBLE, CHUNK_NONCES["incompressible"])):
        cid = crypto.chunk_id(keys, data)
        envelope = bytes(crypto.ChunkSealer(keys, VAULT_ID).seal(cid, data, nonce=nonce))
        declared.append({"id": cid, "size": len(envelope),
                         "md5": base64.b64encode(hashlib.md5(envelope).digest()).decode()})
    bodies = [
        ("chunks message", {**common, "type": "chunks", "id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                            "chunks": declared}),
        ("commit message", {**common, "type": "commit", "id": "00112233445566778899aabbccddeeff",
                            "pointId": POINT_ID, "item": "laptop-42", "createdAt": CREATED_AT, "chunkCount": 4,
                            "manifestChunks": 1, "stats": _stats(), "parentPointId": PARENT_POINT_ID}),
        ("restore message", {**common, "type": "restore", "id": "restore-7f3e", "pointId": POINT_ID}),
        ("canonical JSON: key order, nesting, escapes",
         {"z": 1, "B": [3, {"y": True, "b": None, "x": -0.5}], "a": "caf\u00e9 \u2713 \U0001d11e \"q\"\n"}),
    ]
    cases = []
    for name, body in bodies:
        canonical = formats.canonical(body)
        cases.append({"name": name, "body": body, "canonical_text": canonical.decode("ascii"),
                      "canonical_hex": canonical.hex(), "sig": identity.sign(MACHINE_KEY, canonical)})
    return {
        "about": "Canonical JSON of message bodies (every field but sig) and their machine's signatures "
                 "(docs/design.md, Queue messages; Machines).",
        "constants": {"schema_version": formats.SCHEMA_VERSION, "max_message_bytes": formats.MAX_MESSAGE_BYTES,
                      "canonical_json": {"sort_keys": True, "separators": [",", ":"], "ensure_ascii": True},
                      "signature": "Ed25519(machine's private key, canonical JSON), base64"},
        **_machine_fields(),
        "cases": cases,
    }


def _machine_fields() -> dict[str, str]:
    public_key = identity.public_key_of(MACHINE_KEY)
    return {"machine_private_key_b64": MACHINE_KEY, "machine_public_key_b64": public_key, "machine_id": MACHINE_ID,
            "machine_id_rule": "first 32 hex digits of SHA-256(public key's 32 raw bytes)"}


def _request_doc(keys: crypto.VaultKeys) -> dict:
    base = f"/api/tenants/{TENANT_ID}/vaults/{VAULT_ID}"
    lookup = json.dumps({"ids": sorted(crypto.chunk_id(keys, d) for d in (COMPRESSIBLE, INCOMPRESSIBLE))}).encode()
    requests = [
        ("POST with a body, UTC time with microseconds", "POST", f"{base}/chunks/lookup", {}, lookup,
         datetime(2026, 11, 25, 10, 15, 0, 250000, tzinfo=timezone.utc)),
        ("GET with a query string, local time", "GET", f"{base}/points", {"item": "laptop 42/é", "a": "1"}, b"",
         datetime(2026, 11, 25, 11, 15, 1, tzinfo=timezone(timedelta(hours=1)))),
    ]
    cases = []
    for name, method, path, params, body, now in requests:
        headers = identity.sign_request(MACHINE_KEY, MACHINE_ID, method, path, params, body, now, REQUEST_NONCE)
        query = identity.canonical_query(params)
        signed = identity.request_string(method, path, query, headers["x-skyvault-date"], REQUEST_NONCE, body)
        cases.append({"name": name, "method": method, "path": path, "params": params, "body_hex": body.hex(),
                      "now": now.isoformat(), "body_sha256": hashlib.sha256(body).hexdigest(),
                      "canonical_query": query, "string_to_sign_text": signed.decode(),
                      "string_to_sign_hex": signed.hex(), "headers": headers})
    return {
        "about": "Signed HTTP API requests (docs/design.md, Signed API requests).",
        "constants": {"headers": list(identity.HEADERS), "scheme": identity.REQUEST_SCHEME,
                      "max_clock_skew_seconds": int(identity.MAX_CLOCK_SKEW.total_seconds()),
                      "string_to_sign": "SCHEME \\n METHOD \\n PATH \\n QUERY \\n DATE \\n NONCE \\n "
                                        "hex SHA-256 of the body",
                      "signature": "Ed25519(machine's private key, string to sign), base64"},
        **_machine_fields(),
        "cases": cases,
    }


def _fastcdc_doc() -> dict:
    seeds = {"unkeyed": 0, "keyed": _first_case_keys().chunker_seed}
    streams = []
    for name, generator, data in (
            ("BLAKE3 XOF, 20 MiB", {"kind": "blake3-xof", "input_text": CDC_STREAM_INPUT, "length": CDC_STREAM_LENGTH},
             blake3.blake3(CDC_STREAM_INPUT.encode()).digest(length=CDC_STREAM_LENGTH)),
            ("zeros, 20 MiB (max_size cuts)", {"kind": "zeros", "length": CDC_STREAM_LENGTH},
             bytes(CDC_STREAM_LENGTH))):
        streams.append({"name": name, "generator": generator, "sha256": hashlib.sha256(data).hexdigest(),
                        "cuts": {seed_name: [{"offset": c.offset, "length": c.length}
                                             for c in new_chunker(seed).cut_buf(data)]
                                 for seed_name, seed in seeds.items()}})
    return {
        "about": "FastCDC cut points, keyed with keys.json's first case's chunker seed, and unkeyed (seed 0, "
                 "FastCDC's own gear table, as agents before the keyed chunker cut) (docs/design.md, Chunk ids "
                 "and chunking).",
        "constants": {"cdc_params": CDC_PARAMS, "normalized_chunking": 1, "seed_bits_that_cut": 48,
                      "library": f"pyfastcdc {pyfastcdc.__version__}"},
        "seeds": seeds,
        "keyed_seed_from": f"keys.json: the chunker_seed of case {KEY_CASES[0][0]!r}",
        "streams": streams,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regenerate", action="store_true",
                        help="rewrite the vector files from today's code (a format change)")
    args = parser.parse_args(argv)
    if not args.regenerate:
        print("refusing to rewrite tests/vectors/*.json: they pin the storage format, and rewriting "
              "them accepts whatever the code now writes. For a deliberate format change or a new "
              "vector, run again with --regenerate and review the diff.", file=sys.stderr)
        return 2
    keys_doc, keys = _keys_doc()
    manifest_doc = _manifest_doc(keys)
    docs = {"keys.json": keys_doc, "chunk.json": _chunk_doc(keys),
            "envelope.json": _envelope_doc(keys, manifest_doc["stream"]["chunk_id"]),
            "messages.json": _messages_doc(keys), "request.json": _request_doc(keys),
            "fastcdc.json": _fastcdc_doc(), "manifest.json": manifest_doc}
    for name, doc in docs.items():
        _write(name, doc)
        print(f"wrote tests/vectors/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
