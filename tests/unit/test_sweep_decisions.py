"""The sweep's decisions and the index's state order: pure, no storage."""

from __future__ import annotations

import dataclasses

from shared.service.jobs import joblist as index
from shared.service.jobs.sweep import Decision, decide
from shared.states import JobState
from tests.rows import job_row

JOB = job_row("j1", {"name": "job"}, created_at=1.0)


def test_index_states_only_move_forwards_and_a_final_state_stays() -> None:
    assert index.advances("queued", "running") and index.advances("running", "finalizing")
    assert index.advances("finalizing", "succeeded") and index.advances("queued", "failed")
    assert not index.advances("succeeded", "running")
    assert not index.advances("finalizing", "running")
    assert not index.advances("running", "running")
    assert not index.advances("cancelled", "failed"), "one final state never replaces another"
    assert index.advances("", "queued") and not index.advances("queued", "nonsense")


def test_a_queued_job_whose_plan_message_was_never_sent_is_planned_again() -> None:
    assert decide("queued", JOB) == Decision(send="plan")


def test_an_index_row_without_a_job_row_is_abandoned_only_while_queued() -> None:
    assert decide("queued", None) == Decision(abandon=True)
    assert decide("running", None).idle


def test_a_lost_index_update_is_repaired_without_sending_anything_for_a_finished_job() -> None:
    done = dataclasses.replace(JOB, state=JobState.SUCCEEDED)
    assert decide("queued", done) == Decision(index_state="succeeded")
    assert decide("running", done) == Decision(index_state="succeeded")
    assert decide("succeeded", done).idle


def test_a_running_job_is_finalized_only_once_every_mini_batch_settled() -> None:
    running = dataclasses.replace(JOB, state=JobState.RUNNING, plan_step=3, planning_done=True)
    assert decide("running", running).idle
    assert decide("running", running, complete=True) == Decision(send="finalize")
    assert decide("queued", running) == Decision(index_state="running")


def test_a_long_finalization_or_a_stopped_job_gets_a_finalize_message() -> None:
    finalizing = dataclasses.replace(JOB, state=JobState.FINALIZING, plan_step=2)
    assert decide("finalizing", finalizing) == Decision(send="finalize")
    assert decide("running", finalizing) == Decision(index_state="finalizing", send="finalize")
    stopped = dataclasses.replace(JOB, stop_reason="cancelled by user")
    assert decide("queued", stopped) == Decision(send="finalize")


def test_a_stalled_job_is_redriven_from_its_lowest_unsettled_mini_batches() -> None:
    from shared.service.jobs.sweep import STALE_MARGIN_S, progress_of, redrive
    from shared.service.ledger.rows import BatchRow

    job = job_row("j", {"run_invocation_timeout": 60}, state="running", window=3, planned=10)
    now = 10_000.0
    rows = [BatchRow("j", 7, [], state="pending"),
            BatchRow("j", 2, [], state="running", started_at=now - 5),            # alive
            BatchRow("j", 4, [], state="running", started_at=now - 61 - STALE_MARGIN_S),
            BatchRow("j", 3, [], state="pending"),
            BatchRow("j", 9, [], state="pending")]
    assert redrive(job, rows, now) == [3, 4]        # lowest three: 2 (alive), 3, 4; not 7, 9
    assert redrive(job, [], now) == []
    assert progress_of(job, 5, 4) != progress_of(job, 6, 4)
