"""Fuzz of shared/jsonfields.py's FieldReader itself, on documents as Python values (what a
parser's from_doc is given, whoever parsed the JSON): every reading gives a value of its type
within its bounds, or a MalformedMessage naming the field, whatever the value is: an integer
too long to print, nesting deeper than the interpreter's recursion limit, NaN."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, strategies as st

from shared.formats import MalformedMessage
from shared.jsonfields import FieldReader
from tests.fuzz.inputs import FUZZ, HUGE_INT, NEGATIVE_HUGE_INT, json_values


class _Deep(list):
    """A list nested `depth` deep, which hypothesis can print."""

    def __init__(self, depth: int, container: str):
        value: object = 1
        for _ in range(depth - 1):
            value = [value] if container == "list" else {"a": value}
        super().__init__([value])
        self.depth = depth

    def __repr__(self) -> str:
        return f"<nested {self.depth} deep>"


values = json_values | st.sampled_from([HUGE_INT, NEGATIVE_HUGE_INT, 10 ** 400, float("nan"), True]) | st.builds(
    _Deep, st.sampled_from([10, 990, 5000, 100_000]), st.sampled_from(["list", "dict"]))
READINGS = {
    "str": lambda r: r.str("f", re.compile(r"[a-z]+\Z")),
    "optional str": lambda r: r.str("f", optional=True, max_len=8),
    "one_of": lambda r: r.one_of("f", ("a", "b")),
    "int": lambda r: r.int("f", 0, 10),
    "optional int": lambda r: r.int("f", -5, 5, optional=True),
    "bool": lambda r: r.bool("f"),
    "list": lambda r: r.list("f", 3, min_len=1),
    "obj": lambda r: r.obj("f", max_bytes=64),
    "optional obj": lambda r: r.obj("f", optional=True),
    "nested": lambda r: r.nested("f").int("g"),
    "version": lambda r: r.version("f", 1, 2),
    "only": lambda r: r.only("g"),
    "has": lambda r: r.has("f"),
}


@FUZZ
@given(st.sampled_from(sorted(READINGS)), values, st.booleans())
def test_every_reading_of_any_value_gives_it_or_refuses_naming_the_field(reading, value, present):
    doc = {"f": value} if present else {"g": value}
    try:
        READINGS[reading](FieldReader(doc, "fuzz document", "outer"))
    except MalformedMessage as e:
        assert str(e).startswith("fuzz document"), e
        assert len(str(e)) < 2000


@FUZZ
@given(values)
def test_a_reader_of_anything_but_an_object_refuses(value):
    if isinstance(value, dict):
        return
    with pytest.raises(MalformedMessage):
        FieldReader(value, "fuzz document")


@pytest.mark.parametrize("reading", ["int", "version"])
def test_an_integer_too_long_to_print_is_refused_naming_its_size(reading):
    with pytest.raises(MalformedMessage, match="digits"):
        READINGS[reading](FieldReader({"f": 10 ** 5000}, "fuzz document"))


@pytest.mark.parametrize("container", ["list", "dict"])
def test_an_object_nested_deeper_than_the_recursion_limit_is_refused(container):
    with pytest.raises(MalformedMessage, match="nested"):
        FieldReader({"f": {"a": _Deep(100_000, container)}}, "fuzz document").obj("f")
