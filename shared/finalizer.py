"""The finalizer: once every mini-batch has settled (or the job was stopped), commit the output
blob in input order, write the job's logs, and record the final state.

A stopped job (cancelled, over budget, planning failed) is finalized once no try can still commit:
workers see the stop within ``job_cache_ttl_s``, and a try that already started either settles or
goes stale (older than ``run_invocation_timeout`` plus a margin: its worker died). Until then the
finalizer re-queues itself with a short delay. Idempotent: a duplicate or retried finalize message
recommits the same block list and rewrites the same logs; a finished job is left alone.
"""

from __future__ import annotations

import logging
import time

from . import decisions, index, summary
from .jobcontext import output_target
from .ledger import Conflict, JobRow, Ledger, Totals
from .messages import FinalizeMessage
from .output import assemble, assemble_parts, join
from .states import BatchState, JobState
from .storage import Storage

log = logging.getLogger("parallelrun.finalizer")

STALE_MARGIN_S = 120.0   # a try running this long past run_invocation_timeout has lost its worker
RECHECK_S = 2            # delay before a waiting finalizer looks again
ERROR_ROWS = 1000        # error records read for the logs


def finalize(storage: Storage, ledger: Ledger, msg: FinalizeMessage) -> str:
    job = ledger.get_job(msg.job_id)
    if JobState(job.state).terminal:
        return "already finished"
    if not job.stop_reason and not decisions.complete(job, ledger.totals(job.job_id)):
        log.info("finalize early: job=%s planning_done=%s", job.job_id, job.planning_done)
        return "not complete"
    if job.stop_reason:
        waiting = _tries_in_flight(storage, ledger, job)
        if waiting:
            storage.queue(storage.settings.finalize_queue).send_message(
                msg.to_json(), visibility_timeout=RECHECK_S)
            log.info("finalize waits: job=%s: %s", job.job_id, waiting)
            return f"waiting: {waiting}"
    if job.state != JobState.FINALIZING:
        try:
            job = ledger.update_job(job, state=JobState.FINALIZING)
        except Conflict:
            return finalize(storage, ledger, msg)
        index.set_state(storage, job, JobState.FINALIZING)
    totals = ledger.totals(job.job_id)
    batches = list(ledger.batches(job.job_id))
    url = ""
    if job.spec.get("output_action", "append_row") == "append_row":
        won = [b for b in batches if b.state == BatchState.SUCCEEDED and b.block_id]
        target = output_target(storage.settings, job)
        if target.parts:
            url = assemble_parts(storage, target, [(b.index, b.block_id) for b in won])
        else:
            header = next((b.header for b in won if b.header), "")   # output_format csv
            url = assemble(storage, target, [(b.index, b.block_id) for b in won], header)
    state, reason = decisions.final_state(job, totals)
    _write_logs(storage, ledger, job, totals, state, reason, url, batches)
    try:
        ledger.update_job(job, state=state, error=reason or job.error, rows=totals.rows,
                          ended_at=time.time())
    except Conflict:
        return finalize(storage, ledger, msg)
    index.set_state(storage, job, state)
    log.info("finalized: job=%s state=%s rows=%d items ok=%d failed=%d %s", job.job_id, state,
             totals.rows, totals.items_succeeded, totals.items_failed, reason)
    return state.value


def _tries_in_flight(storage: Storage, ledger: Ledger, job: JobRow) -> str:
    """Why a stopped job cannot be finalized yet ("" when it can)."""
    now = time.time()
    settle_s = 2 * storage.settings.job_cache_ttl_s + 1
    if now - job.stopped_at < settle_s:
        return f"workers learn of the stop within {settle_s:.0f} s"
    timeout = float(job.spec.get("run_invocation_timeout", 60))
    fresh = [b.index for b in ledger.batches(job.job_id, select=["PartitionKey", "RowKey", "state",
                                                                   "started_at"])
             if b.state == BatchState.RUNNING and now - b.started_at < timeout + STALE_MARGIN_S]
    return f"{len(fresh)} mini-batch(es) still running: {fresh[:5]}" if fresh else ""


def _write_logs(storage: Storage, ledger: Ledger, job: JobRow, totals: Totals, state: JobState,
                reason: str, url: str, batches: list) -> None:
    errors = ledger.errors(job.job_id, ERROR_ROWS)
    files = {
        "logs/job_result.txt": summary.job_result_text(job, totals, state, reason, url, errors),
        "logs/job_progress_overview.txt": summary.progress_overview(job, batches),
        "logs/processed_mini-batches.csv": summary.processed_csv(batches),
        **summary.error_files(errors),
    }
    container = storage.container(job.output_container)
    for name, text in files.items():
        container.upload_blob(join(job.output_prefix, name), text.encode("utf-8"), overwrite=True)
