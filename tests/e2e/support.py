"""Helpers of the end-to-end tests."""
from __future__ import annotations

import time

PASSPHRASE = "end to end test passphrase"


def wait_until(predicate, timeout=90.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
