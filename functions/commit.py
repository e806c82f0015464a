"""Queue trigger: commit a recovery point once its chunks are verified (shared.handlers.commit_point).

While chunks are pending the handler queues the message again with a delay,
so a slow ingest never sends a good commit to commit-poison."""
import logging

import azure.functions as func

from shared import handlers
from shared.bootstrap import services

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name=handlers.COMMIT_QUEUE, connection="Storage")
def commit(msg: func.QueueMessage) -> None:
    point = handlers.commit_point(services(), msg.get_body())
    logging.info("commit %s: point %s is %s %s", msg.id, point.id, point.state, point.reason or "")
