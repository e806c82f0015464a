"""A point's reference list read as a stream: its size first (one properties call), then pages
of ranged reads, each line checked as it is read, so that no reader ever holds more than a page
of a list whatever its length (docs/design.md, "Reference list").

Words:
- line: one id and its newline, REF_LINE bytes; a list is whole lines of sorted distinct ids.
- page: the lines one ranged read fetches. A list of a single page is read once and kept, so
  a small list costs one read however many passes its reader makes.
- diff: the ids one sorted list adds to another, and those it drops, in one merged pass.
"""
from __future__ import annotations

import hashlib
from typing import Iterator

from shared import formats
from shared.formats import REF_LINE, MalformedMessage
from shared.ports import BlobContainer

PAGE_LINES = 16384  # about 1 MiB a read


class RefsList:
    """The sorted ids of one reference list blob, streamed; `error` (a MalformedMessage unless
    the caller wants its own exception) names `what` for a list of the wrong form."""

    def __init__(self, container: BlobContainer, blob: str, what: str, page_lines: int | None = None,
                 error: type[Exception] = MalformedMessage):
        self.container, self.blob, self.what, self.error = container, blob, what, error
        self.page_lines = page_lines or PAGE_LINES
        self.size = container.properties(blob).size
        if self.size % REF_LINE:
            raise error(f"{what} is {self.size} bytes, not whole lines of one id and a newline")
        self.lines = self.size // REF_LINE
        self._whole: bytes | None = None

    def _page(self, first: int, count: int) -> bytes:
        if self._whole is not None:
            return self._whole[first * REF_LINE:(first + count) * REF_LINE]
        data = self.container.read(self.blob, first * REF_LINE, count * REF_LINE)
        if len(data) != count * REF_LINE:
            raise self.error(f"{self.what} changed while it was read")
        if count == self.lines:
            self._whole = data
        return data

    def _line(self, n: int) -> str:
        return self._page(n, 1)[:64].decode("ascii", "replace")

    def ids(self, start: str = "", digest: "hashlib._Hash | None" = None) -> Iterator[str]:
        """The ids from the first >= `start` (found by bisection, one read a step) to the end,
        each line checked; `digest`, when given (and `start` is empty), is fed every byte."""
        lo, hi = 0, self.lines
        while start and lo < hi:
            mid = (lo + hi) // 2
            if self._line(mid) < start:
                lo = mid + 1
            else:
                hi = mid
        previous = ""
        for first in range(lo, self.lines, self.page_lines):
            count = min(self.page_lines, self.lines - first)
            data = self._page(first, count)
            if digest is not None:
                digest.update(data)
            for k in range(count):
                line = data[k * REF_LINE:(k + 1) * REF_LINE]
                cid = line[:64].decode("ascii", "replace")
                if line[64:] != b"\n" or not formats.HEX_ID.match(cid) or cid <= previous:
                    raise self.error(f"{self.what} is not sorted distinct 64-hex-digit ids at line {first + k + 1}")
                previous = cid
                yield cid

    def digest(self) -> str:
        """The SHA-256 of the list, hex, every line checked on the way (one pass)."""
        h = hashlib.sha256()
        for _ in self.ids(digest=h):
            pass
        return h.hexdigest()


ADDED, DROPPED = 1, -1


def diff(new: Iterator[str], old: Iterator[str]) -> Iterator[tuple[str, int]]:
    """(id, ADDED) for each id of sorted `new` not in sorted `old`, (id, DROPPED) for each of
    `old` not in `new`, in id order: one merged pass, nothing held."""
    sentinel = None
    a, b = next(new, sentinel), next(old, sentinel)
    while a is not None or b is not None:
        if b is None or (a is not None and a < b):
            yield a, ADDED
            a = next(new, sentinel)
        elif a is None or b < a:
            yield b, DROPPED
            b = next(old, sentinel)
        else:
            a, b = next(new, sentinel), next(old, sentinel)
