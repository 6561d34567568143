"""How a job stops: the one place that writes a stop, and the one conflict policy for it.

A job stops when a user cancels it, a budget is exceeded (``error_threshold``,
``allowed_failed_count``/``percent``), ``init()`` keeps failing, its context can never be built,
planning fails, or storage keeps losing its staged rows. Every one of them goes through
:func:`stop`: the first stop wins (a job already stopped, finalizing or finished keeps its reason),
unrun mini-batches are then dropped by the workers, and the finalizer commits what finished once no
try can still commit.

Conflict policy (the job row moved between our read and our write): read it again and decide
again, at most ``MAX_CONFLICTS`` times; a job that keeps moving raises :class:`Conflict`, and the
caller's message is delivered again. Nothing here recurses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from shared.service import outbox
from shared.service.ledger import decisions
from shared.service.ledger.rows import JobRow
from shared.service.ledger.store import Conflict, Ledger
from shared.states import JobState
from shared.storage import Storage

log = logging.getLogger("parallelrun.jobs")

MAX_CONFLICTS = 20   # re-reads of a job row that moved before a write gives up (Conflict)


def update_while(ledger: Ledger, job: JobRow, wanted: Callable[[JobRow], bool], **changes: Any) -> JobRow:
    """Write ``changes`` to ``job`` while ``wanted(job)`` holds, re-reading it after a Conflict;
    returns the row as written, or as found once ``wanted`` no longer holds."""
    for _ in range(MAX_CONFLICTS):
        if not wanted(job):
            return job
        try:
            return ledger.update_job(job, **changes)
        except Conflict:
            job = ledger.get_job(job.job_id)
    raise Conflict(f"job {job.job_id}: its row kept moving ({MAX_CONFLICTS} tries)")


def stop(storage: Storage, ledger: Ledger, job: JobRow | str, reason: str, *,
         planning_done: bool = False, finalize: bool = True, finalizing: bool = False) -> JobRow:
    """Stop the job with ``reason`` unless it has already stopped or finished; then (``finalize``)
    drive its finalization: again, too, if it was already stopped, since the first stopper may
    have died before it could (finalizing is idempotent). ``planning_done``: no more planning
    steps (the planner stopped it). ``finalizing``: the finalizer stops the job it is finalizing
    (storage keeps losing its staged rows), so a ``finalizing`` job is stopped too. Returns the
    job's row."""
    row = ledger.get_job(job) if isinstance(job, str) else job
    changes: dict[str, Any] = {"stop_reason": reason, "error": reason, "stopped_at": time.time()}
    if planning_done:
        changes["planning_done"] = True
    def stoppable(j: JobRow) -> bool:
        return (not j.stop_reason and not JobState(j.state).terminal) if finalizing else j.active

    was_stoppable = stoppable(row)
    row = update_while(ledger, row, stoppable, **changes)
    if was_stoppable and row.stop_reason == reason:
        log.warning("job stopped: job=%s: %s", row.job_id, reason)
    if finalize and decisions.refinalize(row):
        outbox.finalize(storage, row.job_id)
    return row


def fail(ledger: Ledger, job_id: str, reason: str) -> JobRow:
    """Mark the job failed at once, its output left as it is: for when finalizing itself cannot
    be done (its message reached the poison queue). A finished job keeps its state."""
    return update_while(ledger, ledger.get_job(job_id), lambda j: not JobState(j.state).terminal,
                        state=JobState.FAILED, error=reason, ended_at=time.time())
