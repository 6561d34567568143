"""A job submitted through the API or a request blob is planned at once: its first step runs in
the submitting process, so its first mini-batches wait for no poll of the plan queue. The step's
message is sent first, invisible, as a backstop: a submitter that dies half-way leaves it to the
queue; a step that fails here is handed to the queue at once; and a step run twice (the backstop
delivered after all) plans the same mini-batches once."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from shared.messages import BatchMessage, PlanMessage
from shared.service import outbox
from shared.service.jobs import lifecycle as jobs
from shared.service.jobs import submissions
from shared.service.ledger.store import Ledger
from shared.service.planning import planner
from shared.settings import Settings
from shared.storage import Storage

from .conftest import put_files


class Died(BaseException):
    """The submitting process dying: nothing in it runs after this."""


def spec(code: str, container: str, **extra) -> dict:
    return {"name": "now", "entry_script": "misbehave.py", "source_directory": code,
            "inputs": [f"{container}/"], "arguments": ["--mode", "none"], "mini_batch_size": "2",
            **extra}


def messages(storage: Storage, queue: str) -> int:
    """Messages on ``queue``, visible or not."""
    return storage.queue(queue).get_queue_properties().approximate_message_count or 0


def batch_indexes(storage: Storage, job_id: str) -> list[int]:
    got = [BatchMessage.from_json(m.content) for m in
           storage.queue(storage.settings.batch_queue).receive_messages(max_messages=32)]
    return sorted(m.batch for m in got if m.job_id == job_id)


@pytest.fixture
def quick(settings: Settings) -> Storage:
    """Storage whose backstop waits 2 s (30 s by default)."""
    storage = Storage(dataclasses.replace(settings, plan_backstop_s=2.0))
    storage.ensure()
    return storage


def test_the_first_step_is_planned_before_submit_returns(quick: Storage, code: str) -> None:
    put_files(quick, "now-in", {f"{i}.txt": b"x" for i in range(5)})
    ledger = Ledger(quick.ledger)
    job = jobs.submit(quick, ledger, spec(code, "now-in"), plan_now=True)
    row = ledger.get_job(job.job_id)
    assert row.planning_done and row.planned == 3 and row.items_total == 5
    assert batch_indexes(quick, job.job_id) == [0, 1, 2]
    assert messages(quick, quick.settings.plan_queue) == 0      # the backstop was withdrawn


def test_without_plan_now_the_queue_plans_it(quick: Storage, code: str) -> None:
    put_files(quick, "later-in", {"a.txt": b"x"})
    ledger = Ledger(quick.ledger)
    job = jobs.submit(quick, ledger, spec(code, "later-in"))
    assert ledger.get_job(job.job_id).planned == 0
    got = list(quick.queue(quick.settings.plan_queue).receive_messages(max_messages=1))
    assert PlanMessage.from_json(got[0].content) == PlanMessage(job.job_id, 0)


def test_a_submitter_that_dies_mid_step_leaves_it_to_the_backstop(
        quick: Storage, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    put_files(quick, "died-in", {f"{i}.txt": b"x" for i in range(3)})
    ledger = Ledger(quick.ledger)
    real_put = planner._put_rows

    def put_then_die(*args, **kwargs):
        real_put(*args, **kwargs)      # the rows are written, the step is not committed
        raise Died()
    monkeypatch.setattr(planner, "_put_rows", put_then_die)
    with pytest.raises(Died):
        jobs.submit(quick, ledger, spec(code, "died-in"), plan_now=True)
    monkeypatch.setattr(planner, "_put_rows", real_put)
    queue = quick.queue(quick.settings.plan_queue)
    assert messages(quick, quick.settings.plan_queue) == 1
    assert not list(queue.receive_messages(max_messages=1))       # invisible: its delay first
    deadline = time.monotonic() + 30
    while not (got := list(queue.receive_messages(max_messages=1))):
        assert time.monotonic() < deadline, "the backstop never became visible"
        time.sleep(0.2)
    msg = PlanMessage.from_json(got[0].content)
    assert msg.step == 0
    planner.plan_step(quick, ledger, msg)
    queue.delete_message(got[0])
    job = ledger.get_job(msg.job_id)
    assert job.planning_done and job.planned == 2
    assert [[n for _, n in b.items] for b in ledger.batches(job.job_id)] == [["0.txt", "1.txt"], ["2.txt"]]
    assert batch_indexes(quick, job.job_id) == [0, 1]


def test_a_step_that_fails_here_goes_to_the_queue_at_once(
        quick: Storage, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    put_files(quick, "failed-in", {"a.txt": b"x"})
    ledger = Ledger(quick.ledger)
    slow = dataclasses.replace(quick.settings, plan_backstop_s=600.0)
    storage = Storage(slow)

    def refuse(*args, **kwargs):
        raise ConnectionError("table storage unreachable")
    monkeypatch.setattr(planner, "_put_rows", refuse)
    job = jobs.submit(storage, ledger, spec(code, "failed-in"), plan_now=True)   # accepted
    monkeypatch.undo()
    assert ledger.get_job(job.job_id).planned == 0
    got = list(storage.queue(slow.plan_queue).receive_messages(max_messages=1))
    assert got and PlanMessage.from_json(got[0].content) == PlanMessage(job.job_id, 0)  # not in 600 s
    planner.plan_step(storage, ledger, PlanMessage.from_json(got[0].content))
    assert ledger.get_job(job.job_id).planned == 1


def test_the_backstop_delivered_after_the_step_plans_nothing_twice(
        quick: Storage, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The withdrawal's answer lost (or the message received before it): the step runs again."""
    put_files(quick, "twice-in", {f"{i}.txt": b"x" for i in range(4)})
    ledger = Ledger(quick.ledger)
    monkeypatch.setattr(outbox, "withdraw", lambda *a: False)
    job = jobs.submit(quick, ledger, spec(code, "twice-in"), plan_now=True)
    before = [(b.index, b.items) for b in ledger.batches(job.job_id)]
    queue = quick.queue(quick.settings.plan_queue)
    deadline = time.monotonic() + 30
    while not (got := list(queue.receive_messages(max_messages=1))):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    planner.plan_step(quick, ledger, PlanMessage.from_json(got[0].content))
    row = ledger.get_job(job.job_id)
    assert row.planned == 2 and row.plan_step == 1 and row.items_total == 4
    assert [(b.index, b.items) for b in ledger.batches(job.job_id)] == before


def test_a_request_blob_is_planned_at_once(quick: Storage, code: str) -> None:
    put_files(quick, "blob-in", {"a.txt": b"x", "b.txt": b"x"})
    ledger = Ledger(quick.ledger)
    receipt = submissions.submit_blob(quick, ledger, "requests/one.json",
                                      json.dumps(spec(code, "blob-in")).encode())
    row = ledger.get_job(receipt["job_id"])
    assert row.planning_done and row.planned == 1
    assert messages(quick, quick.settings.plan_queue) == 0
