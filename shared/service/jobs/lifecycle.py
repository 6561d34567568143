"""Job operations shared by the HTTP API, the blob-upload trigger and the CLI: submit, resubmit,
list, cancel (how a job stops is :mod:`shared.service.jobs.stopping`; what a job looks like to a
user is :mod:`shared.service.jobs.status`).

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
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared import environment
from shared.environment import Resolved
from shared.errors import IntegrityError, NotFoundError, SpecError, SubmitterError
from shared.service import outbox
from shared.service.jobs import claims, reuse, stopping
from shared.service.jobs import joblist as index
from shared.service.jobs.status import job_status
from shared.service.ledger import decisions
from shared.service.ledger.rows import JobRow, spec_json
from shared.service.ledger.store import Ledger
from shared.service.working import models, snapshots
from shared.service.working.environments import Environments
from shared.service.working.jobcontext import process_count
from shared.settings import Settings
from shared.spec import JobSpec, parse_spec
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
    """Inputs, side inputs and output may not name the service's own containers, queues or
    tables (pure)."""
    internal = internal_names(settings)

    def why(container: str) -> str | None:
        if container in internal:
            return internal[container]
        if container.startswith(HOST_CONTAINER_PREFIXES):
            return "a container of the Functions host"
        return None

    named = [(f"inputs.{n}.container", item.container or "") for n, item in enumerate(spec.inputs)]
    named += [(f"side_inputs.{n}.container", side.source.container)
              for n, side in enumerate(spec.side_inputs or []) if side.model is None]
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


def _check_references(storage: Storage, spec: JobSpec, hashes: dict[str, str] | None = None
                      ) -> tuple[dict[str, int], Resolved | None, list[dict[str, str]]]:
    """Resolve models and the environment, check the snapshot and inputs exist; returns (model
    pins, the environment's requirements, errors); ``hashes`` gets each model's content hash."""
    errors = reserved_name_errors(storage.settings, spec)
    refused = {e["field"] for e in errors}
    resolved = None
    if not spec.source_directory or not spec.source_directory.startswith(snapshots.PREFIX):
        errors.append({"field": "source_directory", "message": "must be a code snapshot reference "
                       "(snapshot:<sha256>); the CLI uploads a local folder and fills this in"})
    else:
        try:
            with snapshots.open_zip(storage, spec.source_directory) as zf:
                if spec.entry_script not in zf.namelist():
                    errors.append({"field": "entry_script", "message":
                                   f"{spec.entry_script} is not in source_directory {spec.source_directory}"})
                resolved = environment.resolve(spec.environment, lambda name: snapshots.read_text(zf, name))
            why = Environments.for_settings(Path("."), storage.settings).refusal(resolved) if resolved else None
            if why:
                errors.append({"field": "environment", "message": why})
        except (NotFoundError, IntegrityError) as exc:
            errors.append({"field": "source_directory", "message": str(exc)})
        except (environment.BadEnvironment, SubmitterError) as exc:
            errors.append({"field": "environment", "message": str(exc).removeprefix("environment: ")})
    pins: dict[str, int] = {}
    for n, (name, version) in enumerate(spec.effective_models()):
        try:
            model = models.get_version(storage, name, version)
            pins[name] = model.version
            if hashes is not None:
                hashes[name] = model.sha256
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
    for n, side in enumerate(spec.side_inputs or []):
        if side.model is None and not storage.container(side.source.container).exists():
            errors.append({"field": f"side_inputs.{n}.container",
                           "message": f"container {side.source.container!r} does not exist"})
    return pins, resolved, errors


def submit(storage: Storage, ledger: Ledger, data: Any) -> JobRow:
    """Validate and accept a job; returns its ledger row. Raises SpecError (nothing written)."""
    spec = data if isinstance(data, JobSpec) else parse_spec(data, storage.settings.limits)
    hashes: dict[str, str] = {}
    pins, resolved, errors = _check_references(storage, spec, hashes)
    if errors:
        raise SpecError(errors)
    if resolved is not None:    # the row carries the requirements, not a file name
        spec = spec.model_copy(update={"environment": resolved.to_json()})
    fingerprint = reuse.fingerprint(storage, spec, pins, hashes)
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
        job_id=job_id, spec_json=spec_json(spec), snapshot=spec.source_directory or "", models=pins,
        output_container=container, output_prefix=prefix, window=window, created_at=time.time(),
        fingerprint=fingerprint)
    index.add(storage, job)     # first, so that every accepted job can be found (and swept)
    try:
        job = ledger.create_job(job)
    except BaseException:
        if spec.output is not None:
            claims.release(storage, job_id, container, prefix)
        raise
    outbox.plan(storage, job_id, 0)
    log.info("submitted: job=%s inputs=%d window=%d", job_id, len(spec.inputs), window)
    return job


def resubmit(storage: Storage, ledger: Ledger, job_id: str, overrides: dict[str, Any]) -> JobRow:
    """Submit a job again with some fields replaced (new data, batch size, processes...). An
    explicit output is kept: while the old job runs, that is refused (409) unless the overrides
    name another output."""
    old = ledger.get_job(check_job_id(job_id))
    spec = old.spec.with_overrides(overrides, storage.settings.limits)
    return submit(storage, ledger, spec)


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
