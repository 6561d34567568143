"""Limits through the local host on Azurite: every oversized or too deeply nested submission gets a
4xx naming the field or the limit (HTTP API, snapshot uploads and blob-upload requests alike), the
API keeps answering while a submission is being validated, and the opt-in local key closes every
route but health."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.limits import Limits
from shared.local.azurite import free_port
from shared.local.host import LocalHost, load_app
from shared.service.jobs import lifecycle as jobs
from shared.settings import Settings
from shared.storage import Storage

from .conftest import put_files

LIMITS = Limits(max_snapshot_bytes=4 << 20, max_snapshot_members=500,
                max_snapshot_expanded_bytes=8 << 20)
CPU_BOUND_S = 3.0   # generous: process CPU while the request is handled, background threads included


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, limits=LIMITS)


@pytest.fixture
def code(storage: Storage) -> str:
    from shared.service.working import snapshots

    from .conftest import SCRIPTS
    return snapshots.upload(storage, SCRIPTS)


def spec(code: str, **fields: Any) -> dict[str, Any]:
    return {"name": "limits", "entry_script": "frames.py", "source_directory": code,
            "inputs": ["limitsin/"], **fields}


def no_job(api: httpx.Client) -> None:
    assert api.get("/api/jobs").json() == {"jobs": []}


def named(response: httpx.Response) -> str:
    """The answer's text, after asserting it is a 4xx answered within the CPU bound."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    return response.text


def post(api: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
    started = time.process_time()
    response = api.post(path, **kwargs)
    assert time.process_time() - started < CPU_BOUND_S
    return response


# -- submissions over HTTP ---------------------------------------------------------------------
def huge_files(code: str) -> str:
    return json.dumps(spec(code, inputs=[{"container": "limitsin",
                                          "files": [f"f{i}.txt" for i in range(20_000)]}]))


BODIES = {
    "deep-json": (lambda code: "[" * 100_000 + "]" * 100_000, "PARALLELRUN_MAX_SPEC_DEPTH"),
    "deep-yaml": (lambda code: "a:\n" + "- " * 10_000 + "1", "PARALLELRUN_MAX_SPEC_DEPTH"),
    "huge-integer": (lambda code: json.dumps(spec(code, node_count=7)).replace("7", "7" * 50_000),
                     "PARALLELRUN_MAX_INT_DIGITS"),
    "huge-files": (huge_files, "inputs.0.files"),
    "long-description": (lambda code: json.dumps(spec(code, description="d" * 700_000)),
                         "description"),
    "long-argument": (lambda code: json.dumps(spec(code, arguments=["--a", "x" * 100_000])),
                      "arguments.1"),
    "many-fields": (lambda code: json.dumps({**spec(code), **{f"f{i}": 0 for i in range(50_000)}}),
                    "PARALLELRUN_MAX_ITEMS"),
    "large-body": (lambda code: json.dumps(spec(code)) + " " * (2 << 20),
                   "PARALLELRUN_MAX_BODY_BYTES"),
}


@pytest.mark.parametrize("kind", list(BODIES))
@pytest.mark.scores_nothing
def test_an_oversized_submission_is_refused_naming_the_field_or_limit(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, kind: str) -> None:
    put_files(storage, "limitsin", {"a.txt": b"a"})
    make, name = BODIES[kind]
    content_type = "application/yaml" if kind == "deep-yaml" else "application/json"
    response = post(api, "/api/jobs", content=make(code).encode(),
                    headers={"content-type": content_type})
    assert name in named(response)
    no_job(api)


def test_a_resubmission_with_oversized_overrides_is_refused(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "limitsin", {"a.txt": b"a"})
    job_id = api.post("/api/jobs", json=spec(code)).json()["job_id"]
    response = post(api, f"/api/jobs/{job_id}/resubmit", json={"description": "d" * 700_000})
    assert "description" in named(response)


@pytest.mark.scores_nothing
def test_a_body_over_every_route_limit_is_refused_by_the_server(
        host: LocalHost, api: httpx.Client) -> None:
    response = api.post("/api/jobs", content=b" " * (5 << 20))
    assert response.status_code == 413, response.text


def test_the_api_answers_while_a_submission_is_validated(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()
    submit = jobs.submit

    def slow_submit(*args: Any, **kwargs: Any) -> Any:   # stands for a long validation
        entered.set()
        release.wait(30)
        return submit(*args, **kwargs)

    monkeypatch.setattr(jobs, "submit", slow_submit)
    put_files(storage, "limitsin", {"a.txt": b"a"})
    answers: list[int] = []
    poster = threading.Thread(target=lambda: answers.append(
        api.post("/api/jobs", json=spec(code)).status_code))
    poster.start()
    try:
        assert entered.wait(20), "the submission never reached validation"
        with httpx.Client(base_url=host.http_url, timeout=5) as other:
            assert other.get("/api/health").status_code == 200
            assert other.get("/api/jobs").status_code == 200
    finally:
        release.set()
        poster.join(30)
    assert answers == [202]


# -- snapshots ---------------------------------------------------------------------------------
def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return buf.getvalue()


def stored_snapshots(storage: Storage) -> list[str]:
    return [b.name for b in storage.system.list_blobs(name_starts_with="snapshots/")]


@pytest.mark.parametrize("members,name", [
    ({"bomb.bin": bytes(64 << 20)}, "PARALLELRUN_MAX_SNAPSHOT_EXPANDED_BYTES"),
    ({f"m{i}.py": b"" for i in range(1_000)}, "PARALLELRUN_MAX_SNAPSHOT_MEMBERS"),
], ids=["zip-bomb", "too-many-members"])
@pytest.mark.scores_nothing
def test_a_snapshot_over_the_limits_is_refused_and_not_stored(
        host: LocalHost, api: httpx.Client, storage: Storage, members: dict[str, bytes],
        name: str) -> None:
    data = zip_of(members)
    assert len(data) < LIMITS.max_snapshot_bytes
    response = post(api, "/api/snapshots", content=data)
    assert name in named(response)
    assert stored_snapshots(storage) == []


@pytest.mark.scores_nothing
def test_a_snapshot_body_over_its_limit_is_refused(host: LocalHost, api: httpx.Client,
                                                   storage: Storage) -> None:
    response = api.post("/api/snapshots", content=b"z" * (LIMITS.max_snapshot_bytes + 1))
    assert response.status_code == 413 and "PARALLELRUN_MAX_SNAPSHOT_BYTES" in response.text
    assert stored_snapshots(storage) == []


@pytest.mark.scores_nothing
def test_a_snapshot_within_the_limits_is_stored(host: LocalHost, api: httpx.Client,
                                                storage: Storage) -> None:
    response = api.post("/api/snapshots", content=zip_of({"score.py": b"def run(b): return b\n"}))
    assert response.status_code == 201, response.text
    assert len(stored_snapshots(storage)) == 1


# -- blob-upload submissions -------------------------------------------------------------------
def receipt(storage: Storage, blob_name: str) -> dict[str, Any]:
    return json.loads(storage.system.download_blob(f"request-receipts/{blob_name}.json").readall())


@pytest.mark.parametrize("kind", ["deep-json", "huge-integer", "huge-files", "long-description",
                                  "large-body"])
@pytest.mark.scores_nothing
def test_an_oversized_uploaded_request_gets_a_receipt_naming_the_problem(
        host: LocalHost, api: httpx.Client, storage: Storage, settings: Settings, code: str,
        kind: str) -> None:
    put_files(storage, "limitsin", {"a.txt": b"a"})
    make, name = BODIES[kind]
    storage.container(settings.requests_container).upload_blob(f"{kind}.json", make(code))
    host.drain()
    note = receipt(storage, f"{kind}.json")
    assert "job_id" not in note and name in json.dumps(note), note
    no_job(api)


# -- the local key -----------------------------------------------------------------------------
@pytest.fixture
def keyed(settings: Settings, storage: Storage) -> Iterator[LocalHost]:
    with LocalHost(load_app(), dataclasses.replace(settings, local_key="k-123"),
                   http_port=free_port(), lease_s=10) as h:
        yield h


@pytest.mark.scores_nothing
def test_with_a_local_key_every_route_but_health_needs_it(keyed: LocalHost) -> None:
    with httpx.Client(base_url=keyed.http_url, timeout=30) as anonymous:
        assert anonymous.get("/api/health").status_code == 200
        for method, path in (("GET", "/api/jobs"), ("GET", "/api/jobs/x-1"),
                             ("POST", "/api/jobs"), ("POST", "/api/snapshots"),
                             ("POST", "/api/jobs/x-1/cancel"), ("GET", "/api/docs")):
            response = anonymous.request(method, path, content=b"{}")
            assert response.status_code == 401, (method, path, response.text)
            assert "x-functions-key" in response.text
        assert anonymous.get("/api/jobs", headers={"x-functions-key": "wrong"}).status_code == 401
        assert anonymous.get("/api/jobs", headers={"x-functions-key": "k-123"}).status_code == 200
        assert anonymous.get("/api/jobs", params={"code": "k-123"}).status_code == 200


@pytest.mark.parametrize("path,name", [("/api/jobs?limit=100000000", "limit"),
                                       ("/api/jobs/x-1/results?head=100000000", "head")])
@pytest.mark.scores_nothing
def test_a_query_parameter_out_of_range_is_refused_naming_it(
        host: LocalHost, api: httpx.Client, path: str, name: str) -> None:
    response = api.get(path)
    assert response.status_code == 422 and name in response.text, response.text
