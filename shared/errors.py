"""The error hierarchy, grouped by who must act.

* :class:`SubmitterError` - the person submitting the job must fix something (bad spec, missing input).
* :class:`OperatorError` - whoever runs the service must act (storage unreachable, throttled).

A failing entry script is not an exception of the service: its try fails, and the error rows
of the ledger say why (shared.states.ErrorKind).

Messages name the job, the mini-batch and the file wherever they are known.
"""

from __future__ import annotations


class ParallelRunError(Exception):
    """Base class of every error this project raises on purpose."""

    def __init__(self, message: str, *, job_id: str | None = None, batch: int | None = None,
                 file: str | None = None) -> None:
        self.job_id = job_id
        self.batch = batch
        self.file = file
        super().__init__(self._with_context(message))

    def _with_context(self, message: str) -> str:
        where = []
        if self.job_id:
            where.append(f"job {self.job_id}")
        if self.batch is not None:
            where.append(f"mini-batch {self.batch}")
        if self.file:
            where.append(f"file {self.file}")
        return f"{message} ({', '.join(where)})" if where else message


class SubmitterError(ParallelRunError):
    """The job as submitted cannot run: the submitter must change it."""


class SpecError(SubmitterError):
    """The job spec is invalid. ``errors`` lists ``{"field": ..., "message": ...}`` for every bad field."""

    def __init__(self, errors: list[dict[str, str]], *, job_id: str | None = None) -> None:
        self.errors = errors
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        super().__init__(f"invalid job spec: {summary}", job_id=job_id)


class PayloadTooLarge(SubmitterError):
    """A body, spec or snapshot is larger than its limit; ``setting`` names the app setting."""

    def __init__(self, message: str, *, setting: str) -> None:
        self.setting = setting
        super().__init__(message)


class NotFoundError(SubmitterError):
    """A job, model, snapshot or input named by the submitter does not exist."""


class OperatorError(ParallelRunError):
    """Storage or the host is unavailable or misconfigured; not the user's fault, retried."""


class IntegrityError(SubmitterError):
    """Stored content (a code snapshot, a model file) does not match its content hash: it changed
    after it was uploaded or registered, and is refused rather than run."""


class ConflictError(SubmitterError):
    """The request conflicts with another job's state: an output another job owns (HTTP 409).
    ``owner`` is the job in the way."""

    def __init__(self, message: str, *, owner: str, job_id: str | None = None) -> None:
        self.owner = owner
        super().__init__(message, job_id=job_id)


class GoneError(SubmitterError):
    """What was asked for existed but was replaced: a finished job's output taken over by a newer
    job (HTTP 410)."""
