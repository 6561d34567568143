"""What happens to messages the host moved to a poison queue (after ``maxDequeueCount`` failed
deliveries): the ledger records them, so nothing is lost silently.

* a mini-batch: failed, all its items failed, counted against the budgets (:mod:`shared.service.working.worker`);
* a planning step: the job stops with "planning failed" and is finalized;
* a finalization: the job is marked failed with the reason, its output left as it is.

A poison message that cannot even be decoded is logged and dropped (there is nothing to record).
"""

from __future__ import annotations

import logging

from shared.errors import OperatorError
from shared.messages import BatchMessage, FinalizeMessage, PlanMessage
from shared.service.jobs import stopping
from shared.service.runtime import Runtime

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
    reason = (f"planning failed: step {msg.step} of job {msg.job_id} could not be run "
              "(its message reached the poison queue; see the host's logs)")
    stopping.stop(rt.storage, rt.ledger, msg.job_id, reason, planning_done=True)
    log.error("%s", reason)
    return "recorded"


def finalize(rt: Runtime, body: bytes) -> str:
    msg = FinalizeMessage.from_json(body)
    reason = (f"finalizing job {msg.job_id} failed repeatedly (its message reached the poison "
              "queue; see the host's logs); the output may be incomplete")
    stopping.fail(rt.ledger, msg.job_id, reason)
    log.error("%s", reason)
    return "recorded"
