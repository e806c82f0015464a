"""Queue trigger: prepare a free restore job (shared.handlers.prepare_restore)."""
import logging

import azure.functions as func

from shared import handlers
from shared.bootstrap import services

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name=handlers.RESTORE_QUEUE, connection="Storage")
def restore(msg: func.QueueMessage) -> None:
    job = handlers.prepare_restore(services(), msg.get_body())
    logging.info("restore %s: job %s is %s", msg.id, job.id, job.status)
