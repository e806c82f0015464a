"""The content-defined chunker, pinned: FastCDC (pyfastcdc) with fixed parameters, keyed per vault.

Another chunker, or these parameters changed, cuts elsewhere and breaks dedup against every
existing vault; tests/vectors/ pins the cut points (docs/design.md, "Chunking"). The seed
(VaultKeys.chunker_seed, from the master key) changes FastCDC's gear table, so the cut points,
and the sizes the service sees, are the vault's own: a known file's chunk sizes do not give it
away. Seed 0 is FastCDC's own table, which agents before the keyed chunker cut with.
"""
from __future__ import annotations

from pyfastcdc import FastCDC

from shared.crypto import CHUNKER_SEED_MASK

# avg_size equal to min_size: the mean chunk of random data is ~0.75 MiB (measured: 753 KiB
# over 200 MiB), between 512 KiB and 8 MiB.
CDC_PARAMS = {"avg_size": 512 * 1024, "min_size": 512 * 1024, "max_size": 8 * 1024 * 1024}


def new_chunker(seed: int) -> FastCDC:
    """A chunker keyed by `seed`, the vault's VaultKeys.chunker_seed."""
    if not 0 <= seed <= CHUNKER_SEED_MASK:
        raise ValueError(f"chunker seed {seed} is not within 0 to 2**63 - 1")
    return FastCDC(CDC_PARAMS["avg_size"], min_size=CDC_PARAMS["min_size"], max_size=CDC_PARAMS["max_size"],
                   seed=seed)
