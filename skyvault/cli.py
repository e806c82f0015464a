"""The `skyvault` command: the agent's commands, the operator's vault, policy and retention
commands, and the local stack.

Each command is a module of skyvault.commands; this one assembles their parsers, runs the
one asked for and maps the errors it raises to a message and an exit code (skyvault.exitcodes).
"""
from __future__ import annotations

import gc

# A short command's objects are mostly those its imports create, and the collections they
# would trigger walk the growing heap again and again: about a fifth of the CPU of a backup
# of unchanged data. Collection resumes below, once the imports are done, and gc.freeze()
# keeps those long-lived objects out of every later collection, the one at exit included.
gc.disable()

import argparse
import ctypes
import sys

from shared import crypto
from skyvault import exitcodes, home
from skyvault.commands import (backup, bill, check, deletion, diff, find, guard, ls, points, policy, register,
                               restore, retention, schedule, stack, stats, status, vault)
from skyvault.commands import common, completion, output
from skyvault.vaultclient import AgentError

gc.freeze()
gc.enable()

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
MMAP_THRESHOLD_BYTES = 256 * 1024
RESTORE_HEAP_BYTES = 64 << 20
# In the order `skyvault --help` lists them.
COMMANDS = (stack, vault, policy, guard, retention, deletion, bill, register, backup, schedule, points, ls, diff,
            find, stats, restore, check, status, completion)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skyvault", description="Skyvault: encrypted backups to Azure.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    for path, leaf in _leaves(p, []):
        output.add_arguments(leaf)
        leaf.set_defaults(command_path=" ".join(path))
    return p


def _leaves(p: argparse.ArgumentParser, path: list[str]):
    """(command words, parser) of each command that runs: `backup`, `vault create`, ..."""
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, p
        return
    seen: set[int] = set()
    for name, child in subs[0].choices.items():
        if id(child) not in seen:  # an alias names the same parser
            seen.add(id(child))
            yield from _leaves(child, [*path, name])


def _tune_malloc(command: str) -> None:
    """Backup: chunk buffers (0.5-8 MiB) are mmap'd and returned to the system when freed. glibc
    otherwise raises its mmap threshold after the first large free and serves later chunks
    from the heap, whose fragmentation makes the agent's memory creep up with the data.
    Restore: the opposite. Its buffers (a few chunks per download thread) are served from the
    heap and reused, which spares the kernel faulting in and zeroing fresh pages for every
    chunk: that was two thirds of a restore's CPU time."""
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, libc's among them
        if command == "restore":
            libc.mallopt(M_MMAP_THRESHOLD, RESTORE_HEAP_BYTES)
            libc.mallopt(M_TRIM_THRESHOLD, 4 * RESTORE_HEAP_BYTES)
        else:
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass  # not glibc: its allocator has its own policy


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _tune_malloc(args.command)
    out = args.output = output.Output(args.json, args.quiet, args.verbose, command=args.command_path)
    previous, common.OUTPUT = common.OUTPUT, out
    try:
        return args.func(args)
    except (AgentError, home.NotConfigured, crypto.CryptoError) as e:
        out.error(str(e), getattr(e, "exit_code", exitcodes.FAILURE))
        return getattr(e, "exit_code", exitcodes.FAILURE)
    except KeyboardInterrupt:
        out.error("interrupted", exitcodes.INTERRUPTED)
        return exitcodes.INTERRUPTED
    finally:
        common.OUTPUT = previous


if __name__ == "__main__":
    sys.exit(main())
