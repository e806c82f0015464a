"""The content-defined chunker, pinned: FastCDC (pyfastcdc) with fixed parameters.

Another chunker, or these parameters changed, cuts elsewhere and breaks dedup against every
existing vault; tests/vectors/ pins the cut points (docs/design.md, "Chunking").
"""
from __future__ import annotations

from pyfastcdc import FastCDC

# avg_size equal to min_size: the mean chunk of random data is ~0.75 MiB (measured: 753 KiB
# over 200 MiB), between 512 KiB and 8 MiB.
CDC_PARAMS = {"avg_size": 512 * 1024, "min_size": 512 * 1024, "max_size": 8 * 1024 * 1024}


def new_chunker() -> FastCDC:
    return FastCDC(CDC_PARAMS["avg_size"], min_size=CDC_PARAMS["min_size"], max_size=CDC_PARAMS["max_size"])
