"""The real agent on the in-process service with two regions (fakes) and one injected clock:
for the retention, deletion and garbage-collection tests, which need backups made, replicated,
aged and restored."""
from __future__ import annotations

import base64
import random
import re
import time
from unittest import mock

import pytest

from functions import meter, replicate
from shared import crypto, formats
from shared.domain import container_name
from shared.service import delivery, gc, vaults
from shared.service.context import REPLICATE_QUEUE, USAGE_QUEUE, Services
from skyvault.backup import Backup, committer
from skyvault.cache import Cache
from skyvault.restore import Restore
from skyvault.treedigest import differences, tree_digest
from tests.inprocess import InProcessVault, new_vault
from tests.unit.pipeline import Clock, memory_services

PASSPHRASE = "gc test passphrase"
DAY = 86400


class World:
    """A GRS vault, its agent and cache, on one clock."""

    def __init__(self, name: str, tmp_path):
        self.clock = Clock()
        self.services = memory_services(self.clock, re.sub(r"[^a-z0-9]+", "-", name.lower()))
        # One salt for every world: the chunker seed comes from it, and the fault walks count the
        # effects of a fixed number of chunks.
        with mock.patch.object(crypto, "new_salt", lambda: b"agentworld salt."):
            ticket = new_vault(self.services, "contoso", "gc", "GRS")
        self.agent = InProcessVault(ticket, self.services, PASSPHRASE)
        self.cache = Cache(tmp_path / "cache.sqlite")
        self.tmp = tmp_path

    @property
    def vault(self):
        return vaults.vault_for(self.services, self.agent.tenant_id, self.agent.vault_id)

    def tree(self, name: str, files: int = 2, size: int = 400_000):
        root = self.tmp / name
        root.mkdir()
        for i in range(files):  # the same bytes every run: the fault walk's steps are the same
            (root / f"f{i}.bin").write_bytes(random.Random(f"{name}-{i}").randbytes(size))
        return root

    def backup(self, item: str, root) -> str:
        report = Backup(self.agent, self.cache, item).run([str(root)])
        assert report.state == "committed", report
        self.replicate()
        return report.point_id

    def replicate(self) -> None:
        self.deliver(REPLICATE_QUEUE, replicate.handle)

    def deliver(self, name: str, handle) -> list[str]:
        """Run every message of queue `name` through `handle` until it is empty; the outcomes."""
        queue, outcomes = self.services.queue(name), []
        while messages := queue.receive(32, 60):
            for message in messages:
                outcomes.append(delivery.deliver(self.services, name, base64.b64decode(message.body),
                                                 lambda text: handle(self.services, text)))
                queue.delete(message)
        return outcomes

    def meter(self) -> list[str]:
        return self.deliver(USAGE_QUEUE, meter.handle)

    def restores(self, point: str, root, expected=None) -> bool:
        """Whether `point` restores `root` byte-identical: as it is now, or as `expected`, the
        tree digest it had when the point was made."""
        target = self.tmp / f"restore-{point}-{time.monotonic_ns()}"
        Restore(self.agent).run(point, str(target))
        return differences(expected or tree_digest(root), tree_digest(target / root.name)) == []

    def chunk_blobs(self) -> dict[str, set[str]]:
        name = container_name(self.agent.vault_id)
        return {region: {b for b in account.container(name).list("chunks/") if "." not in b.rsplit("/", 1)[-1]}
                for region, account in self.services.regions().items()}

    def refs(self, point: str) -> set[str]:
        container = self.services.primary.container(container_name(self.agent.vault_id))
        return set(formats.decode_refs(container.read(formats.refs_blob(point))))

    def advance_days(self, days: float) -> None:
        self.clock.advance(days * DAY)

    def collect(self, services: Services | None = None) -> gc.GcReport:
        return gc.collect(services or self.services, self.vault)

    def usage(self, kind: str) -> list:
        """The vault's metered events of `kind`, once the usage queue is delivered."""
        self.meter()
        return [e for e in self.services.index.list_usage_events(self.agent.vault_id) if e.kind == kind]


@pytest.fixture
def world(request, tmp_path, monkeypatch):
    # In process a commit is done when answered: one still pending after seconds never will be
    # (a chunk it needs was collected), and should fail the test rather than wait five minutes.
    monkeypatch.setattr(committer, "COMMIT_WAIT_S", 5.0)
    w = World(f"gc-{request.node.name}", tmp_path)
    yield w
    w.cache.close()
