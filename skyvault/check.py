"""Check: whether the vault still holds, intact, every chunk its recovery points reference, as
restic's `check`. The service compares its index with each region's blobs (presence, size, the
MD5 Azure recorded on upload: shared.service.check); with --read-data the agent also downloads,
decrypts and authenticates the chunks (keyed BLAKE3 of the plaintext = the id, through the
restore's fetcher) in each region that holds all of the point, or a random subset of them. Bad
copies are reported to the service, which heals them from a good region or marks the chunk
damaged (docs/design.md, "Check and damage reports").

Words:
- problem: something wrong with one chunk, in the index or with one region's copy
  (shared.messages.ChunkProblem); a point problem: its reference list is missing or unreadable.
- unchecked: what could not be checked (a region that did not answer): the check is incomplete.
- subset: `--read-data --subset P` downloads each chunk with probability P/100, drawn anew each
  run (as restic's `--read-data-subset P%`), so successive runs cover different chunks.

The agent reads blobs only through the read-only SAS of restore jobs, one per point (renewed
before it expires). Reference lists are sorted, so they are read a page at a time and merged:
the agent holds a page of each point's list and a page of chunk ids, never all the vault's ids.
"""
from __future__ import annotations

import base64
import hashlib
import heapq
import math
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator, TypeVar

from shared import formats
from shared.domain import JobStatus, PointState, chunk_blob_name
from shared.messages import CHECK_MAX_IDS, DAMAGE_MAX_REPORTS, MAX_TEXT, ChunkProblem, DamageOutcome, DamageReport
from shared.ports import BlobContainer, BlobNotFound, StorageError, TransientError
from skyvault import exitcodes
from skyvault.meter import Meter, Unmetered
from skyvault.restore import DOWNLOAD_WORKERS, Access, RegionReader, Restore, RestoreFailed
from skyvault.vaultclient import AgentError, AgentVault

REFS_PAGE_BYTES = 64 * 1024  # about 1,000 ids of a reference list per read
# A restore job's SAS lasts an hour (shared.service.restore): a longer check asks for a new job.
RENEW_ACCESS_AFTER = timedelta(minutes=45)

T = TypeVar("T")


def parse_subset(text: str) -> float:
    """`--subset`'s percentage (`10`, `10%`, `2.5`) as a fraction: more than 0, at most 1."""
    number = text[:-1] if text.endswith("%") else text
    try:
        percent = float(number)
    except ValueError:
        raise AgentError(f"--subset {text!r} is not a percentage (e.g. 10 or 10%)") from None
    if not (math.isfinite(percent) and 0 < percent <= 100):
        raise AgentError(f"--subset must be more than 0% and at most 100%, not {text}")
    return percent / 100


@dataclass
class CheckReport:
    points: list[str]
    chunks: int = 0  # distinct chunks the service checked
    copies_read: int = 0  # chunk copies downloaded and authenticated (or found failing it)
    problems: list[ChunkProblem] = field(default_factory=list)
    point_problems: list[str] = field(default_factory=list)
    outcomes: list[DamageOutcome] = field(default_factory=list)  # what the service did about the bad copies
    unchecked: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.problems or self.point_problems:
            return exitcodes.PROBLEMS
        return exitcodes.INCOMPLETE if self.unchecked else exitcodes.OK


class _Unavailable(Exception):
    """No region of a point answered."""


class _PointAccess:
    """A point's regions through the read-only SAS of a restore job, renewed before it expires:
    every region the job offers (for reading chunks), and those that hold all of the point."""

    def __init__(self, vault: AgentVault, point_id: str):
        self.vault, self.point_id = vault, point_id
        self.references: int | None = None  # the ids in its reference list, once its first page is read
        self._renew()

    def _renew(self) -> None:
        job = self.vault.start_restore(uuid.uuid4().hex, self.point_id, "inspect")
        if job.status != JobStatus.READY or job.plan is None:
            raise RestoreFailed(f"check of {self.point_id} refused: {job.reason}")
        self._since = self.vault.clock()
        self._offered = {r.region: self.vault.read_container(r.container_url) for r in job.plan.regions}
        self.complete = tuple(r.region for r in job.plan.regions if r.complete)

    def containers(self) -> dict[str, BlobContainer]:
        if self.vault.clock() - self._since > RENEW_ACCESS_AFTER:
            self._renew()
        return self._offered

    def read(self, operation: Callable[[BlobContainer], T]) -> T:
        """`operation` on the first region holding the point that answers."""
        error: Exception | None = None
        for region in self.complete:
            try:
                return operation(self.containers()[region])
            except TransientError as e:
                error = e
        raise _Unavailable(f"no region holding recovery point {self.point_id} answers: {error}")


def reference_list(access: _PointAccess) -> Iterator[str]:
    """A point's reference list, read a page at a time; refuses one that is not sorted ids."""
    name = formats.refs_blob(access.point_id)
    page, properties = access.read(lambda container: container.read_head(name, REFS_PAGE_BYTES))
    access.references = properties.size // formats.REF_LINE
    offset, rest, last = len(page), b"", ""
    while True:
        lines = (rest + page).split(b"\n")
        rest = lines.pop()
        for cid in formats.decode_refs(b"".join(line + b"\n" for line in lines)):
            if cid <= last:
                raise formats.MalformedMessage(f"reference list {name} is not sorted at {cid}")
            last = cid
            yield cid
        if offset >= properties.size:
            break
        length = min(REFS_PAGE_BYTES, properties.size - offset)
        page = access.read(lambda container: container.read(name, offset, length))
        offset += len(page)
    if rest:
        raise formats.MalformedMessage(f"reference list {name} does not end with a newline")


class _RecordingReader:
    """One region's copies for Restore._fetcher, keeping the MD5 of the bytes read: a copy that
    fails authentication is reported with it, and a failure read nothing, or found no blob."""

    def __init__(self, region: str, container: BlobContainer):
        # This region alone, with no spare to fall back on: each region's copy is checked on its own.
        self._reader = RegionReader(Access([(region, container)], [], datetime.max.replace(tzinfo=timezone.utc)),
                                    lambda _: None)
        self.md5: dict[str, str] = {}
        self.sizes: dict[str, int] = {}  # bytes downloaded of each blob read
        self.missing: set[str] = set()

    def read(self, name: str, check: Callable[[bytes], Any] | None = None) -> Any:
        def recording(data: bytes) -> Any:
            self.md5[name] = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
            self.sizes[name] = len(data)
            return check(data) if check else data

        try:
            return self._reader.read(name, recording)
        except BlobNotFound:
            self.missing.add(name)
            raise


def _distinct(merged: Iterable[tuple[str, tuple[str, ...]]]) -> Iterator[tuple[str, frozenset[str]]]:
    """Each chunk id of the merged lists once, with the regions of the points that reference it."""
    current, regions = None, set()
    for cid, point_regions in merged:
        if cid != current:
            if current is not None:
                yield current, frozenset(regions)
            current, regions = cid, set()
        regions.update(point_regions)
    if current is not None:
        yield current, frozenset(regions)


def _pages(items: Iterator[T], size: int) -> Iterator[list[T]]:
    page: list[T] = []
    for item in items:
        page.append(item)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


class Check:
    def __init__(self, vault: AgentVault, progress: Callable[[str], None] = lambda _: None,
                 rng: random.Random | None = None, meter: Meter | None = None,
                 found: Callable[[str, ChunkProblem | None], None] | None = None):
        """`progress` gets notes; `found` each problem as it is found, its text and the chunk
        problem (None: a point problem; by default a "problem: " note); `meter` the chunks
        checked and, with --read-data, the bytes read, of the points' references (an upper
        bound where points share chunks, made the chunks checked when the check ends)."""
        self.vault, self.progress = vault, progress
        self.rng = rng or random.Random()
        self.meter = meter or Unmetered()
        self.found = found or (lambda text, _problem: progress(f"problem: {text}"))

    def run(self, point_ids: list[str] | None = None, read_data: bool = False,
            subset: float = 1.0) -> CheckReport:
        """Check the given committed points (default: all of them); with `read_data`, download
        and authenticate `subset` of their chunks too. Reports bad copies to the service."""
        if read_data and self.vault.keys is None:
            raise AgentError("check --read-data needs the vault keys: give the passphrase")
        report = CheckReport(self._points(point_ids))
        if not report.points:
            return report
        accesses = [_PointAccess(self.vault, p) for p in report.points]
        merged = heapq.merge(*(self._references(a, report) for a in accesses), key=lambda entry: entry[0])
        pending: list[DamageReport] = []
        fetch = Restore(self.vault)._fetcher if read_data else None
        checked = 0
        with ThreadPoolExecutor(DOWNLOAD_WORKERS, thread_name_prefix="check") as pool:
            for page in _pages(_distinct(merged), CHECK_MAX_IDS):
                # Every list's first page is read once the merge yields: their sizes give the total.
                self.meter.set_totals(files=sum(a.references or 0 for a in accesses))
                bad = self._check_page(page, report, pending)
                checked += len(page)
                self.meter.update(files=len(page))
                if fetch is not None:
                    chosen = [(cid, regions) for cid, regions in page if self.rng.random() < subset]
                    self._read_page(chosen, bad, accesses[0], fetch, pool, report, pending)
                while len(pending) >= DAMAGE_MAX_REPORTS:
                    self._report(pending, report)
        while pending:
            self._report(pending, report)
        self.meter.set_totals(files=checked)
        return report

    def _points(self, asked: list[str] | None) -> list[str]:
        points = {p.id: p for p in self.vault.points()}
        if not asked:
            return [p.id for p in points.values() if p.state == PointState.COMMITTED]
        for point_id in asked:
            if not formats.POINT_ID.match(point_id):
                raise AgentError(f"{point_id!r} is not a recovery point id (see `skyvault points`)")
            if point_id not in points:
                raise AgentError(f"this vault has no recovery point {point_id} (see `skyvault points`)")
            if points[point_id].state != PointState.COMMITTED:
                raise AgentError(f"recovery point {point_id} is {points[point_id].state}, not committed: "
                                 f"there is nothing of it to check")
        return list(dict.fromkeys(asked))

    def _references(self, access: _PointAccess, report: CheckReport) -> Iterator[tuple[str, tuple[str, ...]]]:
        """A point's chunk ids with the regions that hold all of it; a list that cannot be read
        ends early, as a point problem (or unchecked, if no region answers)."""
        name = formats.refs_blob(access.point_id)
        try:
            for cid in reference_list(access):
                yield cid, access.complete
        except BlobNotFound:
            self._point_problem(report, f"recovery point {access.point_id}: its reference list {name} is missing")
        except (formats.MalformedMessage, UnicodeDecodeError) as e:
            self._point_problem(report, f"recovery point {access.point_id}: its reference list is unreadable: {e}")
        except (_Unavailable, StorageError) as e:
            self._unchecked(report, f"recovery point {access.point_id}: {e}")

    def _check_page(self, page: list[tuple[str, frozenset[str]]], report: CheckReport,
                    pending: list[DamageReport]) -> set[tuple[str, str]]:
        """The service's check of a page of chunks; gives the copies it found bad."""
        answer = self.vault.check_chunks([cid for cid, _ in page])
        report.chunks += answer.checked
        for region in answer.unavailable:
            self._unchecked(report, f"the {region} region did not answer the service: its copies were not checked")
        bad = set()
        for problem in answer.problems:
            self._problem(report, problem)
            if problem.region is not None:
                bad.add((problem.chunk_id, problem.region))
                pending.append(DamageReport(problem.chunk_id, problem.region,
                                            f"{problem.kind}: {problem.detail}"[:MAX_TEXT]))
        return bad

    def _read_page(self, chosen: list[tuple[str, frozenset[str]]], bad: set[tuple[str, str]],
                   access: _PointAccess, fetch: Callable, pool: ThreadPoolExecutor, report: CheckReport,
                   pending: list[DamageReport]) -> None:
        """Download and authenticate each chosen chunk in each region holding it, but the copies
        the service already found bad."""
        containers = access.containers()
        readers = {region: _RecordingReader(region, container) for region, container in containers.items()}
        fetchers = {region: fetch(reader) for region, reader in readers.items()}
        copies = [(cid, region) for cid, regions in chosen for region in sorted(regions) if (cid, region) not in bad]

        def read(copy: tuple[str, str]) -> Exception | None:
            try:
                fetchers[copy[1]](copy[0])
            except RestoreFailed as e:
                return e
            return None

        for (cid, region), error in zip(copies, pool.map(read, copies)):
            name, reader = chunk_blob_name(cid), readers[region]
            if error is None or name in reader.md5:
                report.copies_read += 1
                self.meter.update(bytes_=reader.sizes.get(name, 0), current=f"chunk {cid} ({region})")
            if error is None:
                continue
            if name in reader.md5:
                problem = ChunkProblem(cid, region, "authentication", str(error)[:MAX_TEXT])
                self._problem(report, problem)
                pending.append(DamageReport(cid, region, problem.detail, md5=reader.md5[name]))
            elif name in reader.missing:
                # The service's check saw it there: it went missing since.
                self._problem(report, ChunkProblem(cid, region, "missing", f"no blob {name} any more"))
                pending.append(DamageReport(cid, region, "missing"))
            else:
                self._unchecked(report, f"chunk {cid} ({region}) could not be read: {error}")

    def _report(self, pending: list[DamageReport], report: CheckReport) -> None:
        batch = pending[:DAMAGE_MAX_REPORTS]
        del pending[:DAMAGE_MAX_REPORTS]
        for outcome in self.vault.report_damage(batch).outcomes:
            report.outcomes.append(outcome)
            self.progress(f"reported chunk {outcome.chunk_id} ({outcome.region}): {outcome.outcome}: "
                          f"{outcome.detail}")

    def _problem(self, report: CheckReport, problem: ChunkProblem) -> None:
        report.problems.append(problem)
        self.found(problem.describe(), problem)

    def _point_problem(self, report: CheckReport, text: str) -> None:
        report.point_problems.append(text)
        self.found(text, None)

    def _unchecked(self, report: CheckReport, text: str) -> None:
        if text not in report.unchecked:
            report.unchecked.append(text)
            self.progress(f"not checked: {text}")
