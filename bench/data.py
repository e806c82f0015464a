"""The benchmark's data, made once and kept in a cache folder, and the helpers that move it.

Words:
- **version**: one folder in the cache holding one state of a dataset.
- **source**: successive Django releases, sdists fetched once with `pip download`
  and each unpacked into its own version folder: a real tree of about 7,000
  files of which the next release changes a few dozen.
- **history**: several projects' successive minor releases (HISTORY_VERSIONS),
  sdists fetched the same way, each version one tree of one folder per project:
  every version changes files all over the tree, and whole subtrees.
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
# Each version takes every project one or more minor releases on (SQLAlchemy 1.4 to 2.0 between
# the first two): changes all over the tree, where Django's patch releases change a few dozen files.
HISTORY_VERSIONS = (
    {"requests": "2.27.0", "Flask": "2.1.0", "Werkzeug": "2.1.0", "pytest": "7.0.0", "SQLAlchemy": "1.4.46"},
    {"requests": "2.28.0", "Flask": "2.2.0", "Werkzeug": "2.2.0", "pytest": "7.1.0", "SQLAlchemy": "2.0.0"},
    {"requests": "2.29.0", "Flask": "2.3.0", "Werkzeug": "2.3.0", "pytest": "7.2.0", "SQLAlchemy": "2.0.10"},
    {"requests": "2.31.0", "Flask": "3.0.0", "Werkzeug": "3.0.0", "pytest": "7.4.0", "SQLAlchemy": "2.0.20"},
    {"requests": "2.32.3", "Flask": "3.1.0", "Werkzeug": "3.1.0", "pytest": "8.0.0", "SQLAlchemy": "2.0.30"},
)
QUICK_HISTORY_VERSIONS = 3
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


# -- source and history: sdists of real releases

def source_versions(cache: Path, count: int) -> list[Path]:
    return [_made_once(cache / "source" / f"django-{v}",
                       lambda folder, v=v: _unpack_sdist(_fetched_sdist(cache, "Django", v), folder))
            for v in DJANGO_VERSIONS[:count]]


def history_versions(cache: Path, count: int) -> list[Path]:
    """The first `count` HISTORY_VERSIONS, each one tree of its projects' releases."""
    sdist = functools.partial(_fetched_sdist, cache)
    # The folder names the releases too: another list of releases is another version.
    return [_made_once(cache / "history" / f"v{n}-{_digest_of(history_label(releases))}",
                       functools.partial(_build_history, releases, sdist))
            for n, releases in enumerate(HISTORY_VERSIONS[:count], start=1)]


def _digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def history_label(releases: dict[str, str]) -> str:
    return ", ".join(f"{project} {version}" for project, version in releases.items())


def _build_history(releases: dict[str, str], sdist: Callable[[str, str], Path], folder: Path) -> None:
    """One folder per project, named without its version, so that the next version's release
    of a project lands on the same paths, as a checkout of a monorepo would."""
    for project, version in releases.items():
        (folder / project.lower()).mkdir()
        _unpack_sdist(sdist(project, version), folder / project.lower())


def _fetched_sdist(cache: Path, project: str, version: str) -> Path:
    sdists = cache / "sdists"
    tarball = _sdist(sdists, project, version)
    if tarball is None:
        print(f"fetching the {project} {version} sdist into {sdists}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "-d", str(sdists), f"{project}=={version}"], check=True)
        tarball = _sdist(sdists, project, version)
        if tarball is None:
            raise SystemExit(f"bench: pip download left no {project} {version} sdist in {sdists}")
    return tarball


def _sdist(sdists: Path, project: str, version: str) -> Path | None:
    # Older sdists keep the project's spelling (Django-5.0.tar.gz), newer ones are normalized
    # (django-5.1.tar.gz, typing_extensions-4.12.tar.gz).
    wanted = f"{_normalized(project)}-{version}.tar.gz"
    if sdists.is_dir():
        for path in sdists.iterdir():
            if _normalized(path.name) == wanted:
                return path
    return None


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-")


def _unpack_sdist(tarball: Path, folder: Path) -> None:
    with tarfile.open(tarball) as tar:
        tar.extractall(folder, filter="data")
    # An sdist holds one top folder (name-X.Y.Z); its contents are the version.
    (top,) = folder.iterdir()
    for child in top.iterdir():
        child.rename(folder / child.name)
    top.rmdir()


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


def file_count(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def changed_files(old: Path, new: Path) -> int:
    """Files of `new` that `old` does not hold at the same path with the same content."""
    changed = 0
    for dirpath, _, filenames in os.walk(new):
        for name in filenames:
            path = Path(dirpath) / name
            before = old / path.relative_to(new)
            if path.is_symlink() or not before.is_file() or not filecmp.cmp(before, path, shallow=False):
                changed += 1
    return changed


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
