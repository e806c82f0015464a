"""`python -m bench.run`: back up and restore the same data with Skyvault, restic and borg in
one run, and print a markdown report of figures and ratios (also written to --out).

The primary comparison is restic writing to the same Azurite as Skyvault
(bench.tools.ResticAzurite); restic and borg on a local folder are a second
reference. Per dataset (source: Django releases; history: several projects'
minor releases; image: a generated disk image, see bench.data), every tool gets
a fresh repository (Skyvault: a fresh vault on a fresh local stack, which
restic-azurite shares) and, step by step, backs up the
same working path: version 1 (first backup), version 2 (incremental after a
change), version 2 again (unchanged data), restores version 2 (checked
file by file against the source), then backs up the remaining versions; after
each backup its stored bytes and objects are measured, outside the timing. The
tools take turns within each step, so they
see the same state of a shared, noisy machine and the ratios come from the
same minutes. A first or incremental backup needs a fresh state, so it runs
once per run; unchanged backups and restores run --repeat times (median).

Peak memory: each tool backs up, into a fresh repository, an image of 1x and
of 10x the size (SIZE/10 and SIZE, or SIZE and 10xSIZE with --memory-scale).

Service side: the local Functions host counts its storage, queue and Cosmos DB
operations (shared.metrics); the difference around each Skyvault backup,
with what the agent says it uploaded and sent, gives the figures per GiB.
restic-azurite's storage requests come from rclone's log of each request.
Every command of a tool on the stack also records the CPU time each stack
process used while it ran (bench.tools.timed).
"""
from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from bench import data
from bench.data import GiB, MiB
from bench.tools import (RCLONE_REMOTE, RESTIC_CONTAINER_PREFIX, Backup, Borg, Restic, ResticAzurite, Run,
                         Skyvault, Stack, Tool)
from skyvault.stack import emulators

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE_SIZE = 2 * GiB
QUICK_IMAGE_SIZE = 256 * MiB
MEMORY_GROWTH_LIMIT = 1.2  # "does not grow": 10x the data may cost at most 20% more peak memory
HEADER_BYTES = 18  # the chunk envelope header ingest reads (docs/design.md)
CODE_DIRS = ("skyvault", "shared", "functions", "funchost")
EMULATORS = (("azurite-primary", "Azurite"), ("cosmos", "Cosmos"), ("functions", "Functions host"))
REFS_BYTES_PER_CHUNK = 65  # a reference list's line: a chunk id in hex and a newline
MANIFEST_HEAD_ALLOWANCE = 1024  # per backup: the manifest root's header, which the commit reads


class BenchFailed(RuntimeError):
    pass


@dataclass
class Step:
    kind: str  # first, incremental, unchanged, later
    size: int  # bytes of the tree backed up (read or not)
    backup: Backup
    stored: int = 0  # bytes in the repository just after this backup
    objects: int = 0  # blobs (or files) in the repository just after it


@dataclass
class DatasetResult:
    name: str
    description: str
    steps: dict[str, list[Step]] = field(default_factory=dict)  # tool name → its backups, in order
    restores: dict[str, list[Run]] = field(default_factory=dict)
    restore_size: int = 0

    def of(self, tool: str, kind: str) -> list[Step]:
        return [s for s in self.steps[tool] if s.kind == kind]

    def stored(self, tool: str) -> int:
        return self.steps[tool][-1].stored


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def fresh_stack(scratch: Path, label: str) -> Iterator[Stack]:
    """A local stack of its own for each dataset, as each tool gets a fresh repository: Azurite's
    metadata look-ups scan every blob of the account (see the README), so another dataset's blobs
    left in it would slow each request of this one, a cost real Azure Storage does not have."""
    stack = Stack(scratch / f"stack-{label}")
    log(f"starting the local stack in {stack.home}")
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


def new_tools(scratch: Path, stack: Stack, label: str) -> list[Tool]:
    tools = [Skyvault(scratch / f"skyvault-{label}", stack, label),
             ResticAzurite(scratch / f"restic-azurite-{label}", stack, label),
             Restic(scratch / f"restic-{label}"), Borg(scratch / f"borg-{label}")]
    for tool in tools:
        tool.init()
    return tools


def bench_dataset(name: str, description: str, versions: list[Path], scratch: Path, stack: Stack,
                  repeat: int) -> DatasetResult:
    work = scratch / "work" / name  # the one path every tool backs up, whatever version it holds
    tools = new_tools(scratch, stack, name)
    result = DatasetResult(name, description, {t.name: [] for t in tools}, {t.name: [] for t in tools})

    def back_up(kind: str) -> None:
        size = data.tree_bytes(work)
        for tool in tools:
            backup = tool.backup(work)
            result.steps[tool.name].append(Step(kind, size, backup, tool.stored_bytes(), tool.stored_objects()))
            log(f"  {name} {kind:11} {tool.name:14} {backup.run.seconds:7.2f}s  "
                f"{backup.run.peak_rss_kib / 1024:6.0f} MiB RSS")

    data.sync_tree(versions[0], work)
    back_up("first")
    data.sync_tree(versions[1], work)
    back_up("incremental")
    for _ in range(repeat):
        back_up("unchanged")
    expected, result.restore_size = data.digest(work), data.tree_bytes(work)
    for _ in range(repeat):
        for tool in tools:
            target = scratch / "restore"
            target.mkdir()
            run, restored = tool.restore(result.of(tool.name, "incremental")[0].backup.snapshot, target, work)
            wrong = _differences(expected, data.digest(restored))
            if wrong:
                raise BenchFailed(f"{tool.name}'s restore of {name} differs from the source:\n  "
                                  + "\n  ".join(wrong))
            shutil.rmtree(target)
            result.restores[tool.name].append(run)
            log(f"  {name} {'restore':11} {tool.name:14} {run.seconds:7.2f}s  (identical to the source)")
    for version in versions[2:]:
        data.sync_tree(version, work)
        back_up("later")
    shutil.rmtree(work)
    return result


def _differences(expected: dict, actual: dict, limit: int = 10) -> list[str]:
    wrong = [f"{p}: expected {expected.get(p)}, got {actual.get(p)}"
             for p in sorted(set(expected) | set(actual)) if expected.get(p) != actual.get(p)]
    return wrong[:limit]


def bench_memory(images: dict[str, Path], scratch: Path, stack: Stack) -> dict[str, dict[str, Backup]]:
    """Scale label → tool name → a first backup of that image into a fresh repository. The tools
    read the version folder in the cache directly: a copy of a 10xSIZE image would only cost disk."""
    peaks: dict[str, dict[str, Backup]] = {}
    for label, version in images.items():
        peaks[label] = {}
        for tool in new_tools(scratch, stack, f"memory-{label}"):
            peaks[label][tool.name] = backup = tool.backup(version)
            tool.discard()  # only the peak memory matters here; free the memory for the next one
            log(f"  memory {label:4} {tool.name:14} {backup.run.seconds:7.2f}s  "
                f"{backup.run.peak_rss_kib / 1024:6.0f} MiB RSS")
    return peaks


# -- the report

def _mib(n: float) -> float:
    return n / MiB


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def _check(ok: bool) -> str:
    return "✓" if ok else "✗"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "–"


def _cell(x: float | None) -> str:
    return "–" if x is None else f"{x:,}" if isinstance(x, int) else _fmt(x)


def _median_step(steps: list[Step]) -> Step:
    return sorted(steps, key=lambda s: s.backup.run.seconds)[(len(steps) - 1) // 2]


def _median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda run: run.seconds)[(len(runs) - 1) // 2]


def storage_requests(tool: str, run: Run, backup: Backup | None) -> int | None:
    """Storage requests of one command: what rclone logged for restic-azurite; for a Skyvault
    backup, the agent's blob writes (one per new chunk, two per point) and the functions' blob
    transactions; unknown otherwise (a Skyvault restore reads with a SAS, uncounted)."""
    if run.requests is not None:
        return sum(run.requests.values())
    if tool == Skyvault.name and backup is not None:
        service = backup.details["service"]
        return backup.details["chunks_uploaded"] + 2 + sum(
            v for k, v in service.items() if k.startswith("blob.") and ".bytes_" not in k)
    return None


def _writes_by_kind(backups) -> str:
    """Where a dataset's Cosmos DB writes went, from the host's per-kind counts."""
    kinds: Counter[str] = Counter()
    for s in backups:
        kinds.update({k.removeprefix("cosmos.write."): v for k, v in s.backup.details["service"].items()
                      if k.startswith("cosmos.write.")})
    if not kinds:
        return ""
    return " (" + ", ".join(f"{kind} {n:,}" for kind, n in kinds.most_common() if n) + ")"


def steps_report(r: DatasetResult) -> list[str]:
    """Each step of each tool: wall time, the tool's CPU and peak memory, each emulator's CPU
    while it ran, storage requests and the objects its repository holds after it."""
    rows: list[tuple[str, str, Run, Backup | None, int, int | None]] = []
    for tool in r.steps:
        labelled = [("first", r.of(tool, "first")[0]), ("incremental", r.of(tool, "incremental")[0]),
                    (f"unchanged (median of {len(r.of(tool, 'unchanged'))})", _median_step(r.of(tool, "unchanged")))]
        labelled += [(f"later {n}", s) for n, s in enumerate(r.of(tool, "later"), start=3)]
        for label, s in labelled:
            rows.append((label, tool, s.backup.run, s.backup, s.size, s.objects))
        rows.append((f"restore (median of {len(r.restores[tool])})", tool, _median_run(r.restores[tool]), None,
                     r.restore_size, None))
    order: dict[str, int] = {}
    for label, *_ in rows:
        order.setdefault(label, len(order))
    rows.sort(key=lambda row: order[row[0]])  # by step, the tools in their order within each
    lines = ["| step | tool | wall s | tool CPU-s | peak RSS MiB | " + " | ".join(f"{e} CPU-s" for _, e in EMULATORS)
             + " | storage requests | per GiB | objects stored after |",
             "|---|---|---:|---:|---:|" + "---:|" * len(EMULATORS) + "---:|---:|---:|"]
    for label, tool, run, backup, size, objects in rows:
        emulators = [run.stack_cpu.get(key) if run.stack_cpu else None for key, _ in EMULATORS]
        requests = storage_requests(tool, run, backup)
        lines.append(f"| {label} | {tool} | {run.seconds:.2f} | {run.cpu_seconds:.2f} | "
                     f"{run.peak_rss_kib / 1024:.0f} | "
                     + " | ".join("–" if e is None else f"{e:.2f}" for e in emulators)
                     + f" | {'–' if requests is None else f'{requests:,}'} | "
                     f"{'–' if requests is None else f'{requests / (size / GiB):,.0f}'} | "
                     f"{'–' if objects is None else f'{objects:,}'} |")
    return lines


def dataset_report(r: DatasetResult, repeat: int) -> list[str]:
    names = list(r.steps)
    sky, azure, restic, borg = names

    def per_tool(figure) -> dict[str, float | None]:
        return {t: figure(t) for t in names}

    first = per_tool(lambda t: r.of(t, "first")[0])
    gib = first[sky].size / GiB
    throughput = per_tool(lambda t: _mib(first[t].size) / first[t].backup.run.seconds)
    unchanged = per_tool(lambda t: statistics.median(s.backup.run.seconds for s in r.of(t, "unchanged")))
    restore = per_tool(lambda t: statistics.median(run.seconds for run in r.restores[t]))
    stored = per_tool(lambda t: _mib(r.stored(t)))
    cpu_per_gib = per_tool(lambda t: first[t].backup.run.cpu_seconds / gib)
    requests_per_gib = per_tool(lambda t: None if (n := storage_requests(t, first[t].backup.run, first[t].backup))
                                is None else n / gib)
    rows = [
        ("first backup, MiB/s (higher is better)", throughput),
        ("incremental backup, s", per_tool(lambda t: r.of(t, "incremental")[0].backup.run.seconds)),
        (f"backup of unchanged data, s (median of {repeat})", unchanged),
        (f"restore, s (median of {repeat})", restore),
        ("restore, MiB/s (higher is better)", per_tool(lambda t: _mib(r.restore_size) / restore[t])),
        (f"stored after all {len(r.steps[sky])} snapshots, MiB", stored),
        ("objects stored (blobs; files for a folder)", per_tool(lambda t: r.steps[t][-1].objects)),
        ("first backup: the tool's CPU-s per GiB", cpu_per_gib),
        ("first backup: storage requests per GiB", requests_per_gib),
        ("peak RSS of a backup, MiB",
         per_tool(lambda t: max(s.backup.run.peak_rss_kib for s in r.steps[t]) / 1024)),
    ]
    lines = [f"### {r.name}: {r.description}", "",
             f"| | {sky} | {azure} | {restic} (folder) | {borg} (folder) | {sky}/{azure} | {sky}/{restic} "
             f"| {sky}/{borg} |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, v in rows:
        lines.append(f"| {label} | {_cell(v[sky])} | {_cell(v[azure])} | {_cell(v[restic])} | {_cell(v[borg])} | "
                     f"{_ratio(v[sky], v[azure])} | {_ratio(v[sky], v[restic])} | {_ratio(v[sky], v[borg])} |")
    lines += ["", "Each step (emulators' CPU while the tool's command ran, for the tools on the stack; storage "
                  f"requests: {azure}'s as rclone logged them, Skyvault's backups the agent's blob writes plus the "
                  "functions' blob transactions; per GiB of the tree the step covers):", "", *steps_report(r)]

    ours = first[sky].backup
    # Over every backup of the dataset: points written while nothing new was uploaded count too.
    backups = r.steps[sky]
    new_chunks = sum(s.backup.details["chunks_uploaded"] for s in backups)
    cosmos_writes = sum(s.backup.details["service"].get("cosmos.write", 0) for s in backups)
    referenced = sum(s.backup.details["chunks_referenced"] for s in backups)
    read = sum(v for s in backups for k, v in s.backup.details["service"].items() if k.endswith(".bytes_read"))
    beyond = read - HEADER_BYTES * sum(s.backup.details["service"].get("blob.primary.read_head", 0) for s in backups)
    allowed = 2 * REFS_BYTES_PER_CHUNK * referenced + MANIFEST_HEAD_ALLOWANCE * len(backups)
    worst_stored = max((s.stored / a.stored, n) for n, (s, a) in enumerate(zip(r.steps[sky], r.steps[azure]), 1))
    until_idle = ours.details["stack_cpu_until_idle"]
    functions_per_gib = until_idle.get("functions", 0) / gib
    targets = [  # (what, numerator, denominator, unit, ratio wanted, met when the ratio is at least it)
        (f"first backup at least 1.5x {azure}'s throughput", throughput[sky], throughput[azure], " MiB/s", 1.5, True),
        (f"restore at least 2x faster than {azure}'s: its time / Skyvault's", restore[azure], restore[sky], " s",
         2.0, True),
        (f"backup of unchanged data at least 4x faster than {azure}'s: its time / Skyvault's",
         unchanged[azure], unchanged[sky], " s", 4.0, True),
        (f"agent CPU-s per GiB (first backup) at most 0.5x {azure}'s (restic with its rclone)",
         cpu_per_gib[sky], cpu_per_gib[azure], " CPU-s/GiB", 0.5, False),
    ]
    lines += ["", f"Targets against {azure} (issue 17), from this run:", ""]
    for what, a, b, unit, wanted, at_least in targets:
        ratio = a / b
        lines.append(f"- {_check(ratio >= wanted if at_least else ratio <= wanted)} {what}: {_fmt(a)} / "
                     f"{_fmt(b)}{unit} = {ratio:.2f}x (target {'≥' if at_least else '≤'} {wanted:g}x)")
    lines += [
        f"- {_check(worst_stored[0] <= 0.9)} stored bytes at most 0.9x {azure}'s after every backup: worst "
        f"{worst_stored[0]:.2f}x (after backup {worst_stored[1]} of {len(backups)}; after the last "
        f"{stored[sky] / stored[azure]:.2f}x)",
        f"- {_check(functions_per_gib <= 1.0)} Functions host at most 1 CPU-s per GiB backed up (first backup, "
        f"until the host's counts settled after it): {functions_per_gib:.2f} CPU-s/GiB",
        f"- {_check(new_chunks > 0 and cosmos_writes / new_chunks <= 1.1)} at most 1.1 Cosmos DB writes per new "
        f"chunk (every backup of the dataset): {cosmos_writes:,} writes / {new_chunks:,} new chunks = "
        + (f"{cosmos_writes / new_chunks:.2f}" if new_chunks else "–") + _writes_by_kind(backups),
        f"- {_check(beyond <= allowed)} 0 bytes of chunks downloaded to verify: the functions read "
        f"{beyond:,} B beyond chunk headers over {len(backups)} backups, within what the reference lists and "
        f"manifest headers account for ({allowed:,} B: {REFS_BYTES_PER_CHUNK} B per chunk referenced, its "
        f"point's and the parent's, and {MANIFEST_HEAD_ALLOWANCE} B per backup)",
    ]
    old_targets = [
        ("first backup at least 1.5x restic's throughput", throughput[sky], throughput[restic], 1.5, True),
        ("backup of unchanged data at least 2x faster than restic's", unchanged[restic], unchanged[sky], 2.0, True),
        ("restore at least as fast as restic's", restore[restic], restore[sky], 1.0, True),
        ("stored bytes no more than restic's", stored[sky], stored[restic], 1.0, False),
    ]
    lines += ["", "Earlier targets, against restic on a local folder: " + "; ".join(
        f"{_check(a / b >= wanted if at_least else a / b <= wanted)} {what} ({a / b:.2f}x, target "
        f"{'≥' if at_least else '≤'} {wanted:g}x)" for what, a, b, wanted, at_least in old_targets) + "."]

    agent = ", ".join(f"{kind} {s.backup.details['agent_seconds']:.1f} of {s.backup.run.seconds:.1f} s"
                      for kind in ("first", "incremental", "unchanged") for s in r.of(sky, kind)[:1])
    theirs = first[azure].backup.run
    stack_cpu = ", ".join(f"{name} {used:.1f}" for name, used in ours.run.stack_cpu.items())
    service_cpu = sum(ours.run.stack_cpu.values())
    lines += ["", f"Where the time goes: Skyvault's agent reports {agent} (from its start to the committed point; "
                  "the rest of the wall time is interpreter start-up). CPU seconds during the first backup "
                  f"({os.cpu_count()} CPUs): Skyvault ({ours.run.seconds:.1f} s wall) agent "
                  f"{ours.run.cpu_seconds:.1f}, and the whole service {service_cpu:.1f} ({stack_cpu}; "
                  f"{sum(until_idle.values()):.1f} in all by the time it was idle after the command, metering "
                  "included); "
                  f"{azure} ({theirs.seconds:.1f} s wall) restic with rclone {theirs.cpu_seconds:.1f}, and "
                  f"Azurite {theirs.stack_cpu.get('azurite-primary', 0):.1f} (the whole stack "
                  f"{sum(theirs.stack_cpu.values()):.1f}); restic on a folder "
                  f"{first[restic].backup.run.cpu_seconds:.1f}, "
                  f"borg {first[borg].backup.run.cpu_seconds:.1f}. Per GiB, the emulated cloud took "
                  f"{service_cpu / gib:.1f} CPU-s during Skyvault's first backup and "
                  f"{sum(theirs.stack_cpu.values()) / gib:.1f} during {azure}'s, work Azure does on its own servers."]
    return lines


def memory_report(peaks: dict[str, dict[str, Backup]], sizes: dict[str, int]) -> list[str]:
    one, ten = list(peaks)
    lines = ["### Peak memory of a first backup, 1x and 10x the data", "",
             f"| | {one} ({_mib(sizes[one]):,.0f} MiB image) | {ten} ({_mib(sizes[ten]):,.0f} MiB image) "
             f"| {ten}/{one} |",
             "|---|---:|---:|---:|"]
    growth = {}
    for tool in peaks[one]:
        a, b = (peaks[label][tool].run.peak_rss_kib / 1024 for label in (one, ten))
        growth[tool] = b / a
        lines.append(f"| {tool} peak RSS, MiB | {a:.0f} | {b:.0f} | {b / a:.2f} |")
    sky = next(iter(peaks[one]))
    lines += ["", f"- {_check(growth[sky] <= MEMORY_GROWTH_LIMIT)} Skyvault agent's peak memory does not grow "
                  f"with the data (10x the data within {MEMORY_GROWTH_LIMIT:.1f}x the memory): {growth[sky]:.2f}x"]
    return lines


def service_report(results: list[DatasetResult]) -> list[str]:
    lines = ["### Service side: Skyvault through the local Functions host", "",
             "Per GiB backed up (the size of the tree each backup covers, read or not). Agent: what it "
             "uploaded (one blob per new chunk, two per point) and sent, from its output; service: the "
             "host's operation counts.", "",
             "| dataset, backups | GiB | blob transactions: agent + service | queue messages: agent + service "
             "| Cosmos DB operations | bytes read by functions | of which beyond 18-byte chunk-header reads |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    rates = []
    for r in results:
        for kind in ("first", "incremental", "unchanged", "later"):
            steps = r.of(Skyvault.name, kind)
            if not steps:
                continue
            gib = sum(s.size for s in steps) / GiB
            agent_blobs = sum(s.backup.details["chunks_uploaded"] + 2 for s in steps)
            agent_messages = sum(s.backup.details["messages"] for s in steps)
            service: Counter[str] = Counter()
            for s in steps:
                service.update(s.backup.details["service"])
            blob_ops = sum(v for k, v in service.items() if k.startswith("blob.") and ".bytes_" not in k)
            sends = sum(v for k, v in service.items() if k.startswith("queue.") and k.endswith(".send"))
            cosmos = service["cosmos.query"] + service["cosmos.write"]
            read = sum(v for k, v in service.items() if k.endswith(".bytes_read"))
            beyond = read - HEADER_BYTES * service["blob.primary.read_head"]
            lines.append(f"| {r.name}, {kind} ({len(steps)}) | {gib:.3f} | {agent_blobs / gib:,.0f} + "
                         f"{blob_ops / gib:,.0f} | {agent_messages / gib:,.1f} + {sends / gib:,.1f} | "
                         f"{cosmos / gib:,.0f} | {read / gib:,.0f} B | {beyond / gib:,.0f} B |")
        first = r.of(Skyvault.name, "first")[0]
        verified = first.backup.details["service"].get("blob.primary.read_head", 0)
        rates.append(f"{r.name}: {verified:,} chunks in {first.backup.run.seconds:.1f} s = "
                     f"{verified / first.backup.run.seconds:.1f} chunks/s")
    lines += ["", "Chunks ingested per second (chunks ingest verified during the first backup, one ranged "
                  "read of the header each, over that backup's wall time; the backup returns only once its point is "
                  "committed, so every chunk was ingested within it; one agent drives the pipeline): "
                  + "; ".join(rates) + ".",
              "", "Bytes read by functions beyond chunk headers are the reference lists the commit reads "
                  "(65 bytes per MiB referenced: its own, and its parent's when the two differ) and the "
                  "manifest root's header."]
    return lines


def _command_output(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def sources_digest() -> str:
    """A digest of the service's and agent's sources: every Skyvault command of the run starts a
    new process, so an edit made during the run would change what is measured."""
    digest = hashlib.sha256()
    for path in sorted(REPO.glob("*.py")) + sorted(p for d in CODE_DIRS for p in (REPO / d).rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def code_version() -> str:
    return f"{_command_output(['git', 'describe', '--always', '--dirty'])}, sources {sources_digest()}"


def machine_report(version: str) -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    return [f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; "
            f"machine: {os.cpu_count()} CPUs ({cpu}), load average at start {os.getloadavg()[0]:.2f}",
            f"- Skyvault at `{version}`, Python {platform.python_version()}; "
            f"{_command_output(['restic', 'version'])}; {_command_output(['rclone', 'version'])}; "
            f"{_command_output(['borg', '--version'])}",
            f"- stack: {stack_description()}"]


def stack_description() -> str:
    """Which local stack the Skyvault figures used (issue 17: report it), from the installed
    emulators and host.json."""
    def version(package: str) -> str:
        try:
            return json.loads((emulators.node_modules() / package / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError, emulators.EmulatorError):
            return "unknown"

    queues = json.loads((REPO / "host.json").read_text()).get("extensions", {}).get("queues", {})
    return (f"Azurite {version('azurite')} with its metadata in memory (LokiJS, `--inMemoryPersistence`), "
            f"@vercel/cosmosdb-server {version('@vercel/cosmosdb-server')} (in memory), and the project's "
            f"local Functions host: one worker process, host.json's queue batchSize "
            f"{queues.get('batchSize', '?')} and newBatchThreshold {queues.get('newBatchThreshold', '?')}")


def scratch_parent() -> str | None:
    """Memory (tmpfs) for every tool's repository, work tree and restore target, so that no
    tool waits on this machine's disk; Skyvault's emulated storage keeps its data in memory too."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": MiB, "G": GiB}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description="Back up and restore the same data "
                                 "with Skyvault, restic and borg, and print a markdown report.")
    ap.add_argument("--quick", action="store_true",
                    help=f"a {QUICK_IMAGE_SIZE // MiB} MiB image, 2 source releases and "
                         f"{data.QUICK_HISTORY_VERSIONS} history versions, to try it out")
    ap.add_argument("--image-size", type=parse_size, help="size of the disk image, e.g. 2G or 512M "
                    f"(default {DEFAULT_IMAGE_SIZE // GiB}G, {QUICK_IMAGE_SIZE // MiB}M with --quick)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each repeatable step (median; default 1)")
    ap.add_argument("--memory-scale", action="store_true",
                    help="measure peak memory with images of SIZE and 10xSIZE instead of SIZE/10 and SIZE")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.md",
                    help="also write the report here (default bench/results/latest.md)")
    args = ap.parse_args()
    size = args.image_size or (QUICK_IMAGE_SIZE if args.quick else DEFAULT_IMAGE_SIZE)
    size -= size % MiB
    started = time.monotonic()
    # An installed agent runs from the bytecode pip compiled; under PYTHONDONTWRITEBYTECODE (set
    # on these machines) every Skyvault command would otherwise compile its sources again.
    for folder in CODE_DIRS:
        compileall.compile_dir(REPO / folder, quiet=1)
    version = code_version()
    machine = machine_report(version)

    cache = data.cache_dir()
    sources = data.source_versions(cache, 2 if args.quick else len(data.DJANGO_VERSIONS))
    history = data.history_versions(cache, data.QUICK_HISTORY_VERSIONS if args.quick else len(data.HISTORY_VERSIONS))
    images = data.image_versions(cache, size, data.IMAGE_VERSIONS)
    memory_sizes = ({"1x": size, "10x": 10 * size} if args.memory_scale
                    else {"1x": size // 10 // MiB * MiB, "10x": size})
    memory_images = {label: data.image_versions(cache, n, 1)[0] for label, n in memory_sizes.items()}
    datasets = [
        ("source", f"Django {data.DJANGO_VERSIONS[0]} to {data.DJANGO_VERSIONS[len(sources) - 1]} "
                   f"({len(sources)} releases, {_mib(data.tree_bytes(sources[0])):.0f} MiB, "
                   f"{data.changed_files(sources[0], sources[1]):,} of {data.file_count(sources[1]):,} files changed "
                   "or new in version 2)", sources),
        ("history", f"{len(history)} versions of one tree of {len(data.HISTORY_VERSIONS[0])} projects, each "
                    "version every project's next minor release or more ("
                    + ", ".join(f"{p} {v} to {data.HISTORY_VERSIONS[len(history) - 1][p]}"
                                for p, v in data.HISTORY_VERSIONS[0].items()) + "; "
                    f"{_mib(data.tree_bytes(history[0])):.0f} MiB, {data.changed_files(history[0], history[1]):,} "
                    f"of {data.file_count(history[1]):,} files changed or new in version 2)", history),
        ("image", f"a {size // MiB:,} MiB disk image, {len(images)} versions ({data.EDITS} scattered 4 KiB "
                  f"edits between versions)", images),
    ]

    parent = scratch_parent()
    scratch = Path(tempfile.mkdtemp(prefix="skyvault-bench-", dir=parent))
    try:
        results = []
        for name, description, versions in datasets:
            log(f"{name}: {description}")
            with fresh_stack(scratch, name) as stack:
                results.append(bench_dataset(name, description, versions, scratch, stack, args.repeat))
        log("peak memory, 1x and 10x")
        with fresh_stack(scratch, "memory") as stack:
            peaks = bench_memory(memory_images, scratch, stack)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    minutes = (time.monotonic() - started) / 60
    storage_note = ("on tmpfs, like the work tree and the restore targets of every tool" if parent
                    else "on this disk")
    if sources_digest() not in version:
        machine.append(f"- **warning: Skyvault's code changed during the run (now `{code_version()}`): "
                       "its figures mix versions**")
    lines = [f"## Skyvault against restic and borg{' (--quick)' if args.quick else ''}", "", *machine,
             f"- the whole run took {minutes:.1f} minutes; load average at the end {os.getloadavg()[0]:.2f}", "",
             "Skyvault goes through its full local pipeline: the agent uploads to Azurite over HTTP (keeping its "
             "data in memory), the local Functions host verifies every chunk into the Cosmos DB emulator, and a "
             "Skyvault backup ends only once its point is committed. The primary comparison, "
             f"{ResticAzurite.name}, is restic writing to the same Azurite process through rclone's azureblob "
             f"backend (`rclone:{RCLONE_REMOTE}:{RESTIC_CONTAINER_PREFIX}DATASET/restic`, a container of Azurite's "
             "default account, not the vaults' account; rclone logs each request, `-vv --dump headers`, which "
             "is how its requests are counted). "
             f"restic and borg (folder) write to a repository in a local folder ({storage_note}). "
             "restic: repository format 2 (compression "
             "auto, zstd); borg: repokey-blake2 (BLAKE2b, "
             "AES-256-CTR), zstd,3; Skyvault: zstd 3, AES-256-GCM. restic and borg derive their key from the "
             "passphrase at every command; Skyvault's agent derives it once, at registration, and keeps the keys "
             "on the machine (as kopia persists its password). All tools back up the same path; the data "
             "is in the page cache for all of them. Times are wall times of the command; peak RSS is the "
             "command's process (wait4). Ratios are Skyvault's figure divided by the other's.", ""]
    for r in results:
        lines += [*dataset_report(r, args.repeat), ""]
    lines += [*memory_report(peaks, memory_sizes), "", *service_report(results), ""]
    report = "\n".join(lines)
    print(report, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    log(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
