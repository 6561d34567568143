"""The machine's limits for the benchmark's workloads, to set our end-to-end throughput against.

Each measurement prints one JSON object per line on stdout (progress goes to stderr)::

    io-sdk          read every blob of a workload with the Azure SDK's async client (aiohttp),
                    sweeping concurrency and processes; the best configuration is the figure
    io-http         the same reads with a minimal pipelined HTTP/1.1 client of our own (asyncio
                    protocol, SAS token made once, no per-request signing): the I/O limit
    compute-images  decode + preprocess the PNGs (held in memory) as the MNIST entry script does and
                    score them with onnxruntime on all cores, for several batch sizes
    compute-tables  parse the CSV / Parquet bytes (in memory) with shared.scoring.tabular, in the pieces
                    ParallelRun reads (1 MB and 10 MB mini-batches: the faster one is the limit), and
                    score them as the tabular entry script does
    naive           one process, one file at a time with the sync SDK: list, download, decode, score

Keys of every object: name, workload, items, seconds (median), items_per_s (median), runs (seconds
of each run), best_items_per_s (fastest run), notes, plus measurement-specific ones: config, checks
(``accuracy``, ``items_read``: nobody benchmarks nothing by accident), and CPU accounting per run:
``client_cpu_s`` (our processes), ``azurite_cpu_s`` (when Azurite's pid is known or found), their
``*_cores`` (CPU seconds / wall seconds), ``other_cpu_s`` / ``other_cpu_share`` (everything else on the
machine: a share above 5 % puts a WARNING in the notes, the figure is then pessimistic) and
``cpu_bound_items_per_s``: the rate the measured CPU cost per item allows on an idle machine (see
:func:`_add_projection`).

Usage::

    .venv/bin/python -m bench.limits all --standalone                 # own Azurite, full workload
    .venv/bin/python -m bench.limits all --self-test                  # own Azurite, small workload
    .venv/bin/python -m bench.limits io-http --connection-string CS [--runs 5] [--workload images]

With ``--connection-string`` the workload must already be in that storage account
(``workloads.upload_images`` / ``workloads.upload_tables``). Listing blobs is never timed, except by
``naive`` (a plain loop lists as it goes).
Measurements that sweep configurations run each configuration once (screening), then the best one
``--runs`` times; the screening figures are in ``by_config``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from bench import workloads
from examples.mnist.digits import label_from_filename

MEASURES = ("io-sdk", "io-http", "compute-images", "compute-tables", "naive")
TABLE_FORMATS = ("csv", "parquet")
TABLE_LABEL = "label"
# The guard that a run really scored: the MNIST model gets ~0.91 of the shifted digits right and the
# breast-cancer model ~0.95 of the rows (chance: 0.1 and ~0.6); 0.85 catches a broken pipeline
# without flaking on a different sample.
MIN_ACCURACY = 0.85


def log(message: str) -> None:
    print(f"[limits {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the storage under test and its data -----------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """The storage account under test; ``azurite_pid`` (when known) lets runs report Azurite's CPU."""

    connection_string: str
    azurite_pid: int | None = None

    def fields(self) -> dict[str, str]:
        return dict(kv.split("=", 1) for kv in self.connection_string.split(";") if "=" in kv)


@dataclass(frozen=True)
class BlobSet:
    """Known blobs of one workload: listed once, never timed."""

    container: str
    names: list[str]
    sizes: list[int]

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)


@dataclass(frozen=True)
class TableSet(BlobSet):
    """One table format's files; ``data`` holds their bytes (read once, untimed)."""

    fmt: str = "csv"
    rows: int = 0
    data: list[bytes] = field(default_factory=list, repr=False)


def list_blobs(target: Target, container: str, prefix: str) -> BlobSet:
    from azure.storage.blob import ContainerClient

    with ContainerClient.from_connection_string(target.connection_string, container) as client:
        blobs = sorted((b.name, int(b.size)) for b in client.list_blobs(name_starts_with=prefix))
    if not blobs:
        raise SystemExit(f"no blobs under {container}/{prefix}: upload the workload first "
                         f"(bench.workloads) or use --standalone")
    return BlobSet(container, [n for n, _ in blobs], [s for _, s in blobs])


def image_set(target: Target) -> BlobSet:
    return list_blobs(target, workloads.IMAGES_CONTAINER, workloads.IMAGES_PREFIX)


def table_set(target: Target, fmt: str) -> TableSet:
    """The files of one format, downloaded once (untimed: also warms Azurite) and their rows counted."""
    listed = list_blobs(target, workloads.TABLES_CONTAINER, f"{fmt}/")
    data = asyncio.run(_sdk_read(target.connection_string, listed.container, listed.names,
                                 concurrency=4, keep=True))[2]
    return TableSet(listed.container, listed.names, listed.sizes, fmt=fmt,
                    rows=sum(_count_rows(fmt, d) for d in data), data=data)


def _count_rows(fmt: str, data: bytes) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq
        return int(pq.ParquetFile(io.BytesIO(data)).metadata.num_rows)
    return data.count(b"\n") - 1 + (not data.endswith(b"\n"))     # less the header line


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` of this machine (Linux /proc), or None if not found:
    lets ``--connection-string`` runs report Azurite's CPU without being told its pid."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:   # LISTEN
                        inodes.add(f"socket:[{cols[9]}]")
        except OSError:
            continue
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                return int(pid)
        except OSError:
            continue
    return None


def _machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used so far (every core), from /proc/stat."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fh.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (all its threads) so far, from /proc."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            after_name = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 (utime) and 15 (stime) of proc(5); after_name starts at field 3.
    return (int(after_name[11]) + int(after_name[12])) / os.sysconf("SC_CLK_TCK")


# -- worker processes ----------------------------------------------------------------------------
def _serve(conn: mpc.Connection, factory: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A worker process: build the state once, then run its methods on request until told to stop."""
    try:
        state = factory(*args)
        conn.send(("ok", None, 0.0))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", traceback.format_exc(), 0.0))
        return
    while True:
        try:
            message = conn.recv()
        except EOFError:        # the parent is gone
            return
        if message is None:
            return
        method, method_args = message
        cpu = time.process_time()
        try:
            result = getattr(state, method)(*method_args)
            conn.send(("ok", result, time.process_time() - cpu))
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc(), time.process_time() - cpu))


@dataclass
class Timed:
    """One timed run: wall seconds (parent's clock), each worker's result, CPU seconds used by the
    client (our processes), by Azurite (when its pid is known) and by the whole machine."""

    seconds: float
    results: list[Any]
    client_cpu_s: float
    server_cpu_s: float | None
    machine_cpu_s: float = 0.0

    @property
    def other_cpu_s(self) -> float:
        """CPU used by anything else (another benchmark, ...): should be near 0 for a clean run."""
        return max(0.0, self.machine_cpu_s - self.client_cpu_s - (self.server_cpu_s or 0.0))


class Workers:
    """Spawned processes, each set up once (untimed) with its own arguments, then run in lock-step.

    The wall time of a run is taken in the parent, from sending "go" to the last answer, so it covers
    the slowest worker (and a pipe round trip, well under a millisecond)."""

    def __init__(self, factory: Callable[..., Any], args_per_worker: Sequence[tuple[Any, ...]],
                 azurite_pid: int | None = None) -> None:
        context = mp.get_context("spawn")
        self.azurite_pid = azurite_pid
        self._conns: list[mpc.Connection] = []
        self._procs: list[Any] = []
        for args in args_per_worker:
            parent, child = context.Pipe()
            proc = context.Process(target=_serve, args=(child, factory, args), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self._collect()

    def __len__(self) -> int:
        return len(self._conns)

    def run(self, method: str, *args: Any) -> Timed:
        server = _cpu_seconds(self.azurite_pid)
        machine = _machine_busy_seconds()
        started = time.perf_counter()
        for conn in self._conns:
            conn.send((method, args))
        answers = self._collect()
        seconds = time.perf_counter() - started
        machine = _machine_busy_seconds() - machine
        after = _cpu_seconds(self.azurite_pid)
        return Timed(seconds, [result for result, _ in answers], sum(cpu for _, cpu in answers),
                     None if server is None or after is None else after - server, machine)

    def _collect(self) -> list[tuple[Any, float]]:
        answers = []
        errors = []
        for conn in self._conns:
            try:
                status, result, cpu = conn.recv()
            except EOFError:
                status, result, cpu = "error", "worker process died", 0.0
            if status != "ok":
                errors.append(result)
            answers.append((result, cpu))
        if errors:
            self.close()
            raise RuntimeError("worker failed:\n" + "\n".join(errors))
        return answers

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` in ``parts`` contiguous slices of (nearly) equal length."""
    bounds = [round(i * len(items) / parts) for i in range(parts + 1)]
    return [list(items[bounds[i]:bounds[i + 1]]) for i in range(parts)]


# -- results ------------------------------------------------------------------------------------
def result(name: str, workload: str, items: int, timed: Sequence[Timed], notes: str,
           **extra: Any) -> dict[str, Any]:
    seconds = [t.seconds for t in timed]
    median = statistics.median(seconds)
    out: dict[str, Any] = {"name": name, "workload": workload, "items": items,
                           "seconds": round(median, 4), "items_per_s": round(items / median, 1),
                           "runs": [round(s, 4) for s in seconds], "notes": notes,
                           "best_items_per_s": round(items / min(seconds), 1)}
    # CPU seconds per run, and in cores (CPU seconds / wall seconds): a side near 1.0 core (Azurite,
    # which is single-threaded) or near all cores (the client) is what bounds the run.
    client = [t.client_cpu_s for t in timed]
    if any(client):
        out["client_cpu_s"] = round(statistics.median(client), 3)
        out["client_cores"] = round(out["client_cpu_s"] / median, 2)
    server = [t.server_cpu_s for t in timed if t.server_cpu_s is not None]
    if server:
        out["azurite_cpu_s"] = round(statistics.median(server), 3)
        out["azurite_cores"] = round(out["azurite_cpu_s"] / median, 2)
    # Anything else that ran meanwhile (another benchmark on this 2-core machine) skews the figure.
    other = statistics.median(t.other_cpu_s for t in timed)
    out["other_cpu_s"] = round(other, 3)
    out["other_cpu_share"] = round(other / (median * (os.cpu_count() or 1)), 3)
    if out["other_cpu_share"] > 0.05:
        out["notes"] += (f"; WARNING: other processes used {out['other_cpu_share']:.0%} of the "
                         f"machine's CPU during the runs")
    out.update(extra)
    out["cpus"] = os.cpu_count()
    return out


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


@dataclass(frozen=True)
class IoConfig:
    """How reads are spread: processes x connections (x pipelined requests per connection)."""

    processes: int
    concurrency: int          # concurrent downloads (SDK) or connections (HTTP) per process
    depth: int = 1            # HTTP only: requests in flight per connection

    @property
    def label(self) -> str:
        depth = f"x{self.depth}deep" if self.depth > 1 else ""
        return f"{self.processes}p x {self.concurrency}{depth}"


def sweep(configs: Sequence[IoConfig], once: Callable[[IoConfig], Timed], runs: int,
          check: Callable[[Timed], None]) -> tuple[IoConfig, list[Timed], dict[str, float]]:
    """Screen every configuration with one run, then run the fastest ``runs`` times."""
    screening: dict[IoConfig, float] = {}
    if len(configs) > 1:
        for config in configs:
            timed = once(config)
            check(timed)
            screening[config] = timed.seconds
            log(f"  {config.label}: {timed.seconds:.3f} s")
    best = min(screening, key=screening.__getitem__) if screening else configs[0]
    measured = []
    for _ in range(runs):
        timed = once(best)
        check(timed)
        measured.append(timed)
    log(f"  best {best.label}: runs {[round(t.seconds, 3) for t in measured]}")
    return best, measured, {c.label: round(s, 4) for c, s in screening.items()}


class Pools:
    """Worker pools keyed by process count, made on first use and kept for the sweep."""

    def __init__(self, make: Callable[[int], Workers]) -> None:
        self._make = make
        self._pools: dict[int, Workers] = {}

    def get(self, processes: int) -> Workers:
        if processes not in self._pools:
            self._pools[processes] = self._make(processes)
        return self._pools[processes]

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def _check_read(blobs: BlobSet) -> Callable[[Timed], None]:
    def check(timed: Timed) -> None:
        count = sum(r[0] for r in timed.results)
        size = sum(r[1] for r in timed.results)
        if count != len(blobs.names) or size != blobs.total_bytes:
            raise RuntimeError(f"read {count} blobs / {size} bytes, expected {len(blobs.names)} / "
                               f"{blobs.total_bytes}")
    return check


# -- I/O with the Azure SDK (async) -------------------------------------------------------------
async def _sdk_read(connection_string: str, container: str, names: Sequence[str], concurrency: int,
                    keep: bool = False) -> tuple[int, int, list[bytes]]:
    """Download ``names`` with ``concurrency`` coroutines sharing one aiohttp session sized to it.

    Returns (blobs read, bytes read, the bodies in ``names`` order if ``keep``)."""
    import aiohttp
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.storage.blob.aio import ContainerClient

    bodies: list[bytes] = [b""] * len(names) if keep else []
    totals = [0, 0]
    work = iter(enumerate(names))      # shared by the coroutines: each takes the next blob

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     auto_decompress=False) as session:
        transport = AioHttpTransport(session=session, session_owner=False)
        async with ContainerClient.from_connection_string(connection_string, container,
                                                          transport=transport) as client:
            async def reader() -> None:
                for index, name in work:
                    downloader = await client.download_blob(name, max_concurrency=1)
                    data = await downloader.readall()
                    totals[0] += 1
                    totals[1] += len(data)
                    if keep:
                        bodies[index] = data
            await asyncio.gather(*(reader() for _ in range(min(concurrency, len(names)))))
    return totals[0], totals[1], bodies


class SdkReader:
    """Worker state: reads its share of a blob set with the async SDK."""

    def __init__(self, connection_string: str, container: str, names: list[str]) -> None:
        import aiohttp  # noqa: F401  (imported here so that no timed run pays for it)
        import azure.storage.blob.aio  # noqa: F401
        self.connection_string, self.container, self.names = connection_string, container, names

    def read(self, concurrency: int) -> tuple[int, int]:
        count, size, _ = asyncio.run(_sdk_read(self.connection_string, self.container, self.names,
                                               concurrency))
        return count, size


def measure_io_sdk(target: Target, blobs: BlobSet, workload: str, configs: Sequence[IoConfig],
                   runs: int, rows: int | None = None) -> dict[str, Any]:
    log(f"io-sdk {workload}: {len(blobs.names)} blobs, {blobs.total_bytes / 1e6:.1f} MB")
    pools = Pools(lambda p: Workers(SdkReader, [(target.connection_string, blobs.container, part)
                                                for part in split(blobs.names, p)],
                                    target.azurite_pid))
    try:
        best, measured, screening = sweep(
            configs, lambda c: pools.get(c.processes).run("read", c.concurrency), runs,
            _check_read(blobs))
    finally:
        pools.close()
    return _io_result("io-sdk", workload, blobs, measured, best, screening, rows,
                      f"azure.storage.blob.aio ContainerClient.download_blob(name).readall() over one "
                      f"aiohttp session per process; best of {len(configs)} configs: "
                      f"{best.processes} process(es) x {best.concurrency} concurrent downloads")


def _io_result(name: str, workload: str, blobs: BlobSet, measured: list[Timed], best: IoConfig,
               screening: dict[str, float], rows: int | None, notes: str) -> dict[str, Any]:
    items = rows if rows is not None else len(blobs.names)
    out = result(name, workload, items, measured, notes,
                 config={"processes": best.processes, "concurrency": best.concurrency,
                         "depth": best.depth},
                 blobs=len(blobs.names), bytes=blobs.total_bytes, items_read=len(blobs.names),
                 by_config=screening)
    median = out["seconds"]
    out["unit"] = "rows" if rows is not None else "blobs"
    out["blobs_per_s"] = round(len(blobs.names) / median, 1)
    out["mb_per_s"] = round(blobs.total_bytes / median / 1e6, 1)
    _add_projection(out, best.processes)
    return out


def _add_projection(out: dict[str, Any], client_parallelism: int | None,
                    uses_storage: bool = True) -> None:
    """``cpu_bound_items_per_s``: the rate the run's CPU use allows on an otherwise idle machine.

    Wall time suffers from anything else running on the machine; CPU seconds per item much less. A
    run needs at least: Azurite's CPU on one core (its JavaScript is single-threaded), the client's
    CPU on ``client_parallelism`` cores (None: done in series with Azurite's, as the naive loop
    does), and both together on all the cores. The largest of these bounds the rate. Optimistic
    where Python threads share a GIL (the compute "threads" variant) and where contention did not
    inflate CPU time too; a ceiling to compare the wall-time figure with, not a substitute."""
    if "client_cpu_s" not in out or (uses_storage and "azurite_cpu_s" not in out):
        return
    server = out.get("azurite_cpu_s", 0.0) if uses_storage else 0.0
    client, cpus = out["client_cpu_s"], out["cpus"] or 1
    if client_parallelism is None:
        need = server + client
    else:
        need = max(server, client / min(client_parallelism, cpus), (server + client) / cpus)
    if need > 0:
        out["cpu_bound_items_per_s"] = round(out["items"] / need, 1)
        if uses_storage:
            out["azurite_cpu_ms_per_item"] = round(1000 * server / out["items"], 4)
        out["client_cpu_ms_per_item"] = round(1000 * client / out["items"], 4)


# -- I/O with a minimal HTTP/1.1 client ---------------------------------------------------------
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


class _PipelinedConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection keeping up to ``depth`` GETs in flight (pipelining).

    Requests come from an iterator shared by all the connections of a reader, so a fast connection
    takes more of them. Responses come back in request order; each is framed by its Content-Length
    (Azurite sends one for blob GETs; anything else, or a status other than 200, is an error). Just
    enough HTTP for this: no chunked bodies, no redirects, no retries."""

    def __init__(self, requests: Iterator[bytes], depth: int, done: asyncio.Future[None]) -> None:
        self._requests = requests
        self._depth = depth
        self._done = done
        self._transport: asyncio.Transport | None = None
        self._in_flight = 0
        self._buf = bytearray()
        self._need = -1                 # body bytes still due; -1 while reading a header
        self._chunks: list[bytes] = []
        self.responses = 0
        self.body_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._send_more()

    def data_received(self, data: bytes) -> None:
        try:
            if 0 < self._need and not self._buf and len(data) <= self._need:
                # The middle of a large body: keep the chunk as it is, no copy into the buffer.
                self._chunks.append(data)
                self._need -= len(data)
                if self._need == 0:
                    self._complete()
            else:
                self._buf += data
                self._parse()
            self._send_more()
        except Exception as exc:  # noqa: BLE001 - ends the read with the error
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done.done():
            return
        if self._in_flight:
            self._done.set_exception(ConnectionError(
                f"connection closed with {self._in_flight} request(s) unanswered: {exc}"))
        else:
            self._done.set_result(None)

    def _send_more(self) -> None:
        assert self._transport is not None
        batch = []
        while self._in_flight < self._depth:
            request = next(self._requests, None)
            if request is None:
                break
            batch.append(request)
            self._in_flight += 1
        if batch:
            self._transport.write(b"".join(batch))     # one send for the whole batch
        elif self._in_flight == 0 and not self._transport.is_closing():
            self._transport.close()                    # nothing left: connection_lost resolves done

    def _parse(self) -> None:
        buf = self._buf
        while buf:
            if self._need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end])
                if head[9:12] != b"200":
                    raise RuntimeError(f"HTTP error: {head.decode(errors='replace')[:400]}")
                match = _CONTENT_LENGTH.search(head)
                if match is None:
                    raise RuntimeError("response without Content-Length (chunked?)")
                del buf[:end + 4]
                self._need = int(match.group(1))
                if self._need == 0:
                    self._complete()
                continue
            take = min(self._need, len(buf))
            self._chunks.append(bytes(buf[:take]))
            del buf[:take]
            self._need -= take
            if self._need == 0:
                self._complete()

    def _complete(self) -> None:
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        self._need = -1
        self._in_flight -= 1
        self.responses += 1
        self.body_bytes += len(body)

    def _fail(self, exc: Exception) -> None:
        if not self._done.done():
            self._done.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()


async def _http_read(host: str, port: int, requests: Sequence[bytes], connections: int,
                     depth: int) -> tuple[int, int]:
    loop = asyncio.get_running_loop()
    shared = iter(requests)
    protocols: list[_PipelinedConnection] = []
    waits: list[asyncio.Future[None]] = []
    for _ in range(min(connections, len(requests))):
        done: asyncio.Future[None] = loop.create_future()
        protocol = _PipelinedConnection(shared, depth, done)
        await loop.create_connection(lambda p=protocol: p, host, port)
        protocols.append(protocol)
        waits.append(done)
    await asyncio.gather(*waits)
    return sum(p.responses for p in protocols), sum(p.body_bytes for p in protocols)


@dataclass(frozen=True)
class HttpTarget:
    """Where raw requests go and how they are authorised: one container SAS, made once."""

    host: str
    port: int
    path: str           # the container's URL path, e.g. /devstoreaccount1/bench-images
    sas: str

    def request(self, blob: str) -> bytes:
        return (f"GET {self.path}/{quote(blob)}?{self.sas} HTTP/1.1\r\n"
                f"Host: {self.host}:{self.port}\r\n\r\n").encode("ascii")


def http_target(target: Target, container: str) -> HttpTarget:
    from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

    fields = target.fields()
    url = urlsplit(ContainerClient.from_connection_string(target.connection_string, container).url)
    if url.scheme != "http" or url.hostname is None or url.port is None:
        raise SystemExit(f"io-http speaks plain HTTP to host:port only, not {url.geturl()}")
    sas = generate_container_sas(fields["AccountName"], container, account_key=fields["AccountKey"],
                                 permission=ContainerSasPermissions(read=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=6))
    return HttpTarget(url.hostname, url.port, url.path.rstrip("/"), sas)


class HttpReader:
    """Worker state: its share of the requests, built once; each run opens fresh connections."""

    def __init__(self, host: str, port: int, requests: list[bytes]) -> None:
        self.host, self.port, self.requests = host, port, requests

    def read(self, connections: int, depth: int) -> tuple[int, int]:
        return asyncio.run(_http_read(self.host, self.port, self.requests, connections, depth))


def measure_io_http(target: Target, blobs: BlobSet, workload: str, configs: Sequence[IoConfig],
                    runs: int, rows: int | None = None) -> dict[str, Any]:
    log(f"io-http {workload}: {len(blobs.names)} blobs, {blobs.total_bytes / 1e6:.1f} MB")
    http = http_target(target, blobs.container)
    requests = [http.request(name) for name in blobs.names]
    pools = Pools(lambda p: Workers(HttpReader, [(http.host, http.port, part)
                                                 for part in split(requests, p)],
                                    target.azurite_pid))
    try:
        best, measured, screening = sweep(
            configs, lambda c: pools.get(c.processes).run("read", c.concurrency, c.depth), runs,
            _check_read(blobs))
    finally:
        pools.close()
    return _io_result("io-http", workload, blobs, measured, best, screening, rows,
                      f"own asyncio HTTP/1.1 client, container SAS made once, Content-Length framing; "
                      f"best of {len(configs)} configs: {best.processes} process(es) x "
                      f"{best.concurrency} keep-alive connection(s) x {best.depth} pipelined "
                      f"request(s) each")


# -- compute: images -----------------------------------------------------------------------------
def _session(model: Path, threads: int = 1) -> Any:
    """An onnxruntime session as the entry scripts make it (one intra-op and inter-op thread)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(model), sess_options=options,
                                        providers=["CPUExecutionProvider"])


def _slices(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


class ImageScorer:
    """Worker state: PNG bytes in memory, the MNIST model, and (for score-only) the decoded arrays.

    ``threads`` > 1 scores mini-batches on that many Python threads sharing one session (onnxruntime
    runs concurrent ``run`` calls and releases the GIL, Pillow releases it while decoding)."""

    def __init__(self, names: list[str], pngs: list[bytes], labels: list[int], threads: int) -> None:
        self.names = [os.path.basename(n) for n in names]
        self.pngs = pngs
        self.labels = np.asarray(labels, dtype=np.int64)
        self.session = _session(workloads.MNIST_MODEL)
        self.input = self.session.get_inputs()[0].name
        self.features = np.stack([workloads.image_features(p) for p in pngs])
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def _map(self, fn: Callable[[slice], int], size: int) -> int:
        parts = _slices(len(self.pngs), size)
        return sum(self.pool.map(fn, parts) if self.pool else map(fn, parts))

    def decode_score(self, size: int) -> int:
        """What ``run(mini_batch)`` of digit_identification.py does, per mini-batch of ``size``;
        returns how many predictions were right."""
        def one(part: slice) -> int:
            batch = np.stack([workloads.image_features(p) for p in self.pngs[part]]).astype(
                np.float32, copy=False)
            digits = self.session.run(["label"], {self.input: batch})[0]
            lines = [f"{name}: {int(d)}" for name, d in zip(self.names[part], digits)]
            assert len(lines) == len(batch)
            return int((np.asarray(digits, dtype=np.int64) == self.labels[part]).sum())
        return self._map(one, size)

    def score(self, size: int) -> int:
        def one(part: slice) -> int:
            digits = self.session.run(["label"], {self.input: self.features[part]})[0]
            return int((np.asarray(digits, dtype=np.int64) == self.labels[part]).sum())
        return self._map(one, size)

    def decode(self, size: int) -> int:
        def one(part: slice) -> int:
            return len(np.stack([workloads.image_features(p) for p in self.pngs[part]]))
        return self._map(one, size)


@dataclass(frozen=True)
class Parallel:
    """How compute uses the cores: ``processes`` each with ``threads`` Python threads."""

    processes: int
    threads: int

    @property
    def label(self) -> str:
        return f"{self.processes} process(es) x {self.threads} thread(s)"

    @property
    def cores(self) -> int:
        return self.processes * self.threads


def compute_variants(cpus: int) -> list[Parallel]:
    return [Parallel(cpus, 1), Parallel(1, cpus)] if cpus > 1 else [Parallel(1, 1)]


def _median_run(pool: Workers, method: str, args: tuple[Any, ...], runs: int,
                check: Callable[[Timed], None]) -> list[Timed]:
    out = []
    for _ in range(runs):
        timed = pool.run(method, *args)
        check(timed)
        out.append(timed)
    return out


def measure_compute_images(names: list[str], pngs: list[bytes], batch_sizes: Sequence[int],
                           runs: int, min_accuracy: float = MIN_ACCURACY) -> list[dict[str, Any]]:
    n = len(pngs)
    labels = [label_from_filename(name) for name in names]
    variants = compute_variants(os.cpu_count() or 1)
    log(f"compute-images: {n} PNGs in memory, batch sizes {list(batch_sizes)}, "
        f"variants {[v.label for v in variants]}")
    # kind -> batch size -> variant label -> runs
    timings: dict[str, dict[int, dict[str, list[Timed]]]] = {
        k: {b: {} for b in batch_sizes} for k in ("decode_score", "score", "decode")}
    accuracy: dict[int, float] = {}

    for variant in variants:
        args = [(part_names, part_pngs, part_labels, variant.threads) for part_names, part_pngs,
                part_labels in zip(split(names, variant.processes), split(pngs, variant.processes),
                                   split(labels, variant.processes))]
        with Workers(ImageScorer, args) as pool:
            pool.run("decode_score", 10)                # warm-up, untimed
            for size in batch_sizes:
                def check_accuracy(timed: Timed, size: int = size) -> None:
                    accuracy[size] = sum(timed.results) / n
                    if accuracy[size] < min_accuracy:
                        raise RuntimeError(f"accuracy {accuracy[size]:.3f} < {min_accuracy}: "
                                           f"the model did not score the images")
                for kind in ("decode_score", "score"):
                    timings[kind][size][variant.label] = _median_run(pool, kind, (size,), runs,
                                                                     check_accuracy)
                timings["decode"][size][variant.label] = _median_run(
                    pool, "decode", (size,), runs, lambda t: _expect(sum(t.results), n, "images"))
                log(f"  {variant.label}, batch {size}: " + ", ".join(
                    f"{k} {n / statistics.median(t.seconds for t in timings[k][size][variant.label]):.0f}/s"
                    for k in timings))

    out = []
    for size in batch_sizes:
        best = _best(timings["decode_score"][size])
        score_best = _best(timings["score"][size])
        decode_best = _best(timings["decode"][size])
        out.append(result(
            "compute-images", "images", n, timings["decode_score"][size][best],
            f"compute limit: PNG bytes in memory -> Pillow decode + the entry script's preprocessing "
            f"-> onnxruntime (1 intra-op thread per session) per mini-batch of {size}; best of "
            f"{len(variants)} ways to use the cores: {best}",
            batch_size=size, variant=best, accuracy=round(accuracy[size], 4),
            by_variant=_medians(timings["decode_score"][size], n),
            score_only_items_per_s=_rate(timings["score"][size][score_best], n),
            score_only_variant=score_best,
            score_only_by_variant=_medians(timings["score"][size], n),
            decode_only_items_per_s=_rate(timings["decode"][size][decode_best], n),
            decode_only_variant=decode_best))
        _add_projection(out[-1], _variant(variants, best).cores, uses_storage=False)
    return out


def _variant(variants: Sequence[Parallel], label: str) -> Parallel:
    return next(v for v in variants if v.label == label)


def _expect(got: int, want: int, what: str) -> None:
    if got != want:
        raise RuntimeError(f"processed {got} {what}, expected {want}")


def _rate(timed: Sequence[Timed], items: int) -> float:
    return round(items / statistics.median(t.seconds for t in timed), 1)


def _best(by_variant: dict[str, list[Timed]]) -> str:
    return min(by_variant, key=lambda v: statistics.median(t.seconds for t in by_variant[v]))


def _medians(by_variant: dict[str, list[Timed]], items: int) -> dict[str, float]:
    return {v: _rate(t, items) for v, t in by_variant.items()}


# -- compute: tables -----------------------------------------------------------------------------
class MemorySource:
    """A :class:`shared.scoring.tabular.RangeSource` over bytes in memory."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.size = len(data)
        self._data = data

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= self.size:
            return b""
        return self._data[offset:offset + length]


def table_score(session: Any, input_name: str, frame: Any) -> tuple[Any, int]:
    """What ``run(mini_batch)`` of score_table.py does (result frame), and how many are right."""
    import pandas as pd

    features = frame[workloads.FEATURE_COLUMNS].to_numpy(dtype=np.float32)
    labels, probabilities = session.run(["label", "probabilities"], {input_name: features})
    scored = pd.DataFrame({"id": frame["id"].to_numpy(),
                           "prediction": labels.astype(np.int64),
                           "probability": np.round(probabilities[:, 1].astype(np.float64), 6)},
                          columns=["id", "prediction", "probability"])
    right = int((scored["prediction"].to_numpy() == frame[TABLE_LABEL].to_numpy(dtype=np.int64)).sum())
    return scored, right


class TableScorer:
    """Worker state: some files' bytes, the pieces (mini-batches) it reads from them, the model."""

    def __init__(self, files: dict[str, bytes], pieces: list[dict[str, Any]],
                 schema: dict[str, Any], threads: int) -> None:
        from shared.scoring.tables import file_format
        from shared.scoring.tabular import Piece, Schema

        self.sources = {name: MemorySource(name, data) for name, data in files.items()}
        self.formats = {name: file_format({}, name) for name in files}
        self.pieces = [Piece.from_dict(p) for p in pieces]
        self.schema = Schema.from_dict(schema)
        self.session = _session(workloads.TABLE_MODEL)
        self.input = self.session.get_inputs()[0].name
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self.features = [self._read(p)[workloads.FEATURE_COLUMNS].to_numpy(dtype=np.float32)
                         for p in self.pieces]

    def _read(self, piece: Any) -> Any:
        from shared.scoring.tabular import read_piece
        return read_piece(self.sources[piece.file], self.formats[piece.file], piece, self.schema)

    def _map(self, fn: Callable[[Any], tuple[int, int]], items: Sequence[Any]) -> tuple[int, int]:
        answers = list(self.pool.map(fn, items) if self.pool else map(fn, items))
        return sum(a for a, _ in answers), sum(b for _, b in answers)

    def parse_score(self) -> tuple[int, int]:
        """(rows, right predictions) of reading and scoring every piece."""
        def one(piece: Any) -> tuple[int, int]:
            frame = self._read(piece)
            scored, right = table_score(self.session, self.input, frame)
            return len(scored), right
        return self._map(one, self.pieces)

    def parse(self) -> tuple[int, int]:
        return self._map(lambda piece: (len(self._read(piece)), 0), self.pieces)

    def score(self) -> tuple[int, int]:
        def one(features: np.ndarray) -> tuple[int, int]:
            labels = self.session.run(["label", "probabilities"], {self.input: features})[0]
            return len(labels), 0
        return self._map(one, self.features)


def plan_table(tables: TableSet, target_bytes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The schema and the pieces ParallelRun's planner makes for these files (untimed)."""
    from shared.scoring.tables import file_format
    from shared.scoring.tabular import infer_schema, plan_pieces

    sources = [MemorySource(n, d) for n, d in zip(tables.names, tables.data)]
    schema = infer_schema(sources[0], file_format({}, sources[0].name))
    pieces = [p.to_dict() for s in sources for p in plan_pieces(s, file_format({}, s.name), target_bytes)]
    return schema.to_dict(), pieces


TABLE_PIECES = (1024 * 1024, 10 * 1024 * 1024)   # the harness's table grid: 1MB (PRS default), 10MB


def measure_compute_tables(tables: TableSet, runs: int, piece_sizes: Sequence[int] = TABLE_PIECES,
                           min_accuracy: float = MIN_ACCURACY) -> dict[str, Any]:
    """Parse + score the table in memory, in pieces of each of ``piece_sizes`` (the mini-batch sizes
    ParallelRun is run with), each way of using the cores; the limit is the fastest combination."""
    files = dict(zip(tables.names, tables.data))
    variants = compute_variants(os.cpu_count() or 1)
    timings: dict[str, dict[str, list[Timed]]] = {"parse_score": {}, "score": {}, "parse": {}}
    ways: dict[str, tuple[Parallel, int, int]] = {}   # label -> (variant, piece size, pieces)
    accuracy = 0.0

    def check_rows(timed: Timed) -> None:
        _expect(sum(r[0] for r in timed.results), tables.rows, "rows")

    def check_accuracy(timed: Timed) -> None:
        nonlocal accuracy
        check_rows(timed)
        accuracy = sum(r[1] for r in timed.results) / tables.rows
        if accuracy < min_accuracy:
            raise RuntimeError(f"accuracy {accuracy:.3f} < {min_accuracy}: the model did not score")

    for size in piece_sizes:
        schema, pieces = plan_table(tables, size)
        log(f"compute-tables {tables.fmt}: {tables.rows} rows in {len(tables.names)} files, "
            f"{len(pieces)} pieces of <= {size} bytes")
        for variant in variants:
            label = f"{variant.label}, pieces of {size // (1024 * 1024)}MB"
            ways[label] = (variant, size, len(pieces))
            args = []
            for share in split(pieces, variant.processes):
                needed = {p["file"] for p in share}
                args.append(({n: d for n, d in files.items() if n in needed}, share, schema,
                             variant.threads))
            with Workers(TableScorer, args) as pool:
                pool.run("parse_score")                      # warm-up, untimed
                for kind in timings:
                    timings[kind][label] = _median_run(
                        pool, kind, (), runs, check_accuracy if kind == "parse_score" else check_rows)
                log(f"  {label}: " + ", ".join(
                    f"{k} {_rate(timings[k][label], tables.rows):.0f} rows/s" for k in timings))

    best = _best(timings["parse_score"])
    score_best = _best(timings["score"])
    parse_best = _best(timings["parse"])
    variant, size, n_pieces = ways[best]
    out = result("compute-tables", f"tables-{tables.fmt}", tables.rows, timings["parse_score"][best],
                 f"compute limit: {tables.fmt} bytes in memory -> shared.scoring.tabular.read_piece (as the "
                 f"scoring process reads a mini-batch; pyarrow parser, default threads) -> the entry "
                 f"script's scoring (onnxruntime, 1 intra-op thread; result DataFrame built, not "
                 f"written) for {n_pieces} pieces of <= {size} bytes; best of {len(ways)} "
                 f"ways ({len(variants)} uses of the cores x {len(piece_sizes)} piece sizes): {best}",
                 unit="rows", variant=best, accuracy=round(accuracy, 4), pieces=n_pieces,
                 piece_bytes=size, bytes=sum(tables.sizes),
                 by_variant=_medians(timings["parse_score"], tables.rows),
                 score_only_items_per_s=_rate(timings["score"][score_best], tables.rows),
                 score_only_variant=score_best,
                 parse_only_items_per_s=_rate(timings["parse"][parse_best], tables.rows),
                 parse_only_variant=parse_best)
    out["mb_per_s"] = round(sum(tables.sizes) / out["seconds"] / 1e6, 1)
    _add_projection(out, variant.cores, uses_storage=False)
    return out


# -- naive: one process, one file at a time ------------------------------------------------------
def _naive_runs(target: Target, container: str, prefix: str, runs: int, expected: int, unit: str,
                score: Callable[[str, bytes], tuple[int, int]]) -> tuple[list[Any], float, int]:
    """``runs`` timed passes of the naive baseline: list ``container/prefix``, then download and
    ``score(name, data) -> (items, right)`` one blob at a time; (measurements, accuracy, blobs)."""
    from azure.storage.blob import ContainerClient

    measured = []
    accuracy, blobs = 0.0, 0
    for _ in range(runs):
        watch = Stopwatch(target)
        watch.start()
        with ContainerClient.from_connection_string(target.connection_string, container) as client:
            count = right = blobs = 0
            for blob in client.list_blobs(name_starts_with=prefix):
                items, ok = score(blob.name, client.download_blob(blob.name).readall())
                count += items
                right += ok
                blobs += 1
        measured.append(watch.stop())
        _expect(count, expected, unit)
        accuracy = right / count
        if accuracy < MIN_ACCURACY:
            raise RuntimeError(f"accuracy {accuracy:.3f} < {MIN_ACCURACY}")
        log(f"  run: {measured[-1].seconds:.2f} s")
    return measured, accuracy, blobs


def measure_naive_images(target: Target, expected: int, runs: int) -> dict[str, Any]:
    session = _session_default(workloads.MNIST_MODEL)
    input_name = session.get_inputs()[0].name
    log(f"naive images: {expected} blobs, one at a time")

    def score(name: str, png: bytes) -> tuple[int, int]:
        x = workloads.image_features(png)[np.newaxis, :]
        digit = int(session.run(["label"], {input_name: x})[0][0])
        return 1, int(digit == label_from_filename(name))

    measured, accuracy, _ = _naive_runs(target, workloads.IMAGES_CONTAINER, workloads.IMAGES_PREFIX,
                                        runs, expected, "images", score)
    out = result("naive", "images", expected, measured,
                  "one process, sync SDK: list, then per blob download_blob(name).readall(), Pillow "
                  "decode + preprocessing, onnxruntime (default threads) on a batch of 1; listing "
                  "included", items_read=expected, accuracy=round(accuracy, 4))
    _add_projection(out, None)
    return out


def measure_naive_tables(target: Target, fmt: str, rows: int, runs: int) -> dict[str, Any]:
    import pandas as pd

    session = _session_default(workloads.TABLE_MODEL)
    input_name = session.get_inputs()[0].name
    log(f"naive tables-{fmt}: {rows} rows, one file at a time")

    def score(name: str, data: bytes) -> tuple[int, int]:
        frame = (pd.read_parquet(io.BytesIO(data)) if fmt == "parquet"
                 else pd.read_csv(io.BytesIO(data)))
        scored, ok = table_score(session, input_name, frame)
        return len(scored), ok

    measured, accuracy, files = _naive_runs(target, workloads.TABLES_CONTAINER, f"{fmt}/", runs,
                                            rows, "rows", score)
    out = result("naive", f"tables-{fmt}", rows, measured,
                  f"one process, sync SDK: list, then per file download_blob(name).readall(), "
                  f"pandas.read_{'parquet' if fmt == 'parquet' else 'csv'} of the whole file, the "
                  f"entry script's scoring (onnxruntime, default threads) on the whole file; listing "
                  f"included", unit="rows", files=files, accuracy=round(accuracy, 4))
    _add_projection(out, None)
    return out


def _session_default(model: Path) -> Any:
    """A session with onnxruntime's default options: what a plain script gets."""
    import onnxruntime
    return onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])


@dataclass
class Stopwatch:
    """Wall, own CPU, Azurite's CPU and the machine's CPU of a run made in this process."""

    target: Target
    started: float = 0.0
    cpu: float = 0.0
    server: float | None = None
    machine: float = 0.0

    def start(self) -> None:
        self.server = _cpu_seconds(self.target.azurite_pid)
        self.machine = _machine_busy_seconds()
        self.cpu = time.process_time()
        self.started = time.perf_counter()

    def stop(self) -> Timed:
        seconds = time.perf_counter() - self.started
        cpu = time.process_time() - self.cpu
        machine = _machine_busy_seconds() - self.machine
        server = _cpu_seconds(self.target.azurite_pid)
        return Timed(seconds, [], cpu, None if server is None or self.server is None
                     else server - self.server, machine)


# -- orchestration -------------------------------------------------------------------------------
@dataclass
class Options:
    measures: list[str]
    workloads: list[str]                 # "images", "tables"
    runs: int = 3
    processes: list[int] = field(default_factory=lambda: [1, 2])
    sdk_concurrency: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    http_connections: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    http_depths: list[int] = field(default_factory=lambda: [1, 8])
    table_concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 5, 10, 50, 200])


def run_all(target: Target, opts: Options) -> list[dict[str, Any]]:
    """Every requested measurement, each result printed as soon as it is known (and returned)."""
    out: list[dict[str, Any]] = []

    def emit_all(objs: Sequence[dict[str, Any]]) -> None:
        for obj in objs:
            emit(obj)
            out.append(obj)

    images = image_set(target) if "images" in opts.workloads else None
    tables = ({fmt: table_set(target, fmt) for fmt in TABLE_FORMATS}
              if "tables" in opts.workloads else {})
    pngs: list[bytes] = []
    if images is not None:
        # The PNGs in memory for compute-images; this first full read also warms Azurite up.
        count, size, pngs = asyncio.run(_sdk_read(target.connection_string, images.container,
                                                  images.names, concurrency=32, keep=True))
        _expect(count, len(images.names), "images")

    def io_configs(concurrency: Sequence[int], depths: Sequence[int] = (1,)) -> list[IoConfig]:
        return [IoConfig(p, c, d) for p in opts.processes for c in concurrency for d in depths]

    def table_configs(t: TableSet) -> list[IoConfig]:
        # Never more processes x concurrent downloads than files.
        configs = [IoConfig(p, c) for p in opts.processes for c in opts.table_concurrency
                   if p <= len(t.names) and p * c <= max(len(t.names), p)]
        return configs or [IoConfig(1, 1)]

    for measure in opts.measures:
        if measure in ("io-sdk", "io-http"):
            fn = measure_io_sdk if measure == "io-sdk" else measure_io_http
            if images is not None:
                configs = (io_configs(opts.sdk_concurrency) if measure == "io-sdk"
                           else io_configs(opts.http_connections, opts.http_depths))
                emit_all([fn(target, images, "images", configs, opts.runs)])
            for fmt, t in tables.items():
                emit_all([fn(target, t, f"tables-{fmt}", table_configs(t), opts.runs, rows=t.rows)])
        elif measure == "compute-images" and images is not None:
            emit_all(measure_compute_images(images.names, pngs, opts.batch_sizes, opts.runs))
        elif measure == "compute-tables":
            for t in tables.values():
                emit_all([measure_compute_tables(t, opts.runs)])
        elif measure == "naive":
            if images is not None:
                emit_all([measure_naive_images(target, len(images.names), opts.runs)])
            for fmt, t in tables.items():
                emit_all([measure_naive_tables(target, fmt, t.rows, opts.runs)])
    return out


def standalone(opts: Options, n_images: int, rows: int, parts: int) -> list[dict[str, Any]]:
    """Start a private Azurite (in memory), upload the workload, run the measurements."""
    from shared.local.azurite import Azurite
    from shared.settings import Settings
    from shared.storage import Storage

    with Azurite() as azurite, tempfile.TemporaryDirectory() as tmp:
        assert azurite.process is not None
        storage = Storage(Settings(connection_string=azurite.connection_string))
        if "images" in opts.workloads:
            log(f"uploading {n_images} images")
            workloads.upload_images(storage, n_images)
        if "tables" in opts.workloads:
            log(f"making and uploading {rows} rows as CSV and Parquet in {parts} parts each")
            workloads.upload_tables(storage, Path(tmp), rows, parts)
        return run_all(Target(azurite.connection_string, azurite.process.pid), opts)


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers such as 1,2,4")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Measure the machine's I/O and compute limits for the benchmark's workloads; "
                    "one JSON object per measurement on stdout.")
    parser.add_argument("measures", nargs="+", choices=[*MEASURES, "all"], metavar="MEASURE",
                        help=f"one or more of {', '.join(MEASURES)}, or all")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--connection-string", help="storage holding the workload already")
    where.add_argument("--standalone", action="store_true",
                       help="start a private Azurite and upload the workload (--images/--rows/--parts)")
    where.add_argument("--self-test", action="store_true",
                       help="--standalone with a small workload (2,000 images, 100,000 rows) and "
                            "small sweeps, one run each unless --runs is given")
    parser.add_argument("--azurite-pid", type=int,
                        help="Azurite's process id, to report its CPU time (default: the process "
                             "listening on the blob endpoint's port, if it is on this machine)")
    parser.add_argument("--workload", choices=["images", "tables", "all"], default="all")
    parser.add_argument("--runs", type=int, help="timed runs per measurement (default 3)")
    parser.add_argument("--images", type=int, default=10_000, help="standalone: images to upload")
    parser.add_argument("--rows", type=int, default=1_000_000, help="standalone: table rows")
    parser.add_argument("--parts", type=int, default=8, help="standalone: files per table format")
    parser.add_argument("--processes", type=_ints, help="I/O sweeps: processes (default 1,2)")
    parser.add_argument("--sdk-concurrency", type=_ints,
                        help="io-sdk images: concurrent downloads per process (default 16,32,64,128)")
    parser.add_argument("--http-connections", type=_ints,
                        help="io-http images: connections per process (default 1,4,16,64)")
    parser.add_argument("--http-depths", type=_ints,
                        help="io-http images: pipelined requests per connection (default 1,8)")
    parser.add_argument("--table-concurrency", type=_ints,
                        help="io tables: concurrent file downloads per process (default 1,2,4,8)")
    parser.add_argument("--batch-sizes", type=_ints,
                        help="compute-images: mini-batch sizes (default 1,5,10,50,200)")
    args = parser.parse_args(argv)

    measures = list(MEASURES) if "all" in args.measures else list(dict.fromkeys(args.measures))
    opts = Options(measures, ["images", "tables"] if args.workload == "all" else [args.workload])
    if args.self_test:
        args.images, args.rows, args.parts = 2_000, 100_000, 4
        opts.runs = 1
        opts.sdk_concurrency, opts.http_connections = [16, 64], [4, 16]
        opts.table_concurrency, opts.batch_sizes = [1, 4], [1, 10, 200]
    for name in ("processes", "sdk_concurrency", "http_connections", "http_depths",
                 "table_concurrency", "batch_sizes", "runs"):
        if getattr(args, name) is not None:
            setattr(opts, name, getattr(args, name))
    if opts.runs < 1:
        parser.error("--runs must be at least 1")

    if args.connection_string:
        pid = args.azurite_pid
        if pid is None:
            blob_port = urlsplit(Target(args.connection_string).fields().get("BlobEndpoint", "")).port
            pid = listener_pid(blob_port) if blob_port else None
        run_all(Target(args.connection_string, pid), opts)
    else:
        standalone(opts, args.images, args.rows, args.parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
