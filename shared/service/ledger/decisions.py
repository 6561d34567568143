"""Pure decisions: functions of (message, ledger rows, spec, settings) that return a verdict.

The callers (planner, worker, finalizer) do the I/O. Nothing here touches storage or the clock,
which is why these functions carry the densest unit tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from shared.service.ledger.rows import BatchRow, JobRow, Totals
from shared.spec import JobSpec
from shared.states import JobState

CANCELLED = "cancelled by user"   # the stop reason of a job a user cancelled


class Delivery(StrEnum):
    RUN = "run"
    DROP_JOB_INACTIVE = "drop: job is not running"
    DROP_DONE = "drop: mini-batch already settled"
    DROP_UNKNOWN = "drop: mini-batch not in the ledger"


def on_delivery(job: JobRow, batch: BatchRow | None) -> Delivery:
    """What to do with a delivered mini-batch message."""
    if not job.active:
        return Delivery.DROP_JOB_INACTIVE
    if batch is None:
        return Delivery.DROP_UNKNOWN
    if batch.settled:
        return Delivery.DROP_DONE
    return Delivery.RUN


def refinalize(job: JobRow) -> bool:
    """A dropped delivery of this job must re-drive its finalization (idempotent): the job was
    stopped, or it is ``finalizing`` and its finalizer may have died (a node killed while it
    finalized inline). A finished job needs nothing."""
    if JobState(job.state).terminal:
        return False
    return bool(job.stop_reason) or job.state == JobState.FINALIZING


class AfterFailure(StrEnum):
    RETRY = "retry"
    FAIL = "fail"


def after_failed_try(tries_after: int, run_max_try: int) -> AfterFailure:
    """PRS semantics: ``run_max_try`` tries in total, then the mini-batch fails."""
    return AfterFailure.RETRY if tries_after < run_max_try else AfterFailure.FAIL


def retry_delay_s(tries: int) -> float:
    """Backoff before try ``tries + 1`` of a mini-batch: 1 s, 2 s, 4 s ... capped at 30 s."""
    return float(min(2 ** max(tries - 1, 0), 30))


def window_size(node_count: int, process_count_per_node: int, per_slot: int) -> int:
    """How many of a job's mini-batches may be in the queue at once (flow control)."""
    return max(1, node_count * process_count_per_node * per_slot)


def successor(index: int, window: int, planned: int) -> int | None:
    """The mini-batch the finisher of ``index`` enqueues: ``index + window`` once it is planned."""
    nxt = index + window
    return nxt if nxt < planned else None


def planner_enqueues(new: range, window: int, settled: Iterable[int]) -> list[int]:
    """Which newly planned mini-batches the planner enqueues itself: the first window, and any
    whose predecessor (``index - window``) settled before it was planned."""
    done = set(settled)
    return [i for i in new if i < window or (i - window) in done]


def budget_exceeded(spec: JobSpec, totals: Totals, planned: int,
                    planning_done: bool) -> str | None:
    """The reason the job must stop, or None. -1 (or None) disables a budget."""
    threshold = spec.error_threshold
    if threshold >= 0 and totals.items_failed > threshold:
        return (f"error_threshold exceeded: {totals.items_failed} failed items > "
                f"error_threshold {threshold}")
    count = spec.allowed_failed_count
    if count is not None and count >= 0 and totals.batches_failed > count:
        return (f"allowed_failed_count exceeded: {totals.batches_failed} failed mini-batches > "
                f"allowed_failed_count {count}")
    percent = spec.allowed_failed_percent
    if (percent is not None and 0 <= percent < 100 and planning_done and planned
            and totals.batches_failed * 100.0 / planned > percent):
        return (f"allowed_failed_percent exceeded: {totals.batches_failed}/{planned} mini-batches "
                f"failed ({totals.batches_failed * 100.0 / planned:.1f}% > {percent}%)")
    return None


def items_total(job: JobRow, totals: Totals) -> tuple[int, bool]:
    """The job's items and whether that is an estimate.

    Files: those planned so far. Tables: the rows of Parquet pieces (from their metadata, at
    planning), plus the rows of the text pieces read so far, plus, for the text bytes not read yet,
    an estimate at the rows per byte of those read (nothing until one has been read). Exact once
    planning is done and every text piece has been read (not counting the lines of pieces that
    could not be parsed, an upper bound)."""
    known = job.items_total + totals.text_rows_read
    unread = max(0, job.text_bytes - totals.text_bytes_read)
    if not unread:
        return known, bool(totals.items_bounded) or (bool(job.text_bytes) and not job.planning_done)
    guess = round(unread * totals.text_rows_read / totals.text_bytes_read) if totals.text_bytes_read else 0
    return known + guess, True


def checkpoint_due(job: JobRow, now: float, max_age_s: float) -> bool:
    """Rows staged since the job's last checkpoint (or its start) may be ``max_age_s`` old: commit
    them before storage collects them (~7 days after upload). Not once a repair round has run:
    the job is finishing, and a checkpoint would discard the re-runs' blocks in flight."""
    if not job.active or job.repairs:
        return False
    return now - max(job.checkpoint_at, job.started_at, job.created_at) > max_age_s


def complete(job: JobRow, totals: Totals) -> bool:
    """Every planned mini-batch has settled and nothing more will be planned."""
    return job.planning_done and totals.batches_done >= job.planned


def final_state(job: JobRow, totals: Totals) -> tuple[JobState, str]:
    """The state a finalized job ends in, with the reason shown to the user."""
    if job.stop_reason:
        if job.stop_reason == CANCELLED:
            return JobState.CANCELLED, job.stop_reason
        return JobState.FAILED, job.stop_reason
    reason = budget_exceeded(job.spec, totals, job.planned, True)
    if reason:
        return JobState.FAILED, reason
    return JobState.SUCCEEDED, success_note(job.spec, totals)


def success_note(spec: JobSpec, totals: Totals) -> str:
    """What a job that succeeded although items failed says, loudly ("" if none failed).

    ``error_threshold: -1`` (PRS's default, kept) lets any number of failed items pass, so a job
    whose every item failed still succeeds: its reason then says "succeeded with 0 of N items"."""
    if not totals.items_failed:
        return ""
    total = totals.items_succeeded + totals.items_failed
    threshold = spec.error_threshold
    why = ("error_threshold -1 lets any number of failed items pass; set error_threshold to fail "
           "the job instead" if threshold < 0
           else f"within error_threshold {threshold}")
    return (f"succeeded with {totals.items_succeeded} of {total} items: "
            f"{totals.items_failed} failed ({why})")

