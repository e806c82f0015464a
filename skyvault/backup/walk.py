"""The walk: the trees to back up, visited depth first in byte order, one Entry per path.

Words:
- Entry: what the walk makes of one path's lstat: its manifest document (path, type,
  mode, mtime, owner, extended attributes; a file's size, a symlink's target, a device's
  numbers) and, for a regular file, its stat signature and the state the later stages keep
  on it until its manifest line is written. FIFOs and devices are recorded, never opened.
- Hard link: a later path of an inode (not a directory or symlink) whose first path this
  walk already met: recorded as a link to that first path, which holds the inode's data.
- Walk order: a directory before its entries, siblings sorted by the bytes of their names
  with a directory's name followed by "/"; so every path comes after the one before in
  byte order (docs/design.md, "Chunk ids and chunking").
"""
from __future__ import annotations

import errno
import functools
import grp
import os
import pwd
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from shared.messages import xattrs_doc
from skyvault.cache import PreviousFile, path_key
from skyvault.vaultclient import AgentError

if TYPE_CHECKING:
    from skyvault.backup.report import BackupReport


class Entry:
    """A manifest entry waiting for its place in the manifest (files: for their extents)."""

    __slots__ = ("doc", "signature", "start", "end", "complete", "failed", "path", "previous")

    def __init__(self, doc: dict, path: str = "", signature: str = "", complete: bool = True):
        self.doc, self.path, self.signature = doc, path, signature
        self.start = self.end = None
        self.complete, self.failed = complete, False
        self.previous: PreviousFile | None = None  # an unchanged file's entry, from the cache


def roots(paths: list[str]) -> list[Path]:
    """The absolute roots of a backup of `paths`; each must exist and have a name of its own,
    the first part of its entries' paths."""
    found = [Path(os.path.abspath(p)) for p in paths]
    for root in found:
        if not os.path.lexists(root):
            raise AgentError(f"{root} does not exist")
    names = [r.name or "root" for r in found]
    if len(set(names)) != len(names):
        raise AgentError(f"two paths to back up have the same name: {', '.join(names)}")
    return found


def _sort_key(name: str, is_dir: bool) -> bytes:
    """Siblings in the order that makes the walk's paths come out in byte order, the order of
    the local cache's files table (cache.PreviousFiles): a directory sorts as its name plus "/",
    where its entries' paths begin, so "a.txt" < "a/b" < "a0"."""
    key = path_key(name)
    return key + b"/" if is_dir else key


def _walk_key(child: os.DirEntry) -> tuple[bytes, str]:
    try:
        is_dir = child.is_dir(follow_symlinks=False)
    except OSError:
        is_dir = False  # Walk._entry reports it
    return _sort_key(child.name, is_dir), child.name


def _root_key(root: Path) -> bytes:
    return _sort_key(root.name or "root", root.is_dir() and not root.is_symlink())


class Walk:
    """Counts the directories and symlinks it yields in the report, and warns of the paths it
    cannot list, stat or back up."""

    def __init__(self, report: BackupReport, warn: Callable[[str], None]):
        self.report, self.warn = report, warn
        # The first path of each inode with several links, so its later paths become hard links.
        self._first_paths: dict[tuple[int, int], str] = {}

    def entries(self, roots: list[Path]) -> Iterator[Entry]:
        """Depth first, a directory before its entries; with a stack of the paths still to visit
        rather than nested generators, whose every yield would pass up through each level."""
        for root in sorted(roots, key=_root_key):  # so the roots' paths are in byte order too
            pending = [(str(root), root.name or "root")]
            while pending:
                path, rel = pending.pop()
                entry = self._entry(path, rel)
                if entry is None:
                    continue
                yield entry
                if entry.doc["type"] == "dir":
                    try:
                        with os.scandir(path) as listing:
                            children = sorted(_walk_key(child) for child in listing)
                    except OSError as e:
                        self.warn(f"cannot list {path}: {e.strerror or e}")
                        continue
                    pending.extend((os.path.join(path, name), f"{rel}/{name}") for _, name in reversed(children))

    def _entry(self, path: str, rel: str) -> Entry | None:
        try:
            st = os.lstat(path)
        except OSError as e:
            self.warn(f"{path} vanished or cannot be read: {e.strerror or e}")
            return None
        kind = _KINDS.get(stat.S_IFMT(st.st_mode))
        if kind is None:
            self.warn(f"{path}: skipped (a socket, or a kind of file the manifest cannot hold)")
            return None
        base = {"path": rel, "mode": stat.S_IMODE(st.st_mode), "mtime": st.st_mtime_ns}
        if kind not in ("dir", "symlink") and st.st_nlink > 1:
            first = self._first_paths.setdefault((st.st_dev, st.st_ino), rel)
            if first != rel:
                self.report.hardlinks += 1
                return Entry({**base, "type": "hardlink", "target": first})
        doc = {**base, "type": kind, **self._owner(st)}
        xattrs = self._xattrs(path)
        if xattrs:
            doc["xattrs"] = xattrs_doc(xattrs)
        if kind == "dir":
            self.report.dirs += 1
        elif kind == "symlink":
            try:
                doc["target"] = os.readlink(path)
            except OSError as e:
                self.warn(f"{path} vanished or cannot be read: {e.strerror or e}")
                return None
            self.report.symlinks += 1
        elif kind == "file":
            doc["size"] = st.st_size
            # "2:" names the line format: a cache row of an older format has another signature,
            # so that file is read once more and gets a line with its owner and attributes.
            signature = f"2:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
            return Entry(doc, path, signature, complete=False)
        else:
            self.report.specials += 1
            if kind != "fifo":
                doc["major"], doc["minor"] = os.major(st.st_rdev), os.minor(st.st_rdev)
        return Entry(doc)

    def _owner(self, st: os.stat_result) -> dict:
        """uid and gid, and their names on this machine when it has them (a restore maps names
        first, as tar does)."""
        owner: dict = {"uid": st.st_uid, "gid": st.st_gid}
        user, group = _user_name(st.st_uid), _group_name(st.st_gid)
        if user is not None:
            owner["user"] = user
        if group is not None:
            owner["group"] = group
        return owner

    def _xattrs(self, path: str) -> list[tuple[str, bytes]]:
        """The extended attributes the agent can read (ACLs among them); one it cannot is warned of."""
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError as e:
            if e.errno not in _NO_XATTRS:
                self.warn(f"{path}: extended attributes not backed up: {e.strerror or e}")
            return []
        found = []
        for name in names:
            try:
                found.append((name, os.getxattr(path, name, follow_symlinks=False)))
            except OSError as e:
                if e.errno != errno.ENODATA:  # removed since the listing
                    self.warn(f"{path}: extended attribute {name} not backed up: {e.strerror or e}")
        return found


_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo",
          stat.S_IFCHR: "chardev", stat.S_IFBLK: "blockdev"}
_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)


@functools.lru_cache(maxsize=1024)
def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@functools.lru_cache(maxsize=1024)
def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None
