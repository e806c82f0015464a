"""A local Azure Functions host for Python v2 apps (the `func` host cannot be installed here).

It runs the same function_app.py that deploys to Azure, reading its functions
from the app's decorators and honouring host.json as the Functions host does,
so that what works here works there. Modules, each owning one part:

- config:  host.json (functionTimeout, queues, http) and app settings (`%NAME%`,
           connections, the request body limit)
- catalog: importing the app and reading its functions and bindings
- invoker: calling a function, sync or async, within functionTimeout, with one
           log line per invocation
- queues:  queue triggers (batches, leases, retries, poison queue)
- timers:  timer triggers on NCRONTAB schedules
- routes:  HTTP route templates
- web:     the HTTP server for HTTP triggers and /admin/host/status, with
           Azure's request body and 230-second response limits
- host:    FunctionHost, which wires them; __main__ is the command line
"""
from funchost.host import FunctionHost

__all__ = ["FunctionHost"]
