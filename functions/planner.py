"""Queue trigger: plan the next page of a job's inputs."""

import azure.functions as func

from shared.messages import PlanMessage
from shared.service import runtime
from shared.service.planning import planner

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name="%PARALLELRUN_PLAN_QUEUE%", connection="AzureWebJobsStorage")
def plan(msg: func.QueueMessage) -> None:
    rt = runtime.current()
    planner.plan_step(rt.storage, rt.ledger, PlanMessage.from_json(msg.get_body()))
