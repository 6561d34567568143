"""How a try settles its mini-batch (shared.service.ledger.settlement): the new row, the counters,
the error record and the verdict a user sees in the job's status, for each way a try can end.

File inputs here; tests/unit/test_counting.py has more on lines written and on tables whose pieces
could not be read."""

from __future__ import annotations

import pytest

from shared.scoring.protocol import OutcomeKind, RunOutcome
from shared.service.ledger import settlement
from shared.service.ledger.rows import BatchRow, Totals
from shared.service.ledger.settlement import Verdict
from shared.service.planning.fileinputs import Downloaded
from shared.states import BatchState, ErrorKind

ITEMS = [[0, "in/a.txt"], [0, "in/b.txt"], [0, "in/c.txt"]]
LOCAL = {f"/scratch/w/{i}/{blob}": blob for i, (_, blob) in enumerate(ITEMS)}
TEXT_PIECE = {"file": "t.csv", "kind": "delimited", "index": 0, "est_bytes": 1000, "range": [0, 1000]}
PARQUET_PIECE = {"file": "p.parquet", "kind": "parquet", "index": 0, "est_bytes": 5000,
                 "row_groups": [0], "rows": [0, 250]}


def batch(tries: int = 0, **kw) -> BatchRow:
    return BatchRow("j", 7, [list(i) for i in ITEMS], state=BatchState.RUNNING, tries=tries,
                    try_id="t1", **kw)


def downloaded(missing: int = 0) -> Downloaded:
    """The mini-batch's files as the worker downloaded them; the last ``missing`` could not be."""
    present = dict(list(LOCAL.items())[:len(LOCAL) - missing])
    gone = [(blob, "BlobNotFound") for _, blob in ITEMS[len(ITEMS) - missing:]]
    return Downloaded(list(present), gone, present)


def settle(row: BatchRow, outcome: RunOutcome, files: Downloaded | None = None,
           run_max_try: int = 3, block_id: str = "blk", **kw) -> settlement.Settlement:
    return settlement.settle(row, outcome, files if files is not None else downloaded(),
                             run_max_try=run_max_try, block_id=block_id, shard=2, node="node1",
                             now=50.0, **kw)


# -- a try that succeeded ----------------------------------------------------------------------

def test_a_successful_try_settles_every_item_and_counts_its_rows() -> None:
    result = settle(batch(), RunOutcome(OutcomeKind.OK, text="1\n2\n3\n", rows=3, pid=42,
                                        header="h"))
    assert result.verdict is Verdict.SUCCEEDED and result.error is None
    row = result.row
    assert (row.state, row.ok, row.failed, row.rows, row.size) == (BatchState.SUCCEEDED, 3, 0, 3, 3)
    assert (row.block_id, row.shard, row.header, row.node, row.pid, row.ended_at) == \
        ("blk", 2, "h", "node1", 42, 50.0)
    assert row.tries == 0 and row.error == ""        # a success consumes no failed try
    assert result.delta == Totals(batches_succeeded=1, items_succeeded=3, rows=3)


def test_a_result_shorter_than_the_mini_batch_fails_the_shortfall_without_a_retry() -> None:
    result = settle(batch(), RunOutcome(OutcomeKind.OK, text="1\n", rows=1))
    assert result.verdict is Verdict.SUCCEEDED
    assert (result.row.ok, result.row.failed) == (1, 2)
    assert result.delta == Totals(batches_succeeded=1, items_succeeded=1, items_failed=2, rows=1)


def test_a_result_longer_than_the_mini_batch_counts_at_most_its_items() -> None:
    result = settle(batch(), RunOutcome(OutcomeKind.OK, text="1\n2\n3\n4\n5\n", rows=5))
    assert (result.row.ok, result.row.failed) == (3, 0)
    assert result.delta.items_succeeded == 3 and result.delta.rows == 5   # every line written counts


def test_rows_count_only_when_a_block_was_staged() -> None:
    """summary_only (or an empty result): nothing staged, no output rows, the items still count."""
    result = settle(batch(), RunOutcome(OutcomeKind.OK, text="", rows=3), block_id="")
    assert result.delta == Totals(batches_succeeded=1, items_succeeded=3)


def test_missing_files_fail_as_items_of_a_successful_try_with_an_item_error() -> None:
    result = settle(batch(), RunOutcome(OutcomeKind.OK, text="1\n2\n", rows=2), downloaded(missing=1))
    assert result.verdict is Verdict.SUCCEEDED
    assert (result.row.ok, result.row.failed) == (2, 1)
    assert result.row.error == "1 file(s) could not be read: BlobNotFound"
    err = result.error
    assert err is not None
    assert (err.kind, err.batch, err.attempt, err.file, err.node) == \
        (ErrorKind.ITEM, 7, 1, "in/c.txt", "node1")
    assert err.message == result.row.error


def test_results_for_missing_files_are_not_counted_as_succeeded_items() -> None:
    """ok is bounded by the files present, not by the mini-batch's size."""
    result = settle(batch(), RunOutcome(OutcomeKind.OK, text="1\n2\n3\n", rows=3), downloaded(missing=2))
    assert (result.row.ok, result.row.failed) == (1, 2)


def test_the_missing_note_names_at_most_three_reasons() -> None:
    files = Downloaded([], [(f"b{i}", f"reason {i}") for i in range(5)])
    assert settlement.missing_note(files) == "5 file(s) could not be read: reason 0; reason 1; reason 2"
    assert settlement.missing_note(Downloaded(["x"], [])) == ""


# -- a try that failed, timed out or crashed -----------------------------------------------------

@pytest.mark.parametrize("kind,error_kind", [
    (OutcomeKind.ERROR, ErrorKind.ERROR),
    (OutcomeKind.TIMEOUT, ErrorKind.TIMEOUT),
    (OutcomeKind.CRASH, ErrorKind.CRASH),
])
def test_a_failed_try_with_tries_left_is_retried(kind, error_kind) -> None:
    result = settle(batch(tries=1), RunOutcome(kind, message="boom", traceback="tb", pid=9,
                                               process="p3"))
    assert result.verdict is Verdict.RETRY
    row = result.row
    assert (row.state, row.tries, row.error, row.ok, row.failed) == (BatchState.PENDING, 2, "boom", 0, 0)
    assert result.delta == Totals(tries_failed=1)      # no item counted until it settles
    err = result.error
    assert err is not None
    assert (err.kind, err.attempt, err.message, err.traceback, err.process, err.node) == \
        (error_kind, 2, "boom", "tb", "p3", "node1")


@pytest.mark.parametrize("kind", [OutcomeKind.ERROR, OutcomeKind.TIMEOUT, OutcomeKind.CRASH])
def test_the_last_try_fails_the_mini_batch_and_every_item(kind) -> None:
    result = settle(batch(tries=2), RunOutcome(kind, message="boom"), run_max_try=3)
    assert result.verdict is Verdict.FAILED
    row = result.row
    assert (row.state, row.tries, row.ok, row.failed, row.size) == (BatchState.FAILED, 3, 0, 3, 3)
    assert result.delta == Totals(batches_failed=1, items_failed=3, tries_failed=1)
    assert result.error is not None and result.error.attempt == 3


def test_run_max_try_1_fails_at_the_first_failed_try() -> None:
    result = settle(batch(), RunOutcome(OutcomeKind.ERROR, message="boom"), run_max_try=1)
    assert result.verdict is Verdict.FAILED and result.row.tries == 1


def test_run_max_try_counts_tries_in_total_across_retries() -> None:
    row, verdicts = batch(), []
    for _ in range(3):
        result = settle(row, RunOutcome(OutcomeKind.TIMEOUT, message="slow"), run_max_try=3)
        verdicts.append(result.verdict)
        row = result.row
    assert verdicts == [Verdict.RETRY, Verdict.RETRY, Verdict.FAILED]
    assert row.tries == 3


def test_a_failed_try_names_the_blob_not_the_local_download_path() -> None:
    local_b = next(p for p, blob in LOCAL.items() if blob == "in/b.txt")
    outcome = RunOutcome(OutcomeKind.ERROR, message=f"ValueError: cannot parse {local_b}",
                         traceback=f'File "score.py", line 3\n  open("{local_b}")')
    err = settle(batch(), outcome).error
    assert err is not None
    assert err.message == "ValueError: cannot parse in/b.txt" and local_b not in err.traceback
    assert err.file == "in/b.txt"


def test_the_culprit_is_found_in_the_traceback_else_is_the_first_item() -> None:
    local_c = next(p for p, blob in LOCAL.items() if blob == "in/c.txt")
    err = settle(batch(), RunOutcome(OutcomeKind.ERROR, message="x", traceback=f"at {local_c}")).error
    assert err is not None and err.file == "in/c.txt"
    err = settle(batch(), RunOutcome(OutcomeKind.CRASH, message="killed by signal 9")).error
    assert err is not None and err.file == "in/a.txt"


def test_name_files_replaces_the_longest_paths_first() -> None:
    files = Downloaded(["/w/a", "/w/a.txt"], [], {"/w/a": "blob-a", "/w/a.txt": "blob-a.txt"})
    assert settlement.name_files("read /w/a.txt then /w/a", files) == \
        ("read blob-a.txt then blob-a", "blob-a.txt")
    assert settlement.name_files("nothing here", files) == ("nothing here", "")


# -- init() failed ------------------------------------------------------------------------------

def test_an_init_failure_consumes_no_try_and_counts_nothing() -> None:
    result = settle(batch(tries=2), RunOutcome(OutcomeKind.INIT, message="init() raised: no model"),
                    run_max_try=3)
    assert result.verdict is Verdict.INIT
    row = result.row
    assert (row.state, row.tries, row.size) == (BatchState.PENDING, 2, -1)
    assert row.error == "init() raised: no model"
    assert result.delta == Totals()
    assert result.error is not None
    assert (result.error.kind, result.error.attempt) == (ErrorKind.INIT, 3)


def test_an_init_failure_on_the_last_try_does_not_fail_the_mini_batch() -> None:
    result = settle(batch(tries=0), RunOutcome(OutcomeKind.INIT, message="x"), run_max_try=1)
    assert result.verdict is Verdict.INIT and not result.row.settled


# -- the try's stage timings ---------------------------------------------------------------------

@pytest.mark.parametrize("outcome", [RunOutcome(OutcomeKind.OK, text="1\n", rows=1),
                                     RunOutcome(OutcomeKind.ERROR, message="x"),
                                     RunOutcome(OutcomeKind.INIT, message="x")])
def test_the_stage_timings_are_added_to_every_settlement(outcome) -> None:
    stages = Totals(tries=1, ms_download=5, ms_run=7, calls=4)
    plain = settle(batch(), outcome)
    timed = settle(batch(), outcome, stages=stages)
    assert timed.delta == plain.delta + stages


# -- tables -------------------------------------------------------------------------------------

def table_batch(size: int = -1) -> BatchRow:
    return BatchRow("j", 1, [[0, "t.csv", TEXT_PIECE], [0, "p.parquet", PARQUET_PIECE]], size=size)


def test_a_table_mini_batch_counts_rows_not_pieces() -> None:
    result = settle(table_batch(), RunOutcome(OutcomeKind.OK, text="r\n" * 300, rows=300, loaded=300),
                    Downloaded([], []), tabular=True)
    assert (result.row.ok, result.row.failed, result.row.size) == (300, 0, 300)
    # the text piece's bytes and its rows (those not from Parquet) feed the job's row estimate
    assert (result.delta.text_bytes_read, result.delta.text_rows_read) == (1000, 50)


def test_a_table_mini_batch_takes_its_rows_from_the_try_then_the_row_then_its_pieces() -> None:
    outcome = RunOutcome(OutcomeKind.ERROR, message="x")
    assert settlement.table_rows(table_batch(), RunOutcome(OutcomeKind.ERROR, loaded=12), (99, False)) \
        == (12, True)
    assert settlement.table_rows(table_batch(size=30), outcome, (99, False)) == (30, True)
    assert settlement.table_rows(table_batch(), outcome, (99, False)) == (99, False)
    assert settlement.table_rows(table_batch(), outcome, None) == (0, True)


def test_a_table_init_failure_keeps_the_rows_known_so_far() -> None:
    result = settle(table_batch(size=30), RunOutcome(OutcomeKind.INIT, message="x"), Downloaded([], []),
                    tabular=True)
    assert result.row.size == 30 and result.delta == Totals()


# -- the poison queue ----------------------------------------------------------------------------

def test_a_poisoned_mini_batch_fails_every_item_and_says_why() -> None:
    result = settlement.poisoned(batch(tries=1), 5, "node2", 60.0)
    assert result.verdict is Verdict.FAILED
    row = result.row
    assert (row.state, row.ok, row.failed, row.size, row.ended_at) == (BatchState.FAILED, 0, 3, 3, 60.0)
    assert result.delta == Totals(batches_failed=1, items_failed=3)   # no try of its own failed
    err = result.error
    assert err is not None
    assert (err.kind, err.attempt, err.file, err.node) == (ErrorKind.POISON, 2, "in/a.txt", "node2")
    assert "mini-batch 7 reached the poison queue after 5 deliveries" in err.message
    assert row.error == err.message


def test_a_poisoned_mini_batch_names_what_its_handler_met() -> None:
    result = settlement.poisoned(batch(), 5, "n", 1.0, cause="its job's context could not be built: X")
    assert result.error is not None
    assert result.error.message.endswith("; its job's context could not be built: X")


def test_a_poisoned_mini_batch_counts_its_known_size() -> None:
    result = settlement.poisoned(batch(size=2), 5, "n", 1.0, unread=(99, False))
    assert result.delta == Totals(batches_failed=1, items_failed=2)
