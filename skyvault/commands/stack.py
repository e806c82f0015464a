"""`skyvault stack up|status|down|stop-region|start-region`: the local stack (skyvault.stack.local)."""
from __future__ import annotations

import argparse

from skyvault import exitcodes, home
from skyvault.commands.common import say
from skyvault.vaultclient import AgentError


def add_parser(subparsers) -> None:
    stack = subparsers.add_parser("stack", help="run the whole service locally on emulators")
    stack.add_argument("action", choices=["up", "status", "down", "stop-region", "start-region"])
    stack.add_argument("region", nargs="?", choices=["primary", "secondary"],
                       help="with stop-region/start-region: the region to take down or bring back")
    stack.add_argument("--in-memory", action="store_true",
                       help="with up: keep blobs and queues in memory, not on disk (faster; lost when stopped)")
    stack.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skyvault.stack import emulators, local

    if args.action == "up":
        try:
            state = local.up(in_memory=args.in_memory)
        except (local.StackError, emulators.EmulatorError) as e:
            raise AgentError(str(e)) from None
        say(f"stack up in {home.home()}")
        for name, component in state["components"].items():
            say(f"  {name:18} pid {component['pid']:<7} {component.get('url') or component.get('blob') or component.get('endpoint')}")
    elif args.action == "status":
        rows = local.status()
        for name, alive, where in rows:
            say(f"  {name:18} {'running' if alive else 'STOPPED':8} {where}")
        return exitcodes.OK if all(alive for _, alive, _ in rows) else exitcodes.STACK_DEGRADED
    elif args.action in ("stop-region", "start-region"):
        if args.region is None:
            raise AgentError(f"stack {args.action} needs a region: primary or secondary")
        try:
            (local.stop_region if args.action == "stop-region" else local.start_region)(args.region)
        except local.StackError as e:
            raise AgentError(str(e)) from None
        say(f"{args.region} region {'stopped' if args.action == 'stop-region' else 'running'}")
    else:
        stopped = local.down()
        say(f"stack down ({', '.join(stopped) or 'nothing was running'})")
    return exitcodes.OK
