"""The job index: one row per job in one partition, newest first, for ``GET /api/jobs``.

The ledger keeps one partition per job, which is right for workers but cannot be listed cheaply.
The index row is written before the job row at submission, so every accepted job can be found
(and swept, see :mod:`shared.service.jobs.sweep`). Its state follows the job's: ``queued`` at submission,
``running`` at the first planning step, ``finalizing``, then the final state. A state is only ever
replaced by a later one (:func:`advances`, a conditional write), so a late ``running`` cannot
overwrite ``succeeded``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.service.ledger.rows import JobRow
from shared.states import JobState
from shared.storage import Storage

log = logging.getLogger("parallelrun.index")

PARTITION = "jobs"
_FAR_FUTURE_MS = 10**13
_RANK = {JobState.QUEUED: 0, JobState.RUNNING: 1, JobState.FINALIZING: 2,
         JobState.SUCCEEDED: 3, JobState.FAILED: 3, JobState.CANCELLED: 3}


def key(job: JobRow) -> str:
    return f"{_FAR_FUTURE_MS - int(job.created_at * 1000):013d}-{job.job_id}"


def rank(state: str) -> int:
    """How far along a job in ``state`` is (unknown states: not at all)."""
    try:
        return _RANK[JobState(state)]
    except ValueError:
        return -1


def advances(current: str, new: str) -> bool:
    """Whether the index row may move from ``current`` to ``new``: only forwards, and a final
    state is never replaced (not even by another final state)."""
    return rank(new) > rank(current)


def add(storage: Storage, job: JobRow) -> None:
    storage.table(storage.settings.index_table).upsert_entity({
        "PartitionKey": PARTITION, "RowKey": key(job), "job_id": job.job_id,
        "name": job.name, "state": job.state, "created_at": job.created_at})


def set_state(storage: Storage, job: JobRow, state: str, reason: str = "") -> bool:
    """Move the job's index row to ``state`` unless it is already there or further; returns
    whether it moved. Conditional on the row's ETag, so concurrent writers cannot go backwards."""
    table = storage.table(storage.settings.index_table)
    for _ in range(10):
        try:
            row = table.get_entity(PARTITION, key(job))
        except ResourceNotFoundError:   # a job submitted before the index was written first
            row = None
        if row is not None and not advances(row.get("state", ""), state):
            return False
        entity = {"PartitionKey": PARTITION, "RowKey": key(job), "job_id": job.job_id,
                  "name": job.name, "created_at": job.created_at,
                  "state": str(state), "updated_at": time.time()}
        if reason:
            entity["reason"] = reason
        try:
            if row is None:
                table.create_entity(entity)
            else:
                table.update_entity(entity, mode=UpdateMode.MERGE, etag=row.metadata["etag"],
                                    match_condition=MatchConditions.IfNotModified)
            return True
        except (ResourceModifiedError, ResourceExistsError):
            continue   # somebody else moved it first: look again
    log.warning("index row of job %s kept changing; state %s not written", job.job_id, state)
    return False


def stale(storage: Storage, states: tuple[str, ...], older_than_s: float,
          now: float | None = None) -> list[dict[str, Any]]:
    """Index rows in one of ``states`` not written for ``older_than_s`` seconds (for the sweep)."""
    now = time.time() if now is None else now
    table = storage.table(storage.settings.index_table)
    params: dict[str, Any] = {"p": PARTITION, **{f"s{i}": s for i, s in enumerate(states)}}
    wanted = " or ".join(f"state eq @s{i}" for i in range(len(states)))
    out = []
    for e in table.query_entities(f"PartitionKey eq @p and ( {wanted} )", parameters=params):
        written = float(e.get("updated_at") or e.get("created_at") or 0.0)
        if now - written >= older_than_s:
            out.append({"job_id": e["job_id"], "name": e.get("name", ""), "state": e["state"],
                        "created_at": float(e.get("created_at") or 0.0), "updated_at": written,
                        "progress": e.get("progress", "")})
    return out


def note_progress(storage: Storage, job: JobRow, progress: str, now: float) -> None:
    """Record what the sweep saw of a running job (a merge of two fields: the state is untouched),
    so that the next sweep, a grace period later, can tell whether it moved."""
    storage.table(storage.settings.index_table).update_entity(
        {"PartitionKey": PARTITION, "RowKey": key(job), "progress": progress, "updated_at": now},
        mode=UpdateMode.MERGE)


def recent(storage: Storage, limit: int = 50) -> list[dict[str, Any]]:
    table = storage.table(storage.settings.index_table)
    out = []
    for e in table.query_entities("PartitionKey eq @p", parameters={"p": PARTITION},
                                  results_per_page=limit):
        out.append({"job_id": e["job_id"], "name": e.get("name", ""), "state": e.get("state", ""),
                    "created_at": e.get("created_at", 0.0)})
        if len(out) >= limit:
            break
    return out
