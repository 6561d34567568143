"""The states a job and a mini-batch move through (the ledger records them)."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"            # accepted, planning not started
    RUNNING = "running"          # planning and/or scoring under way
    FINALIZING = "finalizing"    # all mini-batches settled (or the job was stopped); output being assembled
    SUCCEEDED = "succeeded"
    FAILED = "failed"            # a budget was exceeded, planning failed, or finalizing failed
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class BatchState(StrEnum):
    PENDING = "pending"          # planned; queued or waiting for its turn in the job's window
    RUNNING = "running"          # a worker has started a try
    SUCCEEDED = "succeeded"      # result staged and counted (exactly once)
    FAILED = "failed"            # out of tries, poisoned or dropped; all its items count as failed
