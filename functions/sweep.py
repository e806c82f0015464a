"""Timer trigger: finish the recovery points no message will finish any more: pending ones whose
commit message was lost, committed ones without their follow-ups (shared.service.sweep).

The schedule is the app setting SweepSchedule (NCRONTAB)."""
import logging

import azure.functions as func

from shared.bootstrap import services
from shared.service import sweep as use_case

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%SweepSchedule%", run_on_startup=False)
def sweep(timer: func.TimerRequest) -> None:
    report = use_case.sweep(services())
    logging.info("sweep: committed %d, failed %d, still pending %d, follow-ups redone %d",
                 len(report["committed"]), len(report["failed"]), len(report["pending"]),
                 len(report["followed_up"]))
