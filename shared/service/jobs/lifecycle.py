"""Job operations shared by the HTTP API, the blob-upload trigger and the CLI: submit, resubmit,
status, list, cancel.

Submission validates everything it can before anything is written (the spec, the code snapshot and
its entry script, the models, the input containers): an invalid job is refused with every bad
field named, and nothing is enqueued. State first, side effects after: the index row, then the
ledger row are written, then the first planning message is enqueued. A submitter that dies in
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

from shared.errors import IntegrityError, NotFoundError, SpecError
from shared.messages import FinalizeMessage, PlanMessage
from shared.service.jobs import claims, summary
from shared.service.jobs import joblist as index
from shared.service.ledger import decisions
from shared.service.ledger.store import Conflict, JobRow, Ledger, Totals
from shared.service.working import models, snapshots
from shared.service.working.jobcontext import output_target, process_count
from shared.settings import Settings
from shared.spec import JobSpec, parse_spec
from shared.states import BatchState, JobState
from shared.storage import Storage, blob_path

log = logging.getLogger("parallelrun.jobs")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")   # no '/', '\\', '#', '?': table keys


def new_job_id(name: str) -> str:
    return f"{name}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def check_job_id(job_id: str) -> str:
    """A job id that can be a table key; anything else (``../../x``) is no job of ours."""
    if not _JOB_ID_RE.match(job_id):
        raise NotFoundError(f"{job_id[:80]!r} is not a job id (such as name-20260101-120000-a1b2c3)")
    return job_id


# containers of the Functions host itself (keys, leases, timers) and of the storage account
HOST_CONTAINER_PREFIXES = ("azure-webjobs-", "scm-releases")


def internal_names(settings: Settings) -> dict[str, str]:
    """Every name the service (or its host) keeps state under -> what it is, as settings name them.

    Queues and tables live in other namespaces than containers, but a container of the same name
    would be mistaken for them by a reader of the spec, so they are reserved as well."""
    names = {settings.requests_container: "the service's requests container",
             settings.system_container: "the service's system container (code snapshots, models)",
             settings.output_container: "the service's output container (every job's default "
                                        "output and logs)"}
    for queue in settings.queues:
        names.setdefault(queue, "a queue of the service")
        names.setdefault(queue + settings.poison_suffix, "a poison queue of the service")
    for table in settings.tables:
        names.setdefault(table.lower(), "a table of the service")
    return names


def reserved_name_errors(settings: Settings, spec: JobSpec) -> list[dict[str, str]]:
    """Inputs and output may not name the service's own containers, queues or tables (pure)."""
    internal = internal_names(settings)

    def why(container: str) -> str | None:
        if container in internal:
            return internal[container]
        if container.startswith(HOST_CONTAINER_PREFIXES):
            return "a container of the Functions host"
        return None

    named = [(f"inputs.{n}.container", item.container or "") for n, item in enumerate(spec.inputs)]
    if spec.output is not None:
        named.append(("output", spec.output.container))
    errors = []
    for field, container in named:
        reason = why(container)
        if reason:
            errors.append({"field": field, "message": f"container {container!r} is {reason}; "
                           "jobs may not read or write the service's own storage (see "
                           "docs/security.md, Internal names)"})
    return errors


def _check_references(storage: Storage, spec: JobSpec) -> tuple[dict[str, int], list[dict[str, str]]]:
    """Resolve models and check the snapshot and inputs exist; returns (model pins, errors)."""
    errors = reserved_name_errors(storage.settings, spec)
    refused = {e["field"] for e in errors}
    if not spec.source_directory or not spec.source_directory.startswith(snapshots.PREFIX):
        errors.append({"field": "source_directory", "message": "must be a code snapshot reference "
                       "(snapshot:<sha256>); the CLI uploads a local folder and fills this in"})
    else:
        try:
            if spec.entry_script not in snapshots.names(storage, spec.source_directory):
                errors.append({"field": "entry_script", "message":
                               f"{spec.entry_script} is not in source_directory {spec.source_directory}"})
        except (NotFoundError, IntegrityError) as exc:
            errors.append({"field": "source_directory", "message": str(exc)})
    pins: dict[str, int] = {}
    for n, (name, version) in enumerate(spec.effective_models()):
        try:
            model = models.get_version(storage, name, version)
            pins[name] = model.version
            if not model.sha256:
                errors.append({"field": f"models.{n}", "message": models.unhashed_message(model)})
        except NotFoundError as exc:
            errors.append({"field": f"models.{n}", "message": str(exc)})
    for n, item in enumerate(spec.inputs):
        if f"inputs.{n}.container" in refused:
            continue
        if not storage.container(item.container).exists():
            errors.append({"field": f"inputs.{n}.container",
                           "message": f"container {item.container!r} does not exist"})
    return pins, errors


def submit(storage: Storage, ledger: Ledger, data: Any) -> JobRow:
    """Validate and accept a job; returns its ledger row. Raises SpecError (nothing written)."""
    spec = data if isinstance(data, JobSpec) else parse_spec(data, storage.settings.limits)
    pins, errors = _check_references(storage, spec)
    if errors:
        raise SpecError(errors)
    job_id = new_job_id(spec.name or "job")
    settings = storage.settings
    if spec.output is not None:
        container, prefix = spec.output.container, spec.output.path.strip("/")
        claims.claim(storage, ledger, job_id, container, prefix)   # or ConflictError: one owner
        storage.ensure_container(container)
    else:
        container, prefix = settings.output_container, job_id
    window = decisions.window_size(spec.node_count, process_count(spec), settings.window_per_slot)
    job = JobRow(
        job_id=job_id, spec=spec.to_dict(), snapshot=spec.source_directory or "", models=pins,
        output_container=container, output_prefix=prefix, window=window, created_at=time.time())
    index.add(storage, job)     # first, so that every accepted job can be found (and swept)
    try:
        job = ledger.create_job(job)
    except BaseException:
        if spec.output is not None:
            claims.release(storage, job_id, container, prefix)
        raise
    storage.queue(settings.plan_queue).send_message(PlanMessage(job_id, 0).to_json())
    log.info("submitted: job=%s inputs=%d window=%d", job_id, len(spec.inputs), window)
    return job


def resubmit(storage: Storage, ledger: Ledger, job_id: str, overrides: dict[str, Any]) -> JobRow:
    """Submit a job again with some fields replaced (new data, batch size, processes...). An
    explicit output is kept: while the old job runs, that is refused (409) unless the overrides
    name another output."""
    old = ledger.get_job(check_job_id(job_id))
    spec = parse_spec(old.spec).with_overrides(overrides, storage.settings.limits)
    return submit(storage, ledger, spec)


def cancel(storage: Storage, ledger: Ledger, job_id: str) -> JobRow:
    """Stop a job: unrun mini-batches are dropped; the output of finished ones is still assembled."""
    job = ledger.get_job(check_job_id(job_id))
    while job.active:
        try:
            job = ledger.update_job(job, stop_reason="cancelled by user", error="cancelled by user",
                                    stopped_at=time.time())
            log.info("cancel requested: job=%s", job_id)
        except Conflict:
            job = ledger.get_job(job_id)
    if decisions.refinalize(job):
        # again, if a first try died here; a finalizing job is complete and only finishes (its
        # finalizer may have died: the finalize message re-drives it, idempotently)
        storage.queue(storage.settings.finalize_queue).send_message(FinalizeMessage(job_id).to_json())
    return job


def status(storage: Storage, ledger: Ledger, job_id: str, error_limit: int = 10) -> dict[str, Any]:
    """Everything a user asks about a job, as one JSON-able dict."""
    job = ledger.get_job(check_job_id(job_id))
    totals = ledger.totals(job_id)
    running = ledger.count_batches(job_id, BatchState.RUNNING) if not JobState(job.state).terminal else 0
    settled = totals.batches_done
    end = job.ended_at or time.time()
    elapsed = max(0.0, end - job.started_at) if job.started_at else 0.0
    target = output_target(storage.settings, job)
    replaced_by = replaced(storage, job)
    errors = summary.group_errors(ledger.errors(job_id, 1000)) if error_limit else []
    return {
        "job_id": job.job_id, "name": job.spec.get("name", ""), "state": job.state,
        "reason": job.error,
        "mini_batches": {"total": job.planned, "planning_done": job.planning_done,
                         "queued": max(0, job.planned - settled - running), "running": running,
                         "succeeded": totals.batches_succeeded, "failed": totals.batches_failed,
                         "failed_tries": totals.tries_failed},
        "items": {"total": decisions.items_total(job, totals)[0],
                  "succeeded": totals.items_succeeded, "failed": totals.items_failed},
        "items_counted": _items_counted(job, totals),
        "rows": totals.rows,
        "timings": {"created_at": job.created_at, "started_at": job.started_at,
                    "ended_at": job.ended_at, "elapsed_s": round(elapsed, 3)},
        "throughput": {"items_per_s": round((totals.items_succeeded + totals.items_failed)
                                            / elapsed, 2) if elapsed else 0.0},
        "stages": _stages(totals),
        "output": {"container": job.output_container, "prefix": job.output_prefix,
                   "blob": target.blob_name if job.spec.get("output_action") != "summary_only" else None,
                   "url": storage.blob_url(job.output_container, target.blob_name),
                   "logs": f"{job.output_container}/{blob_path(job.output_prefix, 'logs/')}",
                   "partial": JobState(job.state).terminal and totals.batches_succeeded < job.planned,
                   "replaced_by": replaced_by or None,
                   **({"note": f"output replaced by job {replaced_by}: its files are that job's, "
                               f"this job's rows are gone"} if replaced_by else {})},
        "errors": [{k: v for k, v in g.items() if k != "traceback" or i == 0}
                   for i, g in enumerate(errors[:error_limit])],
        "spec": job.spec,
    }


def _items_counted(job: JobRow, totals: Totals) -> dict[str, Any]:
    """How ``items`` was counted: ``total_estimated`` while a table's text pieces are not all read;
    ``failed_bounded``: failed items counted as the lines of pieces that could not be parsed (an
    upper bound on their rows), included in ``items.failed``; ``notes`` says both in words."""
    estimated = decisions.items_total(job, totals)[1]
    notes = []
    if estimated:
        notes.append("items.total is an estimate: the rows of text pieces not read yet are "
                     "estimated from the rows per byte of those read")
    if totals.items_bounded:
        notes.append(f"{totals.items_bounded} of the failed items are an upper bound: the lines "
                     "of pieces that could not be parsed")
    return {"total_estimated": estimated, "failed_bounded": totals.items_bounded, "notes": notes}


def _stages(totals: Totals) -> dict[str, Any]:
    """Where the tries' time went: seconds per stage in all, and milliseconds per try on average."""
    ms = {stage: getattr(totals, f"ms_{stage}") for stage in Totals.STAGES}
    return {"tries": totals.tries, "total_s": {k: round(v / 1000, 3) for k, v in ms.items()},
            "per_try_ms": {k: round(v / totals.tries, 1) if totals.tries else 0.0
                           for k, v in ms.items()},
            # counted at the transport in the worker's thread: reading the row, marking it running,
            # staging rows, the commit, enqueueing the successor, shipping logs (not the downloads,
            # which other threads make, nor the host's receive/delete of the message)
            "storage_calls_per_try": round(totals.calls / totals.tries, 2) if totals.tries else 0.0}


def replaced(storage: Storage, job: JobRow) -> str:
    """The newer job that took over this finished job's explicit output ("" if none did)."""
    if not job.spec.get("output"):
        return ""
    owner = claims.owner(storage, job.output_container, job.output_prefix)
    return owner if owner and owner != job.job_id else ""


def list_jobs(storage: Storage, limit: int = 50) -> list[dict[str, Any]]:
    return index.recent(storage, limit)


def output_exists(storage: Storage, container: str, blob: str) -> bool:
    try:
        storage.container(container).get_blob_client(blob).get_blob_properties()
        return True
    except ResourceNotFoundError:
        return False
