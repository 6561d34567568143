"""Queue triggers on the poison queues: a message the host gave up on is recorded, never lost."""

import azure.functions as func

from shared.service import runtime
from shared.service.jobs import poison

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name="%PARALLELRUN_BATCH_QUEUE%-poison",
                  connection="AzureWebJobsStorage")
def batch_poison(msg: func.QueueMessage) -> None:
    poison.batch(runtime.current(), msg.get_body(), msg.dequeue_count or 1)


@bp.queue_trigger(arg_name="msg", queue_name="%PARALLELRUN_PLAN_QUEUE%-poison",
                  connection="AzureWebJobsStorage")
def plan_poison(msg: func.QueueMessage) -> None:
    poison.plan(runtime.current(), msg.get_body())


@bp.queue_trigger(arg_name="msg", queue_name="%PARALLELRUN_FINALIZE_QUEUE%-poison",
                  connection="AzureWebJobsStorage")
def finalize_poison(msg: func.QueueMessage) -> None:
    poison.finalize(runtime.current(), msg.get_body())
