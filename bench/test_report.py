"""Parts of the benchmark's report that need no run (bench.run)."""
from __future__ import annotations

import json
from types import SimpleNamespace

from bench import run
from skyvault.stack import emulators


def test_the_report_says_which_stack_it_used():
    azurite = json.loads((emulators.node_modules() / "azurite" / "package.json").read_text())["version"]
    queues = json.loads((run.REPO / "host.json").read_text())["extensions"]["queues"]
    described = run.stack_description()
    assert f"Azurite {azurite} with its metadata in memory" in described
    assert f"batchSize {queues['batchSize']} and newBatchThreshold {queues['newBatchThreshold']}" in described


def test_the_cosmos_writes_are_listed_by_kind_most_first_over_every_backup():
    def backup(**counts):
        service = {"cosmos.write": sum(counts.values()), **{f"cosmos.write.{k}": v for k, v in counts.items()}}
        return SimpleNamespace(backup=SimpleNamespace(details={"service": service}))

    steps = [backup(add_chunk=30, add_nonce=4), backup(add_nonce=3, replace_point=2, create_job=0)]
    assert run._writes_by_kind(steps) == " (add_chunk 30, add_nonce 7, replace_point 2)"
    assert run._writes_by_kind([SimpleNamespace(backup=SimpleNamespace(details={"service": {}}))]) == ""
