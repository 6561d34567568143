"""Incremental planning: pages, carried partial batches, several inputs, and the bounded window."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from shared.local.host import LocalHost, load_app
from shared.messages import BatchMessage, PlanMessage
from shared.service import runtime
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.planning import fileinputs as datasets
from shared.service.planning import planner
from shared.settings import Settings
from shared.storage import Storage

from .conftest import output_rows, put_files


def plan_all(storage: Storage, ledger: Ledger) -> int:
    """Run every plan message by hand; returns how many planner invocations it took."""
    steps = 0
    queue = storage.queue(storage.settings.plan_queue)
    while msgs := list(queue.receive_messages(max_messages=1)):
        planner.plan_step(storage, ledger, PlanMessage.from_json(msgs[0].content))
        queue.delete_message(msgs[0])
        steps += 1
    return steps


def spec(code: str, inputs: list, **extra) -> dict:
    return {"name": "plan", "entry_script": "misbehave.py", "source_directory": code,
            "inputs": inputs, "arguments": ["--mode", "none"], **extra}


def test_pages_and_carried_items_make_the_same_batches_as_one_listing(
        settings: Settings, code: str) -> None:
    small_pages = dataclasses.replace(settings, plan_page_size=7)
    storage = Storage(small_pages)
    storage.ensure()
    put_files(storage, "paged", {f"p{i:02d}.txt": b"x" for i in range(20)})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code, ["paged/"], mini_batch_size="3"))
    assert plan_all(storage, ledger) == 3                      # 7 + 7 + 6 blobs
    row = ledger.get_job(job.job_id)
    assert row.planning_done and row.planned == 7 and row.items_total == 20
    batches = [[name for _, name in b.items] for b in ledger.batches(job.job_id)]
    assert batches == [[f"p{i:02d}.txt" for i in range(s, min(s + 3, 20))] for s in range(0, 20, 3)]


def test_mini_batches_never_cross_inputs_and_keep_input_order(
        settings: Settings, storage: Storage, code: str) -> None:
    put_files(storage, "first", {f"a{i}.txt": b"x" for i in range(5)})
    put_files(storage, "second", {f"dir/b{i}.png": b"x" for i in range(3)} | {"dir/skip.txt": b"x"})
    rt = runtime.configure(settings)
    try:
        job = jobs.submit(storage, rt.ledger, spec(code, [
            "first/", {"container": "second", "prefix": "dir/", "glob": "*.png"}], mini_batch_size="2"))
        with LocalHost(load_app(), settings, lease_s=10) as host:
            host.drain()
        status = jobs.status(storage, rt.ledger, job.job_id)
    finally:
        runtime.current().close()
    batches = [[n for _, n in b.items] for b in Ledger(storage.ledger).batches(job.job_id)]
    assert batches == [["a0.txt", "a1.txt"], ["a2.txt", "a3.txt"], ["a4.txt"],
                       ["dir/b0.png", "dir/b1.png"], ["dir/b2.png"]]
    assert output_rows(storage, status) == ["a0.txt", "a1.txt", "a2.txt", "a3.txt", "a4.txt",
                                            "b0.png", "b1.png", "b2.png"]


def test_the_queue_holds_at_most_one_window_of_a_job(settings: Settings, storage: Storage,
                                                     code: str) -> None:
    put_files(storage, "window", {f"w{i:02d}.txt": b"x" for i in range(40)})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code, ["window/"], mini_batch_size="1",
                                            node_count=1, process_count_per_node=2))
    plan_all(storage, ledger)
    assert ledger.get_job(job.job_id).window == 8              # 1 node x 2 processes x 4
    queued = [BatchMessage.from_json(m.content).batch
              for m in storage.queue(settings.batch_queue).peek_messages(max_messages=32)]
    assert sorted(queued) == list(range(8))


@pytest.mark.scores_nothing
@pytest.mark.stops_jobs
def test_an_input_emptied_after_submit_fails_the_job_with_a_clear_reason(
        settings: Settings, storage: Storage, code: str) -> None:
    """Submit refuses an input that matches nothing; one emptied before it is planned fails
    planning, naming it."""
    put_files(storage, "emptyin", {"x/only.txt": b"1"})
    rt = runtime.configure(settings)
    try:
        job = jobs.submit(storage, rt.ledger, spec(code, [{"container": "emptyin", "prefix": "x/"}]))
        storage.container("emptyin").delete_blob("x/only.txt")
        with LocalHost(load_app(), settings, lease_s=10) as host:
            host.drain()
        status = jobs.status(storage, rt.ledger, job.job_id)
    finally:
        runtime.current().close()
    assert status["state"] == "failed"
    assert status["reason"] == "planning failed: the inputs matched no files: emptyin/x/"


def listed_pages(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str | None, bool]]:
    """Record every page listing as (continuation token, listed on a prefetch thread)."""
    calls: list[tuple[str | None, bool]] = []
    real = datasets.list_page

    def recording(storage: Storage, item: datasets.FileInput, token: str | None,
                  page_size: int = datasets.PAGE_SIZE) -> tuple[list[str], str | None]:
        calls.append((token, threading.current_thread().name.startswith("plan-prefetch")))
        return real(storage, item, token, page_size)

    monkeypatch.setattr(datasets, "list_page", recording)
    return calls


def paged_job(settings: Settings, code: str, container: str) -> tuple[Storage, Ledger, str]:
    """20 blobs listed 7 at a time (3 steps), in mini-batches of 3."""
    storage = Storage(dataclasses.replace(settings, plan_page_size=7))
    storage.ensure()
    put_files(storage, container, {f"p{i:02d}.txt": b"x" for i in range(20)})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code, [f"{container}/"], mini_batch_size="3"))
    return storage, ledger, job.job_id


def assert_paged_batches(ledger: Ledger, job_id: str) -> None:
    batches = [[name for _, name in b.items] for b in ledger.batches(job_id)]
    assert batches == [[f"p{i:02d}.txt" for i in range(s, min(s + 3, 20))] for s in range(0, 20, 3)]


def test_the_next_page_is_listed_while_this_one_is_written_and_used_by_the_next_step(
        settings: Settings, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = listed_pages(monkeypatch)
    storage, ledger, job_id = paged_job(settings, code, "ahead")
    assert plan_all(storage, ledger) == 3
    # each page listed once: the first by step 0 itself, the others ahead, on a prefetch thread
    assert [ahead for _, ahead in calls] == [False, True, True]
    assert len({token for token, _ in calls}) == 3
    assert_paged_batches(ledger, job_id)


def test_a_step_whose_page_was_not_listed_here_lists_it_and_stops_listing_ahead(
        settings: Settings, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = listed_pages(monkeypatch)
    storage, ledger, job_id = paged_job(settings, code, "elsewhere")
    queue = storage.queue(storage.settings.plan_queue)
    for step in range(3):
        msg = list(queue.receive_messages(max_messages=1))[0]
        if step == 1:
            planner._prefetcher.clear()      # as if step 1 ran in another process
        planner.plan_step(storage, ledger, PlanMessage.from_json(msg.content))
        queue.delete_message(msg)
    assert ledger.get_job(job_id).planning_done
    # step 0 lists page 0 and page 1 ahead (lost); steps 1 and 2 list their own pages
    assert [ahead for _, ahead in calls] == [False, True, False, False]
    assert_paged_batches(ledger, job_id)


def test_a_page_that_failed_to_list_ahead_is_listed_again_by_its_step(
        settings: Settings, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = datasets.list_page
    failures = []

    def flaky(storage: Storage, item: datasets.FileInput, token: str | None,
              page_size: int = datasets.PAGE_SIZE) -> tuple[list[str], str | None]:
        if threading.current_thread().name.startswith("plan-prefetch") and not failures:
            failures.append(token)
            raise ConnectionError("listing ahead failed")
        return real(storage, item, token, page_size)

    monkeypatch.setattr(datasets, "list_page", flaky)
    storage, ledger, job_id = paged_job(settings, code, "flakylist")
    assert plan_all(storage, ledger) == 3
    assert failures and ledger.get_job(job_id).items_total == 20
    assert_paged_batches(ledger, job_id)


def test_a_page_s_rows_are_written_as_concurrent_transactions(
        settings: Settings, storage: Storage, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    put_files(storage, "concurrent", {f"c{i:03d}.txt": b"x" for i in range(250)})
    in_flight, most = [0], [0]
    lock = threading.Lock()
    real = Ledger.put_batches

    def slow(self: Ledger, rows: list) -> None:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.2)                 # long enough for the others to start meanwhile
        try:
            real(self, rows)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(Ledger, "put_batches", slow)
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code, ["concurrent/"], mini_batch_size="1"))
    assert plan_all(storage, ledger) == 1
    assert most[0] == 3                 # 250 rows: three transactions, all in flight at once
    assert [[n for _, n in b.items] for b in ledger.batches(job.job_id)] == [
        [f"c{i:03d}.txt"] for i in range(250)]
