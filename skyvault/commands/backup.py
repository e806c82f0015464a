"""`skyvault backup [PATH...] --item NAME [exclusions]`: a recovery point of the paths
(skyvault.backup). Exits OK once the point is committed, PARTIAL when it is but some files
could not be read, FAILURE when the point failed.

The item's configuration (skyvault.items) remembers its paths and exclusions: a backup given
paths saves them, with the exclusion options given, or else the exclusions saved before
(--clear-exclusions: none); a backup given no paths uses the saved ones, and the saved
exclusions unless it gives exclusion options, which then apply to that backup only.
`--dry-run` says what a backup would read and upload, and writes nothing: neither to the
vault, nor to the cache, nor to the item's configuration.
"""
from __future__ import annotations

import argparse
import socket

from shared.domain import PointState
from skyvault import exitcodes
from skyvault.commands import common
from skyvault.commands.common import human, say, warn

SUMMARY_FIELDS = ("point_id", "item", "state", "reason", "files", "dirs", "symlinks", "hardlinks", "specials",
                  "bytes_total", "files_read", "bytes_read", "files_unchanged", "files_reused", "bytes_reused",
                  "chunks_referenced",
                  "chunks_uploaded", "bytes_uploaded", "chunks_deduplicated", "chunks_adopted", "excluded_files",
                  "excluded_dirs", "excluded_bytes", "messages", "seconds", "warnings", "dry_run", "tags")


def _size(text: str) -> int:
    from skyvault.backup.exclude import parse_size  # the backup's modules load only for a backup

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(subparsers) -> None:
    backup = subparsers.add_parser(
        "backup", help="back up files and directories", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Make a recovery point of an item: its files and directories, chunked, compressed and encrypted\n"
                    "on this machine, uploaded, and committed by the service. Given paths, the item remembers them\n"
                    "and the exclusions given; given none, it backs up what it remembers.",
        epilog="examples:\n"
               "  skyvault backup ~/Documents ~/Pictures --item laptop --exclude node_modules/ --exclude-caches\n"
               "  skyvault backup --item laptop                # the paths and exclusions laptop remembers\n"
               "  skyvault backup --item laptop --dry-run      # what would be read and uploaded; nothing written\n"
               "  skyvault backup ~/src --item src --tag release --exclude-file ~/.skyvault-exclude --json\n"
               "exit codes: 0 committed, 4 committed but some files could not be read, 1 failed")
    backup.add_argument("paths", nargs="*", metavar="PATH",
                        help="what to back up; saved as the item's paths (default: the item's saved paths)")
    backup.add_argument("--item", default=socket.gethostname().split(".")[0] or "default",
                        help="protected item name (default: this host's name)")
    backup.add_argument("--no-wait", action="store_true", help="do not wait for the point to be committed")
    backup.add_argument("--tag", action="append", default=[], metavar="TAG",
                        help="tag the point (repeatable): letters, digits and ._:=@+-; `points --tag` lists by them")
    backup.add_argument("--dry-run", action="store_true",
                        help="say what would be read and uploaded; write nothing (vault, cache, item configuration)")
    excl = backup.add_argument_group(
        "exclusions", "gitignore-style patterns, matched below each path backed up (docs/design.md, 'Exclusions "
                      "and item configuration'); given with paths, they replace the item's saved exclusions")
    excl.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                      help="leave out what matches (repeatable): `*.tmp`, `node_modules/`, `/build`, `!keep.tmp`")
    excl.add_argument("--exclude-file", action="append", default=[], metavar="FILE",
                      help="patterns one a line, `#` comments (repeatable; read at each backup)")
    excl.add_argument("--exclude-caches", action="store_true",
                      help="leave out the contents of directories with a valid CACHEDIR.TAG (kept, with the tag)")
    excl.add_argument("--exclude-if-present", action="append", default=[], metavar="NAME",
                      help="leave out the contents of directories holding a file NAME (kept, with it; repeatable)")
    excl.add_argument("--exclude-larger-than", type=_size, metavar="SIZE",
                      help="leave out files larger than SIZE (bytes, or K, M, G, T: binary units, 1K = 1024)")
    excl.add_argument("--one-file-system", action="store_true",
                      help="do not cross into other file systems below a path (mount points kept, empty)")
    excl.add_argument("--ignore-case", action="store_true", help="match patterns without regard to case")
    excl.add_argument("--clear-exclusions", action="store_true",
                      help="no exclusions: forget the item's saved ones (with paths)")
    backup.set_defaults(func=run)


def _given_rules(args: argparse.Namespace):
    """The exclusion rules (exclude.ExclusionRules) the command line gives, None if it gives none."""
    from skyvault.backup.exclude import ExclusionRules, absolute_files

    rules = ExclusionRules(patterns=tuple(args.exclude), pattern_files=absolute_files(args.exclude_file),
                           exclude_caches=args.exclude_caches, if_present=tuple(args.exclude_if_present),
                           larger_than=args.exclude_larger_than, one_file_system=args.one_file_system,
                           ignore_case=args.ignore_case)
    return rules if rules or args.clear_exclusions else None


def run(args: argparse.Namespace) -> int:
    from skyvault import items
    from skyvault.backup import Backup, walk
    from skyvault.backup.exclude import ExclusionRules

    output = getattr(args, "output", None) or common.out()
    saved = items.load(args.item)
    given = _given_rules(args)
    if args.paths:
        roots = walk.roots(args.paths)
        rules = given if given is not None else (saved.exclusions if saved else ExclusionRules())
    elif saved is None:
        raise items.no_configuration(args.item)
    else:
        roots = walk.roots(list(saved.paths))
        rules = given if given is not None else saved.exclusions
    exclusions = rules.compile()  # an exclude file that cannot be read fails here, before anything is written
    vault = common.agent(renew=not args.dry_run)
    if args.paths and not args.dry_run:
        config = items.ItemConfig(args.item, tuple(str(r) for r in roots), rules)
        if config != saved:
            warn(f"saved the paths and exclusions of item {args.item} in {items.save(config)}: "
                 f"`skyvault backup --item {args.item}` backs them up")
    elif args.paths:
        warn(f"dry run: the paths and exclusions of item {args.item} were not saved")
    cache = common.cache() if not args.dry_run else _read_only_cache()
    try:
        with output.progress("backup") as meter:
            report = Backup(vault, cache, args.item, progress=warn, exclusions=exclusions, meter=meter,
                            tags=tuple(args.tag), detail=output.detail).run([str(r) for r in roots],
                                                                            wait=not args.no_wait, dry_run=args.dry_run)
    finally:
        cache.close()
    _summary(output, report)
    if report.state == PointState.FAILED:
        return exitcodes.FAILURE
    return exitcodes.PARTIAL if report.warnings else exitcodes.OK


def _read_only_cache():
    from skyvault import home
    from skyvault.cache import Cache
    return Cache.open_read_only(home.home() / "cache.sqlite")


def _summary(output, report) -> None:
    if report.dry_run:
        say(f"dry run of item {report.item}: nothing was written; a backup would read and upload this")
    else:
        say(f"recovery point {report.point_id} of item {report.item}: {report.state}"
            f"{' (' + report.reason + ')' if report.reason else ''}")
    say(f"  {report.files} files, {report.dirs} directories, {report.symlinks} symlinks, "
        f"{report.hardlinks} hard links, {report.specials} FIFOs and devices, {human(report.bytes_total)}")
    if report.excluded_files or report.excluded_dirs:
        say(f"  excluded: {report.excluded_files} files ({human(report.excluded_bytes)}), "
            f"{report.excluded_dirs} directories (their contents not counted)")
    if report.chunks_adopted:
        say(f"  {report.chunks_adopted} chunks were in the vault's storage already, not yet indexed: declared "
            f"for the service to take as they are")
    say(f"  read {report.files_read} files ({human(report.bytes_read)}), {report.files_unchanged} unchanged "
        f"files not read")
    if report.files_reused:
        say(f"  {report.files_reused} of the files read ({human(report.bytes_reused)}) held the bytes of a file of "
            f"the last backup: its chunks reused")
    if report.dry_run:
        say(f"  chunks: {report.chunks_referenced} referenced, {report.chunks_uploaded} to upload "
            f"({human(report.bytes_uploaded)} to store), {report.chunks_deduplicated} known to this machine's "
            f"cache (the vault was not asked: it may hold more)")
    else:
        say(f"  chunks: {report.chunks_referenced} referenced, {report.chunks_uploaded} uploaded "
            f"({human(report.bytes_uploaded)} stored), {report.chunks_deduplicated} already in the vault")
    if report.tags:
        say(f"  tags: {', '.join(report.tags)}")
    say(f"  {report.messages} queue messages, {report.seconds:.1f}s")
    if report.warnings:
        say(f"  {len(report.warnings)} warnings (see above)")
    output.summary(**{name: _field(report, name) for name in SUMMARY_FIELDS})


def _field(report, name: str):
    value = getattr(report, name)
    if name == "warnings":
        return len(value)
    if name == "seconds":
        return round(value, 3)
    if name == "tags":
        return list(value)
    return value
