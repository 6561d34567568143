"""Queue trigger: score one mini-batch in a scoring process and settle it in the ledger."""

import azure.functions as func

from shared.messages import BatchMessage
from shared.service import runtime

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name="%PARALLELRUN_BATCH_QUEUE%", connection="AzureWebJobsStorage")
def score_batch(msg: func.QueueMessage) -> None:
    batch = BatchMessage.from_json(msg.get_body())
    enqueued = batch.ready_at or (msg.insertion_time.timestamp() if msg.insertion_time else None)
    runtime.current().worker.handle(batch, msg.dequeue_count or 1, enqueued)
