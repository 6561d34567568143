"""The planner: lists a job's inputs page by page, writes mini-batch rows, keeps the queue short.

Each invocation plans one page of one input (``PlanMessage.step`` guards against duplicates), writes
its mini-batch rows, advances the job's cursor with a conditional write, then enqueues: the first
``window`` mini-batches of the job, plus any mini-batch whose predecessor ``index - window``
already settled (its finisher could not enqueue it because it was not planned yet). Every other
mini-batch is enqueued by the finisher of its predecessor (see :mod:`shared.service.working.worker`).
With ``partition_keys``, the listing steps record each page's items by combination and write no
mini-batch; further steps then cut one mini-batch per combination (:mod:`.partitions`).

Two overlaps keep a step short without changing what it commits:

* a page's mini-batch rows are written as concurrent entity-group transactions (all of them finish
  before the cursor moves, so workers never see a cursor ahead of its rows);
* as soon as a step knows where the next page starts, that page is listed in the background, and
  the next step takes it if this process runs it (``_Prefetcher``). Otherwise the next step lists
  it itself, exactly as without listing ahead, and listing ahead stops for the job (the cursor's
  ``ahead``). Listing is not a snapshot in Azure Storage either, so a page listed a moment earlier
  is as right as one listed now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from shared.errors import SubmitterError
from shared.messages import PlanMessage
from shared.service import outbox
from shared.service.jobs import joblist as index
from shared.service.jobs import reuse, stopping
from shared.service.ledger import decisions
from shared.service.ledger.rows import BatchRow, JobRow
from shared.service.ledger.store import Conflict, Ledger
from shared.service.planning import fileinputs as datasets
from shared.service.planning import partitions, tables
from shared.spec import InputSpec, JobSpec, parse_mini_batch_size
from shared.states import BatchState, JobState
from shared.storage import Storage, blob_path

log = logging.getLogger("parallelrun.planner")

TRANSACTION_ROWS = 100      # an entity-group transaction holds at most 100 operations
WRITE_CONCURRENCY = 4       # transactions of one page in flight at once (1: one after another)
PREFETCH = True             # list the next page while the current one is written

Page = tuple[list[str], str | None, list[Any] | None]   # blob names, the next page's token, (ETag, size)s


@dataclass
class _Pending:
    started: float
    future: Future[Page]


class _Prefetcher:
    """Pages listed ahead for the next planner step, kept in this process.

    At most ``max_pages`` pages (~0.5 MB each) are held, each for at most ``ttl_s``: a page whose
    step runs in another process is simply dropped. A page that failed to list is never used (the
    step lists again and meets the error itself)."""

    def __init__(self, max_pages: int = 4, ttl_s: float = 120.0) -> None:
        self.max_pages = max_pages
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._pages: OrderedDict[Hashable, _Pending] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="plan-prefetch")

    def start(self, key: Hashable, list_fn: Callable[[], Page]) -> None:
        with self._lock:
            self._expire()
            if key in self._pages:
                return
            while len(self._pages) >= self.max_pages:
                self._pages.popitem(last=False)[1].future.cancel()
            self._pages[key] = _Pending(time.monotonic(), self._pool.submit(list_fn))

    def take(self, key: Hashable) -> Page | None:
        """The page listed ahead under ``key`` (waiting for it if still listing), or None."""
        with self._lock:
            self._expire()
            pending = self._pages.pop(key, None)
        if pending is None:
            return None
        try:
            return pending.future.result()
        except Exception as exc:  # noqa: BLE001 - the step lists again and handles the error
            log.info("prefetched page failed, listing again: %s", exc)
            return None

    def clear(self) -> None:
        with self._lock:
            for pending in self._pages.values():
                pending.future.cancel()
            self._pages.clear()

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, p in self._pages.items() if now - p.started > self.ttl_s]:
            self._pages.pop(key).future.cancel()


_prefetcher = _Prefetcher()
_writers = ThreadPoolExecutor(max_workers=WRITE_CONCURRENCY, thread_name_prefix="plan-write")


def plan_step(storage: Storage, ledger: Ledger, msg: PlanMessage) -> None:
    """Plan one page of the job's inputs. Safe to run more than once per message."""
    job = ledger.get_job(msg.job_id)
    if job.active and job.plan_step == msg.step + 1:
        _side_effects(storage, ledger, job)   # the step was committed; its planner may have died
        return
    if not job.active or job.plan_step != msg.step or job.planning_done:
        log.info("plan step dropped: job=%s step=%d (job step=%d, state=%s)", msg.job_id,
                 msg.step, job.plan_step, job.state)
        return
    note = job.reuse_note
    try:
        if msg.step == 0:
            decision = reuse.decide(storage, ledger, job)
            if decision.reuse is not None:
                _take_over(storage, ledger, job, decision)
                return
            note = decision.note
        new_rows, cursor, done, schemas, listing = _next_page(storage, ledger, job, job.spec)
    except SubmitterError as exc:
        _fail_planning(storage, ledger, job, str(exc))
        return
    if done and job.planned + len(new_rows) == 0:
        _fail_planning(storage, ledger, job, "the inputs matched no files: " + ", ".join(
            i.describe() for i in job.spec.inputs))
        return
    _put_rows(ledger, new_rows, listing)
    committed = _commit_step(ledger, job, msg, new_rows, cursor, done, schemas, note)
    if committed is None:
        return
    _side_effects(storage, ledger, committed)
    log.info("planned: job=%s step=%d batches=%d total=%d done=%s", job.job_id, msg.step,
             len(new_rows), committed.planned, done)


def _commit_step(ledger: Ledger, job: JobRow, msg: PlanMessage, new_rows: list[BatchRow],
                 cursor: dict[str, Any], done: bool, schemas: dict[str, Any], note: str
                 ) -> JobRow | None:
    """Record the step in the job row (its rows are written): the row as committed, or None if
    another planner's step won. Raises Conflict if the row moved for another reason (the step is
    still to do: the host delivers the message again, and the step is redone, idempotently)."""
    # items: files; for tables the rows of Parquet pieces (metadata) and the bytes of text pieces,
    # whose rows are known once read (estimated meanwhile: shared.service.ledger.decisions.items_total)
    rows, text_bytes = (tables.planned_counts(it for r in new_rows for it in r.items)
                        if job.spec.input_type == "tabular" else
                        (sum(len(r.items) for r in new_rows), 0))
    try:
        return ledger.update_job(
            job, planned=job.planned + len(new_rows), plan_cursor=cursor, plan_step=job.plan_step + 1,
            planning_done=done, schemas=schemas, items_total=job.items_total + rows,
            text_bytes=job.text_bytes + text_bytes, reuse_note=note,
            state=JobState.RUNNING, started_at=job.started_at or time.time())
    except Conflict:
        latest = ledger.get_job(msg.job_id)
        if latest.plan_step == msg.step:
            raise    # another write moved the row (a checkpoint, a stop): redo the step
        if latest.plan_step != msg.step + 1:
            log.info("plan step lost a race: job=%s step=%d", msg.job_id, msg.step)
            return None
        return latest   # committed: by us (with a lost answer), or by an identical duplicate


def _side_effects(storage: Storage, ledger: Ledger, job: JobRow) -> None:
    """After a step's commit: enqueue its mini-batches, then the next step or the finalizer.
    Safe to repeat (duplicate messages are harmless)."""
    if job.plan_step == 1:
        index.set_state(storage, job, JobState.RUNNING)   # never moves the index row backwards
    _enqueue_new(storage, ledger, job, range(job.plan_cursor.get("first", job.planned), job.planned))
    if not job.planning_done:
        outbox.plan(storage, job.job_id, job.plan_step)
    elif decisions.complete(job, ledger.totals(job.job_id)):
        outbox.finalize(storage, job.job_id)


def _next_page(storage: Storage, ledger: Ledger, job: JobRow, spec: JobSpec
               ) -> tuple[list[BatchRow], dict[str, Any], bool, dict[str, Any], dict[str, Any] | None]:
    """The mini-batches of the next page, the new cursor, whether planning is finished, and the
    inputs' schemas (tabular). With ``partition_keys``, a page's items are recorded by
    combination instead, and the mini-batches are cut once every page is listed
    (:mod:`shared.service.planning.partitions`)."""
    cursor = dict(job.plan_cursor) or {"input": 0, "token": None, "carry": []}
    specs = spec.inputs
    if "partitions" in cursor:
        return (*_partition_batches(storage, ledger, job, cursor), None)
    index = cursor["input"]
    names, token, props, ahead = _page(storage, job, specs, cursor)
    listing = _listing(storage, job, specs[index], index, cursor, names, props)
    last_page = token is None
    tabular = spec.input_type == "tabular"
    schemas = dict(job.schemas)
    new: list[list[Any]] = []
    for name in names:
        if not tabular:
            new.append([index, name])
            continue
        if str(index) not in schemas:
            schemas[str(index)] = tables.schema_for(storage, specs[index], name)
        new.extend(tables.pieces(storage, specs[index], index, name,
                                 parse_mini_batch_size(spec.mini_batch_size, "tabular")))
    groups: list[list[list[Any]]] = []
    carry: list[list[Any]] = []
    if spec.partition_keys:
        # the page's number is the step's: a step run again records the same rows
        partitions.record_page(ledger, job.job_id, job.plan_step, partitions.combinations(
            cursor["carry"] + new, specs, spec.partition_keys), _writers, WRITE_CONCURRENCY)
    else:
        groups, carry = tables.group(cursor["carry"] + new, spec.file_batch_size if not tabular
                                     else 0, tabular, last_page)
    rows = [BatchRow(job.job_id, job.planned + k, g) for k, g in enumerate(groups)]
    listed = last_page and index + 1 >= len(specs)
    done = listed and not spec.partition_keys
    cursor = ({"input": index + 1, "token": None, "carry": []} if last_page
              else {"input": index, "token": token, "carry": carry})
    if listed and spec.partition_keys:
        cursor["partitions"] = ""   # every page is recorded: cut from the first order row
    cursor["first"] = job.planned   # this step's first mini-batch, to redo its side effects
    if ahead is not None:
        cursor["ahead"] = ahead
    return rows, cursor, done, schemas, listing


def _listing(storage: Storage, job: JobRow, item: InputSpec, index: int, cursor: dict[str, Any],
             names: list[str], props: list[Any] | None) -> dict[str, Any] | None:
    """The step's listing row (what a later job compares its inputs with, for allow_reuse). An
    explicit list of files is not listed: its blobs' properties are read only if this job may
    be reused (allow_reuse true); otherwise it has no listing row."""
    if props is None:
        if not job.spec.allow_reuse:
            return None
        props = reuse.head_props(storage, item, names)
    start = int(cursor["token"] or 0) if item.files is not None else 0
    keys = [reuse.order_key(item, start + k, n) for k, n in enumerate(names)]
    return reuse.listing_row(job.job_id, job.plan_step, index, keys[0] if keys else "",
                             keys[-1] if keys else "", names, props)


def _partition_batches(storage: Storage, ledger: Ledger, job: JobRow, cursor: dict[str, Any]
                       ) -> tuple[list[BatchRow], dict[str, Any], bool, dict[str, Any]]:
    """A step after the last page of a job with ``partition_keys``: the next combinations'
    mini-batches, about a page's worth of items."""
    groups, after, done = partitions.next_batches(
        ledger, job.job_id, cursor["partitions"], storage.settings.plan_page_size, _writers,
        job.spec.inputs)
    rows = [BatchRow(job.job_id, job.planned + k, g) for k, g in enumerate(groups)]
    return rows, {**cursor, "partitions": after, "first": job.planned}, done, dict(job.schemas)


def _page(storage: Storage, job: JobRow, specs: Sequence[InputSpec], cursor: dict[str, Any]
          ) -> tuple[list[str], str | None, list[Any] | None, bool | None]:
    """The cursor's page of blob names, the next page's token, and the cursor's new ``ahead``:
    True if the next page is being listed ahead in this process, False once listing ahead has
    stopped for the job, None if nothing was listed ahead.

    A step that does not find its page listed ahead here ran in another process than the step
    before it: the job's steps are spread over processes, and listing ahead stops for the job, so
    at most one page per job is listed in vain."""
    index, token, page_size = cursor["input"], cursor["token"], storage.settings.plan_page_size
    item = specs[index]
    expected = cursor.get("ahead") if PREFETCH else None
    page = _prefetcher.take((job.job_id, index, token, page_size)) if expected else None
    missed = expected is True and page is None
    names, next_token, props = page if page is not None else datasets.list_page(
        storage, item, token, page_size)
    if expected is False or missed:
        return names, next_token, props, False
    nxt_index, nxt_token = (index, next_token) if next_token is not None else (index + 1, None)
    if not PREFETCH or nxt_index >= len(specs):
        return names, next_token, props, None
    nxt_item = specs[nxt_index]
    if nxt_item.files is not None:          # an explicit list of names: nothing to list
        return names, next_token, props, None
    _prefetcher.start((job.job_id, nxt_index, nxt_token, page_size),
                      lambda: datasets.list_page(storage, nxt_item, nxt_token, page_size))
    return names, next_token, props, True


def _put_rows(ledger: Ledger, rows: list[BatchRow], listing: dict[str, Any] | None = None) -> None:
    """Upsert the page's mini-batch rows (and its listing row), up to ``WRITE_CONCURRENCY``
    transactions at once; returns when every transaction has finished, raising the first failure
    (the step is then redone, and upserts of the same rows are harmless)."""
    chunks = [rows[i:i + TRANSACTION_ROWS] for i in range(0, len(rows), TRANSACTION_ROWS)]
    if listing is None and (len(chunks) <= 1 or WRITE_CONCURRENCY <= 1):
        ledger.put_batches(rows)
        return
    futures: list[Future[Any]] = [_writers.submit(ledger.put_batches, chunk) for chunk in chunks]
    if listing is not None:
        futures.append(_writers.submit(ledger.table.upsert_entity, listing))
    wait(futures)
    for future in futures:
        future.result()


def _enqueue_new(storage: Storage, ledger: Ledger, job: JobRow, new: range) -> None:
    if not len(new):
        return
    lo = max(0, new.start - job.window)
    settled = [b.index for b in ledger.batches(job.job_id, lo, max(lo, new.stop - job.window),
                                               select=["PartitionKey", "RowKey", "state"])
               if BatchState(b.state).settled]
    for i in decisions.planner_enqueues(new, job.window, settled):
        outbox.batch(storage, job.job_id, i)


def _take_over(storage: Storage, ledger: Ledger, job: JobRow, decision: reuse.Decision) -> None:
    """Finish a reused job: the earlier job's output copied to this job's output folder, a
    job_result.txt saying whose it is, then the row (succeeded, ``reused_from``) and the index.
    Each part is idempotent: a planner that dies half-way is followed by one that does it all."""
    source = decision.reuse
    assert source is not None
    copied = reuse.copy_output(storage, source, job)
    now = time.time()
    text = (f"job {job.job_id}: succeeded\n{decision.note}.\nOutput: the output of job {source.job_id}"
            f"{f' ({copied} file(s) copied here)' if copied else ''}; its logs are in "
            f"{source.output_container}/{source.output_prefix}/logs/\n")
    storage.container(job.output_container).upload_blob(
        blob_path(job.output_prefix, "logs/job_result.txt"), text.encode(), overwrite=True)
    try:
        done = ledger.update_job(
            job, state=JobState.SUCCEEDED, planning_done=True, plan_step=1, reused_from=source.job_id,
            reuse_note=decision.note, planned=source.planned, items_total=source.items_total,
            text_bytes=source.text_bytes, rows=source.rows, schemas=source.schemas,
            started_at=job.started_at or now, ended_at=now)
    except Conflict:
        latest = ledger.get_job(job.job_id)
        if latest.state != JobState.SUCCEEDED:
            raise    # cancelled meanwhile, or moved: the message is delivered again and decides again
        done = latest
    index.set_state(storage, done, JobState.SUCCEEDED)
    reuse.record_success(storage, done)
    log.info("reused: job=%s from job=%s (%d file(s) copied)", job.job_id, source.job_id, copied)


def _fail_planning(storage: Storage, ledger: Ledger, job: JobRow, reason: str) -> None:
    log.warning("planning failed: job=%s: %s", job.job_id, reason)
    stopping.stop(storage, ledger, job, f"planning failed: {reason}", planning_done=True)
