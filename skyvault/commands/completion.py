"""`skyvault completion bash|zsh`: the shell completion script of every command and option,
generated from the parser itself (shtab), so it never falls behind the commands."""
from __future__ import annotations

import argparse

from skyvault import exitcodes

SHELLS = ("bash", "zsh")
# Arguments that name files or directories on this machine, by their argparse dest.
FILE_ARGUMENTS = {"paths", "exclude_file", "file", "out", "credentials", "ticket"}
DIRECTORY_ARGUMENTS = {"target"}


def add_parser(subparsers) -> None:
    completion = subparsers.add_parser(
        "completion", help="print the shell completion script (bash or zsh)",
        description="Print a completion script for bash or zsh on stdout: commands, options and file names.",
        epilog="examples:\n"
               "  skyvault completion bash > /etc/bash_completion.d/skyvault\n"
               "  skyvault completion zsh > \"${fpath[1]}/_skyvault\"   # then restart zsh",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(func=run)


def script(shell: str) -> str:
    import shtab

    from skyvault import cli  # here, not at import: cli imports this module

    parser = cli.parser()
    for action in _actions(parser):
        if action.dest in FILE_ARGUMENTS:
            action.complete = shtab.FILE
        elif action.dest in DIRECTORY_ARGUMENTS:
            action.complete = shtab.DIRECTORY
    return shtab.complete(parser, shell=shell)


def _actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for child in {id(p): p for p in action.choices.values()}.values():
                yield from _actions(child)


def run(args: argparse.Namespace) -> int:
    text = script(args.shell)
    if args.json:
        args.output.summary(shell=args.shell, script=text)
    else:
        print(text, end="")
    return exitcodes.OK
