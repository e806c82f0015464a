"""Fixtures of the tests that run the queue functions on fakes through tests/unit/pipeline.py:
one clock, the raw services, the faults armed on their wrapper, and the host that delivers."""
from __future__ import annotations

import pytest

from tests.faults import Faults, faulty
from tests.unit.pipeline import Clock, Host, memory_services


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def raw(clock, request):
    return memory_services(clock, request.node.name)


@pytest.fixture
def faults():
    return Faults()


@pytest.fixture
def host(raw, clock, faults):
    return Host(faulty(raw, faults), raw, clock, faults)
