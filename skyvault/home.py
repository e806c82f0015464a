"""The agent's state folder: `SKYVAULT_HOME`, or `.skyvault/` in the working directory.

It holds `stack.json` (the local stack's endpoints and pids, written by
`skyvault stack up`), `agent.json` (this machine's registration: the vault
credentials, never the passphrase), `keys.json` (the vault keys derived on
this machine at registration, so that later commands need neither the
passphrase nor the half second of Argon2id, as kopia persists its password;
not written with `register --no-remember-keys`) and `cache.sqlite` (what the
agent knows about its vault's chunks and its files, see skyvault.cache), with
SQLite's side files, and `item-ITEM.json` (an item's paths and exclusions, written by
`skyvault backup PATH... --item ITEM`, see skyvault.items).

It is its user's alone, as its credentials and keys open the vault:
- made 0700, and every file in it 0600 (create_private_file), whatever the umask;
- checked each time it is used (home): a folder, or an entry in it, that another user owns,
  or a folder that group or others can write (so someone else may have put or replaced its
  files), is refused with UnsafeStateFolder, naming it, and nothing is changed; modes of our
  own that are only too open (an older agent's 0755 folder, 0644 files) are fixed;
- no state file is written or read through a symlink: a file is written to a new temporary
  file in the folder (O_EXCL, never a link planted there) and renamed over its name, and read
  with O_NOFOLLOW.
The folder's own path is taken as the user gave it, links included, as the restore's target is.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from skyvault.vaultclient import AgentError

FOLDER_MODE = 0o700
FILE_MODE = 0o600
GROUP_AND_OTHERS = 0o077  # the mode bits an entry of the state folder must not have


class NotConfigured(RuntimeError):
    """A command needs state that an earlier command writes."""


class UnsafeStateFolder(AgentError):
    """The state folder, or a file in it, is not this user's alone: refused, as another user could
    read or replace the vault's credentials and keys."""


def home() -> Path:
    """The state folder's path, checked if it exists (see the module's docstring); a command
    that writes state makes it."""
    path = Path(os.environ.get("SKYVAULT_HOME") or Path.cwd() / ".skyvault").absolute()
    _check_folder(path)
    return path


def _made_home() -> Path:
    path = home()
    if not path.exists():
        path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        _check_folder(path)  # another user may have made it first, where others can write
    return path


def _check_folder(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise UnsafeStateFolder(f"the state folder {path} is not a directory") from None
    try:
        st = os.fstat(fd)
        _check_owner(f"the state folder {path}", st)
        writers = [who for who, bit in (("its group", stat.S_IWGRP), ("others", stat.S_IWOTH))
                   if st.st_mode & bit]
        if writers:
            raise UnsafeStateFolder(
                f"the state folder {path} is writable by {' and '.join(writers)}: refused, as someone else "
                f"may have put or replaced files in it; check them, then `chmod 700 {path}`")
        too_open = []
        with os.scandir(fd) as entries:
            for entry in entries:
                entry_st = entry.stat(follow_symlinks=False)
                _check_owner(str(path / entry.name), entry_st)
                if stat.S_ISREG(entry_st.st_mode) and entry_st.st_mode & GROUP_AND_OTHERS:
                    too_open.append(entry.name)
        # Fixed only once nothing is refused. The folder is ours and only we can write it: nobody
        # can put a link in a file's place meanwhile.
        if st.st_mode & GROUP_AND_OTHERS:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~GROUP_AND_OTHERS)
        for name in too_open:
            os.chmod(name, FILE_MODE, dir_fd=fd)
    finally:
        os.close(fd)


def _check_owner(what: str, st: os.stat_result) -> None:
    if st.st_uid != os.geteuid():
        raise UnsafeStateFolder(f"{what} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()}): "
                                f"refused, as its owner could read or replace this machine's credentials and "
                                f"keys; use a state folder of your own (SKYVAULT_HOME)")


def create_private_file(path: Path) -> None:
    """Create the state file `path` 0600, or take group's and others' bits off the one there;
    refused if that is a link, not a regular file, or not this user's. For a file another
    library writes, as SQLite writes the cache: before SQLite makes it (a new database gets the
    umask's mode), as SQLite gives its side files (-wal, -shm, -journal) the database file's."""
    fd = _open_state_file(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK)  # a FIFO there must not block
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeStateFolder(f"the state file {path} is not a regular file")
        _check_owner(str(path), st)
        if st.st_mode & GROUP_AND_OTHERS:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def _open_state_file(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as e:
        if e.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a link
            raise UnsafeStateFolder(f"{path} is a symbolic link: refused, as a state file is never read or "
                                    f"written through one") from None
        raise


def _read(path: Path) -> dict[str, Any]:
    with open(_open_state_file(path, os.O_RDONLY), encoding="utf-8") as f:
        return json.load(f)


def read_json(name: str, hint: str) -> dict[str, Any]:
    path = home() / name
    try:
        return _read(path)
    except FileNotFoundError:
        raise NotConfigured(f"{path} does not exist: {hint}") from None


def write_json(name: str, data: dict[str, Any]) -> Path:
    """Write the state file `name` whole or not at all: readers see the old file or the new."""
    folder = _made_home()
    # 0600, and O_EXCL | O_NOFOLLOW: a file of its own, never a link planted in the folder.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, folder / name)
    except BaseException:
        os.unlink(tmp)
        raise
    return folder / name


def stack_state() -> dict[str, Any]:
    return read_json("stack.json", "start the local stack with `skyvault stack up`")


def agent_state() -> dict[str, Any]:
    return read_json("agent.json", "register this machine with `skyvault register CREDENTIALS`")


def remove(name: str) -> None:
    (home() / name).unlink(missing_ok=True)


def read_optional_json(name: str) -> dict[str, Any] | None:
    try:
        return _read(home() / name)
    except FileNotFoundError:
        return None
