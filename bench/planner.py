"""Planner cost: time and memory to plan N input blobs into mini-batches (ledger rows written, the
first window enqueued), step by step as the planning function does it.

    .venv/bin/python -m bench.planner --blobs 10000 100000
    .venv/bin/python -m bench.planner --blobs 10000 100000 --json   # one JSON object per N

The input container holds N blobs (``in/00000000.png`` ...) in Azurite, put there one of two ways:

* ``--fill seed`` (the default): Azurite writes one blob and its metadata database to a folder
  (on /dev/shm when there is one); that blob's record is copied N times into the database file,
  and Azurite is restarted on the folder. Seconds for any N. Azurite then keeps its data in that
  folder rather than in memory, saving each changed database every 5 s.
* ``--fill upload``: concurrent Put Blobs into one in-memory Azurite, topped up from one N to the
  next. Azurite 3.35's Put Blob costs O(blobs in the account) - a LokiJS scan of the account's
  blobs, twice with a SAS - so 100,000 uploads take about an hour of Azurite's CPU.

Planning runs in a fresh child process, one plan message at a time, as the queue trigger would run
it (receive, ``plan_step``, delete). The child times the planner's storage calls by kind (listing,
ledger rows, the job row, queue sends), samples the CPU time Azurite's process spends meanwhile, and
reports its peak resident memory (VmHWM) - a process that only planned, so the peak is the
planner's. Other programs on the machine compete for its two cores: the CPU times are the steadier
figures.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from shared.local.azurite import Azurite
from shared.messages import PlanMessage
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.planning import fileinputs as datasets
from shared.service.planning import planner
from shared.service.working import snapshots
from shared.settings import Settings
from shared.storage import Storage

ROOT = Path(__file__).resolve().parents[1]
CONTAINER = "bench"
F = TypeVar("F", bound=Callable[..., Any])


def blob_name(i: int) -> str:
    return f"in/{i:08d}.png"


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields_ = fh.read().rsplit(")", 1)[1].split()
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


def vm_kb(key: str) -> int:
    """A ``/proc/self/status`` memory figure (VmHWM, VmRSS) in KiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


# -- the child: plan one job, metered ------------------------------------------------------------

@dataclass
class Kind:
    """Calls of one kind: how many, their summed wall time and Azurite's CPU time meanwhile."""

    calls: int = 0
    wall_s: float = 0.0
    azurite_cpu_s: float = 0.0


@dataclass
class Meter:
    """Two views of the planner's storage calls:

    * ``waits``: time the step's own thread spends waiting, by kind. These add up to at most the
      planning time; the remainder is the planner's own work and the trigger's receive/delete.
    * ``calls``: every storage call by kind, on any thread (concurrent transactions, pages listed
      ahead). Overlapping calls each count the overlap, and so does Azurite's CPU time: it is
      attributable per kind only in a ``--sequential`` run.
    """

    azurite_pid: int
    waits: dict[str, Kind] = field(default_factory=dict)
    calls: dict[str, Kind] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, fn: F, wait: str | None = None, call: str | None = None,
             generator: bool = False) -> F:
        """``fn`` timed as a wait of kind ``wait`` (on the main thread only) and/or a call of kind
        ``call``; a generator function is consumed inside the timing."""
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.perf_counter(), process_cpu_s(self.azurite_pid)
            try:
                result = fn(*args, **kwargs)
                return iter(list(result)) if generator else result
            finally:
                wall, cpu = time.perf_counter() - started, process_cpu_s(self.azurite_pid) - cpu
                main = threading.current_thread() is threading.main_thread()
                with self.lock:
                    for view, kind in ((self.waits, wait if main else None), (self.calls, call)):
                        if kind is not None:
                            k = view.setdefault(kind, Kind())
                            k.calls, k.wall_s = k.calls + 1, k.wall_s + wall
                            k.azurite_cpu_s += cpu
        return timed  # type: ignore[return-value]

    def install(self) -> None:
        """Time the planner's storage calls, wherever the planner makes them."""
        from azure.storage.queue import QueueClient
        datasets.list_page = self.wrap(datasets.list_page, "listing", "listing")
        planner._prefetcher.take = self.wrap(planner._prefetcher.take, wait="listing")
        planner._put_rows = self.wrap(planner._put_rows, wait="ledger rows")
        Ledger.put_batches = self.wrap(Ledger.put_batches, call="ledger rows")  # type: ignore[method-assign]
        for name in ("get_job", "update_job", "totals"):
            setattr(Ledger, name, self.wrap(getattr(Ledger, name), "job row", "job row"))
        Ledger.batches = self.wrap(Ledger.batches, "job row", "job row", generator=True)  # type: ignore[method-assign]
        QueueClient.send_message = self.wrap(QueueClient.send_message, "queue sends", "queue sends")  # type: ignore[method-assign]


def plan_child(connection_string: str, job_id: str, azurite_pid: int, trace: bool,
               sequential: bool) -> dict[str, Any]:
    """Plan ``job_id`` completely, one plan message at a time; the figures as a dict."""
    if sequential:      # one call at a time: every call's cost, Azurite's included, is its own
        planner.WRITE_CONCURRENCY = 1
        planner.PREFETCH = False
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Settings(connection_string=connection_string, scratch_dir=tmp))
        ledger = Ledger(storage.ledger)
        queue = storage.queue(storage.settings.plan_queue)
        ledger.get_job(job_id)                     # connections up, clients built
        meter = Meter(azurite_pid)
        meter.install()
        rss_start = vm_kb("VmRSS")
        if trace:
            tracemalloc.start()
        cpu, azurite_cpu = time.process_time(), process_cpu_s(azurite_pid)
        started = time.perf_counter()
        steps = 0
        while msgs := list(queue.receive_messages(max_messages=1)):
            planner.plan_step(storage, ledger, PlanMessage.from_json(msgs[0].content))
            queue.delete_message(msgs[0])
            steps += 1
        seconds = time.perf_counter() - started
        cpu, azurite_cpu = time.process_time() - cpu, process_cpu_s(azurite_pid) - azurite_cpu
        heap_peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
        job = ledger.get_job(job_id)
    assert job.planning_done and not job.error, job
    return {"seconds": seconds, "steps": steps, "mini_batches": job.planned,
            "items": job.items_total, "peak_mb": vm_kb("VmHWM") / 1024,
            "rss_start_mb": rss_start / 1024, "heap_peak_mb": heap_peak,
            "planner_cpu_s": cpu, "azurite_cpu_s": azurite_cpu,
            "waits": {k: asdict(v) for k, v in meter.waits.items()},
            "calls": {k: asdict(v) for k, v in meter.calls.items()}}


# -- the parent: Azurite, inputs, jobs ------------------------------------------------------------

def top_up(storage: Storage, have: int, want: int, threads: int) -> float:
    """Upload blobs ``have .. want-1`` of the input; seconds taken."""
    client = storage.ensure_container(CONTAINER)
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(lambda i: client.upload_blob(blob_name(i), b"x", overwrite=True),
                          range(have, want), chunksize=64):
            pass
    return time.monotonic() - started


def seed(location: Path, n: int) -> None:
    """Azurite's blob database in ``location`` with the input's ``n`` blobs, written directly.

    Azurite itself writes the first blob (its record, its one-byte extent); the record is then
    copied for every other name, all pointing at that extent, and the LokiJS collection's sorted
    indexes are rebuilt to match, exactly as Azurite would have kept them."""
    with Azurite(location=location) as azurite:
        storage = Storage(Settings(connection_string=azurite.connection_string,
                                   scratch_dir=str(location)))
        storage.ensure_container(CONTAINER).upload_blob(blob_name(0), b"x")
    path = location / "__azurite_db_blob__.json"      # saved by Azurite when it stopped
    db = json.loads(path.read_text())
    blobs = next(c for c in db["collections"] if c["name"] == "$BLOBS_COLLECTION$")
    template = next(d for d in blobs["data"] if d["name"] == blob_name(0))
    docs = [d for d in blobs["data"] if d is not template]
    docs += [{**template, "name": blob_name(i)} for i in range(n)]
    for loki_id, doc in enumerate(docs, 1):
        doc["$loki"] = loki_id
    blobs["data"], blobs["maxId"], blobs["idIndex"] = docs, len(docs), None   # idIndex: rebuilt
    for prop, index in blobs["binaryIndices"].items():
        index["values"] = sorted(range(len(docs)), key=lambda i: docs[i].get(prop) or "")
        index["dirty"] = False
    path.write_text(json.dumps(db))


def scratch_root() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@contextlib.contextmanager
def code_snapshot(storage: Storage) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "score.py").write_text("def init():\n    pass\n\ndef run(b):\n    return b\n")
        yield snapshots.upload(storage, Path(tmp))


@dataclass
class Input:
    """An Azurite whose input container holds ``blobs`` blobs."""

    blobs: int
    connection_string: str
    azurite_pid: int
    storage: Storage
    fill_s: float


def inputs(sizes: list[int], fill: str, threads: int, attach: tuple[str, int] | None
           ) -> Iterator[Input]:
    """An Azurite with each input size in turn (increasing)."""
    if fill == "seed" and attach is None:
        for n in sizes:
            with tempfile.TemporaryDirectory(dir=scratch_root()) as tmp:
                started = time.monotonic()
                seed(Path(tmp) / "azurite", n)
                with Azurite(location=Path(tmp) / "azurite") as azurite:
                    assert azurite.process is not None
                    storage = Storage(Settings(connection_string=azurite.connection_string,
                                               scratch_dir=tmp))
                    storage.ensure()
                    yield Input(n, azurite.connection_string, azurite.process.pid, storage,
                                time.monotonic() - started)
        return
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        if attach is not None:
            conn, pid = attach
        else:
            azurite = stack.enter_context(Azurite())
            assert azurite.process is not None
            conn, pid = azurite.connection_string, azurite.process.pid
        storage = Storage(Settings(connection_string=conn, scratch_dir=tmp))
        storage.ensure()
        have = count_blobs(storage)
        for n in sizes:
            if n < have:
                raise SystemExit(f"the input container already holds {have:,} blobs (> {n:,})")
            upload_s = top_up(storage, have, n, threads)
            have = n
            yield Input(n, conn, pid, storage, upload_s)


def submit(storage: Storage, code: str, batch: str) -> str:
    job = jobs.submit(storage, Ledger(storage.ledger), {
        "name": "plan-bench", "entry_script": "score.py", "source_directory": code,
        "inputs": [f"{CONTAINER}/in/"], "mini_batch_size": batch})
    return job.job_id


def count_blobs(storage: Storage) -> int:
    client = storage.ensure_container(CONTAINER)
    return sum(1 for _ in client.list_blob_names(name_starts_with="in/"))


def run_child(connection_string: str, azurite_pid: int, job_id: str, trace: bool,
              sequential: bool) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.planner", "--child", connection_string, job_id, str(azurite_pid)]
    args += (["--tracemalloc"] if trace else []) + (["--sequential"] if sequential else [])
    out = subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def result(n: int, figures: dict[str, Any], fill_s: float) -> dict[str, Any]:
    """One N's figures: the harness's keys first (the split is the step thread's waits)."""
    def wait(kind: str) -> float:
        return round(figures["waits"].get(kind, {}).get("wall_s", 0.0), 2)

    def rounded(kinds: dict[str, Any]) -> dict[str, Any]:
        return {k: {"calls": v["calls"], "wall_s": round(v["wall_s"], 2),
                    "azurite_cpu_s": round(v["azurite_cpu_s"], 2)} for k, v in kinds.items()}

    heap = figures["heap_peak_mb"]
    return {"blobs": n, "seconds": round(figures["seconds"], 2),
            "blobs_per_s": round(n / figures["seconds"]), "peak_mb": round(figures["peak_mb"], 1),
            "listing_s": wait("listing"), "ledger_s": round(wait("ledger rows") + wait("job row"), 2),
            "queue_s": wait("queue sends"),
            "mini_batches": figures["mini_batches"], "steps": figures["steps"],
            "rss_start_mb": round(figures["rss_start_mb"], 1),
            "heap_peak_mb": round(heap, 1) if heap is not None else None,
            "planner_cpu_s": round(figures["planner_cpu_s"], 2),
            "azurite_cpu_s": round(figures["azurite_cpu_s"], 2), "fill_s": round(fill_s, 1),
            "waits": rounded(figures["waits"]), "calls": rounded(figures["calls"])}


def print_tables(results: list[dict[str, Any]], batch: str, sequential: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(100, Console().width))
    mode = "one call at a time" if sequential else "concurrent writes, next page listed ahead"
    main = Table("blobs", "mini-batches", "steps", "planning s", "blobs/s", "peak MB", "listing s",
                 "ledger s", "queue s", "planner CPU s", "Azurite CPU s",
                 title=f"planner, mini_batch_size {batch}, {mode}")
    calls = Table("blobs", "kind", "calls", "s (summed)", "ms/call", "Azurite CPU s",
                  title="storage calls by kind, on any thread (concurrent calls overlap)")
    for r in results:
        main.add_row(f"{r['blobs']:,}", f"{r['mini_batches']:,}", str(r["steps"]),
                     f"{r['seconds']:.1f}", f"{r['blobs_per_s']:,}", f"{r['peak_mb']:.0f}",
                     f"{r['listing_s']:.1f}", f"{r['ledger_s']:.1f}", f"{r['queue_s']:.2f}",
                     f"{r['planner_cpu_s']:.1f}", f"{r['azurite_cpu_s']:.1f}")
        for kind, c in r["calls"].items():
            calls.add_row(f"{r['blobs']:,}", kind, str(c["calls"]), f"{c['wall_s']:.2f}",
                          f"{1000 * c['wall_s'] / max(1, c['calls']):.1f}",
                          f"{c['azurite_cpu_s']:.2f}")
    console.print(main)
    start_rss = ", ".join(f"{r['rss_start_mb']:.0f}" for r in results)
    console.print("listing / ledger / queue s: time the step's thread waited for them; peak MB: "
                  f"the planning process's VmHWM (its RSS when planning began: {start_rss})")
    console.print(calls)
    if any(r["heap_peak_mb"] is not None for r in results):
        console.print("Python heap peak (tracemalloc), MB: " + ", ".join(
            f"{r['blobs']:,}: {r['heap_peak_mb']}" for r in results))
    console.print("seconds to fill the input: " + ", ".join(
        f"{r['blobs']:,}: {r['fill_s']:.0f}" for r in results))


def reuse_decision(storage: Storage, job_id: str) -> dict[str, Any]:
    """Wall time of one listing of the job's input, and of comparing it with the job's listing
    rows as a job with the same fingerprint does at its first planner step."""
    from shared.service.jobs import reuse
    from shared.service.planning import fileinputs

    spec = Ledger(storage.ledger).get_job(job_id).spec
    started, token = time.monotonic(), None
    while True:
        _, token, _ = fileinputs.list_page(storage, spec.inputs[0], token, storage.settings.plan_page_size)
        if token is None:
            break
    listing_s = time.monotonic() - started
    started = time.monotonic()
    diff = reuse.compare(storage, Ledger(storage.ledger), spec, job_id)
    return {"listing_s": round(listing_s, 2), "decide_s": round(time.monotonic() - started, 2),
            "same": diff.same}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blobs", type=int, nargs="+", default=[10_000])
    parser.add_argument("--batch", default="10", help="mini_batch_size (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per N")
    parser.add_argument("--fill", choices=("seed", "upload"), default="seed",
                        help="how the input blobs get into Azurite (see above)")
    parser.add_argument("--sequential", action="store_true",
                        help="one storage call at a time (no concurrent writes, no listing ahead): "
                             "each call's cost, Azurite's CPU included, is then its own")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also report the Python heap's peak (slows the planner down)")
    parser.add_argument("--repeat", type=int, default=1, help="plan each N this many times")
    parser.add_argument("--settle", type=float, default=6.0,
                        help="seconds to wait before planning, for Azurite to finish saving its "
                             "databases (--fill seed)")
    parser.add_argument("--upload-threads", type=int, default=8)
    parser.add_argument("--azurite", nargs=2, metavar=("CONNECTION_STRING", "PID"),
                        help="use this running Azurite, topping its input container up by uploads")
    parser.add_argument("--reuse", action="store_true",
                        help="after planning, time deciding allow_reuse against the planned job "
                             "(its listing rows) beside one plain listing of the same input")
    parser.add_argument("--child", nargs=3, metavar=("CONN", "JOB", "AZURITE_PID"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        conn, job_id, pid = args.child
        print(json.dumps(plan_child(conn, job_id, int(pid), args.tracemalloc, args.sequential)))
        return 0
    attach = (args.azurite[0], int(args.azurite[1])) if args.azurite else None
    results = []
    for given in inputs(sorted(args.blobs), args.fill, args.upload_threads, attach):
        with code_snapshot(given.storage) as code:
            for _ in range(args.repeat):
                job_id = submit(given.storage, code, args.batch)
                if args.fill == "seed" and attach is None:
                    time.sleep(args.settle)
                r = result(given.blobs, run_child(given.connection_string, given.azurite_pid,
                                                  job_id, args.tracemalloc, args.sequential),
                           given.fill_s)
                if args.reuse:
                    r["reuse"] = reuse_decision(given.storage, job_id)
                    if not args.json:
                        print(f"{given.blobs:,} blobs: one listing {r['reuse']['listing_s']:.2f} s, "
                              f"deciding reuse {r['reuse']['decide_s']:.2f} s "
                              f"(same inputs: {r['reuse']['same']})", flush=True)
                results.append(r)
                if args.json:
                    print(json.dumps(r), flush=True)
    if not args.json:
        print_tables(results, args.batch, args.sequential)
    return 0


if __name__ == "__main__":
    sys.exit(main())
