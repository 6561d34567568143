"""One owner per output: an explicit ``output`` (container + folder) is claimed by one job.

A claim is a row of the job index table (partition ``outputs``), keyed by the output folder. A job
may take an output that no unfinished job owns; a second job whose output equals or overlaps (one
folder inside the other) the output of an unfinished job is refused with :class:`ConflictError`
naming the owner. Once the owner has finished, a new job may take the output over; the old job's
status then says "output replaced by job X". Default outputs (``<output container>/<job id>``)
are unique and need no claim.

Atomic without a lock: the exact key is created if-not-exists or replaced conditionally (ETag), and
overlaps are checked before and again after writing (write first, read second: of two overlapping
submitters at least one sees the other, and a loser withdraws its claim).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.errors import ConflictError, NotFoundError
from shared.service.ledger.store import Ledger
from shared.states import JobState
from shared.storage import Storage

log = logging.getLogger("parallelrun.claims")

PARTITION = "outputs"
SUBMIT_GRACE_S = 300.0   # a claim whose job row is not written yet belongs to a submit in progress


def folder(container: str, prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{container}/{prefix}/" if prefix else f"{container}/"


def key(container: str, prefix: str) -> str:
    """The claim's row key: the folder, percent-encoded (a row key may not hold ``/``); encoding
    keeps prefixes, so a folder's sub-folders are one key range."""
    return quote(folder(container, prefix), safe="")


def _enclosing(container: str, prefix: str) -> list[str]:
    """Keys of the folders that contain this one (the container's root, then each parent)."""
    parts = [p for p in prefix.strip("/").split("/") if p]
    return [key(container, "/".join(parts[:n])) for n in range(len(parts))]


def _overlapping(table: TableClient, container: str, prefix: str) -> list[dict[str, Any]]:
    found = []
    for k in _enclosing(container, prefix):
        try:
            found.append(table.get_entity(PARTITION, k))
        except ResourceNotFoundError:
            pass
    own = key(container, prefix)
    query = "PartitionKey eq @p and RowKey ge @lo and RowKey lt @hi"
    found += table.query_entities(query, parameters={"p": PARTITION, "lo": own,
                                                     "hi": own[:-1] + chr(ord(own[-1]) + 1)})
    return [dict(e) for e in found]


def _busy(ledger: Ledger, claim: dict[str, Any], now: float) -> str:
    """The state of the claim's owner if it still owns the output ("" if it finished)."""
    try:
        state = JobState(ledger.get_job(claim["job_id"]).state)
    except NotFoundError:
        return "being submitted" if now - claim.get("claimed_at", 0.0) < SUBMIT_GRACE_S else ""
    return "" if state.terminal else state.value


def _refuse(claim: dict[str, Any], state: str, container: str, prefix: str,
            job_id: str) -> ConflictError:
    theirs = folder(claim["container"], claim["prefix"])
    ours = folder(container, prefix)
    how = "is" if theirs == ours else f"overlaps {theirs}, which is"
    return ConflictError(
        f"output {ours} {how} the output of job {claim['job_id']} ({state}); two jobs never "
        f"write one output: choose another output folder (resubmit: --set output=<container>/"
        f"<folder>), or wait until job {claim['job_id']} has finished to replace its output",
        owner=claim["job_id"], job_id=job_id)


def claim(storage: Storage, ledger: Ledger, job_id: str, container: str, prefix: str) -> None:
    """Make ``job_id`` the owner of ``container/prefix``, or raise :class:`ConflictError`."""
    table = storage.table(storage.settings.index_table)
    now = time.time()
    for other in _overlapping(table, container, prefix):
        state = _busy(ledger, other, now) if other["job_id"] != job_id else ""
        if state:
            raise _refuse(other, state, container, prefix, job_id)
    entity = {"PartitionKey": PARTITION, "RowKey": key(container, prefix), "job_id": job_id,
              "container": container, "prefix": prefix.strip("/"), "claimed_at": now,
              "previous": ""}
    try:
        table.create_entity(entity)
    except ResourceExistsError:
        current = table.get_entity(PARTITION, str(entity["RowKey"]))
        if current["job_id"] != job_id:
            state = _busy(ledger, current, now)
            if state:
                raise _refuse(current, state, container, prefix, job_id) from None
            try:
                table.update_entity({**entity, "previous": current["job_id"]},
                                    mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                    match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError:
                return claim(storage, ledger, job_id, container, prefix)   # decide again
            log.info("output %s taken over by job %s from finished job %s",
                     folder(container, prefix), job_id, current["job_id"])
    for other in _overlapping(table, container, prefix):   # a concurrent overlapping claim?
        if other["job_id"] != job_id and other["RowKey"] != entity["RowKey"]:
            state = _busy(ledger, other, now)
            if state:
                release(storage, job_id, container, prefix)
                raise _refuse(other, state, container, prefix, job_id)


def release(storage: Storage, job_id: str, container: str, prefix: str) -> None:
    """Withdraw ``job_id``'s claim (a refused submit), only if it still holds it."""
    table = storage.table(storage.settings.index_table)
    try:
        current = table.get_entity(PARTITION, key(container, prefix))
    except ResourceNotFoundError:
        return
    if current["job_id"] == job_id:
        try:
            table.delete_entity(PARTITION, current["RowKey"], etag=current.metadata["etag"],
                                match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            pass


def owner(storage: Storage, container: str, prefix: str) -> str:
    """The job that owns ``container/prefix`` now ("" if none claimed it)."""
    try:
        return storage.table(storage.settings.index_table).get_entity(
            PARTITION, key(container, prefix))["job_id"]
    except ResourceNotFoundError:
        return ""
