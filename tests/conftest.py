"""Shared fixtures: the local emulators, started once per test session on free ports and always stopped."""
from __future__ import annotations

import pytest

from skyvault.stack import emulators


@pytest.fixture(scope="session")
def emulator_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("emulators")


@pytest.fixture(scope="session")
def azurite_primary(emulator_dir):
    instance = emulators.start_azurite("primary", "skyvaultprimary", emulator_dir)
    yield instance
    emulators.stop_pid(instance.pid)


@pytest.fixture(scope="session")
def azurite_secondary(emulator_dir):
    instance = emulators.start_azurite("secondary", "skyvaultsecondary", emulator_dir)
    yield instance
    emulators.stop_pid(instance.pid)


@pytest.fixture(scope="session")
def cosmos(emulator_dir):
    instance = emulators.start_cosmos(emulator_dir)
    yield instance
    emulators.stop_pid(instance.pid)
