"""Timer trigger: the retention sweep (shared.service.retention_sweep): every item's policy
applied, soft-deleted points purged when their time is up, garbage collected, as a single
instance.

The schedule is the app setting RetentionSchedule (NCRONTAB)."""
import logging

import azure.functions as func

from shared.bootstrap import services
from shared.service import retention_sweep as use_case

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%RetentionSchedule%", run_on_startup=False)
def retention(timer: func.TimerRequest) -> None:
    report = use_case.run(services())
    if report.busy:
        logging.info("retention sweep skipped: %s", report.busy)
        return
    for done in report.vaults:
        collected = done.gc.as_dict() if done.gc else {}
        logging.info("retention sweep of vault %s: %d runs ended, %d points expired, %d purged, gc %s%s",
                     done.vault_id, len(done.ended_runs), len(done.expired), len(done.purged), collected,
                     f", deferred: {done.error}" if done.error else "")
