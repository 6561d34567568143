"""A job is never left half-way: a node killed while it finalizes, and a cancel of a job whose
finalizer died, both end with the job finished and every row exactly once."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from shared.local.azurite import Azurite
from shared.local.cluster import LocalCluster
from shared.local.faultproxy import FaultyProxy
from shared.local.host import LocalHost, load_app
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import snapshots
from shared.settings import Settings, azurite_connection_string
from shared.states import JobState
from shared.storage import Storage

from .conftest import SCRIPTS, put_files
from .test_host_faults import assert_exact, spec


def _wait(predicate, what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.timeout(240)
def test_a_node_killed_while_it_finalizes_leaves_a_finished_job(
        azurite: Azurite, settings: Settings, storage: Storage, tmp_path: Path) -> None:
    names = [f"f{i:03d}.txt" for i in range(20)]
    put_files(storage, "finalizing", dict.fromkeys(names, b"x"))
    code = snapshots.upload(storage, SCRIPTS)
    ledger = Ledger(storage.ledger)
    blob, queue, table = azurite.ports
    with FaultyProxy(blob) as proxy:
        proxy.hold(lambda method, path: "comp=blocklist" in path)   # the output commit
        through = dataclasses.replace(settings, connection_string=azurite_connection_string(
            proxy.port, queue, table))
        with LocalCluster(through, nodes=1, log_dir=tmp_path / "logs",
                          env={"PARALLELRUN_LOCAL_LEASE_S": "3"}) as cluster:
            job = jobs.submit(storage, ledger, spec(code, "finalizing"))
            _wait(lambda: proxy.counts["held"] >= 1, "the finalizing node's output commit")
            assert ledger.get_job(job.job_id).state == JobState.FINALIZING
            cluster.kill(0)
            proxy.release()          # the dead node's commit never reaches storage
            cluster.restart(0)
            _wait(lambda: JobState(ledger.get_job(job.job_id).state).terminal, "the job to finish", 45)
            cluster.drain(timeout_s=60)
    assert_exact(jobs.status(storage, ledger, job.job_id), storage, names)


@pytest.mark.stops_jobs
def test_cancel_of_a_job_left_finalizing_finishes_it(settings: Settings, storage: Storage) -> None:
    names = [f"c{i:03d}.txt" for i in range(10)]
    put_files(storage, "leftfinalizing", dict.fromkeys(names, b"x"))
    code = snapshots.upload(storage, SCRIPTS)
    ledger = Ledger(storage.ledger)
    with LocalHost(load_app(), settings, lease_s=5) as host:
        job = jobs.submit(storage, ledger, spec(code, "leftfinalizing"))
        host.drain(timeout_s=60)
        done = ledger.get_job(job.job_id)
        assert done.state == JobState.SUCCEEDED
        # what a finalizer that died after marking the job leaves behind: every mini-batch
        # settled and staged, the job finalizing
        ledger.update_job(done, state=JobState.FINALIZING, ended_at=0.0)
        answer = jobs.cancel(storage, ledger, job.job_id)
        assert answer.state == JobState.FINALIZING
        host.drain(timeout_s=60)
    assert_exact(jobs.status(storage, ledger, job.job_id), storage, names)
