"""`skyvault check [--point POINT] [--read-data [--subset PERCENT]]`: whether the vault still
holds, intact, every chunk of its committed recovery points (skyvault.check); the exit code
names the outcome: OK, PROBLEMS or INCOMPLETE."""
from __future__ import annotations

import argparse

from skyvault.commands import common
from skyvault.commands.common import say, warn
from skyvault.vaultclient import AgentError


def add_parser(subparsers) -> None:
    check = subparsers.add_parser("check", help="check that the vault holds every chunk of its recovery points")
    check.add_argument("--point", action="append", metavar="POINT",
                       help="check this recovery point only (repeatable; default: every committed point)")
    check.add_argument("--read-data", action="store_true",
                       help="also download, decrypt and authenticate the chunks, in each region holding them")
    check.add_argument("--subset", metavar="PERCENT",
                       help="with --read-data: read a random sample of about this share of the chunks (e.g. 10%%)")
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skyvault.check import Check, parse_subset

    if args.subset is not None and not args.read_data:
        raise AgentError("--subset chooses which chunks --read-data reads: give --read-data too")
    subset = parse_subset(args.subset) if args.subset is not None else 1.0
    report = Check(common.agent(), progress=warn).run(args.point, args.read_data, subset)
    if not report.points:
        say("no committed recovery points: nothing to check")
        return report.exit_code
    read = ""
    if args.read_data:
        share = f"a random {subset * 100:g}% subset" if args.subset is not None else "all"
        read = f"; read and authenticated {report.copies_read} chunk copies ({share} of the chunks)"
    healed = sum(1 for o in report.outcomes if o.outcome == "healed")
    damaged = sum(1 for o in report.outcomes if o.outcome == "damaged")
    say(f"checked {report.chunks} chunks of {len(report.points)} recovery points{read}: "
        f"{len(report.problems) + len(report.point_problems)} problems ({healed} copies healed, {damaged} "
        f"marked damaged), {len(report.unchecked)} not checked")
    return report.exit_code
