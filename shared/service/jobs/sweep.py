"""The sweep: finds jobs that nothing is driving any more and drives them again.

Messages are the only thing that moves a job, and a process can die between a write and the
message that should follow it. Queue redelivery covers every such gap inside a message's handler;
the sweep covers the ones outside: a submitter that died after writing the job's index row (and
perhaps its job row) but before enqueueing the first planning message, a finalization that never
ended, and an index row whose last update was lost. It runs on a timer (``functions/sweep.py``,
``PARALLELRUN_SWEEP_SCHEDULE``) and looks only at index rows unchanged for ``sweep_grace_s``.

A running job can stall too, when storage loses an acknowledged write (an emulator killed hard, a
failover): a mini-batch's commit is lost while its message's deletion is kept, or a successor's
message is lost after its predecessor settled. Then no message exists for work the ledger still
calls pending or running. The sweep notes each running job's progress (tries settled, mini-batches
settled, planned, planning step) in its index row; when a later sweep, a grace period on, finds it
unchanged, it re-sends the messages nothing may be holding: the next planning step, and the lowest
unsettled mini-batches of the job's window that are pending or whose try is stale (older than
``run_invocation_timeout`` plus a margin). Duplicates of those are harmless too: a mini-batch runs
until one try commits.

Everything it sends is harmless as a duplicate: the planner drops a step that is not the job's
next one (and redoes only the side effects of the step just committed), the finalizer is
idempotent, and index states only move forwards. So two sweeps at once do no harm; the host runs
one at a time anyway (a timer runs on one instance).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from shared.errors import NotFoundError
from shared.service import outbox
from shared.service.jobs import joblist as index
from shared.service.ledger import decisions
from shared.service.ledger.rows import BatchRow, JobRow
from shared.service.ledger.store import Ledger
from shared.states import BatchState, JobState
from shared.storage import Storage

log = logging.getLogger("parallelrun.sweep")

ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value, JobState.FINALIZING.value)
STALE_MARGIN_S = 120.0   # a try running this long past run_invocation_timeout has lost its worker
ABANDONED = "the submission did not complete (the submitter stopped before the job was recorded)"


@dataclass(frozen=True)
class Decision:
    """What the sweep does for one stale index row."""

    index_state: str = ""     # move the index row to this state ("" leaves it)
    send: str = ""            # "plan" (step 0) or "finalize" ("" sends nothing)
    abandon: bool = False     # the job row was never written: record the job as failed

    @property
    def idle(self) -> bool:
        return not (self.index_state or self.send or self.abandon)


def decide(index_state: str, job: JobRow | None, complete: bool = False) -> Decision:
    """The sweep's decision for a job whose index row says ``index_state`` and has not changed for
    the grace period. ``job`` is its ledger row (None if there is none); ``complete``: every
    mini-batch of a running job has settled."""
    if job is None:
        return Decision(abandon=index_state == JobState.QUEUED)
    state = JobState(job.state)
    repair = state.value if index.advances(index_state, state) else ""
    if state.terminal:
        return Decision(index_state=repair)
    if job.stop_reason or state == JobState.FINALIZING:
        return Decision(index_state=repair, send="finalize")
    if state == JobState.QUEUED:
        return Decision(index_state=repair, send="plan" if job.plan_step == 0 else "")
    return Decision(index_state=repair, send="finalize" if complete else "")


def progress_of(job: JobRow, tries: int, settled: int) -> str:
    """What changes whenever a running job moves: tries settled, mini-batches settled, mini-batches
    planned, the planning step."""
    return f"{tries}:{settled}:{job.planned}:{job.plan_step}"


def redrive(job: JobRow, unsettled: list[BatchRow], now: float) -> list[int]:
    """The mini-batches of a stalled job to send again: of the lowest ``window`` unsettled ones
    (in index order), those pending and those whose try is stale."""
    timeout = float(job.spec.run_invocation_timeout)
    lowest = sorted(unsettled, key=lambda b: b.index)[:job.window]
    return [b.index for b in lowest
            if b.state == "pending" or now - b.started_at > timeout + STALE_MARGIN_S]


def sweep(storage: Storage, ledger: Ledger, now: float | None = None) -> dict[str, Decision]:
    """Check every stale active index row once; returns what was done per job id."""
    settings = storage.settings
    done: dict[str, Decision] = {}
    now = time.time() if now is None else now
    for row in index.stale(storage, ACTIVE, settings.sweep_grace_s, now):
        try:
            decision = _sweep_one(storage, ledger, row, now)
        except Exception:   # noqa: BLE001 - one job's trouble must not stop the sweep of the rest
            log.exception("sweep of job %s failed; the next sweep tries again", row["job_id"])
            continue
        if not decision.idle:
            done[row["job_id"]] = decision
    return done


def _sweep_one(storage: Storage, ledger: Ledger, row: dict, now: float) -> Decision:
    job_id = row["job_id"]
    try:
        job: JobRow | None = ledger.get_job(job_id)
    except NotFoundError:
        job = None
    totals = ledger.totals(job_id) if job is not None and job.state == JobState.RUNNING else None
    complete = (job is not None and totals is not None and job.planning_done
                and decisions.complete(job, totals))
    decision = decide(row["state"], job, complete)
    if job is not None and totals is not None and job.active and not complete:
        decision = replace(decision, send=_check_stall(storage, ledger, job, row, totals, now))
    if decision.abandon:
        job = _abandon(storage, ledger, row)
        # the row now exists (ours, or the submitter's after all): act on it
        decision = replace(decide(row["state"], job), abandon=job.stop_reason == ABANDONED)
    if job is None:
        return decision
    if decision.index_state:
        index.set_state(storage, job, decision.index_state, job.error)
    if decision.send == "plan":
        outbox.plan(storage, job_id, 0)
    elif decision.send.startswith("stalled"):
        pass   # sent by _check_stall
    elif decision.send == "finalize":
        outbox.finalize(storage, job_id)
    if decision.idle:
        return decision
    log.warning("sweep: job=%s index=%s ledger=%s: %s", job_id, row["state"], job.state,
                ", ".join(p for p in ("recorded as failed" if decision.abandon else "",
                                      f"index -> {decision.index_state}" if decision.index_state else "",
                                      f"sent {decision.send}" if decision.send else "") if p))
    return decision


def _check_stall(storage: Storage, ledger: Ledger, job: JobRow, row: dict, totals: Any,
                 now: float) -> str:
    """Re-drive a running job whose progress has not moved since the last sweep; returns what was
    sent ("" if it moved, or on the first look)."""
    progress = progress_of(job, totals.tries, totals.batches_done)
    index.note_progress(storage, job, progress, now)
    if row.get("progress") != progress:
        return ""
    sent = []
    if not job.planning_done:
        outbox.plan(storage, job.job_id, job.plan_step)
        sent.append(f"plan step {job.plan_step}")
    unsettled = [b for b in ledger.batches(job.job_id, select=[
        "PartitionKey", "RowKey", "state", "started_at"]) if not BatchState(b.state).settled]
    again = redrive(job, unsettled, now)
    for i in again:
        outbox.batch(storage, job.job_id, i)
    if again:
        sent.append(f"mini-batches {again[:10]}")
    return "stalled: " + ", ".join(sent) if sent else ""


def _abandon(storage: Storage, ledger: Ledger, row: dict) -> JobRow:
    """Write a failed job row for a submission that stopped after its index row. If the submitter
    is merely slow and writes its row later, it finds this one (same creation time) and its job
    stays failed: the planner drops the plan message of a job that is not active."""
    now = time.time()
    return ledger.create_job(JobRow(
        job_id=row["job_id"], spec_json=json.dumps({"name": row.get("name", "")}), state=JobState.FAILED,
        stop_reason=ABANDONED, error=ABANDONED, stopped_at=now, ended_at=now,
        output_container=storage.settings.output_container, output_prefix=row["job_id"],
        created_at=row["created_at"]))
