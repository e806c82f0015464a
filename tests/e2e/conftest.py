"""End-to-end fixtures: each test module gets its own whole local stack (emulators and the
Functions host) in its own state folder, stopped when the module ends."""
from __future__ import annotations

import os

import pytest

from shared import bootstrap
from skyvault.stack import local
from tests.e2e.support import PASSPHRASE



@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    saved = {k: os.environ.get(k) for k in ("SKYVAULT_HOME", "SKYVAULT_PASSPHRASE")}
    os.environ["SKYVAULT_HOME"] = str(tmp_path_factory.mktemp("skyvault-home"))
    os.environ["SKYVAULT_PASSPHRASE"] = PASSPHRASE
    try:
        # The retention tests sweep on the stack's moved clock themselves: the timer waits for 1 January.
        yield local.up(overrides={bootstrap.RETENTION_SCHEDULE: "0 0 0 1 1 *", bootstrap.RECONCILE_SCHEDULE: "0 0 0 1 1 *"})
    finally:
        local.down()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def services(stack):
    return bootstrap.build_services(stack["settings"])

