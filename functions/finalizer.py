"""Queue trigger: assemble a finished job's output in input order and record its final state."""

import azure.functions as func

from shared.messages import FinalizeMessage
from shared.service import runtime
from shared.service.finalizing import finalizer

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name="%PARALLELRUN_FINALIZE_QUEUE%", connection="AzureWebJobsStorage")
def finalize(msg: func.QueueMessage) -> None:
    rt = runtime.current()
    finalizer.finalize(rt.storage, rt.ledger, FinalizeMessage.from_json(msg.get_body()))
