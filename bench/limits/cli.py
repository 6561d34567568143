"""The command line (``python -m bench.limits``): which measurements, on which storage, with which
sweeps; each result is printed as soon as it is known."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import workloads
from bench.limits.compute_images import measure_compute_images
from bench.limits.compute_tables import measure_compute_tables
from bench.limits.cpu import listener_pid
from bench.limits.io_http import measure_io_http
from bench.limits.io_sdk import measure_io_sdk
from bench.limits.io_sweep import IoConfig
from bench.limits.naive import measure_naive_images, measure_naive_tables
from bench.limits.results import emit, expect, log
from bench.limits.storage import TableSet, Target, image_set, sdk_read, table_set

MEASURES = ("io-sdk", "io-http", "compute-images", "compute-tables", "naive")
TABLE_FORMATS = ("csv", "parquet")


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
        count, size, pngs = asyncio.run(sdk_read(target.connection_string, images.container,
                                                  images.names, concurrency=32, keep=True))
        expect(count, len(images.names), "images")

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
        prog="python -m bench.limits",
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

