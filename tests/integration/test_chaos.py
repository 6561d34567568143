"""Chaos: scoring processes and host nodes are SIGKILLed at random every few seconds while a job of
2,000 items runs. It still ends succeeded with exactly one row per input, in order, and ledger
counts equal to the truth. (A longer soak lives in bench/soak.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from shared.local.chaos import Chaos
from shared.local.cluster import LocalCluster
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import snapshots
from shared.settings import Settings
from shared.states import JobState
from shared.storage import Storage

from .conftest import ROOT_HOST_JSON, SCRIPTS, output_rows, put_files

ITEMS = 2000


def chaos_host_json(tmp_path: Path) -> Path:
    """The app's host.json, but with a dequeue budget that random node kills cannot exhaust."""
    config = json.loads(ROOT_HOST_JSON.read_text())
    config["extensions"]["queues"].update({"maxDequeueCount": 100, "visibilityTimeout": "00:00:01"})
    path = tmp_path / "host.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.timeout(300)
def test_random_kills_leave_exactly_one_row_per_input_in_order(
        settings: Settings, storage: Storage, tmp_path: Path) -> None:
    names = [f"c{i:04d}.txt" for i in range(ITEMS)]
    put_files(storage, "chaos", dict.fromkeys(names, b"x"))
    code = snapshots.upload(storage, SCRIPTS)
    ledger = Ledger(storage.ledger)
    with LocalCluster(settings, nodes=2, log_dir=tmp_path / "logs", host_json=chaos_host_json(tmp_path),
                      env={"PARALLELRUN_LOCAL_LEASE_S": "3"}) as cluster:
        job = jobs.submit(storage, ledger, {
            "name": "chaos", "entry_script": "misbehave.py", "source_directory": code,
            "inputs": ["chaos/"], "mini_batch_size": "10", "node_count": 2,
            "process_count_per_node": 2, "run_max_try": 100, "error_threshold": 0,
            "arguments": ["--mode", "slow", "--delay", "0.1"]})
        chaos = Chaos(cluster, seed=11, node_share=0.35)
        deadline = time.monotonic() + 120
        while not JobState(ledger.get_job(job.job_id).state).terminal and time.monotonic() < deadline:
            time.sleep(chaos.random.uniform(1.0, 2.5))
            chaos.strike()
        cluster.drain(timeout_s=150)
    status = jobs.status(storage, ledger, job.job_id)
    assert chaos.kills["scoring process"] + chaos.kills["node"] >= 5, chaos.kills
    assert status["state"] == "succeeded", status
    assert status["items"] == {"total": ITEMS, "succeeded": ITEMS, "failed": 0}
    assert status["mini_batches"]["succeeded"] == ITEMS // 10
    assert status["rows"] == ITEMS
    print(f"chaos: {chaos.kills}, failed tries {status['mini_batches']['failed_tries']}")
    assert output_rows(storage, status) == names          # each input once, in order
    batches = list(ledger.batches(job.job_id))
    assert sum(b.ok for b in batches) == ITEMS and all(b.state == "succeeded" for b in batches)
