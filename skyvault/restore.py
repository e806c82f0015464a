"""Restore: ask the service for a restore job (a plan and a read-only SAS), read the
encrypted manifest, then rebuild the tree, authenticating every chunk.

The manifest is checked whole before anything is written: its entries must come in walk
order (WalkOrder). Chunks are downloaded and decrypted ahead of the writer by a thread pool,
in the order the manifest needs them. Chunks of zeros (the free space of disk images) become
holes: the restored file is sparse, and reads the same. Each file is written to a temporary
name and renamed into place only when all its bytes authenticated and every extent lay inside
its chunk; a file that fails is named and never left with wrong bytes, and the others are
restored (PartialRestore). The writes themselves, which follow no link, are
skyvault.restore_tree's.

Words:
- Selection: the entries `--include` selects (all, without it) and `--exclude` does not
  leave out; a pattern matches a path or one of its directories (fnmatch), so excluding a
  directory leaves out everything below it.
- Plan: what a restore writes of a checked manifest (RestorePlan): the selection, and for
  each selected hard link the inode it links to: its first path, restored along with it when
  only outside `--include`; when `--exclude` leaves that path out, the first selected link
  stands in for it (its content and metadata, under the link's path) and the later ones link
  to the stand-in, as restic's restorer does. Its totals (files and bytes to write) drive
  the meter.
- Meter: what the restore tells as it goes, of those totals (skyvault.meter; the CLI's
  progress bar is one).
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import marshal
import operator
import os
import struct
import tempfile
import threading
import time
import uuid

import zstandard
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from typing import IO, Any, BinaryIO, Callable, Iterator

from shared import crypto, formats, jsonfields
from shared.domain import JobStatus, chunk_blob_name
from shared.messages import (DAMAGE_MAX_REPORTS, MAX_TEXT, DamageOutcome, DamageReport, MalformedMessage,
                             ManifestEntry, ManifestRoot, RegionAccess)
from shared.ports import BlobContainer, BlobNotFound, StorageError, TransientError
from skyvault import exitcodes, restore_tree
from skyvault.cache import path_key
from skyvault.meter import Meter, Unmetered
from skyvault.vaultclient import AgentError, AgentVault

DOWNLOAD_WORKERS = 4
PREFETCH = 8
RECENT_CHUNKS = 8
# A restore job's read SAS lasts an hour (shared/service/restore.py); a longer restore asks for
# a new job this long before it expires.
SAS_RENEW_BEFORE = timedelta(minutes=10)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class RestoreFailed(AgentError):
    pass


@dataclass
class RestoreReport:
    point_id: str
    regions: list[str] = field(default_factory=list)  # the regions that served it, in order
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    specials: int = 0  # FIFOs and device nodes
    bytes_written: int = 0
    chunks_downloaded: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # "path: reason" of each entry not restored
    warnings: list[str] = field(default_factory=list)
    # Copies that failed authentication: (blob, region, why, MD5 of the bytes read), and what
    # the service said it did about each once reported.
    bad_copies: list[tuple[str, str, str, str]] = field(default_factory=list)
    damage_outcomes: list[DamageOutcome] = field(default_factory=list)


class PartialRestore(RestoreFailed):
    """The restore wrote what it could; the entries it could not are listed (and in `report`)."""

    exit_code = exitcodes.PARTIAL

    def __init__(self, report: RestoreReport):
        super().__init__(f"{len(report.errors)} entries could not be restored:\n  " + "\n  ".join(report.errors))
        self.report = report


class _Prefetcher:
    """Downloads and decrypts chunks in the order given, at most PREFETCH ahead of the writer."""

    def __init__(self, ids: Iterator[str], fetch: Callable[[str], tuple[bytes, bool]],
                 pool: ThreadPoolExecutor):
        self._ids, self._fetch, self._pool = ids, fetch, pool
        self._ahead: deque[tuple[str, Future]] = deque()
        self._last: tuple[str | None, Future | None] = (None, None)
        self._recent: OrderedDict[str, Future] = OrderedDict()
        # Chunks of zeros become holes and need no bytes: once one is authenticated, its later
        # occurrences (a disk image's free space, far apart) are not fetched again.
        self._zeros: dict[str, Future] = {}
        self.fetched = 0
        self._fill()

    def _fill(self) -> None:
        while len(self._ahead) < PREFETCH:
            cid = next(self._ids, None)
            if cid is None:
                return
            # Chunks that recur close together (duplicate files) are fetched once.
            future = self._zeros.get(cid) or self._recent.pop(cid, None)
            if future is None:
                future = self._pool.submit(self._fetch, cid)
                future.add_done_callback(lambda f, cid=cid: self._note_zeros(cid, f))
            self._recent[cid] = future
            if len(self._recent) > RECENT_CHUNKS:
                self._recent.popitem(last=False)
            self._ahead.append((cid, future))

    def _note_zeros(self, cid: str, future: Future) -> None:
        if not future.cancelled() and future.exception() is None and future.result()[1]:
            done: Future = Future()
            done.set_result((b"", True))
            self._zeros[cid] = done

    def get(self, cid: str) -> tuple[bytes, bool]:
        """The next chunk the writer needs (the same one again for consecutive extents), and
        whether it is all zeros."""
        if self._last[0] != cid:
            queued, future = self._ahead.popleft()
            self._fill()
            if queued != cid:
                raise RuntimeError(f"internal error: restore wanted chunk {cid}, the prefetcher had {queued}")
            self._last = (cid, future)
            self.fetched += 1
        # The same future answers consecutive extents, and re-raises its failure for each of them.
        return self._last[1].result()


class BadCopy(Exception):
    """A blob a region served is not what it should be (it fails authentication)."""


@dataclass(frozen=True)
class Access:
    """What a restore job grants: the regions to read, in order, each with its container through
    the job's read-only SAS, the spare regions that may hold good copies of single chunks, and
    when the SAS expires."""

    regions: list[tuple[str, BlobContainer]]
    spares: list[tuple[str, BlobContainer]]
    expires_at: datetime


class RegionReader:
    """Reads a vault's blobs from the first region that answers. When a region stops answering
    (not: answers "not found"), it moves on to the next for good and says so. A blob whose copy
    fails its check is read from the other regions (the spares too), and the bad copy noted in
    `bad_copies`. The job's SAS is renewed (`renew`: a new restore job) before it expires, and
    once more if a region refuses it."""

    def __init__(self, access: Access, progress: Callable[[str], None],
                 renew: Callable[[], Access] | None = None, clock: Callable[[], datetime] = _utcnow):
        if not access.regions:
            raise AgentError("no region holds all of this recovery point's blobs")
        self._access, self._progress, self._renew, self._clock = access, progress, renew, clock
        self._current = 0
        self._lock = threading.Lock()
        self.used: list[str] = []
        self.bad_copies: list[tuple[str, str, str, str]] = []  # (blob, region, why, MD5 of the bytes read)

    @property
    def _regions(self) -> list[tuple[str, BlobContainer]]:
        return self._access.regions

    def _fresh(self) -> Access:
        with self._lock:
            if self._renew is not None and self._access.expires_at - self._clock() < SAS_RENEW_BEFORE:
                self._renew_access()
            return self._access

    def _renew_access(self) -> None:
        access = self._renew()
        if [r for r, _ in access.regions] != [r for r, _ in self._access.regions]:
            raise RestoreFailed("the renewed restore job offers other regions than the first one")
        self._access = access

    def _read_from(self, index: int, name: str) -> bytes:
        container = self._fresh().regions[index][1]
        try:
            return container.read(name)
        except PermissionError:
            if self._renew is None:
                raise
            with self._lock:  # e.g. a clock running behind: the storage service says it expired
                if self._access.regions[index][1] is container:
                    self._renew_access()
            return self._fresh().regions[index][1].read(name)

    def size(self, name: str) -> int:
        """The blob's size, from its properties (nothing downloaded), in the region reads come from."""
        return self._fresh().regions[self._current][1].properties(name).size

    def read(self, name: str, check: Callable[[bytes], Any] | None = None) -> Any:
        """The blob's bytes (or what `check` makes of them; `check` raises BadCopy for a bad copy)."""
        index = self._current
        while True:
            region = self._regions[index][0]
            try:
                data = self._read_from(index, name)
            except TransientError as e:
                index = self._fail_over(index, e)
                continue
            self._used(region)
            if check is None:
                return data
            try:
                return check(data)
            except BadCopy as e:
                self._bad(name, region, str(e), data)
                return self._other_copy(name, region, str(e), check)

    def _bad(self, name: str, region: str, why: str, data: bytes) -> None:
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        with self._lock:
            self.bad_copies.append((name, region, why, md5))

    def _used(self, region: str) -> None:
        with self._lock:
            if region not in self.used:
                self.used.append(region)

    def _other_copy(self, name: str, bad_region: str, why: str, check: Callable[[bytes], Any]) -> Any:
        access = self._fresh()
        for region, container in [*access.regions, *access.spares]:
            if region == bad_region:
                continue
            try:
                data = container.read(name)
                result = check(data)
            except BadCopy as e:
                self._bad(name, region, str(e), data)
                continue
            except (StorageError, PermissionError):
                continue
            self._progress(f"{name}: the {bad_region} region's copy is bad ({why}); read the {region} region's")
            self._used(region)
            return result
        raise BadCopy(why)

    def _fail_over(self, failed: int, error: Exception) -> int:
        with self._lock:
            if self._current == failed:
                region = self._regions[failed][0]
                if failed + 1 >= len(self._regions):
                    raise RestoreFailed(f"the {region} region does not answer and no other region holds "
                                        f"this recovery point: {error}")
                self._current = failed + 1
                self._progress(f"the {region} region does not answer ({error}); "
                               f"reading from the {self._regions[self._current][0]} region")
            return self._current


def _needed_chunks(entries: Iterator[ManifestEntry]) -> Iterator[str]:
    """Chunk ids in the order the files need them, consecutive repeats collapsed."""
    last = None
    for entry in entries:
        for cid, _offset, _length in entry.extents:
            if cid != last:
                yield cid
                last = cid


class Restore:
    def __init__(self, vault: AgentVault, progress: Callable[[str], None] = lambda _: None,
                 owners: bool | None = None, detail: Callable[[str], None] = lambda _: None,
                 meter: Meter | None = None):
        """`owners`: restore ownership (and so setuid bits and devices); by default when running as root.
        `progress` gets notes and warnings, `detail` a line for each entry restored, `meter` the
        files and bytes written."""
        if vault.keys is None:
            raise AgentError("restore needs the vault keys: give the passphrase")
        self.vault, self.keys, self.progress, self.detail = vault, vault.keys, progress, detail
        self.meter = meter or Unmetered()
        self.owners = os.geteuid() == 0 if owners is None else owners

    def _job(self, point_id: str, source: str, purpose: str = "restore") -> tuple[Access, str]:
        """A new restore job of the point (over HTTP: it needs no queue, so it works while the
        primary region's storage is down): what it grants, and the manifest blob it names.
        `purpose` "inspect": a look inside the point (skyvault.inspect), not metered as a restore."""
        job = self.vault.start_restore(uuid.uuid4().hex, point_id, purpose)
        if job.status != JobStatus.READY or job.plan is None:
            raise RestoreFailed(f"restore of {point_id} refused: {job.reason}")
        regions = self._regions(job.plan.regions, point_id, source)
        chosen = {r for r, _ in regions}
        spares = [(r.region, self.vault.read_container(r.container_url)) for r in job.plan.regions
                  if r.region not in chosen and source == "auto"]
        return Access(regions, spares, datetime.fromisoformat(job.plan.expires_at)), job.plan.manifest_blob

    def open_point(self, point_id: str, source: str = "auto",
                   purpose: str = "restore") -> tuple["RegionReader", ManifestRoot]:
        """Create a restore job and read the point's manifest root through its read-only SAS."""
        if not formats.POINT_ID.match(point_id):
            raise AgentError(f"{point_id!r} is not a recovery point id (see `skyvault points`)")
        access, name = self._job(point_id, source, purpose)
        reader = RegionReader(access, self.progress, renew=lambda: self._job(point_id, source, purpose)[0],
                              clock=self.vault.clock)
        try:
            envelope = reader.read(name)
        except BlobNotFound:
            raise RestoreFailed(f"the manifest of {point_id} is missing from the vault") from None
        try:
            root = ManifestRoot.from_doc(jsonfields.loads(crypto.unframe(crypto.open_envelope(
                self.keys.manifest_key, self.vault.vault_id, name, envelope))))
        except crypto.WrongKeyOrTampered:
            raise RestoreFailed(f"cannot open the manifest of {point_id}: wrong passphrase, or the manifest "
                                f"was tampered with") from None
        except (ValueError, MalformedMessage, crypto.BadEnvelope) as e:
            raise RestoreFailed(f"the manifest of {point_id} is not one this agent can read: {e}") from None
        if (root.vault_id, root.point_id) != (self.vault.vault_id, point_id):
            # The envelope authenticates the blob name the service chose, not the point asked for.
            raise RestoreFailed(f"the service offered the manifest of point {root.point_id} of vault "
                                f"{root.vault_id} for point {point_id}: refused")
        return reader, root

    def _regions(self, offered: tuple[RegionAccess, ...], point_id: str,
                 source: str) -> list[tuple[str, BlobContainer]]:
        by_name = {r.region: r for r in offered}
        if source == "auto":
            chosen = [r for r in offered if r.complete]
        elif source not in by_name:
            raise AgentError(f"this vault has no {source} region (its redundancy is not GRS)")
        elif not by_name[source].complete:
            raise AgentError(f"recovery point {point_id} is not geo-protected yet: the {source} region does not "
                             f"hold all its blobs (see `skyvault status` for the replication lag)")
        else:
            chosen = [by_name[source]]
        return [(r.region, self.vault.read_container(r.container_url)) for r in chosen]

    def _fetcher(self, reader: "RegionReader") -> Callable[[str], tuple[bytes, bool]]:
        """Downloads and authenticates a chunk (from another region if the first copy fails);
        gives its plaintext and whether it is all zeros."""
        def fetch(cid: str) -> tuple[bytes, bool]:
            def authentic(envelope: bytes) -> bytes:
                try:
                    return crypto.decrypt_chunk(self.keys, self.vault.vault_id, cid, envelope)
                except (crypto.CryptoError, zstandard.ZstdError) as e:
                    raise BadCopy(str(e)) from None

            try:
                plaintext = reader.read(chunk_blob_name(cid), authentic)
            except BlobNotFound:
                raise RestoreFailed(f"chunk {cid} is missing from the vault") from None
            except (StorageError, PermissionError) as e:
                raise RestoreFailed(f"chunk {cid} could not be downloaded: {e}") from None
            except BadCopy as e:
                raise RestoreFailed(f"chunk {cid} failed authentication: {e}") from None
            # bytes(n) is calloc'd zero pages and the comparison stops at the first difference.
            return plaintext, plaintext == bytes(len(plaintext))
        return fetch

    def _report_bad_copies(self, report: RestoreReport) -> None:
        """Tell the service of the chunk copies that failed authentication (signed): it heals them
        from a good copy or marks the chunk damaged, so the next backup stores it again. A
        report that does not get through is said, and changes nothing of the restore."""
        reports = [DamageReport(name.rsplit("/", 1)[1], region, f"failed authentication on restore: {why}"[:MAX_TEXT],
                                md5) for name, region, why, md5 in report.bad_copies if name.startswith("chunks/")]
        for start in range(0, len(reports), DAMAGE_MAX_REPORTS):
            try:
                answer = self.vault.report_damage(reports[start:start + DAMAGE_MAX_REPORTS])
            except AgentError as e:
                self.progress(f"warning: could not report {len(reports) - start} bad copies to the service: {e}")
                return
            for outcome in answer.outcomes:
                report.damage_outcomes.append(outcome)
                self.progress(f"reported the {outcome.region} copy of chunk {outcome.chunk_id}: "
                              f"{outcome.outcome} ({outcome.detail})")

    def chunk_plaintext(self, reader: "RegionReader", cid: str) -> bytes:
        """One chunk's plaintext, downloaded and authenticated as a restore reads it (skyvault.inspect)."""
        return self._fetcher(reader)(cid)[0]

    def spool_manifest(self, reader: "RegionReader", root: ManifestRoot, spool) -> None:
        fetch = self._fetcher(reader)
        for cid in root.manifest_chunks:
            spool.write(fetch(cid)[0])

    def run(self, point_id: str, target: str, include: list[str] | None = None,
            source: str = "auto", exclude: list[str] | None = None) -> RestoreReport:
        """Restore the point, or its paths that match `include` and not `exclude`, into `target`.
        Raises PartialRestore, with the report, when some entries could not be restored."""
        started = time.monotonic()
        report = RestoreReport(point_id=point_id)
        reader, root = self.open_point(point_id, source)
        if os.path.exists(target) and not os.path.isdir(target):
            raise AgentError(f"restore target {target} exists and is not a directory")
        with tempfile.NamedTemporaryFile(prefix="skyvault-manifest-") as spool:
            self.spool_manifest(reader, root, spool)
            spool.flush()
            with _SpooledManifest(spool.name, point_id) as manifest:
                plan = manifest.plan(include, exclude)
                for pattern in plan.unmatched_excludes:
                    self.progress(f"--exclude {pattern} matches nothing in {point_id}: it leaves nothing out")
                self.meter.set_totals(files=plan.files, bytes_=plan.bytes)

                def fail(path: str, reason: str) -> None:
                    report.errors.append(f"{path}: {reason}")
                    self.progress(f"error: {path}: {reason}")

                def warn(text: str) -> None:
                    report.warnings.append(text)
                    self.progress(f"warning: {text}")

                with restore_tree.Target(target, owners=self.owners, link_sources=plan.link_sources, warn=warn,
                                         fail=fail) as tree, \
                        ThreadPoolExecutor(DOWNLOAD_WORKERS, thread_name_prefix="download") as pool:
                    prefetcher = _Prefetcher(_needed_chunks(manifest.restored(plan)), self._fetcher(reader), pool)
                    self._write_tree(tree, manifest.restored(plan), _SizedChunks(prefetcher), fail, warn, report)
                    report.chunks_downloaded = prefetcher.fetched
        report.seconds = time.monotonic() - started
        report.regions = reader.used
        report.bad_copies = reader.bad_copies
        self._report_bad_copies(report)
        if report.errors:
            raise PartialRestore(report)
        return report

    def _write_tree(self, tree: restore_tree.Target, entries: Iterator[ManifestEntry], chunks: "_SizedChunks",
                    fail: Callable[[str, str], None], warn: Callable[[str], None], report: RestoreReport) -> None:
        """Each entry on its own: one that cannot be restored is reported and the others go on."""
        for entry in entries:
            kind = entry.type
            self.meter.update(current=entry.path)
            try:
                if kind == "dir":
                    tree.directory(entry)
                    report.dirs += 1
                elif kind == "file":
                    report.bytes_written += self._write_file(tree, entry, chunks)
                    report.files += 1
                    self.meter.update(files=1)
                elif kind == "symlink":
                    tree.symlink(entry)
                    report.symlinks += 1
                elif kind == "hardlink":
                    tree.hard_link(entry)
                    report.hardlinks += 1
                else:
                    tree.special(entry)
                    report.specials += 1
                self.detail(f"restored {entry.path}")
            except restore_tree.NotRestored as e:
                warn(f"{entry.path}: {e}")
            except (AgentError, OSError) as e:
                fail(entry.path, _reason(e))

    def _write_file(self, dest: restore_tree.Target, entry: ManifestEntry, chunks: "_SizedChunks") -> int:
        """Write a file under a temporary name, renamed into place only once every byte authenticated;
        every extent is taken from the prefetcher, even after a failure, to keep it in step."""
        opened = False
        try:
            with dest.new_file(entry) as out:
                opened = True
                return _write_extents(out, entry, chunks, lambda n: self.meter.update(bytes_=n))
        finally:
            if not opened:
                for cid, _offset, _length in entry.extents:
                    try:
                        chunks.get(cid)
                    except RestoreFailed:
                        pass


def _write_extents(out: BinaryIO, entry: ManifestEntry, chunks: "_SizedChunks",
                   wrote: Callable[[int], None]) -> int:
    """The file's bytes, extent by extent; `wrote` is told each extent's length once written."""
    written = 0
    failure: Exception | None = None
    for cid, offset, length in entry.extents:
        try:
            data, zeros, size = chunks.get(cid)
        except RestoreFailed as e:
            failure = failure or e
            continue
        if offset + length > size:
            failure = failure or RestoreFailed(f"extent [{cid}, {offset}, {length}] ends past the end of "
                                               f"its chunk, of {size} bytes")
            continue
        if failure is None:
            try:
                if zeros:
                    out.seek(length, os.SEEK_CUR)  # a hole: the file is new, so it reads as zeros
                else:
                    part = memoryview(data)[offset:offset + length]
                    while part:  # an unbuffered file may take less than all of it
                        part = part[out.write(part):]
            except OSError as e:
                failure = e
            else:
                wrote(length)
        written += length
    if failure:
        raise failure
    out.truncate()  # a file that ends in a hole gets its full size
    if written != entry.size:
        raise RestoreFailed(f"manifest extents give {written} bytes, the file had {entry.size}")
    return written


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


class _SizedChunks:
    """The prefetcher's chunks with their plaintext sizes, against which extents are checked. A
    chunk of zeros comes with its bytes the first time only (a hole needs none), so its size is
    remembered then."""

    def __init__(self, prefetcher: _Prefetcher):
        self._prefetcher = prefetcher
        self._zero_sizes: dict[str, int] = {}

    def get(self, cid: str) -> tuple[bytes, bool, int]:
        data, zeros = self._prefetcher.get(cid)
        if not zeros:
            return data, zeros, len(data)
        if data:
            self._zero_sizes[cid] = len(data)
        return data, zeros, self._zero_sizes.get(cid, 0)


ENTRIES_PER_BATCH = 256


# A checked entry's fields in ManifestEntry's order, for marshal (str, int, bytes, None and
# tuples of them only), taken from the dataclass itself so that a new field is not left out.
_entry_tuple = operator.attrgetter(*(f.name for f in fields(ManifestEntry)))


# Each batch of kept entries is its marshalled bytes after their length: marshal.loads of
# bytes read at once, as marshal.load of a file object reads it one field at a time, through
# a method call each, 30 times slower.
_BATCH_SIZE = struct.Struct("<I")


def _keep(kept: IO[bytes], batch: list[tuple]) -> None:
    data = marshal.dumps(batch)
    kept.write(_BATCH_SIZE.pack(len(data)) + data)


class _SpooledManifest:
    """The point's manifest lines in a local file, read as entries as often as needed. The
    first whole read parses and checks every line, and keeps the entries in a second file,
    marshalled, beside the spool: later reads load them from there, about five times faster than
    parsing again (a restore reads the manifest three times: its plan, its prefetcher, its
    writer). Use it as a context manager: the entries file is removed at its end."""

    def __init__(self, name: str, point_id: str):
        self.name, self.point_id = name, point_id
        self._entries = name + ".entries"
        self._parsed = False  # a whole read has filled the entries file

    def __enter__(self) -> "_SpooledManifest":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            os.unlink(self._entries)
        except FileNotFoundError:
            pass

    def _all(self) -> Iterator[ManifestEntry]:
        # Its own file handle each time: the prefetcher and the writer read at their own pace.
        if self._parsed:
            yield from self._loaded()
            return
        with open(self.name, "rb") as lines, open(self._entries, "wb") as kept:
            batch: list[tuple] = []
            for line in lines:
                try:
                    entry = ManifestEntry.from_doc(formats.parse_manifest_line(line))
                except (ValueError, MalformedMessage) as e:
                    raise RestoreFailed(f"the manifest of {self.point_id} holds a bad entry: {e}") from None
                batch.append(_entry_tuple(entry))
                if len(batch) == ENTRIES_PER_BATCH:
                    _keep(kept, batch)
                    batch = []
                yield entry
            if batch:
                _keep(kept, batch)
        self._parsed = True

    def _loaded(self) -> Iterator[ManifestEntry]:
        with open(self._entries, "rb") as kept:
            while size := kept.read(_BATCH_SIZE.size):
                for values in marshal.loads(kept.read(_BATCH_SIZE.unpack(size)[0])):
                    yield ManifestEntry(*values)

    def check(self, include: list[str] | None) -> set[str]:
        """Refuse a manifest out of walk order, before anything is written; the first paths the
        selected hard links link to, restored with them."""
        return self.plan(include).link_sources

    def plan(self, include: list[str] | None, exclude: list[str] | None = None) -> "RestorePlan":
        """Refuse a manifest out of walk order, before anything is written; what a restore of
        the selection writes, and its totals, in the same pass. The sizes of first paths that
        selected links bring along (or stand in for) are only known once their links are seen:
        a second read of the spool adds them, when there are any."""
        order = WalkOrder(self.point_id)
        plan = RestorePlan(include, exclude)
        unmatched = list(exclude or ())
        matched = kept = False
        wanted: set[str] = set()  # the first paths that selected links need, not selected themselves
        for entry in self._all():
            order.check(entry)
            unmatched = [p for p in unmatched if not _matches(entry.path, [p])]
            direct = not include or _matches(entry.path, include)
            matched = matched or direct
            if not plan.chosen(entry.path):
                continue
            kept = kept or direct
            if entry.type == "file":
                plan.files += 1
                plan.bytes += entry.size
            elif entry.type == "hardlink" and entry.target not in plan.stand_ins:
                if _matches(entry.target, exclude or []):
                    plan.stand_ins[entry.target] = entry.path
                    plan.link_sources.add(entry.path)
                    wanted.add(entry.target)
                else:
                    plan.link_sources.add(entry.target)
                    if not plan.chosen(entry.target):
                        wanted.add(entry.target)
        if include and not matched:
            raise AgentError(f"nothing in {self.point_id} matches {', '.join(include)}")
        if exclude and not kept:
            within = f"of what --include {', '.join(include)} selects " if include else ""
            raise AgentError(f"nothing left to restore: --exclude {', '.join(exclude)} leaves out "
                             f"everything {within}in {self.point_id}")
        plan.unmatched_excludes = unmatched
        if wanted:
            for entry in self._all():
                if entry.path in wanted and entry.type == "file":
                    plan.files += 1
                    plan.bytes += entry.size
        return plan

    def entries(self, selected: Callable[[ManifestEntry], bool]) -> Iterator[ManifestEntry]:
        return (entry for entry in self._all() if selected(entry))

    def restored(self, plan: "RestorePlan") -> Iterator[ManifestEntry]:
        """The entries the plan writes, in walk order: a stand-in as its link's path with its
        first path's content, and the later links of that inode linking to the stand-in."""
        sources: dict[str, ManifestEntry] = {}  # excluded first paths, until their stand-in comes
        for entry in self._all():
            if entry.path in plan.stand_ins:
                sources[entry.path] = entry
            elif entry.type == "hardlink" and entry.target in plan.stand_ins:
                if plan.chosen(entry.path):
                    stand_in = plan.stand_ins[entry.target]
                    if stand_in == entry.path:
                        yield replace(sources.pop(entry.target), path=entry.path)
                    else:
                        yield replace(entry, target=stand_in)
            elif plan.chosen(entry.path) or entry.path in plan.link_sources:
                yield entry


@dataclass
class RestorePlan:
    """What a restore writes of a checked manifest (module docstring, "Plan")."""

    include: list[str] | None
    exclude: list[str] | None
    link_sources: set[str] = field(default_factory=set)  # the paths later hard links link to
    stand_ins: dict[str, str] = field(default_factory=dict)  # excluded first path -> the link standing in
    files: int = 0  # the files it writes (stand-ins and first paths brought along too)
    bytes: int = 0  # and their bytes
    unmatched_excludes: list[str] = field(default_factory=list)

    def chosen(self, path: str) -> bool:
        return _selected(path, self.include) and not _matches(path, self.exclude or [])


class WalkOrder:
    """The order a walk gives a manifest's entries (docs/design.md, "Manifest lines"): each
    path after the one before in walk order (byte order, a directory sorting as its name and
    "/"), each path once, and each entry's directory an earlier entry, but for the backed-up
    roots. The restore's open directories rely on it, and a hard link on its first path
    coming before it. Memory: the directories the walk is in, and the few files a directory
    of the same name could still follow."""

    def __init__(self, point_id: str):
        self.point_id = point_id
        self._last: bytes | None = None
        self._dirs: list[str] = []
        self._files: list[bytes] = []  # keys of the paths whose name a later directory could repeat

    def check(self, entry: ManifestEntry) -> None:
        path, is_dir = entry.path, entry.type == "dir"
        key = path_key(path) + (b"/" if is_dir else b"")
        if self._last is not None and key <= self._last:
            self._refuse(entry, "comes out of walk order, or twice")
        self._last = key
        # Between a file X and a directory X come only paths that start with X (X.txt, X-1/...).
        self._files = [f for f in self._files if key <= f + b"/"]
        if is_dir and key[:-1] in self._files:
            self._refuse(entry, "is both a directory and another entry")
        if not is_dir:
            self._files.append(key)
        while self._dirs and not path.startswith(self._dirs[-1] + "/"):
            self._dirs.pop()
        parent = path.rpartition("/")[0]
        if parent and (not self._dirs or self._dirs[-1] != parent):
            self._refuse(entry, f"comes without its directory {parent[:80]!r} before it")
        if entry.type == "hardlink" and path_key(entry.target) >= path_key(path):
            self._refuse(entry, f"links to {entry.target[:80]!r}, which does not come before it")
        if is_dir:
            self._dirs.append(path)

    def _refuse(self, entry: ManifestEntry, what: str) -> None:
        raise RestoreFailed(f"the manifest of {self.point_id} is refused: its entry {entry.path[:80]!r} {what}")


def _selected(path: str, include: list[str] | None) -> bool:
    """An entry is restored if it or one of its parent directories matches, or it leads to a match."""
    if not include:
        return True
    return _matches(path, include) or any(pattern.strip("/").startswith(path + "/") for pattern in include)


def _matches(path: str, patterns: list[str]) -> bool:
    """Whether the path or one of its parent directories matches one of the glob patterns."""
    if not patterns:
        return False
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(p, pattern.strip("/")) for pattern in patterns for p in prefixes)
