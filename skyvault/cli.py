"""The `skyvault` command: the agent's commands, the operator's vault command and the local stack.

Each command turns its arguments into a call of the agent or a handler and maps
errors to a message and an exit code; the work happens elsewhere.
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
import getpass
import json
import os
import socket
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from shared import crypto
from skyvault import home
from skyvault.cache import Cache
from skyvault.vaultclient import AgentError, AgentVault, CredentialsError, load_credentials

gc.freeze()
gc.enable()

RENEW_BEFORE = timedelta(hours=2)
KEYS_FILE = "keys.json"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
MMAP_THRESHOLD_BYTES = 256 * 1024
RESTORE_HEAP_BYTES = 64 << 20


def _say(text: str) -> None:
    print(text, flush=True)


def _warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


def _passphrase(confirm: bool = False) -> str:
    value = os.environ.get("SKYVAULT_PASSPHRASE")
    if value is None:
        if not sys.stdin.isatty():
            raise AgentError("no passphrase: set SKYVAULT_PASSPHRASE or run from a terminal")
        value = getpass.getpass("Vault passphrase: ")
        if confirm and getpass.getpass("Again: ") != value:
            raise AgentError("the two passphrases differ")
    crypto.check_passphrase(value)
    return value


# -- stack

def cmd_stack(args: argparse.Namespace) -> int:
    from skyvault.stack import emulators, local

    if args.action == "up":
        try:
            state = local.up(in_memory=args.in_memory)
        except (local.StackError, emulators.EmulatorError) as e:
            raise AgentError(str(e)) from None
        _say(f"stack up in {home.home()}")
        for name, component in state["components"].items():
            _say(f"  {name:18} pid {component['pid']:<7} {component.get('url') or component.get('blob') or component.get('endpoint')}")
    elif args.action == "status":
        rows = local.status()
        for name, alive, where in rows:
            _say(f"  {name:18} {'running' if alive else 'STOPPED':8} {where}")
        return 0 if all(alive for _, alive, _ in rows) else 3
    elif args.action in ("stop-region", "start-region"):
        if args.region is None:
            raise AgentError(f"stack {args.action} needs a region: primary or secondary")
        try:
            (local.stop_region if args.action == "stop-region" else local.start_region)(args.region)
        except local.StackError as e:
            raise AgentError(str(e)) from None
        _say(f"{args.region} region {'stopped' if args.action == 'stop-region' else 'running'}")
    else:
        stopped = local.down()
        _say(f"stack down ({', '.join(stopped) or 'nothing was running'})")
    return 0


# -- operator

def cmd_vault_create(args: argparse.Namespace) -> int:
    from shared import bootstrap, handlers  # the operator's commands only: they cost agents start-up time

    services = bootstrap.build_services(home.stack_state()["settings"])
    try:
        vault, creds = handlers.create_vault(services, args.tenant, args.name, args.redundancy)
    except handlers.ServiceError as e:
        raise AgentError(str(e)) from None
    out = Path(args.out or f"{args.name}.credentials.json")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f, indent=2)
    _say(f"vault {vault.name} ({vault.id}) created for tenant {vault.tenant_id}, {vault.redundancy}")
    _say(f"agent credentials written to {out} (valid until {creds['expiresAt']}; keep it private)")
    return 0


# -- agent

def cmd_register(args: argparse.Namespace) -> int:
    creds = load_credentials(args.credentials)
    keys = AgentVault.derive_keys(creds, _passphrase(confirm=True))
    vault = AgentVault(creds, keys)
    try:
        answer = vault.api("POST", "keycheck", {"keyCheck": keys.key_check_value()})
    except AgentError as e:
        if " 409 " in str(e):
            raise CredentialsError("wrong passphrase: it does not match the one this vault was first "
                                   "used with") from None
        raise
    home.write_json("agent.json", {"credentials": creds, "keyCheck": keys.key_check_value(),
                                   "registeredAt": datetime.now(timezone.utc).isoformat()})
    if args.no_remember_keys:
        home.remove(KEYS_FILE)
    else:
        home.write_json(KEYS_FILE, {"vaultId": creds["vaultId"], "keys": keys.to_doc()})
    first = "first machine of this vault; keep the passphrase safe: without it the data cannot be restored"
    _say(f"registered with vault {creds['vaultName']} ({creds['vaultId']})"
         f"{': ' + first if answer['status'] == 'recorded' else ''}")
    return 0


def _agent() -> AgentVault:
    state = home.agent_state()
    creds = state["credentials"]
    keys = _remembered_keys(creds["vaultId"], state["keyCheck"])
    if keys is None:
        keys = AgentVault.derive_keys(creds, _passphrase())
        if keys.key_check_value() != state["keyCheck"]:
            raise CredentialsError("wrong passphrase for this vault")
    vault = AgentVault(creds, keys)
    if datetime.fromisoformat(creds["expiresAt"]) - datetime.now(timezone.utc) < RENEW_BEFORE:
        state["credentials"] = vault.api("POST", "credentials")
        home.write_json("agent.json", state)
        vault = AgentVault(state["credentials"], keys)
    return vault


def _remembered_keys(vault_id: str, key_check: str) -> crypto.VaultKeys | None:
    """The keys `register` remembered for this vault, if they still match its registration."""
    doc = home.read_optional_json(KEYS_FILE)
    if not doc or doc.get("vaultId") != vault_id:
        return None
    keys = crypto.VaultKeys.from_doc(doc["keys"])
    return keys if keys.key_check_value() == key_check else None


def _cache() -> Cache:
    return Cache(home.home() / "cache.sqlite")


def cmd_backup(args: argparse.Namespace) -> int:
    from skyvault.backup import Backup

    vault = _agent()
    cache = _cache()
    try:
        report = Backup(vault, cache, args.item, progress=_warn).run(args.paths, wait=not args.no_wait)
    finally:
        cache.close()
    _say(f"recovery point {report.point_id} of item {report.item}: {report.state}"
         f"{' (' + report.reason + ')' if report.reason else ''}")
    _say(f"  {report.files} files, {report.dirs} directories, {report.symlinks} symlinks, "
         f"{_human(report.bytes_total)}")
    _say(f"  read {report.files_read} files ({_human(report.bytes_read)}), {report.files_unchanged} unchanged "
         f"files not read")
    _say(f"  chunks: {report.chunks_referenced} referenced, {report.chunks_uploaded} uploaded "
         f"({_human(report.bytes_uploaded)} stored), {report.chunks_deduplicated} already in the vault")
    _say(f"  {report.messages} queue messages, {report.seconds:.1f}s")
    if report.warnings:
        _say(f"  {len(report.warnings)} warnings (see above)")
    if report.state == "failed":
        return 1
    return 4 if report.warnings else 0


def cmd_points(args: argparse.Namespace) -> int:
    vault = AgentVault(home.agent_state()["credentials"])
    points = vault.api("GET", "points", params={"item": args.item} if args.item else None)["points"]
    if args.json:
        _say(json.dumps(points, indent=2))
        return 0
    if not points:
        _say("no recovery points")
    geo = vault.creds.get("redundancy") == "GRS"
    for p in points:
        stats = p.get("stats", {})
        protection = ("geo-protected" if p.get("geoProtectedAt") else "replicating") if geo else ""
        _say(f"{p['id']}  {p['item']:16} {p['state']:9} {protection:13} {stats.get('files', 0):>7} files "
             f"{_human(stats.get('bytes_total', 0)):>10}  {p['createdAt']}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = AgentVault(home.agent_state()["credentials"]).api("GET", "status")
    if args.json:
        _say(json.dumps(status, indent=2))
        return 0
    _say(f"vault {status['name']} ({status['vaultId']}) of tenant {status['tenantId']}: {status['redundancy']}")
    _say(f"  first backup: {status['firstBackupAt'] or 'none yet'}")
    replication = status["replication"]
    if status["redundancy"] == "GRS":
        _say(f"  replication lag: {replication['lagSeconds']:.1f}s; recovery points not yet geo-protected: "
             f"{replication['pointsNotGeoProtected']}")
    return 0


def cmd_vault_set_redundancy(args: argparse.Namespace) -> int:
    from shared import bootstrap, handlers

    services = bootstrap.build_services(home.stack_state()["settings"])
    try:
        vault = handlers.change_redundancy(services, handlers.find_vault(services, args.tenant, args.name),
                                           args.redundancy)
    except handlers.ServiceError as e:
        raise AgentError(str(e)) from None
    _say(f"vault {vault.name} ({vault.id}) is now {vault.redundancy}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from skyvault.restore import Restore

    report = Restore(_agent(), progress=_warn).run(args.point, args.target, args.include, source=args.source)
    _say(f"restored {report.point_id} from the {', then the '.join(report.regions)} region into {args.target}: "
         f"{report.files} files, {report.dirs} directories, {report.symlinks} symlinks, "
         f"{_human(report.bytes_written)} from {report.chunks_downloaded} chunks in {report.seconds:.1f}s")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skyvault", description="Skyvault: encrypted backups to Azure.")
    sub = p.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="run the whole service locally on emulators")
    stack.add_argument("action", choices=["up", "status", "down", "stop-region", "start-region"])
    stack.add_argument("region", nargs="?", choices=["primary", "secondary"],
                       help="with stop-region/start-region: the region to take down or bring back")
    stack.add_argument("--in-memory", action="store_true",
                       help="with up: keep blobs and queues in memory, not on disk (faster; lost when stopped)")
    stack.set_defaults(func=cmd_stack)

    vault = sub.add_parser("vault", help="operator: manage vaults")
    vault_sub = vault.add_subparsers(dest="vault_command", required=True)
    create = vault_sub.add_parser("create", help="create a vault and write its agent credentials file")
    create.add_argument("name")
    create.add_argument("--tenant", required=True)
    create.add_argument("--redundancy", choices=["LRS", "GRS"], default="LRS")
    create.add_argument("--out", help="credentials file (default NAME.credentials.json)")
    create.set_defaults(func=cmd_vault_create)
    redundancy = vault_sub.add_parser("set-redundancy", help="change LRS/GRS (only before the first backup)")
    redundancy.add_argument("name", help="vault name or id")
    redundancy.add_argument("--tenant", required=True)
    redundancy.add_argument("--redundancy", choices=["LRS", "GRS"], required=True)
    redundancy.set_defaults(func=cmd_vault_set_redundancy)

    register = sub.add_parser("register", help="register this machine with a vault")
    register.add_argument("credentials")
    register.add_argument("--no-remember-keys", action="store_true",
                          help="do not keep the vault keys on this machine: every later command then "
                               "asks for the passphrase")
    register.set_defaults(func=cmd_register)

    backup = sub.add_parser("backup", help="back up files and directories")
    backup.add_argument("paths", nargs="+", metavar="PATH")
    backup.add_argument("--item", default=socket.gethostname().split(".")[0] or "default",
                        help="protected item name (default: this host's name)")
    backup.add_argument("--no-wait", action="store_true", help="do not wait for the point to be committed")
    backup.set_defaults(func=cmd_backup)

    points = sub.add_parser("points", help="list recovery points")
    points.add_argument("--item")
    points.add_argument("--json", action="store_true")
    points.set_defaults(func=cmd_points)

    restore = sub.add_parser("restore", help="restore a recovery point")
    restore.add_argument("point")
    restore.add_argument("--target", required=True)
    restore.add_argument("--include", action="append", metavar="PATTERN",
                         help="restore only paths matching this glob (repeatable)")
    restore.add_argument("--from", dest="source", choices=["auto", "primary", "secondary"], default="auto",
                         help="region to read (default: the primary, then the paired region if it does not answer)")
    restore.set_defaults(func=cmd_restore)

    status = sub.add_parser("status", help="this machine's vault: redundancy and replication lag")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    return p


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
    try:
        return args.func(args)
    except (AgentError, home.NotConfigured, crypto.CryptoError) as e:
        _warn(f"skyvault: error: {e}")
        return getattr(e, "exit_code", 1)
    except KeyboardInterrupt:
        _warn("skyvault: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
