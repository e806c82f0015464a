"""Queue trigger: copy GRS vaults' blobs to the paired region and mark points geo-protected
(shared.replication.replicate)."""
import logging

import azure.functions as func

from shared import handlers, replication
from shared.bootstrap import services

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name=handlers.REPLICATE_QUEUE, connection="Storage")
def replicate(msg: func.QueueMessage) -> None:
    outcome = replication.replicate(services(), msg.get_body())
    logging.info("replicate %s: %s", msg.id, outcome)
