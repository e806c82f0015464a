"""Restore: ask the service for a restore job (a plan and a read-only SAS), read the
encrypted manifest, then rebuild the tree, authenticating every chunk.

Chunks are downloaded and decrypted ahead of the writer by a thread pool, in
the order the manifest needs them. Chunks of zeros (the free space of disk
images) become holes: the restored file is sparse, and reads the same. Each
file is written to a temporary name and renamed into place only when all its
bytes authenticated; a file whose chunk fails is named in the error and never
left with wrong bytes.
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import tempfile
import threading
import time
import uuid

import zstandard
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from shared import crypto, formats
from shared.domain import JobStatus, chunk_blob_name
from shared.messages import (DAMAGE_MAX_REPORTS, MAX_TEXT, DamageOutcome, DamageReport, MalformedMessage,
                             ManifestEntry, ManifestRoot, RegionAccess)
from shared.ports import BlobContainer, BlobNotFound, StorageError, TransientError
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
    bytes_written: int = 0
    chunks_downloaded: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    # Copies that failed authentication: (blob, region, why, MD5 of the bytes read), and what
    # the service said it did about each once reported.
    bad_copies: list[tuple[str, str, str, str]] = field(default_factory=list)
    damage_outcomes: list[DamageOutcome] = field(default_factory=list)


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
    def __init__(self, vault: AgentVault, progress: Callable[[str], None] = lambda _: None):
        if vault.keys is None:
            raise AgentError("restore needs the vault keys: give the passphrase")
        self.vault, self.keys, self.progress = vault, vault.keys, progress

    def _job(self, point_id: str, source: str) -> tuple[Access, str]:
        """A new restore job of the point (over HTTP: it needs no queue, so it works while the
        primary region's storage is down): what it grants, and the manifest blob it names."""
        job = self.vault.start_restore(uuid.uuid4().hex, point_id)
        if job.status != JobStatus.READY or job.plan is None:
            raise RestoreFailed(f"restore of {point_id} refused: {job.reason}")
        regions = self._regions(job.plan.regions, point_id, source)
        chosen = {r for r, _ in regions}
        spares = [(r.region, self.vault.read_container(r.container_url)) for r in job.plan.regions
                  if r.region not in chosen and source == "auto"]
        return Access(regions, spares, datetime.fromisoformat(job.plan.expires_at)), job.plan.manifest_blob

    def open_point(self, point_id: str, source: str = "auto") -> tuple["RegionReader", ManifestRoot]:
        """Create a restore job and read the point's manifest root through its read-only SAS."""
        if not formats.POINT_ID.match(point_id):
            raise AgentError(f"{point_id!r} is not a recovery point id (see `skyvault points`)")
        access, name = self._job(point_id, source)
        reader = RegionReader(access, self.progress, renew=lambda: self._job(point_id, source)[0],
                              clock=self.vault.clock)
        try:
            envelope = reader.read(name)
        except BlobNotFound:
            raise RestoreFailed(f"the manifest of {point_id} is missing from the vault") from None
        try:
            root = ManifestRoot.from_doc(json.loads(crypto.unframe(crypto.open_envelope(
                self.keys.manifest_key, self.vault.vault_id, name, envelope))))
        except crypto.WrongKeyOrTampered:
            raise RestoreFailed(f"cannot open the manifest of {point_id}: wrong passphrase, or the manifest "
                                f"was tampered with") from None
        except (ValueError, MalformedMessage) as e:
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

    def spool_manifest(self, reader: "RegionReader", root: ManifestRoot, spool) -> None:
        fetch = self._fetcher(reader)
        for cid in root.manifest_chunks:
            spool.write(fetch(cid)[0])

    def run(self, point_id: str, target: str, include: list[str] | None = None,
            source: str = "auto") -> RestoreReport:
        started = time.monotonic()
        report = RestoreReport(point_id=point_id)
        reader, root = self.open_point(point_id, source)
        target_dir = Path(target)
        if target_dir.exists() and not target_dir.is_dir():
            raise AgentError(f"restore target {target} exists and is not a directory")
        target_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix="skyvault-manifest-") as spool:
            self.spool_manifest(reader, root, spool)
            spool.flush()

            def entries() -> Iterator[ManifestEntry]:
                # Its own file handle: the prefetcher and the writer read the manifest at their own pace.
                with open(spool.name, "rb") as lines:
                    for line in lines:
                        try:
                            entry = ManifestEntry.from_doc(formats.parse_manifest_line(line))
                        except (ValueError, MalformedMessage) as e:
                            raise RestoreFailed(f"the manifest of {point_id} holds a bad entry: {e}") from None
                        if _selected(entry.path, include):
                            yield entry

            if include and next(entries(), None) is None:
                raise AgentError(f"nothing in {point_id} matches {', '.join(include)}")
            with ThreadPoolExecutor(DOWNLOAD_WORKERS, thread_name_prefix="download") as pool:
                chunks = _Prefetcher(_needed_chunks(entries()), self._fetcher(reader), pool)
                dirs = self._write_tree(target_dir, entries(), chunks, report)
                report.chunks_downloaded = chunks.fetched
        for dest, entry in reversed(dirs):  # after their contents, which change a directory's mtime
            os.chmod(dest, entry.mode)
            os.utime(dest, ns=(entry.mtime, entry.mtime))
        report.seconds = time.monotonic() - started
        report.regions = reader.used
        report.bad_copies = reader.bad_copies
        self._report_bad_copies(report)
        if report.errors:
            raise RestoreFailed(f"{len(report.errors)} files could not be restored:\n  " + "\n  ".join(report.errors))
        return report

    def _write_tree(self, target_dir: Path, entries: Iterator[ManifestEntry], chunks: "_Prefetcher",
                    report: RestoreReport) -> list[tuple[Path, ManifestEntry]]:
        dirs: list[tuple[Path, ManifestEntry]] = []
        for entry in entries:
            dest = _safe_join(target_dir, entry.path)
            kind = entry.type
            if kind == "dir":
                dest.mkdir(parents=True, exist_ok=True)
                dirs.append((dest, entry))
                report.dirs += 1
            elif kind == "symlink":
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.is_symlink() or dest.exists():
                    dest.unlink()
                os.symlink(entry.target, dest)
                os.utime(dest, ns=(entry.mtime, entry.mtime), follow_symlinks=False)
                report.symlinks += 1
            elif kind == "file":
                try:
                    report.bytes_written += self._write_file(dest, entry, chunks)
                    report.files += 1
                except RestoreFailed as e:
                    report.errors.append(f"{entry.path}: {e}")
                    self.progress(f"error: {entry.path}: {e}")
        return dirs

    def _write_file(self, dest: Path, entry: ManifestEntry, chunks: "_Prefetcher") -> int:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".skyvault-", dir=dest.parent)
        written = 0
        failure: RestoreFailed | None = None
        try:
            with os.fdopen(fd, "wb") as out:
                # Every extent is taken from the prefetcher, even after a failure, to keep it in step.
                for cid, offset, length in entry.extents:
                    try:
                        data, zeros = chunks.get(cid)
                    except RestoreFailed as e:
                        failure = failure or e
                        continue
                    if zeros:
                        out.seek(length, os.SEEK_CUR)  # a hole: the file is new, so it reads as zeros
                    else:
                        out.write(memoryview(data)[offset:offset + length])
                    written += length
                out.truncate()  # a file that ends in a hole gets its full size
            if failure:
                raise failure
            if written != entry.size:
                raise RestoreFailed(f"manifest extents give {written} bytes, the file had {entry.size}")
            os.chmod(tmp, entry.mode)
            os.utime(tmp, ns=(entry.mtime, entry.mtime))
            os.replace(tmp, dest)
        except BaseException:
            os.unlink(tmp)
            raise
        return written


def _selected(path: str, include: list[str] | None) -> bool:
    """An entry is restored if it or one of its parent directories matches, or it leads to a match."""
    if not include:
        return True
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in include:
        pattern = pattern.strip("/")
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            return True
        if pattern.startswith(path + "/"):
            return True
    return False


def _safe_join(target: Path, rel: str) -> Path:
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise RestoreFailed(f"manifest path {rel!r} would escape the restore target")
    return target.joinpath(*parts)
