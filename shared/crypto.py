"""Keys, keyed chunk ids, the encrypted envelope and message signatures.

Words (docs/design.md is the normative spec):
- passphrase: the customer's secret, at least 16 characters; never leaves the agent.
- master key: Argon2id(passphrase, the vault's public salt).
- subkeys: HKDF-SHA256 of the master key, one per purpose (chunk ids, chunk
  encryption, manifests, the key check value).
- envelope: MAGIC | version | algorithm | nonce | AES-256-GCM(ciphertext+tag),
  with a key derived per object and AAD binding vault id, object name and version.

Only library primitives are used (cryptography, blake3); nothing here is hand-rolled crypto.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_PASSPHRASE_CHARS = 16

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

KDF_PARAMS = {"algorithm": "argon2id", "iterations": 3, "memoryKiB": 65536, "lanes": 4}


class CryptoError(Exception):
    """Base of this module's errors."""


class WeakPassphrase(CryptoError):
    pass


class WrongKeyOrTampered(CryptoError):
    """Authentication failed: the data was changed, or the key is not this vault's."""


class BadEnvelope(CryptoError):
    """The bytes are not a Skyvault envelope of a version this code reads."""


@dataclass(frozen=True)
class VaultKeys:
    chunk_id_key: bytes
    chunk_key: bytes
    manifest_key: bytes
    check_key: bytes

    def key_check_value(self) -> str:
        """A MAC of a constant: lets the service tell a wrong passphrase without learning any key."""
        return hmac.new(self.check_key, b"skyvault key check v1", hashlib.sha256).hexdigest()

    def to_doc(self) -> dict[str, str]:
        """The keys as hex, for the agent's own machine only (skyvault.home's keys.json)."""
        return {"chunkIdKey": self.chunk_id_key.hex(), "chunkKey": self.chunk_key.hex(),
                "manifestKey": self.manifest_key.hex(), "checkKey": self.check_key.hex()}

    @classmethod
    def from_doc(cls, doc: dict[str, str]) -> "VaultKeys":
        return cls(*(bytes.fromhex(doc[k]) for k in ("chunkIdKey", "chunkKey", "manifestKey", "checkKey")))


def check_passphrase(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise WeakPassphrase(f"the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters")


def derive_master_key(passphrase: str, salt: bytes, params: dict | None = None) -> bytes:
    """Argon2id of the passphrase's UTF-8 bytes: the root of every subkey. Only derive_keys and
    the format's test vectors (tests/vectors/keys.json) use it; it is never stored or sent."""
    check_passphrase(passphrase)
    p = params or KDF_PARAMS
    if p.get("algorithm") != "argon2id":
        raise CryptoError(f"unknown key derivation {p.get('algorithm')!r}")
    return Argon2id(salt=salt, length=32, iterations=p["iterations"], lanes=p["lanes"],
                    memory_cost=p["memoryKiB"]).derive(passphrase.encode("utf-8"))


def derive_keys(passphrase: str, salt: bytes, params: dict | None = None) -> VaultKeys:
    master = derive_master_key(passphrase, salt, params)
    return VaultKeys(
        chunk_id_key=_hkdf(master, b"skyvault chunk id"),
        chunk_key=_hkdf(master, b"skyvault chunk encryption"),
        manifest_key=_hkdf(master, b"skyvault manifest"),
        check_key=_hkdf(master, b"skyvault key check"),
    )


def new_salt() -> bytes:
    return os.urandom(16)


def _hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


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
        size = zstandard.frame_content_size(body)
        if size < 0:
            raise BadEnvelope("zstd frame without its content size")
    else:
        raise BadEnvelope(f"unknown frame flag {flag}")
    if size > MAX_PLAINTEXT_BYTES:
        raise BadEnvelope(f"frame of {size} bytes of plaintext: over the largest chunk, {MAX_PLAINTEXT_BYTES}")
    if flag == FRAME_RAW:
        return bytes(body)
    return zstandard.ZstdDecompressor().decompress(body, max_output_size=MAX_PLAINTEXT_BYTES)


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
