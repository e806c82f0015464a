"""`python -m bench.load`: several agents back up at once into shared and separate vaults of one
local stack, then each restores its point; the run checks that nothing was lost and prints a
markdown report of throughput and peak memory (also written to --out).

Words:
- plan: the vaults (name, tenant) and the agents of each: SHARED_VAULTS vaults of
  SHARED_VAULT_AGENTS agents when there are enough agents, a vault of its own for every other
  one; the vaults are spread over TENANTS, so one tenant holds a shared and a separate vault.
- agent: one machine, registered with its vault by `skyvault register`, with its own state
  folder (registration, keys, cache), its own item and its own data tree. Its commands are
  processes of their own, so each has its own wall time, CPU time and peak RSS (bench.tools.timed).
- tree: an agent's data, generated from a seed: many small files (SMALL_SHARE of each part's
  bytes) and larger ones, text or random bytes. In a shared vault the first SHARED_SHARE of
  every agent's tree (`common/`, first in walk order, so the same stream starts every backup)
  is the same bytes, from the vault's seed: the agents race to store the same chunks, one
  uploads each and the others find it indexed or adopt its blob.

The stack runs in memory (`local.up(in_memory=True)`), in a state folder of the run's own on
tmpfs when there is one, and is stopped whatever happens. Phases: vaults and registrations;
every backup at once; the queues drained; every restore at once, each compared with its source
(skyvault.treedigest: content hash, size, mode and mtime of every entry); then the checks that
nothing was lost (CHECKS), on the index and the queues themselves. A failed check makes the
exit code 1. The queues' depths are sampled every SAMPLE_S; the stack's peak memory is each
process's high-water mark (VmHWM), so it covers the whole run.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import compileall
import contextlib
import datetime
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from azure.storage.queue import QueueServiceClient

from bench import data
from bench.data import MiB
from bench.run import CODE_DIRS, REPO, code_version, parse_size, scratch_parent, sources_digest
from bench.tools import Run, Stack, ToolFailed, skyvault_cli
from shared import bootstrap, formats
from shared.adapters.azure_storage import AzureQueue
from shared.domain import ChunkState, PointState
from shared.messages import Poisoned
from shared.ports import TransientError
from shared.service.context import ALL_QUEUES, INGEST_QUEUE, POISON_SUFFIX
from skyvault.backup.uploader import INGEST_BATCH
from skyvault.stack import emulators, local
from skyvault.treedigest import differences, tree_digest

DEFAULT_AGENTS = 8
DEFAULT_SIZE = 64 * MiB
QUICK_SIZE = 24 * MiB
SHARED_VAULTS = 2
SHARED_VAULT_AGENTS = 3
TENANTS = ("load-north", "load-south", "load-east")
SEED = 20261216
SHARED_SHARE = 0.25  # of the tree of an agent whose vault has others
SMALL_SHARE = 0.25  # of each part of a tree (common, own), in small files
SMALL_FILE_BYTES = (256, 16 * 1024)
LARGE_FILE_BYTES = (MiB, 6 * MiB)
TEXT_SHARE = 0.4  # of the files, text; the others random bytes
FILES_PER_FOLDER = 100
SAMPLE_S = 0.5
DRAIN_TIMEOUT_S = 120.0
CHUNK_PAGE = 1000

CHECKS = {
    "backups": "every backup exited 0 with its point committed",
    "points": "every point is committed in the index, its follow-ups done",
    "restores": "every restore is identical to its source",
    "chunks": "each vault indexes one verified chunk per chunk its agents uploaded",
    "ledger": "the usage ledger holds the event of every point and every chunk",
    "queues": "every queue is empty at the end",
    "poison": "no message was poisoned",
}

POINT_LINE = re.compile(r"^recovery point (\S+) of item \S+: (\w+)", re.M)
CHUNKS_LINE = re.compile(r"chunks: (\d+) referenced, (\d+) uploaded \(.*?\), (\d+) already in the vault")
ADOPTED_LINE = re.compile(r"(\d+) chunks were in the vault's storage already")
MESSAGES_LINE = re.compile(r"(\d+) queue messages, ([\d.]+)s")
INVOCATION_LINE = re.compile(r"Executed 'Functions\.([\w-]+)' \((Succeeded|Failed), Id=[^,]*, Duration=(\d+)ms\)")
REDELIVERY_LINE = re.compile(r"attempt \d+ failed .*; delivering it again")

T = TypeVar("T")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the plan and the data

@dataclass(frozen=True)
class VaultPlan:
    name: str
    tenant: str
    items: tuple[str, ...]
    seed: int  # of the data its agents share

    @property
    def shared(self) -> bool:
        return len(self.items) > 1


def plan_vaults(agents: int) -> list[VaultPlan]:
    """Agents `agent-1` ... in vaults: SHARED_VAULTS of SHARED_VAULT_AGENTS when there are that many
    agents, one each for the others."""
    shared = min(SHARED_VAULTS, agents // SHARED_VAULT_AGENTS)
    sizes = [SHARED_VAULT_AGENTS] * shared + [1] * (agents - shared * SHARED_VAULT_AGENTS)
    plans, first = [], 1
    for n, size in enumerate(sizes):
        plans.append(VaultPlan(name=f"{'shared' if size > 1 else 'solo'}-{n + 1}", tenant=TENANTS[n % len(TENANTS)],
                               items=tuple(f"agent-{first + i}" for i in range(size)), seed=SEED + 1000 + n))
        first += size
    return plans


def write_tree(root: Path, size: int, seed: int, shared_seed: int | None = None) -> None:
    """An agent's tree of about `size` bytes: `own/` from `seed`, after `common/` (SHARED_SHARE of it)
    from `shared_seed` when its vault has other agents."""
    root.mkdir(parents=True)
    own = size
    if shared_seed is not None:
        common = int(size * SHARED_SHARE)
        _write_part(root / "common", common, random.Random(shared_seed))
        own -= common
    _write_part(root / "own", own, random.Random(seed))


def _write_part(folder: Path, size: int, rng: random.Random) -> None:
    # Text draws lines from one vocabulary: it compresses (zstd) but never repeats whole, so no
    # chunk of it is stored twice.
    words = ["".join(rng.choices("etaoinshrdlcumwfgypbvkjxqz", k=rng.randint(2, 10))) for _ in range(2000)]
    lines = [(" ".join(rng.choices(words, k=rng.randint(3, 14))) + "\n").encode() for _ in range(4096)]

    def content(n: int) -> bytes:
        if rng.random() >= TEXT_SHARE:
            return rng.randbytes(n)
        text = bytearray()
        while len(text) < n:
            text += b"".join(rng.choices(lines, k=max(1, min(512, n // 40))))
        return bytes(text[:n])

    small = int(size * SMALL_SHARE)
    written = count = 0
    while written < small:
        n = min(rng.randint(*SMALL_FILE_BYTES), small - written)
        _write_file(folder / "small" / f"{count // FILES_PER_FOLDER:04d}" / f"f{count:06d}.dat", content(n))
        written, count = written + n, count + 1
    count = 0
    while written < size:
        n = min(rng.randint(*LARGE_FILE_BYTES), size - written)
        _write_file(folder / "large" / f"file-{count:04d}.bin", content(n))
        written, count = written + n, count + 1


def _write_file(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def file_count(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


# -- the run

@dataclass
class Agent:
    item: str
    vault: VaultPlan
    root: Path  # its scratch folder: state folder, data tree, restore target
    bytes: int = 0
    files: int = 0
    backup: Run | None = None
    point: str = ""
    reported: dict[str, int] = field(default_factory=dict)  # what its backup said it did
    restore: Run | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def target(self) -> Path:
        return self.root / "restore"


@dataclass
class LoadRun:
    vaults: list[VaultPlan]
    vault_ids: dict[str, str]
    agents: list[Agent]
    ingest_batch: int | None = None  # chunks an ingest message declares, unless the agent's own
    backup_seconds: float = 0.0
    restore_seconds: float = 0.0
    drain_seconds: float = 0.0
    service: dict[str, int] = field(default_factory=dict)  # the host's operation counts during the backups
    stack_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during the backups
    memory_at_start: dict[str, tuple[int, int]] = field(default_factory=dict)
    memory_at_end: dict[str, tuple[int, int]] = field(default_factory=dict)
    deepest: dict[str, int] = field(default_factory=dict)
    invocations: dict[str, list[int]] = field(default_factory=dict)  # function → durations (ms)
    failed_invocations: Counter[str] = field(default_factory=Counter)
    redeliveries: int = 0
    chunks_indexed: int = 0
    checks: dict[str, list[str]] = field(default_factory=lambda: {key: [] for key in CHECKS})

    @property
    def ok(self) -> bool:
        return not any(self.checks.values())


@contextlib.contextmanager
def _state_folder(path: Path) -> Iterator[None]:
    """SKYVAULT_HOME set to `path` in this process, for skyvault.stack.local."""
    saved = os.environ.get("SKYVAULT_HOME")
    os.environ["SKYVAULT_HOME"] = str(path)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("SKYVAULT_HOME", None)
        else:
            os.environ["SKYVAULT_HOME"] = saved


def at_once(jobs: list[Callable[[], T]]) -> tuple[float, list[T]]:
    """Run every job at the same time, each in a thread; the wall time until the last ends."""
    started = time.monotonic()
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        results = [f.result() for f in futures]
    return time.monotonic() - started, results


class QueueSampler:
    """The deepest each queue was, sampled every SAMPLE_S from a thread of its own."""

    def __init__(self, connection_string: str, names: tuple[str, ...]):
        self._queues = [AzureQueue(connection_string, name) for name in names]
        self.deepest = dict.fromkeys(names, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="queue-depths", daemon=True)

    def __enter__(self) -> QueueSampler:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            for queue in self._queues:
                with contextlib.suppress(TransientError):  # a missed sample, not a failed run
                    self.deepest[queue.name] = max(self.deepest[queue.name], queue.approximate_count())


def _depths(connection_string: str, names: list[str]) -> dict[str, int]:
    return {name: AzureQueue(connection_string, name).approximate_count() for name in names}


def wait_drained(connection_string: str, timeout: float = DRAIN_TIMEOUT_S) -> dict[str, int]:
    """Wait until every queue of the pipeline is empty at two samples in a row (a function may
    queue a message as it ends); returns the queues that still hold messages at the timeout."""
    deadline, empty_before = time.monotonic() + timeout, False
    while True:
        left = {name: n for name, n in _depths(connection_string, list(ALL_QUEUES)).items() if n}
        if not left and empty_before:
            return {}
        if time.monotonic() > deadline:
            return left
        empty_before = not left
        time.sleep(SAMPLE_S)


def setup(scratch: Path, stack: Stack, plans: list[VaultPlan], size: int) -> tuple[dict[str, str], list[Agent]]:
    """Create the vaults and their agents: each registered with its own state folder, its tree written."""
    tickets = scratch / "tickets"
    tickets.mkdir()

    def create(plan: VaultPlan) -> str:
        path = tickets / f"{plan.name}.credentials.json"
        skyvault_cli(["vault", "create", plan.name, "--tenant", plan.tenant, "--redundancy", "LRS",
                      "--out", str(path)], stack.home)
        return json.loads(path.read_text())["vaultId"]

    _, ids = at_once([lambda plan=plan: create(plan) for plan in plans])
    agents = [Agent(item, plan, scratch / "agents" / item) for plan in plans for item in plan.items]

    def register(agent: Agent) -> None:
        agent.home.mkdir(mode=0o700, parents=True)
        shutil.copy(stack.home / "stack.json", agent.home / "stack.json")
        skyvault_cli(["register", str(tickets / f"{agent.vault.name}.credentials.json"), "--name", agent.item],
                     agent.home)

    at_once([lambda agent=agent: register(agent) for agent in agents])
    for n, agent in enumerate(agents):
        write_tree(agent.data, size, SEED + n, agent.vault.seed if agent.vault.shared else None)
        agent.bytes, agent.files = data.tree_bytes(agent.data), file_count(agent.data)
    return {plan.name: vault_id for plan, vault_id in zip(plans, ids)}, agents


def agent_program(ingest_batch: int | None) -> tuple[str, ...]:
    """The agent's command line, or bench.batched_agent's with `ingest_batch` chunks a message."""
    return ("-m", "skyvault.cli") if ingest_batch is None else ("-m", "bench.batched_agent", str(ingest_batch))


def back_up(agent: Agent, ingest_batch: int | None = None) -> None:
    try:
        run = skyvault_cli(["backup", str(agent.data), "--item", agent.item], agent.home, agent_program(ingest_batch))
    except ToolFailed as e:
        agent.failures.append(f"backup: {e}")
        return
    agent.backup = run
    point, chunks = POINT_LINE.search(run.output), CHUNKS_LINE.search(run.output)
    messages, adopted = MESSAGES_LINE.search(run.output), ADOPTED_LINE.search(run.output)
    if not (point and chunks and messages):
        agent.failures.append(f"backup: unexpected output:\n{run.output[-2000:]}")
        return
    agent.point = point[1]
    agent.reported = {"referenced": int(chunks[1]), "uploaded": int(chunks[2]), "indexed": int(chunks[3]),
                      "adopted": int(adopted[1]) if adopted else 0, "messages": int(messages[1])}
    if point[2] != PointState.COMMITTED:
        agent.failures.append(f"backup: point {agent.point} is {point[2]}")


def restore(agent: Agent) -> None:
    try:
        agent.restore = skyvault_cli(["restore", agent.point, "--target", str(agent.target)], agent.home)
    except ToolFailed as e:
        agent.failures.append(f"restore: {e}")


def compare(agent: Agent) -> list[str]:
    """What of the agent's restored tree differs from its source (nothing, when identical)."""
    restored = agent.target / agent.data.name
    if not restored.is_dir():
        return [f"{agent.item}: nothing restored at {restored}"]
    return [f"{agent.item}: {d}" for d in differences(tree_digest(agent.data), tree_digest(restored))]


def run_load(agent_count: int, size: int, scratch: Path, ingest_batch: int | None = None) -> LoadRun:
    stack = Stack(scratch / "stack")
    plans = plan_vaults(agent_count)
    log(f"starting the local stack in {stack.home}")
    with _state_folder(stack.home):
        local.up(in_memory=True)
    try:
        log(f"{len(plans)} vaults, {agent_count} agents: registering and writing {agent_count} trees of "
            f"{size / MiB:,.0f} MiB")
        vault_ids, agents = setup(scratch, stack, plans, size)
        result = LoadRun(plans, vault_ids, agents, ingest_batch=ingest_batch)
        connection = stack.settings[bootstrap.STORAGE]
        result.memory_at_start = stack.memory_kib()
        before, cpu_before = stack.counts(), stack.cpu_seconds()
        with QueueSampler(connection, ALL_QUEUES) as sampler:
            log(f"backing up {agent_count} agents at once")
            result.backup_seconds, _ = at_once([lambda a=a: back_up(a, ingest_batch) for a in agents])
            log(f"  {result.backup_seconds:.1f} s; waiting for the queues to drain")
            drain_started = time.monotonic()
            left = wait_drained(connection)
            result.drain_seconds = time.monotonic() - drain_started
        result.deepest = sampler.deepest
        result.stack_cpu = {k: v - cpu_before.get(k, 0) for k, v in stack.cpu_seconds().items()}
        after = stack.counts()
        result.service = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        if left:
            result.checks["queues"].append(f"after the backups, still queued after {DRAIN_TIMEOUT_S:.0f} s: {left}")
        restorable = [a for a in agents if a.point and not a.failures]
        if restorable:
            log(f"restoring {len(restorable)} points at once")
            result.restore_seconds, _ = at_once([lambda a=a: restore(a) for a in restorable])
            log(f"  {result.restore_seconds:.1f} s; comparing each with its source")
        for agent in restorable:
            if agent.restore:
                result.checks["restores"] += compare(agent)
        left = wait_drained(connection)
        if left:
            result.checks["queues"].append(f"at the end, still queued after {DRAIN_TIMEOUT_S:.0f} s: {left}")
        check_service(result, stack)
        result.memory_at_end = stack.memory_kib()
        read_host_log(result, stack.home / "stack" / "functions.log")
        return result
    finally:
        log("stopping the local stack")
        with _state_folder(stack.home):
            local.down()


def check_service(result: LoadRun, stack: Stack) -> None:
    """The checks that nothing was lost, on what the service holds: points, chunks, the usage
    ledger and the queues (a failed backup also fails `backups`)."""
    checks = result.checks
    for agent in result.agents:
        checks["backups"] += [f"{agent.item}: {f}" for f in agent.failures if f.startswith("backup")]
        checks["restores"] += [f"{agent.item}: {f}" for f in agent.failures if f.startswith("restore")]
    services = bootstrap.build_services(stack.settings)
    index = services.index
    for plan in result.vaults:
        vault_id = result.vault_ids[plan.name]
        agents = [a for a in result.agents if a.vault == plan]
        events = {e.id for e in index.list_usage_events(vault_id)}
        for agent in agents:
            point = index.get_point(vault_id, agent.point) if agent.point else None
            if point is None:
                checks["points"].append(f"{agent.item}: no point {agent.point or '(none made)'} in vault {plan.name}")
                continue
            if point.state != PointState.COMMITTED or not point.follow_ups_at:
                checks["points"].append(f"{agent.item}: point {point.id} is {point.state}"
                                        f"{'' if point.follow_ups_at else ', its follow-ups not done'}"
                                        f"{' (' + point.reason + ')' if point.reason else ''}")
            if f"point-{point.id}" not in events:
                checks["ledger"].append(f"{agent.item}: no usage event of point {point.id}")
        chunks = list(_all_chunks(index, vault_id))
        result.chunks_indexed += len(chunks)
        uploaded = sum(a.reported.get("uploaded", 0) for a in agents)
        unverified = Counter(c.state for c in chunks if c.state != ChunkState.VERIFIED)
        if len(chunks) != uploaded or unverified:
            checks["chunks"].append(f"vault {plan.name}: {len(chunks)} chunks indexed, {uploaded} uploaded by its "
                                    f"agents{f'; not verified: {dict(unverified)}' if unverified else ''}")
        missing = [c.id for c in chunks if f"stored-{c.id}-{c.lifetime}" not in events]
        if missing:
            checks["ledger"].append(f"vault {plan.name}: no usage event of {len(missing)} chunks, e.g. {missing[0]}")
    connection = stack.settings[bootstrap.STORAGE]
    names = [q.name for q in QueueServiceClient.from_connection_string(connection).list_queues()]
    for name, depth in _depths(connection, names).items():
        if name.endswith(POISON_SUFFIX) and depth:
            checks["poison"].append(f"{name}: {depth} messages, e.g. "
                                    + "; ".join(_poison_reason(m) for m in AzureQueue(connection, name).peek(3)))


def _all_chunks(index, vault_id: str):
    after = ""
    while page := index.chunks_after(vault_id, after, CHUNK_PAGE):
        yield from page
        after = page[-1].id


def _poison_reason(body: str) -> str:
    """Why a poisoned message is there: the function's reason, or the host's message text alone."""
    try:
        poisoned = Poisoned.parse(base64.b64decode(body))
    except (ValueError, binascii.Error):
        return f"(poisoned by the host) {body[:200]}"
    return f"{poisoned.queue}, attempt {poisoned.attempts}: {poisoned.reason}"


def read_host_log(result: LoadRun, path: Path) -> None:
    """The invocations the Functions host ran (with their durations) and the redeliveries it logged."""
    text = path.read_text(errors="replace")
    for function, outcome, ms in INVOCATION_LINE.findall(text):
        result.invocations.setdefault(function, []).append(int(ms))
        if outcome == "Failed":
            result.failed_invocations[function] += 1
    result.redeliveries = len(REDELIVERY_LINE.findall(text))


# -- the report

def _mib(n: float) -> float:
    return n / MiB


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def report(r: LoadRun, size: int, quick: bool, version: str, minutes: float) -> str:
    agents = r.agents
    total = sum(a.bytes for a in agents)
    restored = sum(a.bytes for a in agents if a.restore)
    backups = [a.backup for a in agents if a.backup]
    common = sum(int(size * SHARED_SHARE) for a in agents if a.vault.shared)
    tenants = sorted({p.tenant for p in r.vaults})
    batch = INGEST_BATCH if r.ingest_batch is None else r.ingest_batch
    batch_source = "the agent's own" if r.ingest_batch is None else f"--ingest-batch; the agent's own is {INGEST_BATCH}"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    lines = [f"## Load: {len(agents)} agents backing up at once{' (--quick)' if quick else ''}", "",
             f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; machine: "
             f"{os.cpu_count()} CPUs ({cpu}); Skyvault at `{version}`; the whole run took {minutes:.1f} minutes",
             "- stack: `local.up(in_memory=True)`: Azurite (blobs and queues in memory), the Cosmos DB emulator and "
             "the local Functions host, on the same CPUs as the agents; every agent's data and restore on tmpfs",
             f"- {len(r.vaults)} vaults in {len(tenants)} tenants: "
             + "; ".join(f"{p.name} ({p.tenant}): {', '.join(p.items)}" for p in r.vaults),
             f"- data: {_mib(total):,.0f} MiB in {sum(a.files for a in agents):,} files; each agent about "
             f"{_mib(size):,.0f} MiB, {SMALL_SHARE:.0%} of it in files of {SMALL_FILE_BYTES[0]:,} B to "
             f"{SMALL_FILE_BYTES[1] // 1024} KiB; in a shared vault {SHARED_SHARE:.0%} of each agent's tree is the "
             f"same bytes ({_mib(common):,.0f} MiB in all)",
             f"- agents: {batch} chunks declared per ingest message ({batch_source})",
             "",
             "| agent | vault | files | MiB | backup s | MiB/s | peak RSS MiB | CPU s | chunks uploaded | "
             "found indexed | adopted | ingest messages | restore s | restore MiB/s | restore peak RSS MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for a in agents:
        b, rs, rep = a.backup, a.restore, a.reported
        backup_cells = (f"{b.seconds:.1f} | {_fmt(_mib(a.bytes) / b.seconds)} | {b.peak_rss_kib / 1024:.0f} | "
                        f"{b.cpu_seconds:.1f}" if b else "failed | | |")
        restore_cells = (f"{rs.seconds:.1f} | {_fmt(_mib(a.bytes) / rs.seconds)} | {rs.peak_rss_kib / 1024:.0f}"
                         if rs else "failed | |")
        lines.append(f"| {a.item} | {a.vault.name} | {a.files:,} | {_mib(a.bytes):,.1f} | {backup_cells} | "
                     f"{rep.get('uploaded', '')} | {rep.get('indexed', '')} | {rep.get('adopted', '')} | "
                     f"{rep.get('messages', '')} | {restore_cells} |")
    service = r.service
    ingest_ms = r.invocations.get(INGEST_QUEUE, [])
    header_reads = service.get("blob.primary.read_head", 0)
    sends = {k.split(".")[1]: v for k, v in service.items() if k.startswith("queue.") and k.endswith(".send")}
    memory = {name: r.memory_at_end.get(name, (0, 0))[1] for name in r.memory_at_start}
    lines += ["", "| total | |", "|---|---:|",
              f"| backups at once: wall time, until the last point committed | {r.backup_seconds:.1f} s |",
              f"| aggregate backup throughput (all bytes / that wall time) | {_fmt(_mib(total) / r.backup_seconds)} "
              f"MiB/s |",
              f"| one agent's backup throughput: lowest, median, highest | "
              + ", ".join(_fmt(x) for x in _spread([_mib(a.bytes) / a.backup.seconds for a in agents if a.backup]))
              + " MiB/s |",
              f"| queues drained after the last backup in | {r.drain_seconds:.1f} s |",
              f"| restores at once: wall time; aggregate throughput | {r.restore_seconds:.1f} s; "
              f"{_fmt(_mib(restored) / r.restore_seconds) if r.restore_seconds else '-'} MiB/s |",
              f"| ingest messages the agents posted; commit requests (HTTP) | "
              f"{sum(a.reported.get('messages', 0) for a in agents):,}; {len(backups)} |",
              f"| messages the service queued during the backups | "
              + (", ".join(f"{q} {n:,}" for q, n in sorted(sends.items())) or "none") + " |",
              f"| chunks indexed (every vault, at the end), per second of the backups' wall time | "
              f"{r.chunks_indexed:,}, {r.chunks_indexed / r.backup_seconds:.1f}/s |",
              f"| chunk headers the functions read during the backups (ingest, and the commits' inline "
              f"declarations) | {header_reads:,} |",
              f"| function invocations over the run (failed) | "
              + ", ".join(f"{f} {len(ms):,} ({r.failed_invocations[f]})" for f, ms in sorted(r.invocations.items()))
              + f"; redeliveries {r.redeliveries} |",
              f"| ingest invocation: median, longest | "
              + (f"{statistics.median(ingest_ms):,.0f}, {max(ingest_ms):,} ms" if ingest_ms else "none") + " |",
              f"| deepest queue seen (sampled every {SAMPLE_S:g} s) | "
              + ", ".join(f"{q} {n:,}" for q, n in r.deepest.items()) + " |",
              f"| agents' peak RSS: highest; sum of the {len(backups)} backups | "
              f"{max((b.peak_rss_kib for b in backups), default=0) / 1024:.0f}; "
              f"{sum(b.peak_rss_kib for b in backups) / 1024:,.0f} MiB |",
              f"| stack's peak RSS over the run (VmHWM; RSS before the backups) | "
              + ", ".join(f"{name} {peak / 1024:,.0f} ({r.memory_at_start[name][0] / 1024:,.0f})"
                          for name, peak in memory.items()) + " MiB |",
              f"| CPU seconds during the backups ({os.cpu_count()} CPUs) | agents "
              f"{sum(b.cpu_seconds for b in backups):.1f}, "
              + ", ".join(f"{name} {used:.1f}" for name, used in r.stack_cpu.items()) + " |",
              "", "Checks:", ""]
    for key, what in CHECKS.items():
        problems = r.checks[key]
        lines.append(f"- {'✓' if not problems else '✗'} {what}")
        lines += [f"  - {p}" for p in problems[:10]]
        if len(problems) > 10:
            lines.append(f"  - and {len(problems) - 10} more")
    return "\n".join(lines)


def _spread(values: list[float]) -> list[float]:
    return [min(values), statistics.median(values), max(values)] if values else []


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description="Back up many agents at once into shared "
                                 "and separate vaults of one local stack, restore every point, check that nothing "
                                 "was lost, and print a markdown report of throughput and peak memory.")
    ap.add_argument("--agents", type=int, default=DEFAULT_AGENTS, help=f"default {DEFAULT_AGENTS}")
    ap.add_argument("--size-per-agent", type=parse_size,
                    help=f"bytes of each agent's tree, e.g. 64M (default {DEFAULT_SIZE // MiB}M, "
                         f"{QUICK_SIZE // MiB}M with --quick)")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_SIZE // MiB} MiB per agent, to try it out")
    ap.add_argument("--ingest-batch", type=int, default=None,
                    help=f"chunks each ingest message declares (default the agent's own, {INGEST_BATCH}); fewer "
                         "makes more, smaller messages: --ingest-batch 1 puts thousands in flight")
    ap.add_argument("--scratch", type=Path, default=None,
                    help="the folder to make the run's scratch folder in (default /dev/shm when writable)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "load-latest.md",
                    help="also write the report here (default bench/results/load-latest.md)")
    args = ap.parse_args(argv)
    args.size = args.size_per_agent or (QUICK_SIZE if args.quick else DEFAULT_SIZE)
    if args.size < MiB:
        ap.error(f"--size-per-agent must be at least 1M, not {args.size} bytes")
    if args.agents < 1:
        ap.error(f"--agents must be at least 1, not {args.agents}")
    if args.ingest_batch is not None and not 1 <= args.ingest_batch <= formats.CHUNKS_PER_MESSAGE:
        ap.error(f"--ingest-batch must be 1 to {formats.CHUNKS_PER_MESSAGE}, not {args.ingest_batch}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    # Every command is a new process: under PYTHONDONTWRITEBYTECODE each would compile the
    # sources again (see bench.run).
    for folder in CODE_DIRS:
        compileall.compile_dir(REPO / folder, quiet=1)
    version = code_version()
    scratch = Path(tempfile.mkdtemp(prefix="skyvault-load-", dir=args.scratch or scratch_parent()))
    try:
        result = run_load(args.agents, args.size, scratch, args.ingest_batch)
    except (ToolFailed, local.StackError, emulators.EmulatorError) as e:
        log(f"bench.load: failed: {e}")
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = report(result, args.size, args.quick, version, (time.monotonic() - started) / 60)
    if sources_digest() not in version:
        text += (f"\n\n**Warning: Skyvault's code changed during the run (now `{code_version()}`): "
                 "its figures mix versions.**")
    print(text, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    log(f"report written to {args.out}")
    if not result.ok:
        log("bench.load: a check failed (see Checks)")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
