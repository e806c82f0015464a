"""Reference lists as streams (shared/refs.py): sizes checked first, pages of ranged reads, a
single page read once, lines checked as they come, and the diff of two sorted lists."""
from __future__ import annotations

import hashlib

import pytest

from shared import formats, refs
from shared.fakes import MemoryBlobAccount
from shared.refs import ADDED, DROPPED, RefsList, diff

IDS = [f"{n:064x}" for n in range(1, 11)]


@pytest.fixture
def container(monkeypatch):
    c = MemoryBlobAccount("refs").container("vault")
    c.create()
    reads: list[int] = []
    read = c.read

    def recording(name, offset=0, length=None):
        data = read(name, offset, length)
        reads.append(len(data))
        return data

    monkeypatch.setattr(c, "read", recording)
    c.reads = reads
    return c


def test_a_list_is_read_a_page_at_a_time_and_its_digest_is_the_blobs(container):
    container.put("refs", formats.encode_refs(IDS))
    listed = RefsList(container, "refs", "list", page_lines=3)
    assert listed.lines == 10 and list(listed.ids()) == IDS
    assert container.reads == [3 * 65, 3 * 65, 3 * 65, 65]
    assert listed.digest() == hashlib.sha256(formats.encode_refs(IDS)).hexdigest()
    assert list(listed.ids(IDS[6])) == IDS[6:], "from the first id >= start, found by bisection"


def test_a_list_of_one_page_is_read_once(container):
    container.put("refs", formats.encode_refs(IDS))
    listed = RefsList(container, "refs", "list")
    listed.digest(), list(listed.ids()), list(listed.ids())
    assert container.reads == [10 * 65]


@pytest.mark.parametrize("data, error", [
    (formats.encode_refs(IDS)[:-1], "649 bytes, not whole lines"),
    (formats.encode_refs([IDS[1], IDS[0]]), "not sorted distinct 64-hex-digit ids at line 2"),
    (formats.encode_refs(IDS[:2]) + b"G" * 64 + b"\n", "at line 3"),
    (formats.encode_refs(IDS[:1]) + IDS[1].encode() + b" ", "at line 2"),
], ids=["cut short", "unsorted", "not hex", "no newline"])
def test_a_list_of_the_wrong_form_is_refused_naming_where(container, data, error):
    container.put("refs", data)
    with pytest.raises(formats.MalformedMessage, match=error):
        list(RefsList(container, "refs", "list", page_lines=1).ids())


def test_diff_yields_what_one_sorted_list_adds_and_drops_in_order():
    new, old = [IDS[0], IDS[2], IDS[3], IDS[9]], [IDS[1], IDS[2], IDS[4], IDS[9]]
    assert list(diff(iter(new), iter(old))) == [(IDS[0], ADDED), (IDS[1], DROPPED), (IDS[3], ADDED),
                                                 (IDS[4], DROPPED)]
    assert list(diff(iter(IDS), iter([]))) == [(i, ADDED) for i in IDS]
    assert list(diff(iter([]), iter(IDS[:2]))) == [(i, DROPPED) for i in IDS[:2]]
    assert list(diff(iter(IDS), iter(IDS))) == []


def test_the_default_page_is_read_when_the_list_is_made(monkeypatch, container):
    monkeypatch.setattr(refs, "PAGE_LINES", 2)
    container.put("refs", formats.encode_refs(IDS[:4]))
    list(RefsList(container, "refs", "list").ids())
    assert container.reads == [130, 130]
