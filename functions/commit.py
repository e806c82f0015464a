"""Queue trigger: commit a recovery point once its chunks are verified (shared.handlers.commit_point).

While chunks are pending the handler raises, and the host retries the message
after host.json's visibilityTimeout, up to maxDequeueCount times."""
import logging

import azure.functions as func

from shared import handlers
from shared.bootstrap import services

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name=handlers.COMMIT_QUEUE, connection="Storage")
def commit(msg: func.QueueMessage) -> None:
    point = handlers.commit_point(services(), msg.get_body())
    logging.info("commit %s: point %s is %s %s", msg.id, point.id, point.state, point.reason or "")
