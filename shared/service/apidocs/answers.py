"""The shapes of the API's answers, as dataclasses: the handlers build them, the document derives
their schemas from them (FastAPI's ``responses=`` models), so the two cannot drift apart.

:func:`documented` is how a route says what it answers: ``@app.get(path,
**documented(JobStatus, 404))`` gives the success answer's shape and the errors of the route
itself; the answers every route shares (401 without the function key, 413 for an oversized body,
422 for a bad parameter or body, 503 when storage is unavailable) are added by
:mod:`shared.service.apidocs.document`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.responses import PlainTextResponse


# -- success ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Health:
    status: str


@dataclass(frozen=True)
class Submitted:
    """A job accepted: status_url (also the Location header) is its status."""

    job_id: str
    state: str
    status_url: str


@dataclass(frozen=True)
class Resubmitted(Submitted):
    """A new job, made from resubmitted_from with the overrides applied."""

    resubmitted_from: str


@dataclass(frozen=True)
class Cancelled:
    """The job's state after the stop, and why it stopped (the first stop wins)."""

    job_id: str
    state: str
    reason: str


@dataclass(frozen=True)
class JobProgress:
    """Mini-batches planned and settled so far (of an unfinished job)."""

    planned: int
    planning_done: bool
    settled: int
    failed: int


@dataclass(frozen=True)
class JobSummary:
    """A job of the list; an unfinished one read from its own row: its live state, a stop
    recorded and not finished yet (stopping), and its progress."""

    job_id: str
    name: str
    state: str
    created_at: float
    stopping: str | None = None
    progress: JobProgress | None = None


@dataclass(frozen=True)
class JobList:
    """Recent jobs, newest first."""

    jobs: list[JobSummary]


@dataclass(frozen=True)
class Results:
    """The first rows of the job's output (head of them), and where the whole output is."""

    job_id: str
    url: str
    rows: list[str]


@dataclass(frozen=True)
class Snapshot:
    """The stored snapshot, as the source_directory a job spec names it by."""

    source_directory: str


# -- errors -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Error:
    """What went wrong, in words that name the job, field, limit or file."""

    error: str


@dataclass(frozen=True)
class FieldError:
    field: str      # a spec field ("inputs.0.container"), "(body)", or a query parameter
    message: str


@dataclass(frozen=True)
class Invalid(Error):
    """Every bad field of the spec, overrides or query at once."""

    errors: list[FieldError]


@dataclass(frozen=True)
class Conflict(Error):
    """The output folder belongs to owner, an unfinished job."""

    owner: str


@dataclass(frozen=True)
class TooLarge(Error):
    """limit is the app setting that bounds the body. A body the local host refuses before the app
    reads it (over the largest limit of any route) carries no limit."""

    limit: str | None = None


ERRORS: dict[int, tuple[type, str]] = {
    400: (Error, "The request cannot be taken as it is, error says why (a snapshot that is no "
                 "zip, a log path outside the job's logs folder ...)"),
    401: (Error, "The function key is missing or wrong (the local host's answer; Azure's has no body)"),
    404: (Error, "No such job (or model, snapshot, output rows)"),
    409: (Conflict, "The output folder is owned by an unfinished job, named by owner"),
    410: (Error, "The output was taken over by a newer job"),
    413: (TooLarge, "The body is larger than the limit named by limit"),
    422: (Invalid, "Invalid fields, each named"),
    503: (Error, "Storage is unavailable; try again"),
}


def error_answer(status: int) -> dict[str, Any]:
    """One error answer of an operation: its named schema (a JSON body, whatever the success
    answer's media type) and what it means."""
    model, description = ERRORS[status]
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}


def documented(ok: type | None, *errors: int, status: int = 200, headers: dict[str, Any] | None = None,
               body: dict[str, Any] | None = None, anonymous: bool = False,
               media_type: str = "application/json", description: str = "") -> dict[str, Any]:
    """Keyword arguments for a route decorator: the success answer ``ok`` (a dataclass; None for
    a text answer of ``media_type``) with its status and headers, the route's own error statuses,
    its hand-read request body (an OpenAPI ``requestBody``, e.g.
    :data:`~shared.service.apidocs.bodies.JOB_SPEC_BODY`), and whether it is served without the
    function key. The handler's answer is not changed: FastAPI documents the models and
    serializes the handler's return value as before (``response_model=None``)."""
    kwargs: dict[str, Any] = {"status_code": status, "response_model": None}
    if ok is None:
        ok_answer: dict[str, Any] = {"description": description or "text",
                                     "content": {media_type: {"schema": {"type": "string"}}}}
        kwargs["response_class"] = PlainTextResponse
    else:
        doc = ok.__doc__ or ""
        summary = ok.__name__ if doc.startswith(f"{ok.__name__}(") else doc.split("\n")[0]
        ok_answer = {"model": ok, "description": description or summary}
    if headers:
        ok_answer["headers"] = headers
    extra: dict[str, Any] = {}
    if body is not None:
        extra["requestBody"] = body
    if anonymous:
        extra["security"] = []
    return {**kwargs, "responses": {status: ok_answer, **{code: error_answer(code) for code in errors}},
            "openapi_extra": extra or None}


LOCATION = {"Location": {"description": "the new job's status URL (as status_url)",
                         "schema": {"type": "string"}, "required": True}}
LOG_CHUNK = {"X-Log-Offset": {"description": "where in the file the bytes start",
                              "schema": {"type": "integer"}, "required": True},
             "X-Log-Size": {"description": "the file's size in bytes", "schema": {"type": "integer"},
                            "required": True}}

