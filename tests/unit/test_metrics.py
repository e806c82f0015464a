"""Operation counts around the ports."""
import json
import time

from shared import metrics
from shared.domain import ChunkRecord
from shared.fakes import MemoryBlobAccount, MemoryIndex, MemoryQueue
from shared.service.context import Services


def test_counting_services_count_what_the_bill_is_made_of(tmp_path):
    path = tmp_path / "counts.json"
    counts = metrics.OperationCounts(str(path))
    queue = MemoryQueue("ingest")
    queue.create()
    services = metrics.counting(Services(index=MemoryIndex(), primary=MemoryBlobAccount("metrics-primary"),
                                         queue=lambda name: queue), counts)
    container = services.primary.container("vault-x")
    container.create()
    container.put("chunks/ab/1", b"12345")
    assert container.read("chunks/ab/1", 0, 2) == b"12"
    assert container.read_head("chunks/ab/1", 3)[0] == b"123"
    services.queue("ingest").send("m")
    services.index.add_chunk(ChunkRecord("ab" * 32, "v", 5, "x", "verified", "now"))
    services.index.get_chunks("v", ["ab" * 32, "ab" + "0" * 62, "cd" * 32])
    expected = {"blob.metrics-primary.create_container": 1, "blob.metrics-primary.put": 1,
                "blob.metrics-primary.bytes_written": 5, "blob.metrics-primary.read": 1,
                "blob.metrics-primary.read_head": 1, "blob.metrics-primary.bytes_read": 5, "queue.ingest.send": 1,
                "cosmos.write": 1, "cosmos.write.add_chunk": 1, "cosmos.query": 1}
    assert counts.snapshot()["counts"] == expected
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.1)
    assert json.loads(path.read_text())["counts"] == expected
