"""`skyvault stats [POINT] [--item ITEM]`: what a recovery point holds, or all the vault's
committed points (of one item): entries by type, logical bytes, distinct chunks, the bytes
stored for those chunks and the ratio of the two (skyvault.inspect.Figures).

Stored bytes are the chunks' envelopes as stored. The manifest's extents give plaintext
lengths only, so they come from the service and the storage: for one point, the `storedBytes`
the service summed from its index when it committed the point (what it bills; a point
committed before it was recorded gets the sizes below); over several points, which share
chunks, each distinct chunk blob's size from its properties through the read-only SAS (one
request per chunk, nothing downloaded)."""
from __future__ import annotations

import argparse

from skyvault import exitcodes
from skyvault.commands import common
from skyvault.commands.common import human, say, warn

DESCRIPTION = """\
Count the files, directories and bytes of a recovery point (or of every committed point
of the vault, or of --item), the distinct chunks they reference, the bytes stored for
them and the deduplication ratio (logical bytes per stored byte, compression included).
"""

EXAMPLES = """\
examples:
  skyvault stats 20261201T020000Z-1a2b3c4d
  skyvault stats --item laptop
  skyvault stats --json
"""


def add_parser(subparsers) -> None:
    stats = subparsers.add_parser(
        "stats", help="figures of a recovery point, or of all of them: files, bytes, chunks, dedup",
        description=DESCRIPTION,
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    stats.add_argument("point", nargs="?", help="recovery point id (default: all committed points)")
    stats.add_argument("--item", help="without POINT: this item's points only")
    stats.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skyvault import inspect
    from skyvault.restore import Restore

    vault = common.agent()
    if args.point:
        views = [inspect.committed_point(vault, args.point)]
    else:
        views = inspect.committed_points(vault, args.item)
    restore = Restore(vault, progress=warn)
    figures = inspect.Figures()
    reader = None
    with args.output.progress("stats") as progress:
        for view in views:
            progress.update(current=view.id)
            with inspect.open_point(restore, view.id, on_bytes=lambda n: progress.update(bytes_=n)) as point:
                figures.add(point)
                reader = point.reader
        if len(views) == 1 and "storedBytes" in views[0].stats:
            stored = views[0].stats["storedBytes"]
        else:
            stored = inspect.stored_bytes(reader, figures.chunks) if reader is not None else 0
    ratio = inspect.dedup_ratio(figures.bytes, stored)
    args.output.summary(point_id=args.point, item=args.item, points=figures.points, files=figures.files,
                        dirs=figures.dirs, symlinks=figures.symlinks, hardlinks=figures.hardlinks,
                        specials=figures.specials, bytes=figures.bytes, chunks=len(figures.chunks),
                        stored_bytes=stored, dedup_ratio=ratio)
    what = f"recovery point {args.point}" if args.point else (
        f"{figures.points} recovery points" + (f" of item {args.item}" if args.item else ""))
    say(f"{what}:\n"
        f"  {figures.files} files, {figures.dirs} directories, {figures.symlinks} symlinks, "
        f"{figures.hardlinks} hard links, {figures.specials} FIFOs and devices\n"
        f"  {human(figures.bytes)} ({figures.bytes} bytes) of files, in {len(figures.chunks)} distinct chunks\n"
        f"  {human(stored)} ({stored} bytes) stored"
        + (f": {ratio:g} logical bytes per stored byte" if ratio is not None else ""))
    return exitcodes.OK
