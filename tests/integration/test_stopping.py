"""How a job stops, against a real Azurite: the first stop wins, a row that moved is read again,
a row that keeps moving gives up with Conflict (no endless retry, no recursion), and every queue
message goes to the queue of its type."""

from __future__ import annotations

import json

import pytest

from shared.messages import BatchMessage, FinalizeMessage, PlanMessage
from shared.service import outbox
from shared.service.finalizing import finalizer
from shared.service.jobs import lifecycle as jobs
from shared.service.jobs import stopping
from shared.service.ledger.rows import JobRow
from shared.service.ledger.store import Conflict, Ledger
from shared.service.planning import planner
from shared.states import JobState
from shared.storage import Storage
from tests.rows import job_row


def messages(storage: Storage, queue: str) -> list[dict]:
    return [json.loads(m.content) for m in storage.queue(queue).peek_messages(max_messages=32)]


def running_job(ledger: Ledger, job_id: str = "stopme", **fields) -> JobRow:
    return ledger.create_job(job_row(job_id, state=JobState.RUNNING, **fields))


def test_a_planning_failure_that_races_another_write_still_stops_the_job(storage: Storage) -> None:
    ledger = Ledger(storage.ledger)
    stale = running_job(ledger)
    ledger.update_job(stale, checkpoint_at=1.0)     # another writer moves the row meanwhile
    planner._fail_planning(storage, ledger, stale, "the inputs matched no files: inputs/")
    job = ledger.get_job("stopme")
    assert not job.active and job.planning_done
    assert job.stop_reason == "planning failed: the inputs matched no files: inputs/"
    assert messages(storage, storage.settings.finalize_queue) == [{"job_id": "stopme", "checkpoint": False}]


def test_the_first_stop_wins_and_a_later_one_still_drives_finalization(storage: Storage) -> None:
    ledger = Ledger(storage.ledger)
    stale = running_job(ledger)
    jobs.cancel(storage, ledger, "stopme")
    # a worker that read the row before the cancel now finds a budget exceeded
    job = stopping.stop(storage, ledger, stale, "error_threshold exceeded: 3 failed items > error_threshold 2")
    assert job.stop_reason == "cancelled by user" == ledger.get_job("stopme").stop_reason
    # the canceller may have died before its message: each stopper sends one (finalizing is idempotent)
    assert len(messages(storage, storage.settings.finalize_queue)) == 2


class MovingLedger(Ledger):
    """A ledger whose every job-row write finds the row moved by someone else just before it."""

    def __init__(self, table, other: Ledger) -> None:
        super().__init__(table)
        self.other = other
        self.writes = 0

    def update_job(self, job: JobRow, **changes) -> JobRow:
        self.writes += 1
        current = self.other.get_job(job.job_id)
        self.other.update_job(current, checkpoint_at=current.checkpoint_at + 1)
        return super().update_job(job, **changes)


def test_a_row_that_keeps_moving_gives_up_with_conflict_instead_of_retrying_forever(storage: Storage) -> None:
    ledger = MovingLedger(storage.ledger, Ledger(storage.ledger))
    running_job(ledger)
    with pytest.raises(Conflict):
        stopping.stop(storage, ledger, "stopme", "cancelled by user")
    assert ledger.writes == stopping.MAX_CONFLICTS
    assert ledger.get_job("stopme").active      # nothing half-written: the delivery is retried


def test_a_finalizer_whose_row_keeps_moving_gives_up_with_conflict_not_recursion(storage: Storage) -> None:
    ledger = MovingLedger(storage.ledger, Ledger(storage.ledger))
    running_job(ledger, planning_done=True)      # nothing planned: complete at once
    with pytest.raises(Conflict):
        finalizer.finalize(storage, ledger, FinalizeMessage("stopme"))
    assert ledger.writes == stopping.MAX_CONFLICTS
    assert ledger.get_job("stopme").state == JobState.RUNNING


def test_each_message_goes_to_the_queue_of_its_type(storage: Storage) -> None:
    s = storage.settings
    outbox.plan(storage, "j1", 3)
    outbox.batch(storage, "j1", 7)
    outbox.batch(storage, "j1", 8, delay_s=60)       # a retry's backoff: not visible yet
    outbox.finalize(storage, "j1", checkpoint=True)
    assert [PlanMessage(**m) for m in messages(storage, s.plan_queue)] == [PlanMessage("j1", 3)]
    batches = [BatchMessage(**m) for m in messages(storage, s.batch_queue)]
    assert [(b.job_id, b.batch) for b in batches] == [("j1", 7)]
    assert [FinalizeMessage(**m) for m in messages(storage, s.finalize_queue)] == [
        FinalizeMessage("j1", checkpoint=True)]
