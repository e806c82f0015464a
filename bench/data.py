"""The benchmark's data, made once and kept in a cache folder, and the helpers that move it.

Words:
- **version**: one folder in the cache holding one state of a dataset.
- **source**: successive Django releases, sdists fetched once with `pip download`
  and each unpacked into its own version folder: a real tree of about 7,000
  files of which the next release changes a few dozen.
- **image**: a disk-image-like file (`disk.img`) generated from a seed, so every
  machine makes the same bytes: runs of several MiB of zeros (about 30%),
  compressible text and random bytes; each later version copies the previous
  one and writes EDITS blocks of 4 KiB at random offsets.

Versions are built in a temporary folder and renamed when complete, so an
interrupted run never leaves a half-made version to be reused. The cache is
`$SKYVAULT_BENCH_CACHE`, default `~/.cache/skyvault-bench`.
"""
from __future__ import annotations

import filecmp
import functools
import hashlib
import os
import random
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

MiB = 1 << 20
GiB = 1 << 30
DJANGO_VERSIONS = ("5.1.1", "5.1.2", "5.1.3", "5.1.4")
IMAGE_NAME = "disk.img"
IMAGE_SEED = 20261125
IMAGE_REGIONS = {"zero": 3, "text": 3, "random": 4}  # relative weights of the kinds of region
REGION_MIB = (2, 12)  # a region's length in MiB, drawn uniformly
IMAGE_VERSIONS = 3
EDITS = 50
EDIT_SIZE = 4096


def cache_dir() -> Path:
    return Path(os.environ.get("SKYVAULT_BENCH_CACHE") or Path.home() / ".cache" / "skyvault-bench")


def _made_once(final: Path, build: Callable[[Path], None]) -> Path:
    """`final`, built by `build(folder)` in a temporary folder beside it unless it already exists."""
    if not final.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            build(folder)
            folder.rename(final)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return final


# -- source: Django releases

def source_versions(cache: Path, count: int) -> list[Path]:
    return [_made_once(cache / "source" / f"django-{v}", functools.partial(_unpack_django, cache, v))
            for v in DJANGO_VERSIONS[:count]]


def _unpack_django(cache: Path, version: str, folder: Path) -> None:
    sdists = cache / "sdists"
    tarball = _sdist(sdists, version)
    if tarball is None:
        print(f"fetching the Django {version} sdist into {sdists}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "-d", str(sdists), f"Django=={version}"], check=True)
        tarball = _sdist(sdists, version)
        if tarball is None:
            raise SystemExit(f"bench: pip download left no Django {version} sdist in {sdists}")
    with tarfile.open(tarball) as tar:
        tar.extractall(folder, filter="data")
    # The sdist holds one top folder (django-X.Y.Z); its contents are the version.
    (top,) = folder.iterdir()
    for child in top.iterdir():
        child.rename(folder / child.name)
    top.rmdir()


def _sdist(sdists: Path, version: str) -> Path | None:
    # Older releases are named Django-X.Y.Z.tar.gz, newer ones django-X.Y.Z.tar.gz.
    if sdists.is_dir():
        for path in sdists.iterdir():
            if path.name.lower() == f"django-{version}.tar.gz":
                return path
    return None


# -- image: a generated disk image

def image_versions(cache: Path, size: int, count: int) -> list[Path]:
    versions: list[Path] = []
    for n in range(1, count + 1):
        build = (functools.partial(_write_image, size) if n == 1
                 else functools.partial(_edit_image, versions[-1], size, n))
        versions.append(_made_once(cache / "images" / f"{size // MiB}MiB" / f"v{n}", build))
    return versions


def _write_image(size: int, folder: Path) -> None:
    print(f"generating a {size // MiB} MiB disk image in {folder.parent}", flush=True)
    rng = random.Random(IMAGE_SEED)
    # Text regions draw lines from one vocabulary: they compress (zstd about 6x) but never repeat whole.
    words = ["".join(rng.choices("etaoinshrdlcumwfgypbvkjxqz", k=rng.randint(2, 10))) for _ in range(2000)]
    lines = [(" ".join(rng.choices(words, k=rng.randint(3, 14))) + "\n").encode() for _ in range(4096)]
    kinds, weights = list(IMAGE_REGIONS), list(IMAGE_REGIONS.values())
    with open(folder / IMAGE_NAME, "wb") as f:
        left = size
        while left:
            kind = rng.choices(kinds, weights)[0]
            for _ in range(rng.randint(*REGION_MIB)):
                n = min(MiB, left)
                if kind == "zero":
                    f.write(bytes(n))
                elif kind == "random":
                    f.write(rng.randbytes(n))
                else:
                    text = b""
                    while len(text) < n:
                        text += b"".join(rng.choices(lines, k=512))
                    f.write(text[:n])
                left -= n
                if not left:
                    break


def _edit_image(previous: Path, size: int, version: int, folder: Path) -> None:
    shutil.copyfile(previous / IMAGE_NAME, folder / IMAGE_NAME)
    rng = random.Random(IMAGE_SEED + version)
    with open(folder / IMAGE_NAME, "r+b") as f:
        for _ in range(EDITS):
            f.seek(rng.randrange(size // EDIT_SIZE) * EDIT_SIZE)
            f.write(rng.randbytes(EDIT_SIZE))


# -- moving and checking trees

def sync_tree(src: Path, dst: Path) -> None:
    """Make `dst` hold what `src` holds, rewriting only the files whose content differs, as a
    `git checkout` would: unchanged files keep their inode and times, so every tool's
    incremental backup sees only the real change."""
    dst.mkdir(parents=True, exist_ok=True)
    wanted = set(os.listdir(src))
    for name in os.listdir(dst):
        if name not in wanted:
            _remove(dst / name)
    for name in sorted(wanted):
        s, d = src / name, dst / name
        if s.is_symlink():
            if not d.is_symlink() or os.readlink(d) != os.readlink(s):
                _remove(d)
                os.symlink(os.readlink(s), d)
        elif s.is_dir():
            if d.is_symlink() or (d.exists() and not d.is_dir()):
                _remove(d)
            sync_tree(s, d)
        else:
            if d.is_symlink() or d.is_dir():
                _remove(d)
            if not d.exists() or not filecmp.cmp(s, d, shallow=False):
                shutil.copyfile(s, d)
            # chmod changes the ctime even to the same mode, which would make tools re-read the file.
            if stat.S_IMODE(os.stat(s).st_mode) != stat.S_IMODE(os.stat(d).st_mode):
                shutil.copymode(s, d)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def tree_bytes(root: Path) -> int:
    """Bytes of the regular files under `root`: what a backup of it reads at most."""
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def digest(root: Path) -> dict[str, tuple]:
    """Relative path → what a restore must reproduce: the content hash of a file, a symlink's
    target, or that it is a directory. Times and modes are left out: tools restore them differently."""
    found: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = ("symlink", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir",)
            else:
                with open(path, "rb") as f:
                    found[rel] = ("file", hashlib.file_digest(f, "sha256").hexdigest())
    return found
