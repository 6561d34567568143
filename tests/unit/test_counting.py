"""How items and rows are counted: lines written, a table's rows when its pieces could not be read,
the loud note of a job that succeeded although items failed, and the estimate of a table's rows."""

from __future__ import annotations

from shared.scoring.protocol import RunOutcome
from shared.service.ledger import decisions, settlement
from shared.service.ledger.rows import BatchRow, Totals
from shared.service.planning.fileinputs import Downloaded
from tests.rows import job_row

TEXT_PIECE = {"file": "t.csv", "kind": "delimited", "index": 0, "est_bytes": 1000,
              "range": [100, 1100]}
PARQUET_PIECE = {"file": "p.parquet", "kind": "parquet", "index": 0, "est_bytes": 5000,
                 "row_groups": [0], "rows": [0, 250]}


def settle(batch: BatchRow, outcome: RunOutcome, **kw) -> settlement.Settlement:
    files = Downloaded([f"/tmp/{it[1]}" for it in batch.items], [])
    return settlement.settle(batch, outcome, files, run_max_try=kw.pop("run_max_try", 1),
                             block_id="blk", shard=0, node="n", now=1.0, **kw)


def test_rows_are_the_lines_written_and_items_stay_min_of_result_and_batch() -> None:
    batch = BatchRow("j", 0, [[0, "a"], [0, "b"]])
    result = settle(batch, RunOutcome("ok", text="a\n  more\nb\n", rows=2))
    assert (result.row.ok, result.row.rows, result.delta.rows) == (2, 3, 3)
    assert settle(batch, RunOutcome("ok", text="a\nb", rows=2)).row.rows == 2   # no final newline
    assert settlement.lines_written(RunOutcome("ok", text=b"a\nb\n", rows=1)) == 2   # rows as bytes
    assert settlement.lines_written(RunOutcome("ok", text=b"PAR1\n", rows=7), parts=True) == 7


def test_a_table_that_could_not_be_read_counts_its_rows_said_as_a_bound() -> None:
    batch = BatchRow("j", 0, [[0, "t.csv", TEXT_PIECE]])
    result = settle(batch, RunOutcome("error", message="TabularDataError: bad"), tabular=True,
                    unread=(223, False))
    assert result.verdict == "failed" and result.row.failed == 223
    assert result.delta.items_failed == result.delta.items_bounded == 223
    assert "upper bound" in result.error.message
    assert (result.delta.text_bytes_read, result.delta.text_rows_read) == (1000, 223)
    exact = settle(BatchRow("j", 0, [[0, "p.parquet", PARQUET_PIECE]]),
                   RunOutcome("error", message="x"), tabular=True, unread=(250, True))
    assert exact.delta.items_failed == 250 and exact.delta.items_bounded == 0
    assert "upper bound" not in exact.error.message


def test_a_failed_try_of_an_unread_table_leaves_its_size_unknown() -> None:
    batch = BatchRow("j", 0, [[0, "t.csv", TEXT_PIECE]])
    retry = settle(batch, RunOutcome("error", message="x"), tabular=True, run_max_try=3)
    assert retry.verdict == "retry" and retry.row.size == -1
    loaded = settle(batch, RunOutcome("error", message="x", loaded=40), tabular=True, run_max_try=3)
    assert loaded.row.size == 40
    final = settle(loaded.row, RunOutcome("error", message="x"), tabular=True, unread=(99, False))
    assert final.delta.items_failed == 40 and final.delta.items_bounded == 0   # known: exact


def test_a_poisoned_table_counts_the_rows_of_its_pieces() -> None:
    batch = BatchRow("j", 0, [[0, "t.csv", TEXT_PIECE]])
    result = settlement.poisoned(batch, 5, "n", 1.0, tabular=True, unread=(50, False))
    assert result.delta.items_failed == result.delta.items_bounded == 50
    assert "upper bound" in result.error.message
    assert (result.delta.text_bytes_read, result.delta.text_rows_read) == (1000, 50)
    known = settlement.poisoned(BatchRow("j", 0, [[0, "t.csv", TEXT_PIECE]], size=40), 5, "n", 1.0,
                                tabular=True)
    assert known.delta.items_failed == known.delta.text_rows_read == 40
    assert known.delta.items_bounded == 0 and "upper bound" not in known.error.message


def test_success_with_failed_items_is_said_loudly() -> None:
    assert decisions.success_note(job_row().spec, Totals(items_succeeded=3)) == ""
    note = decisions.success_note(job_row(spec={"error_threshold": -1}).spec, Totals(items_failed=300))
    assert note.startswith("succeeded with 0 of 300 items: 300 failed (error_threshold -1")
    assert "within error_threshold 5" in decisions.success_note(job_row(spec={"error_threshold": 5}).spec,
                                                                Totals(items_succeeded=7, items_failed=3))


def test_a_tables_rows_are_estimated_until_every_text_piece_is_read() -> None:
    files = job_row("j", items_total=10, planning_done=True)
    assert decisions.items_total(files, Totals()) == (10, False)
    parquet = job_row("j", items_total=500, planning_done=True)
    assert decisions.items_total(parquet, Totals()) == (500, False)
    text = job_row("j", items_total=500, text_bytes=4000, planning_done=True)
    assert decisions.items_total(text, Totals()) == (500, True)          # nothing read yet
    assert decisions.items_total(text, Totals(text_bytes_read=1000, text_rows_read=40)) == (660, True)
    assert decisions.items_total(text, Totals(text_bytes_read=4000, text_rows_read=170)) == (670, False)
    bounded = Totals(text_bytes_read=4000, text_rows_read=170, items_bounded=20)
    assert decisions.items_total(text, bounded) == (670, True)
    planning = job_row("j", text_bytes=4000, planning_done=False)
    assert decisions.items_total(planning, Totals(text_bytes_read=4000, text_rows_read=1))[1] is True
