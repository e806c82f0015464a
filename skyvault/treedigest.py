"""A digest of a directory tree (content hashes, types, modes, mtimes, symlink targets),
to check that a restore is byte-identical to what was backed up."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def tree_digest(root: str | Path) -> dict[str, tuple]:
    """Relative path → (type, mode, mtime_ns, sha256 or symlink target). The root's own
    metadata is left out, since a restore target directory is not part of the backup."""
    root = Path(root)
    digest: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                digest[rel] = ("symlink", st.st_mtime_ns, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                digest[rel] = ("dir", mode, st.st_mtime_ns)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                digest[rel] = ("file", mode, st.st_mtime_ns, st.st_size, h.hexdigest())
    return digest


def differences(expected: dict[str, tuple], actual: dict[str, tuple], limit: int = 10) -> list[str]:
    out = []
    for rel in sorted(set(expected) | set(actual)):
        if expected.get(rel) != actual.get(rel):
            out.append(f"{rel}: expected {expected.get(rel)}, got {actual.get(rel)}")
            if len(out) >= limit:
                break
    return out
