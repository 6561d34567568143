"""A node's CPU accounting, as the harness reads it: each process kind's CPU over a real job."""

from __future__ import annotations

import time
from pathlib import Path

from bench import hostcpu
from shared.local.cluster import LocalCluster
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.settings import Settings
from shared.states import JobState
from shared.storage import Storage

from .conftest import output_rows, put_files


def test_a_job_s_cpu_is_split_by_process_kind(settings: Settings, storage: Storage, code: str,
                                             tmp_path: Path) -> None:
    names = [f"c{i:03d}.txt" for i in range(40)]
    put_files(storage, "cpu-inputs", dict.fromkeys(names, b"x"))
    ledger = Ledger(storage.ledger)
    folder = tmp_path / "cpu"
    spec = {"name": "cpu", "entry_script": "misbehave.py", "source_directory": code,
            "inputs": ["cpu-inputs/"], "mini_batch_size": "5", "arguments": ["--mode", "none"],
            "error_threshold": 0, "process_count_per_node": 2}
    with LocalCluster(settings, nodes=1, log_dir=tmp_path / "logs",
                      env=hostcpu.cluster_env(folder)) as cluster:
        before = hostcpu.snapshot(cluster, folder, None)
        job = jobs.submit(storage, ledger, spec)
        deadline = time.monotonic() + 180
        while not JobState(ledger.get_job(job.job_id).state).terminal:
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.1)
        after = hostcpu.snapshot(cluster, folder, None)
    status = jobs.status(storage, ledger, job.job_id)
    assert status["state"] == "succeeded" and output_rows(storage, status) == names
    per = hostcpu.per_item(before, after, items=len(names), batches=status["mini_batches"]["total"])
    assert per["worker"]["cpu_s"] > 0            # our functions ran in the host process
    assert per["scoring"]["cpu_s"] > 0           # and its scoring processes ran run()
    stages = hostcpu.breakdown(before, after)["emulation"]
    # the host's own job: it received the 8 messages and deleted them
    assert stages["queue: receive"] > 0 and stages["queue: delete or release"] > 0
    node = after["nodes"]["node0"]
    assert node["process_s"] >= sum(node["emulation_s"].values())
    assert "fn-score_batch" in node["threads_s"]
