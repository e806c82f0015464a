"""How every command speaks: text for people, or with `--json` one JSON object per line on
stdout for scripts; progress on a terminal only; `--quiet` and `--verbose`.

Every command takes the same three options (cli adds them to each one, sub-commands included):
- `--json`: stdout carries only JSON objects, one per line, each with a "type" field: the
  command's listing entries (their own types, e.g. "point", "entry"), "progress" (at most one a
  second while a long command runs, and a last one when it ends), "warning", "error" and "note"
  (what the text mode says on stderr), one "summary" object last (its "command" names the command), and
  "error" (cli.main, with the "exit_code") when the command fails. Field names are snake_case
  and stable (docs/design.md, "JSON output"). Exit codes are the same in both modes.
- `--quiet`: neither progress nor notes; warnings and errors still (stderr, or JSON lines).
- `--verbose`: also the detail notes (each file a backup reads, ...).

A progress bar (tqdm) is drawn on stderr when both stdout and stderr are a terminal and neither
`--json` nor `--quiet` is given; otherwise progress prints nothing in text mode, so a log or a
pipe gets the summary only.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any, TextIO

PROGRESS_EVERY_S = 1.0
WARNING_PREFIXES = ("warning: ", "error: ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--json", action="store_true",
                       help="print JSON objects, one per line, on stdout (docs/design.md, 'JSON output')")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress and no notes; warnings still")
    group.add_argument("-v", "--verbose", action="store_true", help="more detail (each file read, ...)")


class Output:
    def __init__(self, json_mode: bool = False, quiet: bool = False, verbose: bool = False,
                 out: TextIO | None = None, err: TextIO | None = None, command: str = ""):
        self.json, self.quiet, self.verbose = json_mode, quiet, verbose and not quiet
        self.command = command
        self._out, self._err = out, err
        self._lock = threading.Lock()
        self._bar: Any = None  # the tqdm bar drawn now, cleared around other stderr lines

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Output":
        return cls(getattr(args, "json", False), getattr(args, "quiet", False), getattr(args, "verbose", False),
                   command=" ".join(filter(None, (getattr(args, "command", ""), getattr(args, "action", "")))))

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err or sys.stderr

    def _line(self, stream: TextIO, text: str) -> None:
        with self._lock:
            if self._bar is not None and stream is self.err:
                self._bar.clear()
            print(text, file=stream, flush=True)
            if self._bar is not None and stream is self.err:
                self._bar.refresh()

    # --- text for people ---
    def say(self, text: str) -> None:
        """A line of the command's result, on stdout; nothing with --json (emit the data instead)."""
        if not self.json:
            self._line(self.out, text)

    def note(self, text: str) -> None:
        """What the command is doing (stderr); nothing with --quiet. A note that starts with
        "warning: " or "error: " (the agent's progress callbacks say them so) is a warning."""
        if text.removeprefix("skyvault: ").startswith(WARNING_PREFIXES):
            self.warn(text)
        elif self.quiet:
            return
        elif self.json:
            self.emit("note", message=text)
        else:
            self._line(self.err, text)

    def detail(self, text: str) -> None:
        """A note only --verbose wants."""
        if self.verbose:
            self.note(text)

    def warn(self, text: str) -> None:
        if self.json:
            bare = text.removeprefix("skyvault: ")
            level = "error" if bare.startswith("error: ") else "warning"
            self.emit(level, message=bare.split(": ", 1)[1] if bare.startswith(WARNING_PREFIXES) else text)
        else:
            self._line(self.err, text)

    # --- JSON for scripts ---
    def emit(self, type_: str, **fields: Any) -> None:
        """One JSON object of this type on its own line, with --json only."""
        if "type" in fields:  # it would hide the object's own type
            raise ValueError(f"a {type_!r} object cannot have a field named 'type'")
        if self.json:
            self._line(self.out, json.dumps({"type": type_, **fields}, sort_keys=False, default=str))

    def summary(self, **fields: Any) -> None:
        """The command's last JSON object: what it did, in the fields its text summary says."""
        self.emit("summary", command=self.command, **fields)

    def error(self, message: str, exit_code: int) -> None:
        if self.json:
            self.emit("error", message=message, exit_code=exit_code)
        else:
            self._line(self.err, f"skyvault: error: {message}")

    def progress(self, what: str, total_files: int | None = None, total_bytes: int | None = None) -> "Progress":
        return Progress(self, what, total_files, total_bytes)


class Progress:
    """Files and bytes done of a long command, its rate, ETA and current file: a tqdm bar on a
    terminal, "progress" JSON lines (at most one a second) with --json, else nothing. Updated
    from any thread; a context manager that ends the bar and prints the last JSON line."""

    def __init__(self, output: Output, what: str, total_files: int | None, total_bytes: int | None,
                 clock=time.monotonic):
        self.output, self.what, self.clock = output, what, clock
        self.total_files, self.total_bytes = total_files, total_bytes
        self.files = self.bytes = 0
        self.current = ""
        self.started = clock()
        self._last_emit = self.started
        self._lock = threading.Lock()
        self._bar = None
        self.drawn = not output.json and not output.quiet and output.out.isatty() and output.err.isatty()
        self.emitted = output.json and not output.quiet  # as "progress" JSON lines
        self.shown = self.drawn or self.emitted  # anywhere: else its figures are of no use to anyone
        if self.drawn:
            from tqdm import tqdm  # only on a terminal: the agent's start-up does not pay for it
            self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc=what,
                             file=output.err, dynamic_ncols=True, leave=False)
            output._bar = self._bar

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_totals(self, files: int | None = None, bytes_: int | None = None) -> None:
        with self._lock:
            self.total_files = files if files is not None else self.total_files
            self.total_bytes = bytes_ if bytes_ is not None else self.total_bytes
            if self._bar is not None and self.total_bytes is not None:
                self._bar.total = self.total_bytes
                self._bar.refresh()

    def update(self, files: int = 0, bytes_: int = 0, current: str | None = None) -> None:
        with self._lock:
            self.files += files
            self.bytes += bytes_
            if current is not None:
                self.current = current
            if self._bar is not None:
                self._bar.set_postfix_str(f"{self.files} files {_tail(self.current)}", refresh=False)
                self._bar.update(bytes_)
            now = self.clock()
            if self.emitted and now - self._last_emit >= PROGRESS_EVERY_S:
                self._last_emit = now
                self._emit(now)

    def fields(self, now: float | None = None) -> dict[str, Any]:
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = self.bytes / elapsed
        remaining = None
        if self.total_bytes and rate > 0 and self.bytes <= self.total_bytes:
            remaining = round((self.total_bytes - self.bytes) / rate, 1)
        return {"what": self.what, "files_done": self.files, "bytes_done": self.bytes,
                "total_files": self.total_files, "total_bytes": self.total_bytes,
                "seconds_elapsed": round(elapsed, 1), "bytes_per_second": round(rate),
                "seconds_remaining": remaining, "current": self.current}

    def _emit(self, now: float) -> None:
        self.output.emit("progress", **self.fields(now))

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self.output._bar = self._bar = None
            if self.emitted:
                self._emit(self.clock())


def _tail(path: str, width: int = 40) -> str:
    return path if len(path) <= width else "…" + path[-(width - 1):]
