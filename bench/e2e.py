"""ParallelRun end to end: submit a job to a local cluster and time it until its output is written.

Used by ``bench/run.py`` (the harness) and on its own for one configuration::

    .venv/bin/python -m bench.e2e --images 10000 --batch 50 --processes 2 --nodes 1 --runs 3
    .venv/bin/python -m bench.e2e --images 5000 --batch 5 --runs 1 --profile   # + a profile

Each run submits the job to a running cluster (its host processes warm, as a Function App that is
already up) and measures submit -> job succeeded (the finalizer has committed the last row), checks
every output row against the inputs, and reads the job's own metrics: per-stage times, storage
calls per try (counted at the transport), the first mini-batch's completion (cold start when the
cluster is fresh), the host and scoring processes' peak RSS, and CPU per item and per mini-batch by
process kind (our code in the host process, the host's emulation of the Functions host, the
scoring processes, Azurite: :mod:`bench.hostcpu`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from bench import hostcpu, workloads
from examples.mnist import digits
from shared.local.azurite import Azurite
from shared.local.chaos import scoring_processes
from shared.local.cluster import LocalCluster
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import models, snapshots
from shared.settings import Settings
from shared.states import JobState
from shared.storage import Storage


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


@dataclass
class Bench:
    """Storage with the workloads in it, code snapshots and models registered."""

    storage: Storage
    ledger: Ledger
    mnist_code: str
    table_code: str

    @classmethod
    def prepare(cls, storage: Storage) -> Bench:
        storage.ensure()
        models.register(storage, "mnist", workloads.MNIST_MODEL)
        models.register(storage, "breast-cancer", workloads.TABLE_MODEL)
        return cls(storage, Ledger(storage.ledger), snapshots.upload(storage, workloads.MNIST_CODE),
                   snapshots.upload(storage, workloads.TABLE_CODE))

    def image_spec(self, batch: int, processes: int, nodes: int) -> dict[str, Any]:
        return {"name": "bench-images", "entry_script": "digit_identification.py",
                "source_directory": self.mnist_code, "models": ["mnist"],
                "inputs": [f"{workloads.IMAGES_CONTAINER}/{workloads.IMAGES_PREFIX}"],
                "mini_batch_size": str(batch), "process_count_per_node": processes,
                "node_count": nodes, "error_threshold": 0, "logging_level": "WARNING",
                "allow_reuse": False}   # each run does the work (an identical job would be reused)

    def table_spec(self, fmt: str, batch: str, processes: int, nodes: int) -> dict[str, Any]:
        return {"name": f"bench-{fmt}", "entry_script": "score_table.py",
                "source_directory": self.table_code, "models": ["breast-cancer"],
                "inputs": [{"path": f"{workloads.TABLES_CONTAINER}/{fmt}/", "type": "tabular"}],
                "mini_batch_size": batch, "process_count_per_node": processes, "node_count": nodes,
                "error_threshold": 0, "logging_level": "WARNING", "allow_reuse": False}


PLAN_AT_SUBMIT = True   # --submit (add_submit_option)


def add_submit_option(parser: argparse.ArgumentParser) -> None:
    """``--submit api|queue``: jobs submitted as the API and request blobs submit (the first step
    planned at once) or as the CLI does (planned by the plan queue); :func:`use_submit` applies it."""
    parser.add_argument("--submit", choices=("api", "queue"), default="api",
                        help="how jobs are submitted: as the API and request blobs do (the first "
                             "step planned at once) or as the CLI does (planned by the plan queue)")


def use_submit(args: argparse.Namespace) -> None:
    global PLAN_AT_SUBMIT
    PLAN_AT_SUBMIT = args.submit == "api"


def run_job(bench: Bench, spec: dict[str, Any], expect_rows: int, timeout_s: float = 900) -> dict[str, Any]:
    """Submit ``spec`` as the API does (its first step planned at once; as the CLI does, by the plan
    queue, if not ``PLAN_AT_SUBMIT``), wait for the end, check the output; the job's figures as a
    dict."""
    storage, ledger = bench.storage, bench.ledger
    started = time.time()
    job = jobs.submit(storage, ledger, spec, plan_now=PLAN_AT_SUBMIT)
    deadline = time.monotonic() + timeout_s
    while True:
        row = ledger.get_job(job.job_id)
        if JobState(row.state).terminal:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job.job_id} did not finish in {timeout_s:.0f} s")
        time.sleep(0.1)
    seconds = time.time() - started
    st = jobs.status(storage, ledger, job.job_id)
    out = st["output"]
    body = storage.container(out["container"]).download_blob(out["blob"]).readall()
    lines = body.decode().splitlines()
    timeline = _timeline(ledger, job.job_id, started, row.ended_at)
    first, first_started = timeline.get("first_settled"), timeline.get("first_settled_started")
    if st["state"] != JobState.SUCCEEDED:   # say why, so a failed run is not just a zero
        print(f"{job.job_id} {st['state']}: {st.get('reason')}; errors: "
              f"{[e.get('message') for e in st.get('errors', [])][:3]}", file=sys.stderr)
    return {"timeline": timeline, "job_id": job.job_id, "state": st["state"], "seconds": seconds,
            "reason": st.get("reason", ""),
            "items": st["items"]["succeeded"], "rows": len(lines), "rows_ok": len(lines) == expect_rows,
            "mini_batches": st["mini_batches"]["total"], "stages": st["stages"],
            "first_batch_s": first,
            "cold_start_parts": {"planning_started": row.started_at - started,
                                 "first_try_started": first_started, "first_try_done": first},
            "output_lines": lines}


def _timeline(ledger: Ledger, job_id: str, submitted: float, ended: float) -> dict[str, float]:
    """Seconds from submit: first try started, first mini-batch settled (and when its try started),
    last settled, job done; and the steady rate: items settled after the first one / time from the
    first to the last settle (the job's rate once its scoring processes are up)."""
    rows = [b for b in ledger.batches(job_id) if b.ended_at]
    if not rows:
        return {}
    first = min(rows, key=lambda b: b.ended_at)
    last_end = max(b.ended_at for b in rows)
    after_first = sum(b.ok + b.failed for b in rows if b is not first)
    span = last_end - first.ended_at
    return {"first_try_started": min(b.started_at for b in rows) - submitted,
            "first_settled": first.ended_at - submitted,
            "first_settled_started": first.started_at - submitted, "last_settled": last_end - submitted,
            "done": (ended - submitted) if ended else None,
            "steady_items_per_s": after_first / span if span > 0 else None}


def cluster_peaks(c: LocalCluster) -> dict[str, float]:
    """Peak RSS (MB) of the host processes (worker + planner + finalizer) and scoring processes."""
    hosts = [n.process.pid for n in c.nodes if n.process and n.process.poll() is None]
    scorers = scoring_processes(hosts)
    return {"host_mb": max((peak_rss_mb(p) for p in hosts), default=float("nan")),
            "scoring_mb": max((peak_rss_mb(p) for p in scorers), default=float("nan"))}


def image_accuracy(lines: list[str]) -> float:
    ok = sum(int(line.rsplit(":", 1)[1]) == digits.label_from_filename(line.split(":")[0])
             for line in lines)
    return ok / max(1, len(lines))


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


@dataclass
class Env:
    """One Azurite holding the workloads; each configuration gets its own namespace (queues,
    tables, system and output containers) so that one run's ledger never slows the next."""

    azurite: Azurite
    base: Settings
    tmp: Path
    images: workloads.Images | None = None
    tables: workloads.Tables | None = None
    serial: int = 0

    def namespace(self, settings: Settings | None = None) -> tuple[Settings, Bench]:
        self.serial += 1
        ns = (settings or self.base).with_namespace(f"b{self.serial:03d}")
        return ns, Bench.prepare(Storage(ns))


def run_configuration(env: Env, spec_of, expect_rows: int, nodes: int, runs: int,
                      check=None, profile: bool = False,
                      profile_out: Path | None = None) -> dict[str, Any]:
    """``runs`` jobs on a fresh cluster of ``nodes``; medians, per-run figures, peak RSS and CPU
    per item by process kind (:mod:`bench.hostcpu`). With ``profile`` the host processes profile
    every thread and the last run's profile goes to ``profile_out`` (``.folded``: self CPU per
    thread and function; ``.calls`` beside it: calls, self and total per function)."""
    from bench.limits.cpu import machine_busy_seconds

    settings, bench = env.namespace()
    results = []
    folder = env.tmp / f"cpu-{settings.batch_queue}"
    azurite_pid = env.azurite.process.pid if env.azurite.process else None
    with LocalCluster(settings, nodes=nodes, log_dir=env.tmp / f"logs-{settings.batch_queue}",
                      env=hostcpu.cluster_env(folder, profile)) as c:
        hostcpu.settle(c, folder, azurite_pid)
        for _ in range(runs):
            before = hostcpu.snapshot(c, folder, azurite_pid)
            stacks, calls = _folded(folder, c, "folded"), _folded(folder, c, "calls")
            machine = machine_busy_seconds()
            r = run_job(bench, spec_of(bench), expect_rows)
            machine = machine_busy_seconds() - machine
            after = hostcpu.snapshot(c, folder, azurite_pid)
            # CPU per item and per mini-batch by process kind: what bounds an instance on Azure
            r["cpu"] = hostcpu.per_item(before, after, r["items"], r["mini_batches"])
            r["cpu_breakdown"] = hostcpu.breakdown(before, after)
            r["cpu_ms_per_batch"] = {k: v["ms_per_batch"] for k, v in r["cpu"].items()}
            ours = sum(v["cpu_s"] for v in r["cpu"].values())
            r["other_cpu_share"] = round(max(0.0, machine - ours) / (r["seconds"] * (os.cpu_count() or 1)), 3)
            if profile and profile_out is not None:
                from bench import profile as tables
                profile_out.parent.mkdir(parents=True, exist_ok=True)
                profile_out.write_text(tables.folded_text(tables.subtract(
                    tables.parse(_folded(folder, c, "folded")), tables.parse(stacks))))
                profile_out.with_suffix(".calls").write_text(tables.calls_text(tables.subtract_calls(
                    tables.parse_calls(_folded(folder, c, "calls")), tables.parse_calls(calls))))
            lines = r.pop("output_lines")
            if check is not None:
                r.update(check(lines))
            r["items_per_s"] = r["items"] / r["seconds"]
            results.append(r)
        peaks = cluster_peaks(c)
    best = min(results, key=lambda r: abs(r["seconds"] - median_of(results, "seconds")))
    cpu = {kind: {k: round(statistics.median(r["cpu"][kind][k] for r in results), 4)
                  for k in ("cpu_s", "ms_per_item", "ms_per_batch")} for kind in hostcpu.KINDS}
    return {"items_per_s": median_of(results, "items_per_s"), "seconds": median_of(results, "seconds"),
            "runs": [round(r["seconds"], 2) for r in results], "rows_ok": all(r["rows_ok"] for r in results),
            "state": ",".join(sorted({r["state"] for r in results})), "stages": best["stages"],
            "reason": best.get("reason", ""),
            "mini_batches": best["mini_batches"], "cpu_ms_per_batch": best["cpu_ms_per_batch"], **peaks,
            "cpu": cpu, "cpu_breakdown": best["cpu_breakdown"],
            "other_cpu_share": statistics.median(r["other_cpu_share"] for r in results),
            "timeline": best["timeline"],
            **({k: best[k] for k in ("accuracy",) if k in best})}


def _folded(folder: Path, c: LocalCluster, kind: str) -> str:
    """The nodes' profiles (``folded`` or ``calls``) as last written (empty without a profile)."""
    return "".join((folder / f"{n.node_id}.{kind}").read_text() for n in c.nodes
                   if (folder / f"{n.node_id}.{kind}").exists())


def cold_start(env: Env, runs: int, batch: int = 5, files: int = 100) -> dict[str, Any]:
    """Submit -> first mini-batch settled, on a host that is up but has never run the job
    (no scoring process, no model loaded): the worker's cold start. The job lists ``files`` of the
    images by name (the demo's kind of job: its first page is planned at once)."""
    firsts, parts = [], []
    names = env.images.names[:files]
    for _ in range(runs):
        settings, bench = env.namespace()
        with LocalCluster(settings, nodes=1, log_dir=env.tmp / f"logs-{settings.batch_queue}"):
            # the host settles into idle polling, as a host waiting for work does; the job comes
            # at a random moment of its polling (its queues poll in step, every maxPollingInterval)
            time.sleep(3.0 + random.uniform(0.0, 0.5))
            spec = {**bench.image_spec(batch, 2, 1),
                    "inputs": [{"container": workloads.IMAGES_CONTAINER, "files": names}]}
            r = run_job(bench, spec, len(names))
        firsts.append(r["first_batch_s"])
        parts.append(r["cold_start_parts"])
    return {"first_batch_s": statistics.median(firsts), "runs": [round(f, 2) for f in firsts],
            "parts": {k: round(statistics.median(p[k] for p in parts), 2) for k in parts[0]},
            "files": files, "batch": batch}


def count_round_trips(env: Env, batch: int, processes: int = 2, nodes: int = 1) -> dict[str, Any]:
    """One images job with every storage request going through counting proxies: requests per
    mini-batch by service and kind, counted on the wire (planner, finalizer and idle polling
    included, spread over the mini-batches)."""
    from shared.local.faultproxy import FaultyProxy
    from shared.settings import azurite_connection_string

    az = env.azurite
    with FaultyProxy(az.blob_port) as pb, FaultyProxy(az.queue_port) as pq, FaultyProxy(az.table_port) as pt:
        counted = Settings(connection_string=azurite_connection_string(pb.port, pq.port, pt.port),
                           scratch_dir=env.base.scratch_dir)
        settings, bench = env.namespace(counted)
        for proxy in (pb, pq, pt):
            proxy.seen.clear()
        with LocalCluster(settings, nodes=nodes, log_dir=env.tmp / f"logs-{settings.batch_queue}"):
            # the bench itself polls the job directly, around the proxies
            direct = Storage(env.base.with_namespace(settings.batch_queue.rsplit("-", 1)[0]))
            watcher = Bench(direct, Ledger(direct.ledger), bench.mnist_code, bench.table_code)
            for proxy in (pb, pq, pt):
                proxy.seen.clear()
            r = run_job(watcher, bench.image_spec(batch, processes, nodes), len(env.images.names))
        kinds = classify(pb.seen, pq.seen, pt.seen, settings)
    n = r["mini_batches"]
    inputs = kinds.pop("blob: read input")
    results = kinds.pop("blob: write results")
    polling = sum(v for k, v in kinds.items() if "[idle polling" in k)
    overhead = sum(kinds.values()) - polling
    return {"batch": batch, "mini_batches": n, "input_reads": inputs, "result_writes": results,
            "overhead_per_batch": overhead / n, "idle_polling_per_batch": polling / n,
            "idle_polling_per_s": polling / r["seconds"],
            "by_kind": {k: round(v / n, 2) for k, v in sorted(kinds.items())},
            "worker_thread_calls_per_try": r["stages"]["storage_calls_per_try"]}


def classify(blob: list[tuple[str, str]], queue: list[tuple[str, str]], table: list[tuple[str, str]],
             settings: Settings) -> dict[str, int]:
    """Requests by kind. Input reads are GETs in the images container; result writes are the
    output container's block puts and the final block list."""
    from collections import Counter

    kinds: Counter[str] = Counter({"blob: read input": 0, "blob: write results": 0})
    for method, path in blob:
        where, _, query = path.partition("?")
        if f"/{workloads.IMAGES_CONTAINER}/" in where and method == "GET" and "comp=" not in query:
            kinds["blob: read input"] += 1
        elif f"/{settings.output_container}/" in where and "comp=block" in query:
            kinds["blob: write results"] += 1
        elif "comp=list" in query:
            polling = f"/{settings.requests_container}" in where or "receipts" in query
            kinds["blob: list" + (" [idle polling: blob trigger]" if polling else "")] += 1
        else:
            comp = re.search(r"comp=(\w+)", query)
            kinds[f"blob: {method}{' ' + comp.group(1) if comp else ''}"] += 1
    for method, path in queue:
        where, _, query = path.partition("?")
        parts = where.strip("/").split("/")          # account, queue[, messages[, id]]
        name = parts[1] if len(parts) > 1 else ""
        role = name.rsplit("-", 1)[-1]
        op = {"GET": "receive", "POST": "send", "DELETE": "delete", "PUT": "update"}.get(method, method)
        if "peekonly" in query:
            op = "peek"
        polling = role in ("poison", "plan", "finalize") and op == "receive"
        kinds[f"queue: {op} ({role}){' [idle polling]' if polling else ''}"] += 1
    for method, path in table:
        op = {"GET": "read", "PUT": "update", "MERGE": "merge", "PATCH": "merge",
              "DELETE": "delete"}.get(method, method)
        if method == "POST":
            op = "transaction" if "$batch" in path else "insert"
        kinds[f"table: {op}{_row_kind(unquote(path))}"] += 1
    return dict(kinds)


def _row_kind(path: str) -> str:
    """Which ledger row a point request touches (``(job)``, ``(mini-batch)``, ``(counter)``), or
    ``(query)`` for a query."""
    if "$batch" in path:
        return ""
    key = re.search(r"RowKey='([^']*)'", path)
    if key is None:
        low = re.search(r"RowKey (?:ge|gt) '([^']*)'", path)
        return f" (query {low.group(1)[:2] if low else 'other'})"
    row = key.group(1)
    if row == "job":
        return " (job)"
    return {"b": " (mini-batch)", "c": " (counter)", "e": " (error)"}.get(row[:1], f" ({row[:2]})")


def setup_env(tmp: Path, images: int, rows: int, parts: int) -> Iterator[Env]:
    with Azurite() as az:
        base = Settings(connection_string=az.connection_string, scratch_dir=str(tmp / "scratch"))
        storage = Storage(base)
        env = Env(az, base, tmp)
        if images:
            env.images = workloads.upload_images(storage, images)
        if rows:
            env.tables = workloads.upload_tables(storage, tmp / "tables", rows, parts)
        yield env


@dataclass
class Seeded:
    """The workloads, uploaded once into an Azurite persisted to ``folder`` (then stopped)."""

    folder: Path
    tmp: Path
    images: workloads.Images | None
    tables: workloads.Tables | None


def seed_workloads(tmp: Path, images: int, rows: int, parts: int) -> Seeded:
    """Upload the workloads once, into an Azurite whose folder :func:`fresh_env` copies: a fresh
    Azurite with the data costs a folder copy and a start (~4 s) instead of the upload (10,000
    images: 50-110 s on this machine; both measured in docs/performance.md). The folder is on
    ``/dev/shm`` where there is one, so the copies are in memory as well."""
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="parallelrun-bench-", dir=shm if shm.is_dir() else tmp))
    folder = root / "seed"
    with Azurite(location=folder) as az:
        storage = Storage(Settings(connection_string=az.connection_string,
                                   scratch_dir=str(tmp / "scratch-seed")))
        found = Seeded(folder, tmp, workloads.upload_images(storage, images) if images else None,
                       workloads.upload_tables(storage, tmp / "tables", rows, parts) if rows else None)
    return found


@contextlib.contextmanager
def fresh_env(seeded: Seeded, part: str) -> Iterator[Env]:
    """A fresh Azurite holding the seeded workloads (on a copy of the folder) for one part of the
    harness, so that no part's figures depend on what ran before it in the same Azurite."""
    copy = seeded.folder.parent / f"azurite-{part}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(seeded.folder, copy)
    try:
        with Azurite(location=copy) as az:
            base = Settings(connection_string=az.connection_string,
                            scratch_dir=str(seeded.tmp / f"scratch-{part}"))
            yield Env(az, base, seeded.tmp, seeded.images, seeded.tables)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def remove_seed(seeded: Seeded) -> None:
    shutil.rmtree(seeded.folder.parent, ignore_errors=True)


def file_create_cost_us(folder: Path, files: int = 500) -> float:
    """CPU microseconds to create, write and close a small file in ``folder`` (a mini-batch's
    downloads create one per image). It varies by far more than the rest of a download between
    folders of one machine: 8 us on tmpfs, ~20 on a plain ext4 folder here, 300-650 in this
    machine's /tmp, on the same disk."""
    probe = Path(tempfile.mkdtemp(prefix="create-cost-", dir=folder))
    try:
        started = time.process_time()
        for i in range(files):
            fd = os.open(probe / f"f{i:05d}.png", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, b"x" * 400)
            os.close(fd)
        return round(1e6 * (time.process_time() - started) / files, 1)
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def main() -> int:
    # a SIGTERM unwinds like Ctrl-C, so Azurite and the host processes are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", action="store_true", help="count storage requests instead")
    parser.add_argument("--profile", action="store_true",
                        help="profile every thread of the host processes and print where their CPU "
                             "went in the last run (bench/profile.py)")
    parser.add_argument("--profile-out", type=Path, default=Path(".parallelrun") / "profile.folded",
                        help="the last run's profile (with --profile; .calls beside it)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the hosts' scratch folders go (default: the system's temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        print(f"scratch folder {tmp}: a file create costs {file_create_cost_us(Path(tmp)):.0f} us of CPU",
              file=sys.stderr)
        for env in setup_env(Path(tmp), args.images, 0, 1):
            if args.count:
                print(json.dumps(count_round_trips(env, args.batch, args.processes, args.nodes), indent=1))
                return 0
            result = run_configuration(
                env, lambda b: b.image_spec(args.batch, args.processes, args.nodes),
                len(env.images.names), args.nodes, args.runs,
                check=lambda lines: {"accuracy": image_accuracy(lines)},
                profile=args.profile, profile_out=args.profile_out)
            print(json.dumps(result, indent=1))
            if args.profile:
                from bench import profile
                counts = profile.parse(args.profile_out.read_text())
                calls = profile.parse_calls(args.profile_out.with_suffix(".calls").read_text())
                print(f"\nprofile of the last run (mini_batch_size {args.batch}, {result['mini_batches']} "
                      f"mini-batches; in {args.profile_out} and .calls):\n")
                print(profile.render(counts, per=result["mini_batches"], calls=calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
