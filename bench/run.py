"""`python -m bench.run`: back up and restore the same data with Skyvault, restic and borg in
one run, and print a markdown report of figures and ratios (also written to --out).

Per dataset (source: Django releases; image: a generated disk image, see
bench.data), every tool gets a fresh repository (Skyvault: a fresh vault on a
fresh local stack) and, step by step, backs up the
same working path: version 1 (first backup), version 2 (incremental after a
small change), version 2 again (unchanged data), restores version 2 (checked
file by file against the source), then backs up the remaining versions; then
its stored bytes are measured. The tools take turns within each step, so they
see the same state of a shared, noisy machine and the ratios come from the
same minutes. A first or incremental backup needs a fresh state, so it runs
once per run; unchanged backups and restores run --repeat times (median).

Peak memory: each tool backs up, into a fresh repository, an image of 1x and
of 10x the size (SIZE/10 and SIZE, or SIZE and 10xSIZE with --memory-scale).

Service side: the local Functions host counts its storage, queue and Cosmos DB
operations (shared.metrics); the difference around each Skyvault backup,
with what the agent says it uploaded and sent, gives the figures per GiB.
"""
from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime
import hashlib
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
from bench.tools import Backup, Borg, Restic, Run, Skyvault, Stack, Tool

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE_SIZE = 2 * GiB
QUICK_IMAGE_SIZE = 256 * MiB
MEMORY_GROWTH_LIMIT = 1.2  # "does not grow": 10x the data may cost at most 20% more peak memory
HEADER_BYTES = 18  # the chunk envelope header ingest reads (docs/design.md)
CODE_DIRS = ("skyvault", "shared", "functions", "funchost")


class BenchFailed(RuntimeError):
    pass


@dataclass
class Step:
    kind: str  # first, incremental, unchanged, later
    size: int  # bytes of the tree backed up (read or not)
    backup: Backup


@dataclass
class DatasetResult:
    name: str
    description: str
    steps: dict[str, list[Step]] = field(default_factory=dict)  # tool name → its backups, in order
    restores: dict[str, list[Run]] = field(default_factory=dict)
    restore_size: int = 0
    stored: dict[str, int] = field(default_factory=dict)

    def of(self, tool: str, kind: str) -> list[Step]:
        return [s for s in self.steps[tool] if s.kind == kind]


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
            result.steps[tool.name].append(Step(kind, size, backup))
            log(f"  {name} {kind:11} {tool.name:8} {backup.run.seconds:7.2f}s  "
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
            log(f"  {name} {'restore':11} {tool.name:8} {run.seconds:7.2f}s  (identical to the source)")
    for version in versions[2:]:
        data.sync_tree(version, work)
        back_up("later")
    for tool in tools:
        result.stored[tool.name] = tool.stored_bytes()
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
            shutil.rmtree(tool.root)  # only the peak memory matters here; free the disk for the next one
            log(f"  memory {label:4} {tool.name:8} {backup.run.seconds:7.2f}s  "
                f"{backup.run.peak_rss_kib / 1024:6.0f} MiB RSS")
    return peaks


# -- the report

def _mib(n: float) -> float:
    return n / MiB


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def _check(ok: bool) -> str:
    return "✓" if ok else "✗"


def dataset_report(r: DatasetResult, repeat: int) -> list[str]:
    names = list(r.steps)
    sky, restic, borg = names

    def per_tool(figure) -> dict[str, float]:
        return {t: figure(t) for t in names}

    first = per_tool(lambda t: r.of(t, "first")[0])
    throughput = per_tool(lambda t: _mib(first[t].size) / first[t].backup.run.seconds)
    unchanged = per_tool(lambda t: statistics.median(s.backup.run.seconds for s in r.of(t, "unchanged")))
    restore = per_tool(lambda t: statistics.median(run.seconds for run in r.restores[t]))
    stored = per_tool(lambda t: _mib(r.stored[t]))
    rows = [
        ("first backup, MiB/s (higher is better)", throughput),
        ("incremental backup after a small change, s",
         per_tool(lambda t: r.of(t, "incremental")[0].backup.run.seconds)),
        (f"backup of unchanged data, s (median of {repeat})", unchanged),
        (f"restore, s (median of {repeat})", restore),
        ("restore, MiB/s (higher is better)", per_tool(lambda t: _mib(r.restore_size) / restore[t])),
        (f"stored after all {len(r.steps[sky])} snapshots, MiB", stored),
        ("peak RSS of a backup, MiB",
         per_tool(lambda t: max(s.backup.run.peak_rss_kib for s in r.steps[t]) / 1024)),
    ]
    lines = [f"### {r.name}: {r.description}", "",
             f"| | {sky} | {restic} | {borg} | {sky}/{restic} | {sky}/{borg} |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, v in rows:
        lines.append(f"| {label} | {_fmt(v[sky])} | {_fmt(v[restic])} | {_fmt(v[borg])} | "
                     f"{v[sky] / v[restic]:.2f} | {v[sky] / v[borg]:.2f} |")
    targets = [  # (what, numerator, denominator, unit, ratio wanted, met when the ratio is at least it)
        ("first backup at least 1.5x restic's throughput", throughput[sky], throughput[restic], " MiB/s", 1.5,
         True),
        ("backup of unchanged data at least 2x faster than restic's: restic's / Skyvault's time",
         unchanged[restic], unchanged[sky], " s", 2.0, True),
        ("restore at least as fast as restic's: restic's / Skyvault's time", restore[restic], restore[sky], " s",
         1.0, True),
        ("stored bytes no more than restic's", stored[sky], stored[restic], " MiB", 1.0, False),
    ]
    lines += ["", "Targets, from the ratios of this run:", ""]
    for what, a, b, unit, wanted, at_least in targets:
        ratio = a / b
        lines.append(f"- {_check(ratio >= wanted if at_least else ratio <= wanted)} {what}: {_fmt(a)} / "
                     f"{_fmt(b)}{unit} = {ratio:.2f}x (target {'≥' if at_least else '≤'} {wanted:g}x)")
    agent = ", ".join(f"{kind} {s.backup.details['agent_seconds']:.1f} of {s.backup.run.seconds:.1f} s"
                      for kind in ("first", "incremental", "unchanged") for s in r.of(sky, kind)[:1])
    ours = first[sky].backup
    stack_cpu = ", ".join(f"{name} {used:.1f}" for name, used in ours.details["stack_cpu"].items())
    service_cpu = sum(ours.details["stack_cpu"].values())
    gib = first[sky].size / GiB
    lines += ["", f"Where Skyvault's time goes: its agent reports {agent} (from its start to the committed point; "
                  "the rest of the wall time is interpreter start-up). CPU seconds used during "
                  f"its first backup ({ours.run.seconds:.1f} s wall on {os.cpu_count()} CPUs): agent "
                  f"{ours.run.cpu_seconds:.1f}, {stack_cpu}; restic's first backup used "
                  f"{first[restic].backup.run.cpu_seconds:.1f}, borg's {first[borg].backup.run.cpu_seconds:.1f}. "
                  f"Per GiB, what runs on the customer's machine: Skyvault's agent "
                  f"{ours.run.cpu_seconds / gib:.1f} CPU-s, "
                  f"restic {first[restic].backup.run.cpu_seconds / gib:.1f}, "
                  f"borg {first[borg].backup.run.cpu_seconds / gib:.1f}; the emulated cloud on the same two cores "
                  f"took another {service_cpu / gib:.1f} CPU-s per GiB, work Azure does on its own servers."]
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
            f"{_command_output(['restic', 'version'])}; {_command_output(['borg', '--version'])}"]


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
                    help=f"a {QUICK_IMAGE_SIZE // MiB} MiB image and 2 source releases, to try it out")
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
    images = data.image_versions(cache, size, data.IMAGE_VERSIONS)
    memory_sizes = ({"1x": size, "10x": 10 * size} if args.memory_scale
                    else {"1x": size // 10 // MiB * MiB, "10x": size})
    memory_images = {label: data.image_versions(cache, n, 1)[0] for label, n in memory_sizes.items()}
    datasets = [
        ("source", f"Django {data.DJANGO_VERSIONS[0]} to {data.DJANGO_VERSIONS[len(sources) - 1]} "
                   f"({len(sources)} releases, {_mib(data.tree_bytes(sources[0])):.0f} MiB)", sources),
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
             f"restic and borg write to a repository in a local folder ({storage_note}). Skyvault goes "
             "through its full local pipeline: the agent uploads to Azurite over HTTP (keeping its data in "
             "memory), the local Functions host verifies every chunk into the Cosmos DB emulator, and a "
             "Skyvault backup ends only once its point is committed. restic: repository format 2 (compression "
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
