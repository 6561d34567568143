"""Incremental planning: pages, carried partial batches, several inputs, and the bounded window."""

from __future__ import annotations

import dataclasses

from shared import jobs, planner, runtime
from shared.ledger import Ledger
from shared.local.host import LocalHost, load_app
from shared.messages import BatchMessage, PlanMessage
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
    assert ledger.get_job(job.job_id).window == 4              # 1 node x 2 processes x 2
    queued = [BatchMessage.from_json(m.content).batch
              for m in storage.queue(settings.batch_queue).peek_messages(max_messages=32)]
    assert sorted(queued) == [0, 1, 2, 3]


def test_an_input_that_matches_nothing_fails_the_job_with_a_clear_reason(
        settings: Settings, storage: Storage, code: str) -> None:
    storage.ensure_container("emptyin")
    rt = runtime.configure(settings)
    try:
        job = jobs.submit(storage, rt.ledger, spec(code, [{"container": "emptyin", "prefix": "x/"}]))
        with LocalHost(load_app(), settings, lease_s=10) as host:
            host.drain()
        status = jobs.status(storage, rt.ledger, job.job_id)
    finally:
        runtime.current().close()
    assert status["state"] == "failed"
    assert status["reason"] == "planning failed: the inputs matched no files: emptyin/x/"
