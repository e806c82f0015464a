"""Inputs of the fuzz tests: arbitrary JSON values and bytes, the known nasties of JSON parsing,
and mutations of a valid document or of valid bytes.

Words:
- nasty: an input known to break parsers that look only at the common case: a 5,000-digit
  integer (Python's json refuses more than 4,300 digits with a ValueError), NaN and Infinity
  (which json reads), nesting deeper than the interpreter's recursion limit, lone surrogates
  (escaped, or as the bytes no UTF-8 decoder accepts), bytes that are not UTF-8, a byte-order
  mark, duplicate keys (json keeps the last), a body over the size limit.
- mutation: a valid document with one to a few changes: a field removed, added or renamed, a
  value replaced by one just off its rule (one character more, a newline at the end, one more
  than its bound, another JSON type) or by any JSON value.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import sys
from typing import Any

from hypothesis import HealthCheck, settings, strategies as st

# The profile conftest.py registers: the long one with HYPOTHESIS_PROFILE=fuzz, else the short one.
FUZZ = settings.get_profile("fuzz" if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else "fuzz-short")
# For the tests whose inputs are large on purpose (huge bodies, deep nesting).
FUZZ_LARGE = settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                   HealthCheck.large_base_example])



class _HugeInt(int):
    """A 5,001-digit integer, which hypothesis can print (an int's repr refuses over 4,300
    digits); str() and formatting still refuse, as they do a plain int's."""

    def __repr__(self) -> str:
        return "-10 ** 5000" if self < 0 else "10 ** 5000"

    __str__ = int.__repr__


HUGE_INT, NEGATIVE_HUGE_INT = _HugeInt(10 ** 5000), _HugeInt(-10 ** 5000)
NASTY_STRINGS = ("", " ", "\n", "laptop\n", "\ud800", "\udfff", "a\udcffb", "\x00", "\u00e9", "\U0001f600",
                 "../x", "a/../b", "/abs", "true", "null", "0" * 64, "ab" * 32 + "\n", "AB" * 32, "a" * 65,
                 "x" * 5000, "20261202T101500Z-1a2b3c4d\n", "primary", "secondary", "2026-12-02T10:15:00",
                 "2026-12-02T10:15:00+00:00", "NaN", "-1", "1" * 30)
NASTY_NUMBERS = (0, -1, 1, 34, 35, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 1, 2 ** 63, -2 ** 63 - 1, 2 ** 64,
                 HUGE_INT, NEGATIVE_HUGE_INT, 9 * 1024 * 1024 + 1, 1.5, -0.0, 1e308, float("nan"), float("inf"),
                 float("-inf"))

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
                | st.sampled_from(NASTY_STRINGS) | st.sampled_from(NASTY_NUMBERS))
# At most three levels deep, built without st.recursive, which costs four times as much to
# draw: drawing values is most of a fuzz test's time, and the nasties (deep nesting included)
# do the damage.
_keys = st.text(max_size=8) | st.sampled_from(NASTY_STRINGS)
_leaves = json_scalars | st.lists(json_scalars, max_size=3)
json_values = (json_scalars | st.lists(_leaves | st.dictionaries(_keys, json_scalars, max_size=3), max_size=4)
               | st.dictionaries(_keys, _leaves | st.dictionaries(_keys, _leaves, max_size=3), max_size=4))


@contextlib.contextmanager
def _any_digits():
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(limit)


def to_json(value: Any) -> bytes:
    """`value` as JSON text, as anyone could write it: 5,000-digit integers, NaN and lone
    surrogates (escaped) included, which the reader then has to refuse."""
    with _any_digits():
        text = json.dumps(value)
    return text.encode()


def as_parsed(value: Any) -> Any:
    """`value` as a parser gets it from the JSON text `to_json` writes (lone surrogates and NaN
    come back); a ValueError for a 5,000-digit integer, which json refuses to read."""
    return json.loads(to_json(value))


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def _texts() -> list[bytes]:
    ids = '"' + "ab" * 32 + '"'
    return [
        b"", b" ", b"null", b"true", b"0", b"[]", b'"x"', b"{", b"}", b"{}}", b"{}{}", b"{,}", b"\x00",
        b'{"ids": ' + b"7" * 5000 + b"}", b"7" * 5000, b"-" + b"7" * 4301,
        b'{"ids": NaN}', b'{"ids": Infinity}', b'{"ids": -Infinity}', b"NaN", b'{"ids": 1e400}', b"-0",
        b'{"ids": ["\\ud800"]}', b'"\\udfff"', b'{"\\ud800": 1}', b'{"ids": "\xed\xa0\x80"}',
        b'{"ids": ["\xff\xfe"]}', b"\xff\xfe{\x00}\x00", b"\xef\xbb\xbf{}", b"\xc3\x28",
        '{"ids": []}'.encode("utf-16"), ('{"ids": [], "ids": [' + ids + "]}").encode(),
        b'{"v": 2, "v": "2"}', b"{" + b'"a": 1, ' * 10000 + b'"a": 2}',
        b" " * (4 * 48 * 1024 + 1) + b"{}", ('{"ids": [' + ",".join([ids] * 5000) + "]}").encode(),
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000, nested(100_000), nested(995), nested(2000),
    ]


NASTY_TEXTS = tuple(_texts())
nasty_texts = st.sampled_from(NASTY_TEXTS) | st.integers(900, 1100).map(nested) | st.integers(400, 600).map(
    lambda n: b'{"a":' * n + b"{}" + b"}" * n)


def in_field(name: str) -> st.SearchStrategy[bytes]:
    """A JSON object whose field `name` holds a nasty value, as text."""
    return (st.sampled_from(NASTY_TEXTS) | st.integers(900, 1100).map(nested)).map(
        lambda inner: b'{"' + name.encode() + b'": ' + inner + b"}")


# Mutations of valid documents

def _pick(draw, options):
    """One of `options`, drawn by index: sampled_from would build a new strategy for each list."""
    return options[draw(st.integers(0, len(options) - 1))]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            out += _paths(inner, prefix + (key,))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            out += _paths(inner, prefix + (i,))
    return out


_characters = st.characters() | st.sampled_from("\n\x00\ud800/.\u00e9")


def _off_by_one(draw, value: Any) -> Any:
    """A value just off the rule `value` follows."""
    if isinstance(value, bool):
        return _pick(draw, [not value, 0, 1, "true", None])
    if isinstance(value, _HugeInt):
        return _pick(draw, [0, -1, 2 ** 64, "1", None])
    if isinstance(value, int):
        return _pick(draw, [value + 1, value - 1, -value, 0, -1, value * 2 ** 32, True, float(value), str(value),
                            HUGE_INT, None])
    if isinstance(value, float):
        return _pick(draw, [float("nan"), float("inf"), int(value) if math.isfinite(value) else 0, str(value)])
    if isinstance(value, str):
        change = _pick(draw, ("\n", "cut", "twice", "upper", "", "space", "nul", "replace", "insert", "list",
                              "null"))
        if change in ("replace", "insert"):
            i = draw(st.integers(0, len(value)))
            char = draw(_characters)
            return value[:i] + char + value[i + (change == "replace"):]
        return {"\n": value + "\n", "cut": value[:-1], "twice": value + value, "upper": value.upper(), "": "",
                "space": " " + value, "nul": value + "\x00", "list": [value], "null": None}[change]
    if isinstance(value, list):
        change = _pick(draw, ("empty", "twice", "cut", "append", "replace", "nest", "many", "object"))
        if change in ("append", "replace"):
            extra = draw(json_values)
            return value + [extra] if change == "append" else [extra] + value[1:]
        return {"empty": [], "twice": value + value, "cut": value[:-1], "nest": [value], "many": value * 300,
                "object": {}}[change]
    if isinstance(value, dict):
        change = _pick(draw, ("empty", "list", "add"))
        if change == "add":
            return {**value, draw(_keys): draw(json_values)}
        return {} if change == "empty" else [value]
    return _pick(draw, [0, "", {}, [], False])


@st.composite
def mutated(draw, doc: Any, max_changes: int = 3) -> Any:
    """`doc` with one to `max_changes` mutations."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, max_changes))):
        path = _pick(draw, _paths(doc))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        old = parent[path[-1]] if path else doc
        kind = _pick(draw, ("off", "off", "any", "drop", "add", "rename"))
        if kind == "drop" and path and isinstance(parent, dict):
            del parent[path[-1]]
            continue
        if kind in ("add", "rename") and isinstance(old, dict):
            key = draw(_keys)
            if kind == "rename" and old:
                name = _pick(draw, sorted(old))
                key = _pick(draw, [name.upper(), name + " ", name[:-1], key])
                old[key] = old.pop(name)
            else:
                old[key] = draw(json_values)
            continue
        new = _off_by_one(draw, old) if kind == "off" else draw(json_values)
        if path:
            parent[path[-1]] = new
        else:
            doc = new
    return doc


@st.composite
def mutated_bytes(draw, data: bytes, max_changes: int = 4) -> bytes:
    """`data` with bits flipped, bytes replaced, inserted or deleted, cut short or extended."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, max_changes))):
        kind = _pick(draw, ("flip", "replace", "insert", "delete", "truncate", "extend"))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "replace" and out:
            out[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and out:
            del out[at:at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del out[at:]
        else:
            out += draw(st.binary(min_size=1, max_size=64))
    return bytes(out)


def read_or_refused(path, data: bytes, read) -> None:
    """`read(path)` of a file holding `data`: whatever it returns, or the operator's AgentError
    naming the file; any other exception fails the test."""
    from skyvault.vaultclient import AgentError
    path.write_bytes(data)
    try:
        read(str(path))
    except AgentError as e:
        assert str(path) in str(e)
