"""Storage may lose a staged block before the output is committed (an emulator killed hard loses
its last acknowledged writes). The finalizer then runs the mini-batches whose rows were lost again
and commits: the job ends with one row per input, in order, exact counts, no try consumed."""

from __future__ import annotations

import dataclasses
import time

import pytest
from azure.storage.blob import BlobBlock

from shared.local.azurite import Azurite
from shared.local.faultproxy import FaultyProxy
from shared.local.host import LocalHost, load_app
from shared.service.finalizing import finalizer
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import snapshots
from shared.service.working.jobcontext import output_target
from shared.settings import Settings, azurite_connection_string
from shared.states import BatchState, JobState
from shared.storage import Storage
from tests.rows import job_row

from .conftest import SCRIPTS, put_files
from .test_host_faults import assert_exact, spec


def _wait(predicate, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def lose_block(storage: Storage, ledger: Ledger, job_id: str, index: int) -> str:
    """Discard mini-batch ``index``'s winning block, as storage losing it would: a Put Block List
    on its staging blob that names every other staged block."""
    job = ledger.get_job(job_id)
    target = output_target(storage.settings, job)
    victim = ledger.get_batch(job_id, index)
    assert victim is not None and victim.state == BatchState.SUCCEEDED and victim.block_id
    blob = target.staging_blob(storage, target.shard_of(index))
    committed, uncommitted = blob.get_block_list("all")
    blob.commit_block_list([BlobBlock(b.id) for b in committed + uncommitted if b.id != victim.block_id])
    return victim.block_id


def run_losing(azurite: Azurite, settings: Settings, storage: Storage, container: str,
               n: int, victims: list[int], rounds_done: int = 0, **extra) -> tuple[str, list[str]]:
    """A job over ``n`` files whose victims' staged rows are lost while its output commit waits."""
    names = [f"{container[0]}{i:03d}.txt" for i in range(n)]
    put_files(storage, container, dict.fromkeys(names, b"x"))
    code = snapshots.upload(storage, SCRIPTS)
    ledger = Ledger(storage.ledger)
    blob, queue, table = azurite.ports
    with FaultyProxy(blob) as proxy:
        proxy.hold(lambda method, path: "comp=blocklist" in path)
        through = dataclasses.replace(settings, connection_string=azurite_connection_string(
            proxy.port, queue, table))
        with LocalHost(load_app(), through, lease_s=5) as host:
            job = jobs.submit(storage, ledger, spec(code, container, **extra))
            _wait(lambda: proxy.counts["held"] >= 1, "the output commit")
            assert ledger.get_job(job.job_id).state == JobState.FINALIZING
            for index in victims:
                lose_block(storage, ledger, job.job_id, index)
            if rounds_done:      # as if storage had lost blocks in earlier rounds too
                ledger.update_job(ledger.get_job(job.job_id), repairs=rounds_done)
            proxy.release()      # the held commit is dropped; its retry finds a block missing
            host.drain(timeout_s=90)
    return job.job_id, names


def test_a_lost_staged_block_is_run_again_and_the_output_is_complete(
        azurite: Azurite, settings: Settings, storage: Storage) -> None:
    job_id, names = run_losing(azurite, settings, storage, "lostblock", 30, victims=[2, 5])
    ledger = Ledger(storage.ledger)
    status = jobs.status(storage, ledger, job_id)
    assert_exact(status, storage, names)
    assert {b.index: b.reruns for b in ledger.batches(job_id) if b.reruns} == {2: 1, 5: 1}
    assert all(b.tries == 0 for b in ledger.batches(job_id))        # no try consumed
    lost = [e for e in status["errors"] if e["kind"] == "lost"]
    assert lost and lost[0]["count"] == 2 and "runs again" in lost[0]["message"]
    assert ledger.get_job(job_id).repairs == 1


@pytest.mark.stops_jobs
def test_repair_rounds_are_bounded_then_the_job_fails_with_the_reason(
        azurite: Azurite, settings: Settings, storage: Storage) -> None:
    job_id, _ = run_losing(azurite, settings, storage, "lostagain", 10, victims=[1],
                           rounds_done=finalizer.MAX_REPAIRS)
    status = jobs.status(storage, Ledger(storage.ledger), job_id)
    assert status["state"] == "failed", status
    assert "storage lost the staged rows of mini-batch(es) [1]" in status["reason"]
    assert "resubmit" in status["reason"]
    assert status["mini_batches"]["succeeded"] == 1 and status["rows"] == 5   # mini-batch 0's
    assert status["output"]["partial"] is True


def test_a_job_running_longer_than_the_block_age_commits_its_rows_in_time(
        settings: Settings, storage: Storage) -> None:
    """Storage collects uncommitted blocks ~7 days after upload; ``block_max_age_s`` (seconds
    here) makes a running job commit what it staged before that. Blocks older than twice the age
    that are still uncommitted are expired, as storage would; none may be lost."""
    age = 1.5
    names = [f"a{i:03d}.txt" for i in range(120)]
    put_files(storage, "agedblocks", dict.fromkeys(names, b"x"))
    code = snapshots.upload(storage, SCRIPTS)
    ledger = Ledger(storage.ledger)
    aged = dataclasses.replace(settings, block_max_age_s=age)
    with LocalHost(load_app(), aged, lease_s=5) as host:
        job = jobs.submit(storage, ledger, spec(code, "agedblocks", arguments=[
            "--mode", "slow", "--delay", "0.4"]))

        def settled_before(cutoff: float) -> set[str]:
            return {b.block_id for b in ledger.batches(job.job_id)
                    if b.state == BatchState.SUCCEEDED and b.ended_at < cutoff}

        _wait(lambda: settled_before(time.time() - 2 * age - 0.5), "a mini-batch older than 2 ages")
        old = settled_before(time.time() - 2 * age)
        assert ledger.get_job(job.job_id).state == JobState.RUNNING, "the job ended too soon"
        target = output_target(storage.settings, ledger.get_job(job.job_id))
        blob = target.staging_blob(storage, 0)
        try:
            committed, uncommitted = blob.get_block_list("all")
        except Exception:            # noqa: BLE001 - no block staged yet
            committed, uncommitted = [], []
        expired = [b.id for b in uncommitted if b.id in old]
        if expired:
            blob.commit_block_list([BlobBlock(b.id) for b in committed + uncommitted
                                    if b.id not in expired])
        host.drain(timeout_s=90)
    assert not expired, f"{len(expired)} of {len(old)} old staged blocks were still uncommitted"
    done = ledger.get_job(job.job_id)
    assert done.checkpoint_at > 0
    assert_exact(jobs.status(storage, ledger, job.job_id), storage, names)



def test_storage_killed_hard_mid_job_loses_its_last_writes_and_the_job_still_completes(
        tmp_path, settings: Settings) -> None:
    """Azurite with its data on disk is SIGKILLed mid-job and started again: it has lost its last
    seconds of acknowledged writes (staged blocks, ledger commits, queue deletes, log appends, in
    any combination). The finalizer's repair, the sweep's re-drive of a job that stopped moving
    and the log shipper's rewrite of a lost blob bring it to one row per input, in order."""
    from shared.local.azurite import free_port

    ports = (free_port(), free_port(), free_port())
    folder = tmp_path / "azurite"
    server = Azurite(*ports, location=folder).start()
    try:
        crashed = dataclasses.replace(settings, connection_string=server.connection_string,
                                      sweep_schedule="* * * * * *", sweep_grace_s=2.0)
        storage = Storage(crashed)
        storage.ensure()
        names = [f"h{i:03d}.txt" for i in range(60)]
        put_files(storage, "crashed", dict.fromkeys(names, b"x"))
        code = snapshots.upload(storage, SCRIPTS)
        time.sleep(6)        # Azurite saves every ~5 s: the inputs and the code are on disk
        ledger = Ledger(storage.ledger)
        with LocalHost(load_app(), crashed, lease_s=3) as host:
            job = jobs.submit(storage, ledger, spec(code, "crashed", run_max_try=5, arguments=[
                "--mode", "slow", "--delay", "1.0"]))
            # past Azurite's first save after the submission (a crash before it would lose the job
            # row itself, which durable storage never does), and with part of the job done
            submitted = time.monotonic()
            _wait(lambda: time.monotonic() - submitted > 7 and jobs.status(
                storage, ledger, job.job_id)["items"]["succeeded"] >= 10, "part of the job", 90)
            server.process.kill()             # SIGKILL: nothing of the last seconds is saved
            server.process.wait()
            server.process = None
            time.sleep(1)
            server = Azurite(*ports, location=folder).start()
            _wait(lambda: JobState(ledger.get_job(job.job_id).state).terminal, "the job to end", 150)
            host.drain(timeout_s=60)
        assert_exact(jobs.status(storage, ledger, job.job_id), storage, names)
    finally:
        server.stop()


def test_a_counter_shard_that_storage_lost_is_written_again(storage: Storage) -> None:
    """A worker keeps its counter shards' ETags; storage restarted without its last writes has
    lost the shard itself. The commit must not fail forever on 'not found' (every delivery of the
    mini-batch then failed until it was poisoned): it reloads the shard and commits again."""
    from dataclasses import replace

    from shared.service.ledger.rows import BatchRow, Totals

    ledger = Ledger(storage.ledger)
    ledger._shards = ledger._shards[:1]   # one shard, so that both commits go to it
    ledger.create_job(job_row("lostshard", created_at=time.time()))
    ledger.put_batches([BatchRow("lostshard", i, [[0, f"f{i}"]]) for i in range(2)])
    for i in range(2):
        row = ledger.get_batch("lostshard", i)
        done = replace(row, state=BatchState.SUCCEEDED, ok=1)
        if i == 1:   # every shard this process wrote is gone
            for e in storage.ledger.query_entities("PartitionKey eq 'lostshard' and RowKey ge 'c-' "
                                                   "and RowKey lt 'c.'"):
                storage.ledger.delete_entity("lostshard", e["RowKey"])
            assert ledger.commit(done, Totals(batches_succeeded=1)) is False   # lost, reloaded
        assert ledger.commit(done, Totals(batches_succeeded=1))
    assert ledger.totals("lostshard").batches_succeeded == 1   # storage lost batch 0's count


def test_a_second_finalizer_during_a_repair_finishes_that_round_instead_of_starting_another(
        azurite: Azurite, settings: Settings, storage: Storage, monkeypatch) -> None:
    """A duplicate finalize message lands while the repairer has recorded its round but not yet
    moved its mini-batches back: the counters still look complete. It must finish that round
    (move them back, enqueue them), not commit and find the same blocks lost again."""
    unsettle = Ledger.unsettle
    raced: list[str] = []

    def racing_unsettle(self: Ledger, batch, note):
        if not raced:
            raced.append("")   # once: the second finalizer's own unsettles go straight through
            raced[0] = finalizer.finalize(storage, Ledger(storage.ledger),
                                          finalizer.FinalizeMessage(batch.job_id))
        return unsettle(self, batch, note)

    monkeypatch.setattr(Ledger, "unsettle", racing_unsettle)
    job_id, names = run_losing(azurite, settings, storage, "lostrace", 30, victims=[4])
    ledger = Ledger(storage.ledger)
    assert raced and raced[0].startswith("repairing"), raced
    assert_exact(jobs.status(storage, ledger, job_id), storage, names)
    assert ledger.get_job(job_id).repairs == 1
