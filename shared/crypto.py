"""Keys, keyed chunk ids, the encrypted envelope and message signatures.

Words (docs/design.md is the normative spec):
- passphrase: the customer's secret, at least 16 characters; never leaves the agent. One being
  chosen (a vault's first registration) must also be hard to guess (check_new_passphrase).
- kdf document: a vault's public Argon2id parameters, salt and passphrase normalization, as
  the credentials files carry them; checked against KDF_LIMITS before anything is derived.
- master key: Argon2id(passphrase, NFKC-normalized if the vault says so, the vault's salt).
- subkeys: HKDF-SHA256 of the master key, one per purpose (chunk ids, chunk
  encryption, manifests, the key check value), and the chunker seed, which keys FastCDC.
- envelope: MAGIC | version | algorithm | nonce | AES-256-GCM(ciphertext+tag),
  with a key derived per object and AAD binding vault id, object name and version.

Only library primitives are used (cryptography, blake3); nothing here is hand-rolled crypto.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import struct
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_PASSPHRASE_CHARS = 16
# zxcvbn's score a new passphrase needs: 4, "strong protection from an offline slow-hash
# scenario" (10^10 guesses or more). Offline is our case: the service holds the salt and the key
# check value, so whoever reads its index can test guesses at Argon2id's speed, for as long as
# the backups are kept.
NEW_PASSPHRASE_MIN_SCORE = 4
# zxcvbn's own max_length: its matching grows faster than the length (a few hundred characters
# of a repeated pattern take seconds), and a passphrase is at least as strong as its beginning.
RATED_PASSPHRASE_CHARS = 72

MAGIC = b"SKV1"
FORMAT_VERSION = 1
ALG_AES256_GCM = 1
NONCE_BYTES = 12
HEADER = struct.Struct(">4sBB12s")  # magic, version, algorithm, nonce
HEADER_BYTES = HEADER.size
TAG_BYTES = 16

# Plaintext framing: one flag byte, then the payload.
FRAME_RAW = 0
FRAME_ZSTD = 1
ZSTD_LEVEL = 3
PROBES, PROBE_BYTES = 4, 16 * 1024
INCOMPRESSIBLE_RATIO = 0.97
# The largest plaintext a frame holds: the chunker's largest chunk (skyvault/chunker.py's
# CDC_PARAMS max_size; a test keeps them equal). A manifest root is far smaller.
MAX_PLAINTEXT_BYTES = 8 * 1024 * 1024

# New vaults' parameters. A kdf document without "normalization" (the vaults made before it)
# hashes the passphrase as typed.
KDF_PARAMS = {"algorithm": "argon2id", "iterations": 3, "memoryKiB": 65536, "lanes": 4, "normalization": "NFKC"}
# What an agent derives with, whatever a credentials file says: at least RFC 9106's second
# recommended option (t=3, m=64 MiB, p=4), at most what no vault needs and no file may make an
# agent allocate (4 GiB).
KDF_LIMITS = {"iterations": (3, 100), "memoryKiB": (64 * 1024, 4 * 1024 * 1024), "lanes": (4, 255)}
NORMALIZATIONS = ("NFKC",)
SALT_BYTES = (16, 64)
_KDF_FIELDS = {"algorithm", *KDF_LIMITS, "normalization", "salt"}

CHUNKER_SEED_LABEL = b"skyvault chunker seed"
CHUNKER_SEED_BYTES = 8
# pyfastcdc takes a uint64 seed, but its compiled chunker shifts it left as a Python int first:
# 2**63 and above raise OverflowError. With CDC_PARAMS only the low 48 bits move cut points
# (FastCDC's masks end at bit 47).
CHUNKER_SEED_MASK = (1 << 63) - 1


class CryptoError(Exception):
    """Base of this module's errors."""


class WeakPassphrase(CryptoError):
    """Too short to use, or too easy to guess to choose; the message says which and why."""


class BadKdf(CryptoError):
    """A vault's kdf document this agent does not derive with; the message names the parameter."""


class KeysOutdated(CryptoError):
    """Remembered keys from an agent that did not derive everything this one needs."""


class WrongKeyOrTampered(CryptoError):
    """Authentication failed: the data was changed, or the key is not this vault's."""


class BadEnvelope(CryptoError):
    """The bytes are not a Skyvault envelope of a version this code reads."""


_KEY_DOC_FIELDS = {"chunk_id_key": "chunkIdKey", "chunk_key": "chunkKey", "manifest_key": "manifestKey",
                   "check_key": "checkKey"}


@dataclass(frozen=True)
class VaultKeys:
    chunk_id_key: bytes
    chunk_key: bytes
    manifest_key: bytes
    check_key: bytes
    chunker_seed: int  # keys the chunker (skyvault/chunker.new_chunker): cut points differ per vault

    def key_check_value(self) -> str:
        """A MAC of a constant: lets the service tell a wrong passphrase without learning any key."""
        return hmac.new(self.check_key, b"skyvault key check v1", hashlib.sha256).hexdigest()

    def to_doc(self) -> dict[str, str]:
        """The keys as hex, for the agent's own machine only (skyvault.home's keys.json)."""
        return {**{doc: getattr(self, field).hex() for field, doc in _KEY_DOC_FIELDS.items()},
                "chunkerSeed": f"{self.chunker_seed:016x}"}

    @classmethod
    def from_doc(cls, doc: Mapping[str, str]) -> "VaultKeys":
        """Refuses, with KeysOutdated, the keys an agent older than the keyed chunker remembered:
        the seed comes from the master key, which is never stored, and chunking with seed 0
        instead would go on cutting where every unkeyed agent cuts, the leak the seed closes."""
        if "chunkerSeed" not in doc:
            raise KeysOutdated("the remembered keys (keys.json) are an older agent's and lack the chunker seed, "
                               "which only the passphrase gives: run `skyvault register` again, or remove "
                               "keys.json to be asked for the passphrase")
        keys = {field: _hex_field(doc, name, 32) for field, name in _KEY_DOC_FIELDS.items()}
        seed = int.from_bytes(_hex_field(doc, "chunkerSeed", CHUNKER_SEED_BYTES), "big")
        if seed > CHUNKER_SEED_MASK:
            raise CryptoError(f"remembered keys: field 'chunkerSeed' is {doc['chunkerSeed']}, over 63 bits")
        return cls(**keys, chunker_seed=seed)


def _hex_field(doc: Mapping[str, str], name: str, size: int) -> bytes:
    value = doc.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != size:
        raise CryptoError(f"remembered keys: field {name!r} is not {size} bytes of hex")
    return raw


def check_passphrase(passphrase: str) -> None:
    """The rule for using a passphrase: at least MIN_PASSPHRASE_CHARS code points as typed. A
    vault's passphrase in use is held to nothing more (one chosen before check_new_passphrase
    existed stays usable)."""
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise WeakPassphrase(f"the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters")


def check_new_passphrase(passphrase: str, context: Sequence[str] = ()) -> None:
    """The rule for choosing a vault's passphrase: check_passphrase's, and zxcvbn's score of its
    NFKC form (what new vaults hash) at least NEW_PASSPHRASE_MIN_SCORE, with `context` (the
    tenant's and vault's names, say) and "skyvault" as words a guesser would try first. The
    error says why, in zxcvbn's words where it has them."""
    check_passphrase(passphrase)
    normalized = unicodedata.normalize("NFKC", passphrase)
    unassigned = next((c for c in normalized if unicodedata.category(c) == "Cn"), None)
    if unassigned is not None:
        raise WeakPassphrase(f"the passphrase holds U+{ord(unassigned):04X}, which Unicode "
                             f"{unicodedata.unidata_version} does not assign: a later Unicode may normalize it "
                             f"otherwise, and derive other keys")
    from zxcvbn import zxcvbn  # imported here: only choosing a passphrase needs it, not every command

    rated = zxcvbn(normalized[:RATED_PASSPHRASE_CHARS], user_inputs=["skyvault", *context],
                   max_length=RATED_PASSPHRASE_CHARS)
    if rated["score"] >= NEW_PASSPHRASE_MIN_SCORE:
        return
    feedback = rated["feedback"]
    why = feedback["warning"].rstrip(".") or f"about 10^{math.log10(rated['guesses']):.0f} guesses would find it"
    of = f", in its first {RATED_PASSPHRASE_CHARS} characters" if len(normalized) > RATED_PASSPHRASE_CHARS else ""
    hint = " ".join(feedback["suggestions"]) or "Add another word or two. Uncommon words are better."
    raise WeakPassphrase(f"the passphrase is too easy to guess: {why}{of} (strength {rated['score']} of 4, "
                         f"{NEW_PASSPHRASE_MIN_SCORE} needed). {hint}")


def check_kdf(kdf: Mapping[str, Any]) -> None:
    """Raises BadKdf, naming the parameter, unless this agent derives with `kdf` (a vault's kdf
    document, or its parameters alone): Argon2id within KDF_LIMITS, a normalization it knows,
    and if there, a salt of SALT_BYTES as base64. A field it does not know is refused too: it
    could only mean a derivation this agent does not do."""
    unknown = sorted(set(kdf) - _KDF_FIELDS)
    if unknown:
        raise BadKdf(f"unknown KDF parameter {unknown[0]!r}")
    if kdf.get("algorithm") != "argon2id":
        raise BadKdf(f"unknown key derivation {kdf.get('algorithm')!r}")
    for name, (low, high) in KDF_LIMITS.items():
        value = kdf.get(name)
        if type(value) is not int:
            raise BadKdf(f"KDF parameter {name!r} is {value!r}, not an integer")
        if value < low:
            raise BadKdf(f"KDF parameter {name!r} is {value}, below the minimum {low} (RFC 9106's second "
                         f"recommended option): refusing to derive keys with it")
        if value > high:
            raise BadKdf(f"KDF parameter {name!r} is {value}, above the maximum {high}: refusing to derive keys "
                         f"with it")
    if "normalization" in kdf and kdf["normalization"] not in NORMALIZATIONS:
        raise BadKdf(f"KDF parameter 'normalization' is {kdf['normalization']!r}, not one of {NORMALIZATIONS}")
    if "salt" in kdf:
        kdf_salt(kdf)


def kdf_salt(kdf: Mapping[str, Any]) -> bytes:
    """The salt of a vault's kdf document: strict base64 of SALT_BYTES; BadKdf if not."""
    if "salt" not in kdf:
        raise BadKdf("the KDF document has no salt")
    salt = kdf["salt"]
    if not isinstance(salt, str):
        raise BadKdf(f"KDF parameter 'salt' is {salt!r}, not base64 text")
    try:
        raw = base64.b64decode(salt, validate=True)
    except ValueError:
        raise BadKdf("KDF parameter 'salt' is not base64") from None
    _check_salt(raw)
    return raw


def _check_salt(salt: bytes) -> None:
    if not SALT_BYTES[0] <= len(salt) <= SALT_BYTES[1]:
        raise BadKdf(f"a salt of {len(salt)} bytes: a vault's has {SALT_BYTES[0]} to {SALT_BYTES[1]}")


def _hashed_passphrase(passphrase: str, kdf: Mapping[str, Any]) -> bytes:
    """What Argon2id hashes: the UTF-8 bytes of the passphrase, normalized as the vault says."""
    normalization = kdf.get("normalization")
    return (unicodedata.normalize(normalization, passphrase) if normalization else passphrase).encode("utf-8")


def derive_master_key(passphrase: str, salt: bytes, params: Mapping[str, Any] | None = None) -> bytes:
    """Argon2id of the passphrase's UTF-8 bytes (NFKC first if `params` say so): the root of
    every subkey. `params` (default KDF_PARAMS) are checked first (check_kdf), so a tampered
    document derives nothing. Only derive_keys and the format's test vectors
    (tests/vectors/keys.json) use it; it is never stored or sent."""
    check_passphrase(passphrase)
    p = KDF_PARAMS if params is None else params
    check_kdf(p)
    _check_salt(salt)
    return Argon2id(salt=salt, length=32, iterations=p["iterations"], lanes=p["lanes"],
                    memory_cost=p["memoryKiB"]).derive(_hashed_passphrase(passphrase, p))


def derive_keys(passphrase: str, salt: bytes, params: Mapping[str, Any] | None = None) -> VaultKeys:
    master = derive_master_key(passphrase, salt, params)
    return VaultKeys(
        chunk_id_key=_hkdf(master, b"skyvault chunk id"),
        chunk_key=_hkdf(master, b"skyvault chunk encryption"),
        manifest_key=_hkdf(master, b"skyvault manifest"),
        check_key=_hkdf(master, b"skyvault key check"),
        chunker_seed=int.from_bytes(_hkdf(master, CHUNKER_SEED_LABEL, CHUNKER_SEED_BYTES), "big") & CHUNKER_SEED_MASK,
    )


def derive_vault_keys(passphrase: str, kdf: Mapping[str, Any]) -> VaultKeys:
    """The keys of a vault from its kdf document (a credentials file's "kdf"): its salt read
    strictly, every parameter checked before Argon2id runs."""
    return derive_keys(passphrase, kdf_salt(kdf), kdf)


def new_salt() -> bytes:
    return os.urandom(16)


def _hkdf(key: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


def chunk_id(keys: VaultKeys, plaintext: bytes | memoryview) -> str:
    """Keyed BLAKE3 of the plaintext: equal data in two vaults gets different ids."""
    return blake3.blake3(plaintext, key=keys.chunk_id_key, max_threads=1).hexdigest()


_RAW_FLAG, _ZSTD_FLAG = bytes([FRAME_RAW]), bytes([FRAME_ZSTD])


def _frame_parts(plaintext: bytes | memoryview,
                 compressor: zstandard.ZstdCompressor | None = None) -> tuple[bytes, bytes | memoryview]:
    """The flag byte and the payload of a plaintext frame: zstd unless that does not make it
    smaller. A large chunk none of whose PROBES evenly spread samples compresses (media,
    archives, encrypted files) is stored raw without compressing the whole of it, which would
    cost time for nothing."""
    compressor = compressor or zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    view = memoryview(plaintext)
    if len(view) >= PROBES * PROBE_BYTES * 4:
        step = (len(view) - PROBE_BYTES) // (PROBES - 1)
        samples = (view[i * step:i * step + PROBE_BYTES] for i in range(PROBES))
        if all(len(compressor.compress(sample)) > INCOMPRESSIBLE_RATIO * PROBE_BYTES for sample in samples):
            return _RAW_FLAG, view
    packed = compressor.compress(view)
    if len(packed) < len(view):
        return _ZSTD_FLAG, packed
    return _RAW_FLAG, view


def frame(plaintext: bytes | memoryview) -> bytes:
    """The framed plaintext: the flag byte, then the (compressed) payload."""
    return b"".join(_frame_parts(plaintext))


def unframe(framed: bytes) -> bytes:
    """The plaintext of a frame, at most MAX_PLAINTEXT_BYTES: a zstd frame is refused before it
    is decompressed when its header records a larger size, or none (a few bytes could otherwise
    make the reader allocate gigabytes)."""
    if not framed:
        raise BadEnvelope("empty plaintext frame")
    flag, body = framed[0], memoryview(framed)[1:]
    if flag == FRAME_RAW:
        size = len(body)
    elif flag == FRAME_ZSTD:
        try:
            size = zstandard.frame_content_size(body)
        except zstandard.ZstdError as e:
            raise BadEnvelope(f"zstd frame header not readable: {e}") from None
        if size < 0:
            raise BadEnvelope("zstd frame without its content size")
    else:
        raise BadEnvelope(f"unknown frame flag {flag}")
    if size > MAX_PLAINTEXT_BYTES:
        raise BadEnvelope(f"frame of {size} bytes of plaintext: over the largest chunk, {MAX_PLAINTEXT_BYTES}")
    if flag == FRAME_RAW:
        return bytes(body)
    try:
        return zstandard.ZstdDecompressor().decompress(body, max_output_size=MAX_PLAINTEXT_BYTES)
    except zstandard.ZstdError as e:
        raise BadEnvelope(f"zstd frame not decodable: {e}") from None


def _aad(header: bytes, vault_id: str, name: str) -> bytes:
    return header[:6] + vault_id.encode() + b"\0" + name.encode()


def _object_key(key: bytes, name: str) -> bytes:
    # One key per object, so no key encrypts anywhere near 2^32 messages with random nonces.
    return _hkdf(key, b"skyvault object " + name.encode())


def _envelope_bytes(plaintext_bytes: int) -> int:
    """Room _seal_into needs: the envelope, plus the block of slack cryptography's update_into asks for."""
    return HEADER_BYTES + plaintext_bytes + TAG_BYTES + 15


def _seal_into(out: memoryview, key: bytes, vault_id: str, name: str, parts: tuple,
               nonce: bytes | None = None) -> memoryview:
    """Write the envelope of the concatenated `parts` (the framed plaintext) into `out`, and
    return the part of `out` it fills. AES-256-GCM as AESGCM.encrypt computes it (ciphertext,
    then the tag), through cryptography's incremental interface, so the flag byte and the
    payload need not be joined first, nor the header and the ciphertext after."""
    header = HEADER.pack(MAGIC, FORMAT_VERSION, ALG_AES256_GCM, nonce or os.urandom(NONCE_BYTES))
    out[:HEADER_BYTES] = header
    encryptor = Cipher(algorithms.AES(_object_key(key, name)), modes.GCM(header[6:])).encryptor()
    encryptor.authenticate_additional_data(_aad(header, vault_id, name))
    end = HEADER_BYTES
    for part in parts:
        end += encryptor.update_into(part, out[end:])
    encryptor.finalize()
    out[end:end + TAG_BYTES] = encryptor.tag
    return out[:end + TAG_BYTES]


def seal(key: bytes, vault_id: str, name: str, framed: bytes, nonce: bytes | None = None) -> bytes:
    """Encrypt an already framed plaintext into an envelope bound to (vault_id, name)."""
    out = bytearray(_envelope_bytes(len(framed)))
    return bytes(_seal_into(memoryview(out), key, vault_id, name, (framed,), nonce))


class ChunkSealer:
    """Frames and encrypts chunks for one thread, into a buffer it reuses: a fresh buffer for each
    chunk would cost the kernel faulting in and zeroing its pages, more CPU than the encryption.
    An envelope it returns is valid until its next call."""

    def __init__(self, keys: VaultKeys, vault_id: str):
        self._key, self._vault_id = keys.chunk_key, vault_id
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._buffer = memoryview(bytearray())

    def seal(self, cid: str, plaintext: bytes | memoryview, *, nonce: bytes | None = None) -> memoryview:
        """The envelope of chunk `cid`. The nonce is random unless given: only the format's test
        vectors give one, to pin the bytes (tests/vectors/envelope.json)."""
        flag, payload = _frame_parts(plaintext, self._compressor)
        needed = _envelope_bytes(1 + len(payload))
        if len(self._buffer) < needed:  # grows to the largest chunk seen: at most 8 MiB + 50 bytes
            self._buffer = memoryview(bytearray(needed))
        return _seal_into(self._buffer, self._key, self._vault_id, cid, (flag, payload), nonce)


def parse_header(envelope: bytes) -> tuple[int, int, bytes]:
    """(version, algorithm, nonce) of an envelope; raises BadEnvelope."""
    if len(envelope) < HEADER_BYTES:
        raise BadEnvelope(f"envelope of {len(envelope)} bytes is shorter than its header")
    magic, version, algorithm, nonce = HEADER.unpack_from(envelope)
    if magic != MAGIC:
        raise BadEnvelope("not a Skyvault envelope (bad magic)")
    if version != FORMAT_VERSION or algorithm != ALG_AES256_GCM:
        raise BadEnvelope(f"unsupported envelope version {version} algorithm {algorithm}")
    return version, algorithm, nonce


def open_envelope(key: bytes, vault_id: str, name: str, envelope: bytes) -> bytes:
    """Authenticate and decrypt; returns the framed plaintext. Raises WrongKeyOrTampered or BadEnvelope."""
    parse_header(envelope)
    header = bytes(envelope[:HEADER_BYTES])
    try:
        return AESGCM(_object_key(key, name)).decrypt(  # a view: slicing bytes would copy the chunk
            header[6:], memoryview(envelope)[HEADER_BYTES:], _aad(header, vault_id, name))
    except InvalidTag:
        raise WrongKeyOrTampered(f"{name}: authentication failed (tampered, or not this vault's key)") from None


def encrypt_chunk(keys: VaultKeys, vault_id: str, cid: str, plaintext: bytes | memoryview) -> bytes:
    """A chunk's envelope as bytes of its own (ChunkSealer, for many chunks)."""
    return bytes(ChunkSealer(keys, vault_id).seal(cid, plaintext))


def decrypt_chunk(keys: VaultKeys, vault_id: str, cid: str, envelope: bytes) -> bytes:
    """Decrypt a chunk and check that its content still hashes to its id."""
    plaintext = unframe(open_envelope(keys.chunk_key, vault_id, cid, envelope))
    if not hmac.compare_digest(chunk_id(keys, plaintext), cid):
        raise WrongKeyOrTampered(f"chunk {cid}: content does not match its id")
    return plaintext


def sign(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def verify_signature(key: bytes, payload: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(key, payload), signature)
