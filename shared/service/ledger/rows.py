"""The ledger's rows: one Table partition per job holding the job row, one row per mini-batch,
counter shards and error records; their types, their keys, and how long strings are stored.

Row keys: ``job``; ``b000000042`` (mini-batch 42); ``c-<instance>-<k>`` (counter shards, one set per
worker process so concurrent workers never contend); ``e000000042-001`` (error of try 1 of batch 42);
and, while a job with ``partition_keys`` is planned, ``p…`` rows (:data:`PARTITION_ROWS`): where each
combination of key values was first seen and its items, page by page.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, fields
from typing import Any

from azure.data.tables import EdmType, EntityProperty, TableEntity

from shared.errors import SubmitterError
from shared.spec import JobSpec, parse_spec
from shared.states import BatchState, ErrorKind, JobState

JOB_KEY = "job"
_CHUNK = 30_000          # characters per string property (Table limit: 64 KiB of UTF-16)
_MAX_CHUNKS = 28         # keeps an entity well under the 1 MiB limit
COUNTER_SHARDS = 4       # shards per worker process
TRANSACTION_OPS = 100            # operations per entity-group transaction (the service's limit)
TRANSACTION_CHARS = 3_000_000    # characters of strings per transaction (a request is <= 4 MiB)
PARTITION_CHUNKS = 15            # chunks of a partition row's items: 450,000 characters, which
PARTITION_ITEMS_CHARS = PARTITION_CHUNKS * _CHUNK   # keeps it under 1 MiB (strings count UTF-16)
PARTITION_ROWS = ("ps", "po", "pc")   # seen, order (+ first page's items), continuation


def wide(value: Any) -> Any:
    """An int outside Int32 as an Int64 property: the tables SDK sends every int as Int32 and
    refuses larger ones (a table of over 2 GiB of text, a long job's summed queue times)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -2**31 <= value < 2**31:
        return EntityProperty(value, EdmType.INT64)
    return value


def narrow(value: Any) -> Any:
    """An Int64 property read back as the int it holds (the SDK returns it wrapped)."""
    return value.value if isinstance(value, EntityProperty) else value


def batch_key(index: int) -> str:
    return f"b{index:09d}"


def put_long(entity: dict[str, Any], name: str, text: str, max_chunks: int = _MAX_CHUNKS,
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


def get_long(entity: dict[str, Any], name: str) -> str:
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
    fingerprint: dict[str, Any] = field(default_factory=dict)   # allow_reuse: shared.service.jobs.reuse
    reused_from: str = ""           # the succeeded job whose output this one took
    reuse_note: str = ""            # why it was, or was not, reused
    etag: str = ""

    _JSON = ("plan_cursor", "models", "schemas", "rerun", "fingerprint")

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
        put_long(entity, "spec", self.spec_json)
        for f in fields(self):
            if f.name in ("job_id", "etag", "spec_json"):
                continue
            value = getattr(self, f.name)
            if f.name in self._JSON:
                put_long(entity, f.name, json.dumps(value, separators=(",", ":")))
            else:
                entity[f.name] = wide(value)
        return entity

    @classmethod
    def from_entity(cls, e: TableEntity) -> JobRow:
        kw: dict[str, Any] = {"job_id": e["PartitionKey"], "etag": e.metadata["etag"],
                              "spec_json": get_long(e, "spec") or "{}"}
        for f in fields(cls):
            if f.name in kw:
                continue
            if f.name in cls._JSON:
                kw[f.name] = json.loads(get_long(e, f.name) or "{}")
            elif f.name in e:
                kw[f.name] = narrow(e[f.name])
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
            entity[f.name] = wide(getattr(self, f.name))
        if items:
            put_long(entity, "items", json.dumps(self.items, separators=(",", ":")))
            entity["n_items"] = len(self.items)
        return entity

    @classmethod
    def from_entity(cls, e: TableEntity) -> BatchRow:
        kw: dict[str, Any] = {"job_id": e["PartitionKey"], "index": int(e["RowKey"][1:]),
                              "etag": e.metadata["etag"],
                              "items": json.loads(get_long(e, "items") or "[]")}
        for f in fields(cls):
            if f.name not in kw and f.name in e:
                kw[f.name] = narrow(e[f.name])
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
    put_long(entity, "items", json.dumps(items, separators=(",", ":")), PARTITION_CHUNKS, True)
    return entity


def mark_entity(job_id: str, page: int, pos: int, combo: str) -> dict[str, Any]:
    """Marks a combination's order row: it has items on later pages too (continuation rows)."""
    return {"PartitionKey": job_id, "RowKey": order_key(page, pos, combo), "combo": combo,
            "more": True}


def continuation_entity(job_id: str, combo: str, page: int, items: list[list[Any]]
                        ) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": job_id, "RowKey": continuation_key(combo, page),
                              "combo": combo, "page": page, "n_items": len(items)}
    put_long(entity, "items", json.dumps(items, separators=(",", ":")), PARTITION_CHUNKS, True)
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
                   items=json.loads(get_long(e, "items") or "[]"))


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
        put_long(entity, "traceback", self.traceback[-_CHUNK * 4:])
        return entity

    @classmethod
    def from_entity(cls, e: dict[str, Any]) -> ErrorRecord:
        return cls(batch=e["batch"], attempt=e["attempt"], kind=ErrorKind(e["kind"]), message=e["message"],
                   traceback=get_long(e, "traceback"), file=e.get("file", ""),
                   node=e.get("node", ""), process=e.get("process", ""), at=e.get("at", 0.0))
