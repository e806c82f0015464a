"""`skyvault check [--point POINT] [--read-data [--subset PERCENT]]`: whether the vault still
holds, intact, every chunk of its committed recovery points (skyvault.check); the exit code
names the outcome: OK, PROBLEMS or INCOMPLETE. Progress on a terminal; with --json a "problem"
line for each problem and a summary (docs/design.md, "JSON output of restore and check")."""
from __future__ import annotations

import argparse
import functools

from shared.messages import ChunkProblem
from skyvault.commands import common
from skyvault.commands.output import Output
from skyvault.vaultclient import AgentError

DESCRIPTION = """\
Check that the vault still holds, intact, every chunk of its committed recovery points (or of
the points given): the service compares its index with each region's blobs (presence, size,
the MD5 recorded on upload). With --read-data the agent also downloads, decrypts and
authenticates the chunks in every region holding them, or a random sample with --subset.
Bad copies are reported to the service, which heals them from a good region or marks the
chunk damaged, so that the next backup stores it again."""

EPILOG = """\
examples:
  skyvault check
  skyvault check --point 20261125T101500Z-1a2b3c4d
  skyvault check --read-data --subset 10%
  skyvault check --json | jq -c 'select(.type == "problem")'

exit codes: 0 no problem; 5 (PROBLEMS) problems found, each listed; 6 (INCOMPLETE) no problem in
what was checked, but some of it could not be (a region did not answer); 1 it failed."""


def add_parser(subparsers) -> None:
    check = subparsers.add_parser("check", help="check that the vault holds every chunk of its recovery points",
                                  description=DESCRIPTION, epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
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
    output: Output = args.output
    with output.progress("check") as progress:
        check = Check(common.agent(), progress=output.note, meter=progress, found=functools.partial(_found, output))
        report = check.run(args.point, args.read_data, subset)
    healed = sum(1 for o in report.outcomes if o.outcome == "healed")
    damaged = sum(1 for o in report.outcomes if o.outcome == "damaged")
    output.summary(points=len(report.points), chunks=report.chunks, copies_read=report.copies_read,
                   read_data=args.read_data, subset=subset if args.read_data else None,
                   problems=[p.describe() for p in report.problems], point_problems=report.point_problems,
                   unchecked=report.unchecked, healed=healed, damaged=damaged)
    if not report.points:
        output.say("no committed recovery points: nothing to check")
        return report.exit_code
    read = ""
    if args.read_data:
        share = f"a random {subset * 100:g}% subset" if args.subset is not None else "all"
        read = f"; read and authenticated {report.copies_read} chunk copies ({share} of the chunks)"
    output.say(f"checked {report.chunks} chunks of {len(report.points)} recovery points{read}: "
               f"{len(report.problems) + len(report.point_problems)} problems ({healed} copies healed, {damaged} "
               f"marked damaged), {len(report.unchecked)} not checked")
    return report.exit_code


def _found(output: Output, text: str, problem: ChunkProblem | None) -> None:
    """A problem as it is found: a "problem" JSON line, or a line on stderr (--quiet too: it is
    what the command is for)."""
    if output.json:
        fields = ({"chunk_id": problem.chunk_id, "region": problem.region, "kind": problem.kind,
                   "detail": problem.detail} if problem else {"chunk_id": None, "region": None, "kind": "point",
                                                               "detail": text})
        output.emit("problem", message=text, **fields)
    else:
        output.warn(f"problem: {text}")
