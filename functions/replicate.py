"""Queue trigger: copy GRS vaults' blobs to the paired region and mark points geo-protected
(shared.service.replication)."""
import logging

import azure.functions as func

from shared.bootstrap import services
from shared.messages import ReplicateMessage
from shared.service import delivery, replication as use_case
from shared.service.context import REPLICATE_QUEUE, Services

bp = func.Blueprint()


def handle(svc: Services, text: str) -> str:
    return use_case.replicate(svc, ReplicateMessage.parse(text))


@bp.queue_trigger(arg_name="msg", queue_name=REPLICATE_QUEUE, connection="Storage")
def replicate(msg: func.QueueMessage) -> None:
    svc = services()
    logging.info("replicate %s: %s", msg.id, delivery.deliver(svc, REPLICATE_QUEUE, msg.get_body(),
                                                              lambda text: handle(svc, text)))
