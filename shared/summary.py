"""Human-readable summaries of a job: the ``logs/job_result.txt`` it leaves in its output folder."""

from __future__ import annotations

import datetime as dt

from .ledger import ErrorRecord, JobRow, Totals
from .states import JobState


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


def job_result_text(job: JobRow, totals: Totals, state: JobState, reason: str, url: str,
                    ledger_errors: list[ErrorRecord] | None) -> str:
    lines = [
        f"Job {job.job_id} ({job.spec.get('name', '')}): {state.value}",
        f"  reason: {reason}" if reason else "",
        f"  mini-batches: {job.planned} planned, {totals.batches_succeeded} succeeded, "
        f"{totals.batches_failed} failed ({totals.tries_failed} failed tries)",
        f"  items: {job.items_total} total, {totals.items_succeeded} succeeded, "
        f"{totals.items_failed} failed",
        f"  rows written: {totals.rows}" + (f" to {url}" if url else ""),
        f"  started {_when(job.started_at)}, finished {_when(job.ended_at or dt.datetime.now(dt.UTC).timestamp())}",
    ]
    if totals.items_failed or totals.tries_failed:
        lines.append(f"  errors: see `parallelrun status {job.job_id}` (section errors)")
    for err in ledger_errors or []:
        lines.append(f"  - mini-batch {err.batch} try {err.attempt} [{err.kind}] {err.file}: {err.message}")
    return "\n".join(line for line in lines if line) + "\n"
