"""Exactly-once output on at-least-once delivery, and PRS's per-mini-batch retry semantics."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import httpx
import pytest

from shared.local.azurite import free_port
from shared.local.host import LocalHost, load_app
from shared.messages import BatchMessage, FinalizeMessage, PlanMessage
from shared.service import runtime
from shared.service.finalizing import finalizer
from shared.service.jobs import lifecycle as jobs
from shared.service.planning import planner
from shared.settings import Settings
from shared.storage import Storage

from .conftest import output_rows, put_files, submit


def misbehave(code: str, container: str, mode: str, **extra) -> dict:
    return {"name": f"mis-{mode}", "entry_script": "misbehave.py", "source_directory": code,
            "inputs": [f"{container}/"], "mini_batch_size": "2", "arguments": ["--mode", mode],
            **extra}


def test_redelivered_message_after_success_is_dropped_and_rows_stay_unique(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "dup", {f"f{i}.txt": b"x" for i in range(6)})
    job_id = submit(api, misbehave(code, "dup", "none"))
    host.drain()
    queue = storage.queue(storage.settings.batch_queue)
    for index in (0, 1, 2, 0):
        queue.send_message(BatchMessage(job_id, index).to_json())
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["items"] == {"total": 6, "succeeded": 6, "failed": 0}
    assert status["mini_batches"]["succeeded"] == 3
    assert output_rows(storage, status) == [f"f{i}.txt" for i in range(6)]


def test_concurrent_duplicate_tries_count_once(settings: Settings, storage: Storage, code: str) -> None:
    """Two workers (two nodes) get the same mini-batch at the same moment: both may run it, one
    commit wins, the counters and the output count it once."""
    put_files(storage, "race", {f"r{i}.txt": b"x" for i in range(4)})
    nodes = [runtime.Runtime(settings, node_id=n) for n in ("nodeA", "nodeB")]
    try:
        ledger = nodes[0].ledger
        job = jobs.submit(storage, ledger, misbehave(code, "race", "none", mini_batch_size="4"))
        [plan] = storage.queue(settings.plan_queue).receive_messages(max_messages=1)
        planner.plan_step(storage, ledger, PlanMessage.from_json(plan.content))
        storage.queue(settings.batch_queue).clear_messages()
        results: list[str] = []
        threads = [threading.Thread(target=lambda n=n: results.append(
            n.worker.handle(BatchMessage(job.job_id, 0)))) for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count("succeeded") == 1, results
        finalizer.finalize(storage, ledger, FinalizeMessage(job.job_id))
        status = jobs.status(storage, ledger, job.job_id)
        assert status["state"] == "succeeded"
        assert status["items"] == {"total": 4, "succeeded": 4, "failed": 0}
        assert status["mini_batches"]["succeeded"] == 1
        assert output_rows(storage, status) == [f"r{i}.txt" for i in range(4)]
    finally:
        for n in nodes:
            n.close()


def test_output_spanning_several_shards_is_still_in_input_order(
        settings: Settings, storage: Storage, code: str) -> None:
    sharded = dataclasses.replace(settings, blocks_per_shard=3)
    put_files(storage, "shards", {f"s{i:02d}.txt": b"x" for i in range(23)})
    with LocalHost(load_app(), sharded, http_port=free_port(), lease_s=10) as h, \
            httpx.Client(base_url=h.http_url) as api:
        job_id = submit(api, misbehave(code, "shards", "none"))
        h.drain()
        status = api.get(f"/api/jobs/{job_id}").json()
    assert status["mini_batches"]["total"] == 12
    assert output_rows(storage, status) == [f"s{i:02d}.txt" for i in range(23)]
    shard_blobs = [b.name for b in storage.system.list_blobs(name_starts_with=f"jobs/{job_id}/shards/")]
    assert len(shard_blobs) == 3   # shards 1..3 (shard 0 is the output blob itself)


def test_failing_try_is_retried_and_succeeds(host: LocalHost, api: httpx.Client, storage: Storage,
                                             code: str, tmp_path: Path) -> None:
    put_files(storage, "flaky", {f"k{i}.txt": b"x" for i in range(4)})
    (tmp_path / "writable").mkdir()
    job_id = submit(api, misbehave(code, "flaky", "flaky", arguments=[
        "--mode", "flaky", "--marker_dir", str(tmp_path / "writable")]))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded"
    assert status["mini_batches"]["failed_tries"] == 2 and status["mini_batches"]["failed"] == 0
    assert output_rows(storage, status) == [f"k{i}.txt" for i in range(4)]
    [error] = status["errors"]
    assert error["message"] == "RuntimeError: transient failure on the first try"
    assert error["count"] == 2


def test_run_that_always_raises_fails_its_mini_batch_after_run_max_try(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "raise", {"a1.txt": b"x", "a2.txt": b"x", "bad1.txt": b"x", "c1.txt": b"x"})
    job_id = submit(api, misbehave(code, "raise", "raise", run_max_try=2, error_threshold=5))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded"     # 2 failed items <= error_threshold 5
    assert status["items"] == {"total": 4, "succeeded": 2, "failed": 2}
    assert status["mini_batches"] | {"total": 2, "succeeded": 1, "failed": 1, "failed_tries": 2} \
        == status["mini_batches"]
    assert output_rows(storage, status) == ["a1.txt", "a2.txt"]
    first = status["errors"][0]
    assert first["example"]["mini_batch"] == 1 and first["kind"] == "error" and first["count"] == 2
    assert "ValueError: cannot score ['bad1.txt', 'c1.txt']" in first["message"]
    assert "misbehave.py" in first["traceback"] and "raise ValueError" in first["traceback"]


@pytest.mark.stops_jobs
def test_exceeding_error_threshold_fails_the_job_and_keeps_finished_output(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "budget", {"a.txt": b"x", "b.txt": b"x", "bad.txt": b"x", "d.txt": b"x"})
    job_id = submit(api, misbehave(code, "budget", "raise", run_max_try=1, error_threshold=1,
                                   process_count_per_node=1))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "failed"
    assert "error_threshold exceeded: 2 failed items > error_threshold 1" in status["reason"]
    assert output_rows(storage, status) == ["a.txt", "b.txt"]


def test_timeout_kills_the_scoring_process_and_counts_a_failed_try(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "slow", {"ok.txt": b"x", "zbad.txt": b"x"})
    job_id = submit(api, misbehave(code, "slow", "sleep", mini_batch_size="1", run_max_try=2,
                                   run_invocation_timeout=4, error_threshold=-1))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["items"] == {"total": 2, "succeeded": 1, "failed": 1}
    assert status["mini_batches"]["failed_tries"] == 2
    assert status["errors"][0]["kind"] == "timeout"
    assert "exceeded run_invocation_timeout (4 s)" in status["errors"][0]["message"]
    assert output_rows(storage, status) == ["ok.txt"]


def test_a_crashing_script_fails_one_try_and_the_worker_lives_on(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "crash", {"a.txt": b"x", "bad.txt": b"x", "c.txt": b"x"})
    job_id = submit(api, misbehave(code, "crash", "exit", mini_batch_size="1", run_max_try=1,
                                   error_threshold=-1))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded"
    assert status["items"] == {"total": 3, "succeeded": 2, "failed": 1}
    assert status["errors"][0]["kind"] == "crash"
    assert "exited with code 3" in status["errors"][0]["message"]
    assert output_rows(storage, status) == ["a.txt", "c.txt"]


def test_short_result_counts_the_shortfall_as_failed_items_without_retry(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "short", {f"{c}.txt": b"x" for c in "abcd"})
    job_id = submit(api, misbehave(code, "short", "short", error_threshold=-1))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["items"] == {"total": 4, "succeeded": 2, "failed": 2}
    assert status["mini_batches"]["failed_tries"] == 0
    assert output_rows(storage, status) == ["a.txt", "c.txt"]


def settle_by_hand(settings: Settings, storage: Storage, code: str, container: str,
                   node: runtime.Runtime) -> str:
    """A 2-mini-batch job planned, and its mini-batches scored by ``node``'s worker by hand."""
    put_files(storage, container, {f"q{i}.txt": b"x" for i in range(4)})
    job = jobs.submit(storage, node.ledger, misbehave(code, container, "none"))
    [plan] = storage.queue(settings.plan_queue).receive_messages(max_messages=1)
    planner.plan_step(storage, node.ledger, PlanMessage.from_json(plan.content))
    storage.queue(settings.batch_queue).clear_messages()
    for index in (0, 1):
        assert node.worker.handle(BatchMessage(job.job_id, index)) == "succeeded"
    return job.job_id


def test_the_last_finisher_finalizes_the_job_itself(settings: Settings, storage: Storage,
                                                    code: str) -> None:
    """No finalizer function runs here: the worker that settles the last mini-batch finalizes, and
    leaves no finalize message behind."""
    node = runtime.Runtime(settings, node_id="solo")
    try:
        job_id = settle_by_hand(settings, storage, code, "inline", node)
        status = jobs.status(storage, node.ledger, job_id)
        assert status["state"] == "succeeded"
        assert output_rows(storage, status) == [f"q{i}.txt" for i in range(4)]
        finalize_queue = storage.queue(settings.finalize_queue)
        assert finalize_queue.get_queue_properties().approximate_message_count == 0
    finally:
        node.close()


def test_a_failed_inline_finalize_is_left_to_the_finalizer_function(
        settings: Settings, storage: Storage, code: str, monkeypatch) -> None:
    node = runtime.Runtime(settings, node_id="solo")
    real = finalizer.finalize

    def broken(*args, **kwargs):
        raise ConnectionError("storage went away")

    try:
        monkeypatch.setattr(finalizer, "finalize", broken)
        job_id = settle_by_hand(settings, storage, code, "inline-fails", node)
        assert jobs.status(storage, node.ledger, job_id)["state"] == "running"
        [msg] = storage.queue(settings.finalize_queue).receive_messages(max_messages=1)
        monkeypatch.setattr(finalizer, "finalize", real)
        finalizer.finalize(storage, node.ledger, FinalizeMessage.from_json(msg.content))
        status = jobs.status(storage, node.ledger, job_id)
        assert status["state"] == "succeeded"
        assert output_rows(storage, status) == [f"q{i}.txt" for i in range(4)]
    finally:
        node.close()
