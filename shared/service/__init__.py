"""The service's use cases, one module each: vaults, ingest, commit, restore, the agents' API,
replication, scrub, and how queue messages are delivered.

Words:
- Services: the dependencies every handler takes as an argument (context.Services); handlers
  never read settings or build clients (shared.bootstrap wires them).
- handler: a function of a use case that takes a typed message (shared.messages) and the
  services, and returns a domain record or an answer. It raises shared.errors: permanent or
  retryable, never an HTTP status. Every message handler is idempotent: a replayed message
  finds its work done and changes nothing.
- trigger: functions/ turns an Azure Functions trigger into a call of a handler
  (delivery.deliver for queues; functions/api.py maps errors to HTTP statuses).
"""
