"""Infrastructure and host faults are not the user's fault: throttling, lost responses, a storage
restart, a host node killed mid-job. Each ends with exactly one row per input and exact counts."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import httpx
import pytest

from shared.local.azurite import Azurite, free_port
from shared.local.cluster import LocalCluster
from shared.local.faultproxy import FaultyProxy
from shared.local.host import LocalHost, load_app
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import snapshots
from shared.settings import Settings, azurite_connection_string
from shared.storage import Storage

from .conftest import SCRIPTS, output_rows, put_files


def spec(code: str, container: str, **extra) -> dict:
    return {"name": "faults", "entry_script": "misbehave.py", "source_directory": code,
            "inputs": [f"{container}/"], "mini_batch_size": "5", "arguments": ["--mode", "none"],
            "run_max_try": 1, "error_threshold": 0, "process_count_per_node": 2, **extra}


def assert_exact(status: dict, storage: Storage, names: list[str]) -> None:
    assert status["state"] == "succeeded", status
    assert status["items"] == {"total": len(names), "succeeded": len(names), "failed": 0}
    assert status["mini_batches"]["failed_tries"] == 0
    assert status["rows"] == len(names)
    assert output_rows(storage, status) == names


def run_behind_proxies(azurite: Azurite, settings: Settings, storage: Storage, container: str,
                       n: int, **faults: float) -> tuple[list[FaultyProxy], list[str], dict]:
    """A job over ``n`` files, run by a host that reaches storage only through faulty proxies."""
    names = [f"{container[0]}{i:03d}.txt" for i in range(n)]
    put_files(storage, container, dict.fromkeys(names, b"x"))
    code = snapshots.upload(storage, SCRIPTS)
    timeout = faults.pop("storage_timeout_s", settings.storage_timeout_s)
    proxies = [FaultyProxy(port, seed=i, **faults).start() for i, port in enumerate(azurite.ports)]
    try:
        faulty = dataclasses.replace(settings, storage_timeout_s=timeout, connection_string=(
            azurite_connection_string(*(p.port for p in proxies))))
        with LocalHost(load_app(), faulty, http_port=free_port(), lease_s=3) as host, \
                httpx.Client(base_url=host.http_url, timeout=120) as api:
            r = api.post("/api/jobs", json=spec(code, container))
            assert r.status_code == 202, r.text
            host.drain(timeout_s=300)
        return proxies, names, jobs.status(storage, Ledger(storage.ledger), r.json()["job_id"])
    finally:
        for p in proxies:
            p.stop()


def test_throttling_and_lost_responses_are_retried_without_consuming_tries(
        azurite: Azurite, settings: Settings, storage: Storage) -> None:
    proxies, names, status = run_behind_proxies(azurite, settings, storage, "throttled", 60,
                                                busy_rate=0.04, drop_rate=0.02)
    assert sum(p.counts["busy"] for p in proxies) >= 5
    assert sum(p.counts["dropped"] for p in proxies) >= 3
    assert_exact(status, storage, names)


def test_storage_timeouts_are_retried_without_consuming_tries(
        azurite: Azurite, settings: Settings, storage: Storage) -> None:
    proxies, names, status = run_behind_proxies(azurite, settings, storage, "stalled", 40,
                                                stall_rate=0.03, stall_s=2.5, storage_timeout_s=1.0)
    assert sum(p.counts["stalled"] for p in proxies) >= 3
    assert_exact(status, storage, names)


def test_storage_restart_mid_job_loses_nothing(tmp_path: Path, settings: Settings) -> None:
    ports = (free_port(), free_port(), free_port())
    server = Azurite(*ports, location=tmp_path / "azurite").start()
    try:
        restarted = dataclasses.replace(settings, connection_string=server.connection_string)
        storage = Storage(restarted)
        storage.ensure()
        names = [f"r{i:03d}.txt" for i in range(80)]
        put_files(storage, "restarted", dict.fromkeys(names, b"x"))
        code = snapshots.upload(storage, SCRIPTS)
        ledger = Ledger(storage.ledger)
        with LocalHost(load_app(), restarted, lease_s=5) as host:
            job = jobs.submit(storage, ledger, spec(code, "restarted", arguments=[
                "--mode", "slow", "--delay", "0.1"]))
            deadline = time.monotonic() + 60
            while jobs.status(storage, ledger, job.job_id)["items"]["succeeded"] < 10:
                assert time.monotonic() < deadline, "no progress before the restart"
                time.sleep(0.2)
            server.stop()
            time.sleep(2)
            server = Azurite(*ports, location=tmp_path / "azurite").start()
            host.drain(timeout_s=300)
        assert_exact(jobs.status(storage, ledger, job.job_id), storage, names)
    finally:
        server.stop()


@pytest.mark.timeout(300)
def test_a_host_node_killed_mid_job_leaves_its_work_to_the_others(
        settings: Settings, storage: Storage, tmp_path: Path) -> None:
    names = [f"k{i:03d}.txt" for i in range(120)]
    put_files(storage, "killed", dict.fromkeys(names, b"x"))
    code = snapshots.upload(storage, SCRIPTS)
    ledger = Ledger(storage.ledger)
    with LocalCluster(settings, nodes=2, log_dir=tmp_path / "logs",
                      env={"PARALLELRUN_LOCAL_LEASE_S": "3"}) as cluster:
        job = jobs.submit(storage, ledger, spec(code, "killed", node_count=2, arguments=[
            "--mode", "slow", "--delay", "0.2"]))
        deadline = time.monotonic() + 150
        while not any(b.node == "node1" and b.state == "running" for b in ledger.batches(job.job_id)):
            assert time.monotonic() < deadline, "node1 never took a mini-batch"
            time.sleep(0.05)
        cluster.kill(1)
        cluster.drain(timeout_s=240)
    status = jobs.status(storage, ledger, job.job_id)
    assert_exact(status, storage, names)
    rows = list(ledger.batches(job.job_id))
    assert any(b.deliveries > 1 for b in rows), "the killed node's mini-batch was delivered again"
