"""`skyvault stack up|status|down|stop-region|start-region`: the local stack (skyvault.stack.local)."""
from __future__ import annotations

import argparse

from skyvault import exitcodes, home
from skyvault.commands.common import say
from skyvault.vaultclient import AgentError


def add_parser(subparsers) -> None:
    stack = subparsers.add_parser(
        "stack", help="run the whole service locally on emulators",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The whole service on this machine: two Azurite regions, the Cosmos DB emulator and the\n"
                    "Functions host, in the state folder. `up` starts them and prints their endpoints; `status`\n"
                    "exits STACK_DEGRADED if one is down; stop-region/start-region simulate a regional outage.",
        epilog="examples:\n  skyvault stack up --in-memory\n  skyvault stack status --json\n"
               "  skyvault stack stop-region secondary\n  skyvault stack down")
    stack.add_argument("action", choices=["up", "status", "down", "stop-region", "start-region"])
    stack.add_argument("region", nargs="?", choices=["primary", "secondary"],
                       help="with stop-region/start-region: the region to take down or bring back")
    stack.add_argument("--in-memory", action="store_true",
                       help="with up: keep blobs and queues in memory, not on disk (faster; lost when stopped)")
    stack.set_defaults(func=run)


def _endpoint(component: dict) -> str:
    return component.get("url") or component.get("blob") or component.get("endpoint") or ""


def run(args: argparse.Namespace) -> int:
    from skyvault.stack import emulators, local

    output = args.output
    if args.action == "up":
        try:
            state = local.up(in_memory=args.in_memory)
        except (local.StackError, emulators.EmulatorError) as e:
            raise AgentError(str(e)) from None
        say(f"stack up in {home.home()}")
        for name, component in state["components"].items():
            say(f"  {name:18} pid {component['pid']:<7} {_endpoint(component)}")
        # Its endpoints, not its settings: those hold the emulators' keys.
        output.emit("stack", home=str(home.home()), api_url=state["apiUrl"], in_memory=state["inMemory"],
                    started_at=state["startedAt"],
                    components={name: {"pid": c["pid"], "endpoint": _endpoint(c)}
                                for name, c in state["components"].items()})
        output.summary(action=args.action, components=len(state["components"]))
    elif args.action == "status":
        rows = local.status()
        for name, alive, where in rows:
            output.emit("component", name=name, running=alive, endpoint=where)
            say(f"  {name:18} {'running' if alive else 'STOPPED':8} {where}")
        running = sum(1 for _, alive, _ in rows if alive)
        output.summary(action=args.action, components=len(rows), running=running)
        return exitcodes.OK if running == len(rows) else exitcodes.STACK_DEGRADED
    elif args.action in ("stop-region", "start-region"):
        if args.region is None:
            raise AgentError(f"stack {args.action} needs a region: primary or secondary")
        try:
            (local.stop_region if args.action == "stop-region" else local.start_region)(args.region)
        except local.StackError as e:
            raise AgentError(str(e)) from None
        state = "stopped" if args.action == "stop-region" else "running"
        say(f"{args.region} region {state}")
        output.summary(action=args.action, region=args.region, state=state)
    else:
        stopped = local.down()
        say(f"stack down ({', '.join(stopped) or 'nothing was running'})")
        output.summary(action=args.action, stopped=stopped)
    return exitcodes.OK
