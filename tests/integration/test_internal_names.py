"""A job may not read or write the service's own storage: its requests, system and output
containers, nor names of its queues and tables, whatever the settings call them.

Before, ``output: <output container>/<other job id>`` replaced another job's rows and logs,
``output: <system container>/snapshots`` replaced another job's code, and ``output: <requests
container>/x`` submitted jobs from what a script wrote. Each is refused at submit with 422 naming
the field, and nothing is accepted.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.local.host import LocalHost
from shared.settings import Settings
from shared.storage import Storage

from .conftest import put_files, submit
from .test_submission_errors import assert_nothing_accepted, refused

INTERNAL = {
    "requests": lambda s: s.requests_container,
    "system": lambda s: s.system_container,
    "outputs": lambda s: s.output_container,
    "plan-queue": lambda s: s.plan_queue,
    "batch-poison-queue": lambda s: s.batch_queue + s.poison_suffix,
    "ledger-table": lambda s: s.ledger_table,
    "models-table": lambda s: s.models_table,
    "host-secrets": lambda s: "azure-webjobs-secrets",
}


def spec(code: str, **fields: Any) -> dict[str, Any]:
    return {"name": "internal", "entry_script": "frames.py", "source_directory": code,
            "inputs": ["internalin/"], "mini_batch_size": "2", **fields}


@pytest.fixture
def inputs(storage: Storage) -> None:
    put_files(storage, "internalin", {"a.txt": b"1", "b.txt": b"2"})


@pytest.mark.parametrize("which", list(INTERNAL))
@pytest.mark.scores_nothing
def test_output_naming_an_internal_container_is_refused(
        host: LocalHost, api: httpx.Client, storage: Storage, settings: Settings, code: str,
        inputs: None, which: str) -> None:
    name = INTERNAL[which](settings)
    for output in (f"{name}/x", {"container": name, "path": "snapshots"}):
        errors = refused(api.post("/api/jobs", json=spec(code, output=output)))
        assert list(errors) == ["output"], errors
        assert repr(name) in errors["output"]
    assert_nothing_accepted(host, storage, api)


@pytest.mark.parametrize("which", ["requests", "system", "outputs", "finalize-queue", "index-table"])
@pytest.mark.scores_nothing
def test_inputs_naming_an_internal_container_are_refused(
        host: LocalHost, api: httpx.Client, storage: Storage, settings: Settings, code: str,
        inputs: None, which: str) -> None:
    name = {**INTERNAL, "finalize-queue": lambda s: s.finalize_queue,
            "index-table": lambda s: s.index_table}[which](settings)
    storage.ensure_container(name)     # even when it exists (the three containers always do)
    shapes = [[f"{name}/"], ["internalin/", {"container": name, "prefix": "jobs/"}],
              ["internalin/", "internalin/", {"container": name, "files": ["snapshots/x.zip"]}]]
    for n, inputs_field in enumerate(shapes):
        errors = refused(api.post("/api/jobs", json=spec(code, inputs=inputs_field)))
        assert list(errors) == [f"inputs.{n}.container"], errors
        assert repr(name) in errors[f"inputs.{n}.container"]
    assert_nothing_accepted(host, storage, api)


def test_another_jobs_output_folder_cannot_be_named(
        host: LocalHost, api: httpx.Client, storage: Storage, settings: Settings, code: str,
        inputs: None) -> None:
    first = submit(api, spec(code))
    host.drain()
    assert api.get(f"/api/jobs/{first}").json()["state"] == "succeeded"
    before = {b.name: b.etag for b in storage.container(settings.output_container).list_blobs(
        name_starts_with=f"{first}/")}
    assert before
    errors = refused(api.post("/api/jobs", json=spec(code, output=f"{settings.output_container}/{first}")))
    assert list(errors) == ["output"]
    assert "output container" in errors["output"]
    resubmitted = api.post(f"/api/jobs/{first}/resubmit",
                           json={"output": f"{settings.system_container}/snapshots"})
    assert list(refused(resubmitted)) == ["output"]
    host.drain()
    after = {b.name: b.etag for b in storage.container(settings.output_container).list_blobs(
        name_starts_with=f"{first}/")}
    assert after == before
    assert [j["job_id"] for j in api.get("/api/jobs").json()["jobs"]] == [first]
