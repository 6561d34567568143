"""What a job tells its user: grouped errors for the status API, and the PRS-like files the
finalizer leaves in the output folder:

    logs/job_result.txt                 what happened, what failed and why, where to look
    logs/job_progress_overview.txt      progress over time, per node
    logs/processed_mini-batches.csv     one line per mini-batch: result, tries, node, process, time, error
    logs/user/error/<node>/<process>.txt   the traceback of every failed try
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from shared.service.ledger.decisions import items_total
from shared.service.ledger.rows import BatchRow, ErrorRecord, JobRow, Totals
from shared.states import JobState


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


def group_errors(errors: Iterable[ErrorRecord]) -> list[dict[str, Any]]:
    """Distinct errors (by kind and message) with their count, an example mini-batch and file, and
    the traceback of the first occurrence; in order of first occurrence."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for err in sorted(errors, key=lambda e: (e.at, e.batch)):
        key = (err.kind, err.message)
        if key in groups:
            groups[key]["count"] += 1
            continue
        groups[key] = {"kind": err.kind, "message": err.message, "count": 1,
                       "example": {"mini_batch": err.batch, "attempt": err.attempt, "file": err.file,
                                   "node": err.node, "process": err.process},
                       "traceback": err.traceback}
    return list(groups.values())


def partial_output(job: JobRow, totals: Totals, state: JobState) -> bool:
    """A finished job's output holds less than all its inputs' results: it did not succeed (a
    cancelled or failed job), or some mini-batches failed. The one rule, for the status's
    ``output.partial`` and ``logs/job_result.txt`` alike (pure)."""
    return state.terminal and (state is not JobState.SUCCEEDED
                               or totals.batches_succeeded < job.planned)


def job_result_text(job: JobRow, totals: Totals, state: JobState, reason: str, url: str,
                    errors: list[ErrorRecord]) -> str:
    partial = partial_output(job, totals, state)
    lines = [
        f"Job {job.job_id} ({job.name}): {state.value}",
        (f"  WARNING: {reason}" if state is JobState.SUCCEEDED else f"  reason: {reason}")
        if reason else "",
        f"  mini-batches: {job.planned} planned, {totals.batches_succeeded} succeeded, "
        f"{totals.batches_failed} failed, {max(0, job.planned - totals.batches_done)} not run "
        f"({totals.tries_failed} failed tries)",
        _items_line(job, totals),
        f"  output: {totals.rows} rows" + (f" in {url}" if url else "") + (" (partial)" if partial else ""),
        f"  started {_when(job.started_at)}, finished {_when(job.ended_at or dt.datetime.now(dt.UTC).timestamp())}",
    ]
    groups = group_errors(errors)
    if groups:
        lines.append("")
        lines.append("Errors (distinct, with counts):")
        for g in groups:
            ex = g["example"]
            lines.append(f"  {g['count']} x [{g['kind']}] {g['message']}")
            lines.append(f"      e.g. mini-batch {ex['mini_batch']} try {ex['attempt']}, file {ex['file']}, "
                         f"{ex['node']} {ex['process']}".rstrip())
        lines += ["", "Where to look:",
                  "  logs/processed_mini-batches.csv   every mini-batch: result, tries, node, process, error",
                  "  logs/user/error/<node>/<process>.txt   tracebacks of failed tries",
                  "  logs/user/stdout|stderr|entry_script_log/<node>/<process>.txt   "
                  "what the script printed and logged"]
    return "\n".join(line for line in lines if line is not None) + "\n"


def _items_line(job: JobRow, totals: Totals) -> str:
    total, estimated = items_total(job, totals)
    line = (f"  items: {'~' if estimated else ''}{total} total{' (estimated)' if estimated else ''}, "
            f"{totals.items_succeeded} succeeded, {totals.items_failed} failed")
    if totals.items_bounded:
        line += (f" ({totals.items_bounded} of them an upper bound: the lines of pieces that could "
                 "not be parsed)")
    return line


def processed_csv(batches: Iterable[BatchRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["mini_batch", "result", "items", "succeeded", "failed", "tries_failed",
                     "deliveries", "node", "pid", "elapsed_s", "first_file", "error"])
    for b in batches:
        elapsed = round(b.ended_at - b.started_at, 3) if b.ended_at and b.started_at else ""
        first = b.items[0][1] if b.items else ""
        writer.writerow([b.index, b.state, len(b.items), b.ok, b.failed, b.tries, b.deliveries,
                         b.node, b.pid or "", elapsed, first, b.error])
    return out.getvalue()


def progress_overview(job: JobRow, batches: list[BatchRow], bucket_s: int = 10) -> str:
    """Mini-batches and items settled per time bucket and per node."""
    done = sorted((b for b in batches if b.ended_at), key=lambda b: b.ended_at)
    lines = [f"Progress of job {job.job_id}: {len(done)} of {job.planned} mini-batches settled"]
    if not done:
        return lines[0] + "\n"
    start = job.started_at or done[0].started_at
    buckets: dict[int, Counter[str]] = defaultdict(Counter)
    nodes: Counter[str] = Counter()
    for b in done:
        k = int((b.ended_at - start) // bucket_s)
        buckets[k]["batches"] += 1
        buckets[k]["items"] += len(b.items)
        nodes[b.node] += 1
    lines.append(f"{'elapsed':>10}  {'mini-batches':>12}  {'items':>8}  {'items/s':>8}")
    total_b = total_i = 0
    for k in sorted(buckets):
        total_b += buckets[k]["batches"]
        total_i += buckets[k]["items"]
        lines.append(f"{(k + 1) * bucket_s:>9}s  {total_b:>12}  {total_i:>8}  "
                     f"{buckets[k]['items'] / bucket_s:>8.1f}")
    lines.append("mini-batches per node: " + ", ".join(f"{n}={c}" for n, c in sorted(nodes.items())))
    return "\n".join(lines) + "\n"


def error_files(errors: Iterable[ErrorRecord]) -> dict[str, str]:
    """``logs/user/error/<node>/<process>.txt`` contents: every failed try's traceback."""
    files: dict[str, list[str]] = defaultdict(list)
    for e in sorted(errors, key=lambda e: (e.at, e.batch)):
        name = f"logs/user/error/{e.node or 'unknown'}/{e.process or 'worker'}.txt"
        files[name].append(f"--- mini-batch {e.batch} try {e.attempt} [{e.kind}] {_when(e.at)} "
                           f"file {e.file}\n{e.message}\n{e.traceback}".rstrip() + "\n")
    return {name: "\n".join(parts) for name, parts in files.items()}
