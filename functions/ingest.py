"""Queue trigger: verify and index the chunks an agent uploaded (shared.handlers.ingest_chunks)."""
import logging

import azure.functions as func

from shared import handlers
from shared.bootstrap import services

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name=handlers.INGEST_QUEUE, connection="Storage")
def ingest(msg: func.QueueMessage) -> None:
    counts = handlers.ingest_chunks(services(), msg.get_body())
    logging.info("ingest %s: %s", msg.id, counts)
