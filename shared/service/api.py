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

Errors: 422 names every invalid field; 404 for unknown jobs; 409 for an output another unfinished
job owns (``owner`` names it); 410 for results of an output a newer job replaced; 413 for a body
over its limit; 503 when storage is unavailable. Bodies are bounded (:mod:`shared.limits`) and
read, parsed, validated and stored off the event loop, so one large request never stalls the
others.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from azure.core.exceptions import AzureError
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

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
from shared.service.jobs import joblogs
from shared.service.jobs import lifecycle as jobs
from shared.service.jobs.status import output_of
from shared.service.results import read_head
from shared.service.ui import router as web_view
from shared.service.working import snapshots

log = logging.getLogger("parallelrun.api")

app = FastAPI(title="ParallelRun Functions", version="0.1.0", docs_url="/api/docs",
              openapi_url="/api/openapi.json")
app.include_router(web_view)   # GET /api/ui (the web view of jobs) and /api/jobs/{id}/timeline


@app.exception_handler(SpecError)
async def _spec_error(_: Request, exc: SpecError) -> JSONResponse:
    return JSONResponse({"error": "invalid job spec", "errors": exc.errors}, status_code=422)


@app.exception_handler(NotFoundError)
async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=404)


@app.exception_handler(PayloadTooLarge)
async def _too_large(_: Request, exc: PayloadTooLarge) -> JSONResponse:
    return JSONResponse({"error": str(exc), "limit": exc.setting}, status_code=413)


@app.exception_handler(ConflictError)
async def _conflict(_: Request, exc: ConflictError) -> JSONResponse:
    return JSONResponse({"error": str(exc), "owner": exc.owner}, status_code=409)


@app.exception_handler(GoneError)
async def _gone(_: Request, exc: GoneError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=410)


@app.exception_handler(SubmitterError)
async def _bad_request(_: Request, exc: SubmitterError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=400)


@app.exception_handler(OperatorError)
@app.exception_handler(AzureError)
async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.error("storage unavailable: %s", exc)
    return JSONResponse({"error": f"storage unavailable: {type(exc).__name__}"}, status_code=503)


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
    """A JSON or YAML body as data, within the limits (CPU-bound: call it off the event loop)."""
    if not raw.strip():
        return {}
    try:
        return load_text(raw, limits)
    except SpecError as exc:
        raise SpecError([{**e, "field": "(body)"} if e["field"] == "(spec)" else e
                         for e in exc.errors]) from None


async def _body(request: Request) -> Any:
    limits = runtime.current().settings.limits
    raw = await read_body(request, limits.max_body_bytes, limits.setting("max_body_bytes"))
    return await run_in_threadpool(parse_body, raw, limits)


def _status_url(request: Request, job_id: str) -> str:
    return str(request.url_for("get_job", job_id=job_id))


@app.get("/api/health")
def health() -> dict[str, str]:
    rt = runtime.current()
    rt.storage.queue(rt.settings.plan_queue).get_queue_properties()
    return {"status": "ok"}


@app.post("/api/jobs", status_code=202)
async def submit_job(request: Request) -> JSONResponse:
    rt = runtime.current()
    data = await _body(request)
    job = await run_in_threadpool(jobs.submit, rt.storage, rt.ledger, data)
    url = _status_url(request, job.job_id)
    return JSONResponse({"job_id": job.job_id, "state": job.state, "status_url": url},
                        status_code=202, headers={"Location": url})


@app.get("/api/jobs")
def list_jobs(limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
    rt = runtime.current()
    return {"jobs": jobs.list_jobs(rt.storage, limit, rt.ledger)}


@app.get("/api/jobs/{job_id}", name="get_job")
def get_job(job_id: str) -> dict[str, Any]:
    rt = runtime.current()
    return jobs.status(rt.storage, rt.ledger, job_id)


@app.post("/api/jobs/{job_id}/cancel", status_code=202)
def cancel_job(job_id: str) -> dict[str, Any]:
    rt = runtime.current()
    job = jobs.cancel(rt.storage, rt.ledger, job_id)
    return {"job_id": job.job_id, "state": job.state, "reason": job.error}


@app.post("/api/jobs/{job_id}/resubmit", status_code=202)
async def resubmit_job(job_id: str, request: Request) -> JSONResponse:
    rt = runtime.current()
    overrides = await _body(request)
    if not isinstance(overrides, dict):
        raise SpecError([{"field": "(body)", "message": "overrides must be an object of spec fields"}])
    job = await run_in_threadpool(jobs.resubmit, rt.storage, rt.ledger, job_id, overrides)
    url = _status_url(request, job.job_id)
    return JSONResponse({"job_id": job.job_id, "state": job.state, "status_url": url,
                         "resubmitted_from": job_id}, status_code=202, headers={"Location": url})


@app.get("/api/jobs/{job_id}/results")
def results(job_id: str, head: int = Query(10, ge=0, le=10_000)) -> dict[str, Any]:
    rt = runtime.current()
    job = rt.ledger.get_job(jobs.check_job_id(job_id))   # its row alone: no counters, no scan
    out = output_of(rt.storage, job)
    if out.replaced_by:
        raise GoneError(f"output replaced by job {out.replaced_by}: the rows of job {job_id} "
                        f"were in {out.container}/{out.prefix}, which that job now owns")
    if out.blob is None or not jobs.output_exists(rt.storage, out.container, out.blob):
        raise NotFoundError(f"job {job_id} has no output rows yet (state {job.state})")
    return {"job_id": job_id, "url": out.url, "rows": read_head(rt.storage, out.container, out.blob, head)}


@app.get("/api/jobs/{job_id}/logs")
def list_logs(job_id: str, node: str = "", process: str = "", kind: str = "") -> dict[str, Any]:
    rt = runtime.current()
    job = rt.ledger.get_job(jobs.check_job_id(job_id))
    return joblogs.list_files(rt.storage, job, node=node, process=process, kind=kind).to_dict()


@app.get("/api/jobs/{job_id}/logs/{path:path}")
def read_log(job_id: str, path: str, offset: int = Query(0, ge=0),
             max_bytes: int = Query(joblogs.MAX_READ_BYTES, ge=0, le=joblogs.MAX_READ_BYTES),
             tail: int | None = Query(None, ge=0, le=joblogs.MAX_READ_BYTES)) -> Response:
    rt = runtime.current()
    joblogs.check_path(path)
    job = rt.ledger.get_job(jobs.check_job_id(job_id))
    chunk = joblogs.read(rt.storage, job, path, offset=offset, max_bytes=max_bytes, tail=tail)
    return Response(chunk.data, media_type="text/plain; charset=utf-8", headers={
        "X-Log-Offset": str(chunk.offset), "X-Log-Size": str(chunk.size)})


@app.post("/api/snapshots", status_code=201)
async def upload_snapshot(request: Request) -> dict[str, str]:
    rt = runtime.current()
    limits = rt.settings.limits
    data = await read_body(request, limits.max_snapshot_bytes, limits.setting("max_snapshot_bytes"))
    return {"source_directory": await run_in_threadpool(_store_snapshot, rt, data)}


def _store_snapshot(rt: runtime.Runtime, data: bytes) -> str:
    """Check the zip against the limits (before anything expands past them), then store it."""
    if not data:
        raise SubmitterError("the body must be a zip of the source directory")
    snapshots.check_zip(data, rt.settings.limits)
    sha = hashlib.sha256(data).hexdigest()
    snapshots.put(rt.storage, data, sha)   # repairs a stored copy that no longer matches its hash
    return f"{snapshots.PREFIX}{sha}"
