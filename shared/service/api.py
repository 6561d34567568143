"""The HTTP API (FastAPI), served by the ``api`` function through the Functions ASGI adapter.

    GET  /api/health                      storage reachable?
    POST /api/jobs                        submit (JSON or YAML body) -> 202 + job id + status URL
    GET  /api/jobs                        recent jobs
    GET  /api/jobs/{id}                   status: state, counts, timings, throughput, output, errors
    POST /api/jobs/{id}/cancel            stop a job
    POST /api/jobs/{id}/resubmit          same job, some fields replaced (body: the overrides)
    GET  /api/jobs/{id}/results?head=N    first rows of the output
    GET  /api/jobs/{id}/logs              the job's log files (?node=&process=&kind=)
    GET  /api/jobs/{id}/logs/{path}       one log file as text (?offset=&max_bytes= or ?tail=)
    POST /api/snapshots                   upload a zipped source_directory -> snapshot reference
    GET  /api/ui, /api/jobs/{id}/timeline the web view of jobs (its own router: shared.service.ui)
    GET  /api/openapi.json, /api/docs     the OpenAPI document, and a page rendering it (offline)

Errors: 422 names every invalid field; 404 for unknown jobs; 409 for an output another unfinished
job owns (``owner`` names it); 410 for results of an output a newer job replaced; 413 for a body
over its limit; 503 when storage is unavailable. Bodies are bounded (:mod:`shared.limits`) and
read, parsed, validated and stored off the event loop, so one large request never stalls the
others.

Each route declares its answers with :func:`~shared.service.apidocs.answers.documented` (the success
answer's dataclass, the route's own errors, a hand-read body); the error answers are built from the
same dataclasses. A new route is documented by that one argument (docs/api.md).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import asdict
from typing import Any

from azure.core.exceptions import AzureError
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import (
    ConflictError,
    GoneError,
    NotFoundError,
    OperatorError,
    PayloadTooLarge,
    SpecError,
    SubmitterError,
)
from shared.limits import Limits, load_text
from shared.service import runtime
from shared.service.apidocs import document, page
from shared.service.apidocs.answers import (
    LOCATION,
    LOG_CHUNK,
    Cancelled,
    Conflict,
    Error,
    FieldError,
    Health,
    Invalid,
    JobList,
    Resubmitted,
    Results,
    Snapshot,
    Submitted,
    TooLarge,
    documented,
)
from shared.service.apidocs.bodies import JOB_SPEC_BODY, OVERRIDES_BODY, ZIP_BODY
from shared.service.jobs import joblogs
from shared.service.jobs import lifecycle as jobs
from shared.service.jobs.status import JobStatus, output_of
from shared.service.results import read_head
from shared.service.ui import router as web_view
from shared.service.working import snapshots

log = logging.getLogger("parallelrun.api")

app = FastAPI(title="ParallelRun Functions", version="0.1.0", openapi_url="/api/openapi.json",
              docs_url=None, redoc_url=None,
              description="Batch inference with ParallelRunStep's job spec on Azure Functions and "
                          "Azure Storage. Every route but health needs the function key.",
              servers=[{"url": "/", "description": "the app's host; every path carries the "
                                                   "Functions route prefix (api)"}])
document.install(app)
app.include_router(page.router)
app.include_router(web_view)   # GET /api/ui (the web view of jobs) and /api/jobs/{id}/timeline


def _answer(body: Error, status: int) -> JSONResponse:
    return JSONResponse(asdict(body), status_code=status)


@app.exception_handler(SpecError)
async def _spec_error(_: Request, exc: SpecError) -> JSONResponse:
    return _answer(Invalid("invalid job spec", [FieldError(e["field"], e["message"]) for e in exc.errors]), 422)


@app.exception_handler(RequestValidationError)
async def _bad_parameter(_: Request, exc: RequestValidationError) -> JSONResponse:
    """A query parameter out of range: the same shape as a bad spec field."""
    errors = [FieldError(".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]),
                         str(e["msg"]).replace("Input should be", "must be")) for e in exc.errors()]
    return _answer(Invalid("invalid request", errors), 422)


@app.exception_handler(StarletteHTTPException)
async def _no_route(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """No route of the app for the path (404) or the method (405): the error shape of the others."""
    where = f"{request.method} {request.url.path[:200]!r}"
    return JSONResponse(asdict(Error(f"{exc.detail}: {where}")), status_code=exc.status_code,
                        headers=exc.headers)


@app.exception_handler(NotFoundError)
async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
    return _answer(Error(str(exc)), 404)


@app.exception_handler(PayloadTooLarge)
async def _too_large(_: Request, exc: PayloadTooLarge) -> JSONResponse:
    return _answer(TooLarge(str(exc), limit=exc.setting), 413)


@app.exception_handler(ConflictError)
async def _conflict(_: Request, exc: ConflictError) -> JSONResponse:
    return _answer(Conflict(str(exc), owner=exc.owner), 409)


@app.exception_handler(GoneError)
async def _gone(_: Request, exc: GoneError) -> JSONResponse:
    return _answer(Error(str(exc)), 410)


@app.exception_handler(SubmitterError)
async def _bad_request(_: Request, exc: SubmitterError) -> JSONResponse:
    return _answer(Error(str(exc)), 400)


@app.exception_handler(OperatorError)
@app.exception_handler(AzureError)
async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.error("storage unavailable: %s", exc)
    return _answer(Error(f"storage unavailable: {type(exc).__name__}"), 503)


async def read_body(request: Request, limit: int, setting: str) -> bytes:
    """The request body, refused (413) as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {int(declared):,} bytes; at most {limit:,} are "
                              f"accepted ({setting})", setting=setting)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is more than {limit:,} bytes ({setting})",
                                  setting=setting)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(raw: bytes, limits: Limits) -> Any:
    """A JSON or YAML body as data, within the limits (CPU-bound: call it off the event loop).

    The content type is not consulted: ``curl --data-binary @job.yaml`` sends YAML as
    ``application/x-www-form-urlencoded``, others send ``text/plain`` or nothing. A body that is
    one line and no mapping is most likely YAML whose newlines ``curl -d`` dropped: the error
    says so."""
    if not raw.strip():
        return {}
    try:
        data = load_text(raw, limits)
    except SpecError as exc:
        hint = _flattened(raw)
        raise SpecError([{"field": "(body)", "message": e["message"] + hint} if e["field"] == "(spec)"
                         else e for e in exc.errors]) from None
    if not isinstance(data, (dict, list)) and _flattened(raw):
        raise SpecError([{"field": "(body)", "message": "a job spec must be a mapping of field "
                          f"names to values, not {type(data).__name__}" + _flattened(raw)}])
    return data


def _flattened(raw: bytes) -> str:
    """A hint for a body that looks like YAML with its newlines removed (``curl -d @job.yaml``)."""
    if b"\n" in raw or b"\r" in raw or raw.lstrip()[:1] in (b"{", b"[") or raw.count(b":") < 2:
        return ""
    return ("; the body is one line: YAML sent with curl -d loses its newlines, send the file "
            "with --data-binary @job.yaml (and -H 'Content-Type: application/yaml')")


async def _body(request: Request) -> Any:
    limits = runtime.current().settings.limits
    raw = await read_body(request, limits.max_body_bytes, limits.setting("max_body_bytes"))
    return await run_in_threadpool(parse_body, raw, limits)


def _status_url(request: Request, job_id: str) -> str:
    return str(request.url_for("get_job", job_id=job_id))


@app.get("/api/health", **documented(Health, anonymous=True))
def health() -> dict[str, str]:
    """Whether storage answers (no key needed)."""
    rt = runtime.current()
    rt.storage.queue(rt.settings.plan_queue).get_queue_properties()
    return asdict(Health("ok"))


@app.post("/api/jobs", **documented(Submitted, 400, 404, 409, status=202, headers=LOCATION,
                                    body=JOB_SPEC_BODY))
async def submit_job(request: Request) -> JSONResponse:
    """Submit a job: validated, then planned and run; nothing is enqueued for an invalid one."""
    rt = runtime.current()
    data = await _body(request)
    job = await run_in_threadpool(functools.partial(jobs.submit, plan_now=True), rt.storage,
                                  rt.ledger, data)
    url = _status_url(request, job.job_id)
    return JSONResponse(asdict(Submitted(job.job_id, job.state, url)), status_code=202,
                        headers={"Location": url})


@app.get("/api/jobs", **documented(JobList))
def list_jobs(limit: int = Query(50, ge=1, le=1000, description="how many, newest first")
              ) -> dict[str, Any]:
    """Recent jobs, newest first; unfinished ones with their live state and progress."""
    rt = runtime.current()
    return {"jobs": jobs.list_jobs(rt.storage, limit, rt.ledger)}


@app.get("/api/jobs/{job_id}", name="get_job", **documented(JobStatus, 404))
def get_job(job_id: str) -> dict[str, Any]:
    """A job's status: state, counts, timings, throughput, output, errors."""
    rt = runtime.current()
    return jobs.status(rt.storage, rt.ledger, job_id)


@app.post("/api/jobs/{job_id}/cancel", **documented(Cancelled, 404, status=202))
def cancel_job(job_id: str) -> dict[str, Any]:
    """Stop a job: unrun mini-batches are dropped, finished output is kept."""
    rt = runtime.current()
    job = jobs.cancel(rt.storage, rt.ledger, job_id)
    return asdict(Cancelled(job.job_id, job.state, job.error))


@app.post("/api/jobs/{job_id}/resubmit", **documented(Resubmitted, 400, 404, 409, status=202,
                                                      headers=LOCATION, body=OVERRIDES_BODY))
async def resubmit_job(job_id: str, request: Request) -> JSONResponse:
    """The same job again, with the fields of the body replaced: a new job."""
    rt = runtime.current()
    overrides = await _body(request)
    if not isinstance(overrides, dict):
        raise SpecError([{"field": "(body)", "message": "overrides must be an object of spec fields"}])
    job = await run_in_threadpool(functools.partial(jobs.resubmit, plan_now=True), rt.storage,
                                  rt.ledger, job_id, overrides)
    url = _status_url(request, job.job_id)
    return JSONResponse(asdict(Resubmitted(job.job_id, job.state, url, resubmitted_from=job_id)),
                        status_code=202, headers={"Location": url})


@app.get("/api/jobs/{job_id}/results", **documented(Results, 404, 410))
def results(job_id: str, head: int = Query(10, ge=0, le=10_000, description="how many rows")
            ) -> dict[str, Any]:
    """The first rows of a job's output (404 while it has none, 410 once a newer job took it over)."""
    rt = runtime.current()
    job = rt.ledger.get_job(jobs.check_job_id(job_id))   # its row alone: no counters, no scan
    out = output_of(rt.storage, job)
    if out.replaced_by:
        raise GoneError(f"output replaced by job {out.replaced_by}: the rows of job {job_id} "
                        f"were in {out.container}/{out.prefix}, which that job now owns")
    if out.blob is None or not jobs.output_exists(rt.storage, out.container, out.blob):
        raise NotFoundError(f"job {job_id} has no output rows yet (state {job.state})")
    return asdict(Results(job_id, out.url, read_head(rt.storage, out.container, out.blob, head)))


@app.get("/api/jobs/{job_id}/logs", **documented(joblogs.Listing, 400, 404))
def list_logs(job_id: str, node: str = "", process: str = "", kind: str = "") -> dict[str, Any]:
    """The job's log files, filtered by node, process and kind (400 for an unknown kind)."""
    rt = runtime.current()
    job = rt.ledger.get_job(jobs.check_job_id(job_id))
    return joblogs.list_files(rt.storage, job, node=node, process=process, kind=kind).to_dict()


@app.get("/api/jobs/{job_id}/logs/{path:path}", **documented(None, 400, 404, media_type="text/plain",
                                                             headers=LOG_CHUNK))
def read_log(job_id: str, path: str, offset: int = Query(0, ge=0),
             max_bytes: int = Query(joblogs.MAX_READ_BYTES, ge=0, le=joblogs.MAX_READ_BYTES),
             tail: int | None = Query(None, ge=0, le=joblogs.MAX_READ_BYTES)) -> Response:
    """Bytes of one log file (path relative to the job's logs/): from offset, or its last tail bytes."""
    rt = runtime.current()
    joblogs.check_path(path)
    job = rt.ledger.get_job(jobs.check_job_id(job_id))
    chunk = joblogs.read(rt.storage, job, path, offset=offset, max_bytes=max_bytes, tail=tail)
    return Response(chunk.data, media_type="text/plain; charset=utf-8", headers={
        "X-Log-Offset": str(chunk.offset), "X-Log-Size": str(chunk.size)})


@app.post("/api/snapshots", **documented(Snapshot, 400, status=201, body=ZIP_BODY))
async def upload_snapshot(request: Request) -> dict[str, str]:
    """Store a zipped source directory; answers the snapshot reference for a spec's source_directory."""
    rt = runtime.current()
    limits = rt.settings.limits
    data = await read_body(request, limits.max_snapshot_bytes, limits.setting("max_snapshot_bytes"))
    return asdict(Snapshot(await run_in_threadpool(_store_snapshot, rt, data)))


def _store_snapshot(rt: runtime.Runtime, data: bytes) -> str:
    """Check the zip against the limits (before anything expands past them), then store it."""
    if not data:
        raise SubmitterError("the body must be a zip of the source directory")
    snapshots.check_zip(data, rt.settings.limits)
    sha = hashlib.sha256(data).hexdigest()
    snapshots.put(rt.storage, data, sha)   # repairs a stored copy that no longer matches its hash
    return f"{snapshots.PREFIX}{sha}"
