"""How a try settles its mini-batch: a pure function of (row, outcome, files, spec) returning the new
ledger row, the counter delta, the error record and the verdict. The worker does the I/O.

PRS's accounting: ``min(len(result), len(mini_batch))`` items succeed and the shortfall fails (no
retry); a ``run()`` that raises, times out or crashes its process is a failed try, retried up to
``run_max_try`` tries in total, after which every item of the mini-batch fails. An ``init()``
failure does not consume a try (the mini-batch never ran); the worker bounds those per node.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from shared.scoring.protocol import OutcomeKind, RunOutcome
from shared.service.ledger import decisions
from shared.service.ledger.decisions import AfterFailure
from shared.service.ledger.rows import BatchRow, ErrorRecord, Totals
from shared.service.planning.fileinputs import Downloaded
from shared.states import BatchState, ErrorKind


class Verdict(StrEnum):
    """What a try did to its mini-batch."""

    SUCCEEDED = "succeeded"   # settled: its rows staged, its items counted
    RETRY = "retry"           # the try failed; the mini-batch runs again
    FAILED = "failed"         # settled: out of tries (or poisoned), every item failed
    INIT = "init"             # init() failed: no try consumed, the mini-batch runs again


@dataclass(frozen=True)
class Settlement:
    row: BatchRow
    delta: Totals
    error: ErrorRecord | None
    verdict: Verdict


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
    return ErrorRecord(batch.index, attempt, ErrorKind(outcome.kind), message, trace, file=culprit, node=node,
                       process=outcome.process, at=now)


def lines_written(outcome: RunOutcome, parts: bool = False) -> int:
    """The output lines a successful try wrote: what the ``rows`` counter counts, so that it equals
    the lines of the output file even when a ``str(x)`` holds newlines (``parts``: a Parquet part
    file, whose rows are counted).
    Items are counted apart, as PRS does: ``min(len(result), len(mini_batch))``."""
    text = outcome.text
    if isinstance(text, str):
        return text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    if isinstance(text, bytes) and not parts:
        return text.count(b"\n") + (1 if text and not text.endswith(b"\n") else 0)
    return outcome.rows


def missing_note(files: Downloaded) -> str:
    if not files.missing:
        return ""
    return f"{len(files.missing)} file(s) could not be read: " + "; ".join(r for _, r in files.missing[:3])


def settle(batch: BatchRow, outcome: RunOutcome, files: Downloaded, *, run_max_try: int,
           block_id: str, shard: int, node: str, now: float, tabular: bool = False,
           unread: tuple[int, bool] | None = None, parts: bool = False,
           stages: Totals = Totals()) -> Settlement:
    """The settlement of one try; ``stages`` (its timings) is added to the counters; ``parts``:
    the job's output is Parquet part files (rows are counted, not lines).

    ``unread``: for a table whose rows this try could not read, the rows of its pieces and whether
    that is exact (:func:`shared.service.planning.tables.rows_unread`); the failed items then count those rows
    (an upper bound, said so in the error, unless exact)."""
    result = _settle(batch, outcome, files, run_max_try=run_max_try, block_id=block_id, shard=shard,
                     node=node, now=now, tabular=tabular, unread=unread, parts=parts)
    if tabular and result.row.settled:
        result = replace(result, delta=result.delta + _text_read(batch, result.row.size))
    return replace(result, delta=result.delta + stages)


def _text_read(batch: BatchRow, rows: int) -> Totals:
    """A settled table mini-batch's text pieces: their bytes and rows, for the job's estimate of
    the rows it has not read yet."""
    from shared.service.planning.tables import planned_counts

    parquet_rows, text_bytes = planned_counts(batch.items)
    if not text_bytes:
        return Totals()
    return Totals(text_bytes_read=text_bytes, text_rows_read=max(0, rows - parquet_rows))


def table_rows(batch: BatchRow, outcome: RunOutcome, unread: tuple[int, bool] | None
               ) -> tuple[int, bool]:
    """A table mini-batch's rows and whether the count is exact: read by this try, known from an
    earlier one, or counted from its pieces (``unread``); else 0, unknown."""
    if outcome.loaded >= 0:
        return outcome.loaded, True
    if batch.size >= 0:
        return batch.size, True
    if unread is not None:
        return unread
    return 0, True


def _settle(batch: BatchRow, outcome: RunOutcome, files: Downloaded, *, run_max_try: int,
            block_id: str, shard: int, node: str, now: float, tabular: bool,
            unread: tuple[int, bool] | None, parts: bool) -> Settlement:
    # items: files, or a table's rows (read by a try, or counted from its pieces)
    n, exact = table_rows(batch, outcome, unread) if tabular else (len(batch.items), True)
    present = n if tabular else len(files.paths)
    common: dict[str, Any] = {"ended_at": now, "pid": outcome.pid, "node": node, "size": n}
    if outcome.ok:
        ok = min(outcome.rows, present)
        lines = lines_written(outcome, parts)
        row = replace(batch, state=BatchState.SUCCEEDED, ok=ok, failed=n - ok, rows=lines,
                      block_id=block_id, shard=shard, header=outcome.header,
                      error=missing_note(files), **common)
        delta = Totals(batches_succeeded=1, items_succeeded=ok, items_failed=n - ok,
                       rows=lines if block_id else 0)
        error = None
        if files.missing:
            error = ErrorRecord(batch.index, batch.tries + 1, ErrorKind.ITEM, missing_note(files),
                                file=files.missing[0][0], node=node, at=now)
        return Settlement(row, delta, error, Verdict.SUCCEEDED)
    if outcome.kind is OutcomeKind.INIT:
        error = _error(batch, batch.tries + 1, outcome, files, node, now)
        row = replace(batch, state=BatchState.PENDING, error=error.message,
                      **{**common, "size": batch.size})
        return Settlement(row, Totals(), error, Verdict.INIT)
    tries = batch.tries + 1
    error = _error(batch, tries, outcome, files, node, now)
    if decisions.after_failed_try(tries, run_max_try) is AfterFailure.RETRY:
        row = replace(batch, state=BatchState.PENDING, tries=tries, error=error.message,
                      **{**common, "size": n if not tabular or outcome.loaded >= 0 else batch.size})
        return Settlement(row, Totals(tries_failed=1), error, Verdict.RETRY)
    if not exact:
        error = replace(error, message=f"{error.message} [{bound_note(n)}]")
    row = replace(batch, state=BatchState.FAILED, tries=tries, ok=0, failed=n, error=error.message,
                  **common)
    return Settlement(row, Totals(batches_failed=1, items_failed=n, tries_failed=1,
                                  items_bounded=0 if exact else n), error, Verdict.FAILED)


def bound_note(n: int) -> str:
    return (f"its pieces could not be read: its {n} failed items are the lines of its pieces, "
            "an upper bound on its rows")


def poisoned(batch: BatchRow, deliveries: int, node: str, now: float, cause: str = "",
             tabular: bool = False, unread: tuple[int, bool] | None = None) -> Settlement:
    """A mini-batch whose message reached the poison queue: failed, all items failed, never lost.
    ``cause``: what the poison handler itself met (its job's context could not be built);
    ``unread``: a table's rows counted from its pieces (see :func:`settle`)."""
    message = (f"the message of mini-batch {batch.index} reached the poison queue after "
               f"{deliveries} deliveries without settling: each time its worker died or failed "
               "outside run() (see the host's logs)" + (f"; {cause}" if cause else ""))
    n, exact = ((batch.size, True) if batch.size >= 0 else unread if unread is not None
                else (len(batch.items), True))
    if not exact:
        message = f"{message} [{bound_note(n)}]"
    error = ErrorRecord(batch.index, batch.tries + 1, ErrorKind.POISON, message,
                        file=str(batch.items[0][1]) if batch.items else "", node=node, at=now)
    row = replace(batch, state=BatchState.FAILED, ok=0, failed=n, size=n, error=message, ended_at=now)
    delta = Totals(batches_failed=1, items_failed=n, items_bounded=0 if exact else n)
    if tabular:
        delta = delta + _text_read(batch, n)
    return Settlement(row, delta, error, Verdict.FAILED)
