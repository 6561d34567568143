"""Failures are contained and counted as PRS counts them, visible in one place, and nothing is lost."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from shared.local.host import LocalHost
from shared.messages import BatchMessage
from shared.storage import Storage

from .conftest import output_rows, put_files, submit


def job(code: str, container: str, mode: str, **extra) -> dict:
    return {"name": f"fail-{mode}", "entry_script": "misbehave.py", "source_directory": code,
            "inputs": [f"{container}/"], "mini_batch_size": "1", "arguments": ["--mode", mode],
            "run_max_try": 1, "error_threshold": -1, **extra}


def read(storage: Storage, status: dict, name: str) -> str:
    out = status["output"]
    prefix = out["prefix"].strip("/")
    return storage.container(out["container"]).download_blob(f"{prefix}/{name}").readall().decode()


@pytest.mark.parametrize("mode,kind,text", [
    ("segfault", "crash", "killed by signal SIGSEGV"),
    ("memory", "error", "MemoryError: simulated out of memory"),
    ("systemexit", "error", "SystemExit: 42"),
    ("exit", "crash", "exited with code 3"),
])
def test_a_crash_in_user_code_fails_one_try_and_the_worker_lives_on(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, mode: str, kind: str,
        text: str) -> None:
    put_files(storage, f"crash-{mode}", {"a.txt": b"x", "bad.txt": b"x", "c.txt": b"x"})
    job_id = submit(api, job(code, f"crash-{mode}", mode))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded"
    assert status["items"] == {"total": 3, "succeeded": 2, "failed": 1}
    [error] = status["errors"]
    assert error["kind"] == kind and text in error["message"]
    assert error["example"]["file"] == "bad.txt" and error["example"]["mini_batch"] == 1
    assert output_rows(storage, status) == ["a.txt", "c.txt"]


@pytest.mark.stops_jobs
def test_allowed_failed_count_stops_the_job_and_drops_the_rest_unrun(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "count", {f"{i:02d}{'bad' if i in (1, 2) else ''}.txt": b"x" for i in range(30)})
    job_id = submit(api, job(code, "count", "raise", allowed_failed_count=1, process_count_per_node=1))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "failed"
    assert status["reason"] == ("allowed_failed_count exceeded: 2 failed mini-batches > "
                                "allowed_failed_count 1")
    mb = status["mini_batches"]
    assert mb["failed"] == 2 and mb["succeeded"] + mb["failed"] < 30      # the rest dropped unrun
    assert status["output"]["partial"] is True
    rows = output_rows(storage, status)
    assert rows == sorted(rows) and "00.txt" in rows and len(rows) == mb["succeeded"]
    assert "allowed_failed_count exceeded" in read(storage, status, "logs/job_result.txt")


@pytest.mark.stops_jobs
def test_allowed_failed_percent_is_checked_once_everything_is_scheduled(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "percent", {f"{i}{'bad' if i < 2 else ''}.txt": b"x" for i in range(10)})
    within = submit(api, job(code, "percent", "raise", allowed_failed_percent=20))
    over = submit(api, job(code, "percent", "raise", allowed_failed_percent=10))
    ignored = submit(api, job(code, "percent", "raise", allowed_failed_percent=-1, allowed_failed_count=-1))
    host.drain()
    states = {j: api.get(f"/api/jobs/{j}").json() for j in (within, over, ignored)}
    assert states[within]["state"] == "succeeded"
    assert states[ignored]["state"] == "succeeded"
    assert states[over]["state"] == "failed"
    assert "allowed_failed_percent exceeded: 2/10 mini-batches failed (20.0% > 10.0%)" in states[over]["reason"]
    assert states[within]["items"]["failed"] == 2


@pytest.mark.stops_jobs
def test_init_failures_are_bounded_per_node_and_fail_the_job_with_the_traceback(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "initfail", {f"{i}.txt": b"x" for i in range(4)})
    job_id = submit(api, {"name": "init-fails", "entry_script": "init_fails.py",
                          "source_directory": code, "inputs": ["initfail/"], "mini_batch_size": "1",
                          "process_count_per_node": 1})
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "failed"
    assert status["reason"].startswith("init() failed 3 times on node0 (limit 3 x "
                                       "process_count_per_node = 3): FileNotFoundError: model.pkl")
    assert status["mini_batches"]["failed_tries"] == 0       # init() failures do not consume tries
    [error] = status["errors"]
    assert error["kind"] == "init" and error["count"] >= 3   # tries already started may add one
    assert 'raise FileNotFoundError("model.pkl not found' in error["traceback"]
    assert "loading the model" in read(storage, status, "logs/user/stdout/node0/process001.txt")


@pytest.mark.stops_jobs
def test_a_poisoned_mini_batch_is_recorded_as_failed_and_counted(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "poisoned", {f"{i}.txt": b"x" for i in range(3)})
    job_id = submit(api, job(code, "poisoned", "none", error_threshold=0))
    host.drain()
    assert api.get(f"/api/jobs/{job_id}").json()["state"] == "succeeded"
    # a message for a mini-batch that never settled reaches the poison queue
    host.stop()   # stop consuming; plan the second job and poison its first mini-batch by hand
    from shared.messages import PlanMessage
    from shared.service import runtime
    from shared.service.jobs import lifecycle
    from shared.service.planning import planner
    rt = runtime.configure(storage.settings)
    second = lifecycle.submit(storage, rt.ledger, job(   # the same job again: it must run
        code, "poisoned", "none", error_threshold=0, process_count_per_node=1, node_count=1,
        allow_reuse=False)).job_id
    queue = storage.queue(storage.settings.batch_queue)
    [plan] = storage.queue(storage.settings.plan_queue).receive_messages(max_messages=1)
    planner.plan_step(storage, rt.ledger, PlanMessage.from_json(plan.content))
    storage.queue(storage.settings.plan_queue).delete_message(plan)
    queue.clear_messages()
    storage.queue(storage.settings.batch_queue + storage.settings.poison_suffix).send_message(
        BatchMessage(second, 0).to_json())
    from shared.local.host import load_app
    with LocalHost(load_app(), storage.settings, lease_s=10) as again:
        again.drain()
    status = jobs_status(storage, second)
    assert status["state"] == "failed"
    assert status["reason"].startswith("error_threshold exceeded: 1 failed items > error_threshold 0")
    [error] = status["errors"]
    assert error["kind"] == "poison" and "reached the poison queue" in error["message"]
    assert status["mini_batches"]["failed"] == 1


def jobs_status(storage: Storage, job_id: str) -> dict:
    from shared.service.jobs import lifecycle as jobs
    from shared.service.ledger.store import Ledger
    return jobs.status(storage, Ledger(storage.ledger), job_id)


def test_bad_inputs_are_failures_named_by_file_and_odd_names_work(
        host: LocalHost, api: httpx.Client, storage: Storage, mnist_code: str) -> None:
    from io import BytesIO

    import numpy as np
    from PIL import Image
    png = BytesIO()
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(png, format="PNG")
    put_files(storage, "odd-images", {
        "a b/with space.png": png.getvalue(), "a b/ünïcødé.png": png.getvalue(),
        "a b/corrupt.png": b"\x89PNG not really", "a b/empty.png": b"",
        "a b/huge.png": png.getvalue() + b"\0" * (48 << 20)})
    job_id = submit(api, {"name": "odd", "entry_script": "digit_identification.py",
                          "source_directory": mnist_code, "models": ["mnist"],
                          "inputs": ["odd-images/a b/"], "mini_batch_size": "1", "run_max_try": 1,
                          "error_threshold": 5})
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded"
    assert status["items"] == {"total": 5, "succeeded": 3, "failed": 2}
    failed = {g["example"]["file"] for g in status["errors"]}
    assert failed == {"a b/corrupt.png", "a b/empty.png"}
    assert all("cannot identify image file" in g["message"] and "odd-images" not in g["message"]
               and "/tmp" not in g["message"] for g in status["errors"])
    rows = output_rows(storage, status)
    assert [r.rsplit(": ", 1)[0] for r in rows] == ["huge.png", "with space.png", "ünïcødé.png"]


def test_the_output_folder_holds_prs_like_logs(host: LocalHost, api: httpx.Client,
                                               storage: Storage, code: str) -> None:
    put_files(storage, "logged", {"0.txt": b"x", "1bad.txt": b"x", "2.txt": b"x"})
    job_id = submit(api, job(code, "logged", "raise", run_max_try=2, process_count_per_node=1))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    result = read(storage, status, "logs/job_result.txt")
    assert f"Job {job_id} (fail-raise): succeeded" in result
    assert "2 x [error] ValueError: cannot score ['1bad.txt']" in result
    assert "e.g. mini-batch 1 try 1, file 1bad.txt" in result
    rows = list(csv.DictReader(io.StringIO(read(storage, status, "logs/processed_mini-batches.csv"))))
    assert [(r["mini_batch"], r["result"], r["tries_failed"], r["first_file"]) for r in rows] == [
        ("0", "succeeded", "0", "0.txt"), ("1", "failed", "2", "1bad.txt"), ("2", "succeeded", "0", "2.txt")]
    assert all(r["node"] == "node0" for r in rows)
    errors = read(storage, status, "logs/user/error/node0/process001.txt")
    assert errors.count("--- mini-batch 1 try") == 2 and "raise ValueError" in errors
    assert "scoring ['0.txt']" in read(storage, status, "logs/user/stdout/node0/process001.txt")
    assert "mini-batch 2: 1 files" in read(storage, status, "logs/user/entry_script_log/node0/process001.txt")
    assert "mini-batches per node: node0=3" in read(storage, status, "logs/job_progress_overview.txt")
