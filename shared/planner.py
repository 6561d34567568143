"""The planner: lists a job's inputs page by page, writes mini-batch rows, keeps the queue short.

Each invocation plans one page of one input (``PlanMessage.step`` guards against duplicates), writes
its mini-batch rows, advances the job's cursor with a conditional write, then enqueues: the first
``window`` mini-batches of the job, plus any mini-batch whose predecessor ``index - window``
already settled (its finisher could not enqueue it because it was not planned yet). Every other
mini-batch is enqueued by the finisher of its predecessor (see :mod:`shared.worker`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import decisions, tables
from .datasets import FileInput, list_page
from .errors import SubmitterError
from .ledger import BatchRow, Conflict, JobRow, Ledger
from .messages import BatchMessage, FinalizeMessage, PlanMessage
from .spec import JobSpec, parse_mini_batch_size, parse_spec
from .states import JobState
from .storage import Storage

log = logging.getLogger("parallelrun.planner")


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
    spec = parse_spec(job.spec)
    try:
        new_rows, cursor, done, schemas = _next_page(storage, job, spec)
    except SubmitterError as exc:
        _fail_planning(storage, ledger, job, str(exc))
        return
    if done and job.planned + len(new_rows) == 0:
        _fail_planning(storage, ledger, job, "the inputs matched no files: " + ", ".join(
            FileInput.from_spec(i, n).describe() for n, i in enumerate(job.spec["inputs"])))
        return
    ledger.put_batches(new_rows)
    planned = job.planned + len(new_rows)
    try:
        job = ledger.update_job(
            job, planned=planned, plan_cursor=cursor, plan_step=job.plan_step + 1,
            planning_done=done, schemas=schemas,
            items_total=job.items_total + (0 if spec.input_type == "tabular"   # rows: known when read
                                           else sum(len(r.items) for r in new_rows)),
            state=JobState.RUNNING, started_at=job.started_at or time.time())
    except Conflict:
        job = ledger.get_job(msg.job_id)
        if job.plan_step != msg.step + 1:
            log.info("plan step lost a race: job=%s step=%d", msg.job_id, msg.step)
            return
        # the step was committed (by us, with a lost answer, or by an identical duplicate)
    _side_effects(storage, ledger, job)
    log.info("planned: job=%s step=%d batches=%d total=%d done=%s", job.job_id, msg.step,
             len(new_rows), planned, done)


def _side_effects(storage: Storage, ledger: Ledger, job: JobRow) -> None:
    """After a step's commit: enqueue its mini-batches, then the next step or the finalizer.
    Safe to repeat (duplicate messages are harmless)."""
    _enqueue_new(storage, ledger, job, range(job.plan_cursor.get("first", job.planned), job.planned))
    if not job.planning_done:
        storage.queue(storage.settings.plan_queue).send_message(
            PlanMessage(job.job_id, job.plan_step).to_json())
    elif decisions.complete(job, ledger.totals(job.job_id)):
        storage.queue(storage.settings.finalize_queue).send_message(FinalizeMessage(job.job_id).to_json())


def _next_page(storage: Storage, job: JobRow, spec: JobSpec
               ) -> tuple[list[BatchRow], dict[str, Any], bool, dict[str, Any]]:
    """The mini-batches of the next page, the new cursor, whether planning is finished, and the
    inputs' schemas (tabular)."""
    cursor = dict(job.plan_cursor) or {"input": 0, "token": None, "carry": []}
    specs = job.spec["inputs"]
    index = cursor["input"]
    names, token = list_page(storage, FileInput.from_spec(specs[index], index), cursor["token"],
                             storage.settings.plan_page_size)
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
    last_page = token is None
    groups, carry = tables.group(cursor["carry"] + new, specs, spec.partition_keys,
                                 spec.file_batch_size if not tabular else 0, tabular, last_page)
    rows = [BatchRow(job.job_id, job.planned + k, g) for k, g in enumerate(groups)]
    done = last_page and index + 1 >= len(specs)
    cursor = ({"input": index + 1, "token": None, "carry": []} if last_page
              else {"input": index, "token": token, "carry": carry})
    cursor["first"] = job.planned   # this step's first mini-batch, to redo its side effects
    return rows, cursor, done, schemas


def _enqueue_new(storage: Storage, ledger: Ledger, job: JobRow, new: range) -> None:
    if not len(new):
        return
    lo = max(0, new.start - job.window)
    settled = [b.index for b in ledger.batches(job.job_id, lo, max(lo, new.stop - job.window),
                                               select=["PartitionKey", "RowKey", "state"])
               if decisions.settled(b.state)]
    queue = storage.queue(storage.settings.batch_queue)
    for i in decisions.planner_enqueues(new, job.window, settled):
        queue.send_message(BatchMessage(job.job_id, i).to_json())


def _fail_planning(storage: Storage, ledger: Ledger, job: JobRow, reason: str) -> None:
    log.warning("planning failed: job=%s: %s", job.job_id, reason)
    try:
        ledger.update_job(job, stop_reason=f"planning failed: {reason}", error=reason,
                          planning_done=True, stopped_at=time.time())
    except Conflict:
        return
    storage.queue(storage.settings.finalize_queue).send_message(FinalizeMessage(job.job_id).to_json())
