"""The worker: one mini-batch message in, one settled (or retried) mini-batch out.

I/O stays here, in the parent; compute runs in scoring processes (:mod:`shared.service.working.pool`). The steps:
read the mini-batch row and decide (run, or drop as settled / job stopped); mark it running (a new
try id); download its files (a table's: the byte ranges its pieces need); lease a scoring process
and ``run()``; stage the rows as an uncommitted
block; commit the row and the counters in one conditional transaction (:mod:`shared.service.ledger.settlement`
decides what to commit). Only then the side effects: enqueue the successor mini-batch (flow
control), a retry, or the finalizer.

``run()`` may execute more than once for a mini-batch (redelivery, a worker lost mid-try); its rows
are still written exactly once, because only the try whose transaction wins is committed.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from enum import StrEnum
from pathlib import Path

from shared.errors import OperatorError
from shared.messages import BatchMessage, FinalizeMessage
from shared.scoring import tables as table_reads
from shared.scoring.protocol import OutcomeKind, RunOutcome
from shared.service import outbox
from shared.service.finalizing import finalizer
from shared.service.finalizing.assembly import stage_rows
from shared.service.jobs import stopping
from shared.service.ledger import decisions, settlement
from shared.service.ledger.decisions import Delivery
from shared.service.ledger.rows import BatchRow, ErrorRecord, JobRow, Totals
from shared.service.ledger.settlement import Settlement, Verdict
from shared.service.ledger.store import Conflict, Ledger
from shared.service.planning import tables
from shared.service.planning.fileinputs import Downloaded, download_batch
from shared.service.working.jobcontext import JobContext, JobContexts, JobUnrunnable
from shared.service.working.outputs import upload_folder_changes
from shared.service.working.pool import ScoringPool
from shared.service.working.userlogs import LogShipper
from shared.states import BatchState, ErrorKind
from shared.storage import Storage, requests_sent_by_this_thread

log = logging.getLogger("parallelrun.worker")
READ_RIGHTS = frozenset("rl")   # what a SAS handed to a scoring process may grant

INIT_RESTARTS_PER_PROCESS = 3   # PRS: init() may fail 3 x process_count_per_node times per node
LOST_PROCESS_RETRIES = 3        # processes found dead before they took a mini-batch, per try


def read_only(sas: str) -> bool:
    """Whether a SAS query string grants nothing but read (and list)."""
    rights = urllib.parse.parse_qs(sas).get("sp", [""])[0]
    return set(rights) <= READ_RIGHTS


def _is_table(job: JobRow) -> bool:
    """A job with tabular inputs (False if its spec does not even parse)."""
    return job.has_spec and job.spec.input_type == "tabular"


class Stopped(StrEnum):
    """A delivery that stopped its job."""

    INIT = "init failed: job stopped"          # init() failed 3 x process_count_per_node times here
    UNRUNNABLE = "job cannot run: stopped"     # the job's context can never be built


Handled = Delivery | Verdict | Stopped   # what Worker.handle did with a delivery


class _Clock:
    """Times the stages of one try (milliseconds per stage, for the job's counters)."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.ms: dict[str, int] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] = self.ms.get(stage, 0) + int((now - self._last) * 1000)
        self._last = now

    def totals(self, queued_s: float) -> Totals:
        return Totals(tries=1, ms_queue=max(0, int(queued_s * 1000)),
                      **{f"ms_{k}": v for k, v in self.ms.items()})


def _work_dir(ctx: JobContext, batch: BatchRow) -> Path:
    """A try's own folder for its inputs on this node (removed when the try ends)."""
    return ctx.batches_dir / f"{batch.index:09d}-{batch.try_id}"


class Worker:
    def __init__(self, storage: Storage, ledger: Ledger, pool: ScoringPool, node_id: str) -> None:
        self.storage = storage
        self.ledger = ledger
        self.pool = pool
        self.node_id = node_id
        self.jobs = JobContexts(storage, ledger, node_id)
        self.logs = LogShipper(storage, node_id)
        self._uploaded: dict[str, dict[str, tuple[float, int]]] = {}
        self._init_failures: dict[str, int] = {}
        self._lock = threading.Lock()
        # one pool for every mini-batch's downloads (threads keep their connections alive)
        self._downloads = ThreadPoolExecutor(storage.settings.download_concurrency,
                                             thread_name_prefix="download")

    def handle(self, msg: BatchMessage, dequeue_count: int = 1, enqueued_at: float | None = None) -> Handled:
        """Process one delivery; returns what happened (for logs and tests)."""
        calls_before = requests_sent_by_this_thread()
        try:
            ctx = self.jobs.get(msg.job_id)
        except JobUnrunnable as exc:      # retrying cannot help: stop the job, with the reason
            return self._unrunnable(msg, exc)
        for _ in range(stopping.MAX_CONFLICTS):
            ctx, batch, verdict = self._on_delivery(ctx, msg)
            if verdict is not Delivery.RUN or batch is None:
                log.info("dropped: job=%s batch=%d: %s", msg.job_id, msg.batch, verdict.value)
                return verdict
            try:
                batch = self.ledger.mark_running(batch, self.node_id)
                break
            except Conflict:
                continue    # the row moved: read it again and decide again
        else:
            raise Conflict(f"{msg.job_id} batch {msg.batch}: its row kept moving")
        log.info("start: job=%s batch=%d attempt=%d dequeue=%d", msg.job_id, msg.batch,
                 batch.tries + 1, dequeue_count)
        return self._try(ctx, batch, enqueued_at, calls_before)

    def _on_delivery(self, ctx: JobContext, msg: BatchMessage) -> tuple[JobContext, BatchRow | None, Delivery]:
        """Read the mini-batch's row and decide; a dropped delivery re-drives what its settling
        (or stopping) worker may have died before doing."""
        batch = self.ledger.get_batch(msg.job_id, msg.batch)
        verdict = decisions.on_delivery(ctx.job, batch)
        if verdict is Delivery.DROP_JOB_INACTIVE and not ctx.job.stop_reason:
            ctx = self.jobs.get(msg.job_id, fresh=True)   # a cached finalizing row may be stale
            verdict = decisions.on_delivery(ctx.job, batch)
        if verdict is Delivery.DROP_DONE and batch is not None:
            self._after_settled(ctx, batch, redo=True)
        if verdict is Delivery.DROP_JOB_INACTIVE and decisions.refinalize(ctx.job):
            self._finalize(ctx.job.job_id)   # the stopper or finalizer may have died before it could
        return ctx, batch, verdict

    def _try(self, ctx: JobContext, batch: BatchRow, enqueued_at: float | None, calls_before: int) -> Handled:
        """Run the try ``batch`` was marked running for, settle it, and apply the settlement."""
        work = _work_dir(ctx, batch)
        clock = _Clock()
        # a job's first process imports its script and runs init() while this try downloads
        self.pool.prestart(ctx.pool_key, ctx.scoring, ctx.processes)
        try:
            files = (Downloaded([], []) if ctx.tabular else  # tables are parsed by the scoring process
                     download_batch(self.storage, ctx.inputs, batch.items, work, self._downloads))
            clock.lap("download")
            outcome, block = self._score(ctx, batch, files, clock)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        queued = (batch.started_at - enqueued_at) if enqueued_at else 0.0
        # +1: the commit below, whose own requests this try cannot count before making them
        calls = requests_sent_by_this_thread() - calls_before + 1
        last_try = decisions.after_failed_try(batch.tries + 1, ctx.spec.run_max_try) \
            is decisions.AfterFailure.FAIL
        unread = (self._rows_unread(ctx.job, batch) if ctx.tabular and last_try
                  and outcome.kind not in (OutcomeKind.OK, OutcomeKind.INIT) and outcome.loaded < 0 else None)
        result = settlement.settle(batch, outcome, files, run_max_try=ctx.spec.run_max_try,
                                   block_id=block, shard=ctx.target.shard_of(batch.index),
                                   node=self.node_id, now=time.time(), tabular=ctx.tabular,
                                   parts=ctx.target.parts,
                                   unread=unread, stages=replace(clock.totals(queued), calls=calls))
        return self._apply(ctx, batch, result, outcome.seconds)

    def record_poison(self, msg: BatchMessage, dequeue_count: int) -> Handled:
        """A mini-batch message reached the poison queue: fail the mini-batch, never lose it.

        Needs only the ledger: if the job's context cannot be built (which may be why the message
        was poisoned), the mini-batch is still failed, with that reason, and counted."""
        batch = self.ledger.get_batch(msg.job_id, msg.batch)
        if batch is None or batch.settled:
            return Delivery.DROP_DONE
        deliveries = max(dequeue_count, batch.deliveries)
        try:
            ctx = self.jobs.get(msg.job_id, fresh=True)
        except Exception as exc:  # noqa: BLE001 - recorded with the mini-batch, never re-raised
            log.error("poison: job=%s batch=%d: no job context: %s", msg.job_id, msg.batch, exc)
            return self._record_poison_bare(batch, deliveries, exc)
        result = settlement.poisoned(batch, deliveries, self.node_id, time.time(),
                                     tabular=ctx.tabular, unread=self._rows_unread(ctx.job, batch))
        log.error("poisoned: job=%s batch=%d: %s", msg.job_id, msg.batch,
                  result.error.message if result.error else "")
        return self._apply(ctx, batch, result, 0.0)

    def _record_poison_bare(self, batch: BatchRow, deliveries: int, exc: Exception) -> Handled:
        """:meth:`record_poison` without a job context: fail the mini-batch with ``exc`` as the
        cause, then stop the job (unrunnable, or over a budget), finalize it, or go on."""
        cause = f"its job's context could not be built: {type(exc).__name__}: {exc}"
        job = self.ledger.get_job(batch.job_id)
        result = settlement.poisoned(batch, deliveries, self.node_id, time.time(), cause=cause,
                                     tabular=_is_table(job), unread=self._rows_unread(job, batch))
        if not self._commit(batch, result):
            return Delivery.DROP_DONE
        job = self.ledger.get_job(batch.job_id)
        reason = (str(exc) if isinstance(exc, JobUnrunnable) or not job.has_spec
                  else decisions.budget_exceeded(job.spec, self.ledger.totals(job.job_id),
                                                 job.planned, job.planning_done))
        if reason and job.active:
            self._stop(job.job_id, reason)
        elif not job.active:
            self._finalize(job.job_id)
        else:
            nxt = decisions.successor(batch.index, job.window, job.planned)
            if nxt is not None:
                outbox.batch(self.storage, job.job_id, nxt)
            elif job.planning_done and decisions.complete(job, self.ledger.totals(job.job_id)):
                self._finalize(job.job_id)
        return result.verdict

    def _rows_unread(self, job: JobRow, batch: BatchRow) -> tuple[int, bool] | None:
        """A table mini-batch's rows, counted from its pieces, when no try could read them
        (None: not a table, or its rows are known)."""
        if not _is_table(job) or batch.size >= 0:
            return None
        try:
            return tables.rows_unread(self.storage, job.spec.inputs, batch.items)
        except Exception as exc:  # noqa: BLE001 - counted as one item per piece, said so
            log.warning("job=%s batch=%d: rows of its pieces not counted: %s", batch.job_id,
                        batch.index, exc)
            return len(batch.items), False

    def _unrunnable(self, msg: BatchMessage, exc: JobUnrunnable) -> Handled:
        """The job's context cannot be built and never will be: record why (an error of kind
        "job", visible in its status) and stop it, so it is finalized as failed with the reason
        instead of every delivery raising until its message is poisoned."""
        job = self.ledger.get_job(msg.job_id)
        if job.active:
            self.ledger.record_error(job.job_id, ErrorRecord(
                msg.batch, 0, ErrorKind.JOB, str(exc), node=self.node_id, at=time.time()))
            self._stop(job.job_id, str(exc))
        elif job.stop_reason:
            self._finalize(job.job_id)   # in case the stopper died before it could
        log.error("job cannot run: job=%s batch=%d: %s", msg.job_id, msg.batch, exc)
        return Stopped.UNRUNNABLE

    # -- scoring ---------------------------------------------------------------------------
    def _read_ahead(self, ctx: JobContext, batch: BatchRow, work: Path) -> list[dict | None]:
        """A table mini-batch's bytes, read into ``work`` before it waits for a scoring process,
        so that reading the next pieces overlaps with scoring the current ones (the host takes
        more messages than it has processes). The process parses them from the node's disk; an
        item whose read fails here is read by the process itself, which reports its error as
        before (None)."""
        work.mkdir(parents=True, exist_ok=True)

        def one(numbered: tuple[int, list]) -> dict | None:
            i, (input_index, blob_name, piece) = numbered
            try:
                return table_reads.read_ahead(self.storage, ctx.inputs[input_index].wire, blob_name,
                                              piece, work / f"piece-{i:05d}")
            except Exception as exc:  # noqa: BLE001 - the scoring process reads it and says why
                log.info("not read ahead: job=%s batch=%d %s: %s", batch.job_id, batch.index,
                         blob_name, exc)
                return None
        return list(self._downloads.map(one, enumerate(batch.items)))

    def _score(self, ctx: JobContext, batch: BatchRow, files: Downloaded,
               clock: _Clock) -> tuple[RunOutcome, str]:
        if not files.paths and not ctx.tabular:
            return RunOutcome(OutcomeKind.OK), ""
        context = ctx.context(batch.index, batch.items)
        payload = self._payload(ctx, batch.items, files.paths)
        if isinstance(payload, dict):     # a table: its bytes before it waits for a process
            payload["held"] = self._read_ahead(ctx, batch, _work_dir(ctx, batch))
            clock.lap("download")
        for _ in range(LOST_PROCESS_RETRIES + 1):
            with self.pool.lease(ctx.pool_key, ctx.scoring, ctx.processes) as proc:
                clock.lap("wait")
                if isinstance(proc, RunOutcome):   # init() failed: ship what it printed
                    self._ship_logs(ctx, str(Path(ctx.scoring.work_dir) / proc.process), force=True)
                    return proc, ""
                outcome = proc.run(payload, context, float(ctx.spec.run_invocation_timeout))
                config = proc.config
                clock.lap("run")
            if outcome.kind is not OutcomeKind.LOST:
                break
            # the process was dead before it took the mini-batch: not this try's failure
            log.warning("job=%s batch=%d: %s; running it on another process", batch.job_id,
                        batch.index, outcome.message)
        if outcome.kind is OutcomeKind.LOST:
            outcome = replace(outcome, kind=OutcomeKind.CRASH)
        # the scoring process is free again; the parent writes what it produced
        block = ""
        if outcome.ok:
            if ctx.spec.output_action == "append_row" and outcome.text:
                block = stage_rows(self.storage, ctx.target, batch.index, outcome.text)
            self._upload_outputs(ctx, Path(config.output_dir))
        last = decisions.successor(batch.index, ctx.job.window, ctx.job.planned) is None
        self._ship_logs(ctx, config.work_dir, force=last or not outcome.ok)
        clock.lap("write")
        return outcome, block

    def _upload_outputs(self, ctx: JobContext, folder: Path) -> None:
        """Files the script wrote to its output folder (PRS's summary_only pattern)."""
        seen = self._uploaded.setdefault(str(folder), {})
        if folder.is_dir():
            prefix = ctx.job.output_prefix.strip("/")
            upload_folder_changes(self.storage, folder, ctx.job.output_container,
                                  f"{prefix}/" if prefix else "", seen)

    def _payload(self, ctx: JobContext, items: list, paths: list[str]) -> list[str] | dict:
        """The scoring process's request; a table's comes with read tokens for its containers."""
        payload = ctx.payload(items, paths)
        if isinstance(payload, dict):
            containers = sorted({ctx.inputs[item[0]].container for item in items})
            grant = self.storage.blob_reader.read_grant(containers)
            for container, token in grant["tokens"].items():
                if not read_only(token):
                    raise OperatorError(
                        f"the token for reading container {container} grants more than read "
                        "(the connection string's own SAS?); scoring processes get read-only "
                        "tokens only: configure storage with an account key, an identity, or a "
                        "read-only SAS", job_id=ctx.job.job_id)
            payload["read"] = grant
        return payload

    def _ship_logs(self, ctx: JobContext, work_dir: str, force: bool) -> None:
        """Ship the script's logs; a failure to do so never fails the try (the lines stay on disk
        and go with the next shipment)."""
        if not work_dir:
            return
        try:
            self.logs.ship(work_dir, ctx.job.output_container, ctx.job.output_prefix, force)
        except Exception as exc:  # noqa: BLE001 - logs are not worth a mini-batch
            log.warning("logs not shipped: job=%s %s: %s", ctx.job.job_id, work_dir, exc)

    # -- settling --------------------------------------------------------------------------
    def _apply(self, ctx: JobContext, batch: BatchRow, result: Settlement, seconds: float) -> Handled:
        if not self._commit(batch, result):
            return Delivery.DROP_DONE
        new = result.row
        log.info("%s: job=%s batch=%d attempt=%d items ok=%d failed=%d seconds=%.3f", result.verdict,
                 batch.job_id, batch.index, new.tries + (result.verdict is Verdict.SUCCEEDED), new.ok,
                 new.failed, seconds)
        if result.verdict is Verdict.INIT and self._stop_after_init_failures(ctx, result):
            return Stopped.INIT
        if not new.settled:
            outbox.batch(self.storage, batch.job_id, batch.index, decisions.retry_delay_s(max(new.tries, 1)))
            return result.verdict
        if result.delta.items_failed and self._stop_if_over_budget(ctx):
            return result.verdict
        self._after_settled(ctx, new)
        return result.verdict

    def _commit(self, old: BatchRow, result: Settlement) -> bool:
        """Commit ``result``; if the row moved, commit on top of it unless it has settled meanwhile.
        A lost answer to a commit that landed is recognised by the try id."""
        for _ in range(10):
            if self.ledger.commit(replace(result.row, etag=old.etag), result.delta, result.error):
                return True
            latest = self.ledger.get_batch(old.job_id, old.index)
            if latest is not None and latest.try_id == result.row.try_id \
                    and latest.state == result.row.state:
                return True
            if latest is None or latest.settled:
                log.info("duplicate try lost: job=%s batch=%d", old.job_id, old.index)
                return False
            old = latest
        raise Conflict(f"{old.job_id} batch {old.index}: too many concurrent writers")

    def _after_settled(self, ctx: JobContext, batch: BatchRow, redo: bool = False) -> None:
        """Side effects of a settled mini-batch: its successor (flow control) or the finalizer.

        ``redo``: the settled mini-batch was delivered again, its worker may have died between the
        commit and these side effects; the successor is then enqueued only if it has not started
        (a duplicate message is harmless; a started or settled successor needs nothing)."""
        job = ctx.job
        if not job.active:
            self._finalize(job.job_id)   # a stopped job's finalizer waits for running tries
            return
        if not redo and decisions.checkpoint_due(job, time.time(),
                                                 self.storage.settings.block_max_age_s):
            outbox.finalize(self.storage, job.job_id, checkpoint=True)
        # a mini-batch run again because storage lost its rows: its successor settled long ago
        nxt = None if batch.reruns else decisions.successor(batch.index, job.window, job.planned)
        if nxt is None and not job.planning_done and not redo:
            job = self.jobs.get(batch.job_id, fresh=True).job
            nxt = decisions.successor(batch.index, job.window, job.planned)
        if nxt is not None:
            row = self.ledger.get_batch(job.job_id, nxt) if redo else None
            if not redo or (row is not None and row.state == BatchState.PENDING
                            and row.deliveries == 0):
                outbox.batch(self.storage, job.job_id, nxt)
        elif job.planning_done:
            totals = self.ledger.totals(job.job_id)
            if decisions.complete(job, totals):
                self._finalize(job.job_id, totals)

    def _stop_after_init_failures(self, ctx: JobContext, result: Settlement) -> bool:
        with self._lock:
            count = self._init_failures.get(ctx.job.job_id, 0) + 1
            self._init_failures[ctx.job.job_id] = count
        limit = INIT_RESTARTS_PER_PROCESS * ctx.processes
        if count < limit:
            return False
        message = result.error.message if result.error else "init() failed"
        self._stop(ctx.job.job_id, f"init() failed {count} times on {self.node_id} (limit 3 x "
                        f"process_count_per_node = {limit}): {message}")
        return True

    def _stop_if_over_budget(self, ctx: JobContext) -> bool:
        job = self.jobs.get(ctx.job.job_id, fresh=True).job
        reason = decisions.budget_exceeded(job.spec, self.ledger.totals(job.job_id), job.planned,
                                           job.planning_done)
        if reason is None:
            return False
        self._stop(ctx.job.job_id, reason)
        return True

    def _stop(self, job_id: str, reason: str) -> None:
        stopping.stop(self.storage, self.ledger, job_id, reason)
        self.jobs.forget(job_id)

    def _finalize(self, job_id: str, totals: Totals | None = None) -> None:
        """Have the job finalized by the finalizer function, or (with the ``totals`` that show it
        complete) right here, which saves the finalize queue's polling delay (up to ``maxPollingInterval``).

        An inline finalize runs before this mini-batch's message is deleted: if this worker dies
        meanwhile, the message comes back, finds its mini-batch settled (``_after_settled`` with
        ``redo``) or its job ``finalizing`` (:func:`decisions.refinalize`) and finalizes again.
        If finalizing fails, the finalizer function takes over with its own retries. Finalizing is
        idempotent, so a race with another finisher is harmless."""
        if totals is not None:
            try:
                finalizer.finalize(self.storage, self.ledger, FinalizeMessage(job_id), inline=True,
                                   totals=totals)
                return
            except Exception:  # noqa: BLE001 - the finalizer function retries it
                log.exception("inline finalize failed: job=%s; queued for the finalizer", job_id)
        outbox.finalize(self.storage, job_id)
