"""The committer: a backup's manifest root and reference list, then its commit.

Write order (docs/design.md, "Write order"): the manifest root and the reference list
once every chunk is uploaded, then the signed `commit` message. A backup that waits
posts it over HTTP with the last chunks' declarations, once the service has handled
its other ingest messages, and waits for the point to be committed or failed; one that
does not wait sends its last declarations and the commit to the queues.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from shared import crypto, formats
from shared.messages import CommitRequest, ManifestRoot, PointView
from shared.ports import BlobContainer
from skyvault.backup.uploader import Uploader
from skyvault.backup.report import SENT
from skyvault.cache import Cache
from skyvault.vaultclient import AgentError, AgentVault

if TYPE_CHECKING:
    from skyvault.backup.report import BackupReport

COMMIT_WAIT_S = 300.0
INGEST_WAIT_S = 60.0


class Committer:
    def __init__(self, vault: AgentVault, container: BlobContainer, cache: Cache, item: str,
                 run_id: str, report: BackupReport, uploader: Uploader, tags: tuple[str, ...] = ()):
        self.vault, self.keys, self.container, self.cache = vault, vault.keys, container, cache
        self.item, self.run_id, self.report, self.uploader = item, run_id, report, uploader
        self.tags = tags  # distinct and sorted (Backup checks them)

    def commit(self, now: datetime, roots: list[Path], manifest_ids: list[str], parent: str,
               wait: bool) -> None:
        """Upload the point's own blobs and commit it; `parent` is the point of the item's last
        backup this cache knows ("" when none), `manifest_ids` the manifest stream's chunks."""
        point_id = self.report.point_id
        self.report.chunks_referenced = self.cache.count_refs(self.run_id)
        root = ManifestRoot(vault_id=self.vault.vault_id, point_id=point_id, item=self.item,
                            created_at=now.isoformat(), sources=tuple(str(r) for r in roots),
                            manifest_chunks=tuple(manifest_ids), stats=self.report.as_stats()).to_doc()
        name = formats.manifest_blob(point_id)
        framed = crypto.frame(json.dumps(root).encode())
        refs = self.uploader.submit(self.container.put, formats.refs_blob(point_id),
                                    formats.encode_refs(self.cache.refs(self.run_id)))
        self.container.put(name, crypto.seal(self.keys.manifest_key, self.vault.vault_id, name, framed))
        refs.result()
        message = {"type": "commit", "pointId": point_id, "item": self.item,
                   "createdAt": now.isoformat(), "chunkCount": self.report.chunks_referenced,
                   "manifestChunks": len(manifest_ids), "stats": self.report.as_stats()}
        if formats.POINT_ID.match(parent):  # not what older agents' caches hold
            message["parentPointId"] = parent
        if self.tags:
            message["tags"] = list(self.tags)
        if not wait:
            self.uploader.send_undeclared()
            self.vault.send("commit", message)
            self.report.messages += 1
            return
        # Over HTTP, with the last chunks declared in the same request, the service verifies them
        # and commits at once, without the latency of queue polls; a point still waiting for
        # chunks is re-checked from the commit queue.
        self._await_ingest()
        declare = {entry["id"]: entry for entry in self.uploader.take_undeclared()}
        chunks = self.vault.sign({"type": "chunks", "chunks": list(declare.values())}) if declare else None
        self._settle(self.vault.commit(CommitRequest(commit=self.vault.sign(message), chunks=chunks)))

    def _await_ingest(self) -> None:
        """Wait (briefly) until the service has handled every ingest message this backup sent, so
        the commit finds every chunk verified at once instead of re-checking later. The last
        batches were never sent: the commit request declares them."""
        waiting = list(dict.fromkeys(self.uploader.message_tails))

        def handled() -> bool:
            while waiting:
                batch = waiting[:formats.LOOKUP_MAX_IDS]
                pending = [cid for cid in batch if cid not in self._handled(batch)]
                waiting[:len(batch)] = pending
                if pending:
                    return False
            return True

        try:
            self.vault.wait_for("the last chunks to be verified", handled, INGEST_WAIT_S)
        except AgentError:
            pass  # the commit waits for them itself

    def _handled(self, ids: list[str]) -> set[str]:
        """Those of `ids` the service has indexed (verified or rejected; a replacement this run
        uploaded only once verified)."""
        answer = self.vault.lookup(ids)
        return {*answer.verified, *(set(answer.rejected) - self.uploader.replaced)}

    def _settle(self, point: PointView) -> None:
        if point.settled:
            self.report.state, self.report.reason = point.state, point.reason

    def wait_for_commit(self) -> None:
        """Wait until the service has committed the point, or failed it (report.state says which)."""
        if self.report.state != SENT:
            return

        def state() -> PointView | None:
            for point in self.vault.points(self.item):
                if point.id == self.report.point_id and point.settled:
                    return point
            return None

        self._settle(self.vault.wait_for(f"recovery point {self.report.point_id} to be committed",
                                         state, COMMIT_WAIT_S))
