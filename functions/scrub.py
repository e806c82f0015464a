"""Timer trigger: compare both regions' copies of a rolling sample of chunks and heal
(shared.service.scrub). The schedule is the app setting ScrubSchedule (NCRONTAB)."""
import logging

import azure.functions as func

from shared.service import scrub as use_case
from shared.bootstrap import services

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%ScrubSchedule%", run_on_startup=False)
def scrub(timer: func.TimerRequest) -> None:
    for vault_id, report in use_case.scrub(services()).items():
        logging.info("scrub vault %s: checked %d, healed primary %d, healed secondary %d, damaged %d",
                     vault_id, len(report["checked"]), len(report["healed_primary"]),
                     len(report["healed_secondary"]), len(report["damaged"]))
