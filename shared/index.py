"""The job index: one row per job in one partition, newest first, for ``GET /api/jobs``.

The ledger keeps one partition per job, which is right for workers but cannot be listed cheaply.
"""

from __future__ import annotations

from typing import Any

from .ledger import JobRow
from .storage import Storage

PARTITION = "jobs"
_FAR_FUTURE_MS = 10**13


def key(job: JobRow) -> str:
    return f"{_FAR_FUTURE_MS - int(job.created_at * 1000):013d}-{job.job_id}"


def add(storage: Storage, job: JobRow) -> None:
    storage.table(storage.settings.index_table).upsert_entity({
        "PartitionKey": PARTITION, "RowKey": key(job), "job_id": job.job_id,
        "name": job.spec.get("name", ""), "state": job.state, "created_at": job.created_at})


def set_state(storage: Storage, job: JobRow, state: str) -> None:
    storage.table(storage.settings.index_table).upsert_entity(
        {"PartitionKey": PARTITION, "RowKey": key(job), "state": str(state)})


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
