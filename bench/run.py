"""The throughput harness: everything measured in one go on one machine, side by side.

    ./dev bench                 # the full run (about an hour on 2 cores); writes docs/performance.md
    ./dev bench --quick         # a smaller grid and one run each, to try the harness (not written)

The workloads (bench/workloads.py: 10,000 PNG digits and 1,000,000 table rows as CSV and as
Parquet) are uploaded once into an Azurite persisted to a folder; every part of the harness (each
grid cell, each table job, the limits, ...) then runs on a fresh Azurite started on a copy of that
folder, so no figure depends on the parts before it. On the same data it measures the compute
limit, the I/O limit, a naive baseline, Ray Data, a minimal client's CPU per image, and
ParallelRun end to end over mini_batch_size x process_count_per_node x nodes, with the CPU per
item and per mini-batch of each process kind (our code in the host process, the local emulation
of the Functions host, the scoring processes, Azurite: bench/hostcpu.py); then storage round trips
per mini-batch (counted on the wire), cold start, peak memory, the planner, and a cost estimate
from the measured counts. Every figure is the median of --runs runs; ratios are taken within the
same run of the harness. The table goes to stdout, the raw figures to --json, and (unless
--no-write) the table, the machine and the command into docs/performance.md between the
harness's markers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import e2e, minimal

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- harness:start -->", "<!-- harness:end -->"
console = Console(stderr=True)

# Assumed list prices (USD, pay-as-you-go; check the current pricing pages before relying on them):
PRICES = {
    "flex_gb_s": 0.000026,             # Flex Consumption, on-demand execution time, per GB-second
    "flex_executions_per_million": 0.40,
    "blob_read_per_10k": 0.0044,       # Hot tier, LRS: read operations
    "blob_write_per_10k": 0.055,       # Hot tier, LRS: write operations (put block, block list)
    "blob_list_per_10k": 0.055,        # list operations
    "queue_per_10k": 0.0004,           # queue operations (any class)
    "table_per_10k": 0.00036,          # table transactions
}
INSTANCE_GB = 2.048                     # Flex Consumption's default instance memory


def sub(module: str, *args: str, timeout: float = 3600) -> list[dict[str, Any]]:
    """Run ``python -m bench.<module> args`` (from the repository root) and collect the JSON
    objects it prints, one per line."""
    cmd = [sys.executable, "-m", f"bench.{module}", *args]
    shown = re.sub(r"(AccountKey|SharedAccessSignature)=[^;']*", r"\1=***",
                   " ".join(shlex.quote(a) for a in cmd[1:]))
    console.log(f"$ {shown}"[:200])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    found = []
    for line in done.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if done.returncode != 0 or not found:
        console.log(f"[red]{module} {args[0]} failed (exit {done.returncode}):[/red] "
                    f"{done.stderr.strip()[-1500:]}")
    return found


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    mem = next((int(line.split()[1]) / 1024 ** 2 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0.0)
    import onnxruntime
    azurite = json.loads((ROOT / "node_modules" / "azurite" / "package.json").read_text())["version"]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
            f"Azurite {azurite} on Node {node} (same machine; a fresh one per part, "
            f"persisted to /dev/shm)")


def images_job(env: e2e.Env, batch: int, processes: int, nodes: int, runs: int) -> dict[str, Any]:
    return e2e.run_configuration(env, lambda bench: bench.image_spec(batch, processes, nodes),
                                 len(env.images.names), nodes, runs,
                                 check=lambda lines: {"accuracy": e2e.image_accuracy(lines)})


def main() -> int:
    # a SIGTERM unwinds like Ctrl-C, so Azurite and the host processes are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (the median is kept)")
    parser.add_argument("--grid-runs", type=int, default=1,
                        help="runs per cell of the ParallelRun grid; the best cell and the best "
                             "mini_batch_size 5 cell are then run --runs times")
    parser.add_argument("--quick", action="store_true", help="small grid, one run, nothing written")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--table-rows", type=int, default=0, metavar="N",
                        help="also run tables at scale (bench/tables_scale.py) on N rows, e.g. "
                             "10000000: CSV and Parquet end to end beside the compute limit at the "
                             "same piece size, and a small table job's fixed cost (~10 min)")
    parser.add_argument("--grid", choices=("axes", "full"), default="axes",
                        help="axes: every mini_batch_size at 2 processes x 1 node, then every "
                             "processes x nodes at the best mini_batch_size and at 5 (15 cells); "
                             "full: every combination (30 cells, about twice as long)")
    parser.add_argument("--batches", default="1,5,10,50,200")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--nodes", default="1,2")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: "
                        "limits,naive,ray,grid,client,tables,trips,cold,planner")
    parser.add_argument("--json", type=Path, default=ROOT / ".parallelrun" / "bench.json")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the hosts' scratch folders go (default: the system's temp "
                             "folder); the report gives the CPU a file create costs there")
    e2e.add_submit_option(parser)
    parser.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    parser.add_argument("--report-only", type=Path, metavar="JSON",
                        help="render (and write) the report of a saved run's figures, measure nothing")
    args = parser.parse_args()
    if args.report_only:
        return publish(json.loads(args.report_only.read_text()), args.no_write)
    e2e.use_submit(args)
    if args.quick:
        args.runs, args.grid_runs, args.batches, args.processes, args.nodes = 1, 1, "5,50", "2", "1"
        args.images, args.rows = min(args.images, 2000), min(args.rows, 100_000)
        args.no_write = True
    skip = set(filter(None, args.skip.split(",")))
    batches = [int(b) for b in args.batches.split(",")]
    processes = [int(p) for p in args.processes.split(",")]
    nodes = [int(n) for n in args.nodes.split(",")]
    runs = str(args.runs)
    started = time.monotonic()
    res: dict[str, Any] = {"machine": machine(), "command": "./dev bench " + " ".join(sys.argv[1:]),
                           "images": args.images, "rows": args.rows, "grid_mode": args.grid,
                           "grid_runs": args.grid_runs,
                           "date": dt.date.today().isoformat(), "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="parallelrun-bench-", dir=args.work_dir) as tmp:
        res["scratch_create_us"] = e2e.file_create_cost_us(Path(tmp))
        console.log(f"scratch folder {tmp}: a file create costs {res['scratch_create_us']:.0f} us of CPU")
        t0 = time.monotonic()
        seeded = e2e.seed_workloads(Path(tmp), args.images, args.rows, 8)
        res["seed_s"] = round(time.monotonic() - t0, 1)
        res["fresh_azurite_s"] = []
        assert seeded.images is not None and seeded.tables is not None
        console.log(f"workloads: {len(seeded.images.names)} images ({seeded.images.total_bytes:,} bytes), "
                    f"{seeded.tables.rows:,} rows as CSV ({seeded.tables.bytes['csv']:,} bytes) and "
                    f"Parquet ({seeded.tables.bytes['parquet']:,} bytes), uploaded in {res['seed_s']:.0f} s")
        parts = itertools.count()

        @contextlib.contextmanager
        def fresh(part: str) -> Iterator[tuple[e2e.Env, list[str]]]:
            """Each part of the harness on a fresh Azurite with the workloads (a copy of the
            seeded folder), so its figures do not depend on the parts before it."""
            t = time.monotonic()
            with e2e.fresh_env(seeded, f"{next(parts):02d}-{part}") as env:
                res["fresh_azurite_s"].append(round(time.monotonic() - t, 2))
                assert env.azurite.process is not None
                yield env, ["--connection-string", env.base.connection_string, "--runs", runs,
                            "--azurite-pid", str(env.azurite.process.pid)]

        def save() -> None:   # after every part: a cut-short run still has its figures
            res["seconds"] = time.monotonic() - started
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(res, indent=1))

        def cell(b: int, p: int, n: int, repeat: int = args.grid_runs) -> None:
            found = next((c for c in res["grid"] if (c["batch"], c["processes"], c["nodes"]) == (b, p, n)), None)
            if found is not None and found["runs_count"] >= repeat:
                return
            console.log(f"ParallelRun images: mini_batch_size {b}, process_count_per_node {p}, nodes {n}"
                        + (f", {repeat} runs" if repeat > 1 else ""))
            with fresh(f"grid-b{b}-p{p}-n{n}") as (env, _):
                r = images_job(env, b, p, n, repeat)
            if found is not None:
                found.update(r, runs_count=repeat)
            else:
                res["grid"].append({"batch": b, "processes": p, "nodes": n, "runs_count": repeat, **r})
            cpu = r["cpu"]
            console.log(f"  {r['items_per_s']:.0f} images/s (runs {r['runs']} s); CPU ms per image: "
                        + ", ".join(f"{k} {cpu[k]['ms_per_item']:.2f}" for k in cpu))
            save()

        # ParallelRun first, the limits after (each part on its own fresh Azurite)
        # mini_batch_size 1 (10,000 mini-batches) is the slowest cell by far: it comes last
        slow = [b for b in batches if b == 1]
        quick_batches = [b for b in batches if b != 1]
        if "grid" not in skip:
            res["grid"] = []
            if args.grid == "full":
                for n in nodes:
                    for p in processes:
                        for b in quick_batches:
                            cell(b, p, n)
            else:
                p0 = 2 if 2 in processes else processes[0]
                for b in quick_batches:
                    cell(b, p0, nodes[0])
                best_b = max(res["grid"], key=lambda r: r["items_per_s"])["batch"]
                for b in dict.fromkeys([best_b, 5] if 5 in batches else [best_b]):
                    for n in nodes:
                        for p in processes:
                            cell(b, p, n)
            if args.runs > args.grid_runs:   # the headline cells: medians of --runs runs
                best = max(res["grid"], key=lambda r: r["items_per_s"])
                five = max((r for r in res["grid"] if r["batch"] == 5),
                           key=lambda r: r["items_per_s"], default=None)
                for c in {id(c): c for c in (best, five) if c}.values():
                    cell(c["batch"], c["processes"], c["nodes"], args.runs)
        if "client" not in skip:
            # the minimal client's CPU per image, on the same images, beside ParallelRun's
            with fresh("client") as (env, _):
                res["client"] = []
                for kind in ("aiohttp", "streams", "pipelined"):
                    if not minimal.available(kind):
                        console.log(f"minimal client ({kind}): not installed (requirements-bench.txt), skipped")
                        continue
                    console.log(f"minimal client ({kind}): the same images read by a bare HTTP client")
                    found = minimal.measure(env.base.connection_string,
                                            env.azurite.process.pid if env.azurite.process else None,
                                            args.runs, kind)
                    res["client"].append(found)
                    console.log(f"  {found['cpu_ms_per_item']:.3f} ms of its CPU per image")
            save()
        if "tables" not in skip:
            res["tables"] = []
            for fmt in ("csv", "parquet"):
                for size, p, n in (("1MB", 2, 1), ("10MB", 2, 1), ("10MB", 2, 2)):
                    with fresh(f"tables-{fmt}-{size}-p{p}-n{n}") as (env, _):
                        r = e2e.run_configuration(
                            env, lambda bench, fmt=fmt, size=size, p=p, n=n: bench.table_spec(fmt, size, p, n),
                            env.tables.rows, n, args.runs)
                    res["tables"].append({"format": fmt, "batch": size, "processes": p, "nodes": n, **r})
                    console.log(f"ParallelRun {fmt}, {size}, {p}x{n}: {r['items_per_s']:,.0f} rows/s")
                    save()
        if "trips" not in skip:
            res["trips"] = []
            for b in (5, 50):
                with fresh(f"trips-b{b}") as (env, _):
                    res["trips"].append(e2e.count_round_trips(env, b))
            save()
        if "cold" not in skip:
            with fresh("cold") as (env, _):
                res["cold"] = e2e.cold_start(env, args.runs)
            save()
        if "limits" not in skip:
            # the sweeps screen each configuration once, then run the best --runs times
            # (bench.limits sweeps wider by default; these are the configurations that won
            # its sweeps on this machine, see docs/performance.md)
            with fresh("io-sdk") as (env, common):
                res["io_sdk"] = sub("limits", "io-sdk", *common, "--sdk-concurrency", "32",
                                    "--processes", "1", "--table-concurrency", "4")
            with fresh("io-http") as (env, common):
                res["io_http"] = sub("limits", "io-http", *common, "--http-connections", "16",
                                     "--http-depths", "8", "--processes", "1", "--table-concurrency", "4")
            with fresh("compute") as (env, common):
                res["compute_images"] = sub("limits", "compute-images", *common)
                res["compute_tables"] = sub("limits", "compute-tables", *common)
            save()
        if "naive" not in skip:
            with fresh("naive") as (env, common):
                res["naive"] = sub("limits", "naive", *common)
            save()
        if "ray" not in skip:
            res["ray"] = []
            for w in ("images", "csv", "parquet"):
                with fresh(f"ray-{w}") as (env, common):
                    res["ray"] += sub("raydata", w, *common)
            save()
        if "grid" not in skip:
            for b in slow:
                cell(b, 2 if 2 in processes else processes[0], nodes[0])
        e2e.remove_seed(seeded)
    if args.table_rows:     # its own Azurite and data (gigabytes: seeded one format at a time)
        res["tables_scale"] = sub("tables_scale", "--rows", str(args.table_rows), "--runs",
                                  str(min(args.runs, 1) if args.quick else 1),
                                  "--json", str(args.json.with_name("tables-scale.json")))
    if "planner" not in skip:
        res["planner"] = sub("planner", "--json", "--blobs",
                             *(("2000",) if args.quick else ("10000", "100000")))
    res["seconds"] = time.monotonic() - started
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1))
    return publish(res, args.no_write)


def publish(res: dict[str, Any], no_write: bool) -> int:
    from bench import report
    text = report.render(res, PRICES, INSTANCE_GB)
    print(text)
    if not no_write:
        report.write(DOC, text, START, END)
        console.log(f"wrote {DOC.relative_to(ROOT)}")
    console.log(f"harness done in {res['seconds'] / 60:.0f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
