"""Queue trigger: prepare a free restore job (shared.service.restore)."""
import logging

import azure.functions as func

from shared.bootstrap import services
from shared.messages import RestoreMessage, parse_signed_message
from shared.service import delivery, restore as use_case
from shared.service.context import RESTORE_QUEUE, Services

bp = func.Blueprint()


def handle(svc: Services, text: str) -> str:
    job = use_case.prepare_restore(svc, parse_signed_message(text, RestoreMessage))
    return f"job {job.id} is {job.status}"


@bp.queue_trigger(arg_name="msg", queue_name=RESTORE_QUEUE, connection="Storage")
def restore(msg: func.QueueMessage) -> None:
    svc = services()
    logging.info("restore %s: %s", msg.id, delivery.deliver(svc, RESTORE_QUEUE, msg.get_body(),
                                                            lambda text: handle(svc, text), delivery.AGENT_SHARE))
