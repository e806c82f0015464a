"""`skyvault ls POINT [PATH]`: the entries of a recovery point, read from its manifest as a
restore reads it (skyvault.inspect); nothing is restored. Without PATH every entry, as restic's
`ls` lists a snapshot; with PATH that entry and what is directly inside it, or all below it
with `--recursive`."""
from __future__ import annotations

import argparse
import stat
from datetime import datetime
from typing import Any

from shared.messages import ManifestEntry
from skyvault import exitcodes
from skyvault.commands import common
from skyvault.commands.common import say, warn
from skyvault.vaultclient import AgentError

TYPE_BITS = {"file": stat.S_IFREG, "hardlink": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK,
             "fifo": stat.S_IFIFO, "chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK}

DESCRIPTION = """\
List the entries of a recovery point, read from its encrypted manifest (nothing is
restored). Without PATH: every entry. With PATH (as the manifest names it, e.g.
data/docs, or the absolute path that was backed up): that entry and the entries directly
inside it; --recursive: all below it.
"""

EXAMPLES = """\
examples:
  skyvault ls 20261201T020000Z-1a2b3c4d
  skyvault ls 20261201T020000Z-1a2b3c4d data/docs --long
  skyvault ls 20261201T020000Z-1a2b3c4d /home/ann/data/docs --recursive --json
"""


def add_parser(subparsers) -> None:
    ls = subparsers.add_parser(
        "ls", help="list the entries of a recovery point",
        description=DESCRIPTION,
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("point", help="recovery point id (see `skyvault points`)")
    ls.add_argument("path", nargs="?", help="list only this entry and what it holds")
    ls.add_argument("-l", "--long", action="store_true",
                    help="also mode, owner, size, modification time (local) and link targets")
    ls.add_argument("-R", "--recursive", action="store_true", help="with PATH: everything below it, not only "
                    "its direct entries")
    ls.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skyvault import inspect
    from skyvault.restore import Restore

    vault = common.agent()
    inspect.committed_point(vault, args.point)
    listed = files = size = 0
    with args.output.progress("ls") as progress, \
            inspect.open_point(Restore(vault, progress=warn), args.point,
                               on_bytes=lambda n: progress.update(bytes_=n)) as point:
        path = inspect.manifest_path(point.root, args.path) if args.path else None
        listed_here = inspect.within(path, args.recursive) if path is not None else lambda _: True
        # A hard link inside PATH shows its first path's size and owner, though that may lie outside.
        for entry, data in inspect.with_link_sources(point, point.entries()):
            if not listed_here(entry.path):
                continue
            listed += 1
            if data.type == "file":
                files += 1
                size += data.size
            args.output.emit("entry", point_id=point.point_id, **entry_fields(entry, data))
            say(long_line(entry, data) if args.long else entry.path)
    if path is not None and not listed:
        raise AgentError(f"{args.path} is not in recovery point {args.point} (its paths start with "
                         f"{', '.join(sorted({_base(s) for s in point.root.sources}))})")
    args.output.summary(point_id=args.point, entries=listed, files=files, bytes=size)
    return exitcodes.OK


def _base(source: str) -> str:
    return source.rstrip("/").rsplit("/", 1)[-1] or "root"


def mode_string(entry: ManifestEntry) -> str:
    """As `ls -l` shows it: `-rw-r--r--`, `drwxr-xr-x`, `lrwxrwxrwx`."""
    return stat.filemode(TYPE_BITS[entry.type] | entry.mode)


def local_time(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9).astimezone().isoformat(timespec="seconds")


def entry_fields(entry: ManifestEntry, data: ManifestEntry) -> dict[str, Any]:
    """An entry's JSON fields (docs/design.md, "JSON output of ls, diff, find and stats"); a hard
    link's size and owner are its first path's, `data`."""
    return {"path": entry.path, "entry_type": entry.type, "size": data.size if data.type == "file" else 0,
            "mode": entry.mode, "mode_string": mode_string(entry), "mtime": local_time(entry.mtime),
            "mtime_ns": entry.mtime, "uid": data.uid, "gid": data.gid, "user": data.user, "group": data.group,
            "target": entry.target, "xattrs": [name for name, _ in data.xattrs],
            "device": [entry.major, entry.minor] if entry.major is not None else None}


def long_line(entry: ManifestEntry, data: ManifestEntry) -> str:
    user = data.user or ("-" if data.uid is None else str(data.uid))
    group = data.group or ("-" if data.gid is None else str(data.gid))
    size = f"{entry.major},{entry.minor}" if entry.major is not None else str(data.size)
    link = {"symlink": f" -> {entry.target}", "hardlink": f" => {entry.target}"}.get(entry.type, "")
    return f"{mode_string(entry)} {user:>8} {group:>8} {size:>12} {local_time(entry.mtime)} {entry.path}{link}"
