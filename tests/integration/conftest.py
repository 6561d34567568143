"""Fixtures for end-to-end tests: an in-process local host (same function code as Azure) with its
HTTP API, a client for it, and helpers to put inputs, models and code in this test's storage."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.local.azurite import free_port
from shared.local.host import LocalHost, load_app
from shared.service.working import models, snapshots
from shared.settings import Settings
from shared.storage import Storage

SCRIPTS = Path(__file__).parent / "scripts"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ROOT_HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"


@pytest.fixture
def host(settings: Settings, storage: Storage) -> Iterator[LocalHost]:
    with LocalHost(load_app(), settings, http_port=free_port(), lease_s=10) as h:
        yield h


@pytest.fixture
def idle_host(settings: Settings, storage: Storage) -> Iterator[LocalHost]:
    """A local host that consumes nothing until the test drains it (jobs are then submitted with
    ``shared.service.jobs.lifecycle.submit``, and storage can be changed between submit and run)."""
    h = LocalHost(load_app(), settings, http_port=free_port(), lease_s=10)
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def api(host: LocalHost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host.http_url, timeout=30) as client:
        yield client


@pytest.fixture
def code(storage: Storage) -> str:
    """The test scripts folder as a code snapshot reference."""
    return snapshots.upload(storage, SCRIPTS)


_owners: dict[str, str] = {}


@pytest.fixture
def mnist_code(storage: Storage) -> str:
    """The MNIST example's entry script as a snapshot, with its model registered as "mnist"."""
    models.register(storage, "mnist", EXAMPLES / "mnist" / "model" / "mnist.onnx")
    return snapshots.upload(storage, EXAMPLES / "mnist" / "code")


def put_files(storage: Storage, container: str, names_and_bodies: dict[str, bytes]) -> None:
    """Upload test inputs. Input containers are not namespaced, so each test module must use its
    own: modules share one Azurite per process, and a shared container would mix their inputs."""
    module = os.environ.get("PYTEST_CURRENT_TEST", "").split("::", 1)[0]
    owner = _owners.setdefault(container, module)
    assert owner == module, f"container {container!r} is already used by {owner}; pick another name"
    client = storage.ensure_container(container)
    for name, body in names_and_bodies.items():
        client.upload_blob(name, body, overwrite=True)


def register_text_model(storage: Storage, tmp_path: Path, name: str, text: str) -> int:
    path = tmp_path / f"{name}.txt"
    path.write_text(text)
    return models.register(storage, name, path).version


def submit(api: httpx.Client, spec: dict[str, Any]) -> str:
    """POST a job spec; returns the job id of the 202 answer."""
    r = api.post("/api/jobs", json=spec)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status_url"].endswith(f"/api/jobs/{body['job_id']}")
    return body["job_id"]


def output_rows(storage: Storage, status: dict[str, Any]) -> list[str]:
    out = status["output"]
    return storage.container(out["container"]).download_blob(out["blob"]).readall().decode().splitlines()


def wait_for(what: str, check: Any, timeout_s: float = 30.0, poll_s: float = 0.05) -> Any:
    """``check()``'s first truthy value, polled until ``timeout_s`` (then the test fails naming
    ``what``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)
