"""The OpenAPI document against the running API, through the local host on Azurite.

Schemathesis reads ``/api/openapi.json`` from a live host and sends every operation a bounded,
deterministic set of generated requests: every status code it gets must be documented, and every
body must match its documented schema. The operations are the document's own, so a route added
later is exercised without a change here. Then each documented error is driven on purpose (404,
422, 413, 409 with its owner, 400, 401, 503 and, with jobs that run, 410) and its body checked
against the document, as are the success answers of every route. Generated submissions never
run: that host serves HTTP only and consumes no queue.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.limits import Limits
from shared.local.azurite import free_port
from shared.local.host import LocalHost, load_app
from shared.local.http import HttpServer
from shared.service import api as service_api
from shared.settings import Settings
from shared.storage import Storage

from .conftest import put_files

KEY = "k-openapi-test"
AUTH = {"x-functions-key": KEY}
LIMITS = Limits(max_body_bytes=64 << 10)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 60
# a snapshot is sent as the bytes schemathesis generates for it
schemathesis.serializer.alias("application/zip", "application/octet-stream")
OPERATIONS = sorted((method.upper(), path) for path, item in service_api.app.openapi()["paths"].items()
                    for method in item)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, limits=LIMITS, local_key=KEY)


def serve(settings: Settings) -> Iterator[str]:
    """The app's HTTP functions on 127.0.0.1 (the local key required); no queue is consumed, so
    nothing submitted here runs."""
    node = LocalHost(load_app(), settings, lease_s=10)
    server = HttpServer(node.asgi_app, free_port())
    try:
        server.start()
        yield server.url
    finally:
        server.stop()
        node.stop()


@pytest.fixture
def served(settings: Settings, storage: Storage) -> Iterator[str]:
    yield from serve(settings)


@pytest.fixture
def client(served: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served, headers=AUTH, timeout=30) as c:
        yield c


@pytest.fixture
def described(served: str) -> Any:
    """The live document, as schemathesis loads it (which validates it against OpenAPI 3.1)."""
    return schemathesis.openapi.from_url(f"{served}/api/openapi.json", headers=AUTH)


def conforms(described: Any, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
    """The answer's body, after checking its status is documented for the operation and its body
    matches that answer's schema."""
    operation = described[path][method]
    documented = operation.definition.raw["responses"]
    assert str(response.status_code) in documented, (method, path, response.status_code, response.text)
    operation.validate_response(response)
    return response.json()


# -- generated requests ------------------------------------------------------------------------
@pytest.mark.scores_nothing
@pytest.mark.parametrize("method,path", OPERATIONS)
def test_every_answer_to_generated_requests_is_documented(described: Any, served: str, method: str,
                                                          path: str) -> None:
    operation = described[path][method]

    @given(case=st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                          operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)))
    @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None,
                         database=None, phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))
    def answers(case: Any) -> None:
        case.call_and_validate(base_url=served, headers=AUTH, checks=CHECKS, timeout=30)

    answers()


# -- each documented error, on purpose ---------------------------------------------------------
def valid_spec(code: str, **fields: Any) -> dict[str, Any]:
    return {"name": "documented", "entry_script": "frames.py", "source_directory": code,
            "inputs": ["openapiin/"], "mini_batch_size": "2", **fields}


@pytest.fixture
def inputs(storage: Storage) -> None:
    put_files(storage, "openapiin", {f"f{i}.txt": b"x" for i in range(3)})
    for output in ("openapiout", "openapidone"):    # the outputs' containers exist at submit
        storage.ensure_container(output)


@pytest.mark.scores_nothing
def test_the_error_answers_are_the_documented_ones(described: Any, client: httpx.Client, code: str,
                                                   inputs: None) -> None:
    unknown = "nosuch-20260101-000000-abcdef"
    for method, path in (("GET", "/api/jobs/{job_id}"), ("POST", "/api/jobs/{job_id}/cancel"),
                         ("POST", "/api/jobs/{job_id}/resubmit"), ("GET", "/api/jobs/{job_id}/results"),
                         ("GET", "/api/jobs/{job_id}/logs"), ("GET", "/api/jobs/{job_id}/logs/{path}"),
                         ("GET", "/api/jobs/{job_id}/timeline")):
        r = client.request(method, path.format(job_id=unknown, path="job_result.txt"),
                           content=b"{}" if method == "POST" else None)
        assert r.status_code == 404 and unknown in conforms(described, method, path, r)["error"]

    r = client.post("/api/jobs", json={"entry_script": 3, "inputs": []})
    fields = {e["field"] for e in conforms(described, "POST", "/api/jobs", r)["errors"]}
    assert r.status_code == 422 and {"entry_script", "inputs"} <= fields, r.text
    r = client.post("/api/jobs", content=b"entry_script: [unclosed", headers={"content-type": "application/yaml"})
    assert r.status_code == 422 and conforms(described, "POST", "/api/jobs", r)["errors"][0]["field"] == "(body)"
    r = client.get("/api/jobs", params={"limit": 0})
    assert r.status_code == 422
    assert [e["field"] for e in conforms(described, "GET", "/api/jobs", r)["errors"]] == ["limit"]
    r = client.get(f"/api/jobs/{unknown}/results", params={"head": 10_001})
    assert r.status_code == 422
    assert [e["field"] for e in conforms(described, "GET", "/api/jobs/{job_id}/results", r)["errors"]] == ["head"]

    r = client.post("/api/jobs", content=b"{" + b" " * LIMITS.max_body_bytes + b"}")
    assert r.status_code == 413
    assert conforms(described, "POST", "/api/jobs", r)["limit"] == "PARALLELRUN_MAX_BODY_BYTES"

    r = client.post("/api/snapshots", content=b"not a zip", headers={"content-type": "application/zip"})
    assert r.status_code == 400 and "zip" in conforms(described, "POST", "/api/snapshots", r)["error"]
    r = client.get(f"/api/jobs/{unknown}/logs/a%0Ab.txt")   # a path no route of the app matches
    assert r.status_code == 404 and "Not Found" in conforms(
        described, "GET", "/api/jobs/{job_id}/logs/{path}", r)["error"]
    r = client.get(f"/api/jobs/{unknown}/logs/user/%2E%2E/%2E%2E/secret.txt")
    assert r.status_code == 400 and "'..'" in conforms(described, "GET", "/api/jobs/{job_id}/logs/{path}", r)["error"]

    # an output owned by an unfinished job (planned at submit; nothing runs its mini-batches here)
    first = client.post("/api/jobs", json=valid_spec(code, output="openapiout/run"))
    owner = conforms(described, "POST", "/api/jobs", first)["job_id"]
    assert first.status_code == 202 and first.headers["location"].endswith(f"/api/jobs/{owner}")
    r = client.post("/api/jobs", json=valid_spec(code, output="openapiout/run"))
    assert r.status_code == 409 and conforms(described, "POST", "/api/jobs", r)["owner"] == owner
    r = client.post(f"/api/jobs/{owner}/resubmit", json={})
    assert r.status_code == 409
    assert conforms(described, "POST", "/api/jobs/{job_id}/resubmit", r)["owner"] == owner
    listed = conforms(described, "GET", "/api/jobs", client.get("/api/jobs"))["jobs"]
    assert [(j["job_id"], j["state"], j["progress"]["settled"]) for j in listed] == [(owner, "running", 0)]
    r = client.get(f"/api/jobs/{owner}/logs", params={"kind": "nope"})
    assert r.status_code == 400 and "kind" in conforms(described, "GET", "/api/jobs/{job_id}/logs", r)["error"]
    r = client.get(f"/api/jobs/{owner}/results")
    assert r.status_code == 404 and "no output rows yet" in conforms(
        described, "GET", "/api/jobs/{job_id}/results", r)["error"]

    with httpx.Client(base_url=str(client.base_url), timeout=30) as anonymous:
        for method, path in OPERATIONS:
            r = anonymous.request(method, path.format(job_id=unknown, path="job_result.txt"))
            if path == "/api/health":
                assert r.status_code == 200, r.text
            else:
                assert r.status_code == 401 and "x-functions-key" in conforms(described, method, path, r)["error"]


@pytest.mark.scores_nothing
def test_a_job_id_is_taken_whole_whatever_it_holds(described: Any, client: httpx.Client) -> None:
    """Found by generated requests: the local host handed the ASGI adapter a decoded URL, which it
    cut at ';' (GET /api/jobs/%3Bq answered the job list)."""
    for sent, meant in (("%3Bq", ";q"), ("a%3Fb", "a?b"), ("a%23b", "a#b"), ("a%2520b", "a%20b")):
        r = client.get(f"/api/jobs/{sent}")
        assert r.status_code == 404, (sent, r.text)
        assert repr(meant) in conforms(described, "GET", "/api/jobs/{job_id}", r)["error"], r.text


@pytest.mark.scores_nothing
def test_storage_that_refuses_the_app_is_a_documented_503(
        described: Any, settings: Settings, storage: Storage) -> None:
    wrong_key = "AccountKey=" + "A" * 86 + "=="
    parts = [wrong_key if p.startswith("AccountKey=") else p for p in settings.connection_string.split(";")]
    refused = dataclasses.replace(settings, connection_string=";".join(parts))
    for url in serve(refused):
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
            for method, path in (("GET", "/api/health"), ("GET", "/api/jobs")):
                r = c.request(method, path)
                assert r.status_code == 503, r.text
                assert "storage unavailable" in conforms(described, method, path, r)["error"]


# -- the success answers, and 410, with jobs that run ------------------------------------------
@pytest.fixture
def running(settings: Settings, storage: Storage) -> Iterator[LocalHost]:
    with LocalHost(load_app(), settings, http_port=free_port(), lease_s=10) as h:
        yield h


def test_the_success_answers_are_the_documented_ones(
        described: Any, running: LocalHost, code: str, inputs: None) -> None:
    with httpx.Client(base_url=running.http_url, headers=AUTH, timeout=30) as c:
        assert conforms(described, "GET", "/api/health", c.get("/api/health")) == {"status": "ok"}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("score.py", "def run(mini_batch):\n    return mini_batch\n")
        r = c.post("/api/snapshots", content=buffer.getvalue(), headers={"content-type": "application/zip"})
        assert r.status_code == 201
        assert conforms(described, "POST", "/api/snapshots", r)["source_directory"].startswith("snapshot:")

        r = c.post("/api/jobs", json=valid_spec(code, output="openapidone/run"))
        first = conforms(described, "POST", "/api/jobs", r)["job_id"]
        running.drain(timeout_s=60)
        status = conforms(described, "GET", "/api/jobs/{job_id}", c.get(f"/api/jobs/{first}"))
        assert status["state"] == "succeeded" and status["rows"] == 3, status
        rows = conforms(described, "GET", "/api/jobs/{job_id}/results", c.get(f"/api/jobs/{first}/results"))
        assert len(rows["rows"]) == 3
        listed = conforms(described, "GET", "/api/jobs", c.get("/api/jobs"))
        assert [j["job_id"] for j in listed["jobs"]] == [first]
        timeline = conforms(described, "GET", "/api/jobs/{job_id}/timeline", c.get(f"/api/jobs/{first}/timeline"))
        assert timeline["planned"] == 2 and len(timeline["bars"]) == 2, timeline
        files = conforms(described, "GET", "/api/jobs/{job_id}/logs", c.get(f"/api/jobs/{first}/logs"))["files"]
        assert "job_result.txt" in [f["path"] for f in files], files
        r = c.get(f"/api/jobs/{first}/logs/job_result.txt", params={"tail": 100})
        described["/api/jobs/{job_id}/logs/{path}"]["GET"].validate_response(r)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert int(r.headers["x-log-offset"]) + len(r.content) == int(r.headers["x-log-size"])

        r = c.post(f"/api/jobs/{first}/resubmit", json={"mini_batch_size": "1"})
        second = conforms(described, "POST", "/api/jobs/{job_id}/resubmit", r)
        assert r.status_code == 202 and second["resubmitted_from"] == first
        assert r.headers["location"] == second["status_url"]
        running.drain(timeout_s=60)
        r = c.get(f"/api/jobs/{first}/results")    # the resubmitted job took the output over
        assert r.status_code == 410 and second["job_id"] in conforms(
            described, "GET", "/api/jobs/{job_id}/results", r)["error"]
        r = c.post(f"/api/jobs/{second['job_id']}/cancel")
        cancelled = conforms(described, "POST", "/api/jobs/{job_id}/cancel", r)
        assert r.status_code == 202 and cancelled["state"] == "succeeded"   # a finished job stays so


# -- the docs page in a browser ----------------------------------------------------------------
CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")
@pytest.mark.scores_nothing
def test_the_docs_page_renders_every_operation_from_this_origin_alone(served: str) -> None:
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    complaints: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            tab.on("request", lambda r: requested.append(r.url))
            tab.on("console", lambda m: complaints.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: complaints.append(str(e)))
            tab.goto(f"{served}/api/docs?code={KEY}")
            tab.wait_for_selector("#operations .operation")
            shown = sorted((h.inner_text().split("\n")[0].upper(), h.inner_text().split("\n")[1])
                           for h in tab.query_selector_all("#operations .operation h3"))
            status = tab.inner_text("#op-get--api-jobs-job-id-")
            schemas = tab.inner_text("#schemas")
        finally:
            browser.close()
    assert shown == OPERATIONS
    assert "404" in status and "JobStatus" in status and "key: header x-functions-key or query code" in status
    assert "V2ParallelJob" in schemas and "owner" in schemas
    assert complaints == []
    assert requested and all(url.startswith(served + "/") for url in requested), requested
    assert {url.split("?")[0].removeprefix(served) for url in requested} == {
        "/api/docs", "/api/docs/static/docs.js", "/api/docs/static/docs.css", "/api/docs/static/favicon.svg",
        "/api/openapi.json"}
