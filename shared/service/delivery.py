"""Queue delivery: what a queue trigger does with a handler's outcome, so that a message that
can never succeed stops at once and one that may succeed later is retried for long enough.

- success: the message is done (the host deletes it).
- permanent error (shared.errors.Permanent: malformed, forged, unknown vault ...): the
  function writes the message to `<queue>-poison` itself, with the reason (messages.Poisoned),
  and completes, instead of failing it maxDequeueCount times.
- retryable error (a region or the index did not answer, a chunk blob not there yet): the
  function queues the original message again, wrapped in a messages.Redelivery that counts
  the attempts, with a delay that doubles from REDELIVERY_BASE_S to REDELIVERY_MAX_S, and
  completes; after REDELIVERY_ATTEMPTS (about 40 minutes) it poisons it with the last reason.
  host.json's visibilityTimeout and maxDequeueCount cannot do this: the Storage Queues
  extension retries after a fixed delay, and Azure Functions' retry policies do not apply
  to queue triggers.
- any other exception (a bug): raised, so the host retries and poisons it as usual.

A wrapper that would not fit in a queue message (only a message near the size limit) falls
back to what the host does: the original text alone into poison, or a failed invocation.
"""
from __future__ import annotations

import base64
import logging
import time
from typing import Callable

from shared.errors import Permanent, Retryable
from shared.messages import Poisoned, Redelivery, vault_of
from shared.service.context import POISON_SUFFIX, Services, enqueue, iso_time
from shared.service.fairness import FairShare

log = logging.getLogger("skyvault.delivery")

REDELIVERY_BASE_S = 15
REDELIVERY_MAX_S = 600
REDELIVERY_ATTEMPTS = 10
QUEUE_MESSAGE_BYTES = 64 * 1024  # Azure Storage's limit, of the base64 text
# The agents' queues' (ingest, commit, restore) fair share of this instance's workers.
AGENT_SHARE = FairShare()


def redelivery_delay(attempt: int) -> int:
    """Seconds before delivery `attempt` + 1: 15, 30, 60 ... at most REDELIVERY_MAX_S."""
    return min(REDELIVERY_BASE_S * 2 ** (attempt - 1), REDELIVERY_MAX_S)


def _fits(text: str) -> bool:
    try:
        return len(base64.b64encode(text.encode())) <= QUEUE_MESSAGE_BYTES
    except UnicodeEncodeError:  # a lone surrogate (an escaped one in a redelivery wrapper): no queue takes it
        return False


def deliver(services: Services, queue: str, body: bytes, handle: Callable[[str], str],
            share: FairShare | None = None) -> str:
    """Run `handle` on the message text of one delivery from `queue`; returns what happened.
    With `share`, a message of a vault that has its share of the workers running is queued
    again for later (shared/service/fairness.py), not counted as an attempt."""
    try:
        delivery = Redelivery.unwrap(body.decode("utf-8"))
    except UnicodeDecodeError:
        delivery = Redelivery(body.decode("utf-8", "replace"), 0, "")
        return poison(services, queue, delivery, "message is not UTF-8 text")
    except Permanent as e:
        return poison(services, queue, Redelivery(body.decode(), 0, ""), str(e))
    vault = vault_of(delivery.message) if share is not None else None
    if vault is not None:
        delay = share.admit(vault)
        if delay is not None:
            again = Redelivery(delivery.message, delivery.attempt, delivery.reason).to_json()
            if _fits(again):
                enqueue(services, queue, again, delay=delay)
                return f"deferred {delay}s: vault {vault} has its share of the workers running"
            vault = None  # too large to queue again: handled now, outside the share
    started = time.monotonic()
    try:
        return _handled(services, queue, delivery, handle)
    finally:
        if vault is not None:
            share.done(vault, time.monotonic() - started)


def _handled(services: Services, queue: str, delivery: Redelivery, handle: Callable[[str], str]) -> str:
    try:
        return handle(delivery.message)
    except Permanent as e:
        return poison(services, queue, delivery, str(e))
    except Retryable as e:
        attempt = delivery.attempt + 1
        if attempt >= REDELIVERY_ATTEMPTS:
            return poison(services, queue, delivery, f"still failing after {attempt} attempts: {e}")
        again = Redelivery(delivery.message, attempt, str(e)).to_json()
        if not _fits(again):
            raise
        delay = redelivery_delay(attempt)
        enqueue(services, queue, again, delay=delay)
        log.warning("%s: attempt %d failed (%s); delivering it again in %ds", queue, attempt, e, delay)
        return f"retrying in {delay}s after attempt {attempt}: {e}"


def poison(services: Services, queue: str, delivery: Redelivery, reason: str) -> str:
    def record(message: str, why: str) -> str:
        return Poisoned(queue=queue, reason=why, message=message, attempts=delivery.attempt + 1,
                        at=iso_time(services.clock())).to_json()

    text = record(delivery.message, reason)
    if not _fits(text):
        text = delivery.message
    if not _fits(text):
        # Neither fits (a non-UTF-8 message near the limit, its bad bytes now U+FFFD): keep its start.
        keep = QUEUE_MESSAGE_BYTES // 16  # each may be written as a 6-character escape
        text = record(delivery.message[:keep], f"{reason} (message cut to its first {keep} of "
                                               f"{len(delivery.message)} characters)")
    target = services.queue(queue + POISON_SUFFIX)
    target.create()
    enqueue(services, queue + POISON_SUFFIX, text)
    log.error("%s: message moved to %s%s: %s", queue, queue, POISON_SUFFIX, reason)
    return f"poisoned: {reason}"
