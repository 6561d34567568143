"""What happens to messages the host moved to a poison queue (after ``maxDequeueCount`` failed
deliveries): the ledger records them, so nothing is lost silently.

* a mini-batch: failed, all its items failed, counted against the budgets (:mod:`shared.service.working.worker`);
* a planning step: the job stops with "planning failed" and is finalized;
* a finalization: the job is marked failed with the reason, its output left as it is.

A poison message that cannot even be decoded is logged and dropped (there is nothing to record).
"""

from __future__ import annotations

import logging
import time

from shared.errors import OperatorError
from shared.messages import BatchMessage, FinalizeMessage, PlanMessage
from shared.service.ledger.store import Conflict
from shared.service.runtime import Runtime
from shared.states import JobState

log = logging.getLogger("parallelrun.poison")


def batch(rt: Runtime, body: bytes, dequeue_count: int) -> str:
    try:
        msg = BatchMessage.from_json(body)
    except OperatorError as exc:
        log.error("undecodable poison message dropped: %s", exc)
        return "dropped"
    return rt.worker.record_poison(msg, dequeue_count)


def plan(rt: Runtime, body: bytes) -> str:
    msg = PlanMessage.from_json(body)
    job = rt.ledger.get_job(msg.job_id)
    reason = (f"planning failed: step {msg.step} of job {msg.job_id} could not be run "
              "(its message reached the poison queue; see the host's logs)")
    while job.active:
        try:
            job = rt.ledger.update_job(job, stop_reason=reason, error=reason, planning_done=True,
                                       stopped_at=time.time())
        except Conflict:
            job = rt.ledger.get_job(msg.job_id)
            continue
        rt.storage.queue(rt.settings.finalize_queue).send_message(FinalizeMessage(job.job_id).to_json())
    log.error("%s", reason)
    return "recorded"


def finalize(rt: Runtime, body: bytes) -> str:
    msg = FinalizeMessage.from_json(body)
    job = rt.ledger.get_job(msg.job_id)
    reason = (f"finalizing job {msg.job_id} failed repeatedly (its message reached the poison "
              "queue; see the host's logs); the output may be incomplete")
    while not JobState(job.state).terminal:
        try:
            job = rt.ledger.update_job(job, state=JobState.FAILED, error=reason, ended_at=time.time())
        except Conflict:
            job = rt.ledger.get_job(msg.job_id)
    log.error("%s", reason)
    return "recorded"
