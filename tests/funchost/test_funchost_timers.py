"""Timer triggers: schedules from app settings, failures that do not stop the schedule, run on startup."""
from __future__ import annotations

import time

import azure.functions as func
from azure.functions.timer import TimerRequest
from funchost_helpers import wait_until


def test_a_timer_fires_on_its_schedule_and_a_failing_one_keeps_its_schedule(run_host):
    ticks, failures = [], []
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%")
    def tick(timer: func.TimerRequest) -> None:
        ticks.append((time.monotonic(), timer))

    @app.timer_trigger(arg_name="timer", schedule="* * * * * *")
    async def broken(timer: func.TimerRequest) -> None:
        failures.append(timer)
        raise RuntimeError("retention sweep failed")

    run_host(app, settings={"TICK_SCHEDULE": "*/1 * * * * *"})
    wait_until(lambda: len(ticks) >= 3 and len(failures) >= 2, timeout=6)

    assert all(isinstance(timer, TimerRequest) and timer.past_due is False for _, timer in ticks)
    assert 0.5 < ticks[2][0] - ticks[1][0] < 1.5
    assert ticks[1][1].schedule_status["Last"] is not None


def test_run_on_startup_fires_at_once(run_host):
    fired = []
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
    def yearly(timer: func.TimerRequest) -> None:
        fired.append(timer)

    run_host(app)
    wait_until(lambda: fired, timeout=2)
    assert fired[0].past_due is False
