"""What a user sees of a job: :class:`JobStatus`, built from its row, its counters and its errors.

The HTTP API and the CLI show ``JobStatus.to_dict()``; docs/api.md describes its fields.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.service.jobs import claims, summary
from shared.service.ledger import decisions, environment_rows
from shared.service.ledger.rows import JobRow, Totals
from shared.service.ledger.store import Ledger
from shared.service.working.jobcontext import output_target
from shared.states import BatchState, JobState
from shared.storage import Storage, blob_path


@dataclass(frozen=True)
class MiniBatches:
    total: int
    planning_done: bool
    queued: int
    running: int
    succeeded: int
    failed: int
    failed_tries: int


@dataclass(frozen=True)
class Items:
    total: int
    succeeded: int
    failed: int


@dataclass(frozen=True)
class ItemsCounted:
    """How ``items`` was counted: ``total_estimated`` while a table's text pieces are not all read;
    ``failed_bounded``: failed items counted as the lines of pieces that could not be parsed (an
    upper bound on their rows), included in ``items.failed``; ``notes`` says both in words."""

    total_estimated: bool
    failed_bounded: int
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Timings:
    created_at: float
    started_at: float
    ended_at: float
    elapsed_s: float


@dataclass(frozen=True)
class Output:
    container: str
    prefix: str
    blob: str | None           # None: output_action summary_only
    url: str
    logs: str
    partial: bool              # finished with fewer mini-batches succeeded than planned
    replaced_by: str | None    # a newer job took over this job's explicit output
    note: str | None = None


@dataclass(frozen=True)
class JobStatus:
    """A job's status: state, counts, timings, throughput, where the time went, output, errors."""

    job_id: str
    name: str
    state: JobState
    reason: str
    mini_batches: MiniBatches
    items: Items
    items_counted: ItemsCounted
    rows: int
    timings: Timings
    throughput: dict[str, float]
    stages: dict[str, Any]
    output: Output
    errors: list[dict[str, Any]]
    spec: dict[str, Any]
    environment: list[dict[str, Any]] = field(default_factory=list)   # per node: its build
    reuse: dict[str, Any] = field(default_factory=dict)   # reused_from (a job id or None), note

    def to_dict(self) -> dict[str, Any]:
        """As JSON-able data (what GET /api/jobs/{id} answers)."""
        data = asdict(self)
        if data["output"]["note"] is None:
            del data["output"]["note"]
        return data


def job_status(storage: Storage, ledger: Ledger, job: JobRow, error_limit: int = 10) -> JobStatus:
    """Everything a user asks about ``job`` (a reused job: the counts of the job it reused)."""
    totals = ledger.totals(job.reused_from or job.job_id)
    state = JobState(job.state)
    running = ledger.count_batches(job.job_id, BatchState.RUNNING) if not state.terminal else 0
    settled = totals.batches_done
    end = job.ended_at or time.time()
    elapsed = max(0.0, end - job.started_at) if job.started_at else 0.0
    errors = summary.group_errors(ledger.errors(job.reused_from or job.job_id, 1000)) if error_limit else []
    items_total, estimated = decisions.items_total(job, totals)
    return JobStatus(
        job_id=job.job_id, name=job.name, state=state, reason=job.error or (
            job.reuse_note if job.reused_from else ""),
        mini_batches=MiniBatches(total=job.planned, planning_done=job.planning_done,
                                 queued=max(0, job.planned - settled - running), running=running,
                                 succeeded=totals.batches_succeeded, failed=totals.batches_failed,
                                 failed_tries=totals.tries_failed),
        items=Items(total=items_total, succeeded=totals.items_succeeded, failed=totals.items_failed),
        items_counted=_items_counted(estimated, totals),
        rows=totals.rows,
        timings=Timings(created_at=job.created_at, started_at=job.started_at,
                        ended_at=job.ended_at, elapsed_s=round(elapsed, 3)),
        throughput={"items_per_s": round((totals.items_succeeded + totals.items_failed) / elapsed, 2)
                    if elapsed else 0.0},
        stages=_stages(totals),
        output=output_of(storage, job, partial=summary.partial_output(job, totals, state)),
        errors=[{k: v for k, v in g.items() if k != "traceback" or i == 0}
                for i, g in enumerate(errors[:error_limit])],
        spec=json.loads(job.spec_json),
        environment=_environment(ledger, job, state),
        reuse={"reused_from": job.reused_from or None, "note": job.reuse_note},
    )


def _environment(ledger: Ledger, job: JobRow, state: JobState) -> list[dict[str, Any]]:
    """The job's environment build on each node that prepared it (none: no environment)."""
    if not job.has_spec or not job.spec.environment:
        return []
    return [row.shown(state.terminal) for row in environment_rows.rows(ledger.table, job.job_id)]


def output_of(storage: Storage, job: JobRow, partial: bool = False) -> Output:
    """Where the job's output is, and whether a newer job replaced it (from its row alone, plus
    the output's claim if it has an explicit output)."""
    target = output_target(storage.settings, job)
    replaced_by = replaced(storage, job)
    summary_only = job.has_spec and job.spec.output_action == "summary_only"
    return Output(
        container=job.output_container, prefix=job.output_prefix,
        blob=None if summary_only else target.blob_name,
        url=storage.blob_url(job.output_container, target.blob_name),
        logs=f"{job.output_container}/{blob_path(job.output_prefix, 'logs/')}",
        partial=partial, replaced_by=replaced_by or None,
        note=(f"output replaced by job {replaced_by}: its files are that job's, this job's rows "
              "are gone") if replaced_by else None)


def replaced(storage: Storage, job: JobRow) -> str:
    """The newer job that took over this finished job's explicit output ("" if none did)."""
    if not job.has_spec or job.spec.output is None:
        return ""
    owner = claims.owner(storage, job.output_container, job.output_prefix)
    return owner if owner and owner != job.job_id else ""


def _items_counted(estimated: bool, totals: Totals) -> ItemsCounted:
    notes = []
    if estimated:
        notes.append("items.total is an estimate: the rows of text pieces not read yet are "
                     "estimated from the rows per byte of those read")
    if totals.items_bounded:
        notes.append(f"{totals.items_bounded} of the failed items are an upper bound: the lines "
                     "of pieces that could not be parsed")
    return ItemsCounted(total_estimated=estimated, failed_bounded=totals.items_bounded, notes=notes)


def _stages(totals: Totals) -> dict[str, Any]:
    """Where the tries' time went: seconds per stage in all, and milliseconds per try on average."""
    ms = {stage: getattr(totals, f"ms_{stage}") for stage in Totals.STAGES}
    return {"tries": totals.tries, "total_s": {k: round(v / 1000, 3) for k, v in ms.items()},
            "per_try_ms": {k: round(v / totals.tries, 1) if totals.tries else 0.0
                           for k, v in ms.items()},
            # counted at the transport in the worker's thread: reading the row, marking it running,
            # staging rows, the commit, enqueueing the successor, shipping logs (not the downloads,
            # which other threads make, nor the host's receive/delete of the message)
            "storage_calls_per_try": round(totals.calls / totals.tries, 2) if totals.tries else 0.0}
