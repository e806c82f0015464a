"""Queue trigger: commit a recovery point once its chunks are verified (shared.service.commit).

While chunks are pending the handler queues the message again with a delay, so a slow ingest
never sends a good commit to commit-poison."""
import logging

import azure.functions as func

from shared.bootstrap import services
from shared.messages import CommitMessage, parse_signed_message
from shared.service import commit as use_case, delivery
from shared.service.context import COMMIT_QUEUE, Services

bp = func.Blueprint()


def handle(svc: Services, text: str) -> str:
    point = use_case.commit_point(svc, parse_signed_message(text, CommitMessage))
    return f"point {point.id} is {point.state} {point.reason or ''}"


@bp.queue_trigger(arg_name="msg", queue_name=COMMIT_QUEUE, connection="Storage")
def commit(msg: func.QueueMessage) -> None:
    svc = services()
    logging.info("commit %s: %s", msg.id, delivery.deliver(svc, COMMIT_QUEUE, msg.get_body(),
                                                           lambda text: handle(svc, text), delivery.AGENT_SHARE))
