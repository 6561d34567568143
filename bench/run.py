"""The throughput harness: everything measured in one go on one machine, side by side.

    ./dev bench                 # the full run (about an hour on 2 cores); writes docs/performance.md
    ./dev bench --quick         # a smaller grid and one run each, to try the harness (not written)

One Azurite (in memory) holds the workloads (bench/workloads.py): 10,000 PNG digits and 1,000,000
table rows as CSV and as Parquet. On the same data it measures the compute limit, the I/O limit,
a naive baseline, Ray Data, and ParallelRun end to end over mini_batch_size x
process_count_per_node x nodes; then storage round trips per mini-batch (counted on the wire),
cold start, peak memory, the planner, and a cost estimate from the measured counts. Every figure is
the median of --runs runs; ratios are taken within the same run of the harness. The table goes to
stdout, the raw figures to --json, and (unless --no-write) the table, the machine and the command
into docs/performance.md between the harness's markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import e2e  # noqa: E402
import workloads  # noqa: E402
from rich.console import Console  # noqa: E402

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


def sub(script: str, *args: str, timeout: float = 3600) -> list[dict[str, Any]]:
    """Run ``bench/<script> args`` and collect the JSON objects it prints, one per line."""
    cmd = [sys.executable, str(ROOT / "bench" / script), *args]
    console.log(f"$ {' '.join(shlex.quote(a) for a in cmd[1:])}"[:200])
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
        console.log(f"[red]{script} {args[0]} failed (exit {done.returncode}):[/red] "
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
            f"Azurite {azurite} on Node {node} (in memory, same machine)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (the median is kept)")
    parser.add_argument("--quick", action="store_true", help="small grid, one run, nothing written")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batches", default="1,5,10,50,200")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--nodes", default="1,2")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: "
                        "limits,naive,ray,grid,tables,trips,cold,planner")
    parser.add_argument("--json", type=Path, default=ROOT / ".parallelrun" / "bench.json")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.batches, args.processes, args.nodes = 1, "5,50", "2", "1"
        args.no_write = True
    skip = set(filter(None, args.skip.split(",")))
    batches = [int(b) for b in args.batches.split(",")]
    processes = [int(p) for p in args.processes.split(",")]
    nodes = [int(n) for n in args.nodes.split(",")]
    runs = str(args.runs)
    started = time.monotonic()
    res: dict[str, Any] = {"machine": machine(), "command": "./dev bench " + " ".join(sys.argv[1:]),
                           "date": dt.date.today().isoformat(), "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="parallelrun-bench-") as tmp:
        for env in e2e.setup_env(Path(tmp), args.images, args.rows, 8):
            cs = env.base.connection_string
            console.log(f"workloads: {len(env.images.names)} images ({env.images.total_bytes:,} bytes), "
                        f"{env.tables.rows:,} rows as CSV ({env.tables.bytes['csv']:,} bytes) and "
                        f"Parquet ({env.tables.bytes['parquet']:,} bytes)")
            common = ["--connection-string", cs, "--runs", runs]
            if "limits" not in skip:
                res["io_sdk"] = sub("limits.py", "io-sdk", *common)
                res["io_http"] = sub("limits.py", "io-http", *common)
                res["compute_images"] = sub("limits.py", "compute-images", *common)
                res["compute_tables"] = sub("limits.py", "compute-tables", *common)
            if "naive" not in skip:
                res["naive"] = sub("limits.py", "naive", *common)
            if "ray" not in skip:
                res["ray"] = [r for w in ("images", "csv", "parquet")
                              for r in sub("raydata.py", w, *common)]
            if "grid" not in skip:
                res["grid"] = []
                for n in nodes:
                    for p in processes:
                        for b in batches:
                            console.log(f"ParallelRun images: mini_batch_size {b}, "
                                        f"process_count_per_node {p}, nodes {n}")
                            r = e2e.run_configuration(
                                env, lambda bench, b=b, p=p, n=n: bench.image_spec(b, p, n),
                                len(env.images.names), n, args.runs,
                                check=lambda lines: {"accuracy": e2e.image_accuracy(lines)})
                            res["grid"].append({"batch": b, "processes": p, "nodes": n, **r})
                            console.log(f"  {r['items_per_s']:.0f} images/s (runs {r['runs']} s)")
            if "tables" not in skip:
                res["tables"] = []
                for fmt in ("csv", "parquet"):
                    for p, n in ((2, 1), (1, 2)):
                        r = e2e.run_configuration(
                            env, lambda bench, fmt=fmt, p=p, n=n: bench.table_spec(fmt, "1MB", p, n),
                            env.tables.rows, n, args.runs)
                        res["tables"].append({"format": fmt, "processes": p, "nodes": n, **r})
                        console.log(f"ParallelRun {fmt}, {p}x{n}: {r['items_per_s']:,.0f} rows/s")
            if "trips" not in skip:
                res["trips"] = [e2e.count_round_trips(env, b) for b in (5, 50)]
            if "cold" not in skip:
                res["cold"] = e2e.cold_start(env, args.runs)
    if "planner" not in skip:
        res["planner"] = sub("planner.py", "--json", "--blobs", "10000", "100000")
    res["seconds"] = time.monotonic() - started
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1))
    import report
    text = report.render(res, PRICES, INSTANCE_GB)
    print(text)
    if not args.no_write:
        report.write(DOC, text, START, END)
        console.log(f"wrote {DOC.relative_to(ROOT)}")
    console.log(f"harness done in {res['seconds'] / 60:.0f} min; raw figures in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
