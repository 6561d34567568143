"""How a try settles its mini-batch: a pure function of (row, outcome, files, spec) returning the new
ledger row, the counter delta, the error record and the verdict. The worker does the I/O.

PRS's accounting: ``min(len(result), len(mini_batch))`` items succeed and the shortfall fails (no
retry); a ``run()`` that raises, times out or crashes its process is a failed try, retried up to
``run_max_try`` tries in total, after which every item of the mini-batch fails. An ``init()``
failure does not consume a try (the mini-batch never ran); the worker bounds those per node.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import decisions
from .datasets import Downloaded
from .decisions import AfterFailure
from .ledger import BatchRow, ErrorRecord, Totals
from .pool import RunOutcome
from .states import BatchState


@dataclass(frozen=True)
class Settlement:
    row: BatchRow
    delta: Totals
    error: ErrorRecord | None
    verdict: str          # "succeeded" | "retry" | "failed" | "init"

    @property
    def settled(self) -> bool:
        return self.verdict in ("succeeded", "failed")


def name_files(text: str, files: Downloaded) -> tuple[str, str]:
    """Replace local download paths in ``text`` by blob names; return (text, first file named)."""
    first = ""
    for local, blob in sorted(files.names.items(), key=lambda kv: -len(kv[0])):
        if local in text:
            first = first or blob
            text = text.replace(local, blob)
    return text, first


def _error(batch: BatchRow, attempt: int, outcome: RunOutcome, files: Downloaded, node: str,
           now: float) -> ErrorRecord:
    message, named = name_files(outcome.message, files)
    trace, traced = name_files(outcome.traceback, files)
    culprit = named or traced or (str(batch.items[0][1]) if batch.items else "")
    return ErrorRecord(batch.index, attempt, outcome.kind, message, trace, file=culprit, node=node,
                       process=outcome.process, at=now)


def missing_note(files: Downloaded) -> str:
    if not files.missing:
        return ""
    return f"{len(files.missing)} file(s) could not be read: " + "; ".join(r for _, r in files.missing[:3])


def settle(batch: BatchRow, outcome: RunOutcome, files: Downloaded, *, run_max_try: int,
           block_id: str, shard: int, node: str, now: float, tabular: bool = False,
           stages: Totals = Totals()) -> Settlement:
    """The settlement of one try; ``stages`` (its timings) is added to the counters."""
    result = _settle(batch, outcome, files, run_max_try=run_max_try, block_id=block_id, shard=shard,
                     node=node, now=now, tabular=tabular)
    return replace(result, delta=result.delta + stages)


def _settle(batch: BatchRow, outcome: RunOutcome, files: Downloaded, *, run_max_try: int,
            block_id: str, shard: int, node: str, now: float, tabular: bool) -> Settlement:
    # items: files, or a table's rows (known once a try has read them; unknown counts as 0)
    n = (outcome.loaded if outcome.loaded >= 0 else max(batch.size, 0)) if tabular else len(batch.items)
    present = n if tabular else len(files.paths)
    common = {"ended_at": now, "pid": outcome.pid, "node": node, "size": n}
    if outcome.ok:
        ok = min(outcome.rows, present)
        row = replace(batch, state=BatchState.SUCCEEDED, ok=ok, failed=n - ok, rows=outcome.rows,
                      block_id=block_id, shard=shard, header=outcome.header,
                      error=missing_note(files), **common)
        delta = Totals(batches_succeeded=1, items_succeeded=ok, items_failed=n - ok,
                       rows=outcome.rows if block_id else 0)
        error = None
        if files.missing:
            error = ErrorRecord(batch.index, batch.tries + 1, "item", missing_note(files),
                                file=files.missing[0][0], node=node, at=now)
        return Settlement(row, delta, error, "succeeded")
    if outcome.kind == "init":
        error = _error(batch, batch.tries + 1, outcome, files, node, now)
        row = replace(batch, state=BatchState.PENDING, error=error.message,
                      **{**common, "size": batch.size})
        return Settlement(row, Totals(), error, "init")
    tries = batch.tries + 1
    error = _error(batch, tries, outcome, files, node, now)
    if decisions.after_failed_try(tries, run_max_try) is AfterFailure.RETRY:
        row = replace(batch, state=BatchState.PENDING, tries=tries, error=error.message, **common)
        return Settlement(row, Totals(tries_failed=1), error, "retry")
    row = replace(batch, state=BatchState.FAILED, tries=tries, ok=0, failed=n, error=error.message,
                  **common)
    return Settlement(row, Totals(batches_failed=1, items_failed=n, tries_failed=1), error, "failed")


def poisoned(batch: BatchRow, deliveries: int, node: str, now: float, cause: str = "") -> Settlement:
    """A mini-batch whose message reached the poison queue: failed, all items failed, never lost.
    ``cause``: what the poison handler itself met (its job's context could not be built)."""
    message = (f"the message of mini-batch {batch.index} reached the poison queue after "
               f"{deliveries} deliveries without settling: each time its worker died or failed "
               "outside run() (see the host's logs)" + (f"; {cause}" if cause else ""))
    n = batch.size if batch.size >= 0 else len(batch.items)
    error = ErrorRecord(batch.index, batch.tries + 1, "poison", message,
                        file=str(batch.items[0][1]) if batch.items else "", node=node, at=now)
    row = replace(batch, state=BatchState.FAILED, ok=0, failed=n, error=message, ended_at=now)
    return Settlement(row, Totals(batches_failed=1, items_failed=n), error, "failed")
