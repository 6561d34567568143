"""A table's items are its rows: counted when a piece fails before its rows are read, known from
Parquet metadata at planning, estimated for text until every piece has been read."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.local.host import LocalHost
from shared.messages import PlanMessage
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.planning import planner
from shared.storage import Storage

from .conftest import put_files


def frame(n: int) -> pd.DataFrame:
    ids = np.arange(n)
    return pd.DataFrame({"id": ids, "x": (ids * 0.5).round(2), "name": [f"row {i}" for i in ids]})


def echo(code: str, path: str, **extra) -> dict:
    return {"name": "table-counts", "entry_script": "table_echo.py", "source_directory": code,
            "inputs": [{"path": path, "type": "tabular"}], "run_max_try": 1, **extra}


def plan_all(storage: Storage, ledger: Ledger) -> None:
    """Run the job's planning steps by hand (the host consumes nothing yet)."""
    queue = storage.queue(storage.settings.plan_queue)
    while True:
        messages = list(queue.receive_messages(max_messages=1))
        if not messages:
            return
        planner.plan_step(storage, ledger, PlanMessage.from_json(messages[0].content))
        queue.delete_message(messages[0])


@pytest.mark.stops_jobs
def test_a_csv_piece_that_fails_to_parse_counts_its_rows_and_fails_the_job_under_threshold_0(
        idle_host: LocalHost, storage: Storage, code: str) -> None:
    text = frame(80_000).to_csv(index=False).replace("\n79999,", "\noops,")  # past the schema sample
    put_files(storage, "count-bad", {"t.csv": text.encode()})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, echo(code, "count-bad/", mini_batch_size="256KB",
                                            error_threshold=0, process_count_per_node=1))
    idle_host.drain()
    status = jobs.status(storage, ledger, job.job_id)
    [failed] = [b for b in ledger.batches(job.job_id) if b.state == "failed"]
    start, end = failed.items[0][2]["range"]
    lines = text.encode()[start:end].count(b"\n")
    assert status["state"] == "failed"
    assert status["reason"] == (f"error_threshold exceeded: {lines} failed items > error_threshold 0")
    assert status["items"]["failed"] == lines > 0
    assert status["items_counted"]["failed_bounded"] == lines
    assert any("upper bound" in note for note in status["items_counted"]["notes"])
    [error] = status["errors"]
    assert "upper bound" in error["message"] and "column 'id'" in error["message"]


def test_csv_rows_are_estimated_until_every_piece_has_been_read(
        idle_host: LocalHost, storage: Storage, code: str) -> None:
    put_files(storage, "count-csv", {"a.csv": frame(30_000).to_csv(index=False).encode()})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, echo(code, "count-csv/", mini_batch_size="256KB"))
    plan_all(storage, ledger)
    before = jobs.status(storage, ledger, job.job_id)
    assert before["mini_batches"]["total"] > 2
    assert before["items_counted"]["total_estimated"] is True and before["items_counted"]["notes"]
    idle_host.drain()
    after = jobs.status(storage, ledger, job.job_id)
    assert after["state"] == "succeeded"
    assert after["items"] == {"total": 30_000, "succeeded": 30_000, "failed": 0}
    assert after["items_counted"] == {"total_estimated": False, "failed_bounded": 0, "notes": []}


def test_an_estimate_follows_the_rows_per_byte_of_the_pieces_read(
        idle_host: LocalHost, storage: Storage, code: str) -> None:
    """Two files of the same rows: once the first is read, the second is estimated from it."""
    body = frame(10_000).to_csv(index=False).encode()
    put_files(storage, "count-est", {"a.csv": body, "b.csv": body})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, echo(code, "count-est/", mini_batch_size="4MB",
                                            node_count=1, process_count_per_node=1))
    plan_all(storage, ledger)
    batch_queue = storage.queue(storage.settings.batch_queue)
    assert ledger.get_job(job.job_id).planned == 2
    # run only the first mini-batch: the second one's message is held back
    from shared.messages import BatchMessage
    from shared.service.working.pool import ScoringPool
    from shared.service.working.worker import Worker
    batch_queue.clear_messages()
    pool = ScoringPool(storage.settings)
    try:
        assert Worker(storage, ledger, pool, "node0").handle(BatchMessage(job.job_id, 0)) == "succeeded"
    finally:
        pool.close()
    batch_queue.clear_messages()        # the successor it enqueued: not run in this test
    status = jobs.status(storage, ledger, job.job_id)
    assert status["items_counted"]["total_estimated"] is True
    # the header is read with every piece but counted in neither: the estimate is within a row
    assert abs(status["items"]["total"] - 20_000) <= 1
    assert status["items"]["succeeded"] == 10_000


def test_parquet_rows_are_known_from_the_metadata_at_planning(
        idle_host: LocalHost, storage: Storage, code: str) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame(12_345)), buf, row_group_size=1_000)
    put_files(storage, "count-pq", {"p.parquet": buf.getvalue()})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, echo(code, "count-pq/", mini_batch_size="64KB"))
    plan_all(storage, ledger)
    before = jobs.status(storage, ledger, job.job_id)
    assert before["mini_batches"]["total"] > 1 and before["mini_batches"]["succeeded"] == 0
    assert before["items"]["total"] == 12_345
    assert before["items_counted"]["total_estimated"] is False
    idle_host.drain()
    after = jobs.status(storage, ledger, job.job_id)
    assert after["items"] == {"total": 12_345, "succeeded": 12_345, "failed": 0}
