"""Fixtures of the unit tests: an agent on the in-process service (`vault`) and its local
cache; a new state folder (`state_folder`) and the in-process vault as this machine's agent
(`agent`), for the commands run through skyvault.cli.main; and, for the tests that run the queue functions on fakes through tests/unit/pipeline.py,
one clock, the raw services, the faults armed on their wrapper, and the host that delivers."""
from __future__ import annotations

import re

import pytest

from skyvault import vaultclient
from skyvault.cache import Cache
from tests import inprocess
from tests.faults import Faults, faulty
from tests.inprocess import InProcessVault, new_vault
from tests.unit.pipeline import Clock, Host, memory_services

PASSPHRASE = "fakes test passphrase"


@pytest.fixture(autouse=True)
def no_api_backoff(monkeypatch):
    """The agent's retries of a 503 or 429 answer (vaultclient.API_ATTEMPTS) happen without
    waiting: a unit test of a refusal stays fast."""
    monkeypatch.setattr(vaultclient, "API_BACKOFF_S", 0.0)


@pytest.fixture
def vault(request):
    services = inprocess.memory_services(re.sub(r"[^a-z0-9]+", "-", f"agent-{request.node.name}".lower()))
    return InProcessVault(new_vault(services, "contoso", "fakes"), services, PASSPHRASE)


@pytest.fixture
def cache(tmp_path):
    c = Cache(tmp_path / "cache.sqlite")
    yield c
    c.close()


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


@pytest.fixture
def state_folder(tmp_path, monkeypatch):
    """This machine's state folder, a new one (SKYVAULT_HOME), and no passphrase in the environment."""
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SKYVAULT_PASSPHRASE", raising=False)
    return tmp_path / "home"


@pytest.fixture
def agent(vault, state_folder, monkeypatch):
    """This machine's agent (commands.common.agent) is the in-process vault; its cache lives in the
    state folder."""
    from skyvault.commands import common

    monkeypatch.setattr(common, "agent", lambda **_: vault)
    return vault
