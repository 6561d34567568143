"""A job whose code snapshot or pinned model cannot be used fails promptly with the reason, and a
poison handler that cannot build its job's context still records the mini-batch: nothing hangs and
nothing ends in a poison queue of a poison queue."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.local.host import LocalHost
from shared.messages import BatchMessage, PlanMessage
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.planning import planner
from shared.service.working import snapshots
from shared.service.working.worker import Worker
from shared.storage import Storage

from .conftest import put_files, register_text_model

# jobs that cannot run: no context, no scoring process
pytestmark = [pytest.mark.scores_nothing, pytest.mark.stops_jobs]


def spec(code: str, container: str, **extra) -> dict:
    return {"name": "unrunnable", "entry_script": "misbehave.py", "source_directory": code,
            "inputs": [f"{container}/"], "mini_batch_size": "1", "arguments": ["--mode", "none"],
            "process_count_per_node": 1, **extra}


def poison_poison_messages(storage: Storage) -> int:
    """Messages in every queue of failed poison handling (``<queue>-poison-poison``)."""
    s = storage.settings
    count = 0
    for name in (s.batch_queue, s.plan_queue, s.finalize_queue):
        client = storage.queue_service.get_queue_client(name + s.poison_suffix + s.poison_suffix)
        try:
            count += len(client.peek_messages(max_messages=32))
        except ResourceNotFoundError:
            pass
    return count


def snapshot_blob(code: str) -> str:
    return f"snapshots/{snapshots.sha_of(code)}.zip"


@pytest.mark.parametrize("damage", ["not a zip", "deleted"])
def test_a_snapshot_that_cannot_be_extracted_fails_the_job_with_the_reason(
        idle_host: LocalHost, storage: Storage, code: str, damage: str) -> None:
    put_files(storage, f"snap-{damage.replace(' ', '')}", {f"{i}.txt": b"x" for i in range(3)})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code, f"snap-{damage.replace(' ', '')}"))
    if damage == "deleted":
        storage.system.delete_blob(snapshot_blob(code))
    else:
        storage.system.upload_blob(snapshot_blob(code), b"these bytes are not a zip", overwrite=True)
    idle_host.drain(timeout_s=60)
    status = jobs.status(storage, ledger, job.job_id)
    assert status["state"] == "failed", status
    assert f"code snapshot {code} cannot be used" in status["reason"]
    assert ("does not match its content hash" if damage == "not a zip" else "does not exist") in status["reason"]
    kinds = {e["kind"] for e in status["errors"]}
    assert kinds == {"job"} and code in status["errors"][0]["message"]
    assert status["mini_batches"]["succeeded"] == 0
    assert poison_poison_messages(storage) == 0


@pytest.mark.parametrize("deleted", ["registry row and files", "files"])
def test_a_model_deleted_after_submit_fails_the_job_naming_the_model(
        idle_host: LocalHost, storage: Storage, code: str, tmp_path: Path, deleted: str) -> None:
    container = "model-gone-" + deleted.split()[0]
    put_files(storage, container, {f"{i}.txt": b"x" for i in range(3)})
    version = register_text_model(storage, tmp_path, "gone", "weights")
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code, container, models=["gone"]))
    assert job.models == {"gone": version}
    if deleted != "files":
        storage.table(storage.settings.models_table).delete_entity("gone", f"{version:06d}")
    for blob in storage.system.list_blobs(name_starts_with=f"models/gone/{version}/"):
        storage.system.delete_blob(blob.name)
    idle_host.drain(timeout_s=60)
    status = jobs.status(storage, ledger, job.job_id)
    assert status["state"] == "failed", status
    assert f"model gone version {version} cannot be used" in status["reason"]
    assert [e["kind"] for e in status["errors"]] == ["job"]
    assert poison_poison_messages(storage) == 0


def _plan_and_hold(storage: Storage, ledger: Ledger, job_id: str) -> None:
    """Plan the job's first page by hand and drop the mini-batch messages it enqueued."""
    [plan] = storage.queue(storage.settings.plan_queue).receive_messages(max_messages=1)
    planner.plan_step(storage, ledger, PlanMessage.from_json(plan.content))
    storage.queue(storage.settings.plan_queue).delete_message(plan)
    storage.queue(storage.settings.batch_queue).clear_messages()


def test_a_poison_handler_whose_context_cannot_be_built_records_the_failure(
        idle_host: LocalHost, storage: Storage, code: str) -> None:
    put_files(storage, "poison-noctx", {f"{i}.txt": b"x" for i in range(2)})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code, "poison-noctx"))
    _plan_and_hold(storage, ledger, job.job_id)
    storage.system.upload_blob(snapshot_blob(code), b"not a zip", overwrite=True)
    poison = storage.settings.batch_queue + storage.settings.poison_suffix
    storage.queue(poison).send_message(BatchMessage(job.job_id, 0).to_json())
    idle_host.drain(timeout_s=60)
    batch = ledger.get_batch(job.job_id, 0)
    assert batch.state == "failed" and batch.failed == 1
    assert "reached the poison queue" in batch.error
    assert "its job's context could not be built" in batch.error and code in batch.error
    status = jobs.status(storage, ledger, job.job_id)
    assert status["state"] == "failed" and f"code snapshot {code}" in status["reason"]
    assert status["items"]["failed"] == 1
    assert poison_poison_messages(storage) == 0


def test_a_poison_handler_records_the_failure_whatever_breaks_the_context(
        storage: Storage, code: str) -> None:
    """Not only an unrunnable job: any error building the context is the recorded reason, and the
    job goes on (budgets permitting) with the mini-batch counted as failed."""
    put_files(storage, "poison-anyctx", {f"{i}.txt": b"x" for i in range(2)})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code, "poison-anyctx"))
    _plan_and_hold(storage, ledger, job.job_id)
    from shared.service.working.pool import ScoringPool
    pool = ScoringPool(storage.settings)
    try:
        worker = Worker(storage, ledger, pool, "node0")

        def broken(job_id: str, fresh: bool = False):
            raise OSError("scratch disk is full")
        worker.jobs.get = broken
        assert worker.record_poison(BatchMessage(job.job_id, 0), 5) == "failed"
    finally:
        pool.close()
    batch = ledger.get_batch(job.job_id, 0)
    assert batch.state == "failed" and "OSError: scratch disk is full" in batch.error
    assert ledger.totals(job.job_id).items_failed == 1
    assert ledger.get_job(job.job_id).active     # no budget set: the job goes on
