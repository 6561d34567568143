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

    @property
    def settled(self) -> bool:
        """The one test of a settled mini-batch: its items are counted and it never runs again
        (unless storage loses its staged rows and the finalizer unsettles it)."""
        return self in (BatchState.SUCCEEDED, BatchState.FAILED)


class ErrorKind(StrEnum):
    """What an error record of the ledger is about (its ``kind``, in the status and the logs)."""

    ERROR = "error"        # run() raised
    TIMEOUT = "timeout"    # run() exceeded run_invocation_timeout
    CRASH = "crash"        # the scoring process died during run()
    INIT = "init"          # init() failed (no try consumed)
    ITEM = "item"          # an input file of a mini-batch that succeeded was missing
    POISON = "poison"      # the mini-batch's message reached the poison queue
    JOB = "job"            # the job cannot run at all (its context cannot be built)
    LOST = "lost"          # storage lost the mini-batch's staged rows
