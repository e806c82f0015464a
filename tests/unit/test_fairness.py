"""Fair share of the queue workers between vaults (shared/service/fairness.py): a vault that
floods the shared agent queues holds at most its share of an instance's workers; its other
messages are queued again for later, uncounted, while another vault's are handled at once."""
from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from shared.messages import Redelivery
from shared.service import delivery
from shared.service.fairness import FairShare
from tests.unit.test_delivery import clock, services  # noqa: F401 (fixtures: queues on a moved clock)

A, B = "a" * 32, "b" * 32


def message(vault: str, n: int = 0) -> bytes:
    return json.dumps({"v": 2, "type": "chunks", "id": f"m-{n}", "tenantId": "t", "vaultId": vault}).encode()


def test_a_vault_runs_at_most_its_share_and_another_vault_is_admitted_at_once(clock):
    share = FairShare(per_vault=2, clock=clock)
    assert share.admit(A) is None and share.admit(A) is None
    assert share.admit(A) >= 1, "a third delivery of A waits"
    assert share.admit(B) is None, "B is not behind A"
    share.done(A, 0.5)
    assert share.admit(A) is None, "a finished delivery frees its place"


def test_deferred_messages_of_a_backlog_come_back_at_the_pace_the_vault_is_served(clock):
    share = FairShare(per_vault=2, clock=clock)
    share.admit(A), share.admit(A)
    share.done(A, 10.0), share.admit(A)  # A's deliveries take 10 s: it is served at 2 every 10 s
    share.admit(A)
    delays = [share.admit(A) for _ in range(20)]
    # The n-th message deferred and not yet due waits about n times 10 s over 2 (up to 20% jitter).
    assert all((n + 2) * 5 - 1 <= d <= (n + 2) * 6 + 1 for n, d in enumerate(delays)), delays
    clock.now = 1000.0  # all due again: the backlog is empty, the next waits little
    assert share.admit(A) < 10


def test_deliver_defers_a_vault_over_its_share_uncounted_and_handles_another(services, clock):
    share = FairShare(per_vault=1, clock=clock)
    handled = []
    assert share.admit(A) is None  # one of A's deliveries is running
    outcome = delivery.deliver(services, "ingest", message(A, 1), handled.append, share)
    assert outcome.startswith("deferred ") and handled == []
    assert delivery.deliver(services, "ingest", message(B, 2), lambda text: handled.append(text) or "done",
                            share) == "done"
    assert [json.loads(t)["vaultId"] for t in handled] == [B]
    assert services.queue("ingest").receive(10, 30) == [], "the deferred message is not due yet"
    clock.now += 600
    [again] = services.queue("ingest").receive(10, 30)
    wrapped = Redelivery.unwrap(base64.b64decode(again.body).decode())
    assert wrapped.message == message(A, 1).decode() and wrapped.attempt == 0, "a deferral is no attempt"
    share.done(A, 0.1)
    assert delivery.deliver(services, "ingest", base64.b64decode(again.body), lambda text: "done", share) == "done"
    assert share.running(A) == 0, "done even when the handler raises or returns"


def test_a_message_naming_no_vault_is_handled_outside_the_share(services, clock):
    share = FairShare(per_vault=1, clock=clock)
    for text in (b"not json", b"[]", b'{"vaultId": 5}', b'{"vaultId": "../x"}'):
        assert delivery.deliver(services, "ingest", text, lambda t: "handled", share) == "handled"
    assert share.running("../x") == 0


def test_a_flood_of_one_vault_does_not_hold_every_worker(services):
    """Eight workers, 80 slow messages of vault A queued before one of vault B: B is handled
    while A's backlog is still being served, not after it."""
    share = FairShare(per_vault=2)
    finished: list[str] = []
    lock = threading.Lock()

    def handle(text: str) -> str:
        time.sleep(0.05)
        with lock:
            finished.append(json.loads(text)["vaultId"])
        return "done"

    bodies = [message(A, n) for n in range(80)] + [message(B, 80)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda body: delivery.deliver(services, "ingest", body, handle, share), bodies))
    assert finished.index(B) < 10, f"B finished {finished.index(B) + 1}th"
    deferred = sum(o.startswith("deferred") for o in outcomes)
    assert deferred >= 60, "A's flood costs a queue write each, not a handling"
    assert services.queue("ingest").approximate_count() == deferred, "each deferred message is queued again"
