"""`skyvault backup PATH...`: a recovery point of the paths (skyvault.backup). Exits OK once
the point is committed, PARTIAL when it is but some files could not be read, FAILURE when
the point failed."""
from __future__ import annotations

import argparse
import socket

from shared.domain import PointState
from skyvault import exitcodes
from skyvault.commands import common
from skyvault.commands.common import human, say, warn


def add_parser(subparsers) -> None:
    backup = subparsers.add_parser("backup", help="back up files and directories")
    backup.add_argument("paths", nargs="+", metavar="PATH")
    backup.add_argument("--item", default=socket.gethostname().split(".")[0] or "default",
                        help="protected item name (default: this host's name)")
    backup.add_argument("--no-wait", action="store_true", help="do not wait for the point to be committed")
    backup.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skyvault.backup import Backup

    vault = common.agent()
    cache = common.cache()
    try:
        report = Backup(vault, cache, args.item, progress=warn).run(args.paths, wait=not args.no_wait)
    finally:
        cache.close()
    say(f"recovery point {report.point_id} of item {report.item}: {report.state}"
        f"{' (' + report.reason + ')' if report.reason else ''}")
    say(f"  {report.files} files, {report.dirs} directories, {report.symlinks} symlinks, "
        f"{report.hardlinks} hard links, {report.specials} FIFOs and devices, {human(report.bytes_total)}")
    if report.chunks_adopted:
        say(f"  {report.chunks_adopted} chunks were in the vault's storage already, not yet indexed: declared "
            f"for the service to take as they are")
    say(f"  read {report.files_read} files ({human(report.bytes_read)}), {report.files_unchanged} unchanged "
        f"files not read")
    say(f"  chunks: {report.chunks_referenced} referenced, {report.chunks_uploaded} uploaded "
        f"({human(report.bytes_uploaded)} stored), {report.chunks_deduplicated} already in the vault")
    say(f"  {report.messages} queue messages, {report.seconds:.1f}s")
    if report.warnings:
        say(f"  {len(report.warnings)} warnings (see above)")
    if report.state == PointState.FAILED:
        return exitcodes.FAILURE
    return exitcodes.PARTIAL if report.warnings else exitcodes.OK
