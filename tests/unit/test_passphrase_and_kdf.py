"""What an agent accepts before it derives a vault's keys, and what it derives (security issue 16):
the vault's KDF document (Argon2id parameters and salt, which a tampered credentials file may
change) is refused below RFC 9106's second recommended option and above sane maxima; a new
passphrase must be hard to guess, a passphrase in use only long enough; NFKC normalization is a
vault KDF parameter; and the chunker is keyed by a seed derived from the master key."""
from __future__ import annotations

import base64
import os
import time

import pytest

from shared import crypto
from skyvault.backup import Backup
from skyvault.chunker import CDC_PARAMS, new_chunker

STRONG = "correct horse battery staple"
SALT = bytes(range(16))
LEGACY_KDF = {k: v for k, v in crypto.KDF_PARAMS.items() if k != "normalization"}  # vaults made before it


def _kdf_doc(**changes) -> dict:
    """A vault's kdf document as the credentials file carries it, with `changes` (None: removed)."""
    doc = {**crypto.KDF_PARAMS, "salt": base64.b64encode(SALT).decode(), **changes}
    return {k: v for k, v in doc.items() if v is not None}


@pytest.fixture(scope="module")
def keys():
    return crypto.derive_vault_keys(STRONG, _kdf_doc())


# The vault's KDF document

@pytest.mark.parametrize("field, value, why", [
    ("iterations", 1, "'iterations' is 1, below the minimum 3"),
    ("memoryKiB", 8, "'memoryKiB' is 8, below the minimum 65536"),
    ("memoryKiB", 65535, "'memoryKiB' is 65535, below the minimum 65536"),
    ("lanes", 1, "'lanes' is 1, below the minimum 4"),
    ("iterations", 101, "'iterations' is 101, above the maximum 100"),
    ("memoryKiB", 4 * 1024 * 1024 + 1, "'memoryKiB' is 4194305, above the maximum 4194304"),
    ("memoryKiB", 2 ** 40, "'memoryKiB' is 1099511627776, above the maximum"),
    ("lanes", 256, "'lanes' is 256, above the maximum 255"),
    ("iterations", "3", "'iterations' is '3', not an integer"),
    ("lanes", True, "'lanes' is True, not an integer"),
    ("memoryKiB", None, "'memoryKiB' is None, not an integer"),
    ("algorithm", "scrypt", "unknown key derivation 'scrypt'"),
    ("normalization", "NFC", "'normalization' is 'NFC'"),
    ("salt", base64.b64encode(b"s" * 8).decode(), "salt of 8 bytes"),
    ("salt", base64.b64encode(b"s" * 65).decode(), "salt of 65 bytes"),
    ("salt", "not base64!", "'salt' is not base64"),
    ("salt", 16, "'salt' is 16, not base64 text"),
    ("pepper", "x", "unknown KDF parameter 'pepper'"),
    ("keyCheck", "ab" * 32, "unknown KDF parameter 'keyCheck'"),
])
def test_a_tampered_kdf_document_is_refused_before_any_derivation(field, value, why):
    """A credentials file is only a file: one that asks for 8 KiB and one pass (cheap guesses
    for whoever reads what the keys protect), or for a terabyte (the agent's memory), or for
    something this agent does not know, derives nothing: Argon2id never runs."""
    started = time.monotonic()
    with pytest.raises(crypto.BadKdf, match=why.replace("(", r"\(")):
        crypto.derive_vault_keys(STRONG, _kdf_doc(**{field: value}))
    assert time.monotonic() - started < 0.05, "refused before Argon2id"


def test_a_kdf_document_without_a_salt_is_refused():
    with pytest.raises(crypto.BadKdf, match="no salt"):
        crypto.derive_vault_keys(STRONG, _kdf_doc(salt=None))


def test_the_parameters_given_with_the_salt_apart_are_checked_too():
    """derive_keys and derive_master_key (the salt as bytes) hold the same limits."""
    with pytest.raises(crypto.BadKdf, match="'iterations' is 1"):
        crypto.derive_keys(STRONG, SALT, {**crypto.KDF_PARAMS, "iterations": 1})
    with pytest.raises(crypto.BadKdf, match="salt of 15 bytes"):
        crypto.derive_master_key(STRONG, SALT[:15], crypto.KDF_PARAMS)


def test_the_limits_admit_the_rfc_option_and_the_maxima():
    crypto.check_kdf({"algorithm": "argon2id", "iterations": 3, "memoryKiB": 65536, "lanes": 4})
    crypto.check_kdf({"algorithm": "argon2id", "iterations": 100, "memoryKiB": 4 * 1024 * 1024, "lanes": 255,
                      "normalization": "NFKC", "salt": base64.b64encode(b"s" * 64).decode()})


def test_vaults_made_before_normalization_still_derive(keys):
    """The kdf documents of existing vaults (no "normalization") are accepted, and an ASCII
    passphrase, which NFKC leaves as it is, derives the same keys under either."""
    assert crypto.derive_vault_keys(STRONG, _kdf_doc(normalization=None)) == keys
    assert crypto.KDF_PARAMS["normalization"] == "NFKC", "new vaults normalize"


# Passphrases: choosing one, using one

@pytest.mark.parametrize("weak, why", [
    ("a" * 16, 'Repeats like "aaa" are easy to guess'),
    ("passwordpassword", "Repeats like"),
    ("1234567890123456", "similar to a commonly used password"),
    ("Password1234567!", "about 10\\^8 guesses"),
    ("\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44" * 2, "Repeats like"),  # fullwidth: NFKC "passwordpassword"
])
def test_a_weak_passphrase_is_refused_when_chosen_and_says_why(weak, why):
    with pytest.raises(crypto.WeakPassphrase, match=why):
        crypto.check_new_passphrase(weak)


def test_a_weak_passphrase_already_in_use_stays_usable():
    """A vault whose first machine chose 'a' * 16 before the strength rule still opens: using a
    passphrase is only held to its length."""
    crypto.check_passphrase("a" * 16)
    assert crypto.derive_vault_keys("a" * 16, _kdf_doc(normalization=None)).chunk_key


def test_a_short_passphrase_is_refused_chosen_or_used():
    for check in (crypto.check_new_passphrase, crypto.check_passphrase):
        with pytest.raises(crypto.WeakPassphrase, match="at least 16 characters"):
            check("Tr0ub4dor&3xyz")


@pytest.mark.parametrize("strong", [
    STRONG, "Tresor-Schl\u00fcssel f\u00fcr K\u00f6ln", "end to end test passphrase",
    "skyvault bench passphrase, not for real data", "lantern " + "x7Qp!" * 20,  # over zxcvbn's 72
])
def test_a_strong_passphrase_is_accepted(strong):
    crypto.check_new_passphrase(strong)


def test_a_passphrase_is_rated_on_its_first_72_characters():
    """zxcvbn's matching grows faster than the length (seconds for a few hundred characters):
    it rates the first 72, and a passphrase is at least as strong as its beginning."""
    with pytest.raises(crypto.WeakPassphrase, match="first 72 characters"):
        crypto.check_new_passphrase("a" * 72 + " and then some uncommon words: quixotic zephyr")
    started = time.monotonic()
    crypto.check_new_passphrase(STRONG + " " + base64.b64encode(os.urandom(3000)).decode())
    assert time.monotonic() - started < 2


def test_the_vaults_own_names_do_not_make_a_passphrase_strong():
    crypto.check_new_passphrase("contosolaptopsbackup")
    with pytest.raises(crypto.WeakPassphrase):
        crypto.check_new_passphrase("contosolaptopsbackup", context=("contoso", "laptops"))


def test_a_new_passphrase_with_an_unassigned_code_point_is_refused():
    """NFKC is stable only for assigned characters: one that a later Unicode assigns could
    normalize otherwise, and derive other keys, after a Python upgrade."""
    with pytest.raises(crypto.WeakPassphrase, match="U\\+0378"):
        crypto.check_new_passphrase(STRONG + "\u0378")


# NFKC, a vault KDF parameter

COMPOSED = "Tresor-Schl\u00fcssel f\u00fcr K\u00f6ln"
TYPED_OTHERWISE = "\uff34resor-Schlu\u0308ssel fu\u0308r Ko\u0308ln"  # fullwidth T, combining diaereses


def test_nfkc_equivalent_passphrases_derive_the_same_keys_under_a_normalizing_kdf():
    assert TYPED_OTHERWISE != COMPOSED
    normalizing = _kdf_doc()
    assert crypto.derive_vault_keys(TYPED_OTHERWISE, normalizing) == crypto.derive_vault_keys(COMPOSED, normalizing)


def test_without_normalization_a_passphrase_is_hashed_as_typed():
    """Vaults made before normalization go on deriving what they always derived."""
    as_typed = _kdf_doc(normalization=None)
    assert crypto.derive_vault_keys(TYPED_OTHERWISE, as_typed) != crypto.derive_vault_keys(COMPOSED, as_typed)
    assert crypto.derive_vault_keys(COMPOSED, as_typed) == crypto.derive_vault_keys(COMPOSED, _kdf_doc()), \
        "a passphrase already in NFKC form derives the same keys either way"


# The chunker seed

def test_the_chunker_seed_is_derived_per_vault_and_fits_the_chunker(keys):
    other_vault = crypto.derive_vault_keys(STRONG, _kdf_doc(salt=base64.b64encode(bytes(16)).decode()))
    other_passphrase = crypto.derive_vault_keys("another passphrase, just as long", _kdf_doc())
    seeds = {keys.chunker_seed, other_vault.chunker_seed, other_passphrase.chunker_seed}
    assert len(seeds) == 3 and 0 not in seeds
    assert all(0 < seed < 2 ** 63 for seed in seeds), "pyfastcdc's compiled chunker refuses 2**63 and above"
    assert crypto.derive_vault_keys(STRONG, _kdf_doc()).chunker_seed == keys.chunker_seed


def test_the_seed_moves_the_cut_points_within_the_same_bounds(keys):
    data = os.urandom(24 << 20)
    unkeyed = [c.length for c in new_chunker(0).cut_buf(data)]
    keyed = [c.length for c in new_chunker(keys.chunker_seed).cut_buf(data)]
    assert keyed != unkeyed and sum(keyed) == len(data)
    assert set(keyed[:-1]) & set(unkeyed[:-1]) == set(), "not one cut point in common"
    assert all(CDC_PARAMS["min_size"] <= n <= CDC_PARAMS["max_size"] for n in keyed[:-1])


def test_the_chunker_refuses_a_seed_it_cannot_take():
    for seed in (-1, 2 ** 63):
        with pytest.raises(ValueError, match="chunker seed"):
            new_chunker(seed)


def test_remembered_keys_keep_the_seed_and_older_ones_are_refused(keys):
    assert crypto.VaultKeys.from_doc(keys.to_doc()) == keys
    older = {k: v for k, v in keys.to_doc().items() if k != "chunkerSeed"}
    with pytest.raises(crypto.KeysOutdated, match="skyvault register"):
        crypto.VaultKeys.from_doc(older)
    for field, value in (("chunkerSeed", "8" + "0" * 15), ("chunkerSeed", "12"), ("chunkKey", "ab" * 31)):
        with pytest.raises(crypto.CryptoError, match=field):
            crypto.VaultKeys.from_doc({**keys.to_doc(), field: value})


def test_a_backup_cuts_with_its_vaults_seed(vault, cache, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    content = os.urandom(6 << 20)
    (data / "big.bin").write_bytes(content)
    Backup(vault, cache, "laptop").run([str(data)])
    extents = cache.previous_file(vault.vault_id, "laptop", "data/big.bin").extents
    lengths = [length for _cid, _offset, length in extents]
    assert lengths == [c.length for c in new_chunker(vault.keys.chunker_seed).cut_buf(content)]
    assert lengths != [c.length for c in new_chunker(0).cut_buf(content)]
