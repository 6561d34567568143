"""Job operations shared by the HTTP API, the blob-upload trigger and the CLI: submit, resubmit,
list, cancel (how a job stops is :mod:`shared.service.jobs.stopping`; what a job looks like to a
user is :mod:`shared.service.jobs.status`).

Submission validates everything it can before anything is written (the spec, then what it names:
:mod:`shared.service.jobs.references`): an invalid job is refused with every bad field and every
reference that does not hold named in one answer, and nothing is enqueued. State first, side
effects after: the index row, then the ledger row are written, then the first planning message
is enqueued (the API and request blobs plan the first step at once, the message waiting as a
backstop: :func:`plan_first_step`). A submitter that dies in
between leaves a ``queued`` index row, which :mod:`shared.service.jobs.sweep` finds and recovers.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
import time
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.errors import NotFoundError, SpecError
from shared.messages import PlanMessage
from shared.service import outbox
from shared.service.jobs import claims, references, reuse, stopping
from shared.service.jobs import joblist as index
from shared.service.jobs.status import job_status
from shared.service.ledger import decisions
from shared.service.ledger.rows import JobRow, spec_json
from shared.service.ledger.store import Ledger
from shared.service.planning import planner
from shared.service.working.jobcontext import process_count
from shared.spec import JobSpec, Parsed, SpecParts, parse_submission
from shared.states import JobState
from shared.storage import Storage

log = logging.getLogger("parallelrun.jobs")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")   # no '/', '\\', '#', '?': table keys


def new_job_id(name: str) -> str:
    return f"{name}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def check_job_id(job_id: str) -> str:
    """A job id that can be a table key; anything else (``../../x``) is no job of ours."""
    if not _JOB_ID_RE.match(job_id):
        raise NotFoundError(f"{job_id[:80]!r} is not a job id (such as name-20260101-120000-a1b2c3)")
    return job_id


def validate(storage: Storage, data: Any) -> tuple[JobSpec, references.Checked]:
    """The spec and what its references resolve to, or one SpecError naming every bad field and
    every reference that does not hold (those of the fields that are valid, when some are not)."""
    if isinstance(data, JobSpec):
        parsed = Parsed(data, [], SpecParts.of(data))
    else:
        parsed = parse_submission(data, storage.settings.limits)
    checked = references.check(storage, parsed.parts)
    errors = merged([*parsed.errors, *checked.errors])
    if errors or parsed.spec is None:
        raise SpecError(errors)
    return parsed.spec, checked


def merged(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    """One entry per field, its messages joined, in the order fields first appear."""
    by_field: dict[str, list[str]] = {}
    for e in errors:
        if e["message"] not in by_field.setdefault(e["field"], []):
            by_field[e["field"]].append(e["message"])
    return [{"field": f, "message": "; ".join(m)} for f, m in by_field.items()]


def submit(storage: Storage, ledger: Ledger, data: Any, *, plan_now: bool = False) -> JobRow:
    """Validate and accept a job; returns its ledger row. Raises SpecError (nothing written).

    ``plan_now``: plan the job's first step here (:func:`plan_first_step`) instead of leaving it
    to the plan queue's next poll, as the API and request blobs do."""
    spec, checked = validate(storage, data)
    if checked.resolved is not None:    # the row carries the requirements, not a file name
        spec = spec.model_copy(update={"environment": checked.resolved.to_json()})
    fingerprint = reuse.fingerprint(storage, spec, checked.pins, checked.hashes)
    job_id = new_job_id(spec.name or "job")
    settings = storage.settings
    if spec.output is not None:
        container, prefix = spec.output.container, spec.output.path.strip("/")
        claims.claim(storage, ledger, job_id, container, prefix)   # or ConflictError: one owner
        storage.ensure_container(container)   # an output container is made, as Azure ML makes an output's folder
    else:
        container, prefix = settings.output_container, job_id
    window = decisions.window_size(spec.node_count, process_count(spec), settings.window_per_slot)
    job = JobRow(
        job_id=job_id, spec_json=spec_json(spec), snapshot=spec.source_directory or "",
        models=checked.pins, output_container=container, output_prefix=prefix, window=window,
        created_at=time.time(), fingerprint=fingerprint)
    index.add(storage, job)     # first, so that every accepted job can be found (and swept)
    try:
        job = ledger.create_job(job)
    except BaseException:
        if spec.output is not None:
            claims.release(storage, job_id, container, prefix)
        raise
    log.info("submitted: job=%s inputs=%d window=%d", job_id, len(spec.inputs), window)
    if plan_now:
        plan_first_step(storage, ledger, job_id)
    else:
        outbox.plan(storage, job_id, 0)
    return job


def plan_first_step(storage: Storage, ledger: Ledger, job_id: str) -> None:
    """Plan step 0 of a job just accepted, in this process: its first mini-batches are enqueued
    without waiting for the plan queue's next poll (up to ``maxPollingInterval`` on an idle host,
    the largest part of a small job's start).

    The step's message is sent first, invisible for ``plan_backstop_s``: if this process dies
    before the step is done, the queue runs it then. Once the step is done the message is
    deleted; if the step fails it is made visible at once. Either way a step that runs twice is
    harmless (:func:`shared.service.planning.planner.plan_step` is idempotent)."""
    queue = storage.settings.plan_queue
    backstop = outbox.plan(storage, job_id, 0, delay_s=storage.settings.plan_backstop_s)
    try:
        planner.plan_step(storage, ledger, PlanMessage(job_id, 0))
    except Exception as exc:  # noqa: BLE001 - the queue plans it instead, now
        log.warning("job=%s: first planning step failed here, left to the plan queue: %s: %s",
                    job_id, type(exc).__name__, exc)
        outbox.release(storage, queue, backstop)
        return
    outbox.withdraw(storage, queue, backstop)


def resubmit(storage: Storage, ledger: Ledger, job_id: str, overrides: dict[str, Any], *,
             plan_now: bool = False) -> JobRow:
    """Submit a job again with some fields replaced (new data, batch size, processes...). An
    explicit output is kept: while the old job runs, that is refused (409) unless the overrides
    name another output."""
    old = ledger.get_job(check_job_id(job_id))
    return submit(storage, ledger, old.spec.overridden(overrides), plan_now=plan_now)


def cancel(storage: Storage, ledger: Ledger, job_id: str) -> JobRow:
    """Stop a job: unrun mini-batches are dropped; the output of finished ones is still assembled."""
    log.info("cancel requested: job=%s", job_id)
    # a finalizing job is complete and only finishes: its finalize message is sent again, in case
    # its finalizer died (idempotent)
    return stopping.stop(storage, ledger, check_job_id(job_id), decisions.CANCELLED)


def status(storage: Storage, ledger: Ledger, job_id: str, error_limit: int = 10) -> dict[str, Any]:
    """Everything a user asks about a job, as JSON-able data (see :class:`JobStatus`)."""
    job = ledger.get_job(check_job_id(job_id))
    return job_status(storage, ledger, job, error_limit).to_dict()


def list_jobs(storage: Storage, limit: int = 50, ledger: Ledger | None = None) -> list[dict[str, Any]]:
    """Recent jobs, newest first, from the job index. With ``ledger``, the jobs the index shows
    unfinished are read from their own rows (two reads each: the row and its counters), because
    the index moves only at planning, finalizing and the end: each then has its live ``state``,
    ``stopping`` (the stop recorded and not finished yet, e.g. a cancel) and ``progress``
    (mini-batches planned and settled). Finished jobs cost nothing more."""
    rows = index.recent(storage, limit)
    if ledger is None:
        return rows
    for row in rows:
        if index.rank(row["state"]) >= index.rank(JobState.SUCCEEDED):
            continue
        try:
            job = ledger.get_job(row["job_id"])
        except NotFoundError:   # indexed, its row not written yet (or never: the sweep's case)
            continue
        totals = ledger.totals(job.job_id)
        row.update(state=job.state, stopping="" if JobState(job.state).terminal else job.stop_reason,
                   progress={"planned": job.planned, "planning_done": job.planning_done,
                             "settled": totals.batches_done, "failed": totals.batches_failed})
    return rows


def output_exists(storage: Storage, container: str, blob: str) -> bool:
    try:
        storage.container(container).get_blob_client(blob).get_blob_properties()
        return True
    except ResourceNotFoundError:
        return False
