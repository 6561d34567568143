"""The ledger: one Table partition per job holding the job row, one row per mini-batch, counter
shards and error records.

Row keys: ``job``; ``b000000042`` (mini-batch 42); ``c-<instance>-<k>`` (counter shards, one set per
worker process so concurrent workers never contend); ``e000000042-001`` (error of try 1 of batch 42);
and, while a job with ``partition_keys`` is planned, ``p…`` rows (:data:`PARTITION_ROWS`): where each
combination of key values was first seen and its items, page by page.
Every state move is a conditional (ETag) write; a mini-batch's final transition and its counter
update commit together in one entity-group transaction, so only one writer can ever count it.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, TableTransactionError, UpdateMode

from shared.errors import NotFoundError, SubmitterError
from shared.spec import JobSpec, parse_spec
from shared.states import BatchState, ErrorKind, JobState

log = logging.getLogger("parallelrun.ledger")

JOB_KEY = "job"
_CHUNK = 30_000          # characters per string property (Table limit: 64 KiB of UTF-16)
_MAX_CHUNKS = 28         # keeps an entity well under the 1 MiB limit
COUNTER_SHARDS = 4       # shards per worker process
TRANSACTION_OPS = 100            # operations per entity-group transaction (the service's limit)
TRANSACTION_CHARS = 3_000_000    # characters of strings per transaction (a request is <= 4 MiB)
PARTITION_CHUNKS = 15            # chunks of a partition row's items: 450,000 characters, which
PARTITION_ITEMS_CHARS = PARTITION_CHUNKS * _CHUNK   # keeps it under 1 MiB (strings count UTF-16)
PARTITION_ROWS = ("ps", "po", "pc")   # seen, order (+ first page's items), continuation


class Conflict(Exception):
    """A conditional write lost: somebody else changed the row first."""


def batch_key(index: int) -> str:
    return f"b{index:09d}"


def _put_long(entity: dict[str, Any], name: str, text: str, max_chunks: int = _MAX_CHUNKS,
              counted: bool = False) -> None:
    """``text`` as properties ``name``, ``name_1``, ... of at most ``_CHUNK`` characters each;
    ``counted`` also records their number (``name_n``), for rows written by merging, where the
    chunks of a longer earlier text stay behind."""
    chunks = [text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    if len(chunks) > max_chunks:
        raise ValueError(f"{name} is too large for a ledger row ({len(text):,} characters)")
    entity[name] = chunks[0]
    for i, chunk in enumerate(chunks[1:], 1):
        entity[f"{name}_{i}"] = chunk
    if counted:
        entity[f"{name}_n"] = len(chunks)


def _get_long(entity: dict[str, Any], name: str) -> str:
    parts, i = [entity.get(name, "")], 1
    count = entity.get(f"{name}_n")
    while (i < count) if count is not None else f"{name}_{i}" in entity:
        parts.append(entity[f"{name}_{i}"])
        i += 1
    return "".join(parts)


@functools.lru_cache(maxsize=512)
def _parsed(spec_json: str) -> JobSpec:
    """The JobSpec of a stored spec, parsed once per process and text (JobSpec is frozen). Trusted:
    it was accepted under the limits at submission (shared.spec.parse_spec)."""
    return parse_spec(spec_json)


def spec_json(spec: JobSpec) -> str:
    """How a job row stores its spec: the normalised spec as compact JSON."""
    return json.dumps(spec.to_dict(), separators=(",", ":"))


@dataclass(frozen=True)
class JobRow:
    job_id: str
    spec_json: str = "{}"             # stored as the row's "spec"; read as .spec, parsed once
    state: str = JobState.QUEUED
    planned: int = 0
    items_total: int = 0             # files; for tables, the rows known at planning (Parquet)
    text_bytes: int = 0              # tables: bytes of the text pieces planned (rows not known)
    planning_done: bool = False
    plan_step: int = 0
    plan_cursor: dict[str, Any] = field(default_factory=dict)
    window: int = 1
    snapshot: str = ""
    models: dict[str, int] = field(default_factory=dict)
    schemas: dict[str, Any] = field(default_factory=dict)   # tabular input index -> schema
    output_container: str = ""
    output_prefix: str = ""
    stop_reason: str = ""
    stopped_at: float = 0.0
    error: str = ""
    rows: int = 0
    created_at: float = 0.0
    started_at: float = 0.0
    ended_at: float = 0.0
    repairs: int = 0                # rounds in which the finalizer re-ran mini-batches storage lost
    rerun: dict[str, str] = field(default_factory=dict)   # the last round: index -> lost block id
    checkpoint_at: float = 0.0      # when the staged rows were last committed (long jobs)
    etag: str = ""

    _JSON = ("plan_cursor", "models", "schemas", "rerun")

    @functools.cached_property
    def spec(self) -> JobSpec:
        """The job's spec, parsed (raises SpecError if a stored spec no longer parses, and for
        the row the sweep writes for an abandoned submission, which has none)."""
        return _parsed(self.spec_json)

    @property
    def name(self) -> str:
        """The job's name ("" if it has none), also for a row whose spec does not parse."""
        try:
            return self.spec.name or ""
        except SubmitterError:
            value = json.loads(self.spec_json or "{}")
            return str(value.get("name") or "") if isinstance(value, dict) else ""

    @property
    def has_spec(self) -> bool:
        """Whether the row's spec parses (False for an abandoned submission's row)."""
        try:
            self.spec  # noqa: B018 - parsed once, then cached
        except SubmitterError:
            return False
        return True

    def to_entity(self) -> dict[str, Any]:
        entity: dict[str, Any] = {"PartitionKey": self.job_id, "RowKey": JOB_KEY}
        _put_long(entity, "spec", self.spec_json)
        for f in fields(self):
            if f.name in ("job_id", "etag", "spec_json"):
                continue
            value = getattr(self, f.name)
            if f.name in self._JSON:
                _put_long(entity, f.name, json.dumps(value, separators=(",", ":")))
            else:
                entity[f.name] = value
        return entity

    @classmethod
    def from_entity(cls, e: TableEntity) -> JobRow:
        kw: dict[str, Any] = {"job_id": e["PartitionKey"], "etag": e.metadata["etag"],
                              "spec_json": _get_long(e, "spec") or "{}"}
        for f in fields(cls):
            if f.name in kw:
                continue
            if f.name in cls._JSON:
                kw[f.name] = json.loads(_get_long(e, f.name) or "{}")
            elif f.name in e:
                kw[f.name] = e[f.name]
        return cls(**kw)

    @property
    def active(self) -> bool:
        """Mini-batches of this job may still run (not stopped, not finalizing or finished)."""
        return self.state in (JobState.QUEUED, JobState.RUNNING) and not self.stop_reason


@dataclass(frozen=True)
class BatchRow:
    job_id: str
    index: int
    items: list[list[Any]]           # [[input index, blob name], ...] in input order
    state: str = BatchState.PENDING
    tries: int = 0                   # failed tries so far (raise, timeout, crash)
    deliveries: int = 0              # times a worker started it
    try_id: str = ""                 # set when a try starts; identifies its commits
    block_id: str = ""
    shard: int = 0
    size: int = -1                   # items once known: files, or a table's rows once loaded
    header: str = ""                 # output_format csv: the result's header line
    reruns: int = 0                  # times it ran again because storage lost its staged rows
    rows: int = 0
    ok: int = 0
    failed: int = 0
    error: str = ""
    node: str = ""
    pid: int = 0
    started_at: float = 0.0
    ended_at: float = 0.0
    etag: str = ""

    def to_entity(self, items: bool = True) -> dict[str, Any]:
        """The row as an entity; without ``items`` for a merge that leaves the item list (which
        only the planner writes, and which never changes) where it is."""
        entity: dict[str, Any] = {"PartitionKey": self.job_id, "RowKey": batch_key(self.index)}
        for f in fields(self):
            if f.name in ("job_id", "index", "etag", "items"):
                continue
            entity[f.name] = getattr(self, f.name)
        if items:
            _put_long(entity, "items", json.dumps(self.items, separators=(",", ":")))
            entity["n_items"] = len(self.items)
        return entity

    @classmethod
    def from_entity(cls, e: TableEntity) -> BatchRow:
        kw: dict[str, Any] = {"job_id": e["PartitionKey"], "index": int(e["RowKey"][1:]),
                              "etag": e.metadata["etag"],
                              "items": json.loads(_get_long(e, "items") or "[]")}
        for f in fields(cls):
            if f.name not in kw and f.name in e:
                kw[f.name] = e[f.name]
        return cls(**kw)

    @property
    def settled(self) -> bool:
        return BatchState(self.state).settled


def seen_key(combo: str) -> str:
    """Where a combination of partition key values was first seen (``combo``: its hash)."""
    return f"ps{combo}"


def order_key(page: int, pos: int, combo: str) -> str:
    """A combination's order row: keyed by the planner step (page) and the position on that page
    of its first item, so the rows in key order are the combinations in order of first appearance."""
    return f"po{page:09d}{pos:010d}-{combo}"


def continuation_key(combo: str, page: int) -> str:
    """The items of a combination on a later page than its first."""
    return f"pc{combo}-{page:09d}"


def order_entity(job_id: str, page: int, pos: int, combo: str, items: list[list[Any]]
                 ) -> dict[str, Any]:
    """A combination's order row with the items of its first page (written by merging, so a
    ``more`` mark that a later page added stays)."""
    entity: dict[str, Any] = {"PartitionKey": job_id, "RowKey": order_key(page, pos, combo),
                              "combo": combo, "page": page, "n_items": len(items)}
    _put_long(entity, "items", json.dumps(items, separators=(",", ":")), PARTITION_CHUNKS, True)
    return entity


def mark_entity(job_id: str, page: int, pos: int, combo: str) -> dict[str, Any]:
    """Marks a combination's order row: it has items on later pages too (continuation rows)."""
    return {"PartitionKey": job_id, "RowKey": order_key(page, pos, combo), "combo": combo,
            "more": True}


def continuation_entity(job_id: str, combo: str, page: int, items: list[list[Any]]
                        ) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": job_id, "RowKey": continuation_key(combo, page),
                              "combo": combo, "page": page, "n_items": len(items)}
    _put_long(entity, "items", json.dumps(items, separators=(",", ":")), PARTITION_CHUNKS, True)
    return entity


def transaction_chunks(entities: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``entities`` (one partition, distinct rows) cut into transactions: at most
    ``TRANSACTION_OPS`` each, and at most ``TRANSACTION_CHARS`` of strings unless one row alone
    has more."""
    chunks: list[list[dict[str, Any]]] = []
    size = 0
    for entity in entities:
        chars = sum(len(v) for v in entity.values() if isinstance(v, str))
        if not chunks or len(chunks[-1]) >= TRANSACTION_OPS or size + chars > TRANSACTION_CHARS:
            chunks.append([])
            size = 0
        chunks[-1].append(entity)
        size += chars
    return chunks


@dataclass(frozen=True)
class PartitionRow:
    """An order row (``more``: the combination has continuation rows) or a continuation row."""

    key: str
    combo: str
    page: int
    items: list[list[Any]]
    more: bool = False

    @classmethod
    def from_entity(cls, e: TableEntity) -> PartitionRow:
        key = e["RowKey"]
        page = int(key[2:11]) if key.startswith("po") else int(e.get("page", 0))
        return cls(key=key, combo=e.get("combo", ""), page=page, more=bool(e.get("more", False)),
                   items=json.loads(_get_long(e, "items") or "[]"))


@dataclass(frozen=True)
class Totals:
    """The job's counters, summed over every counter shard."""

    batches_succeeded: int = 0
    batches_failed: int = 0
    items_succeeded: int = 0
    items_failed: int = 0
    tries_failed: int = 0
    rows: int = 0
    tries: int = 0          # tries settled (succeeded, failed or retried), for averages
    ms_queue: int = 0       # waiting in the queue: enqueued -> a worker started the try
    ms_download: int = 0    # fetching the mini-batch's files
    ms_wait: int = 0        # waiting for a free scoring process (including init())
    ms_run: int = 0         # run() (for tables: reading the pieces, then run())
    ms_write: int = 0       # staging rows, uploading outputs and logs
    calls: int = 0          # storage round trips of the worker, besides downloading inputs
    items_bounded: int = 0  # failed items counted as an upper bound (lines of unparsable pieces)
    text_bytes_read: int = 0   # bytes of settled text pieces (tables), and their rows:
    text_rows_read: int = 0    # what estimates the rows of the pieces not read yet

    STAGES = ("queue", "download", "wait", "run", "write")

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def batches_done(self) -> int:
        return self.batches_succeeded + self.batches_failed


@dataclass(frozen=True)
class ErrorRecord:
    """One failed try, as the status API and the logs show it."""

    batch: int
    attempt: int
    kind: ErrorKind
    message: str
    traceback: str = ""
    file: str = ""
    node: str = ""
    process: str = ""
    at: float = 0.0

    def to_entity(self, job_id: str) -> dict[str, Any]:
        entity = {"PartitionKey": job_id,
                  "RowKey": f"e{self.batch:09d}-{self.attempt:03d}-{self.kind}-{int(self.at * 1000)}",
                  "batch": self.batch, "attempt": self.attempt, "kind": self.kind,
                  "message": self.message[:_CHUNK], "file": self.file, "node": self.node,
                  "process": self.process, "at": self.at}
        _put_long(entity, "traceback", self.traceback[-_CHUNK * 4:])
        return entity

    @classmethod
    def from_entity(cls, e: dict[str, Any]) -> ErrorRecord:
        return cls(batch=e["batch"], attempt=e["attempt"], kind=ErrorKind(e["kind"]), message=e["message"],
                   traceback=_get_long(e, "traceback"), file=e.get("file", ""),
                   node=e.get("node", ""), process=e.get("process", ""), at=e.get("at", 0.0))


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
            self.table.submit_transaction(ops)

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
                self.table.submit_transaction(ops)
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
        self.table.submit_transaction([("upsert", e, {"mode": UpdateMode.MERGE}) for e in entities])

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
            counter_entity = {"PartitionKey": batch.job_id, "RowKey": shard.key, **counters}
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
                result = self.table.submit_transaction(ops)
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
        shard.values[job_id] = {f.name: int(e.get(f.name, 0)) for f in fields(Totals)}
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
            total = total + Totals(**{f.name: int(e.get(f.name, 0)) for f in fields(Totals)})
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
