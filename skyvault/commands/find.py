"""`skyvault find PATTERN [--item ITEM] [--since WHEN] [--until WHEN]`: the recovery points,
newest first, that hold paths matching a glob, with the matching entries (restic's `find`
rule, skyvault.inspect.matches). Each point searched is opened as a restore opens it: one
restore job each, so `--item`, `--since` and `--until` (on the points' creation times) keep
the search to the points wanted."""
from __future__ import annotations

import argparse
from skyvault import exitcodes
from skyvault.commands import common
from skyvault.commands.common import say, warn
from skyvault.commands.ls import entry_fields, long_line

DESCRIPTION = """\
Search the manifests of the vault's committed recovery points, newest first, for paths
matching PATTERN, and list the matching entries of each point that holds some.
"""

EXAMPLES = """\
examples:
  skyvault find '*.docx'
  skyvault find 'docs/report-*.pdf' --item laptop --since 7d
  skyvault find '/data/etc/hosts' --since 2026-11-01 --until 2026-12-01T12:00 --json

PATTERN: globs (* ? [...]) of path components, `/`-separated; it matches a path whose last
components match it (so '*.txt' matches every name), or with a leading / the whole path,
which starts with the backed-up directory's name. * does not cross a /.
WHEN: an ISO 8601 date or time (local unless it names its offset), or an age: 30m, 12h, 7d, 2w.
"""


def add_parser(subparsers) -> None:
    find = subparsers.add_parser(
        "find", help="find the recovery points that hold paths matching a pattern",
        description=DESCRIPTION,
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    find.add_argument("pattern")
    find.add_argument("--item", help="search this item's points only")
    find.add_argument("--since", metavar="WHEN", help="search points created at or after WHEN")
    find.add_argument("--until", metavar="WHEN", help="search points created at or before WHEN")
    find.add_argument("-l", "--long", action="store_true", help="show each match as `ls --long` does")
    find.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skyvault import inspect
    from skyvault.restore import Restore

    vault = common.agent()
    now = vault.clock()
    since = inspect.parse_when(args.since, now) if args.since else None
    until = inspect.parse_when(args.until, now) if args.until else None
    points = inspect.committed_points(vault, args.item, since, until)
    restore = Restore(vault, progress=warn)
    matches = holding = 0
    with args.output.progress("find") as progress:
        for view in points:
            progress.update(current=view.id)
            found = 0
            with inspect.open_point(restore, view.id, on_bytes=lambda n: progress.update(bytes_=n)) as point:
                for entry, data in inspect.with_link_sources(point, point.entries()):
                    if not inspect.matches(args.pattern, entry.path):
                        continue
                    if not found:
                        say(f"{view.id}  {view.item}  {view.created_at}")
                    found += 1
                    args.output.emit("match", point_id=view.id, item=view.item, created_at=view.created_at,
                                     **entry_fields(entry, data))
                    say(f"  {long_line(entry, data) if args.long else entry.path}")
            holding += 1 if found else 0
            matches += found
    if not holding:
        say(f"no path of the {len(points)} recovery points searched matches {args.pattern}")
    args.output.summary(pattern=args.pattern, points_searched=len(points), points_matching=holding,
                        matches=matches)
    return exitcodes.OK
