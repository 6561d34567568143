"""The finalizer: once every mini-batch has settled (or the job was stopped), commit the output
blob in input order, write the job's summary log, and record the final state.

Idempotent: a duplicate or retried finalize message recommits the same block list and rewrites the
same summary; a finished job is left alone.
"""

from __future__ import annotations

import logging
import time

from . import decisions, index
from .jobcontext import output_target
from .ledger import Conflict, JobRow, Ledger, Totals
from .messages import FinalizeMessage
from .output import assemble, join
from .states import BatchState, JobState
from .storage import Storage
from .summary import job_result_text

log = logging.getLogger("parallelrun.finalizer")


def finalize(storage: Storage, ledger: Ledger, msg: FinalizeMessage) -> str:
    job = ledger.get_job(msg.job_id)
    if JobState(job.state).terminal:
        return "already finished"
    totals = ledger.totals(job.job_id)
    if not job.stop_reason and not decisions.complete(job, totals):
        log.info("finalize early: job=%s settled=%d/%d planning_done=%s", job.job_id,
                 totals.batches_done, job.planned, job.planning_done)
        return "not complete"
    if job.state != JobState.FINALIZING:
        try:
            job = ledger.update_job(job, state=JobState.FINALIZING)
        except Conflict:
            return finalize(storage, ledger, msg)
    target = output_target(storage.settings, job)
    winners = [(b.index, b.block_id) for b in ledger.batches(
        job.job_id, select=["PartitionKey", "RowKey", "state", "block_id"])
        if b.state == BatchState.SUCCEEDED and b.block_id]
    url = ""
    if job.spec.get("output_action", "append_row") == "append_row":
        url = assemble(storage, target, winners)
    state, reason = decisions.final_state(job, totals)
    if state is JobState.SUCCEEDED and job.stop_reason:
        reason = job.stop_reason
    _write_summary(storage, job, totals, state, reason, url)
    try:
        ledger.update_job(job, state=state, error=reason or job.error, rows=totals.rows,
                          ended_at=time.time())
    except Conflict:
        return finalize(storage, ledger, msg)
    index.set_state(storage, job, state)
    log.info("finalized: job=%s state=%s rows=%d items ok=%d failed=%d %s", job.job_id, state,
             totals.rows, totals.items_succeeded, totals.items_failed, reason)
    return state.value


def _write_summary(storage: Storage, job: JobRow, totals: Totals, state: JobState, reason: str,
                   url: str) -> None:
    text = job_result_text(job, totals, state, reason, url, ledger_errors=None)
    storage.container(job.output_container).upload_blob(
        join(job.output_prefix, "logs/job_result.txt"), text.encode("utf-8"), overwrite=True)
