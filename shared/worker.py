"""The worker: one mini-batch message in, one settled (or retried) mini-batch out.

I/O stays here, in the parent; compute runs in scoring processes (:mod:`shared.pool`). The steps:
read the mini-batch row and decide (run, or drop as settled / job stopped); mark it running;
download its files; lease a scoring process and ``run()``; stage the rows as an uncommitted block;
commit the row and the counters in one conditional transaction. Only then the side effects:
enqueue the successor mini-batch (flow control), a retry, or the finalizer.

``run()`` may execute more than once for a mini-batch (redelivery, a worker lost mid-try); its rows
are still written exactly once, because only the try whose transaction wins is committed.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

from . import decisions
from .datasets import Downloaded, download_batch
from .decisions import AfterFailure, Delivery
from .jobcontext import JobContext, JobContexts
from .ledger import BatchRow, Conflict, ErrorRecord, Ledger, Totals
from .messages import BatchMessage, FinalizeMessage
from .output import stage_rows, upload_folder_changes
from .pool import RunOutcome, ScoringPool, ScoringProcess
from .states import BatchState
from .storage import Storage

log = logging.getLogger("parallelrun.worker")


class Worker:
    def __init__(self, storage: Storage, ledger: Ledger, pool: ScoringPool, node_id: str) -> None:
        self.storage = storage
        self.ledger = ledger
        self.pool = pool
        self.node_id = node_id
        self.jobs = JobContexts(storage, ledger, node_id)
        self._uploaded: dict[str, dict[str, tuple[float, int]]] = {}

    def handle(self, msg: BatchMessage, dequeue_count: int = 1) -> str:
        """Process one delivery; returns what happened (for logs and tests)."""
        ctx = self.jobs.get(msg.job_id)
        batch = self.ledger.get_batch(msg.job_id, msg.batch)
        verdict = decisions.on_delivery(ctx.job, batch)
        if verdict is not Delivery.RUN or batch is None:
            log.info("dropped: job=%s batch=%d: %s", msg.job_id, msg.batch, verdict.value)
            return verdict.value
        try:
            batch = self.ledger.mark_running(batch, self.node_id, 0)
        except Conflict:
            return self.handle(msg, dequeue_count)  # re-read and decide again
        log.info("start: job=%s batch=%d attempt=%d dequeue=%d", msg.job_id, msg.batch,
                 batch.tries + 1, dequeue_count)
        work = ctx.batches_dir / f"{msg.batch:09d}-{time.monotonic_ns()}"
        try:
            files = download_batch(self.storage, ctx.inputs, batch.items, work,
                                   self.storage.settings.download_concurrency)
            outcome = self._score(ctx, batch, files)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self._settle(ctx, batch, files, outcome)

    # -- scoring ---------------------------------------------------------------------------
    def _score(self, ctx: JobContext, batch: BatchRow, files: Downloaded) -> RunOutcome:
        if not files.paths:
            return RunOutcome("ok")
        context = {"minibatch_index": batch.index, "dataset": ctx.inputs[batch.items[0][0]].name}
        with self.pool.lease(ctx.pool_key, ctx.scoring, ctx.processes) as proc:
            if isinstance(proc, RunOutcome):
                return proc  # init() failed
            outcome = proc.run(files.paths, context, float(ctx.spec.run_invocation_timeout))
            if outcome.ok:
                self._upload_outputs(ctx, proc)
            return outcome

    def _upload_outputs(self, ctx: JobContext, proc: ScoringProcess) -> None:
        folder = Path(proc.config.output_dir)
        seen = self._uploaded.setdefault(str(folder), {})
        if folder.is_dir():
            prefix = ctx.job.output_prefix.strip("/")
            upload_folder_changes(self.storage, folder, ctx.job.output_container,
                                  f"{prefix}/" if prefix else "", seen)

    # -- settling --------------------------------------------------------------------------
    def _settle(self, ctx: JobContext, batch: BatchRow, files: Downloaded, outcome: RunOutcome) -> str:
        n = len(batch.items)
        now = time.time()
        common = {"ended_at": now, "pid": outcome.pid, "node": self.node_id}
        if outcome.ok:
            ok = min(outcome.rows, len(files.paths))
            block = ""
            if ctx.spec.output_action == "append_row" and outcome.text:
                block = stage_rows(self.storage, ctx.target, batch.index, outcome.text)
            new = replace(batch, state=BatchState.SUCCEEDED, ok=ok, failed=n - ok, rows=outcome.rows,
                          block_id=block, shard=ctx.target.shard_of(batch.index),
                          error=_missing_note(files), **common)
            delta = Totals(batches_succeeded=1, items_succeeded=ok, items_failed=n - ok,
                           rows=outcome.rows if block else 0)
            error = _item_error(batch, files, self.node_id, now)
            verdict = "succeeded"
        else:
            tries = batch.tries + 1
            error = ErrorRecord(batch.index, tries, outcome.kind, outcome.message, outcome.traceback,
                                file=str(batch.items[0][1]) if batch.items else "",
                                node=self.node_id, at=now)
            if decisions.after_failed_try(tries, ctx.spec.run_max_try) is AfterFailure.RETRY:
                new = replace(batch, state=BatchState.PENDING, tries=tries, error=outcome.message,
                              **common)
                delta, verdict = Totals(tries_failed=1), "retry"
            else:
                new = replace(batch, state=BatchState.FAILED, tries=tries, ok=0, failed=n,
                              error=outcome.message, **common)
                delta = Totals(batches_failed=1, items_failed=n, tries_failed=1)
                verdict = "failed"
        if not self._commit(batch, new, delta, error):
            return Delivery.DROP_DONE.value
        log.info("%s: job=%s batch=%d attempt=%d items ok=%d failed=%d seconds=%.3f", verdict,
                 batch.job_id, batch.index, new.tries + (verdict == "succeeded"), new.ok, new.failed,
                 outcome.seconds)
        self._after_commit(ctx, new, verdict, delta)
        return verdict

    def _commit(self, old: BatchRow, new: BatchRow, delta: Totals, error: ErrorRecord | None) -> bool:
        """Commit ``new``; if the row moved, commit on top of it unless it has settled meanwhile."""
        for _ in range(10):
            if self.ledger.commit(replace(new, etag=old.etag), delta, error):
                return True
            latest = self.ledger.get_batch(old.job_id, old.index)
            if latest is None or latest.terminal:
                log.info("duplicate try lost: job=%s batch=%d", old.job_id, old.index)
                return False
            old = latest
        raise Conflict(f"{old.job_id} batch {old.index}: too many concurrent writers")

    def _after_commit(self, ctx: JobContext, batch: BatchRow, verdict: str, delta: Totals) -> None:
        queue = self.storage.queue(self.storage.settings.batch_queue)
        if verdict == "retry":
            delay = int(decisions.retry_delay_s(batch.tries))
            queue.send_message(BatchMessage(batch.job_id, batch.index).to_json(), visibility_timeout=delay)
            return
        if delta.items_failed and self._stop_if_over_budget(ctx):
            return
        job = ctx.job
        nxt = decisions.successor(batch.index, job.window, job.planned)
        if nxt is None and not job.planning_done:
            job = self.jobs.get(batch.job_id, fresh=True).job
            nxt = decisions.successor(batch.index, job.window, job.planned)
        if nxt is not None:
            queue.send_message(BatchMessage(batch.job_id, nxt).to_json())
        elif job.planning_done and decisions.complete(job, self.ledger.totals(job.job_id)):
            self._finalize(job.job_id)

    def _stop_if_over_budget(self, ctx: JobContext) -> bool:
        job = self.jobs.get(ctx.job.job_id, fresh=True).job
        reason = decisions.budget_exceeded(job.spec, self.ledger.totals(job.job_id), job.planned,
                                           job.planning_done)
        if reason is None:
            return False
        while job.active:
            try:
                job = self.ledger.update_job(job, stop_reason=reason, error=reason)
            except Conflict:
                job = self.ledger.get_job(job.job_id)
        log.warning("job stopped: job=%s: %s", job.job_id, reason)
        self.jobs.forget(job.job_id)
        self._finalize(job.job_id)
        return True

    def _finalize(self, job_id: str) -> None:
        self.storage.queue(self.storage.settings.finalize_queue).send_message(
            FinalizeMessage(job_id).to_json())


def _missing_note(files: Downloaded) -> str:
    if not files.missing:
        return ""
    return f"{len(files.missing)} file(s) could not be read: " + "; ".join(r for _, r in files.missing[:3])


def _item_error(batch: BatchRow, files: Downloaded, node: str, now: float) -> ErrorRecord | None:
    if not files.missing:
        return None
    return ErrorRecord(batch.index, batch.tries + 1, "item", _missing_note(files),
                       file=files.missing[0][0], node=node, at=now)
