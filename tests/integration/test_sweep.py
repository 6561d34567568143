"""Nothing stuck: the job index follows a job's state as it happens, and the sweep (a timer
trigger) drives again the jobs whose submitter died before their first message."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from typing import Any

import azure.functions as func
import httpx
import pytest

from shared.local.host import LocalHost, load_app
from shared.local.invocation import FunctionSpec, StatsBook
from shared.local.timers import TimerTrigger
from shared.service.finalizing import finalizer
from shared.service.jobs import joblist as index
from shared.service.jobs import lifecycle as jobs
from shared.service.jobs import sweep
from shared.service.ledger.rows import JobRow
from shared.service.ledger.store import Ledger
from shared.settings import Settings
from shared.states import JobState
from shared.storage import Storage
from tests.rows import job_row

from .conftest import output_rows, put_files, wait_for


def slow_spec(code: str, container: str, **fields: Any) -> dict[str, Any]:
    return {"name": "swept", "entry_script": "slow.py", "source_directory": code,
            "inputs": [f"{container}/"], "mini_batch_size": "1", "process_count_per_node": 1,
            "environment_variables": {"SLOW_SECONDS": "0.05"}, **fields}


class DiesBeforePlanning:
    """The submitter's storage: everything works until the first planning message is sent."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def queue(self, name: str) -> Any:
        if name == self._storage.settings.plan_queue:
            raise SystemExit("the submitter died before enqueueing the plan message")
        return self._storage.queue(name)


# -- the index ---------------------------------------------------------------------------------
def test_an_index_row_never_moves_backwards(storage: Storage) -> None:
    job = job_row("j-order", {"name": "order"}, created_at=time.time())
    index.add(storage, job)
    assert index.set_state(storage, job, JobState.RUNNING)
    assert index.set_state(storage, job, JobState.SUCCEEDED)
    assert not index.set_state(storage, job, JobState.RUNNING), "a late 'running' is dropped"
    assert not index.set_state(storage, job, JobState.FAILED), "a final state stays"
    assert [(r["job_id"], r["state"]) for r in index.recent(storage)] == [("j-order", "succeeded")]


def test_the_job_list_shows_running_finalizing_and_succeeded_as_they_happen(
        storage: Storage, api: httpx.Client, host: LocalHost, code: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    put_files(storage, "listed", {f"l{i}.txt": b"x" for i in range(6)})
    seen_while_assembling: list[str] = []
    assemble = finalizer.assemble

    def watching_assemble(storage_: Storage, target: Any, *args: Any) -> str:
        seen_while_assembling.extend(j["state"] for j in index.recent(storage_)
                                     if j["job_id"] == target.job_id)
        return assemble(storage_, target, *args)

    monkeypatch.setattr(finalizer, "assemble", watching_assemble)
    job_id = api.post("/api/jobs", json=slow_spec(code, "listed", environment_variables={
        "SLOW_SECONDS": "0.4"})).json()["job_id"]

    def listed_state() -> str:
        [row] = [j for j in api.get("/api/jobs").json()["jobs"] if j["job_id"] == job_id]
        return row["state"]

    assert wait_for("the job to be listed as running", lambda: listed_state() == "running")
    assert jobs.status(storage, Ledger(storage.ledger), job_id)["mini_batches"]["succeeded"] < 6
    host.drain()
    assert listed_state() == "succeeded"
    assert seen_while_assembling == ["finalizing"]


# -- the sweep ---------------------------------------------------------------------------------
@pytest.fixture
def sweeping(settings: Settings) -> Settings:
    """This test's settings with a sweep every second, for index rows unchanged for 0.5 s."""
    return dataclasses.replace(settings, sweep_schedule="* * * * * *", sweep_grace_s=0.5)


def test_a_job_whose_plan_message_was_never_sent_is_swept_and_completes(
        sweeping: Settings, code: str) -> None:
    storage = Storage(sweeping)
    storage.ensure()
    names = [f"s{i}.txt" for i in range(4)]
    put_files(storage, "swept", dict.fromkeys(names, b"x"))
    ledger = Ledger(storage.ledger)
    with pytest.raises(SystemExit):
        jobs.submit(DiesBeforePlanning(storage), ledger, slow_spec(code, "swept"))  # type: ignore[arg-type]
    [row] = index.recent(storage)
    assert (row["state"], ledger.get_job(row["job_id"]).state) == ("queued", "queued")
    with LocalHost(load_app(), sweeping, http_port=None, lease_s=10) as host:
        wait_for("the swept job to finish",
                 lambda: JobState(ledger.get_job(row["job_id"]).state).terminal)
        host.drain()
        assert host.stats["sweep"].successes >= 1
    status = jobs.status(storage, ledger, row["job_id"])
    assert status["state"] == "succeeded", status
    assert output_rows(storage, status) == names
    assert [(j["job_id"], j["state"]) for j in index.recent(storage)] == [(row["job_id"], "succeeded")]


def test_a_submission_that_died_before_its_job_row_is_listed_as_failed(
        sweeping: Settings, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = Storage(sweeping)
    storage.ensure()
    put_files(storage, "abandoned", {"a.txt": b"x"})
    ledger = Ledger(storage.ledger)

    def dies(job: JobRow) -> JobRow:
        raise SystemExit("the submitter died before writing the job row")

    monkeypatch.setattr(ledger, "create_job", dies)
    with pytest.raises(SystemExit):
        jobs.submit(storage, ledger, slow_spec(code, "abandoned"))
    [row] = index.recent(storage)
    assert row["state"] == "queued", "the accepted job is findable at once"
    assert sweep.sweep(storage, Ledger(storage.ledger), now=time.time() - 60) == {}, "within grace"
    done = sweep.sweep(storage, Ledger(storage.ledger), now=time.time() + 1)
    assert done[row["job_id"]] == sweep.Decision(index_state="failed", abandon=True)
    status = jobs.status(storage, Ledger(storage.ledger), row["job_id"])
    assert (status["state"], status["reason"]) == ("failed", sweep.ABANDONED)
    assert index.recent(storage)[0]["state"] == "failed"
    assert sweep.sweep(storage, Ledger(storage.ledger), now=time.time() + 1) == {}, "once"


# -- timer triggers ----------------------------------------------------------------------------
def timer_spec(calls: list[func.TimerRequest], pause: threading.Event | None = None) -> FunctionSpec:
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="timer", schedule="0 */1 * * * *", use_monitor=True)
    def tick(timer: func.TimerRequest) -> None:
        calls.append(timer)
        if pause is not None:
            pause.wait(10)

    [function] = app.get_functions()
    return FunctionSpec.from_function(function)


def test_a_timer_occurrence_runs_on_one_node_only(storage: Storage, settings: Settings) -> None:
    calls: list[func.TimerRequest] = []
    pause = threading.Event()
    spec = timer_spec(calls, pause)
    node1, node2 = (TimerTrigger(spec, storage, settings, StatsBook(), node_id=n)
                    for n in ("node1", "node2"))
    first = dt.datetime(2026, 12, 3, 6, 0, tzinfo=dt.UTC)
    running = threading.Thread(target=node1.fire, args=(first,), kwargs={"past_due": False})
    running.start()
    wait_for("node1 to run the occurrence", lambda: calls)
    assert not node2.fire(first + dt.timedelta(minutes=1), past_due=False), "node1 holds the timer"
    pause.set()
    running.join()
    assert not node2.fire(first, past_due=False), "the occurrence was run already"
    assert node2.fire(first + dt.timedelta(minutes=1), past_due=False)
    assert (node1.runs, node2.runs, len(calls)) == (1, 1, 2)


def test_a_node_that_starts_after_a_missed_occurrence_runs_it_once_late(
        storage: Storage, settings: Settings) -> None:
    calls: list[func.TimerRequest] = []
    spec = timer_spec(calls)
    then = dt.datetime(2026, 12, 3, 6, 0, tzinfo=dt.UTC)
    early = TimerTrigger(spec, storage, settings, StatsBook(), node_id="node1", clock=lambda: then)
    assert early.fire(then, past_due=False)            # status: next occurrence 06:01
    later = TimerTrigger(spec, storage, settings, StatsBook(), node_id="node2",
                         clock=lambda: then + dt.timedelta(minutes=5, seconds=10))
    later.start()
    wait_for("the missed occurrence", lambda: len(calls) == 2)
    later.stop()
    assert [c.past_due for c in calls] == [False, True]
    assert calls[1].schedule_status["Next"] == (then + dt.timedelta(minutes=1)).isoformat()


def test_a_running_job_whose_messages_storage_lost_is_redriven_and_completes(
        sweeping: Settings, code: str) -> None:
    """Storage lost acknowledged writes: every queued mini-batch message is gone, and one
    mini-batch's commit was lost after its message was deleted (its row still says running, long
    ago). Nothing would ever deliver them again; the sweep sees the job not moving and re-drives."""
    from azure.data.tables import UpdateMode

    from shared.messages import PlanMessage
    from shared.service.ledger.rows import batch_key
    from shared.service.planning import planner

    storage = Storage(sweeping)
    storage.ensure()
    names = [f"l{i}.txt" for i in range(6)]
    put_files(storage, "lost", dict.fromkeys(names, b"x"))
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, slow_spec(code, "lost", mini_batch_size="2"))
    storage.queue(sweeping.plan_queue).clear_messages()
    planner.plan_step(storage, ledger, PlanMessage(job.job_id, 0))
    storage.queue(sweeping.batch_queue).clear_messages()          # the messages are lost
    first = ledger.get_batch(job.job_id, 0)
    ledger.mark_running(first, "a-node-that-died")
    storage.ledger.update_entity({"PartitionKey": job.job_id, "RowKey": batch_key(0),
                                  "started_at": 1.0}, mode=UpdateMode.MERGE)
    assert ledger.get_job(job.job_id).state == "running"
    with LocalHost(load_app(), sweeping, http_port=None, lease_s=10) as host:
        wait_for("the stalled job to finish",
                 lambda: JobState(ledger.get_job(job.job_id).state).terminal, timeout_s=60)
        host.drain()
    status = jobs.status(storage, ledger, job.job_id)
    assert status["state"] == "succeeded", status
    assert output_rows(storage, status) == names
    assert status["items"]["succeeded"] == len(names)
