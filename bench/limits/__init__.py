"""The machine's limits for the benchmark's workloads, to set our end-to-end throughput against.

Each measurement prints one JSON object per line on stdout (progress goes to stderr)::

    io-sdk          read every blob of a workload with the Azure SDK's async client (aiohttp),
                    sweeping concurrency and processes; the best configuration is the figure
    io-http         the same reads with a minimal pipelined HTTP/1.1 client of our own (asyncio
                    protocol, SAS token made once, no per-request signing): the I/O limit
    compute-images  decode + preprocess the PNGs (held in memory) with the MNIST entry script's
                    preprocess() and score them with the session its init() makes, on all cores,
                    for several batch sizes
    compute-tables  parse the CSV / Parquet bytes (in memory) with shared.scoring.tabular, in the pieces
                    ParallelRun reads (1 MB and 10 MB mini-batches: the faster one is the limit), and
                    score them with the tabular entry script's run()
    naive           one process, one file at a time with the sync SDK: list, download, decode, score
                    (the same entry scripts, on a session with onnxruntime's default options)

Keys of every object: name, workload, items, seconds (median), items_per_s (median), runs (seconds
of each run), best_items_per_s (fastest run), notes, plus measurement-specific ones: config, checks
(``accuracy``, ``items_read``: nobody benchmarks nothing by accident), and CPU accounting per run:
``client_cpu_s`` (our processes), ``azurite_cpu_s`` (when Azurite's pid is known or found), their
``*_cores`` (CPU seconds / wall seconds), ``other_cpu_s`` / ``other_cpu_share`` (everything else on the
machine: a share above 5 % puts a WARNING in the notes, the figure is then pessimistic) and
``cpu_bound_items_per_s``: the rate the measured CPU cost per item allows on an idle machine (see
:func:`bench.limits.results.add_projection`).

Usage::

    .venv/bin/python -m bench.limits all --standalone                 # own Azurite, full workload
    .venv/bin/python -m bench.limits all --self-test                  # own Azurite, small workload
    .venv/bin/python -m bench.limits io-http --connection-string CS [--runs 5] [--workload images]

With ``--connection-string`` the workload must already be in that storage account
(``workloads.upload_images`` / ``workloads.upload_tables``). Listing blobs is never timed, except by
``naive`` (a plain loop lists as it goes).
Measurements that sweep configurations run each configuration once (screening), then the best one
``--runs`` times; the screening figures are in ``by_config``.

The modules, one measurement or one part of the frame each:

    cli             the command line and the orchestration (which measurements, which sweeps)
    storage         the storage under test, the workloads' blobs, reading them with the async SDK
    timing          timed runs: spawned worker processes in lock-step, or a stopwatch in this process
    cpu             CPU accounting from /proc (the machine, a process, who listens on a port)
    results         the JSON object of a measurement, the CPU-bound projection, the checks, progress
    io_sweep        the I/O limit's configurations (processes x connections x depth) and their sweep
    io_sdk          io-sdk
    io_http         io-http (the minimal pipelined HTTP/1.1 client)
    entry_scripts   the examples' entry scripts, loaded as a scoring process loads them
    compute         what the compute limits share: the ways to use the cores, the fastest way
    compute_images  compute-images
    compute_tables  compute-tables
    naive           naive
"""

from bench.limits.cli import MEASURES, TABLE_FORMATS, Options, main, run_all, standalone
from bench.limits.compute_images import measure_compute_images
from bench.limits.compute_tables import measure_compute_tables
from bench.limits.io_http import measure_io_http
from bench.limits.io_sdk import measure_io_sdk
from bench.limits.io_sweep import IoConfig
from bench.limits.naive import measure_naive_images, measure_naive_tables
from bench.limits.results import MIN_ACCURACY
from bench.limits.storage import BlobSet, TableSet, Target, image_set, table_set

__all__ = [
    "MEASURES", "MIN_ACCURACY", "TABLE_FORMATS", "BlobSet", "IoConfig", "Options", "TableSet", "Target",
    "image_set", "main", "measure_compute_images", "measure_compute_tables", "measure_io_http",
    "measure_io_sdk", "measure_naive_images", "measure_naive_tables", "run_all", "standalone", "table_set",
]
