"""Timer triggers on NCRONTAB schedules.

Owns parsing a schedule and firing one function on it. NCRONTAB, as the
Functions host reads it, has six fields with seconds first
(`{second} {minute} {hour} {day} {month} {day-of-week}`); a day and a
day-of-week must both match (NCrontab ANDs them, where classic cron ORs).
Times are UTC, the host's default. Like the real TimerListener, a timer
never overlaps itself: the next occurrence is taken after the current
invocation ends, so occurrences missed meanwhile are skipped. A failed
invocation is logged and the schedule goes on, and so does one past
functionTimeout: the next occurrence may then fire while the timed-out
function's thread still runs, which in Azure the worker's restart would have
ended (see invoker).

There is no schedule monitor here (nothing is stored between runs), so
`past_due` is always False, as for a timer without `use_monitor`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from azure.functions.timer import TimerRequest
from croniter import croniter

from funchost.catalog import FunctionSpec
from funchost.config import ConfigError
from funchost.invoker import InvocationFailed, Invoker

log = logging.getLogger("funchost")


class NcrontabSchedule:
    def __init__(self, expression: str, what: str) -> None:
        fields = expression.split()
        if len(fields) != 6:
            raise ConfigError(f"{what}: schedule {expression!r} must be NCRONTAB with six fields, seconds first "
                              f"(e.g. '0 */5 * * * *')")
        if not croniter.is_valid(expression, second_at_beginning=True):
            raise ConfigError(f"{what}: schedule {expression!r} is not a valid NCRONTAB expression")
        self.expression = expression

    def next_after(self, moment: datetime) -> datetime:
        return croniter(self.expression, moment, second_at_beginning=True, day_or=False).get_next(datetime)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class TimerListener:
    def __init__(self, spec: FunctionSpec, schedule: NcrontabSchedule, run_on_startup: bool,
                 invoker: Invoker, clock: Callable[[], datetime] = utc_now) -> None:
        self.spec = spec
        self._schedule = schedule
        self._run_on_startup = run_on_startup
        self._invoker = invoker
        self._clock = clock
        self._stopping = threading.Event()
        self._last: datetime | None = None
        self._thread = threading.Thread(target=self._run, name=f"timer-{spec.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def join(self, deadline: float) -> None:
        """Wait for the timer's thread until `deadline` (monotonic)."""
        if self._thread.is_alive():
            self._thread.join(max(deadline - time.monotonic(), 0))

    def _run(self) -> None:
        if self._run_on_startup:
            self._fire(self._clock(), "run on startup")
        while not self._stopping.is_set():
            due = self._schedule.next_after(self._clock())
            while (wait := (due - self._clock()).total_seconds()) > 0:
                if self._stopping.wait(wait):
                    return
            self._fire(due, f"schedule {self._schedule.expression!r} due {due.isoformat()}")

    def _fire(self, due: datetime, details: str) -> None:
        now = self._clock()
        status = {"Last": self._last.isoformat() if self._last else None,
                  "Next": self._schedule.next_after(due).isoformat(),
                  "LastUpdated": now.isoformat()}
        request = TimerRequest(past_due=False, schedule_status=status, schedule={"AdjustForDST": True})
        self._last = due
        try:
            self._invoker.invoke(self.spec, request, details)
        except InvocationFailed:
            pass  # logged by the invoker; the schedule goes on
