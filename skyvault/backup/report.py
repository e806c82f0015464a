"""What a backup reports: counts of what it read, uploaded and sent, what its exclusions left
out, its warnings and the state of its recovery point."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SENT = "sent"  # the commit is sent; the service has not settled the point yet
DRY_RUN = "dry run"  # nothing was written: the figures are what a backup would read and upload


@dataclass
class BackupReport:
    point_id: str | None  # None: a dry run, which makes no point
    item: str
    state: str = SENT  # then the point's PointState, once the service settled it
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0  # later paths of an inode already backed up (not in the manifest root's stats)
    specials: int = 0  # FIFOs and devices, recorded, never read (nor in the stats)
    bytes_total: int = 0
    files_read: int = 0
    bytes_read: int = 0
    files_unchanged: int = 0
    files_reused: int = 0  # read, and their bytes a file of the last backup's: its extents taken
    bytes_reused: int = 0
    chunks_referenced: int = 0
    chunks_uploaded: int = 0
    bytes_uploaded: int = 0
    chunks_deduplicated: int = 0
    chunks_adopted: int = 0  # put refused as existing: declared for the service to take from the blob
    messages: int = 0
    # Left out by the exclusions: entries that are not directories, directories (left out, or
    # kept without their contents), and the bytes of the regular files left out. What a
    # directory left out holds is never listed, so not counted.
    excluded_files: int = 0
    excluded_dirs: int = 0
    excluded_bytes: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    reason: str | None = None
    dry_run: bool = False
    tags: tuple[str, ...] = ()  # the point's (backup --tag)

    def as_stats(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("files", "dirs", "symlinks", "bytes_total", "files_read",
                                              "bytes_read", "files_unchanged", "chunks_uploaded",
                                              "bytes_uploaded")}

