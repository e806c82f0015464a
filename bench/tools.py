"""The backup tools under test, each behind the same small interface.

Words:
- **Tool**: one backup program with one repository (restic, borg) or one vault
  and one agent state folder (Skyvault): `init`, `backup(path)`,
  `restore(snapshot, target)`, `stored_bytes()`, `stored_objects()`.
- **Run**: one timed command: its wall time, and the CPU time and peak
  resident memory of its process (with the children it waited for: restic's
  rclone), taken from the kernel with `wait4` when it exits; for a tool on the
  stack, also the CPU time each stack process used meanwhile.
- **Stack**: the local Skyvault service (Azurite, Cosmos DB emulator, Functions
  host), started afresh for each dataset, with its operation counts and the
  CPU time of its processes.

`Restic` and `Borg` write to a repository in a local folder (on tmpfs when the
machine has one, see bench.run). `ResticAzurite` is restic writing to the stack's
primary Azurite through rclone's azureblob backend, into a container of
Azurite's default account (not the vaults' account: Azurite's look-ups scan the
account's blob records, so neither slows the other's requests); rclone logs
each HTTP request it makes, which gives its storage requests. Skyvault goes
through its whole local pipeline, and its `backup` returns only once the
service has verified every chunk and committed the point.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.storage.blob import (AccountSasPermissions, ContainerClient, ResourceTypes,
                                generate_account_sas)

from bench.data import file_count
from shared import bootstrap
from shared.domain import container_name
from skyvault.stack.emulators import DEFAULT_ACCOUNT, DEV_ACCOUNT_KEY

PASSPHRASE = "skyvault bench passphrase, not for real data"
COUNTS_SETTLE_S = 1.5  # three flushes of the Functions host's counts file (shared.metrics.COUNTS_FLUSH_S)
COUNTS_SETTLE_MAX_S = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RCLONE_REMOTE = "skyvaultbench"  # rclone remotes are named by environment variables, not a config file
RESTIC_CONTAINER_PREFIX = "restic-"  # and the dataset's label: one container per repository
# restic starts `rclone serve restic` with these arguments (its default ones), plus a log line per HTTP request.
RCLONE_ARGS = "serve restic --stdio --b2-hard-delete -vv --dump headers"
SAS_HOURS = 24


class ToolFailed(RuntimeError):
    pass


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  # user + system
    peak_rss_kib: int
    output: str
    stack_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds each stack process used meanwhile
    requests: Counter[str] | None = None  # storage requests by HTTP method, where the tool logs them


@dataclass
class Backup:
    run: Run
    snapshot: str
    details: dict[str, Any] = field(default_factory=dict)  # what the tool reports about itself


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None, stack: Stack | None = None) -> Run:
    """Run `cmd`; fail with its output unless it exits 0. With a `stack`, also take what CPU time
    its processes used while the command ran."""
    with tempfile.TemporaryFile() as out:
        cpu_before = stack.cpu_seconds() if stack else {}
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
        # wait4 rather than wait: it also gives the child's peak RSS, which is what we measure.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        stack_cpu = {k: v - cpu_before.get(k, 0) for k, v in stack.cpu_seconds().items()} if stack else {}
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise ToolFailed(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{text[-4000:]}")
    return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, text, stack_cpu)


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

    @abstractmethod
    def stored_objects(self) -> int:
        """Blobs in the tool's container, or files in its repository folder."""

    def discard(self) -> None:
        """Free what the repository holds (the memory benchmark needs only the peak RSS)."""
        shutil.rmtree(self.root)


class Restic(Tool):
    name = "restic"

    def __init__(self, root: Path):
        super().__init__(root)
        self.repo = root / "repo"
        self.env = {**os.environ, "RESTIC_PASSWORD": PASSPHRASE, "RESTIC_REPOSITORY": str(self.repo),
                    "RESTIC_CACHE_DIR": str(root / "cache")}

    def _restic(self, *args: str) -> Run:
        return timed(["restic", *args], self.env)

    def init(self) -> None:
        # restic 0.14 creates repository format 2: compression "auto" (zstd), AES-256-CTR + Poly1305.
        self._restic("init")

    def backup(self, path: Path) -> Backup:
        run = self._restic("backup", "--json", str(path))
        summary = next(json.loads(line) for line in reversed(run.output.splitlines())
                       if line.startswith('{"message_type":"summary"'))
        return Backup(run, summary["snapshot_id"], summary)

    def restore(self, snapshot: str, target: Path, path: Path) -> tuple[Run, Path]:
        run = self._restic("restore", snapshot, "--target", str(target))
        return run, target / path.relative_to("/")

    def stored_bytes(self) -> int:
        return du(self.repo)

    def stored_objects(self) -> int:
        return file_count(self.repo)


def account_sas_url(endpoint: str, account: str = DEFAULT_ACCOUNT, key: str = DEV_ACCOUNT_KEY,
                    now: datetime.datetime | None = None) -> str:
    """A SAS URL of the whole account at `endpoint` (path style: .../account), signed with `key`,
    for SAS_HOURS: enough for rclone to create its container and read, write, list and delete."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    sas = generate_account_sas(account, key, ResourceTypes(service=True, container=True, object=True),
                               AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True,
                                                     create=True),
                               expiry=now + datetime.timedelta(hours=SAS_HOURS))
    return f"{endpoint}?{sas}"


def rclone_env(remote: str, sas_url: str) -> dict[str, str]:
    """The environment that defines rclone's azureblob `remote`. By SAS URL, not account, key and
    endpoint: rclone 1.60 makes `https://{account}.{endpoint}` of those, which cannot name
    Azurite's path-style `http://127.0.0.1:port/account`; a SAS URL is used as it is (signed here
    with Azurite's published key)."""
    prefix = f"RCLONE_CONFIG_{remote.upper()}_"
    return {f"{prefix}TYPE": "azureblob", f"{prefix}SAS_URL": sas_url}


def rclone_requests(output: str) -> Counter[str]:
    """HTTP method → requests rclone sent, from the log `--dump headers` writes (one block per
    request, its request line first)."""
    return Counter(re.findall(r"HTTP REQUEST \(req \w+\)\n(?:rclone: )?[\d/: ]*DEBUG : ([A-Z]+) ", output))


class ResticAzurite(Restic):
    """restic with repository `rclone:skyvaultbench:restic-{label}/restic` on the stack's primary
    Azurite: the same storage Skyvault's agent writes to, through Debian's rclone."""

    name = "restic-azurite"

    def __init__(self, root: Path, stack: Stack, label: str):
        super().__init__(root)
        self.stack = stack
        endpoint = stack.blob_endpoint(DEFAULT_ACCOUNT)
        container = RESTIC_CONTAINER_PREFIX + label
        self.container = ContainerClient(endpoint, container,
                                         credential={"account_name": DEFAULT_ACCOUNT, "account_key": DEV_ACCOUNT_KEY})
        (root / "rclone.conf").touch()  # an empty config file: the remote is all in the environment
        self.env.update({"RESTIC_REPOSITORY": f"rclone:{RCLONE_REMOTE}:{container}/restic",
                         "RCLONE_CONFIG": str(root / "rclone.conf"),
                         **rclone_env(RCLONE_REMOTE, account_sas_url(endpoint))})

    def _restic(self, *args: str) -> Run:
        run = timed(["restic", "-o", f"rclone.args={RCLONE_ARGS}", *args], self.env, stack=self.stack)
        run.requests = rclone_requests(run.output)
        return run

    def stored_bytes(self) -> int:
        return sum(blob.size for blob in self.container.list_blobs())

    def stored_objects(self) -> int:
        return sum(1 for _ in self.container.list_blobs())

    def discard(self) -> None:
        self.container.delete_container()
        super().discard()


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

    def stored_objects(self) -> int:
        return file_count(self.repo)


def skyvault_cli(args: list[str], home: Path, program: tuple[str, ...] = ("-m", "skyvault.cli"),
                 stack: Stack | None = None) -> Run:
    """The agent's command `args`, as the Python `program` (the agent's own command line unless
    told otherwise, e.g. bench.batched_agent); with a `stack`, also the CPU its processes used meanwhile."""
    env = {**os.environ, "SKYVAULT_HOME": str(home), "SKYVAULT_PASSPHRASE": PASSPHRASE}
    return timed([sys.executable, *program, *args], env, stack=stack)


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

    def blob_endpoint(self, account: str) -> str:
        """`account`'s blob endpoint on the primary Azurite, which serves Azurite's default
        account beside the primary region's."""
        primary = json.loads((self.home / "stack.json").read_text())["components"]["azurite-primary"]
        return primary["blob"].rsplit("/", 1)[0] + f"/{account}"

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
        return skyvault_cli(list(args), self.home, stack=self.stack)

    def init(self) -> None:
        self.home.mkdir()
        shutil.copy(self.stack.home / "stack.json", self.home / "stack.json")
        self._cli("vault", "create", f"bench-{self.item}", "--tenant", "bench", "--redundancy", "LRS",
                  "--out", str(self.credentials))
        self._cli("register", str(self.credentials))

    def backup(self, path: Path) -> Backup:
        before, cpu_before = self.stack.counts(), self.stack.cpu_seconds()
        run = self._cli("backup", str(path), "--item", self.item)
        point = re.search(r"^recovery point (\S+) of item \S+: (\w+)", run.output, re.M)
        chunks = re.search(r"chunks: (\d+) referenced, (\d+) uploaded", run.output)
        tail = re.search(r"(\d+) queue messages, ([\d.]+)s", run.output)
        if not (point and chunks and tail) or point[2] != "committed":
            raise ToolFailed(f"unexpected output of skyvault backup:\n{run.output[-4000:]}")
        after = self.stack.counts()
        service = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        # The service goes on after the command (usage metering): its CPU until its counts settle.
        until_idle = {k: v - cpu_before.get(k, 0) for k, v in self.stack.cpu_seconds().items()}
        return Backup(run, point[1], {"chunks_referenced": int(chunks[1]), "chunks_uploaded": int(chunks[2]),
                                      "messages": int(tail[1]),
                                      "agent_seconds": float(tail[2]), "service": service,
                                      "stack_cpu_until_idle": until_idle})

    def restore(self, snapshot: str, target: Path, path: Path) -> tuple[Run, Path]:
        return self._cli("restore", snapshot, "--target", str(target)), target / path.name

    def _container(self):
        vault_id = json.loads(self.credentials.read_text())["vaultId"]
        return bootstrap.build_services(self.stack.settings).primary.container(container_name(vault_id))

    def stored_bytes(self) -> int:
        return sum(size for _, size in self._container().list_sizes())

    def stored_objects(self) -> int:
        return sum(1 for _ in self._container().list())
