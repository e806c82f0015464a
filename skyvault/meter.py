"""What a long backup, restore or check tells as it goes (a Meter): files and bytes done, of
totals once it knows them, and the path at work; skyvault.commands.output.Progress is the
CLI's, Unmetered the one nobody watches. The engines take a Meter and never import the CLI."""
from __future__ import annotations

from typing import Protocol


class Meter(Protocol):
    """Called from any thread. `shown`: whether anyone sees it (a backup scans the tree for its
    totals only then)."""

    shown: bool

    def set_totals(self, files: int | None = None, bytes_: int | None = None) -> None: ...

    def update(self, files: int = 0, bytes_: int = 0, current: str | None = None) -> None: ...


class Unmetered:
    """The meter of a backup, restore or check nobody watches."""

    shown = False

    def set_totals(self, files: int | None = None, bytes_: int | None = None) -> None:
        pass

    def update(self, files: int = 0, bytes_: int = 0, current: str | None = None) -> None:
        pass
