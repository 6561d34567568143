"""What the worker decides around a try (shared.service.working.worker): which deliveries run or are
dropped, what a dropped delivery re-drives, which commit wins, what a settled, retried or failed
mini-batch enqueues, and when the worker stops its job.

The worker is real; its ledger, job contexts and queues are small fakes that record what it asked
for, so each rule is checked without Azurite and without scoring processes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shared.messages import BatchMessage
from shared.scoring.protocol import OutcomeKind, RunOutcome
from shared.service import outbox
from shared.service.finalizing import finalizer
from shared.service.jobs import stopping
from shared.service.ledger import decisions, settlement
from shared.service.ledger.decisions import Delivery
from shared.service.ledger.rows import BatchRow, ErrorRecord, JobRow, Totals
from shared.service.ledger.settlement import Verdict
from shared.service.ledger.store import Conflict
from shared.service.planning.fileinputs import Downloaded
from shared.service.working import worker as worker_mod
from shared.service.working.jobcontext import JobUnrunnable
from shared.service.working.worker import INIT_RESTARTS_PER_PROCESS, Stopped, Worker
from shared.settings import Settings
from shared.states import BatchState, ErrorKind, JobState
from tests.rows import job_row

# -- fakes ------------------------------------------------------------------------------------

@dataclass
class FakeLedger:
    """The ledger rows of one job, and what the worker wrote to them."""

    job: JobRow
    batches: dict[int, BatchRow] = field(default_factory=dict)
    sums: Totals = Totals()
    commit_answers: list[bool] = field(default_factory=list)   # next commits' answers (default True)
    on_lost_commit: Any = None        # called with the row when a commit is answered False
    conflicts: int = 0                # mark_running raises Conflict this many times
    on_conflict: Any = None           # called before each Conflict (the row moves meanwhile)
    commits: list[tuple[BatchRow, Totals, ErrorRecord | None]] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    _etags: int = 0

    def get_job(self, job_id: str) -> JobRow:
        return self.job

    def get_batch(self, job_id: str, index: int) -> BatchRow | None:
        return self.batches.get(index)

    def totals(self, job_id: str) -> Totals:
        return self.sums

    def mark_running(self, batch: BatchRow, node: str) -> BatchRow:
        if self.conflicts:
            self.conflicts -= 1
            if self.on_conflict:
                self.on_conflict(self)
            raise Conflict("moved")
        row = replace(batch, state=BatchState.RUNNING, deliveries=batch.deliveries + 1,
                      try_id=f"try{batch.deliveries + 1}", node=node, started_at=10.0,
                      etag=self._etag())
        self.batches[batch.index] = row
        return row

    def commit(self, row: BatchRow, delta: Totals, error: ErrorRecord | None) -> bool:
        landed = self.commit_answers.pop(0) if self.commit_answers else True
        if not landed:
            if self.on_lost_commit:
                self.on_lost_commit(self, row)
            return False
        self.commits.append((row, delta, error))
        self.batches[row.index] = replace(row, etag=self._etag())
        self.sums = self.sums + delta
        return True

    def record_error(self, job_id: str, error: ErrorRecord) -> None:
        self.errors.append(error)

    def _etag(self) -> str:
        self._etags += 1
        return f"e{self._etags}"


def context(job: JobRow, processes: int = 2) -> Any:
    """What the worker reads of a job context in the paths tested here."""
    return SimpleNamespace(job=job, spec=job.spec, processes=processes, tabular=False,
                           pool_key=job.job_id, scoring=None)


class FakeJobs:
    """JobContexts over the fake ledger: the cached row until a fresh one is asked for."""

    def __init__(self, ledger: FakeLedger, unrunnable: Exception | None = None) -> None:
        self.ledger = ledger
        self.cached = context(ledger.job)
        self.unrunnable = unrunnable
        self.fresh_reads = 0
        self.forgotten: list[str] = []

    def get(self, job_id: str, fresh: bool = False) -> Any:
        if self.unrunnable is not None:
            raise self.unrunnable
        if fresh:
            self.fresh_reads += 1
            self.cached = context(self.ledger.job, self.cached.processes)
        return self.cached

    def forget(self, job_id: str) -> None:
        self.forgotten.append(job_id)


@dataclass
class Sent:
    """What the worker sent: batch messages (index, delay), finalize messages, stops."""

    batches: list[tuple[int, float]] = field(default_factory=list)
    finalizes: list[dict[str, Any]] = field(default_factory=list)
    inline: list[Totals | None] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    inline_fails: bool = False


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    record = Sent()
    monkeypatch.setattr(outbox, "batch", lambda storage, job_id, index, delay_s=0:
                        record.batches.append((index, delay_s)))
    monkeypatch.setattr(outbox, "finalize", lambda storage, job_id, **kw: record.finalizes.append(kw))

    def finalize_inline(storage, ledger, msg, inline=False, totals=None):
        record.inline.append(totals)
        if record.inline_fails:
            raise RuntimeError("storage unavailable")
        return "succeeded"

    def stop(storage, ledger, job_id, reason, **kw):
        record.stops.append(reason)
        if ledger.job.active:   # the first stop wins, as stopping.stop does
            ledger.job = replace(ledger.job, stop_reason=reason, error=reason)
        return ledger.job

    monkeypatch.setattr(finalizer, "finalize", finalize_inline)
    monkeypatch.setattr(stopping, "stop", stop)
    return record


def make_worker(tmp_path: Path, ledger: FakeLedger, **jobs_kw: Any) -> Worker:
    storage = SimpleNamespace(settings=Settings(scratch_dir=str(tmp_path), download_concurrency=1))
    # no scoring processes: the tests replace _score; a try still asks to start one ahead
    pool = SimpleNamespace(prestart=lambda key, config, size: False)
    w = Worker(storage, ledger, pool=pool, node_id="node1")  # type: ignore[arg-type]
    w.jobs = FakeJobs(ledger, **jobs_kw)  # type: ignore[assignment]
    return w


def running_job(**kw: Any) -> JobRow:
    now = time.time()   # a job started long ago is due a checkpoint (see the checkpoint test)
    fields = {"state": JobState.RUNNING, "planned": 10, "window": 4, "planning_done": True,
              "started_at": now, "created_at": now}
    return job_row("j", kw.pop("spec", None), **{**fields, **kw})


def row(index: int = 0, **kw: Any) -> BatchRow:
    return BatchRow("j", index, [[0, f"in/{index}.txt"]], **kw)


def settle(batch: BatchRow, outcome: RunOutcome, run_max_try: int = 3) -> settlement.Settlement:
    files = Downloaded([f"/w/{it[1]}" for it in batch.items], [])
    return settlement.settle(batch, outcome, files, run_max_try=run_max_try, block_id="blk", shard=0,
                             node="node1", now=20.0)


OK = RunOutcome(OutcomeKind.OK, text="r\n", rows=1)
ERROR = RunOutcome(OutcomeKind.ERROR, message="ValueError: bad")


# -- small pure parts --------------------------------------------------------------------------

@pytest.mark.parametrize("sas,ok", [
    ("sv=2023-01-03&sp=r&sig=x", True),
    ("sv=2023-01-03&sp=rl&sig=x", True),
    ("sp=rwdlac&sig=x", False),
    ("sp=rw&sig=x", False),
    ("sig=x", True),        # grants nothing
])
def test_a_scoring_process_gets_read_only_tokens_only(sas, ok) -> None:
    assert worker_mod.read_only(sas) is ok


def test_a_job_whose_spec_does_not_parse_is_not_a_table() -> None:
    assert not worker_mod._is_table(JobRow("j", spec_json='{"bad": 1}'))
    assert not worker_mod._is_table(job_row())
    assert worker_mod._is_table(job_row(spec={"inputs": [{"path": "tables/", "type": "tabular"}]}))


def test_the_try_timings_are_counted_per_stage_in_milliseconds() -> None:
    clock = worker_mod._Clock()
    clock.ms = {"download": 5, "run": 7}
    assert clock.totals(queued_s=1.5) == Totals(tries=1, ms_queue=1500, ms_download=5, ms_run=7)
    assert clock.totals(queued_s=-3).ms_queue == 0     # clocks of two nodes may disagree


# -- deliveries --------------------------------------------------------------------------------

def test_a_pending_mini_batch_is_marked_running_and_tried(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(), {0: row(0)})
    w = make_worker(tmp_path, ledger)
    tried: list[BatchRow] = []
    w._try = lambda ctx, batch, enqueued_at, calls: tried.append(batch) or Verdict.SUCCEEDED  # type: ignore[method-assign]
    assert w.handle(BatchMessage("j", 0)) is Verdict.SUCCEEDED
    assert [(b.state, b.deliveries, b.node) for b in tried] == [(BatchState.RUNNING, 1, "node1")]


def test_a_message_delivered_twice_runs_its_settled_mini_batch_once(tmp_path, sent) -> None:
    """The second delivery finds the mini-batch settled and only re-drives its successor (its
    worker may have died between the commit and the enqueue), and only if nobody started it."""
    ledger = FakeLedger(running_job(), {0: row(0, state=BatchState.SUCCEEDED), 4: row(4)})
    w = make_worker(tmp_path, ledger)
    assert w.handle(BatchMessage("j", 0), dequeue_count=2) is Delivery.DROP_DONE
    assert ledger.commits == [] and sent.batches == [(4, 0)]
    ledger.batches[4] = row(4, deliveries=1)               # its successor has started meanwhile
    assert w.handle(BatchMessage("j", 0), dequeue_count=3) is Delivery.DROP_DONE
    assert sent.batches == [(4, 0)]                        # nothing more


def test_a_redelivered_last_mini_batch_finalizes_its_complete_job(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(planned=1), {0: row(0, state=BatchState.FAILED)},
                        sums=Totals(batches_failed=1, items_failed=1))
    w = make_worker(tmp_path, ledger)
    assert w.handle(BatchMessage("j", 0)) is Delivery.DROP_DONE
    assert sent.inline == [ledger.sums] and sent.batches == []


def test_a_mini_batch_missing_from_the_ledger_is_dropped(tmp_path, sent) -> None:
    w = make_worker(tmp_path, FakeLedger(running_job()))
    assert w.handle(BatchMessage("j", 3)) is Delivery.DROP_UNKNOWN
    assert sent == Sent()


@pytest.mark.parametrize("stop_reason", [decisions.CANCELLED, "error_threshold exceeded: 3 > 2"])
def test_a_stopped_job_runs_nothing_and_its_finalization_is_redriven(tmp_path, sent, stop_reason) -> None:
    ledger = FakeLedger(running_job(stop_reason=stop_reason), {0: row(0)})
    w = make_worker(tmp_path, ledger)
    assert w.handle(BatchMessage("j", 0)) is Delivery.DROP_JOB_INACTIVE
    assert ledger.batches[0].state == BatchState.PENDING      # never marked running
    assert sent.finalizes == [{}] and sent.batches == []


def test_a_finished_job_drops_its_deliveries_and_sends_nothing(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(state=JobState.SUCCEEDED), {0: row(0)})
    w = make_worker(tmp_path, ledger)
    assert w.handle(BatchMessage("j", 0)) is Delivery.DROP_JOB_INACTIVE
    assert sent == Sent()


def test_an_inactive_cached_row_is_read_again_before_a_delivery_is_dropped(tmp_path, sent) -> None:
    """A cached ``finalizing`` row may be stale (the finalizer unsettled mini-batches to re-run
    them): the worker reads the job again, and runs the mini-batch if the job is running."""
    ledger = FakeLedger(running_job(), {0: row(0)})
    w = make_worker(tmp_path, ledger)
    w.jobs.cached = context(replace(ledger.job, state=JobState.FINALIZING))  # type: ignore[attr-defined]
    w._try = lambda ctx, batch, enqueued_at, calls: Verdict.SUCCEEDED  # type: ignore[method-assign]
    assert w.handle(BatchMessage("j", 0)) is Verdict.SUCCEEDED
    assert w.jobs.fresh_reads == 1  # type: ignore[attr-defined]


def test_a_row_that_moved_while_marked_running_is_read_and_decided_again(tmp_path, sent) -> None:
    """Two deliveries of one message race: the loser of mark_running finds the row settled."""
    ledger = FakeLedger(running_job(), {0: row(0)}, conflicts=1,
                        on_conflict=lambda lg: lg.batches.update({0: row(0, state=BatchState.SUCCEEDED)}))
    w = make_worker(tmp_path, ledger)
    assert w.handle(BatchMessage("j", 0)) is Delivery.DROP_DONE


def test_a_row_that_keeps_moving_raises_so_the_message_comes_back(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(), {0: row(0)}, conflicts=stopping.MAX_CONFLICTS)
    with pytest.raises(Conflict):
        make_worker(tmp_path, ledger).handle(BatchMessage("j", 0))


def test_a_job_that_cannot_run_is_stopped_with_a_job_error(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(), {0: row(0)})
    exc = JobUnrunnable("entry_script score.py is not in code snapshot snap", job_id="j")
    reason = str(exc)
    w = make_worker(tmp_path, ledger, unrunnable=exc)
    assert w.handle(BatchMessage("j", 0)) is Stopped.UNRUNNABLE
    assert [(e.kind, e.message) for e in ledger.errors] == [(ErrorKind.JOB, reason)]
    assert sent.stops == [reason]
    # a later delivery records nothing more, and re-drives the stopped job's finalization
    assert w.handle(BatchMessage("j", 1)) is Stopped.UNRUNNABLE
    assert len(ledger.errors) == 1 and sent.stops == [reason] and sent.finalizes == [{}]


# -- commits -----------------------------------------------------------------------------------

def test_a_stale_try_loses_to_the_try_that_settled_first(tmp_path, sent) -> None:
    """Another worker's try of the same mini-batch committed first: this one's rows and counts are
    dropped, and it enqueues nothing."""
    ledger = FakeLedger(running_job(), commit_answers=[False],
                        on_lost_commit=lambda lg, r: lg.batches.update(
                            {r.index: replace(r, try_id="other", state=BatchState.SUCCEEDED)}))
    batch = ledger.mark_running(row(0), "node1")
    w = make_worker(tmp_path, ledger)
    assert w._apply(w.jobs.get("j"), batch, settle(batch, OK), 0.1) is Delivery.DROP_DONE
    assert ledger.commits == [] and sent == Sent()


def test_a_commit_whose_answer_was_lost_is_recognised_by_its_try_id(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(), commit_answers=[False],
                        on_lost_commit=lambda lg, r: lg.batches.update({r.index: r}))   # it landed
    batch = ledger.mark_running(row(0), "node1")
    w = make_worker(tmp_path, ledger)
    assert w._apply(w.jobs.get("j"), batch, settle(batch, OK), 0.1) is Verdict.SUCCEEDED
    assert sent.batches == [(4, 0)]     # its side effects follow


def test_a_row_that_moved_but_did_not_settle_is_committed_on_top(tmp_path, sent) -> None:
    """A redelivery marked the row running again (a new ETag) while this try ran."""
    ledger = FakeLedger(running_job(), commit_answers=[False, True],
                        on_lost_commit=lambda lg, r: lg.batches.update(
                            {r.index: replace(r, try_id="try2", state=BatchState.RUNNING, etag="e99")}))
    batch = ledger.mark_running(row(0), "node1")
    w = make_worker(tmp_path, ledger)
    assert w._apply(w.jobs.get("j"), batch, settle(batch, OK), 0.1) is Verdict.SUCCEEDED
    [(committed, delta, _)] = ledger.commits
    assert committed.etag == "e99" and delta.items_succeeded == 1


# -- what a settlement enqueues ------------------------------------------------------------------

def test_a_settled_mini_batch_enqueues_its_successor_one_window_on(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(planned=10, window=4))
    batch = ledger.mark_running(row(2), "node1")
    w = make_worker(tmp_path, ledger)
    assert w._apply(w.jobs.get("j"), batch, settle(batch, OK), 0.1) is Verdict.SUCCEEDED
    assert sent.batches == [(6, 0)] and sent.finalizes == [] and sent.inline == []


def test_the_last_mini_batch_finalizes_its_job_inline(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(planned=1), sums=Totals())
    batch = ledger.mark_running(row(0), "node1")
    w = make_worker(tmp_path, ledger)
    w._apply(w.jobs.get("j"), batch, settle(batch, OK), 0.1)
    assert sent.inline == [Totals(batches_succeeded=1, items_succeeded=1, rows=1)]
    assert sent.finalizes == []


def test_an_inline_finalize_that_fails_is_handed_to_the_finalizer(tmp_path, sent) -> None:
    sent.inline_fails = True
    ledger = FakeLedger(running_job(planned=1))
    batch = ledger.mark_running(row(0), "node1")
    w = make_worker(tmp_path, ledger)
    assert w._apply(w.jobs.get("j"), batch, settle(batch, OK), 0.1) is Verdict.SUCCEEDED
    assert len(sent.inline) == 1 and sent.finalizes == [{}]


def test_a_mini_batch_of_an_unfinished_plan_waits_for_the_planner(tmp_path, sent) -> None:
    """No successor planned yet and planning not done: the job row is read again (the planner may
    have planned it meanwhile); nothing is finalized."""
    ledger = FakeLedger(running_job(planned=3, window=4, planning_done=False))
    batch = ledger.mark_running(row(2), "node1")
    w = make_worker(tmp_path, ledger)
    ledger.job = replace(ledger.job, planned=8)            # the planner went on meanwhile
    w._apply(w.jobs.get("j"), batch, settle(batch, OK), 0.1)
    assert sent.batches == [(6, 0)] and w.jobs.fresh_reads == 1  # type: ignore[attr-defined]


def test_a_mini_batch_run_again_for_lost_rows_enqueues_no_successor(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(planned=10, window=4), sums=Totals(batches_succeeded=3))
    batch = ledger.mark_running(row(2, reruns=1), "node1")
    w = make_worker(tmp_path, ledger)
    w._apply(w.jobs.get("j"), batch, settle(batch, OK), 0.1)
    assert sent.batches == [] and sent.inline == []


def test_an_old_job_commits_its_staged_rows_at_a_checkpoint(tmp_path, sent) -> None:
    age = Settings().block_max_age_s
    ledger = FakeLedger(running_job())
    batch = ledger.mark_running(row(2), "node1")
    w = make_worker(tmp_path, ledger)
    w._apply(w.jobs.get("j"), batch, settle(batch, OK), 0.1)
    assert sent.finalizes == []                             # a young job: no checkpoint
    long_ago = time.time() - age - 60
    w.jobs.cached = context(replace(ledger.job, started_at=long_ago, created_at=long_ago))  # type: ignore[attr-defined]
    batch = ledger.mark_running(row(3), "node1")
    w._apply(w.jobs.get("j"), batch, settle(batch, OK), 0.1)
    assert sent.finalizes == [{"checkpoint": True}] and sent.batches == [(6, 0), (7, 0)]


def test_a_failed_try_with_tries_left_is_enqueued_again_after_a_backoff(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job())
    w = make_worker(tmp_path, ledger)
    batch = ledger.mark_running(row(0), "node1")
    assert w._apply(w.jobs.get("j"), batch, settle(batch, ERROR), 0.1) is Verdict.RETRY
    batch = ledger.mark_running(ledger.batches[0], "node1")
    assert w._apply(w.jobs.get("j"), batch, settle(batch, ERROR), 0.1) is Verdict.RETRY
    assert sent.batches == [(0, 1.0), (0, 2.0)]                # itself again, later; no successor
    assert ledger.sums == Totals(tries_failed=2)


def test_a_mini_batch_out_of_tries_fails_and_the_job_goes_on(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job())     # error_threshold -1: failed items never stop the job
    batch = ledger.mark_running(row(0, tries=2), "node1")
    w = make_worker(tmp_path, ledger)
    assert w._apply(w.jobs.get("j"), batch, settle(batch, ERROR), 0.1) is Verdict.FAILED
    assert sent.stops == [] and sent.batches == [(4, 0)]
    assert ledger.sums == Totals(batches_failed=1, items_failed=1, tries_failed=1)


@pytest.mark.parametrize("spec,sums,reason", [
    ({"error_threshold": 2}, Totals(items_failed=2), "error_threshold exceeded: 3 failed items"),
    ({"allowed_failed_count": 0}, Totals(), "allowed_failed_count exceeded: 1 failed mini-batches"),
    ({"allowed_failed_percent": 5}, Totals(batches_succeeded=9), "allowed_failed_percent exceeded: 1/10"),
])
def test_a_failure_over_a_budget_stops_the_job(tmp_path, sent, spec, sums, reason) -> None:
    ledger = FakeLedger(running_job(spec=spec, planned=10), sums=sums)
    batch = ledger.mark_running(row(0), "node1")
    w = make_worker(tmp_path, ledger)
    assert w._apply(w.jobs.get("j"), batch, settle(batch, ERROR, run_max_try=1), 0.1) is Verdict.FAILED
    [stop] = sent.stops
    assert stop.startswith(reason)
    assert sent.batches == []          # a stopped job enqueues no successor
    assert w.jobs.forgotten == ["j"]  # type: ignore[attr-defined]


def test_failed_items_of_a_successful_try_count_against_error_threshold(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(spec={"error_threshold": 0}))
    batch = ledger.mark_running(BatchRow("j", 0, [[0, "a"], [0, "b"]]), "node1")
    w = make_worker(tmp_path, ledger)
    short = settlement.settle(batch, RunOutcome(OutcomeKind.OK, text="r\n", rows=1),
                              Downloaded(["/w/a", "/w/b"], []), run_max_try=3, block_id="blk",
                              shard=0, node="node1", now=20.0)
    assert w._apply(w.jobs.get("j"), batch, short, 0.1) is Verdict.SUCCEEDED
    assert [s.split(":")[0] for s in sent.stops] == ["error_threshold exceeded"]


def test_failures_within_the_budgets_do_not_stop_the_job(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(spec={"error_threshold": 5, "allowed_failed_count": 3}),
                        sums=Totals(items_failed=4, batches_failed=2))
    batch = ledger.mark_running(row(0), "node1")
    w = make_worker(tmp_path, ledger)
    w._apply(w.jobs.get("j"), batch, settle(batch, ERROR, run_max_try=1), 0.1)
    assert sent.stops == [] and sent.batches == [(4, 0)]


def test_init_failures_stop_the_job_after_3_per_process_on_a_node(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job())
    w = make_worker(tmp_path, ledger)                      # 2 processes per node
    init = RunOutcome(OutcomeKind.INIT, message="init() raised: no model")
    verdicts = []
    for _ in range(INIT_RESTARTS_PER_PROCESS * 2):
        batch = ledger.mark_running(ledger.batches.get(0, row(0)), "node1")
        verdicts.append(w._apply(w.jobs.get("j"), batch, settle(batch, init, run_max_try=1), 0.1))
    assert verdicts == [Verdict.INIT] * 5 + [Stopped.INIT]
    assert sent.batches == [(0, 1.0)] * 5                  # retried, no try consumed, until the stop
    assert ledger.batches[0].tries == 0 and ledger.sums == Totals()
    [stop] = sent.stops
    assert stop.startswith("init() failed 6 times on node1 (limit 3 x process_count_per_node = 6): "
                           "init() raised: no model")


# -- the poison queue ----------------------------------------------------------------------------

def test_a_poisoned_message_of_a_settled_mini_batch_changes_nothing(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(), {0: row(0, state=BatchState.SUCCEEDED)})
    w = make_worker(tmp_path, ledger)
    assert w.record_poison(BatchMessage("j", 0), dequeue_count=5) is Delivery.DROP_DONE
    assert ledger.commits == [] and sent == Sent()


def test_a_poisoned_mini_batch_fails_and_its_job_goes_on(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(), {0: row(0, deliveries=7)})
    w = make_worker(tmp_path, ledger)
    assert w.record_poison(BatchMessage("j", 0), dequeue_count=5) is Verdict.FAILED
    [(committed, delta, error)] = ledger.commits
    assert committed.state == BatchState.FAILED and delta.items_failed == 1
    assert error is not None and error.kind is ErrorKind.POISON and "after 7 deliveries" in error.message
    assert sent.batches == [(4, 0)]


def test_a_poisoned_mini_batch_of_a_job_that_cannot_run_stops_it_with_the_reason(tmp_path, sent) -> None:
    ledger = FakeLedger(running_job(), {0: row(0)})
    exc = JobUnrunnable("code snapshot snap cannot be used: BadZipFile: not a zip", job_id="j")
    reason = str(exc)
    w = make_worker(tmp_path, ledger, unrunnable=exc)
    assert w.record_poison(BatchMessage("j", 0), dequeue_count=5) is Verdict.FAILED
    [(_, _, error)] = ledger.commits
    assert error is not None and error.message.endswith(f"its job's context could not be built: "
                                                        f"JobUnrunnable: {reason}")
    assert sent.stops == [reason] and sent.batches == []


def test_a_poisoned_mini_batch_without_a_context_still_drives_its_job_on(tmp_path, sent) -> None:
    """A transient failure to build the context: the mini-batch fails, counted; the job is not
    stopped (no budget exceeded) and its successor is enqueued."""
    ledger = FakeLedger(running_job(), {0: row(0)})
    w = make_worker(tmp_path, ledger, unrunnable=OSError("storage unavailable"))
    assert w.record_poison(BatchMessage("j", 0), dequeue_count=5) is Verdict.FAILED
    assert sent.stops == [] and sent.batches == [(4, 0)]
    assert ledger.sums.batches_failed == 1


# -- a try's inputs to its settlement -------------------------------------------------------------

TABLE = {"inputs": [{"path": "tables/", "type": "tabular"}]}
TEXT_PIECE = {"file": "t.csv", "kind": "delimited", "index": 0, "est_bytes": 1000, "range": [0, 1000]}


def table_worker(tmp_path: Path, ledger: FakeLedger, monkeypatch: pytest.MonkeyPatch,
                 outcome: RunOutcome) -> tuple[Worker, list[list]]:
    """A worker whose scoring returns ``outcome`` and whose count of a table's unread rows is
    recorded (the pieces' lines: 80, an upper bound)."""
    w = make_worker(tmp_path, ledger)
    ctx = w.jobs.cached  # type: ignore[attr-defined]
    ctx.tabular = True
    ctx.inputs = list(ctx.spec.inputs)
    ctx.batches_dir = tmp_path / "batches"
    ctx.target = SimpleNamespace(shard_of=lambda index: 0, parts=False)
    w._score = lambda ctx, batch, files, clock: (outcome, "")  # type: ignore[method-assign]
    counted: list[list] = []

    def rows_unread(storage, inputs, items):
        counted.append(items)
        return 80, False

    monkeypatch.setattr(worker_mod.tables, "rows_unread", rows_unread)
    return w, counted


def test_an_unread_tables_rows_are_counted_only_when_its_last_try_fails(tmp_path, sent, monkeypatch) -> None:
    ledger = FakeLedger(running_job(spec=TABLE), {0: BatchRow("j", 0, [[0, "t.csv", TEXT_PIECE]])})
    w, counted = table_worker(tmp_path, ledger, monkeypatch, RunOutcome(OutcomeKind.ERROR, message="bad"))
    assert w.handle(BatchMessage("j", 0)) is Verdict.RETRY
    assert w.handle(BatchMessage("j", 0)) is Verdict.RETRY
    assert counted == []                                  # tries left: nothing read again
    assert w.handle(BatchMessage("j", 0)) is Verdict.FAILED
    assert len(counted) == 1
    assert (ledger.sums.items_failed, ledger.sums.items_bounded) == (80, 80)
    [*_, (_, _, error)] = ledger.commits
    assert error is not None and "an upper bound on its rows" in error.message


def test_a_table_read_by_its_failed_try_is_not_read_again(tmp_path, sent, monkeypatch) -> None:
    ledger = FakeLedger(running_job(spec={**TABLE, "run_max_try": 1}),
                        {0: BatchRow("j", 0, [[0, "t.csv", TEXT_PIECE]])})
    w, counted = table_worker(tmp_path, ledger, monkeypatch,
                              RunOutcome(OutcomeKind.ERROR, message="bad", loaded=33))
    assert w.handle(BatchMessage("j", 0)) is Verdict.FAILED
    assert counted == [] and (ledger.sums.items_failed, ledger.sums.items_bounded) == (33, 0)


def test_a_tries_queue_time_runs_from_its_message_being_sent(tmp_path, sent, monkeypatch) -> None:
    ledger = FakeLedger(running_job(spec=TABLE), {0: BatchRow("j", 0, [[0, "t.csv", TEXT_PIECE]])})
    w, _ = table_worker(tmp_path, ledger, monkeypatch, RunOutcome(OutcomeKind.OK, text="r\n", rows=1,
                                                                  loaded=1))
    w.handle(BatchMessage("j", 0), enqueued_at=7.5)       # the fake marks it running at 10.0
    assert ledger.sums.ms_queue == 2500 and ledger.sums.tries == 1 and ledger.sums.calls >= 1
