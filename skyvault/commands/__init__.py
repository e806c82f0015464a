"""The `skyvault` commands, one module each: its `add_parser(subparsers)` defines its
arguments and its `run(args)` does it and returns the exit code (skyvault.exitcodes).

A command turns its arguments into a call of the agent or a handler and maps errors to a
message and an exit code; the work happens elsewhere. They import at start-up only what
skyvault.cli imports before it freezes the garbage collector's heap: the agent's engines,
the local stack and the operator's handlers are imported inside `run`.
"""
