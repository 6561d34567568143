"""The web view of jobs, served by the app itself (one APIRouter, included by :mod:`shared.service.api`):

    GET /api/ui                           the recent jobs (live state and progress)
    GET /api/ui/jobs/{id}                 one job: progress, throughput, stages, timeline, errors,
                                          logs, output; cancel and resubmit
    GET /api/ui/static/{name}             the page's script and style sheet (package data)
    GET /api/jobs/{id}/timeline           the data of its timeline (shared.service.jobs.timeline)

Everything the page loads comes from these routes and the API (no CDN, no external font or
script), under a strict Content-Security-Policy. It sits behind the same function keys as the API:
opened as ``/api/ui?code=KEY``, the page's asset URLs carry the key and its script sends it with
every API call (``x-functions-key``) and puts it in every link it builds. The script shows what
the API answers with ``textContent`` only: job names, errors and tracebacks come from user code.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from shared.service import runtime
from shared.service.apidocs.answers import documented
from shared.service.jobs import lifecycle as jobs
from shared.service.jobs import timeline

router = APIRouter()

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
ASSET_CACHE = "private, max-age=86400"     # the page names each asset with its content hash
MAX_KEY_CHARS = 512                          # a longer ?code= is no function key: not echoed
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_ASSET_RE = re.compile(r"\{\{asset:([a-z]+\.(?:js|css))\}\}")


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _read(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


_assets: dict[str, Asset] = {}


def asset(name: str) -> Asset | None:
    """A static file of the page by its bare name (``app.js``), or None: only the names of
    :data:`_TYPES`' kinds in the package's ``static`` folder, never a path."""
    if name in _assets:
        return _assets[name]
    suffix = name[name.rfind("."):] if "." in name else ""
    if suffix not in _TYPES or not re.fullmatch(r"[a-z]+\.[a-z]+", name):
        return None
    try:
        body = _read(name)
    except (FileNotFoundError, IsADirectoryError):
        return None
    found = Asset(body, _TYPES[suffix], f'"{hashlib.sha256(body).hexdigest()[:16]}"')
    _assets[name] = found
    return found


def render_page(code: str | None) -> str:
    """``index.html`` with each ``{{asset:NAME}}`` replaced by the asset's URL: versioned by its
    hash, and carrying ``code`` (the function key the page was opened with) so the host lets it
    through."""
    key = f"&code={quote(code, safe='')}" if code and len(code) <= MAX_KEY_CHARS else ""

    def url(found: re.Match[str]) -> str:
        item = asset(found.group(1))
        if item is None:
            raise FileNotFoundError(f"the page names a missing asset: {found.group(1)}")
        return html.escape(f"/api/ui/static/{found.group(1)}?v={item.etag.strip(chr(34))}{key}")

    return _ASSET_RE.sub(url, _read("index.html").decode())


def _page(request: Request) -> Response:
    return Response(render_page(request.query_params.get("code")), media_type="text/html; charset=utf-8",
                    headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


@router.get("/api/ui", include_in_schema=False)
def jobs_page(request: Request) -> Response:
    return _page(request)


@router.get("/api/ui/jobs/{job_id}", include_in_schema=False)
def job_page(job_id: str, request: Request) -> Response:
    jobs.check_job_id(job_id)   # 404 for what cannot be a job id; the script asks for the rest
    return _page(request)


@router.get("/api/ui/static/{name}", include_in_schema=False)
def static(name: str, request: Request) -> Response:
    item = asset(name)
    if item is None:
        return JSONResponse({"error": f"no such file of the web view: {name[:80]!r}"}, status_code=404)
    headers = {"Cache-Control": ASSET_CACHE, "ETag": item.etag, "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == item.etag:
        return Response(status_code=304, headers=headers)
    return Response(item.body, media_type=item.media_type, headers=headers)


@router.get("/api/jobs/{job_id}/timeline", **documented(timeline.Timeline, 404))
def job_timeline(job_id: str) -> dict[str, Any]:
    """Mini-batch tries per node and process and throughput over time (bounded: see
    :mod:`shared.service.jobs.timeline`)."""
    return timeline.job_timeline(runtime.current().ledger, jobs.check_job_id(job_id))
