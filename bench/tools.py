"""The backup tools under test, each behind the same small interface.

Words:
- **Tool**: one backup program with one repository (restic, borg) or one vault
  and one agent state folder (Skyvault): `init`, `backup(path)`,
  `restore(snapshot, target)`, `stored_bytes()`.
- **Run**: one timed command: its wall time, and the CPU time and peak
  resident memory of its process, taken from the kernel with `wait4` when it exits.
- **Stack**: the local Skyvault service (Azurite, Cosmos DB emulator, Functions
  host), started afresh for each dataset, with its operation counts and the
  CPU time of its processes.

restic and borg write to a repository in a local folder (on tmpfs when the machine
has one, see bench.run); Skyvault goes through
its whole local pipeline, and its `backup` returns only once the service has
verified every chunk and committed the point.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import bootstrap
from shared.domain import container_name

PASSPHRASE = "skyvault bench passphrase, not for real data"
COUNTS_SETTLE_S = 1.5  # three flushes of the Functions host's counts file (shared.metrics.COUNTS_FLUSH_S)
COUNTS_SETTLE_MAX_S = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ToolFailed(RuntimeError):
    pass


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  # user + system
    peak_rss_kib: int
    output: str


@dataclass
class Backup:
    run: Run
    snapshot: str
    details: dict[str, Any] = field(default_factory=dict)  # what the tool reports about itself


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> Run:
    """Run `cmd`; fail with its output unless it exits 0."""
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
        # wait4 rather than wait: it also gives the child's peak RSS, which is what we measure.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise ToolFailed(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{text[-4000:]}")
    return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, text)


def du(path: Path) -> int:
    """Apparent size of the files under `path`, as `du -sb` counts it."""
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(path) for f in files)


class Tool(ABC):
    name: str

    def __init__(self, root: Path):
        self.root = root  # this tool's own scratch folder: repository, caches, state
        root.mkdir(parents=True)

    @abstractmethod
    def init(self) -> None:
        """Create an empty repository (or vault)."""

    @abstractmethod
    def backup(self, path: Path) -> Backup: ...

    @abstractmethod
    def restore(self, snapshot: str, target: Path, path: Path) -> tuple[Run, Path]:
        """Restore the snapshot of `path` into the empty folder `target`; also return where
        the tool put the restored `path`."""

    @abstractmethod
    def stored_bytes(self) -> int: ...


class Restic(Tool):
    name = "restic"

    def __init__(self, root: Path):
        super().__init__(root)
        self.repo = root / "repo"
        self.env = {**os.environ, "RESTIC_PASSWORD": PASSPHRASE, "RESTIC_REPOSITORY": str(self.repo),
                    "RESTIC_CACHE_DIR": str(root / "cache")}

    def init(self) -> None:
        # restic 0.14 creates repository format 2: compression "auto" (zstd), AES-256-CTR + Poly1305.
        timed(["restic", "init"], self.env)

    def backup(self, path: Path) -> Backup:
        run = timed(["restic", "backup", "--json", str(path)], self.env)
        summary = next(json.loads(line) for line in reversed(run.output.splitlines())
                       if line.startswith('{"message_type":"summary"'))
        return Backup(run, summary["snapshot_id"], summary)

    def restore(self, snapshot: str, target: Path, path: Path) -> tuple[Run, Path]:
        run = timed(["restic", "restore", snapshot, "--target", str(target)], self.env)
        return run, target / path.relative_to("/")

    def stored_bytes(self) -> int:
        return du(self.repo)


class Borg(Tool):
    name = "borg"

    def __init__(self, root: Path):
        super().__init__(root)
        self.repo = root / "repo"
        self.env = {**os.environ, "BORG_PASSPHRASE": PASSPHRASE, "BORG_BASE_DIR": str(root / "home")}
        self._archives = 0

    def init(self) -> None:
        # repokey-blake2: BLAKE2b ids and MAC, AES-256-CTR; faster than HMAC-SHA256 on CPUs without SHA extensions.
        timed(["borg", "init", "--encryption", "repokey-blake2", str(self.repo)], self.env)

    def backup(self, path: Path) -> Backup:
        self._archives += 1
        name = f"b{self._archives}"
        run = timed(["borg", "create", "--compression", "zstd,3", f"{self.repo}::{name}", str(path)], self.env)
        return Backup(run, name)

    def restore(self, snapshot: str, target: Path, path: Path) -> tuple[Run, Path]:
        run = timed(["borg", "extract", f"{self.repo}::{snapshot}"], self.env, cwd=target)
        return run, target / path.relative_to("/")

    def stored_bytes(self) -> int:
        return du(self.repo)


def skyvault_cli(args: list[str], home: Path, program: tuple[str, ...] = ("-m", "skyvault.cli")) -> Run:
    """The agent's command `args`, as the Python `program` (the agent's own command line unless
    told otherwise, e.g. bench.batched_agent)."""
    env = {**os.environ, "SKYVAULT_HOME": str(home), "SKYVAULT_PASSPHRASE": PASSPHRASE}
    return timed([sys.executable, *program, *args], env)


class Stack:
    """The local Skyvault service for one dataset of the benchmark, with its own state folder. Its
    storage emulators keep their data in memory, as the other tools' repositories are on tmpfs."""

    def __init__(self, home: Path):
        self.home = home
        self.counts_file = home / "stack" / "operation-counts.json"

    def up(self) -> None:
        skyvault_cli(["stack", "up", "--in-memory"], self.home)

    def down(self) -> None:
        skyvault_cli(["stack", "down"], self.home)

    @property
    def settings(self) -> dict[str, str]:
        settings = json.loads((self.home / "stack.json").read_text())["settings"]
        # Without the counts file: this process must not write its own counts over the host's.
        settings.pop(bootstrap.OPERATION_COUNTS_FILE, None)
        return settings

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each running component of the stack has used so far."""
        used = {}
        for name, component in json.loads((self.home / "stack.json").read_text())["components"].items():
            try:
                fields = Path(f"/proc/{component['pid']}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            used[name] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        return used

    def memory_kib(self) -> dict[str, tuple[int, int]]:
        """Resident memory of each running component of the stack, in KiB: (now, peak since it
        started), the kernel's VmRSS and VmHWM."""
        memory = {}
        for name, component in json.loads((self.home / "stack.json").read_text())["components"].items():
            try:
                status = Path(f"/proc/{component['pid']}/status").read_text()
            except FileNotFoundError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            memory[name] = (int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0]))
        return memory

    def counts(self) -> dict[str, int]:
        """The host's operation counts once it has been idle for COUNTS_SETTLE_S (it writes
        them within half a second of a change, and queue work may go on after a command)."""
        deadline = time.monotonic() + COUNTS_SETTLE_MAX_S
        last, since = None, time.monotonic()
        while True:
            try:
                current = self.counts_file.read_text()
            except FileNotFoundError:
                current = '{"counts": {}}'
            if current != last:
                last, since = current, time.monotonic()
            elif time.monotonic() - since >= COUNTS_SETTLE_S or time.monotonic() > deadline:
                return json.loads(current)["counts"]
            time.sleep(0.25)


class Skyvault(Tool):
    """One machine of one vault: its own state folder (agent registration and cache), on its dataset's stack."""

    name = "Skyvault"

    def __init__(self, root: Path, stack: Stack, item: str):
        super().__init__(root)
        self.stack, self.item = stack, item
        self.home = root / "home"
        self.credentials = root / "vault.credentials.json"

    def _cli(self, *args: str) -> Run:
        return skyvault_cli(list(args), self.home)

    def init(self) -> None:
        self.home.mkdir()
        shutil.copy(self.stack.home / "stack.json", self.home / "stack.json")
        self._cli("vault", "create", f"bench-{self.item}", "--tenant", "bench", "--redundancy", "LRS",
                  "--out", str(self.credentials))
        self._cli("register", str(self.credentials))

    def backup(self, path: Path) -> Backup:
        before, cpu_before = self.stack.counts(), self.stack.cpu_seconds()
        run = self._cli("backup", str(path), "--item", self.item)
        cpu = {k: v - cpu_before.get(k, 0) for k, v in self.stack.cpu_seconds().items()}
        point = re.search(r"^recovery point (\S+) of item \S+: (\w+)", run.output, re.M)
        chunks = re.search(r"chunks: (\d+) referenced, (\d+) uploaded", run.output)
        tail = re.search(r"(\d+) queue messages, ([\d.]+)s", run.output)
        if not (point and chunks and tail) or point[2] != "committed":
            raise ToolFailed(f"unexpected output of skyvault backup:\n{run.output[-4000:]}")
        after = self.stack.counts()
        service = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        return Backup(run, point[1], {"chunks_uploaded": int(chunks[2]), "messages": int(tail[1]),
                                      "agent_seconds": float(tail[2]), "service": service, "stack_cpu": cpu})

    def restore(self, snapshot: str, target: Path, path: Path) -> tuple[Run, Path]:
        return self._cli("restore", snapshot, "--target", str(target)), target / path.name

    def stored_bytes(self) -> int:
        vault_id = json.loads(self.credentials.read_text())["vaultId"]
        container = bootstrap.build_services(self.stack.settings).primary.container(container_name(vault_id))
        return sum(container.properties(name).size for name in container.list())
