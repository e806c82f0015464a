"""Queue trigger `meter`: usage events into daily usage, each exactly once; timer `reconcile`:
each vault's stored bytes measured and compared with what was metered (shared.service.metering).

The reconcile schedule is the app setting ReconcileSchedule (NCRONTAB)."""
import logging

import azure.functions as func

from shared.bootstrap import services
from shared.messages import UsageMessage
from shared.service import delivery, metering as use_case
from shared.service.context import USAGE_QUEUE, Services

bp = func.Blueprint()


def handle(svc: Services, text: str) -> str:
    return use_case.meter(svc, UsageMessage.parse(text))


@bp.queue_trigger(arg_name="msg", queue_name=USAGE_QUEUE, connection="Storage")
def meter(msg: func.QueueMessage) -> None:
    svc = services()
    logging.info("meter %s: %s", msg.id, delivery.deliver(svc, USAGE_QUEUE, msg.get_body(), lambda text: handle(svc, text)))


@bp.timer_trigger(arg_name="timer", schedule="%ReconcileSchedule%", run_on_startup=False)
def reconcile(timer: func.TimerRequest) -> None:
    for reading in use_case.reconcile_all(services()):
        log = logging.warning if reading.drift else logging.info
        log("reconcile vault %s on %s: %d bytes in %d blobs, %d metered, drift %+d, %d events pending",
            reading.vault_id, reading.day, reading.measured, reading.blobs, reading.metered, reading.drift,
            reading.pending)
