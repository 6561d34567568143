"""A job's mini-batches over time, for the web view (``GET /api/jobs/{id}/timeline``): one bar per
mini-batch try on a lane per node and scoring process (stragglers, retries, idle time), and the
items finished per time bucket (throughput over time).

Bounded whatever the job's size: the mini-batch rows are read without their item lists (the
columns below only), at most :data:`SCAN_LIMIT` of them; a larger job is read as
:data:`WINDOWS` evenly spaced runs of consecutive mini-batches (``cut`` says which), and its
throughput is scaled up from them (``throughput.estimated``). At most :data:`SHOW_LIMIT` bars are
answered: beyond that the running, failed, retried and slowest ones are kept first and the rest
evenly by index (``sampled`` says so).

A mini-batch row holds its latest try only: a retried mini-batch shows that try, with ``tries``
(failed tries so far). A try's bar runs from when a worker took it (``started_at``) to when it
settled (``ended_at``): its download and its wait for a free scoring process are in it, so the
tries of one process overlap when a worker holds more mini-batches than it has processes; each
bar gets a ``slot`` (a row of its lane) where it overlaps no other. A running try's process is not
known until it settles, so running bars sit on their node's lane of ``pid`` 0.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.service.ledger.rows import BatchRow, JobRow
from shared.service.ledger.store import Ledger
from shared.states import BatchState, JobState

SHOW_LIMIT = 2_000       # bars in one answer
SCAN_LIMIT = 10_000      # mini-batch rows read for one answer
WINDOWS = 10             # runs of consecutive mini-batches read from a job larger than SCAN_LIMIT
MAX_BUCKETS = 60         # throughput buckets
STRAGGLER_FACTOR = 3.0   # a try this many times the median try's duration is a straggler
MIN_FOR_MEDIAN = 5       # finished tries needed before anything is called a straggler
_NICE_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
# every column of a mini-batch row the timeline shows: not "items" (up to 28 chunks of 30,000
# characters per row), nor the block id, header or error text
COLUMNS = ["PartitionKey", "RowKey", "state", "tries", "deliveries", "reruns", "node", "pid",
           "started_at", "ended_at", "rows", "ok", "failed", "size"]


@dataclass(frozen=True)
class Bar:
    """One mini-batch's latest try; times in seconds from the timeline's ``t0``."""

    index: int
    state: str
    tries: int
    deliveries: int
    reruns: int
    node: str
    pid: int
    start_s: float
    end_s: float | None        # None: still running
    items: int | None          # None: not known yet (a table's rows before a try read them)
    rows: int
    straggler: bool = False
    slot: int = 0              # row within its lane: tries of one process overlap (see the module)


@dataclass(frozen=True)
class Lane:
    """The tries one scoring process ran (``pid`` 0: running, process not known yet)."""

    node: str
    pid: int
    mini_batches: int
    busy_s: float              # time covered by at least one of its tries
    idle_s: float              # gaps between its first start and its last end
    slots: int = 1             # rows its bars need so that overlapping tries do not hide each other


@dataclass(frozen=True)
class Bucket:
    start_s: float
    mini_batches: int
    items: int
    items_per_s: float


@dataclass(frozen=True)
class Timeline:
    """A job's mini-batch tries per node and process, and its throughput over time."""

    job_id: str
    state: str
    t0: float                  # epoch seconds every *_s of the answer counts from
    now_s: float               # the job's end, or now while it runs
    planned: int
    read: int                  # mini-batch rows read for this answer
    states: dict[str, int]     # of the rows read: pending, retrying, running, succeeded, failed
    bars: list[Bar]
    lanes: list[Lane]
    bucket_s: int
    throughput: dict[str, Any]
    straggler_after_s: float | None
    sampled: str | None = None
    cut: str | None = None
    source: str = ""           # a reused job: the job whose mini-batches these are
    limits: dict[str, int] = field(default_factory=lambda: {"show": SHOW_LIMIT, "scan": SCAN_LIMIT})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- what to read (pure) ----------------------------------------------------------------------
def read_ranges(planned: int, scan_limit: int = SCAN_LIMIT, windows: int = WINDOWS
                ) -> list[tuple[int, int | None]]:
    """The index ranges ``[lo, hi)`` to read: everything (``hi`` None: the rows planned so far
    too) while ``planned`` is within ``scan_limit``, else ``windows`` evenly spaced runs of
    ``scan_limit // windows`` consecutive mini-batches, the first and the last included."""
    if planned <= scan_limit:
        return [(0, None)]
    width = max(1, scan_limit // windows)
    starts = sorted({round(k * (planned - width) / max(1, windows - 1)) for k in range(windows)})
    return [(lo, lo + width) for lo in starts]


def cut_note(ranges: list[tuple[int, int | None]], planned: int) -> str | None:
    if ranges == [(0, None)]:
        return None
    runs = ", ".join(f"{lo}-{hi - 1}" for lo, hi in ranges if hi is not None)
    read = sum(hi - lo for lo, hi in ranges if hi is not None)
    return (f"{planned:,} mini-batches are more than {SCAN_LIMIT:,}: read {read:,} of them in "
            f"{len(ranges)} runs ({runs}); throughput is scaled up from them")


# -- bars, lanes, buckets (pure) --------------------------------------------------------------
def state_of(row: BatchRow) -> str:
    """``retrying``: pending after a failed try (or a rerun); the other states as the ledger's."""
    if row.state == BatchState.PENDING and (row.tries or row.reruns) and row.started_at:
        return "retrying"
    return str(row.state)


def bars_of(rows: Iterable[BatchRow], t0: float, now: float) -> list[Bar]:
    """A bar for every row that has started a try, stragglers marked (see :func:`straggler_after`)."""
    bars = []
    for r in rows:
        if not r.started_at:
            continue
        running = r.state == BatchState.RUNNING
        end = None if running or r.ended_at < r.started_at else round(r.ended_at - t0, 3)
        settled = BatchState(r.state).settled
        items = r.ok + r.failed if settled else (r.size if r.size >= 0 else None)
        bars.append(Bar(index=r.index, state=state_of(r), tries=r.tries, deliveries=r.deliveries,
                        reruns=r.reruns, node=r.node, pid=0 if running else r.pid,
                        start_s=round(r.started_at - t0, 3), end_s=end, items=items, rows=r.rows))
    limit = straggler_after([b.end_s - b.start_s for b in bars if b.end_s is not None])
    if limit is None:
        return bars
    now_s = now - t0
    return [Bar(**{**asdict(b), "straggler": ((b.end_s if b.end_s is not None else now_s)
                                               - b.start_s) > limit}) for b in bars]


def straggler_after(durations: list[float]) -> float | None:
    """The duration past which a try is a straggler: ``STRAGGLER_FACTOR`` times the median of the
    finished tries' (None until ``MIN_FOR_MEDIAN`` have finished)."""
    if len(durations) < MIN_FOR_MEDIAN:
        return None
    return round(STRAGGLER_FACTOR * max(statistics.median(durations), 0.001), 3)


def lanes_of(bars: Iterable[Bar], now_s: float) -> list[Lane]:
    """One lane per (node, process), by node then pid; busy time is the union of its tries'
    spans (overlaps counted once), idle time the rest of its first start to its last end."""
    spans: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for b in bars:
        end = b.end_s if b.end_s is not None else now_s
        spans.setdefault((b.node, b.pid), []).append((b.start_s, max(b.start_s, end)))
    lanes = []
    for (node, pid), found in sorted(spans.items()):
        found.sort()
        busy, reach = 0.0, found[0][0]
        for lo, hi in found:
            busy += max(0.0, hi - max(lo, reach))
            reach = max(reach, hi)
        lanes.append(Lane(node=node, pid=pid, mini_batches=len(found), busy_s=round(busy, 3),
                          idle_s=round(max(0.0, reach - found[0][0] - busy), 3)))
    return lanes


def slotted(bars: list[Bar], now_s: float) -> list[Bar]:
    """``bars`` with each one's ``slot``: the first row of its lane whose tries all ended before it
    started (greedy by start, so a lane needs as many rows as it has tries at once at most)."""
    ends: dict[tuple[str, int], list[float]] = {}
    slots: dict[int, int] = {}
    for b in sorted(bars, key=lambda b: (b.start_s, b.index)):
        rows = ends.setdefault((b.node, b.pid), [])
        slot = next((k for k, end in enumerate(rows) if end <= b.start_s), len(rows))
        end = b.end_s if b.end_s is not None else now_s
        if slot == len(rows):
            rows.append(end)
        rows[slot] = max(end, b.start_s)
        slots[b.index] = slot
    return [b if slots[b.index] == b.slot else Bar(**{**asdict(b), "slot": slots[b.index]})
            for b in bars]


def bucket_width(span_s: float, max_buckets: int = MAX_BUCKETS) -> int:
    """The smallest round width (1 s, 2 s, 5 s, ... a day) that cuts ``span_s`` into at most
    ``max_buckets`` buckets."""
    for width in _NICE_S:
        if span_s <= width * max_buckets:
            return width
    return int(-(-span_s // max_buckets))


def buckets_of(rows: Iterable[BatchRow], t0: float, now_s: float, width: int,
               scale: float = 1.0) -> list[Bucket]:
    """Settled mini-batches and their items per ``width`` seconds, by when they settled
    (``ended_at``), from ``t0`` to ``now_s``; ``scale`` multiplies the counts (a sample)."""
    n = max(1, int(now_s // width) + 1)
    batches, items = [0] * n, [0] * n
    for r in rows:
        if not BatchState(r.state).settled or not r.ended_at:
            continue
        k = min(n - 1, max(0, int((r.ended_at - t0) // width)))
        batches[k] += 1
        items[k] += r.ok + r.failed
    return [Bucket(start_s=k * width, mini_batches=round(batches[k] * scale),
                   items=round(items[k] * scale), items_per_s=round(items[k] * scale / width, 2))
            for k in range(n)]


def sample(bars: list[Bar], now_s: float, limit: int = SHOW_LIMIT) -> tuple[list[Bar], str | None]:
    """At most ``limit`` bars in index order: running, failed, retried and straggling ones first
    (slowest first among them), then the rest evenly by index; a note when any were left out."""
    if len(bars) <= limit:
        return bars, None

    def slow(b: Bar) -> float:
        return (b.end_s if b.end_s is not None else now_s) - b.start_s

    notable = [b for b in bars if b.state in ("running", "failed", "retrying") or b.tries
               or b.straggler]
    notable.sort(key=slow, reverse=True)
    keep = {b.index for b in notable[:limit]}
    rest = [b for b in bars if b.index not in keep]
    room = limit - len(keep)
    if room > 0 and rest:
        step = len(rest) / room
        keep.update(rest[int(k * step)].index for k in range(room))
    chosen = [b for b in bars if b.index in keep]
    return chosen, (f"{len(chosen):,} of {len(bars):,} mini-batch tries shown: every running, "
                    "failed, retried and straggling one first (slowest first), then the others "
                    "evenly by index")


def build(job: JobRow, rows: list[BatchRow], now: float, cut: str | None = None,
          scale: float = 1.0, shown_as: str = "") -> Timeline:
    """The timeline of ``job`` from the mini-batch rows read (pure: ``now`` is given);
    ``shown_as``: the id of a job that reused ``job``'s output, whose timeline this is."""
    started = [r.started_at for r in rows if r.started_at]
    t0 = job.started_at or (min(started) if started else job.created_at or now)
    end = job.ended_at if JobState(job.state).terminal and job.ended_at else now
    ended = [r.ended_at for r in rows if r.ended_at]
    now_s = round(max(end, max(ended, default=end)) - t0, 3)
    bars = bars_of(rows, t0, t0 + now_s)
    shown, sampled = sample(bars, now_s)
    shown = slotted(shown, now_s)
    rows_of = Counter[tuple[str, int]]()
    for b in shown:
        rows_of[(b.node, b.pid)] = max(rows_of[(b.node, b.pid)], b.slot + 1)
    width = bucket_width(now_s)
    buckets = buckets_of(rows, t0, now_s, width, scale)
    settled_items = sum(b.items for b in buckets)
    return Timeline(
        job_id=shown_as or job.job_id, state=str(job.state), t0=t0, now_s=now_s, planned=job.planned,
        read=len(rows), states=dict(Counter(state_of(r) for r in rows)), bars=shown,
        lanes=[Lane(**{**asdict(lane), "slots": rows_of[(lane.node, lane.pid)] or 1})
               for lane in lanes_of(bars, now_s)], bucket_s=width,
        throughput={"buckets": [asdict(b) for b in buckets], "estimated": scale != 1.0,
                    "items": settled_items,
                    "items_per_s": round(settled_items / now_s, 2) if now_s > 0 else 0.0},
        straggler_after_s=straggler_after([b.end_s - b.start_s for b in bars if b.end_s is not None]),
        sampled=sampled, cut=cut, source=job.job_id if shown_as else "")


# -- reading ----------------------------------------------------------------------------------
def job_timeline(ledger: Ledger, job_id: str, now: float | None = None) -> dict[str, Any]:
    """``GET /api/jobs/{id}/timeline``: the job's row, then at most :data:`SCAN_LIMIT` of its
    mini-batch rows (the columns in :data:`COLUMNS`). Blocking: call it off the event loop."""
    job = ledger.get_job(job_id)
    source = ledger.get_job(job.reused_from) if job.reused_from else job   # reused: its rows
    ranges = read_ranges(source.planned)
    rows: list[BatchRow] = []
    for lo, hi in ranges:
        for row in ledger.batches(source.job_id, lo, hi, select=COLUMNS):
            rows.append(row)
            if len(rows) >= SCAN_LIMIT:   # planning added more since the job row was read
                break
    scale = source.planned / len(rows) if ranges != [(0, None)] and rows else 1.0
    return build(source, rows, time.time() if now is None else now,
                 cut_note(ranges, source.planned), scale,
                 job.job_id if job.reused_from else "").to_dict()
