"""Editing a JSON document for the parsers' refusal tests."""
from __future__ import annotations

import json
from typing import Any


def edited(doc: Any, path: str, value: Any) -> Any:
    """A deep copy of `doc` with the field at dotted `path` (a digit part indexes a list) set to
    `value`, or removed when `value` is KeyError."""
    copy = json.loads(json.dumps(doc))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = copy
    for name in parents:
        target = target[name]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return copy
