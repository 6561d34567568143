"""Refused submissions, the blob-upload path and cancellation, through the local host on Azurite.

A refused job names every bad field and leaves nothing behind: no queue message, no ledger row,
no index row. A spec uploaded to the requests container gets a receipt (its job id or its errors).
A cancelled job drops its unrun mini-batches and keeps the rows of the finished ones, in order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shared.local.host import LocalHost
from shared.service.ledger.store import Ledger
from shared.settings import Settings
from shared.states import BatchState
from shared.storage import Storage

from .conftest import output_rows, put_files, register_text_model

MISSING_SNAPSHOT = "snapshot:" + "0" * 64


def valid_spec(code: str, **fields: Any) -> dict[str, Any]:
    """A spec that is accepted as is, with ``fields`` replaced (its input is put by ``inputs``)."""
    return {"name": "refusals", "entry_script": "frames.py", "source_directory": code,
            "inputs": ["inputs/"], "mini_batch_size": "2", **fields}


@pytest.fixture
def inputs(storage: Storage) -> dict[str, bytes]:
    files = {f"f{i}.txt": b"x" * (i + 1) for i in range(3)}
    put_files(storage, "inputs", files)
    return files


def refused(response: httpx.Response) -> dict[str, str]:
    """The 422 answer's errors as field -> message (one entry per field)."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid job spec"
    fields = [e["field"] for e in body["errors"]]
    assert len(fields) == len(set(fields)), body
    return {e["field"]: e["message"] for e in body["errors"]}


def assert_nothing_accepted(host: LocalHost, storage: Storage, api: httpx.Client) -> None:
    """No job exists anywhere: queues (and their poison queues), ledger, index, job list."""
    host.drain()   # anything that had been enqueued would run now
    settings = storage.settings
    for name in settings.queues:
        for queue_name in (name, name + settings.poison_suffix):
            queue = storage.queue(queue_name)
            assert queue.get_queue_properties().approximate_message_count == 0, queue_name
            assert list(queue.peek_messages(max_messages=32)) == [], queue_name
    ran = {n: host.stats[n].invocations for n in ("plan", "score_batch", "finalize") if n in host.stats}
    assert ran == {}, "no queue-triggered function ran"
    assert list(storage.table(settings.ledger_table).list_entities()) == []
    assert list(storage.table(settings.index_table).list_entities()) == []
    assert api.get("/api/jobs").json() == {"jobs": []}


# -- invalid specs ---------------------------------------------------------------------------------
@pytest.mark.scores_nothing
def test_every_invalid_field_is_named_and_nothing_is_enqueued(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str,
        inputs: dict[str, bytes]) -> None:
    errors = refused(api.post("/api/jobs", json=valid_spec(
        code, mini_batch_size="abc", name="Bad_Name", run_max_try=0)))
    assert set(errors) == {"mini_batch_size", "name", "run_max_try"}
    assert "'abc'" in errors["mini_batch_size"]
    assert "Bad_Name" in errors["name"]
    assert "1" in errors["run_max_try"]
    assert_nothing_accepted(host, storage, api)


@pytest.mark.scores_nothing
def test_a_yaml_body_is_validated_the_same_way(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str,
        inputs: dict[str, bytes]) -> None:
    body = yaml.safe_dump(valid_spec(code, mini_batch_size="abc", name="Bad_Name", run_max_try=0))
    errors = refused(api.post("/api/jobs", content=body,
                              headers={"content-type": "application/yaml"}))
    assert set(errors) == {"mini_batch_size", "name", "run_max_try"}
    assert_nothing_accepted(host, storage, api)


@pytest.mark.scores_nothing
def test_a_body_that_is_not_json_names_the_body(
        host: LocalHost, api: httpx.Client, storage: Storage) -> None:
    errors = refused(api.post("/api/jobs", content=b"{not json",
                              headers={"content-type": "application/json"}))
    assert list(errors) == ["(body)"]
    assert "not valid JSON or YAML" in errors["(body)"]
    assert_nothing_accepted(host, storage, api)


@pytest.mark.scores_nothing
def test_a_field_not_supported_yet_is_refused_not_ignored(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str,
        inputs: dict[str, bytes]) -> None:
    errors = refused(api.post("/api/jobs", json=valid_spec(code, compute_target="cpu-cluster")))
    assert list(errors) == ["compute_target"]
    assert "not supported" in errors["compute_target"]
    assert_nothing_accepted(host, storage, api)


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"source_directory": MISSING_SNAPSHOT}, "source_directory", f"code snapshot {'0' * 64} does not exist"),
    ({"source_directory": "./scripts"}, "source_directory", "must be a code snapshot reference"),
    ({"entry_script": "nope.py"}, "entry_script", "nope.py is not in source_directory"),
    ({"models": ["ghost"]}, "models.0", "model 'ghost' is not registered"),
    ({"models": ["echo:2"]}, "models.0", "model 'echo' has no version 2"),
    ({"inputs": ["inputs/", "nosuchcontainer/data/"]}, "inputs.1.container",
     "container 'nosuchcontainer' does not exist"),
], ids=["unknown-snapshot", "local-folder", "entry-script", "unregistered-model",
        "unknown-model-version", "missing-container"])
@pytest.mark.scores_nothing
def test_missing_references_are_refused_naming_the_field(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, inputs: dict[str, bytes],
        tmp_path: Path, change: dict[str, Any], field: str, words: str) -> None:
    register_text_model(storage, tmp_path, "echo", "v1")
    errors = refused(api.post("/api/jobs", json=valid_spec(code, **change)))
    assert list(errors) == [field]
    assert words in errors[field]
    assert_nothing_accepted(host, storage, api)


@pytest.mark.scores_nothing
def test_unknown_jobs_are_404(host: LocalHost, api: httpx.Client) -> None:
    job_id = "nosuch-20250101-000000-abcdef"
    answers = {"status": api.get(f"/api/jobs/{job_id}"),
               "cancel": api.post(f"/api/jobs/{job_id}/cancel"),
               "results": api.get(f"/api/jobs/{job_id}/results"),
               "resubmit": api.post(f"/api/jobs/{job_id}/resubmit", json={"mini_batch_size": "1"})}
    assert {k: r.status_code for k, r in answers.items()} == dict.fromkeys(answers, 404)
    for r in answers.values():
        assert r.json()["error"].startswith(f"no such job: {job_id}")


# -- the blob-upload path --------------------------------------------------------------------------
def receipt(storage: Storage, blob_name: str) -> dict[str, Any]:
    data = storage.system.download_blob(f"request-receipts/{blob_name}.json").readall()
    return json.loads(data)


def test_an_uploaded_spec_runs_and_its_receipt_names_the_job(
        host: LocalHost, api: httpx.Client, storage: Storage, settings: Settings, code: str,
        inputs: dict[str, bytes]) -> None:
    spec = valid_spec(code, name="uploaded")
    storage.container(settings.requests_container).upload_blob("job1.json", json.dumps(spec))
    host.drain()
    note = receipt(storage, "job1.json")
    assert note["request"].endswith("job1.json") and "error" not in note, note
    status = api.get(f"/api/jobs/{note['job_id']}").json()
    assert status["state"] == "succeeded", status
    assert status["name"] == "uploaded"
    assert status["mini_batches"]["total"] == 2
    assert status["items"] == {"total": 3, "succeeded": 3, "failed": 0}
    assert output_rows(storage, status) == [f"f{i}.txt {i + 1}" for i in range(3)]
    assert [j["job_id"] for j in api.get("/api/jobs").json()["jobs"]] == [note["job_id"]]


@pytest.mark.scores_nothing
def test_an_uploaded_invalid_spec_gets_a_receipt_with_the_errors_and_no_job(
        host: LocalHost, api: httpx.Client, storage: Storage, settings: Settings, code: str,
        inputs: dict[str, bytes]) -> None:
    spec = valid_spec(code, mini_batch_size="abc", name="Bad_Name", run_max_try=0)
    storage.container(settings.requests_container).upload_blob("bad.yaml", yaml.safe_dump(spec))
    host.drain()
    note = receipt(storage, "bad.yaml")
    assert note["error"] == "invalid job spec"
    assert "job_id" not in note
    assert {e["field"] for e in note["errors"]} == {"mini_batch_size", "name", "run_max_try"}
    assert host.stats["submit_from_blob"].successes == 1   # refused, not retried
    assert_nothing_accepted(host, storage, api)


# -- cancellation ----------------------------------------------------------------------------------
N_FILES = 40   # mini_batch_size 1: 40 mini-batches of 0.5 s each, far longer than a cancel takes


def slow_job(storage: Storage, code: str, **fields: Any) -> dict[str, Any]:
    put_files(storage, "slowin", {f"s{i:02d}.txt": b"x" for i in range(N_FILES)})
    return {"name": "slow", "entry_script": "slow.py", "source_directory": code,
            "inputs": ["slowin/"], "mini_batch_size": "1", "process_count_per_node": 1, **fields}


def succeeded_batch_rows(storage: Storage, job_id: str) -> list[str]:
    """The rows the ledger's succeeded mini-batches produce (slow.py: the file name), in input order."""
    return [name for batch in Ledger(storage.ledger).batches(job_id)
            if batch.state == BatchState.SUCCEEDED for _, name in batch.items]


@pytest.mark.stops_jobs
def test_cancel_right_after_submit_drops_the_unrun_mini_batches(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    r = api.post("/api/jobs", json=slow_job(storage, code))
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    cancel = api.post(f"/api/jobs/{job_id}/cancel")
    assert cancel.status_code == 202, cancel.text
    assert cancel.json()["job_id"] == job_id and "cancelled" in cancel.json()["reason"]
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "cancelled", status
    assert "cancelled" in status["reason"]
    mb = status["mini_batches"]
    assert mb["total"] in (0, N_FILES)   # 0 if the job was finalized before it was planned
    assert mb["succeeded"] + mb["failed"] < N_FILES
    rows = output_rows(storage, status)
    assert rows == succeeded_batch_rows(storage, job_id)
    assert status["rows"] == len(rows)
    again = api.post(f"/api/jobs/{job_id}/cancel")
    assert again.status_code == 202 and again.json()["state"] == "cancelled"


@pytest.mark.stops_jobs
def test_cancel_while_a_mini_batch_runs_keeps_exactly_the_rows_of_the_finished_ones(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    spec = slow_job(storage, code, environment_variables={
        "CANCEL_API": host.http_url, "CANCEL_AT": "2", "AFTER_CANCEL_SECONDS": "1.0"})
    r = api.post("/api/jobs", json=spec)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "cancelled", status
    assert status["reason"] == "cancelled by user"
    mb = status["mini_batches"]
    assert mb["total"] == N_FILES
    assert 2 <= mb["succeeded"] + mb["failed"] < N_FILES
    rows = output_rows(storage, status)
    expected = succeeded_batch_rows(storage, job_id)
    assert len(expected) == mb["succeeded"] == status["items"]["succeeded"]
    assert rows == expected
    assert rows == sorted(rows) and rows[:2] == ["s00.txt", "s01.txt"]
    assert status["rows"] == len(rows)
