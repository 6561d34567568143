"""Scoring processes hold no storage secret and no identity, and an idle one that died costs no
try; the script's logs are shipped exactly once."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from shared.local.azurite import Azurite, free_port
from shared.local.faultproxy import FaultyProxy
from shared.local.host import LocalHost, load_app
from shared.messages import BatchMessage, PlanMessage
from shared.scoring import reaper
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.planning import planner
from shared.service.working.pool import ScoringPool
from shared.service.working.userlogs import LogShipper
from shared.service.working.worker import Worker
from shared.settings import Settings, azurite_connection_string
from shared.storage import Storage

from .conftest import output_rows, put_files, submit

IDENTITY = {"IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi/token", "IDENTITY_HEADER": "id-header-x1",
            "MSI_ENDPOINT": "http://127.0.0.1:9/msi", "MSI_SECRET": "msi-secret-x2"}


def sas_with_write_rights(text: str) -> list[str]:
    return [m for m in re.findall(r"sp=([a-z]+)", text) if set(m) - set("rl")]


def test_a_script_that_reads_its_environment_finds_no_secret_and_logs_none(
        settings: Settings, storage: Storage, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.connection_string and "AccountKey=" in settings.connection_string
    key = settings.connection_string.split("AccountKey=")[1].split(";")[0]
    for name, value in {**IDENTITY, "AzureWebJobsStorage": settings.connection_string,
                        "AzureWebJobsStorage__accountName": "account-x3"}.items():
        monkeypatch.setenv(name, value)     # what the worker's own environment holds in Azure
    put_files(storage, "envdump", {"a.txt": b"x", "b.txt": b"x"})
    with LocalHost(load_app(), settings, http_port=free_port(), lease_s=10) as host, \
            httpx.Client(base_url=host.http_url, timeout=30) as api:
        job_id = submit(api, {"name": "env-dump", "entry_script": "env_dump.py",
                              "source_directory": code, "inputs": ["envdump/"],
                              "mini_batch_size": "1", "process_count_per_node": 1,
                              "environment_variables": {"MY_SETTING": "on"}})
        host.drain()
        status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded" and output_rows(storage, status) == ["a.txt", "b.txt"]
    out = storage.container(status["output"]["container"])
    prefix = status["output"]["prefix"].strip("/")
    seen = json.loads(out.download_blob(f"{prefix}/environment.json").readall())
    assert seen["MY_SETTING"] == "on" and seen["AZUREML_MODEL_DIR"]   # what the job needs is there
    forbidden = [n for n in seen if n.startswith(("AzureWebJobs", "IDENTITY_", "MSI_", "AZURE_"))]
    assert forbidden == []
    logs = "".join(out.download_blob(b.name).readall().decode()
                   for b in out.list_blobs(name_starts_with=f"{prefix}/logs/"))
    assert '"MY_SETTING": "on"' in logs                               # the dump was shipped
    for text in (json.dumps(seen), logs):
        assert key not in text and "AccountKey" not in text
        assert not any(v in text for v in IDENTITY.values())
        assert sas_with_write_rights(text) == []


def test_an_idle_process_killed_between_mini_batches_costs_no_try(
        settings: Settings, storage: Storage, code: str) -> None:
    put_files(storage, "idlekill", {"0.txt": b"x", "1.txt": b"x"})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, {
        "name": "idle-kill", "entry_script": "misbehave.py", "source_directory": code,
        "inputs": ["idlekill/"], "mini_batch_size": "1", "arguments": ["--mode", "none"],
        "run_max_try": 1, "process_count_per_node": 1, "error_threshold": 0})
    [plan] = storage.queue(settings.plan_queue).receive_messages(max_messages=1)
    planner.plan_step(storage, ledger, PlanMessage.from_json(plan.content))
    storage.queue(settings.batch_queue).clear_messages()
    pool = ScoringPool(dataclasses.replace(settings, warm_processes=0))
    worker = Worker(storage, ledger, pool, "node0")
    try:
        assert worker.handle(BatchMessage(job.job_id, 0)) == "succeeded"
        [slot] = pool._slots.values()
        [idle] = slot.idle
        os.kill(idle.pid, signal.SIGKILL)          # dies while idle (the OOM killer)
        deadline = time.monotonic() + 10
        while reaper.alive(idle.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.handle(BatchMessage(job.job_id, 1)) == "succeeded"
    finally:
        pool.close()
    status = jobs.status(storage, ledger, job.job_id)
    assert status["items"] == {"total": 2, "succeeded": 2, "failed": 0}
    assert status["mini_batches"]["failed_tries"] == 0 and status["errors"] == []


def write_lines(path: Path, start: int, count: int) -> None:
    with open(path, "a") as fh:
        fh.writelines(f"line {i}\n" for i in range(start, start + count))


def shipped(storage: Storage, blob: str) -> list[str]:
    return storage.container(storage.settings.output_container).download_blob(
        blob).readall().decode().splitlines()


def test_log_lines_are_shipped_exactly_once_by_concurrent_shippers_and_after_lost_answers(
        azurite: Azurite, settings: Settings, storage: Storage, tmp_path: Path) -> None:
    work = tmp_path / "process001"
    (work / "logs" / "user").mkdir(parents=True)
    log_file = work / "logs" / "user" / "process001.stdout.txt"
    write_lines(log_file, 0, 8)
    blob = "job1/logs/user/stdout/node0/process001.txt"
    shipper = LogShipper(storage, "node0")
    barrier = threading.Barrier(4)

    def ship() -> None:
        barrier.wait()
        shipper.ship(str(work), settings.output_container, "job1", force=True)

    threads = [threading.Thread(target=ship) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shipped(storage, blob) == [f"line {i}" for i in range(8)]

    # answers are lost (with this seed: the third request's, the first append, and its retry's):
    # the SDK repeats an append that landed
    proxy = FaultyProxy(azurite.ports[0], drop_rate=0.5, seed=2).start()
    try:
        lossy = Storage(dataclasses.replace(settings, connection_string=azurite_connection_string(
            proxy.port, *azurite.ports[1:])))
        faulty = LogShipper(lossy, "node0")       # also a restarted worker: it resumes at the end
        write_lines(log_file, 8, 8)
        faulty.ship(str(work), settings.output_container, "job1", force=True)
    finally:
        proxy.stop()
    appends = [path for method, path in proxy.seen if method == "PUT" and "comp=appendblock" in path]
    assert proxy.counts["dropped"] >= 1 and len(appends) >= 2     # an append was sent again
    assert shipped(storage, blob) == [f"line {i}" for i in range(16)]


def test_a_log_blob_that_storage_lost_is_written_again_whole(
        settings: Settings, storage: Storage, tmp_path: Path) -> None:
    """Storage restarted without its last writes and lost the log blob: the shipper does not fail
    (a failure here used to fail every delivery of the mini-batch until it was poisoned); it
    writes the file again from its start, each line once."""
    work = tmp_path / "process001"
    (work / "logs" / "user").mkdir(parents=True)
    log_file = work / "logs" / "user" / "process001.stdout.txt"
    write_lines(log_file, 0, 5)
    blob = "job2/logs/user/stdout/node0/process001.txt"
    shipper = LogShipper(storage, "node0")
    shipper.ship(str(work), settings.output_container, "job2", force=True)
    storage.container(settings.output_container).delete_blob(blob)
    write_lines(log_file, 5, 3)
    shipper.ship(str(work), settings.output_container, "job2", force=True)
    assert shipped(storage, blob) == [f"line {i}" for i in range(8)]
