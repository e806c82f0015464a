"""Backup: walk → concatenate the files to read → FastCDC → keyed id → skip known →
zstd + AES-256-GCM → create-only upload → signed chunk messages → encrypted
manifest and reference list → commit message.

Files the backup must read are concatenated in walk order into one stream, so
chunks span file boundaries and ten thousand small files make a handful of
blobs; the manifest records each file's extents (chunk id, offset, length).
Files unchanged since the item's last backup (same size, mtime, ctime, inode)
are not read: their extents come from the local cache.

Memory stays bounded: the walk is streamed, the manifest is written to a
temporary file, references are deduplicated in SQLite, and at most
uploader.MAX_INFLIGHT_BATCHES batches of chunks are held for upload at once.

Stages, one module each: walk (the entries), changes (what must be read, and the
stream of it), manifest (the manifest's lines, each file's extents), uploader (the
chunks: look-up, sealing, upload, ingest messages), committer (the point's own
blobs and its commit). Only the uploader and the committer talk to the service.
This module wires them for one run. The walk applies the item's exclusions (exclude); a scan
beside it counts what the backup goes through, for its progress.

A dry run (`run(dry_run=True)`) walks, reads, chunks and seals as a backup does, and writes
nothing anywhere: no run is started at the service, no blob put, no message sent, no point
made; the local cache is read through a read-only view (cache.Cache.open_read_only) and
deduplication counts against what it knows (uploader.DryRunUploader).
"""
from __future__ import annotations

import secrets
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from shared import formats
from shared.domain import PointState
from shared.messages import RUN_HEARTBEAT
from skyvault.backup import walk
from skyvault.backup.changes import Changes, ConcatReader, ContentReuse
from skyvault.backup.committer import Committer
from skyvault.backup.exclude import NO_EXCLUSIONS, Exclusions
from skyvault.backup.manifest import ManifestWriter
from skyvault.backup.report import DRY_RUN, BackupReport
from skyvault.backup.uploader import DryRunUploader, Uploader
from skyvault.cache import Cache
from skyvault.chunker import new_chunker
from skyvault.meter import Meter, Unmetered
from skyvault.vaultclient import AgentError, AgentVault, ApiError


class Heartbeat:
    """Tells the service every RUN_HEARTBEAT that the run goes on, from a thread of its own, so
    that garbage collection keeps what the run may reference (docs/design.md, "Garbage
    collection"). A refusal (the service took the run for dead) is kept, and `check` raises it
    before the commit; a service that does not answer is asked again at the next beat."""

    def __init__(self, vault: AgentVault, run_id: str, every_s: float = RUN_HEARTBEAT.total_seconds()):
        self.vault, self.run_id, self.every_s = vault, run_id, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="skyvault-heartbeat", daemon=True)
        self.refused: str | None = None

    def start(self) -> None:
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.vault.heartbeat(self.run_id)
            except ApiError as e:
                if e.status in (400, 404):
                    self.refused = str(e)
                    return
            except AgentError:
                pass  # the service did not answer: the next beat asks again

    def check(self) -> None:
        if self.refused:
            raise AgentError(f"the service ended this backup run: {self.refused}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def check_tags(tags) -> tuple[str, ...]:
    """The point's tags, distinct and sorted (as the commit message carries them); a bad one is
    refused before anything is read."""
    for tag in tags:
        if not formats.TAG.match(tag):
            raise AgentError(f"tag {tag!r} must be 1-63 letters, digits or ._:=@+- (starting with a letter or digit)")
    found = tuple(sorted(set(tags)))
    if len(found) > formats.MAX_TAGS:
        raise AgentError(f"{len(found)} tags: a recovery point has at most {formats.MAX_TAGS}")
    return found


def new_point_id(now: datetime) -> str:
    return f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


class Backup:
    """One backup of an item: `progress` hears its notes and warnings, `meter` what it goes
    through (files, bytes, the file being read), `detail` a line for each file read."""

    def __init__(self, vault: AgentVault, cache: Cache, item: str,
                 progress: Callable[[str], None] = lambda _: None, exclusions: Exclusions = NO_EXCLUSIONS,
                 meter: Meter = Unmetered(), tags: tuple[str, ...] = (),
                 detail: Callable[[str], None] = lambda _: None):
        if vault.keys is None:
            raise AgentError("backup needs the vault keys: register and give the passphrase")
        if not formats.NAME_ID.match(item):
            raise AgentError(f"item name {item!r} must be 1-63 letters, digits, '.', '_' or '-'")
        self.tags = check_tags(tags)
        self.vault, self.cache, self.item = vault, cache, item
        self.progress, self.exclusions, self.meter, self.detail = progress, exclusions, meter, detail
        # One container, so the chunks and the point's own blobs share its connections.
        self.container = vault.container
        self.report: BackupReport | None = None
        # This backup's run in the local cache: its recovery point's id (a dry run's would-be one).
        self.run_id = ""

    def warn(self, text: str) -> None:
        self.report.warnings.append(text)
        self.progress(f"warning: {text}")

    def run(self, paths: list[str], wait: bool = True, dry_run: bool = False) -> BackupReport:
        if dry_run:
            return self._dry_run(paths)
        started = time.monotonic()
        now = self.vault.clock()
        report = self.report = BackupReport(point_id=new_point_id(now), item=self.item, tags=self.tags)
        self.run_id = report.point_id
        vault_id, run_id = self.vault.vault_id, self.run_id
        # The point the item's last backup made (if this cache saw it): the service checks only
        # the chunks this point adds to it.
        parent = self.cache.last_run(vault_id, self.item)
        run = self.vault.start_run(run_id, self.item, parent or None)
        if self.cache.check_epoch(vault_id, run.chunk_epoch):
            self.progress("the vault found damaged chunks since this machine's last backup: "
                          "every file is read again, and what the vault lacks uploaded again")
            parent = ""
        self.cache.check_gc_epoch(vault_id, run.gc_epoch)
        if parent and not run.parent_live:
            self.progress(f"this item's last point {parent} was deleted: every file is read again")
            self.cache.forget_files(vault_id, self.item)
            parent = ""
        heartbeat = Heartbeat(self.vault, run_id)
        roots = walk.roots(paths)
        uploader = Uploader(self.vault, self.container, self.cache, run_id, report)
        committer = Committer(self.vault, self.container, self.cache, self.item, run_id, report, uploader,
                              self.tags)
        try:
            heartbeat.start()
            manifest_ids = self._store_tree(self.cache, roots, uploader)
            heartbeat.check()
            committer.commit(now, roots, manifest_ids, parent, wait)
        except BaseException:
            self.cache.drop_run(vault_id, self.item, run_id)
            raise
        finally:
            heartbeat.stop()
            uploader.close()
            self.cache.drop_refs(run_id)
        # The file cache moves to this backup only once its point stands: after a failed point
        # the next backup reads the files again instead of reusing its chunks.
        try:
            if wait:
                committer.wait_for_commit()
        finally:
            if wait and report.state != PointState.COMMITTED:
                self.cache.drop_run(vault_id, self.item, run_id)
            else:
                self.cache.make_current(vault_id, self.item, run_id, committed=report.state == PointState.COMMITTED)
        report.seconds = time.monotonic() - started
        return report

    def _store_tree(self, cache: Cache, roots: list[Path], uploader: Uploader) -> list[str]:
        """Walk, read and chunk the tree, then its manifest, through `uploader`; the manifest
        stream's chunk ids."""
        vault_id, seed, report = self.vault.vault_id, self.vault.keys.chunker_seed, self.report
        # The totals only for a meter someone sees: the scan is a second walk of the tree.
        scan = walk.Scan(roots, self.exclusions, self._totals) if self.meter.shown else None
        if scan is not None:
            scan.start()
        try:
            with tempfile.TemporaryFile(prefix="skyvault-manifest-") as file:
                manifest = ManifestWriter(file, cache, vault_id, self.item, self.run_id, report)
                changes = Changes(walk.Walk(report, self.warn, self.exclusions), manifest, cache, vault_id,
                                  self.item, self.run_id, report, self.meter)
                reuse = ContentReuse(cache, self.vault.keys, vault_id, self.item, self.run_id, report)
                reader = ConcatReader(changes.files_to_read(roots), manifest, report, self.warn, self.meter,
                                      reuse, self.detail)
                uploader.chunk_stream(new_chunker(seed).cut_stream(reader), manifest.data_chunk)
                manifest.end_of_data()
                uploader.drain()
                lines = manifest.finish()
                manifest_ids: list[str] = []
                uploader.chunk_stream(new_chunker(seed).cut_stream(lines), lambda cid, _o, _l: manifest_ids.append(cid))
                uploader.drain()
        finally:
            if scan is not None:
                scan.stop()
        return manifest_ids

    def _totals(self, files: int, bytes_: int) -> None:
        self.meter.set_totals(files=files, bytes_=bytes_)

    def _dry_run(self, paths: list[str]) -> BackupReport:
        """What a backup of `paths` would read and upload, with nothing written anywhere (see
        the module's docstring)."""
        started = time.monotonic()
        report = self.report = BackupReport(point_id=None, item=self.item, state=DRY_RUN, dry_run=True,
                                            tags=self.tags)
        self.run_id = new_point_id(self.vault.clock())
        roots = walk.roots(paths)
        cache = self.cache if self.cache.read_only else Cache.open_read_only(self.cache.path)
        uploader = DryRunUploader(self.vault, self.container, cache, self.run_id, report)
        try:
            self._store_tree(cache, roots, uploader)
            report.chunks_referenced = cache.count_refs(self.run_id)
        finally:
            uploader.close()
            cache.drop_run(self.vault.vault_id, self.item, self.run_id)
            cache.drop_refs(self.run_id)
            if cache is not self.cache:
                cache.close()
        report.seconds = time.monotonic() - started
        return report
