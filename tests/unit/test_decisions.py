"""The pure decisions behind delivery, retries, flow control, budgets and final states."""

from __future__ import annotations

import pytest

from shared.service.ledger import decisions
from shared.service.ledger.decisions import AfterFailure, Delivery
from shared.service.ledger.rows import BatchRow, JobRow, Totals
from shared.spec import parse_spec
from shared.states import BatchState, JobState
from tests.rows import MINIMAL_SPEC, job_row


def job(**kw) -> JobRow:
    return job_row("j", kw.pop("spec", {}), **kw)


def batch(state: str = BatchState.PENDING) -> BatchRow:
    return BatchRow(job_id="j", index=0, items=[[0, "a"]], state=state)


@pytest.mark.parametrize("state,stop,row,verdict", [
    (JobState.RUNNING, "", batch(), Delivery.RUN),
    (JobState.QUEUED, "", batch(BatchState.RUNNING), Delivery.RUN),   # redelivery after a crash
    (JobState.RUNNING, "", batch(BatchState.SUCCEEDED), Delivery.DROP_DONE),
    (JobState.RUNNING, "", batch(BatchState.FAILED), Delivery.DROP_DONE),
    (JobState.RUNNING, "", None, Delivery.DROP_UNKNOWN),
    (JobState.RUNNING, "cancelled by user", batch(), Delivery.DROP_JOB_INACTIVE),
    (JobState.FINALIZING, "", batch(), Delivery.DROP_JOB_INACTIVE),
    (JobState.SUCCEEDED, "", batch(), Delivery.DROP_JOB_INACTIVE),
])
def test_on_delivery(state, stop, row, verdict) -> None:
    assert decisions.on_delivery(job(state=state, stop_reason=stop), row) is verdict


def test_run_max_try_counts_tries_in_total() -> None:
    assert decisions.after_failed_try(1, 3) is AfterFailure.RETRY
    assert decisions.after_failed_try(2, 3) is AfterFailure.RETRY
    assert decisions.after_failed_try(3, 3) is AfterFailure.FAIL
    assert decisions.after_failed_try(1, 1) is AfterFailure.FAIL


def test_retry_delay_backs_off_and_is_capped() -> None:
    assert [decisions.retry_delay_s(t) for t in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert decisions.retry_delay_s(50) == 30


def test_window_is_slots_times_prefetch() -> None:
    assert decisions.window_size(2, 2, 2) == 8
    assert decisions.window_size(1, 1, 0) == 1


def test_successor_only_once_planned() -> None:
    assert decisions.successor(3, 8, 100) == 11
    assert decisions.successor(95, 8, 100) is None


def test_planner_enqueues_first_window_and_orphans() -> None:
    # batches 8..11 are new; 0 and 2 settled before 8 and 10 existed, so nobody else will enqueue them
    assert decisions.planner_enqueues(range(8, 12), 8, settled=[0, 2]) == [8, 10]
    assert decisions.planner_enqueues(range(0, 5), 8, settled=[]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("spec,totals,planned,done,expected", [
    ({"error_threshold": 10}, Totals(items_failed=10), 5, False, None),
    ({"error_threshold": 10}, Totals(items_failed=11), 5, False, "error_threshold exceeded"),
    ({"error_threshold": -1}, Totals(items_failed=10**6), 5, False, None),
    ({"error_threshold": 0}, Totals(items_failed=1), 5, False, "error_threshold exceeded"),
    ({"allowed_failed_count": 1}, Totals(batches_failed=2), 5, False, "allowed_failed_count exceeded"),
    ({"allowed_failed_count": -1}, Totals(batches_failed=5), 5, False, None),
    ({"allowed_failed_percent": 20}, Totals(batches_failed=2), 5, False, None),   # not all scheduled
    ({"allowed_failed_percent": 20}, Totals(batches_failed=2), 5, True, "allowed_failed_percent exceeded"),
    ({"allowed_failed_percent": 40}, Totals(batches_failed=2), 5, True, None),
    ({"allowed_failed_percent": 100}, Totals(batches_failed=5), 5, True, None),
])
def test_budgets(spec, totals, planned, done, expected) -> None:
    reason = decisions.budget_exceeded(parse_spec({**MINIMAL_SPEC, **spec}), totals, planned, done)
    assert (reason is None) if expected is None else (expected in reason)


def test_complete_needs_planning_done_and_every_batch_settled() -> None:
    assert not decisions.complete(job(planned=3, planning_done=False), Totals(batches_succeeded=3))
    assert not decisions.complete(job(planned=3, planning_done=True), Totals(batches_succeeded=2))
    assert decisions.complete(job(planned=3, planning_done=True),
                              Totals(batches_succeeded=2, batches_failed=1))


def test_final_state() -> None:
    assert decisions.final_state(job(), Totals()) == (JobState.SUCCEEDED, "")
    state, reason = decisions.final_state(job(), Totals(items_failed=300))
    assert state is JobState.SUCCEEDED and reason.startswith("succeeded with 0 of 300 items")
    assert decisions.final_state(job(stop_reason="cancelled by user"), Totals())[0] is JobState.CANCELLED
    state, reason = decisions.final_state(job(stop_reason="error_threshold exceeded: 3 > 2"), Totals())
    assert state is JobState.FAILED and "error_threshold" in reason
    state, reason = decisions.final_state(job(spec={"allowed_failed_percent": 10}, planned=4),
                                          Totals(batches_failed=1, batches_succeeded=3))
    assert state is JobState.FAILED and "allowed_failed_percent" in reason


@pytest.mark.parametrize("state,stop,again", [
    (JobState.RUNNING, "", False),
    (JobState.RUNNING, "cancelled by user", True),
    (JobState.FINALIZING, "", True),            # its finalizer may have died
    (JobState.FINALIZING, "cancelled by user", True),
    (JobState.SUCCEEDED, "", False),
    (JobState.CANCELLED, "cancelled by user", False),
])
def test_refinalize(state, stop, again) -> None:
    assert decisions.refinalize(job(state=state, stop_reason=stop)) is again


def test_checkpoint_due_after_the_block_age_and_not_while_finishing() -> None:
    started = job(state=JobState.RUNNING, started_at=100.0, created_at=90.0)
    assert not decisions.checkpoint_due(started, 150.0, 60.0)
    assert decisions.checkpoint_due(started, 161.0, 60.0)
    from dataclasses import replace
    assert not decisions.checkpoint_due(replace(started, checkpoint_at=150.0), 161.0, 60.0)
    assert not decisions.checkpoint_due(replace(started, repairs=1), 161.0, 60.0)
    assert not decisions.checkpoint_due(replace(started, state=JobState.FINALIZING), 161.0, 60.0)
