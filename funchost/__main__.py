"""Command line: `python -m funchost --app-dir DIR [--port N] [--host 127.0.0.1]`.

Runs the app in DIR until SIGTERM or SIGINT, then stops cleanly and exits 0.
App settings are the environment, as in Azure. Once serving it prints one
line, `funchost listening on http://HOST:PORT`, so that a launcher using
`--port 0` (a free port) can read the port. Logs go to stdout. A
configuration error, or storage out of reach at start-up, exits 2 with its
message on stderr.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from azure.core.exceptions import AzureError

from funchost.config import ConfigError
from funchost.host import FunctionHost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m funchost",
                                     description="Run an Azure Functions Python v2 app locally.")
    parser.add_argument("--app-dir", required=True, type=Path, help="directory with function_app.py and host.json")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (0 picks a free one; default 7071)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The storage SDK logs every request at INFO: the poll loop would drown the invocations.
    logging.getLogger("azure").setLevel(logging.WARNING)

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        host = FunctionHost(args.app_dir, host=args.host, port=args.port).start()
    except (ConfigError, AzureError) as error:
        print(f"funchost: cannot start: {error}", file=sys.stderr)
        return 2
    print(f"funchost listening on {host.url}", flush=True)
    stopping.wait()
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
