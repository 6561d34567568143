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

from azure.core.exceptions import HttpResponseError

from shared.messages import FinalizeMessage
from shared.service import outbox
from shared.service.finalizing.assembly import LostBlocks, assemble, assemble_parts, checkpoint, missing_blocks
from shared.service.jobs import joblist as index
from shared.service.jobs import reuse, stopping, summary
from shared.service.ledger import decisions
from shared.service.ledger.rows import BatchRow, ErrorRecord, JobRow, Totals
from shared.service.ledger.store import Conflict, Ledger
from shared.service.working.jobcontext import output_target
from shared.states import BatchState, ErrorKind, JobState
from shared.storage import Storage, blob_path

log = logging.getLogger("parallelrun.finalizer")

STALE_MARGIN_S = 120.0   # a try running this long past run_invocation_timeout has lost its worker
RECHECK_S = 2            # delay before a waiting finalizer looks again
ERROR_ROWS = 1000        # error records read for the logs
MAX_REPAIRS = 3          # rounds of re-running mini-batches whose staged rows storage lost


class _Again(Conflict):
    """The finalizer moved the job itself (stopped it, unsettled lost mini-batches): finalize
    again from a fresh read, in the same bounded loop as a conflict."""


def finalize(storage: Storage, ledger: Ledger, msg: FinalizeMessage, inline: bool = False,
             totals: Totals | None = None) -> str:
    """Finalize ``msg``'s job if it is complete (or stopped); idempotent. ``inline``: called by the
    worker that settled the last mini-batch (with the ``totals`` it has just read); a repair is
    then handed to the finalize queue, whose message carries it durably.

    Every write is conditional on the job row's ETag; when the row moved, it is read again and
    the decision taken again, at most ``MAX_CONFLICTS`` times (then Conflict: the message is
    delivered again)."""
    for _ in range(stopping.MAX_CONFLICTS):
        job = ledger.get_job(msg.job_id)
        try:
            if msg.checkpoint:
                return _checkpoint(storage, ledger, job)
            return _finalize_once(storage, ledger, job, inline, totals)
        except Conflict:
            totals = None   # the row moved: read everything again and decide again
    raise Conflict(f"finalizing job {msg.job_id}: its row kept moving")


def _finalize_once(storage: Storage, ledger: Ledger, job: JobRow, inline: bool,
                   totals: Totals | None) -> str:
    if JobState(job.state).terminal:
        if job.state == JobState.SUCCEEDED and not job.reused_from:
            reuse.record_success(storage, job)    # its finalizer may have died before it did
        return "already finished"
    totals = totals or ledger.totals(job.job_id)
    repairing = bool(job.rerun) and job.state == JobState.RUNNING and not job.stop_reason
    if repairing and (not decisions.complete(job, totals) or _still_lost(ledger, job)):
        # a repairer may have died half-way, or is still moving its mini-batches back (the
        # counters look complete until it has): finish its round, never start another
        return _resume_repair(storage, ledger, job)
    if not job.stop_reason and not decisions.complete(job, totals):
        log.info("finalize early: job=%s planning_done=%s", job.job_id, job.planning_done)
        return "not complete"
    if job.stop_reason:
        waiting = _tries_in_flight(storage, ledger, job)
        if waiting:
            outbox.finalize(storage, job.job_id, delay_s=RECHECK_S)
            log.info("finalize waits: job=%s: %s", job.job_id, waiting)
            return f"waiting: {waiting}"
    if job.state != JobState.FINALIZING:
        job = ledger.update_job(job, state=JobState.FINALIZING)
        index.set_state(storage, job, JobState.FINALIZING)
    batches = list(ledger.batches(job.job_id))
    url = ""
    if job.spec.output_action == "append_row":
        try:
            url = _commit_output(storage, job, batches)
        except LostBlocks as exc:
            if inline:
                outbox.finalize(storage, job.job_id)
                log.warning("finalize: job=%s: %s; repair queued for the finalizer", job.job_id, exc)
                return "repair queued"
            return _repair(storage, ledger, job, batches, exc.batches)
    if job.stop_reason:
        totals = ledger.totals(job.job_id)   # tries that were in flight when it stopped settled since
    return _record_final(storage, ledger, job, totals, url, batches)


def _record_final(storage: Storage, ledger: Ledger, job: JobRow, totals: Totals, url: str,
                  batches: list[BatchRow]) -> str:
    """Write the job's logs, then its final state (the logs are rewritten if that write conflicts)."""
    state, reason = decisions.final_state(job, totals)
    _write_logs(storage, ledger, job, totals, state, reason, url, batches)
    ledger.update_job(job, state=state, error=reason or job.error, rows=totals.rows,
                      ended_at=time.time())
    index.set_state(storage, job, state)
    if state == JobState.SUCCEEDED:
        reuse.record_success(storage, job)
    log.info("finalized: job=%s state=%s rows=%d items ok=%d failed=%d %s", job.job_id, state,
             totals.rows, totals.items_succeeded, totals.items_failed, reason)
    return state.value


def _commit_output(storage: Storage, job: JobRow, batches: list[BatchRow]) -> str:
    """Commit the winners' blocks in order; raises :class:`LostBlocks` naming the mini-batches
    storage lost (checked before the commit, and again if the commit itself finds one missing)."""
    won = [b for b in batches if b.state == BatchState.SUCCEEDED and b.block_id]
    winners = [(b.index, b.block_id) for b in won]
    target = output_target(storage.settings, job)
    # the counters say complete, yet a row is not settled: storage lost the row's last write
    # (an emulator restart); it runs again like a lost block (a stopped job: it is not run)
    unsettled = [] if job.stop_reason else [b.index for b in batches if not b.settled]
    lost = sorted(set(missing_blocks(storage, target, winners)) | set(unsettled))
    if lost:
        raise LostBlocks(lost)
    try:
        if target.parts:
            return assemble_parts(storage, target, winners)
        header = next((b.header for b in won if b.header), "")   # output_format csv
        return assemble(storage, target, winners, header)
    except LostBlocks as exc:
        if exc.batches:
            raise
        lost = missing_blocks(storage, target, winners)   # lost between the check and the commit
        if lost:
            raise LostBlocks(lost) from exc
        raise


def _checkpoint(storage: Storage, ledger: Ledger, job: JobRow) -> str:
    """Commit the rows staged so far (a long job), once per ``block_max_age_s``: recorded first,
    so duplicate requests find it done. Blocks already lost are left out (the final commit finds
    them missing and runs their mini-batches again)."""
    if not decisions.checkpoint_due(job, time.time(), storage.settings.block_max_age_s):
        return "checkpoint not due"
    try:
        return _commit_checkpoint(storage, ledger, job)
    except Conflict:
        raise   # the row moved: read it again and decide again
    except Exception:  # noqa: BLE001 - an optimisation the repair path backs: never fail the job
        log.exception("checkpoint failed: job=%s; the next settle asks again", job.job_id)
        return "checkpoint failed"


def _commit_checkpoint(storage: Storage, ledger: Ledger, job: JobRow) -> str:
    job = ledger.update_job(job, checkpoint_at=time.time())
    if job.spec.output_action != "append_row":
        return "checkpoint: no rows"
    won = [b for b in ledger.batches(job.job_id) if b.state == BatchState.SUCCEEDED and b.block_id]
    winners = [(b.index, b.block_id) for b in won]
    target = output_target(storage.settings, job)
    lost = set(missing_blocks(storage, target, winners))
    header = next((b.header for b in won if b.header), "")
    try:
        count = checkpoint(storage, target, [w for w in winners if w[0] not in lost], header)
    except HttpResponseError as exc:   # a block lost meanwhile: the final commit repairs it
        log.warning("checkpoint incomplete: job=%s: %s", job.job_id, exc)
        return "checkpoint incomplete"
    log.info("checkpoint: job=%s committed %d staged block(s), %d lost", job.job_id, count, len(lost))
    return f"checkpoint: {count} block(s)"


def _repair(storage: Storage, ledger: Ledger, job: JobRow, batches: list[BatchRow],
            lost: list[int]) -> str:
    """Storage lost the staged rows of ``lost``: run those mini-batches again (no try consumed),
    then finalize again once they settle (the last one's worker does). A stopped job does not run
    them: they count as not run. After ``MAX_REPAIRS`` rounds the job fails with the reason."""
    rows = {b.index: b for b in batches}
    if not lost:
        raise RuntimeError(f"job {job.job_id}: the output commit names a block storage does not "
                           "hold, and no mini-batch's block is missing; retried by the finalizer")
    if job.stop_reason:
        for i in lost:
            if rows[i].state == BatchState.SUCCEEDED:
                ledger.unsettle(rows[i], _lost_note(job, rows[i], rerun=False))
        log.warning("finalize: job=%s stopped; lost staged rows of %d mini-batch(es) count as not "
                    "run", job.job_id, len(lost))
        raise _Again(job.job_id)
    if job.repairs >= MAX_REPAIRS:
        reason = (f"storage lost the staged rows of mini-batch(es) {lost[:10]} again after "
                  f"{job.repairs} rounds of running them again; the output was not committed. "
                  f"Check the storage account's health and resubmit the job")
        stopping.stop(storage, ledger, job, reason, finalize=False, finalizing=True)
        raise _Again(job.job_id)
    job = ledger.update_job(job, state=JobState.RUNNING, repairs=job.repairs + 1,
                            rerun={str(i): rows[i].block_id if rows[i].settled else "" for i in lost})
    log.warning("finalize: job=%s: storage lost the staged rows of %d mini-batch(es) %s; running "
                "them again (round %d of %d)", job.job_id, len(lost), lost[:10], job.repairs,
                MAX_REPAIRS)
    return _resume_repair(storage, ledger, job)


def _resume_repair(storage: Storage, ledger: Ledger, job: JobRow) -> str:
    """Move each mini-batch of the job's repair round still holding its lost block back to pending
    and enqueue it; a pending or running one (its worker may be gone) is enqueued again (a
    duplicate message is harmless: one try wins). Idempotent."""
    sent = []
    for key, lost_block in sorted(job.rerun.items(), key=lambda kv: int(kv[0])):
        row = ledger.get_batch(job.job_id, int(key))
        if row is None:
            continue
        if row.state == BatchState.SUCCEEDED and row.block_id == lost_block:
            ledger.unsettle(row, _lost_note(job, row, rerun=True))
            row = ledger.get_batch(job.job_id, int(key))
        if row is not None and row.state in (BatchState.PENDING, BatchState.RUNNING):
            outbox.batch(storage, job.job_id, row.index)
            sent.append(row.index)
    return f"repairing: {len(sent)} mini-batch(es) run again"


def _still_lost(ledger: Ledger, job: JobRow) -> bool:
    """Whether a mini-batch of the job's repair round still holds the block storage lost."""
    for key, lost_block in job.rerun.items():
        row = ledger.get_batch(job.job_id, int(key))
        if row is not None and row.state == BatchState.SUCCEEDED and row.block_id == lost_block:
            return True
    return False


def _lost_note(job: JobRow, row: BatchRow, rerun: bool) -> ErrorRecord:
    then = "it runs again (no try is counted)" if rerun else "the job was stopped; it is not run"
    return ErrorRecord(batch=row.index, attempt=row.tries + 1, kind=ErrorKind.LOST,
                       message=f"storage lost this mini-batch's staged rows before the output "
                               f"was committed; {then}",
                       traceback=f"lost block {row.block_id} of mini-batch {row.index}",
                       node=row.node, at=time.time())


def _tries_in_flight(storage: Storage, ledger: Ledger, job: JobRow) -> str:
    """Why a stopped job cannot be finalized yet ("" when it can)."""
    now = time.time()
    settle_s = 2 * storage.settings.job_cache_ttl_s + 1
    if now - job.stopped_at < settle_s:
        return f"workers learn of the stop within {settle_s:.0f} s"
    timeout = float(job.spec.run_invocation_timeout)
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
        container.upload_blob(blob_path(job.output_prefix, name), text.encode("utf-8"), overwrite=True)
