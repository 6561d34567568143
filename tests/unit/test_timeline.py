"""The timeline of a job's mini-batches (shared.service.jobs.timeline): what to read, bars,
stragglers, lanes, throughput buckets and sampling. Pure: rows are built, not read."""

from __future__ import annotations

import dataclasses

from shared.service.jobs import timeline as tl
from shared.service.ledger.rows import BatchRow
from shared.states import BatchState
from tests.rows import job_row

T0 = 1_000_000.0


def row(index: int, start: float, end: float, state: str = BatchState.SUCCEEDED, node: str = "node0",
        pid: int = 100, ok: int = 2, failed: int = 0, **fields) -> BatchRow:
    return BatchRow(job_id="j", index=index, items=[], state=state, node=node, pid=pid,
                    started_at=T0 + start if start >= 0 else 0.0, ended_at=T0 + end if end >= 0 else 0.0,
                    ok=ok, failed=failed, size=ok + failed, **fields)


JOB = job_row("j", state="running", started_at=T0, planned=10)


def test_a_job_within_the_scan_limit_is_read_whole_and_a_larger_one_in_even_runs() -> None:
    assert tl.read_ranges(10_000, scan_limit=10_000) == [(0, None)]
    ranges = tl.read_ranges(100_000, scan_limit=10_000, windows=10)
    assert len(ranges) == 10 and all(hi - lo == 1_000 for lo, hi in ranges)
    assert ranges[0] == (0, 1_000) and ranges[-1] == (99_000, 100_000)    # the first and the last
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))          # no overlaps, in order
    note = tl.cut_note(ranges, 100_000)
    assert note is not None and "10,000 of them in 10 runs" in note and "0-999" in note and "99000-99999" in note
    assert tl.cut_note([(0, None)], 5) is None


def test_bucket_widths_are_round_and_at_most_the_maximum_number_of_buckets() -> None:
    assert tl.bucket_width(0) == 1 and tl.bucket_width(59) == 1 and tl.bucket_width(61) == 2
    assert tl.bucket_width(3_000) == 60 and tl.bucket_width(3_601) == 120
    assert tl.bucket_width(10 * 86_400) == 21_600
    assert tl.bucket_width(120 * 86_400) == 172_800          # past the ladder: span / buckets
    for span in (1, 7, 100, 999, 12_345, 200_000):
        assert span / tl.bucket_width(span) <= tl.MAX_BUCKETS


def test_throughput_counts_the_items_of_settled_mini_batches_by_when_they_settled() -> None:
    rows = [row(0, 0, 0.5, ok=2), row(1, 0, 1.5, ok=1, failed=1), row(2, 1, 2.2, ok=3),
            row(3, 2, -1, state=BatchState.RUNNING),                        # not settled: not counted
            row(4, 0.2, 0.9, state=BatchState.PENDING, ok=0, tries=1)]      # retried: not counted
    buckets = tl.buckets_of(rows, T0, now_s=2.5, width=1)
    assert [(b.start_s, b.mini_batches, b.items) for b in buckets] == [(0, 1, 2), (1, 1, 2), (2, 1, 3)]
    assert buckets[2].items_per_s == 3.0
    doubled = tl.buckets_of(rows, T0, now_s=2.5, width=2, scale=2.0)
    assert [(b.mini_batches, b.items) for b in doubled] == [(4, 8), (2, 6)]


def test_a_row_holds_its_latest_try_a_retried_one_is_retrying_and_a_running_one_is_open() -> None:
    rows = [row(0, 0, 1), row(1, 0.5, 0.8, state=BatchState.PENDING, ok=0, tries=1),
            row(2, 1.0, 0.8, state=BatchState.RUNNING, pid=55, ok=0, tries=1),   # ended_at: a past try
            row(3, -1, -1, state=BatchState.PENDING, ok=0)]                      # never started: no bar
    bars = {b.index: b for b in tl.bars_of(rows, T0, T0 + 3)}
    assert set(bars) == {0, 1, 2}
    assert bars[1].state == "retrying" and bars[1].tries == 1 and bars[1].end_s == 0.8
    assert bars[2].state == "running" and bars[2].end_s is None and bars[2].pid == 0   # process not known yet
    assert bars[0].items == 2 and bars[0].start_s == 0 and bars[0].end_s == 1


def test_stragglers_are_tries_over_three_times_the_median_once_enough_have_finished() -> None:
    quick = [row(i, i, i + 1) for i in range(5)]              # 1 s each
    slow = row(5, 0, 3.5)                                     # 3.5 s > 3 x 1 s
    stuck = row(6, 1, -1, state=BatchState.RUNNING)           # running 4 s at now = 5
    bars = {b.index: b for b in tl.bars_of([*quick, slow, stuck], T0, T0 + 5)}
    assert tl.straggler_after([1.0] * 5 + [3.5]) == 3.0
    assert bars[5].straggler and bars[6].straggler
    assert not any(bars[i].straggler for i in range(5))
    assert not any(b.straggler for b in tl.bars_of([row(0, 0, 1), row(1, 0, 9)], T0, T0 + 9)), \
        "two tries are too few to call one a straggler"


def test_lanes_are_per_node_and_process_with_busy_and_idle_time() -> None:
    rows = [row(0, 0, 1, pid=7), row(1, 2, 3, pid=7), row(2, 2.5, 4, pid=7),    # overlap 2.5-3 once
            row(3, 0, 4, node="node1", pid=8), row(4, 1, -1, state=BatchState.RUNNING, pid=7)]
    lanes = tl.lanes_of(tl.bars_of(rows, T0, T0 + 5), now_s=5)
    assert [(lane.node, lane.pid, lane.mini_batches) for lane in lanes] == [
        ("node0", 0, 1), ("node0", 7, 3), ("node1", 8, 1)]
    node0 = lanes[1]
    assert node0.busy_s == 3.0 and node0.idle_s == 1.0        # 0-1 and 2-4 busy, 1-2 idle
    assert lanes[0].busy_s == 4.0                             # running: up to now


def test_sampling_keeps_running_failed_retried_and_slow_tries_then_spreads_the_rest() -> None:
    bars = [tl.Bar(index=i, state="succeeded", tries=0, deliveries=1, reruns=0, node="n", pid=1,
                   start_s=float(i), end_s=i + 1.0, items=1, rows=1) for i in range(100)]
    bars[10] = dataclasses.replace(bars[10], state="failed", tries=3)
    bars[20] = dataclasses.replace(bars[20], state="running", end_s=None)
    bars[30] = dataclasses.replace(bars[30], tries=1)
    bars[40] = dataclasses.replace(bars[40], straggler=True, end_s=60.0)
    shown, note = tl.sample(bars, now_s=100, limit=10)
    indices = [b.index for b in shown]
    assert len(shown) == 10 and indices == sorted(indices)
    assert {10, 20, 30, 40} <= set(indices)
    assert max(indices) - min(indices) > 50, "the rest is spread over the job, not its start"
    assert note is not None and "10 of 100" in note
    assert tl.sample(bars, now_s=100, limit=100) == (bars, None)
    notable_only, _ = tl.sample(bars, now_s=100, limit=2)
    assert [b.index for b in notable_only] == [20, 40], "the slowest notable ones first"


def test_the_timeline_counts_states_and_measures_time_from_the_jobs_start() -> None:
    rows = [row(i, i * 0.5, i * 0.5 + 1) for i in range(6)] + [
        row(6, 3, -1, state=BatchState.RUNNING), row(7, -1, -1, state=BatchState.PENDING, ok=0)]
    built = tl.build(JOB, rows, now=T0 + 4).to_dict()
    assert built["t0"] == T0 and built["now_s"] == 4 and built["read"] == 8
    assert built["states"] == {"succeeded": 6, "running": 1, "pending": 1}
    assert len(built["bars"]) == 7 and built["sampled"] is None and built["cut"] is None
    assert built["throughput"]["items"] == 12 and built["throughput"]["estimated"] is False
    assert sum(b["items"] for b in built["throughput"]["buckets"]) == 12
    done = dataclasses.replace(JOB, state="succeeded", ended_at=T0 + 6)
    assert tl.build(done, rows, now=T0 + 100).now_s == 6, "a finished job's timeline ends with it"


def test_tries_of_one_process_that_overlap_get_rows_of_their_own_in_its_lane() -> None:
    # a worker holding three mini-batches for one process: their spans include the wait for it
    rows = [row(0, 0, 3), row(1, 0.1, 2), row(2, 2.5, 4), row(3, 0.2, 5, node="node1")]
    built = tl.build(JOB, rows, now=T0 + 5)
    assert {b.index: b.slot for b in built.bars} == {0: 0, 1: 1, 2: 1, 3: 0}
    assert [(lane.node, lane.slots) for lane in built.lanes] == [("node0", 2), ("node1", 1)]
    assert tl.slotted([], 1.0) == []
