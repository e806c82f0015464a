"""Single-instance locks (shared.service.singleton) on the memory fake. Its leases expire by
the `clock` fixture, moved by hand; renewals run every QUICKLY real seconds, or, where a test
renews by hand, not within the test (every RARELY)."""
from __future__ import annotations

import re
import threading
import time

import pytest

from shared.fakes import MemoryBlobAccount
from shared.ports import LeaseHeld, LeaseLost
from shared.service.singleton import Busy, hold
from tests.faults import CRASH, LOST_ANSWER, Faults, FaultyContainer

QUICKLY = 0.01
RARELY = 10


@pytest.fixture
def container(clock, request):
    region = re.sub(r"[^a-z0-9]+", "-", f"locks-{request.node.name}".lower())
    container = MemoryBlobAccount(region, utcnow=clock).container("vault")
    container.create()
    return container


def renewer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lease-renewal-")]


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(QUICKLY)
    return condition()


def test_hold_takes_the_lock_and_a_second_holder_is_busy_until_it_is_released(container):
    with hold(container, "retention", 15) as holder:
        assert holder.blob == "locks/retention"
        assert list(container.list("locks/")) == ["locks/retention"]
        with pytest.raises(Busy, match=r"'retention'.*another instance"):
            with hold(container, "retention", 15):
                pytest.fail("two holders of one lock")
        holder.check()
    with hold(container, "retention", 15):
        pass


def test_locks_of_other_names_do_not_exclude_each_other(container):
    with hold(container, "retention", 15), hold(container, "scrub", 15):
        assert list(container.list("locks/")) == ["locks/retention", "locks/scrub"]


def test_renewals_keep_the_lease_past_its_length(container, clock):
    faults = Faults()
    watched = FaultyContainer(container, faults, "primary")
    with hold(watched, "retention", 15, renew_every=QUICKLY, now=clock.seconds) as holder:
        for _ in range(4):
            clock.advance(10)
            # The first renewal counted may have begun before the clock moved; the next did not.
            renewed = len(faults.effects)
            assert wait_until(lambda: len(faults.effects) > renewed + 1)
        with pytest.raises(LeaseHeld):
            container.acquire_lease("locks/retention", 15)
        holder.check()
    assert "blob.primary.renew_lease" in faults.effects


def test_a_lease_released_from_outside_is_lost_and_check_raises(container):
    with hold(container, "retention", 15, renew_every=QUICKLY) as holder:
        container.release_lease(holder.blob, holder.lease_id)
        assert holder.lost.wait(5)
        with pytest.raises(LeaseLost, match="'retention'"):
            holder.check()


def test_a_lease_that_expired_and_was_taken_by_another_is_lost(container, clock):
    with hold(container, "retention", 15, renew_every=RARELY) as holder:
        clock.advance(16)
        container.acquire_lease(holder.blob, 60)
        holder.renew()
        assert holder.lost.is_set()
        with pytest.raises(LeaseLost):
            holder.check()


def test_an_answer_lost_on_renewal_is_retried_and_the_lease_kept(container):
    faults = Faults()
    with hold(FaultyContainer(container, faults, "primary"), "retention", 15, renew_every=QUICKLY) as holder:
        faults.arm(1, LOST_ANSWER)
        assert wait_until(lambda: faults.fired is not None and faults.effects.count("blob.primary.renew_lease") > 2)
        holder.check()


def test_renewals_failing_for_the_whole_length_lose_the_lease(container, clock):
    faults = Faults()
    with hold(FaultyContainer(container, faults, "primary"), "retention", 15, renew_every=RARELY,
              now=clock.seconds) as holder:
        faults.arm(1, LOST_ANSWER)
        holder.renew()
        assert not holder.lost.is_set()
        holder.check()
        clock.advance(15)
        with pytest.raises(LeaseLost, match="not renewed for 15 s"):
            holder.check()


def test_a_renewal_that_fails_otherwise_loses_the_lease(container):
    faults = Faults()
    with hold(FaultyContainer(container, faults, "primary"), "retention", 15, renew_every=RARELY) as holder:
        faults.arm(1, CRASH)
        holder.renew()
        faults.revive()
        assert holder.lost.is_set()
        with pytest.raises(LeaseLost, match="the process died"):
            holder.check()


def test_leaving_stops_the_renewals_and_releases(container):
    with hold(container, "retention", 15, renew_every=QUICKLY) as holder:
        assert len(renewer_threads()) == 1
    assert renewer_threads() == []
    with pytest.raises(LeaseLost):
        container.renew_lease(holder.blob, holder.lease_id)


def test_leaving_on_an_error_stops_the_renewals_and_releases(container):
    with pytest.raises(RuntimeError, match="the sweep failed"):
        with hold(container, "retention", 15, renew_every=QUICKLY):
            raise RuntimeError("the sweep failed")
    assert renewer_threads() == []
    with hold(container, "retention", 15):
        pass


def test_busy_starts_no_renewals(container):
    container.acquire_lease("locks/retention", 60)
    with pytest.raises(Busy):
        with hold(container, "retention", 15):
            pass
    assert renewer_threads() == []


@pytest.mark.parametrize("seconds, renew_every", [(15, 15), (15, 0), (61, None), (14, None)])
def test_a_lease_that_renewals_cannot_keep_is_refused(container, seconds, renew_every):
    with pytest.raises(ValueError):
        with hold(container, "retention", seconds, renew_every=renew_every):
            pass
    assert renewer_threads() == []
