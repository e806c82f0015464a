"""Queue trigger: verify and index the chunks an agent uploaded (shared.service.ingest)."""
import logging

import azure.functions as func

from shared.bootstrap import services
from shared.messages import ChunksMessage, parse_signed_message
from shared.service import delivery, ingest as use_case
from shared.service.context import INGEST_QUEUE, Services

bp = func.Blueprint()


def handle(svc: Services, text: str) -> str:
    return str(use_case.ingest_chunks(svc, parse_signed_message(text, ChunksMessage)).as_dict())


@bp.queue_trigger(arg_name="msg", queue_name=INGEST_QUEUE, connection="Storage")
def ingest(msg: func.QueueMessage) -> None:
    svc = services()
    logging.info("ingest %s: %s", msg.id, delivery.deliver(svc, INGEST_QUEUE, msg.get_body(),
                                                           lambda text: handle(svc, text), delivery.AGENT_SHARE))
