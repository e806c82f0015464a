"""The load benchmark's short profile (bench.load, `--quick`): eight agents back up at once into
shared and separate vaults of a stack of the run's own, every point restores identical to its
source, no message is lost or poisoned; and no process of the run is left once it ends."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bench import load
from bench.run import scratch_parent

pytestmark = pytest.mark.emulators


def processes_of(folder: Path) -> list[str]:
    """The processes whose SKYVAULT_HOME is inside `folder`: the run gives one to every process it
    starts (the stack's, through its own environment, and the agents')."""
    marker = f"SKYVAULT_HOME={folder}/".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone, or another user's
            continue
        if any(entry.startswith(marker) for entry in environment.split(b"\0")):
            found.append(f"{pid}: {command}")
    return found


def test_eight_agents_backing_up_at_once_lose_nothing_and_leave_no_process(tmp_path):
    scratch = Path(tempfile.mkdtemp(prefix="test-load-", dir=scratch_parent()))
    out = tmp_path / "load.md"
    try:
        code = load.main(["--agents", "8", "--quick", "--scratch", str(scratch), "--out", str(out)])
        left = processes_of(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = out.read_text() if out.exists() else "(no report written)"
    assert code == 0, report
    for what in load.CHECKS.values():
        assert f"✓ {what}" in report, report
    assert "| agent-8 | solo-4 |" in report
    assert left == [], "processes of the run still running:\n" + "\n".join(left)
