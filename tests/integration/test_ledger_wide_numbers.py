"""Numbers past Int32 (a table of over 2 GiB of text, summed queue times of a long job) are stored
and read back whole: the tables SDK would send every int as Int32 and refuse these."""

from __future__ import annotations

import dataclasses

from shared.service.ledger.rows import BatchRow, JobRow, Totals
from shared.service.ledger.store import Ledger
from shared.states import BatchState
from shared.storage import Storage

BIG = 3_000_000_000          # > 2**31 - 1


def test_a_job_row_over_int32_is_stored_and_read_back(storage: Storage) -> None:
    ledger = Ledger(storage.ledger)
    ledger.create_job(JobRow(job_id="widejob", text_bytes=BIG, items_total=BIG + 1))
    row = ledger.get_job("widejob")
    assert (row.text_bytes, row.items_total) == (BIG, BIG + 1)
    assert isinstance(row.text_bytes, int)


def test_counters_past_int32_are_committed_summed_and_reloaded(storage: Storage) -> None:
    ledger = Ledger(storage.ledger)
    ledger.put_batches([BatchRow(job_id="widesum", index=i, items=[[0, f"{i}.csv"]]) for i in range(3)])
    delta = Totals(batches_succeeded=1, text_bytes_read=BIG, ms_queue=2**31 + 5)
    for i in range(2):
        row = ledger.mark_running(ledger.get_batch("widesum", i), "node-1")
        assert ledger.commit(dataclasses.replace(row, state=BatchState.SUCCEEDED, size=BIG), delta)
    totals = ledger.totals("widesum")
    assert (totals.text_bytes_read, totals.ms_queue, totals.batches_succeeded) == (2 * BIG, 2**32 + 10, 2)
    assert ledger.get_batch("widesum", 0).size == BIG
    # another process (a fresh ledger of the same instance) reloads the shard it finds taken
    again = Ledger(storage.ledger, instance_id=ledger.instance_id)
    row = again.mark_running(again.get_batch("widesum", 2), "node-1")
    done = dataclasses.replace(row, state=BatchState.SUCCEEDED)
    while not again.commit(done, delta):      # its first try at each shard finds the shard's row
        done = dataclasses.replace(again.get_batch("widesum", 2))
        if done.state == BatchState.SUCCEEDED:
            break
        done = dataclasses.replace(again.mark_running(done, "node-1"), state=BatchState.SUCCEEDED)
    assert again.totals("widesum").text_bytes_read == 3 * BIG
