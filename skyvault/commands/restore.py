"""`skyvault restore POINT --target DIR`: a recovery point, or the paths of it that match
`--include` and not `--exclude`, into a directory (skyvault.restore), from either region, with
progress on a terminal and a JSON summary with --json (docs/design.md, "JSON output of restore
and check"). Exits PARTIAL when some entries could not be restored: the others are, and those
are listed."""
from __future__ import annotations

import argparse

from skyvault import exitcodes
from skyvault.commands import common
from skyvault.commands.common import human
from skyvault.commands.output import Output

DESCRIPTION = """\
Restore a recovery point (see `skyvault points`), or the paths of it that match --include and
not --exclude, into the target directory. Every chunk is authenticated; a file is renamed into
place only once all its bytes are; no link in the target is followed.

A pattern is a glob (fnmatch: * also matches /) against the paths as backed up, without a
leading /; it matches a path or one of its directories, so a directory brings, or leaves out,
everything below it. Without --include everything is selected; an --include that matches
nothing is an error, an --exclude that matches nothing is a note."""

EPILOG = """\
examples:
  skyvault restore 20261125T101500Z-1a2b3c4d --target /tmp/r
  skyvault restore 20261125T101500Z-1a2b3c4d --target /tmp/r --include 'home/*/docs' --exclude '*.tmp'
  skyvault restore 20261125T101500Z-1a2b3c4d --target /tmp/r --exclude 'home/ada/.cache'
  skyvault restore 20261125T101500Z-1a2b3c4d --target /tmp/r --from secondary
  skyvault restore 20261125T101500Z-1a2b3c4d --target /tmp/r --json | jq 'select(.type == "summary")'

exit codes: 0 restored; 4 (PARTIAL) some entries could not be written, the others are (listed);
1 it failed and says why."""


def add_parser(subparsers) -> None:
    restore = subparsers.add_parser("restore", help="restore a recovery point", description=DESCRIPTION,
                                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    restore.add_argument("point")
    restore.add_argument("--target", required=True, help="the directory to restore into (made if missing)")
    restore.add_argument("--include", action="append", metavar="PATTERN",
                         help="restore only paths matching this glob (repeatable)")
    restore.add_argument("--exclude", action="append", metavar="PATTERN",
                         help="leave out paths matching this glob, and all below them (repeatable)")
    restore.add_argument("--from", dest="source", choices=["auto", "primary", "secondary"], default="auto",
                         help="region to read (default: the primary, then the paired region if it does not answer)")
    restore.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skyvault.restore import PartialRestore, Restore

    output = args.output
    with output.progress("restore") as progress:
        restore = Restore(common.agent(), progress=output.note, detail=output.detail, meter=progress)
        try:
            report = restore.run(args.point, args.target, args.include, source=args.source, exclude=args.exclude)
        except PartialRestore as partial:
            report = partial.report
            failure = str(partial)
        else:
            failure = None
    _summary(output, report, args.target)
    if failure is not None:
        output.error(failure, exitcodes.PARTIAL)
        return exitcodes.PARTIAL
    return exitcodes.OK


def _summary(output: Output, report, target: str) -> None:
    output.summary(point_id=report.point_id, regions=report.regions, files=report.files, dirs=report.dirs,
                   symlinks=report.symlinks, hardlinks=report.hardlinks, specials=report.specials,
                   bytes_written=report.bytes_written, chunks_downloaded=report.chunks_downloaded,
                   seconds=round(report.seconds, 3), errors=report.errors, warnings=len(report.warnings))
    output.say(f"restored {report.point_id} from the {', then the '.join(report.regions)} region into {target}: "
               f"{report.files} files, {report.dirs} directories, {report.symlinks} symlinks, {report.hardlinks} "
               f"hard links, {report.specials} FIFOs and devices, {human(report.bytes_written)} from "
               f"{report.chunks_downloaded} chunks in {report.seconds:.1f}s")
    if report.warnings:
        output.say(f"  {len(report.warnings)} warnings (see above)")
