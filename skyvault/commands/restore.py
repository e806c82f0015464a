"""`skyvault restore POINT --target DIR`: a recovery point, or the paths of it that match
`--include`, into a directory (skyvault.restore), from either region. Exits PARTIAL when
some entries could not be restored: the others are, and those are listed."""
from __future__ import annotations

import argparse

from skyvault import exitcodes
from skyvault.commands import common
from skyvault.commands.common import human, say, warn


def add_parser(subparsers) -> None:
    restore = subparsers.add_parser("restore", help="restore a recovery point")
    restore.add_argument("point")
    restore.add_argument("--target", required=True)
    restore.add_argument("--include", action="append", metavar="PATTERN",
                         help="restore only paths matching this glob (repeatable)")
    restore.add_argument("--from", dest="source", choices=["auto", "primary", "secondary"], default="auto",
                         help="region to read (default: the primary, then the paired region if it does not answer)")
    restore.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skyvault.restore import PartialRestore, Restore

    try:
        report = Restore(common.agent(), progress=warn).run(args.point, args.target, args.include, source=args.source)
    except PartialRestore as partial:
        _summary(partial.report, args.target)
        warn(f"skyvault: error: {partial}")
        return exitcodes.PARTIAL
    _summary(report, args.target)
    return exitcodes.OK


def _summary(report, target: str) -> None:
    say(f"restored {report.point_id} from the {', then the '.join(report.regions)} region into {target}: "
        f"{report.files} files, {report.dirs} directories, {report.symlinks} symlinks, {report.hardlinks} hard "
        f"links, {report.specials} FIFOs and devices, {human(report.bytes_written)} from "
        f"{report.chunks_downloaded} chunks in {report.seconds:.1f}s")
    if report.warnings:
        say(f"  {len(report.warnings)} warnings (see above)")
