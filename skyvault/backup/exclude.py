"""Exclusions: what a backup leaves out of its walk (docs/design.md, "Exclusions and item
configuration").

Words:
- Rules: the exclusion options as the user gave them (ExclusionRules), saved with an item's
  configuration (skyvault.items); compiled into Exclusions once per backup, which reads the
  exclude files then.
- Root-relative path: an entry's path below its backup root, `/`-separated, without the root's
  own name: what patterns match, as a .gitignore's patterns match paths below its directory.
  A root itself is never excluded: it was named on purpose.
- Pattern: gitignore syntax (pathspec's GitIgnoreSpec). Without a slash but at its end
  (`node_modules`, `*.tmp`) it matches a name at any depth; with a leading or middle slash
  (`/build`, `docs/*.pdf`) it is anchored at the root's top; `**` matches any number of
  directories; a trailing `/` matches directories only; `!pattern` re-includes what an
  earlier pattern excluded, the last matching pattern deciding. A directory that is excluded
  is not descended into, so nothing below it can be re-included (as in git). A pattern
  ending in `/**` (`logs/**`) matches what is inside the directory, not the directory: it is
  kept, empty unless a negation re-includes something in it.
- Tag file: a file whose presence marks a directory whose contents are left out: a valid
  `CACHEDIR.TAG` (--exclude-caches, https://bford.info/cachedir/) or a name given to
  --exclude-if-present. As restic does, the directory and its tag files are kept, its other
  contents left out (restic, cmd/restic/exclude.go: "do not exclude the tagfile itself").
- Mount point (--one-file-system): a directory on another file system (st_dev) than its
  root: kept as an empty directory, as restic and tar do; any other entry on another file
  system is left out. A bind mount of the same file system is not one.
- Size limit (--exclude-larger-than): a regular file strictly larger is left out; one of
  exactly the limit is kept (restic's rule). Sizes take binary units: K = 1024, M, G, T.
- Ignore case: patterns and paths compared lowercased (restic's --iexclude does so).
"""
from __future__ import annotations

import enum
import os
import re
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from skyvault.vaultclient import AgentError

CACHEDIR_TAG = "CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
SIZE = re.compile(r"(\d+)\s*([KMGT]?)(?:i?B)?\Z", re.IGNORECASE)
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes of a size such as `512K`, `100M`, `2G` or `4096` (binary units; `KiB`, `MB` read
    as K and M too). ValueError names a bad one."""
    found = SIZE.match(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a size: give bytes, or a number with K, M, G or T (binary: "
                         f"1K = 1024 bytes), e.g. 100M")
    return int(found[1]) * UNITS[found[2].upper()]


def read_pattern_file(path: str) -> list[str]:
    """The patterns of an exclude file: one a line, blank lines and lines starting with `#`
    ignored. AgentError if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise AgentError(f"cannot read exclude file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise AgentError(f"exclude file {path} is not UTF-8 text: {e}") from None
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


@dataclass(frozen=True)
class ExclusionRules:
    """The exclusion options of a backup, as given (an exclude file by its path, read at each
    backup); saved in the item's configuration as `to_doc` gives them."""

    patterns: tuple[str, ...] = ()
    pattern_files: tuple[str, ...] = ()
    exclude_caches: bool = False
    if_present: tuple[str, ...] = ()
    larger_than: int | None = None
    one_file_system: bool = False
    ignore_case: bool = False

    def __bool__(self) -> bool:
        return self != ExclusionRules()

    def to_doc(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_doc(cls, doc: object, where: str) -> "ExclusionRules":
        """The rules of a saved configuration; AgentError naming `where` and the field if the
        document is not one."""
        if not isinstance(doc, dict):
            raise AgentError(f"{where}: 'exclusions' must be an object")
        unknown = set(doc) - {f.name for f in fields(cls)}
        if unknown:
            raise AgentError(f"{where}: unknown exclusion field {sorted(unknown)[0]!r}")
        values: dict = {}
        for f in fields(cls):
            if f.name not in doc:
                continue
            value = doc[f.name]
            if f.type.startswith("tuple"):
                if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                    raise AgentError(f"{where}: exclusions.{f.name} must be a list of strings")
                value = tuple(value)
            elif f.type == "bool":
                if not isinstance(value, bool):
                    raise AgentError(f"{where}: exclusions.{f.name} must be true or false")
            elif value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise AgentError(f"{where}: exclusions.{f.name} must be a number of bytes or null")
            values[f.name] = value
        return cls(**values)

    def compile(self) -> "Exclusions":
        """Read the exclude files and compile the patterns: AgentError names a file that cannot
        be read or a pattern that is not one, before the backup starts."""
        lines = list(self.patterns)
        for path in self.pattern_files:
            lines.extend(read_pattern_file(path))
        if self.ignore_case:
            lines = [line.lower() for line in lines]
        if not lines:
            return Exclusions(self, None, [])
        import pathspec  # only when there are patterns: not on every command's start-up

        for line in lines:  # one at a time, to name the one that is not a pattern
            try:
                pathspec.GitIgnoreSpec.from_lines([line])
            except ValueError as e:  # pathspec's GitIgnorePatternError
                raise AgentError(f"exclude pattern {line!r} is not a valid pattern: {e}") from None
        return Exclusions(self, pathspec.GitIgnoreSpec.from_lines(lines), lines)


class Decision(enum.Enum):
    KEEP = "keep"
    LEAVE_OUT = "leave out"
    KEEP_EMPTY = "keep the directory, leave out its contents"


@dataclass
class Exclusions:
    """The compiled rules; read only once made, so the walk and its scanner thread share them."""

    rules: ExclusionRules
    spec: Any  # a pathspec.GitIgnoreSpec of the lines; None without patterns
    lines: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._negations = any(line.startswith("!") for line in self.lines)
        self._tags = ((CACHEDIR_TAG,) if self.rules.exclude_caches else ()) + tuple(self.rules.if_present)

    def decide(self, rel: str, st: os.stat_result, root_dev: int) -> Decision:
        """What becomes of the entry at root-relative path `rel`, lstat'ed as `st`, below a root on
        device `root_dev`."""
        is_dir = stat.S_ISDIR(st.st_mode)
        if self.rules.one_file_system and st.st_dev != root_dev:
            return Decision.KEEP_EMPTY if is_dir else Decision.LEAVE_OUT
        if self.lines:
            path = rel.lower() if self.rules.ignore_case else rel
            found = self.spec.check_file(path + "/" if is_dir else path)
            if found.include:
                if is_dir and str(self.spec.patterns[found.index].pattern).rstrip().endswith("/**"):
                    # It matches what is inside, not the directory: a negation may re-include some.
                    return Decision.KEEP if self._negations else Decision.KEEP_EMPTY
                return Decision.LEAVE_OUT
        if (self.rules.larger_than is not None and stat.S_ISREG(st.st_mode)
                and st.st_size > self.rules.larger_than):
            return Decision.LEAVE_OUT
        return Decision.KEEP

    def tag_files(self, dir_fd: int) -> list[tuple[str, bool]] | None:
        """The tag files in the directory open as `dir_fd`, as (name, is a directory), if it has
        any: then only they are kept of its contents. None: it has none."""
        found = []
        for name in self._tags:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            # A CACHEDIR.TAG without the signature marks nothing, unless --exclude-if-present names it.
            only_as_cache_tag = name == CACHEDIR_TAG and name not in self.rules.if_present
            if only_as_cache_tag and not _valid_cachedir_tag(dir_fd):
                continue
            found.append((name, stat.S_ISDIR(st.st_mode)))
        return found or None


def _valid_cachedir_tag(dir_fd: int) -> bool:
    """Whether the directory's CACHEDIR.TAG is a regular file starting with the signature (never
    read through a link, never waiting on a FIFO)."""
    try:
        fd = os.open(CACHEDIR_TAG, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return False  # a link, or unreadable: not a valid tag
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = b""
        while len(head) < len(CACHEDIR_SIGNATURE):
            more = os.read(fd, len(CACHEDIR_SIGNATURE) - len(head))
            if not more:
                break
            head += more
        return head == CACHEDIR_SIGNATURE
    except OSError:
        return False
    finally:
        os.close(fd)


NO_EXCLUSIONS = ExclusionRules().compile()


def absolute_files(paths: list[str]) -> tuple[str, ...]:
    """Exclude files by absolute path, as the item's configuration keeps them (a scheduled backup
    runs in another directory)."""
    return tuple(str(Path(os.path.abspath(p))) for p in paths)
