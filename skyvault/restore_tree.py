"""The restore's writes into its target directory, none of which follows a link.

Every create, mkdir, rename, chown, chmod, utime and unlink is made relative to a directory
descriptor opened with O_NOFOLLOW | O_DIRECTORY, walking down from the target's own
descriptor one name at a time. Where the point has a directory and the target holds
something else (a symlink above all), that is removed and the directory made: a link in the
target is never followed, so a restore writes nothing outside it (docs/design.md, "Restore").

Every other entry is made under a temporary name in its directory and renamed over whatever
had its name; so a type change in an existing target (dir, file, symlink, ...) replaces the
old entry, as restic's restorer does, and a directory in the way is removed without
following its links (shutil.rmtree on a descriptor).

Words:
- Target: the directory the restore writes into; its own path is the one path taken as the
  user gave it.
- Open directories: the directories from the target down to the current entry's parent,
  each a descriptor. The walk order of the manifest makes them a stack; a directory's mode,
  owner, attributes and times are set as the restore leaves it, after its contents, which
  change its mtime.
- Owners: whether ownership is restored (the restore runs as root). Only then are device
  nodes made, and setuid and setgid bits set on what is not a directory: without its owner
  a setuid file would run as whoever restored it.
- Link sources: the paths later hard links of the point link to; the inode the restore gave
  each is remembered, so a link is only ever made to what this restore wrote.
"""
from __future__ import annotations

import errno
import functools
import grp
import itertools
import os
import pwd
import secrets
import shutil
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

from shared.messages import ManifestEntry
from skyvault.vaultclient import AgentError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
SETID_BITS = stat.S_ISUID | stat.S_ISGID
TEMP_PREFIX = ".skyvault-"
DEVICE_KINDS = {"chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK}


class EntryFailed(AgentError):
    """An entry that could not be restored; the message says why."""


class NotRestored(AgentError):
    """An entry left out on purpose (a device node without root): a warning, not a failure."""


@dataclass
class _OpenDir:
    name: str
    fd: int
    entry: ManifestEntry | None  # None: a directory made only to reach a selected entry


class Target:
    def __init__(self, path: str, *, owners: bool, link_sources: set[str],
                 warn: Callable[[str], None], fail: Callable[[str, str], None]):
        os.makedirs(path, exist_ok=True)
        self._root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._open: list[_OpenDir] = []
        self.owners, self._link_sources = owners, link_sources
        self._inodes: dict[str, tuple[int, int]] = {}
        self._warn, self._fail = warn, fail
        self._temp_prefix, self._temp_count = f"{TEMP_PREFIX}{secrets.token_hex(8)}-", itertools.count()

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._leave(0)
        finally:
            os.close(self._root)

    # The entries

    def directory(self, entry: ManifestEntry) -> None:
        parent, name = self._parent(entry.path)
        fd = self._directory(parent, name, 0o700)
        self._open.append(_OpenDir(name, fd, entry))
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o700 != 0o700:  # an earlier restore's read-only directory: its mode is set again on leaving
            try:
                os.fchmod(fd, mode | 0o700)
            except PermissionError:
                pass  # not ours: writing into it fails, and says so, entry by entry

    @contextmanager
    def new_file(self, entry: ManifestEntry) -> Iterator[BinaryIO]:
        """A new file for `entry`'s bytes; once the block ends without an error it gets the
        entry's metadata and its name, and otherwise disappears."""
        parent, name = self._parent(entry.path)
        tmp, fd = self._temporary(parent, lambda tmp: os.open(tmp, NEW_FILE_FLAGS, 0o600, dir_fd=parent))
        try:
            # Unbuffered: a file's bytes are written from its chunks' buffers as they are (no copy
            # into a buffer of the file object's own, and one object fewer per file).
            with open(fd, "wb", buffering=0) as out:
                yield out
                self._set_metadata(out.fileno(), entry)
                inode = self._linked_inode(entry.path, lambda: os.fstat(out.fileno()))
            self._replace(parent, tmp, name)
        except BaseException:
            _unlink_quietly(parent, tmp)
            raise
        self._note_inode(entry.path, inode)

    def symlink(self, entry: ManifestEntry) -> None:
        parent, name = self._parent(entry.path)
        tmp, _ = self._temporary(parent, lambda tmp: os.symlink(entry.target, tmp, dir_fd=parent))
        self._place(parent, tmp, name, entry)

    def special(self, entry: ManifestEntry) -> None:
        """A FIFO, or a device node (as root only); never opened."""
        if entry.type in DEVICE_KINDS:
            if not self.owners:
                raise NotRestored(f"a {'character' if entry.type == 'chardev' else 'block'} device "
                                  f"({entry.major}, {entry.minor}): not made, the restore does not run as root")
            device = os.makedev(entry.major, entry.minor)
            make = functools.partial(os.mknod, mode=DEVICE_KINDS[entry.type] | 0o600, device=device)
        else:
            make = functools.partial(os.mkfifo, mode=0o600)
        parent, name = self._parent(entry.path)
        tmp, _ = self._temporary(parent, lambda tmp: make(tmp, dir_fd=parent))
        self._place(parent, tmp, name, entry)

    def hard_link(self, entry: ManifestEntry) -> None:
        """A link to the inode this restore made for the entry's first path."""
        inode = self._inodes.get(entry.target)
        if inode is None:
            raise EntryFailed(f"a hard link to {entry.target!r}, which this restore did not restore")
        parent, name = self._parent(entry.path)
        *dirs, source_name = entry.target.split("/")
        source_dir = self._open_existing(dirs)
        try:
            found = os.stat(source_name, dir_fd=source_dir, follow_symlinks=False)
            if (found.st_dev, found.st_ino) != inode:
                raise EntryFailed(f"{entry.target!r}, which it links to, changed since this restore wrote it")
            try:
                existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if (existing.st_dev, existing.st_ino) == inode:
                    return  # linked already: a rename onto it would leave the temporary name
            except FileNotFoundError:
                pass
            tmp, _ = self._temporary(parent, lambda tmp: os.link(source_name, tmp, src_dir_fd=source_dir,
                                                                  dst_dir_fd=parent, follow_symlinks=False))
        finally:
            os.close(source_dir)
        try:
            self._replace(parent, tmp, name)
        except BaseException:
            _unlink_quietly(parent, tmp)
            raise

    # Directories

    def _parent(self, path: str) -> tuple[int, str]:
        """The descriptor of `path`'s directory, and its name in it."""
        *dirs, name = path.split("/")
        keep = 0
        while keep < min(len(self._open), len(dirs)) and self._open[keep].name == dirs[keep]:
            keep += 1
        self._leave(keep)
        for dir_name in dirs[keep:]:
            self._open.append(_OpenDir(dir_name, self._directory(self._fd(), dir_name, 0o777), None))
        return self._fd(), name

    def _fd(self) -> int:
        return self._open[-1].fd if self._open else self._root

    def _directory(self, parent: int, name: str, new_mode: int) -> int:
        """The directory `name` in `parent`, made if missing; anything else by that name (a
        symlink, a file) is removed first, never followed."""
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            os.unlink(name, dir_fd=parent)
        os.mkdir(name, new_mode, dir_fd=parent)
        return os.open(name, DIR_FLAGS, dir_fd=parent)

    def _open_existing(self, dirs: list[str]) -> int:
        """A new descriptor of the directory `dirs` below the target, which must exist; no link followed."""
        fd = os.dup(self._root)
        for name in dirs:
            try:
                below = os.open(name, DIR_FLAGS, dir_fd=fd)
            finally:
                os.close(fd)
            fd = below
        return fd

    def _leave(self, depth: int) -> None:
        """Close the open directories below `depth`, deepest first, each getting its metadata."""
        while len(self._open) > depth:
            left = self._open.pop()
            try:
                if left.entry is not None:
                    self._set_metadata(left.fd, left.entry)
            except OSError as e:
                self._fail(left.entry.path, e.strerror or str(e))
            finally:
                os.close(left.fd)

    # Names and metadata

    def _temporary(self, parent: int, make: Callable[[str], object]) -> tuple[str, object]:
        """A new name in `parent` for what `make` makes (refused if it exists): this restore's
        random token and a count, rather than new random bytes each, a getrandom call per file."""
        while True:
            tmp = f"{self._temp_prefix}{next(self._temp_count):x}"
            try:
                return tmp, make(tmp)
            except FileExistsError:
                continue

    def _place(self, parent: int, tmp: str, name: str, entry: ManifestEntry) -> None:
        try:
            self._set_metadata_at(parent, tmp, entry)
            inode = self._linked_inode(entry.path, lambda: os.stat(tmp, dir_fd=parent, follow_symlinks=False))
            self._replace(parent, tmp, name)
        except BaseException:
            _unlink_quietly(parent, tmp)
            raise
        self._note_inode(entry.path, inode)

    @staticmethod
    def _replace(parent: int, tmp: str, name: str) -> None:
        try:
            os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except IsADirectoryError:
            # A directory (of an earlier restore) where the point has something else.
            shutil.rmtree(name, dir_fd=parent)
            os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)

    def _linked_inode(self, path: str, take: Callable[[], os.stat_result]) -> tuple[int, int] | None:
        """(st_dev, st_ino) of the new inode of `path`, as `take` stats it before it is put in
        place, if later hard links link to it; None, and no stat, for any other path."""
        if path not in self._link_sources:
            return None
        st = take()
        return st.st_dev, st.st_ino

    def _note_inode(self, path: str, inode: tuple[int, int] | None) -> None:
        if inode is not None:
            self._inodes[path] = inode

    def _owned(self, entry: ManifestEntry) -> bool:
        return self.owners and entry.uid is not None

    def _mode(self, entry: ManifestEntry) -> int:
        if entry.type == "dir" or not entry.mode & SETID_BITS or self._owned(entry):
            return entry.mode
        self._warn(f"{entry.path}: setuid/setgid bits not restored: its owner is not restored "
                   f"(only a restore as root restores owners)")
        return entry.mode & ~SETID_BITS

    def _set_metadata(self, fd: int, entry: ManifestEntry) -> None:
        """A file's or directory's metadata, through its descriptor. The owner first: a chown
        clears setuid bits and file capabilities, which the mode and attributes then set."""
        if self._owned(entry):
            os.fchown(fd, *_ids(entry))
        for name, value in entry.xattrs:
            self._set_xattr(entry, fd, name, value)
        os.fchmod(fd, self._mode(entry))
        os.utime(fd, ns=(entry.mtime, entry.mtime))

    def _set_metadata_at(self, parent: int, tmp: str, entry: ManifestEntry) -> None:
        """A symlink's, FIFO's or device's metadata, by name in `parent`, not following the name."""
        if self._owned(entry):
            os.chown(tmp, *_ids(entry), dir_fd=parent, follow_symlinks=False)
        for name, value in entry.xattrs:
            # The directory's descriptor as a path, for l*xattr, which take no dir_fd.
            self._set_xattr(entry, f"/proc/self/fd/{parent}/{tmp}", name, value)
        if entry.type != "symlink":  # a symlink's own mode means nothing on Linux
            os.chmod(tmp, self._mode(entry), dir_fd=parent, follow_symlinks=False)
        os.utime(tmp, ns=(entry.mtime, entry.mtime), dir_fd=parent, follow_symlinks=False)

    def _set_xattr(self, entry: ManifestEntry, where: int | str, name: str, value: bytes) -> None:
        try:
            os.setxattr(where, name, value, follow_symlinks=isinstance(where, int))  # a path: l*xattr
        except OSError as e:
            self._warn(f"{entry.path}: extended attribute {name} not restored: {e.strerror or e}")


def _ids(entry: ManifestEntry) -> tuple[int, int]:
    """The entry's owner on this machine: by name where this machine knows the name, as tar
    does, else by the recorded id."""
    return _uid(entry.user, entry.uid), _gid(entry.group, entry.gid)


@functools.lru_cache(maxsize=1024)
def _uid(user: str | None, recorded: int) -> int:
    try:
        return pwd.getpwnam(user).pw_uid if user is not None else recorded
    except KeyError:
        return recorded


@functools.lru_cache(maxsize=1024)
def _gid(group: str | None, recorded: int) -> int:
    try:
        return grp.getgrnam(group).gr_gid if group is not None else recorded
    except KeyError:
        return recorded


def _unlink_quietly(parent: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
