"""One rule says whether a finished job's output is partial: the status and job_result.txt agree."""

from __future__ import annotations

import pytest

from shared.service.jobs.summary import job_result_text, partial_output
from shared.service.ledger.rows import JobRow, Totals
from shared.states import JobState


@pytest.mark.parametrize("state,succeeded,partial", [
    (JobState.SUCCEEDED, 4, False),
    (JobState.SUCCEEDED, 3, True),     # a mini-batch failed within the budget
    (JobState.CANCELLED, 2, True),
    (JobState.CANCELLED, 4, True),     # cancelled after every planned mini-batch ran: planning stopped
    (JobState.FAILED, 4, True),
    (JobState.RUNNING, 2, False),      # not finished: nothing to say yet
])
def test_partial_output(state: JobState, succeeded: int, partial: bool) -> None:
    job = JobRow("j", planned=4, output_container="out", output_prefix="j")
    totals = Totals(batches_succeeded=succeeded, batches_failed=4 - succeeded)
    assert partial_output(job, totals, state) is partial
    if state.terminal:
        text = job_result_text(job, totals, state, "", "http://x/out/j/o.txt", [])
        assert ("(partial)" in text) is partial
