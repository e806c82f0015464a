"""`python -m bench.batched_agent N ARGS...`: the agent's command line (skyvault.cli) with N chunks
declared per ingest message instead of skyvault.backup.uploader.INGEST_BATCH, for the load
benchmark's `--ingest-batch`: the same backup, posted as many more, smaller messages, so that a
run of a few hundred MiB puts thousands of messages in flight on the service's queues."""
from __future__ import annotations

import sys

from shared import formats
from skyvault import cli
from skyvault.backup import uploader


def main(argv: list[str]) -> int:
    batch = int(argv[0])
    if not 1 <= batch <= formats.CHUNKS_PER_MESSAGE:
        raise SystemExit(f"batched_agent: N must be 1 to {formats.CHUNKS_PER_MESSAGE}, not {batch}")
    uploader.INGEST_BATCH = batch
    uploader.HELD_BATCHES = formats.CHUNKS_PER_MESSAGE // batch - 1
    return cli.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
