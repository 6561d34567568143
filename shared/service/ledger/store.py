"""The ledger: typed, conditional access to the Table that holds each job's rows
(:mod:`~shared.service.ledger.rows`).

Every state move is a conditional (ETag) write; a mini-batch's final transition and its counter
update commit together in one entity-group transaction, so only one writer can ever count it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import fields, replace
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.errors import NotFoundError
from shared.service.ledger import transactions
from shared.service.ledger.rows import (
    COUNTER_SHARDS,
    JOB_KEY,
    TRANSACTION_OPS,
    BatchRow,
    ErrorRecord,
    JobRow,
    PartitionRow,
    Totals,
    batch_key,
    narrow,
    seen_key,
    wide,
)
from shared.states import BatchState

log = logging.getLogger("parallelrun.ledger")


class Conflict(Exception):
    """A conditional write lost: somebody else changed the row first."""


class _Shard:
    def __init__(self, key: str) -> None:
        self.key = key
        self.lock = threading.Lock()
        self.values: dict[str, dict[str, int]] = {}   # job id -> counters
        self.etags: dict[str, str] = {}


class Ledger:
    """Typed, conditional access to the ledger table. One instance per process is enough."""

    def __init__(self, table: TableClient, instance_id: str | None = None) -> None:
        self.table = table
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self._shards = [_Shard(f"c-{self.instance_id}-{k}") for k in range(COUNTER_SHARDS)]
        self._next_shard = 0
        self._shard_lock = threading.Lock()

    # -- jobs ------------------------------------------------------------------------------
    def create_job(self, job: JobRow) -> JobRow:
        try:
            meta = self.table.create_entity(job.to_entity())
        except ResourceExistsError:
            existing = self.get_job(job.job_id)
            if existing.created_at != job.created_at:   # not our own create, answered late
                raise
            return existing
        return replace(job, etag=meta["etag"])

    def get_job(self, job_id: str) -> JobRow:
        try:
            return JobRow.from_entity(self.table.get_entity(job_id, JOB_KEY))
        except ResourceNotFoundError:
            raise NotFoundError(f"no such job: {job_id}") from None

    def update_job(self, job: JobRow, **changes: Any) -> JobRow:
        """Conditionally apply ``changes`` to ``job``: the row as written, with the ETag of the
        answer (nothing is read back). Raises :class:`Conflict` if it moved."""
        new = replace(job, **changes)
        try:
            meta = self.table.update_entity(new.to_entity(), mode=UpdateMode.REPLACE, etag=job.etag,
                                            match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            # the row moved, or our write landed, its answer was lost and the SDK's retry found
            # our own ETag: a row holding exactly what we wrote is ours (or an identical write's)
            latest = self.get_job(job.job_id)
            if replace(latest, etag="") == replace(new, etag=""):
                return latest
            raise Conflict(job.job_id) from None
        return replace(new, etag=meta["etag"])

    # -- mini-batches ----------------------------------------------------------------------
    def put_batches(self, rows: list[BatchRow]) -> None:
        """Upsert planned mini-batch rows (idempotent: re-planning writes the same content)."""
        for start in range(0, len(rows), 100):
            ops = [("upsert", r.to_entity(), {"mode": UpdateMode.REPLACE})
                   for r in rows[start:start + 100]]
            transactions.submit(self.table, ops)

    def get_batch(self, job_id: str, index: int) -> BatchRow | None:
        try:
            return BatchRow.from_entity(self.table.get_entity(job_id, batch_key(index)))
        except ResourceNotFoundError:
            return None

    def batches(self, job_id: str, lo: int = 0, hi: int | None = None,
                select: list[str] | None = None) -> Iterator[BatchRow]:
        """Mini-batch rows ``lo <= index < hi`` in index order."""
        upper = batch_key(hi) if hi is not None else "c"
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        params = {"pk": job_id, "lo": batch_key(lo), "hi": upper}
        for e in self.table.query_entities(query, parameters=params, select=select):
            if select is not None:
                e.setdefault("items", "[]")
            yield BatchRow.from_entity(e)

    # -- partitions (planning with partition_keys) -----------------------------------------
    def see_partitions(self, job_id: str, page: int, firsts: list[tuple[str, int]]
                       ) -> dict[str, tuple[int, int]]:
        """Where each combination ``(hash, position of its first item on page)`` was first seen:
        ``(page, position)``, recorded now (created, in transactions of up to 100) unless it was
        seen before, by an earlier page or by an earlier run of this page's step.

        A create that finds its row fails its whole transaction and names it: that one is read,
        and the transactions get smaller while rows keep turning out to exist (pages that meet
        combinations again), larger again while they do not."""
        found: dict[str, tuple[int, int]] = {}
        pending = list(firsts)
        size = TRANSACTION_OPS
        while pending:
            chunk = pending[:size]
            ops = [("create", {"PartitionKey": job_id, "RowKey": seen_key(combo), "page": page,
                               "pos": pos}) for combo, pos in chunk]
            try:
                transactions.submit(self.table, ops)
            except TableTransactionError as exc:
                if exc.status_code != 409:
                    raise
                at = exc.index if 0 <= exc.index < len(chunk) else 0
                combo, pos = chunk[at]
                seen = self._seen(job_id, combo)
                if seen is None:      # not the row that exists (no index in the answer): alone
                    seen = self._see_one(job_id, page, combo, pos)
                found[combo] = seen
                del pending[at]
                size = max(1, size // 2)
                continue
            found.update((combo, (page, pos)) for combo, pos in chunk)
            del pending[:len(chunk)]
            size = min(TRANSACTION_OPS, size * 2)
        return found

    def _seen(self, job_id: str, combo: str) -> tuple[int, int] | None:
        try:
            e = self.table.get_entity(job_id, seen_key(combo))
        except ResourceNotFoundError:
            return None
        return int(e["page"]), int(e["pos"])

    def _see_one(self, job_id: str, page: int, combo: str, pos: int) -> tuple[int, int]:
        try:
            self.table.create_entity({"PartitionKey": job_id, "RowKey": seen_key(combo),
                                      "page": page, "pos": pos})
        except ResourceExistsError:
            seen = self._seen(job_id, combo)
            if seen is None:
                raise
            return seen
        return page, pos

    def merge_rows(self, entities: list[dict[str, Any]]) -> None:
        """Upsert-merge rows of one partition in one transaction (see :func:`transaction_chunks`)."""
        transactions.submit(self.table, [("upsert", e, {"mode": UpdateMode.MERGE}) for e in entities])

    def partition_orders(self, job_id: str, after: str = "", page_rows: int = 200
                         ) -> Iterator[PartitionRow]:
        """The order rows after ``after`` (a row key; "" from the first), in key order: the
        combinations in order of first appearance, each with the items of its first page."""
        query = "PartitionKey eq @pk and RowKey gt @lo and RowKey lt 'pp'"
        params = {"pk": job_id, "lo": max(after, "po")}
        for e in self.table.query_entities(query, parameters=params, results_per_page=page_rows):
            yield PartitionRow.from_entity(e)

    def partition_continuations(self, job_id: str, combo: str) -> list[PartitionRow]:
        """A combination's continuation rows, in page order."""
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        params = {"pk": job_id, "lo": f"pc{combo}-", "hi": f"pc{combo}."}
        return [PartitionRow.from_entity(e) for e in self.table.query_entities(query, parameters=params)]

    def mark_running(self, batch: BatchRow, node: str) -> BatchRow:
        """Start a try (a fresh ``try_id``); raises :class:`Conflict` if the row moved."""
        new = replace(batch, state=BatchState.RUNNING, deliveries=batch.deliveries + 1,
                      node=node, try_id=uuid.uuid4().hex[:12], started_at=time.time())
        try:
            meta = self.table.update_entity(new.to_entity(items=False), mode=UpdateMode.MERGE,
                                            etag=batch.etag, match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            latest = self.get_batch(batch.job_id, batch.index)
            if latest is not None and latest.try_id == new.try_id:
                return latest   # our write landed; only its answer was lost (and retried)
            raise Conflict(batch_key(batch.index)) from None
        return replace(new, etag=meta["etag"])

    def commit(self, batch: BatchRow, delta: Totals, error: ErrorRecord | None = None) -> bool:
        """Write ``batch`` (its new state) conditionally on its ETag together with ``delta`` on one
        of this process's counter shards and ``error``. Returns False if the row moved meanwhile
        (the caller re-reads and decides again)."""
        shard = self._pick_shard()
        with shard.lock:
            current = shard.values.get(batch.job_id) or {f.name: 0 for f in fields(Totals)}
            counters = {k: current[k] + getattr(delta, k) for k in current}
            counter_entity = {"PartitionKey": batch.job_id, "RowKey": shard.key,
                              **{k: wide(v) for k, v in counters.items()}}
            etag = shard.etags.get(batch.job_id)
            counter_op: tuple[str, dict[str, Any], dict[str, Any]] = (
                ("update", counter_entity, {"mode": UpdateMode.REPLACE, "etag": etag,
                                            "match_condition": MatchConditions.IfNotModified})
                if etag else ("create", counter_entity, {}))
            ops = [("update", batch.to_entity(items=False),
                    {"mode": UpdateMode.MERGE, "etag": batch.etag,
                     "match_condition": MatchConditions.IfNotModified}),
                   counter_op]
            if error is not None:
                ops.append(("upsert", error.to_entity(batch.job_id), {"mode": UpdateMode.REPLACE}))
            try:
                result = transactions.submit(self.table, ops)
            except TableTransactionError as exc:
                if exc.status_code not in (404, 409, 412):   # 404: storage lost the shard
                    raise
                self._reload_shard(shard, batch.job_id)
                log.info("commit lost: job=%s batch=%d (%s)", batch.job_id, batch.index,
                         getattr(exc, "error_code", None))
                return False
            shard.values[batch.job_id] = counters
            shard.etags[batch.job_id] = result[1]["etag"]
            return True

    def _pick_shard(self) -> _Shard:
        with self._shard_lock:
            for _ in range(len(self._shards)):
                shard = self._shards[self._next_shard]
                self._next_shard = (self._next_shard + 1) % len(self._shards)
                if not shard.lock.locked():
                    return shard
            return shard

    def _reload_shard(self, shard: _Shard, job_id: str) -> None:
        try:
            e = self.table.get_entity(job_id, shard.key)
        except ResourceNotFoundError:
            shard.values.pop(job_id, None)
            shard.etags.pop(job_id, None)
            return
        shard.values[job_id] = {f.name: int(narrow(e.get(f.name, 0))) for f in fields(Totals)}
        shard.etags[job_id] = str(e.metadata["etag"])

    def unsettle(self, batch: BatchRow, note: ErrorRecord) -> bool:
        """Move a succeeded mini-batch whose staged rows storage lost back to ``pending``, taking
        its counts off the totals in the same transaction (no try is consumed). False if the row
        moved meanwhile."""
        new = replace(batch, state=BatchState.PENDING, block_id="", header="", rows=0, ok=0,
                      failed=0, error=note.message, reruns=batch.reruns + 1, ended_at=0.0)
        delta = Totals(batches_succeeded=-1, items_succeeded=-batch.ok, items_failed=-batch.failed,
                       rows=-batch.rows)
        return self.commit(new, delta, note)

    # -- counters and errors ---------------------------------------------------------------
    def totals(self, job_id: str) -> Totals:
        total = Totals()
        query = "PartitionKey eq @pk and RowKey ge 'c-' and RowKey lt 'c.'"
        for e in self.table.query_entities(query, parameters={"pk": job_id}):
            total = total + Totals(**{f.name: int(narrow(e.get(f.name, 0))) for f in fields(Totals)})
        return total

    def record_error(self, job_id: str, error: ErrorRecord) -> None:
        """An error that belongs to no try's commit (the job cannot run at all)."""
        self.table.upsert_entity(error.to_entity(job_id), mode=UpdateMode.REPLACE)

    def count_batches(self, job_id: str, state: str) -> int:
        query = "PartitionKey eq @pk and RowKey ge 'b' and RowKey lt 'c' and state eq @state"
        return sum(1 for _ in self.table.query_entities(
            query, parameters={"pk": job_id, "state": state}, select=["RowKey"]))

    def errors(self, job_id: str, limit: int = 100) -> list[ErrorRecord]:
        if limit <= 0:
            return []
        query = "PartitionKey eq @pk and RowKey ge 'e' and RowKey lt 'f'"
        out: list[ErrorRecord] = []
        for e in self.table.query_entities(query, parameters={"pk": job_id}, results_per_page=limit):
            out.append(ErrorRecord.from_entity(e))
            if len(out) >= limit:
                break
        return out
