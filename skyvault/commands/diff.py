"""`skyvault diff POINT_A POINT_B`: what changed from one recovery point to another, entry by
entry, with restic's markers (`+` added, `-` removed, `M` modified, `U` metadata only), and
the counts and bytes (skyvault.inspect.diff). Files whose size is the same but whose extents
differ have their bytes compared (both points' chunks are downloaded for them), unless
`--no-read` says to take other extents for other bytes."""
from __future__ import annotations

import argparse

from skyvault import exitcodes
from skyvault.commands import common
from skyvault.commands.common import human, say, warn

DESCRIPTION = """\
Compare two recovery points' manifests, path by path: entries added, removed, modified
or changed in metadata only, then the counts and the file bytes added and removed.
Nothing is restored; the chunks of files of the same size whose extents differ are
downloaded to compare their bytes.
"""

EXAMPLES = """\
examples:
  skyvault diff 20261201T020000Z-1a2b3c4d 20261202T020000Z-5e6f7a8b
  skyvault diff 20261201T020000Z-1a2b3c4d 20261202T020000Z-5e6f7a8b --no-read --json

markers: + added, - removed, M modified (type, size, bytes, link target or device numbers),
U metadata only (mode, owner, mtime or extended attributes; the bytes the same)
"""


def add_parser(subparsers) -> None:
    diff = subparsers.add_parser(
        "diff", help="show what changed between two recovery points",
        description=DESCRIPTION,
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    diff.add_argument("point_a", help="the earlier recovery point")
    diff.add_argument("point_b", help="the later recovery point")
    diff.add_argument("--no-read", action="store_true",
                      help="download no chunk: a file of the same size with other extents counts as modified "
                           "(chunks span files, so a file read again, after a chmod say, may be one)")
    diff.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skyvault import inspect
    from skyvault.restore import Restore

    vault = common.agent()
    for point_id in (args.point_a, args.point_b):
        inspect.committed_point(vault, point_id)
    restore = Restore(vault, progress=warn)
    summary = inspect.DiffSummary()
    with args.output.progress("diff") as progress, \
            inspect.open_point(restore, args.point_a, on_bytes=lambda n: progress.update(bytes_=n)) as a, \
            inspect.open_point(restore, args.point_b, on_bytes=lambda n: progress.update(bytes_=n)) as b:
        same_bytes = None if args.no_read else inspect.byte_comparison(a, b)
        for change in inspect.diff(a.entries(), b.entries(), same_bytes):
            summary.count(change)
            entry = change.entry
            args.output.emit("change", change=change.kind, marker=change.marker, path=change.path,
                             entry_type=entry.type, old_entry_type=change.old.type if change.old else None,
                             old_size=_size(change.old), new_size=_size(change.new), fields=list(change.fields))
            detail = f"  ({', '.join(change.fields)})" if change.fields and args.verbose else ""
            say(f"{change.marker}    {change.path}{'/' if entry.type == 'dir' else ''}{detail}")
        chunks_read = a.chunks_read + b.chunks_read
    args.output.summary(point_a=args.point_a, point_b=args.point_b, added=summary.added, removed=summary.removed,
                        modified=summary.modified, metadata=summary.metadata, added_bytes=summary.added_bytes,
                        removed_bytes=summary.removed_bytes, chunks_read=chunks_read)
    say(f"\n{args.point_a} -> {args.point_b}: {summary.added} added, {summary.removed} removed, "
        f"{summary.modified} modified, {summary.metadata} metadata only; {human(summary.added_bytes)} added, "
        f"{human(summary.removed_bytes)} removed" + (f" ({chunks_read} chunks read to compare bytes)"
                                                      if chunks_read else ""))
    return exitcodes.OK


def _size(entry) -> int | None:
    if entry is None:
        return None
    return entry.size if entry.type == "file" else 0
