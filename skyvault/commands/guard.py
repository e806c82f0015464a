"""`skyvault guard keygen|enable|show|request|approve|disable`: multi-user authorization
(shared/service/protection.py). A second operator, the guard's owner, holds an Ed25519 key
pair; with the guard on, each guarded operation (shortening retention, disabling soft delete,
stopping protection with its data deleted, disabling the guard) needs the owner's approval.

The flow: the owner runs `keygen` on their own machine and gives the public key to `enable`;
an operator runs `request`, which prints the request as JSON; the owner checks it and runs
`approve` on it (only their key file is needed, not the stack), which prints the approval
token; the operator passes it to the operation with `--approval`. An approval is good for one
use of that operation on that subject, until it expires.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from shared import jsonfields
from skyvault import exitcodes
from skyvault.commands.common import operator_services, say, vault_arguments, warn
from skyvault.vaultclient import AgentError

OPERATIONS = ("disable-soft-delete", "disable-guard", "shorten-retention", "stop-protection-delete", "delete-vault")


RAW = argparse.RawDescriptionHelpFormatter


def add_parser(subparsers) -> None:
    guard = subparsers.add_parser("guard", help="operator: multi-user authorization of a vault's risky operations")
    sub = guard.add_subparsers(dest="guard_command", required=True)
    keygen = sub.add_parser(
        "keygen", help="the guard owner: make a key pair (prints the public key)", formatter_class=RAW,
        description="The guard owner, on their own machine: make an Ed25519 key pair, write the private key\n"
                    "(never overwriting a file) and print the public key, for `skyvault guard enable`.",
        epilog="example:\n  skyvault guard keygen --out ~/grace-guard.pem")
    keygen.add_argument("--out", required=True, help="where to write the private key (PEM, mode 0600; not overwritten)")
    enable = sub.add_parser(
        "enable", help="put a vault under a guard owner's approval", formatter_class=RAW,
        description="Put a vault under the guard of an owner: from then on its guarded operations need the\n"
                    "owner's approval (`skyvault guard request`, then the owner's `skyvault guard approve`).",
        epilog="example:\n  skyvault guard enable --vault laptops --tenant contoso --owner Grace "
               "--public-key MCowBQYDK2VwAyEA...")
    vault_arguments(enable)
    enable.add_argument("--owner", required=True, help="the guard owner's name")
    enable.add_argument("--public-key", required=True, help="the owner's public key, as `guard keygen` prints it")
    show = sub.add_parser(
        "show", help="a vault's guard and its approval requests", formatter_class=RAW,
        description="A vault's guard: its owner, since when, its public key, and its approval requests.",
        epilog="examples:\n  skyvault guard show --vault laptops --tenant contoso\n"
               "  skyvault guard show --vault laptops --tenant contoso --json")
    vault_arguments(show)
    request = sub.add_parser(
        "request", help="ask the guard owner to approve an operation (prints the request)", formatter_class=RAW,
        description="Record a request for the guard owner's approval of an operation of a subject and print it\n"
                    "(the JSON document the owner approves; --out writes it to a file too).",
        epilog="examples:\n  skyvault guard request shorten-retention policy:nightly --vault laptops --tenant contoso "
               "--out request.json\n  skyvault guard request disable-guard --vault laptops --tenant contoso")
    request.add_argument("operation", choices=OPERATIONS)
    request.add_argument("subject", nargs="?",
                         help="policy:NAME, item:NAME or soft-delete-days (shorten-retention), the item "
                              "(stop-protection-delete); the vault's name for the others (the default)")
    vault_arguments(request)
    request.add_argument("--out", help="also write the request to this file")
    approve = sub.add_parser(
        "approve", help="the guard owner: approve a request (prints the approval token)", formatter_class=RAW,
        description="The guard owner: check a request and sign its approval with the private key; prints the\n"
                    "token the operator gives the operation's --approval. Needs only the key file, not the stack.",
        epilog="example:\n  skyvault guard approve --key ~/grace-guard.pem --vault-id 0123abcd --request-file "
               "request.json --hours 2")
    approve.add_argument("--key", required=True, help="the owner's private key file (from `guard keygen`)")
    approve.add_argument("--vault-id", required=True, help="the id of the vault the request must be for")
    approve.add_argument("--request-file", required=True, help="the request as `guard request` printed it ('-': stdin)")
    approve.add_argument("--hours", type=float, default=12.0,
                         help="how long the approval lasts (default 12, at most 24 after the request)")
    disable = sub.add_parser(
        "disable", help="remove a vault's guard (needs its owner's approval)", formatter_class=RAW,
        description="Remove a vault's guard, with its owner's approval of disable-guard.",
        epilog="example:\n  skyvault guard disable --vault laptops --tenant contoso --approval TOKEN")
    vault_arguments(disable)
    disable.add_argument("--approval", required=True, help="the owner's approval of disable-guard")
    for parser in (keygen, enable, show, request, approve, disable):
        parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The operator's commands only import the service: it costs agents start-up time.
    from shared.errors import ServiceError

    try:
        if args.guard_command == "keygen":
            _keygen(args)
        elif args.guard_command == "approve":
            _approve(args)
        else:
            _on_the_vault(args)
    except ServiceError as e:
        raise AgentError(str(e)) from None
    return exitcodes.OK


def _keygen(args: argparse.Namespace) -> None:
    from shared.service import protection

    pem, public_key = protection.new_guard_key()
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AgentError(f"{args.out} exists: a guard key is never overwritten; choose another file") from None
    except OSError as e:
        raise AgentError(f"cannot write the guard key to {args.out}: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    warn(f"private key written to {args.out}: keep it on this machine only; the public key follows")
    say(public_key)
    args.output.summary(key_file=args.out, public_key=public_key)


def _approve(args: argparse.Namespace) -> None:
    from shared.service import protection

    try:
        key = Path(args.key).read_bytes()
    except OSError as e:
        raise AgentError(f"cannot read the guard key {args.key}: {e.strerror}") from None
    request = _read_request(args.request_file)
    token = protection.approve(key, args.vault_id, request, datetime.now(timezone.utc),
                               timedelta(hours=args.hours))
    expires = protection.approval_payload(token)["expiresAt"]
    warn(f"approved {request['operation']} of {request['subject']} in vault "
         f"{request.get('vaultName', '?')} ({args.vault_id}), request {request['request']} of "
         f"{request['requestedAt']}, until {expires}; the approval token follows")
    say(token)
    args.output.summary(approval=token, expires_at=expires, vault_id=args.vault_id, request=request)


def _read_request(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as e:
        raise AgentError(f"cannot read the request file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise AgentError(f"the request file {path} is not text") from None
    try:
        return jsonfields.loads(text)
    except ValueError as e:
        raise AgentError(f"the request file {path} is not JSON: {e}") from None


def _on_the_vault(args: argparse.Namespace) -> None:
    from shared.service import protection, vaults

    services = operator_services()
    vault = vaults.find_vault(services, args.tenant, args.vault)
    if args.guard_command == "enable":
        vault = protection.enable_guard(services, vault, args.owner, args.public_key)
        say(f"vault {vault.name} ({vault.id}) is guarded by {vault.guard['owner']} since {vault.guard['enabledAt']}")
        args.output.summary(vault_id=vault.id, vault_name=vault.name, guard=_guard_doc(vault))
    elif args.guard_command == "show":
        _show(args, vault)
    elif args.guard_command == "request":
        request_id = protection.request_approval(services, vault, args.operation, args.subject or vault.name)
        vault = vaults.vault_for(services, vault.tenant_id, vault.id)
        document = protection.request_document(vault, request_id)
        text = json.dumps(document, indent=2)
        if args.out:
            try:
                Path(args.out).write_text(text + "\n")
            except OSError as e:
                raise AgentError(f"cannot write the request to {args.out}: {e.strerror}") from None
        warn(f"request {request_id} recorded; give it to the guard's owner {vault.guard['owner']}, who runs "
             f"`skyvault guard approve --key KEY --vault-id {vault.id} --request-file FILE`")
        say(text)
        args.output.summary(request=document, request_file=args.out)
    else:
        vault = protection.disable_guard(services, vault, args.approval)
        say(f"vault {vault.name} ({vault.id}) has no guard any more")
        args.output.summary(vault_id=vault.id, vault_name=vault.name, guard=None)


def _guard_doc(vault) -> dict[str, Any] | None:
    """The vault's guard record without its requests (each its own "request" object)."""
    return {k: v for k, v in vault.guard.items() if k != "requests"} if vault.guard else None


def _show(args: argparse.Namespace, vault) -> None:
    guard = vault.guard
    if not guard:
        say(f"vault {vault.name} ({vault.id}) has no guard")
    else:
        say(f"vault {vault.name} ({vault.id}) is guarded by {guard['owner']} since {guard['enabledAt']}")
        say(f"  public key {guard['publicKey']}")
    requests = sorted((guard or {}).get("requests", {}).items(), key=lambda kv: kv[1]["requestedAt"])
    for request_id, r in requests:
        args.output.emit("request", request_id=request_id, request=r)
        used = f"used at {r['usedAt']}" if r.get("usedAt") else "not used"
        say(f"  request {request_id}  {r['requestedAt']}  {r['operation']} of {r['subject']}  ({used})")
    args.output.summary(vault_id=vault.id, vault_name=vault.name, guard=_guard_doc(vault), requests=len(requests))
