"""The one strict reader of a JSON object's fields, shared by every parser (shared/messages.py,
shared/retention.py): typed fields, bounds, patterns anchored by the caller, unknown fields
refused, and each error a MalformedMessage naming the field.

Words:
- where: what the document is, the start of every error ("commit request", "policy").
- path: the dotted path of a nested object inside its document ("retention.weekly"); errors
  name a field by its full path ("policy: field 'retention.weekly.weeks' ..."). A document's
  own reader has the empty path, and names its fields alone.
"""
from __future__ import annotations

import json
import re
from typing import Any

from shared.formats import MalformedMessage

MAX_COUNT = 2 ** 53  # JSON's exact integers: more chunks or bytes than any point holds
MAX_STATS_BYTES = 4096
MAX_TEXT = 1024  # free-text fields: reasons, times, URLs


def loads(text: str | bytes) -> Any:
    """json.loads, refusing with ValueError however json refuses: a syntax error, text that is
    not UTF-8, an integer over 4,300 digits, or nesting deeper than the recursion limit (which
    json raises as RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class FieldReader:
    """Typed access to one JSON object's fields; `where` names the document in errors, `path`
    the object inside it."""

    def __init__(self, doc: Any, where: str, path: str = ""):
        if not isinstance(doc, dict):
            raise MalformedMessage(f"{where} is not a JSON object")
        self.doc, self.where, self.path = doc, where, path

    def _path_of(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, what: str) -> MalformedMessage:
        """The error for field `name` of this object (a list entry: "times[0]")."""
        return MalformedMessage(f"{self.where}: field {self._path_of(name)!r} {what}")

    def fail_object(self, what: str) -> MalformedMessage:
        """The error for this object as a whole."""
        return MalformedMessage(f"{self.where}: field {self.path!r} {what}" if self.path else f"{self.where} {what}")

    def _get(self, name: str, kind: type | tuple[type, ...], optional: bool):
        if name not in self.doc or (optional and self.doc[name] is None):
            if optional:
                return None
            raise self.fail(name, "is missing")
        value = self.doc[name]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(name, f"must be of type {names}, not {type(value).__name__}")
        return value

    def has(self, name: str) -> bool:
        """Whether the field is present at all (a null counts: it is not an absent field)."""
        return name in self.doc

    def str(self, name: str, pattern: re.Pattern | None = None, *, optional: bool = False,
            max_len: int = MAX_TEXT) -> str | None:
        value = self._get(name, str, optional)
        if value is None:
            return None
        if len(value) > max_len:
            raise self.fail(name, f"is longer than {max_len} characters")
        if pattern is not None and not pattern.match(value):
            raise self.fail(name, f"has a bad format: {value[:80]!r}")
        return value

    def one_of(self, name: str, choices: tuple[str, ...], *, optional: bool = False) -> str | None:
        value = self.str(name, optional=optional, max_len=32)
        if value is not None and value not in choices:
            raise self.fail(name, f"is {value!r}, not one of {', '.join(choices)}")
        return value

    def int(self, name: str, lo: int = 0, hi: int = MAX_COUNT, *, optional: bool = False) -> int | None:
        value = self._get(name, int, optional)
        if value is not None and not lo <= value <= hi:
            raise self.fail(name, f"is {_shown(value)}, outside {lo}..{hi}")
        return value

    def bool(self, name: str) -> bool:
        return self._get(name, bool, False)

    def list(self, name: str, max_len: int, *, min_len: int = 0) -> list:
        value = self._get(name, list, False)
        if not min_len <= len(value) <= max_len:
            raise self.fail(name, f"holds {len(value)} entries, not {min_len} to {max_len}")
        return value

    def obj(self, name: str, *, optional: bool = False, max_bytes: int = MAX_STATS_BYTES) -> dict | None:
        value = self._get(name, dict, optional)
        if value is None:
            return None
        try:
            size = len(json.dumps(value))
        except RecursionError:
            raise self.fail(name, "is nested too deeply") from None
        except (TypeError, ValueError) as e:  # ValueError: an integer too long to write
            raise self.fail(name, f"is not a JSON object: {str(e)[:80]}") from None
        if size > max_bytes:
            raise self.fail(name, f"is over {max_bytes} bytes")
        return value

    def nested(self, name: str) -> "FieldReader":
        """The reader of the object in field `name`, whose errors name its fields by full path."""
        return FieldReader(self._get(name, dict, False), self.where, self._path_of(name))

    def version(self, name: str, *accepted: int) -> None:
        """Refuse a document whose schema version `name` is not one of `accepted`."""
        if self.doc.get(name) not in accepted or isinstance(self.doc.get(name), bool):
            raise MalformedMessage(f"{self.where}: unsupported schema version {_shown(self.doc.get(name))}")

    def only(self, *names: str) -> None:
        extra = sorted(set(self.doc) - set(names))
        if extra:
            raise MalformedMessage(f"{self.where}: unknown field {self._path_of(extra[0])!r}")


def _shown(value: Any) -> str:
    """`value` in an error, at most 80 characters: a long integer by its size (Python refuses to
    print one of over 4,300 digits), anything nested too deeply by its type."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    try:
        return repr(value)[:80]
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply"
