"""Timer trigger: find jobs nothing drives any more (a submitter that died before enqueueing the
first planning message, a finalization that never ended) and drive them again."""

import azure.functions as func

from shared.service import runtime
from shared.service.jobs import sweep as sweeper

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%PARALLELRUN_SWEEP_SCHEDULE%", use_monitor=True)
def sweep(timer: func.TimerRequest) -> None:
    rt = runtime.current()
    sweeper.sweep(rt.storage, rt.ledger)
