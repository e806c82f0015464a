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
- Identity: the (st_dev, st_ino) the walk's lstat gave a file or directory. What the backup
  opens later (a directory to list it, a file to read it) must have the same, or it was
  replaced in between (by a link to another user's file, a FIFO, another file) and is left
  out with a warning (Replaced).
- Exclusions (skyvault.backup.exclude): an entry they leave out is neither in the manifest
  nor, a directory, descended into; one they keep empty (a cache directory but for its tag,
  a mount point) is recorded and only its tag files visited. The report counts what they
  left out: the entries, and the bytes of the regular files among them (the contents of a
  directory left out are never listed, so not counted).
- Scan: a second, cheaper walk on a thread of its own, with the same exclusions, that only
  counts the files and bytes the backup will go through, for its progress's totals.

No link is followed below a root: each directory is opened with O_NOFOLLOW relative to its
parent's descriptor and checked against its identity, and its entries are stat'ed, their
links and attributes read, relative to it; so a directory swapped for a symlink mid-walk
shows nothing of what the link points to. A directory is opened when it is stat'ed, and its
attributes read through that descriptor, which then lists it. The walk holds one descriptor
per level of the path it is in, and that of the directory it just yielded. Files are read
later by their paths (skyvault.backup.changes), each checked against its identity
(open_as_walked): one reached through a swapped directory is not the file the walk stat'ed;
their attributes are read through the descriptor they are read through.
"""
from __future__ import annotations

import errno
import functools
import grp
import os
import pwd
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from shared.messages import xattrs_doc
from skyvault.backup.exclude import NO_EXCLUSIONS, Decision, Exclusions
from skyvault.cache import PreviousFile, path_key
from skyvault.vaultclient import AgentError

if TYPE_CHECKING:
    from skyvault.backup.report import BackupReport


class Entry:
    """A manifest entry waiting for its place in the manifest (files: for their extents)."""

    __slots__ = ("doc", "signature", "start", "end", "complete", "failed", "path", "previous", "identity",
                 "keep_contents", "content", "fd")

    def __init__(self, doc: dict, path: str = "", signature: str = "", complete: bool = True,
                 identity: tuple[int, int] | None = None):
        self.doc, self.path, self.signature = doc, path, signature
        self.start = self.end = None
        self.complete, self.failed = complete, False
        self.previous: PreviousFile | None = None  # an unchanged file's entry, from the cache
        self.content: str | None = None  # a small file read: its content id (changes.ContentReuse)
        # A file's or directory's; None only in entries the walk did not make (tests craft some).
        self.identity = identity
        self.keep_contents = True  # a directory: False when the exclusions keep it empty
        self.fd: int | None = None  # a directory the walk opened to list next: its descriptor


class Replaced(OSError):
    """What the walk stat'ed at a path is not what is there now: the backup leaves it out."""


def open_as_walked(name: str, flags: int, kind: int, identity: tuple[int, int] | None,
                   dir_fd: int | None = None) -> int:
    """A descriptor on what the walk stat'ed as `kind` (stat.S_IFREG, S_IFDIR) with `identity`,
    at `name` (relative to `dir_fd`). Never through a link in its place, and never waiting:
    O_NONBLOCK, as opening a FIFO put there would wait for a writer (it changes nothing for
    a regular file's reads or a directory's listing). Replaced if anything else is there."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a link
            raise Replaced(errno.ELOOP, "it is a symbolic link now") from None
        if e.errno == errno.ENOTDIR and kind == stat.S_IFDIR:
            raise Replaced(errno.ENOTDIR, "it is no longer a directory") from None
        raise
    st = os.fstat(fd)
    if stat.S_IFMT(st.st_mode) != kind:
        os.close(fd)
        raise Replaced(errno.ESTALE, f"it is a {_KINDS.get(stat.S_IFMT(st.st_mode), 'socket')} now")
    if identity is not None and (st.st_dev, st.st_ino) != identity:
        os.close(fd)
        raise Replaced(errno.ESTALE, "another file took its place")
    return fd


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


@dataclass
class _OpenDirectory:
    """A directory on the walk's current path, whose entries are looked up relative to its
    descriptor (None: the roots, looked up by their paths as the user gave them)."""

    fd: int | None
    children: list[tuple[str, str, str]]  # (name, path, manifest path) of those left to visit, last first

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


def _in_directory(dir_fd: int | None, name: str) -> str:
    """A path to `name` in the directory open as `dir_fd` that the kernel resolves through the
    descriptor, not through the directory's own path: for the extended attribute calls, which
    take no dir_fd."""
    return name if dir_fd is None else f"/proc/self/fd/{dir_fd}/{name}"


def _below_root(rel: str) -> str | None:
    """A manifest path's root-relative path, as patterns match it; None for a root itself."""
    parts = rel.split("/", 1)
    return parts[1] if len(parts) == 2 else None


def _tag_children(exclusions: Exclusions, fd: int) -> list[tuple[bytes, str]] | None:
    """The (sort key, name) of the only entries of the directory open as `fd` to visit, when
    it holds tag files; None: all of them."""
    tags = exclusions.tag_files(fd)
    return None if tags is None else sorted((_sort_key(name, is_dir), name) for name, is_dir in tags)


class Walk:
    """Counts the directories and symlinks it yields in the report, and what its exclusions
    left out, and warns of the paths it cannot list, stat or back up."""

    def __init__(self, report: BackupReport, warn: Callable[[str], None], exclusions: Exclusions = NO_EXCLUSIONS):
        self.report, self.warn, self.exclusions = report, warn, exclusions
        # The first path of each inode with several links, so its later paths become hard links.
        self._first_paths: dict[tuple[int, int], str] = {}
        self._root_dev = 0  # the device of the root being walked (--one-file-system)

    def entries(self, roots: list[Path],
                previous: Callable[[str], PreviousFile | None] | None = None) -> Iterator[Entry]:
        """Depth first, a directory before its entries; with a stack of open directories rather
        than nested generators, whose every yield would pass up through each level.

        `previous` gives the last backup's file at a manifest path, looked up in walk order. A
        regular file with that file's stat signature is unchanged: its entry is complete, with
        `previous` set, and its owner and extended attributes are not read (what would change
        them changes its ctime, hence its signature). A file to read has no "xattrs" yet: they
        are read from its descriptor once it is opened (read_xattrs, add_xattrs)."""
        for root in sorted(roots, key=_root_key):  # so the roots' paths are in byte order too
            open_dirs = [_OpenDirectory(None, [(str(root), str(root), root.name or "root")])]
            to_list = None  # the descriptor of the directory just yielded, to list next
            try:
                while open_dirs:
                    directory = open_dirs[-1]
                    if not directory.children:
                        open_dirs.pop().close()
                        continue
                    name, path, rel = directory.children.pop()
                    entry = self._entry(directory.fd, name, path, rel, previous)
                    if entry is None:
                        continue
                    to_list, entry.fd = entry.fd, None
                    yield entry
                    if to_list is not None:
                        fd, to_list = to_list, None
                        listed = self._list(fd, path, rel)
                        if listed is not None:
                            open_dirs.append(listed)
            finally:  # the backup may stop mid-walk
                if to_list is not None:
                    os.close(to_list)
                for directory in open_dirs:
                    directory.close()

    def _open_directory(self, parent_fd: int | None, name: str, path: str, identity: tuple[int, int]) -> int | None:
        """The directory the walk stat'ed at `path`, open to be listed; None, warned of, if it
        cannot be."""
        try:
            return open_as_walked(name, os.O_RDONLY | os.O_DIRECTORY, stat.S_IFDIR, identity, parent_fd)
        except Replaced as e:
            self.warn(f"{path} changed while being backed up ({e.strerror}): its entries are left out")
        except OSError as e:
            self.warn(f"cannot list {path}: {e.strerror or e}")
        return None

    def _list(self, fd: int, path: str, rel: str) -> _OpenDirectory | None:
        """The entries to visit of the directory open as `fd` (closed if it cannot be listed)."""
        try:
            children = _tag_children(self.exclusions, fd)
            if children is not None:
                self.report.excluded_dirs += 1  # its contents but for its tag files
            else:
                with os.scandir(fd) as listing:
                    children = sorted(_walk_key(child) for child in listing)
        except OSError as e:
            os.close(fd)
            self.warn(f"cannot list {path}: {e.strerror or e}")
            return None
        return _OpenDirectory(fd, [(child, os.path.join(path, child), f"{rel}/{child}")
                                   for _, child in reversed(children)])

    def _entry(self, dir_fd: int | None, name: str, path: str, rel: str,
               previous_file: Callable[[str], PreviousFile | None] | None) -> Entry | None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as e:
            self.warn(f"{path} vanished or cannot be read: {e.strerror or e}")
            return None
        below_root = _below_root(rel)
        if below_root is None:
            self._root_dev = st.st_dev
            decision = Decision.KEEP
        else:
            decision = self.exclusions.decide(below_root, st, self._root_dev)
        if decision is Decision.LEAVE_OUT:
            if stat.S_ISDIR(st.st_mode):
                self.report.excluded_dirs += 1
            else:
                self.report.excluded_files += 1
                if stat.S_ISREG(st.st_mode):
                    self.report.excluded_bytes += st.st_size
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
        identity = (st.st_dev, st.st_ino)
        if kind == "file":
            # "2:" names the line format: a cache row of an older format has another signature,
            # so that file is read once more and gets a line with its owner and attributes.
            signature = f"2:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
            previous = previous_file(rel) if previous_file is not None else None
            if previous is not None and previous.signature == signature:
                entry = Entry({"path": rel, "type": "file", "size": st.st_size}, path, signature, identity=identity)
                entry.previous = previous
                return entry
            return Entry({**base, "type": kind, **self._owner(st), "size": st.st_size}, path, signature,
                         complete=False, identity=identity)
        doc = {**base, "type": kind, **self._owner(st)}
        # A directory to list is opened now: its attributes are read through the descriptor it
        # is then listed with.
        fd = self._open_directory(dir_fd, name, path, identity) \
            if kind == "dir" and decision is not Decision.KEEP_EMPTY else None
        xattrs = read_xattrs(_in_directory(dir_fd, name) if fd is None else fd, path, self.warn)
        if xattrs:
            doc["xattrs"] = xattrs_doc(xattrs)
        if kind == "dir":
            self.report.dirs += 1
            entry = Entry(doc, identity=identity)
            entry.fd = fd
            if decision is Decision.KEEP_EMPTY:
                self.report.excluded_dirs += 1  # its contents
                entry.keep_contents = False
            return entry
        if kind == "symlink":
            try:
                doc["target"] = os.readlink(name, dir_fd=dir_fd)
            except OSError as e:
                self.warn(f"{path} vanished or cannot be read: {e.strerror or e}")
                return None
            self.report.symlinks += 1
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

def read_xattrs(at: str | int, path: str, warn: Callable[[str], None]) -> list[tuple[str, bytes]]:
    """The extended attributes the agent can read (ACLs among them) of the entry `at` names (a
    path the kernel resolves without following a link at its end, or an open descriptor); one
    it cannot is warned of, by its `path`."""
    follow = isinstance(at, int)  # a descriptor: what it is open on (os refuses follow_symlinks=False)
    try:
        names = os.listxattr(at, follow_symlinks=follow)
    except OSError as e:
        if e.errno not in _NO_XATTRS:
            warn(f"{path}: extended attributes not backed up: {e.strerror or e}")
        return []
    found = []
    for name in names:
        try:
            found.append((name, os.getxattr(at, name, follow_symlinks=follow)))
        except OSError as e:
            if e.errno != errno.ENODATA:  # removed since the listing
                warn(f"{path}: extended attribute {name} not backed up: {e.strerror or e}")
    return found


def add_xattrs(doc: dict, xattrs: list[tuple[str, bytes]]) -> None:
    """A file's extended attributes, read once it is open, into its manifest document, where the
    walk puts other entries': before its size."""
    if xattrs:
        size = doc.pop("size")
        doc["xattrs"] = xattrs_doc(xattrs)
        doc["size"] = size


class Scan:
    """Counts, on a thread of its own, the regular files (a hard-linked inode once) and their
    bytes below `roots` that the walk's exclusions keep: the totals of a backup's progress,
    given to `done(files, bytes)` once the scan ends (not if it is stopped first). What cannot
    be listed or stat'ed is passed over: the walk warns of it."""

    def __init__(self, roots: list[Path], exclusions: Exclusions, done: Callable[[int, int], None]):
        self.roots, self.exclusions, self.done = roots, exclusions, done
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="skyvault-scan", daemon=True)
        self.files = self.bytes = 0
        self._seen: set[tuple[int, int]] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def join(self) -> None:
        """Wait until the scan has ended."""
        self._thread.join()

    def _run(self) -> None:
        try:
            self._scan_roots()
        except RecursionError:  # a tree deeper than the interpreter's stack: no totals, the walk goes on
            return

    def _scan_roots(self) -> None:
        for root in self.roots:
            try:
                st = os.lstat(root)
            except OSError:
                continue
            self._count(st)
            if stat.S_ISDIR(st.st_mode) and not self._scan(str(root), "", st.st_dev):
                return
        self.done(self.files, self.bytes)

    def _scan(self, path: str, rel: str, root_dev: int) -> bool:
        """Count what the directory at `path` (root-relative `rel`) holds; False once stopped."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return True
        try:
            tags = self.exclusions.tag_files(fd)
            with os.scandir(fd) as listing:
                names = [child.name for child in listing]
        except OSError:
            return True
        finally:
            os.close(fd)
        if tags is not None:
            names = [name for name, _ in tags]
        for name in names:
            if self._stop.is_set():
                return False
            child, child_rel = os.path.join(path, name), f"{rel}/{name}" if rel else name
            try:
                st = os.lstat(child)
            except OSError:
                continue
            decision = self.exclusions.decide(child_rel, st, root_dev)
            if decision is Decision.LEAVE_OUT:
                continue
            self._count(st)
            if decision is Decision.KEEP and stat.S_ISDIR(st.st_mode) and not self._scan(child, child_rel, root_dev):
                return False
        return True

    def _count(self, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            return
        if st.st_nlink > 1:
            if (st.st_dev, st.st_ino) in self._seen:
                return
            self._seen.add((st.st_dev, st.st_ino))
        self.files += 1
        self.bytes += st.st_size


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
