"""`skyvault schedule --item ITEM [PATH...]`: the item's policy schedule as this machine's timer, a
systemd user timer and its service (the default) or a cron entry, each running `skyvault backup
PATH... --item ITEM` at the policy's times in its time zone, or without PATH `skyvault backup
--item ITEM`, which backs up the paths and exclusions the item's configuration remembers
(skyvault.items; it must exist); printed, or written with --install (no systemctl or crontab is
run). The times are the policy's when the command runs: run it again
after the policy changes (`skyvault status` reports the runs a stale timer misses).

Words:
- units: the systemd files skyvault-backup-ITEM.service (one backup) and skyvault-backup-ITEM.timer
  (when), named after the item, a NAME_ID, so always a valid unit name.
- agent command: how a timer runs this same agent: the `skyvault` script this command runs as,
  else this Python with `-m skyvault.cli`; either way with SKYVAULT_HOME set to this state
  folder, since a timer's working directory is not the one `.skyvault/` is found in.
- block: the cron lines of one item, between `# BEGIN skyvault-backup-ITEM` and `# END ...`, which
  --install replaces in its --cron-file.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path

from shared.formats import NAME_ID
from shared.messages import ItemSchedule
from shared.retention import WEEKDAYS
from skyvault import exitcodes, home
from skyvault.commands.common import KEYS_FILE, remembered_keys, say, warn
from skyvault.vaultclient import AgentError, AgentVault

UNIT_PREFIX = "skyvault-backup-"
# Spreads the machines of one policy over a few minutes; far inside the hour before the service
# reports a run missed (shared/retention.py, MISSED_GRACE).
RANDOMIZED_DELAY = "5min"
SYSTEMD_WEEKDAYS = dict(zip(WEEKDAYS, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")))
CRON_WEEKDAYS = dict(zip(WEEKDAYS, (1, 2, 3, 4, 5, 6, 0)))
SYSTEMD_BARE_WORD = re.compile(r"[A-Za-z0-9_./:,+=@-]+\Z")  # what systemd reads unquoted as itself
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def add_parser(subparsers) -> None:
    schedule = subparsers.add_parser(
        "schedule", help="a systemd timer or cron entry that backs up an item at its policy's times",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The item's policy schedule as this machine's timer: a systemd user timer and service (the\n"
                    "default) or crontab lines running `skyvault backup [PATH...] --item ITEM`; printed, or written\n"
                    "with --install (no systemctl or crontab is run). Without PATH the backups use the paths and\n"
                    "exclusions the item remembers. Run it again when the policy changes.",
        epilog="examples:\n  skyvault schedule --item laptop ~/Documents ~/Pictures\n"
               "  skyvault schedule --item laptop --install    # the paths and exclusions laptop remembers\n"
               "  skyvault schedule --item laptop ~/Documents --install\n"
               "  skyvault schedule --item db /var/backups --format cron --install --cron-file db.crontab")
    schedule.add_argument("paths", nargs="*", metavar="PATH",
                          help="what each scheduled backup backs up (default: what the item's configuration "
                               "remembers, with its exclusions)")
    schedule.add_argument("--item", required=True, help="protected item name; its policy gives the times")
    schedule.add_argument("--format", choices=("systemd", "cron"), default="systemd",
                          help="a systemd user timer and service (default), or crontab lines")
    schedule.add_argument("--install", action="store_true",
                          help="write the units to --unit-dir, or the crontab lines to --cron-file")
    schedule.add_argument("--unit-dir", type=Path, metavar="DIR",
                          help="with --install: where the units go (default: ~/.config/systemd/user)")
    schedule.add_argument("--cron-file", type=Path, metavar="FILE",
                          help="with --install --format cron: the crontab file (as `crontab FILE` loads) to "
                               "add the lines to; the item's earlier lines there are replaced")
    schedule.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skyvault import items
    from skyvault.backup import walk

    _check_arguments(args)
    state = home.agent_state()
    if not args.paths and items.load(args.item) is None:
        raise items.no_configuration(args.item)
    roots = [str(root) for root in walk.roots(args.paths)] if args.paths else []
    command = [*agent_command(), "backup", *roots, "--item", args.item]
    state_folder = home.home()
    for word in (*command, str(state_folder)):
        if CONTROL_CHARACTER.search(word):
            raise AgentError(f"{word!r} holds a control character, which neither a unit file nor a crontab can hold")
    vault = AgentVault(state["credentials"])
    schedule = vault.item_schedule(args.item)
    # A scheduled backup has no terminal to ask for the passphrase on: common.agent() needs the
    # keys `register` remembered, or SKYVAULT_PASSPHRASE in the timer's environment.
    if remembered_keys(vault.vault_id, vault.machine_id) is None:
        warn(f"skyvault: warning: this machine does not remember the vault's keys ({state_folder / KEYS_FILE}): a "
             f"scheduled backup cannot ask for the passphrase and fails unless its environment sets "
             f"SKYVAULT_PASSPHRASE (run `skyvault register` again without --no-remember-keys)")
    origin = (f"# Written by `skyvault schedule` from policy {schedule.policy} of vault "
              f"{vault.creds.get('vaultName', vault.vault_id)}: run it again when the policy changes.")
    output = args.output
    if args.format == "systemd":
        units = systemd_units(schedule, command, state_folder, origin)
        unit_dir = (args.unit_dir or _user_unit_dir()) if args.install else None
        if unit_dir:
            _install_units(units, unit_dir, schedule.item)
        else:
            say("\n".join(f"# {name}\n{text}" for name, text in units.items()).rstrip("\n"))
        for name, text in units.items():
            output.emit("unit", name=name, path=str(unit_dir / name) if unit_dir else None, text=text)
        files = [str(unit_dir / name) for name in units] if unit_dir else []
    else:
        block = cron_block(schedule, command, state_folder, origin)
        if args.install:
            _install_cron(block, args.cron_file, schedule.item)
        else:
            say(block.rstrip("\n"))
        output.emit("cron_lines", path=str(args.cron_file) if args.install else None, text=block)
        files = [str(args.cron_file)] if args.install else []
    output.summary(schedule=schedule.to_doc(), format=args.format, installed=args.install, files=files)
    return exitcodes.OK


def _check_arguments(args: argparse.Namespace) -> None:
    if not NAME_ID.match(args.item):
        raise AgentError(f"item {args.item[:70]!r} must be 1-63 letters, digits, '.', '_' or '-', starting with a "
                         f"letter or digit (it names the units)")
    given = [option for option, value in (("--unit-dir", args.unit_dir), ("--cron-file", args.cron_file))
             if value is not None]
    if given and not args.install:
        raise AgentError(f"{given[0]} says where --install writes: give --install too")
    if args.unit_dir is not None and args.format != "systemd":
        raise AgentError("--unit-dir is where the systemd units go: it is not for --format cron")
    if args.cron_file is not None and args.format != "cron":
        raise AgentError("--cron-file is where the crontab lines go: give --format cron")
    if args.install and args.format == "cron" and args.cron_file is None:
        raise AgentError("--install --format cron writes to a file: give --cron-file FILE (no crontab is changed)")


def agent_command() -> list[str]:
    """The command line that runs this same agent: the `skyvault` script if this process is one,
    else this Python with the module; neither resolved, since a virtual environment's Python is
    in its environment only by the path of its link."""
    script = Path(sys.argv[0])
    if script.name == "skyvault" and script.is_file():
        return [str(script.absolute())]
    return [sys.executable, "-m", "skyvault.cli"]


def systemd_word(word: str, expand: bool = True) -> str:
    """`word` as one item of a unit file's setting (systemd.syntax(7), "Quoting"): double-quoted
    with C escapes unless it is plain, and `%` doubled (specifiers are expanded inside quotes
    too); in a command line (`expand`), `$` doubled, since `$NAME` would be a variable."""
    if SYSTEMD_BARE_WORD.match(word):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped.replace("$", "$$") if expand else escaped}"'


def calendar_specs(schedule: ItemSchedule) -> list[str]:
    """One OnCalendar= value per time of day: systemd reads its last word as the time zone."""
    days = "*-*-*"
    if schedule.schedule.frequency == "weekly":
        days = f"{','.join(SYSTEMD_WEEKDAYS[day] for day in schedule.schedule.weekdays)} {days}"
    return [f"{days} {time}:00 {schedule.time_zone}" for time in schedule.schedule.times]


def systemd_units(schedule: ItemSchedule, command: list[str], state_folder: Path, origin: str) -> dict[str, str]:
    """The service and timer of the item's scheduled backups, by file name."""
    name = UNIT_PREFIX + schedule.item
    service = "\n".join([
        origin,
        "[Unit]",
        f"Description=Skyvault backup of item {schedule.item}",
        "",
        "[Service]",
        "Type=oneshot",
        f"Environment={systemd_word(f'SKYVAULT_HOME={state_folder}', expand=False)}",
        f"ExecStart={' '.join(systemd_word(word) for word in command)}",
    ])
    timer = "\n".join([
        origin,
        "[Unit]",
        f"Description=Skyvault backups of item {schedule.item} at the times of policy {schedule.policy}",
        "",
        "[Timer]",
        *(f"OnCalendar={spec}" for spec in calendar_specs(schedule)),
        "# A run missed while this machine was off runs as soon as it is on again.",
        "Persistent=true",
        f"RandomizedDelaySec={RANDOMIZED_DELAY}",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ])
    return {f"{name}.service": service + "\n", f"{name}.timer": timer + "\n"}


def cron_word(word: str) -> str:
    """`word` as one word of a crontab command: shell-quoted, each `%` (which cron turns into a
    newline) written `\\%` outside the quotes, where no backslash of the word can precede it."""
    return "\\%".join(shlex.quote(part) for part in word.split("%"))


def cron_block(schedule: ItemSchedule, command: list[str], state_folder: Path, origin: str) -> str:
    """The crontab lines of the item's scheduled backups, one per time of day, in their block."""
    name = UNIT_PREFIX + schedule.item
    days = "*"
    if schedule.schedule.frequency == "weekly":
        days = ",".join(str(n) for n in sorted(CRON_WEEKDAYS[day] for day in schedule.schedule.weekdays))
    log = state_folder / f"backup-{schedule.item}.log"
    job = (f"cd / && SKYVAULT_HOME={cron_word(str(state_folder))} {' '.join(cron_word(w) for w in command)} "
           f">> {cron_word(str(log))} 2>&1")
    runs = [f"{int(time[3:])} {int(time[:2])} * * {days} {job}" for time in schedule.schedule.times]
    return "\n".join([
        f"# BEGIN {name}",
        origin,
        "# cron has no catch-up: a run missed while this machine is off is not made up (a systemd timer's is).",
        "# CRON_TZ needs a cron that reads it (cronie does); another reads the times in the system's time zone.",
        f"CRON_TZ={schedule.time_zone}",
        *runs,
        f"# END {name}",
    ]) + "\n"


def _user_unit_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _install_units(units: dict[str, str], unit_dir: Path, item: str) -> int:
    for name, text in units.items():
        _write(unit_dir / name, text)
        say(f"wrote {unit_dir / name}")
    say(f"to start the timer: systemctl --user daemon-reload && systemctl --user enable --now "
        f"{UNIT_PREFIX}{item}.timer")
    say("  (a user's timer runs while the user is logged in; `loginctl enable-linger` keeps it running "
        "when not)")
    return exitcodes.OK


def _install_cron(block: str, cron_file: Path, item: str) -> int:
    """The item's block at the end of `cron_file`, replacing the block an earlier --install wrote."""
    begin, end = f"# BEGIN {UNIT_PREFIX}{item}", f"# END {UNIT_PREFIX}{item}"
    text = cron_file.read_text() if cron_file.exists() else ""
    earlier = re.search(rf"^{re.escape(begin)}\n", text, re.MULTILINE)
    if earlier:
        closing = re.compile(rf"^{re.escape(end)}(\n|\Z)", re.MULTILINE).search(text, earlier.end())
        if closing is None:
            raise AgentError(f"{cron_file} has the line {begin!r} without its {end!r}: mend it first; nothing was "
                             f"written")
        text = text[:earlier.start()] + text[closing.end():]
    if text and not text.endswith("\n"):
        text += "\n"
    _write(cron_file, text + block)
    say(f"wrote the lines of item {item} to {cron_file}")
    say(f"to use them: crontab {shlex.quote(str(cron_file))}  (this replaces your crontab with the file: start "
        f"the file from `crontab -l`)")
    return exitcodes.OK
