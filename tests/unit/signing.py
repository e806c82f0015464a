"""Signing raw message documents in tests, so that they can forge and malform what no agent
would send: the wire rule of docs/design.md ("Queue messages"), not the agent's code."""
from __future__ import annotations

import json

from shared import crypto, formats


def signed_json(doc: dict, key: bytes) -> str:
    unsigned = {k: v for k, v in doc.items() if k != "sig"}
    return json.dumps({**unsigned, "sig": crypto.sign(key, formats.canonical(unsigned))}, separators=(",", ":"))
