"""Storage round trips the service does not need, counted on the wire (a proxy in front of a real
Azurite's Table service): a try never uploads its mini-batch's item list again, a job-row write
reads nothing back, and GET /results reads the job's row, not its whole partition. A write that
landed and whose answer was lost (the proxy forwards it, then drops the answer; the SDK's retry
fails its ETag condition) is still recognised as its writer's."""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import unquote

import httpx
import pytest

from shared.local.azurite import Azurite, free_port
from shared.local.faultproxy import FaultyProxy
from shared.local.host import LocalHost, load_app
from shared.service.ledger.rows import BatchRow
from shared.service.ledger.store import Conflict, Ledger
from shared.service.working import snapshots
from shared.settings import Settings, azurite_connection_string
from shared.states import BatchState
from shared.storage import Storage
from tests.rows import job_row

from .conftest import SCRIPTS, put_files


def behind_table_proxy(azurite: Azurite, settings: Settings, proxy: FaultyProxy) -> Settings:
    blob, queue, _ = azurite.ports
    return dataclasses.replace(settings, connection_string=azurite_connection_string(blob, queue, proxy.port))


def test_a_try_leaves_its_mini_batch_s_item_list_where_the_planner_wrote_it(
        azurite: Azurite, settings: Settings, storage: Storage) -> None:
    # long names: each mini-batch's item list is most of its row
    names = [f"trips/{'n' * 120}-{i:03d}.txt" for i in range(40)]
    put_files(storage, "tripsitems", dict.fromkeys(names, b"x"))
    code = snapshots.upload(storage, SCRIPTS)
    with FaultyProxy(azurite.table_port, keep_bodies=True) as proxy:
        with LocalHost(load_app(), behind_table_proxy(azurite, settings, proxy), http_port=free_port(),
                       lease_s=10) as host, httpx.Client(base_url=host.http_url, timeout=60) as api:
            r = api.post("/api/jobs", json={
                "name": "trips", "entry_script": "misbehave.py", "source_directory": code,
                "inputs": ["tripsitems/"], "mini_batch_size": "10", "arguments": ["--mode", "none"],
                "process_count_per_node": 1})
            assert r.status_code == 202, r.text
            host.drain(timeout_s=120)
            status = api.get(f"/api/jobs/{r.json()['job_id']}").json()
    assert status["state"] == "succeeded" and status["rows"] == 40, status
    # every name was sent to the Table service once: in the planner's write of its mini-batch row
    # (the page's listing row, for allow_reuse, holds hashes, and the page's first and last names)
    rows = [body for body in proxy.bodies if not re.search(rb'"RowKey": ?"l-', body)]
    assert len(rows) < len(proxy.bodies)
    for name in (names[0], names[15], names[39]):
        assert sum(body.count(name.encode()) for body in rows) == 1, name


def test_a_job_row_write_reads_nothing_back(azurite: Azurite, settings: Settings) -> None:
    with FaultyProxy(azurite.table_port) as proxy:
        storage = Storage(behind_table_proxy(azurite, settings, proxy))
        storage.ensure()
        ledger = Ledger(storage.ledger)
        job = ledger.create_job(job_row("tripsrow"))
        proxy.seen.clear()
        job = ledger.update_job(job, checkpoint_at=1.0)
        job = ledger.update_job(job, checkpoint_at=2.0)   # the ETag it returned is current
        assert [method for method, _ in proxy.seen] == ["PUT", "PUT"]
        assert ledger.get_job("tripsrow").checkpoint_at == 2.0


def writes_of(row_key: str, method: str):
    """A proxy rule: ``method`` requests that write the ledger row ``row_key``."""
    return lambda m, path: m == method and f"RowKey='{row_key}'" in unquote(path)


def test_a_job_row_write_whose_answer_was_lost_is_its_writer_s(azurite: Azurite, settings: Settings) -> None:
    with FaultyProxy(azurite.table_port) as proxy:
        storage = Storage(behind_table_proxy(azurite, settings, proxy))
        storage.ensure()
        ledger = Ledger(storage.ledger)
        job = ledger.create_job(job_row("tripslost"))
        proxy.lose_answers(writes_of("job", "PUT"))
        written = ledger.update_job(job, checkpoint_at=1.0)   # landed; the retry got 412
        assert proxy.counts["answer lost"] == 1
        assert written.checkpoint_at == 1.0
        assert ledger.update_job(written, checkpoint_at=2.0).checkpoint_at == 2.0   # its ETag is current
        with pytest.raises(Conflict):   # another writer's change is still a conflict
            ledger.update_job(written, checkpoint_at=3.0)
        assert ledger.get_job("tripslost").checkpoint_at == 2.0


def test_a_try_whose_merges_lost_their_answers_is_still_its_own(azurite: Azurite, settings: Settings) -> None:
    with FaultyProxy(azurite.table_port) as proxy:
        storage = Storage(behind_table_proxy(azurite, settings, proxy))
        storage.ensure()
        ledger = Ledger(storage.ledger)
        items = [[0, f"in/{i}.txt"] for i in range(3)]
        ledger.put_batches([BatchRow("tripsmerge", 0, items)])
        batch = ledger.get_batch("tripsmerge", 0)
        assert batch is not None
        proxy.lose_answers(writes_of("b000000000", "PATCH"))
        running = ledger.mark_running(batch, "node-a")
        assert proxy.counts["answer lost"] == 1
        stored = ledger.get_batch("tripsmerge", 0)
        assert stored is not None and stored.try_id == running.try_id and stored.state == BatchState.RUNNING
        assert stored.items == items and stored.deliveries == 1


def test_results_read_the_job_row_not_its_partition(
        azurite: Azurite, settings: Settings, storage: Storage) -> None:
    names = [f"r{i:02d}.txt" for i in range(12)]
    put_files(storage, "tripsresults", dict.fromkeys(names, b"x"))
    code = snapshots.upload(storage, SCRIPTS)
    with FaultyProxy(azurite.table_port) as proxy:
        with LocalHost(load_app(), behind_table_proxy(azurite, settings, proxy), http_port=free_port(),
                       lease_s=10) as host, httpx.Client(base_url=host.http_url, timeout=60) as api:
            job_id = api.post("/api/jobs", json={
                "name": "results", "entry_script": "misbehave.py", "source_directory": code,
                "inputs": ["tripsresults/"], "mini_batch_size": "4", "arguments": ["--mode", "none"],
                "process_count_per_node": 1}).json()["job_id"]
            host.drain(timeout_s=120)
            proxy.seen.clear()
            r = api.get(f"/api/jobs/{job_id}/results", params={"head": 3})
            table_requests = list(proxy.seen)
    assert r.status_code == 200 and len(r.json()["rows"]) == 3, r.text
    assert table_requests == [("GET", table_requests[0][1])], table_requests
    assert "RowKey='job'" in table_requests[0][1].replace("%27", "'")
