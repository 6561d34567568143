"""``parallelrun upload`` of many small files: the SDK path against the plain-HTTP path, same run.

    .venv/bin/python -m bench.uploads --files 5000 --size 1000
    .venv/bin/python -m bench.uploads --files 5000 --size 1000 --json      # one JSON object

Writes ``--files`` files of ``--size`` random bytes into a temporary folder (100 per subfolder),
then uploads them with each method into its own fresh in-memory Azurite on free ports (Azurite
3.35's Put Blob scans the account's blobs, so a second upload into the same Azurite would pay for
the first one's blobs): ``sdk``, one ``upload_blob`` per file on 16 threads (what ``upload`` did
before, :func:`shared.cli.uploads.upload_with_sdk`), and ``http``, Put Blob over kept-alive
connections with a SAS (:func:`shared.cli.uploads.upload`). For each: files/s and bytes/s (wall
time of the upload alone), this process's CPU per file, Azurite's CPU per file (from
``/proc/<pid>/stat``), and a check that every blob arrived. ``--profile`` adds the client's
cProfile of the plain-HTTP run (top functions by own time).

Other programs on the machine compete for the same cores: the CPU times per file are the steadier
figures, the rates depend on what else runs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.planner import process_cpu_s
from shared.cli import uploads
from shared.local.azurite import Azurite
from shared.settings import Settings
from shared.storage import Storage

CONTAINER = "bench-uploads"
METHODS: dict[str, Callable[..., uploads.UploadReport]] = {
    "sdk": uploads.upload_with_sdk, "http": uploads.upload}


def write_files(root: Path, count: int, size: int) -> list[uploads.LocalFile]:
    for i in range(count):
        folder = root / f"d{i // 100:04d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i:06d}.bin").write_bytes(os.urandom(size))
    return uploads.files_to_upload(root, "in")


def measure(method: str, files: list[uploads.LocalFile], profile: bool) -> dict[str, Any]:
    """Upload ``files`` by ``method`` into a fresh Azurite; the rates, CPU per file and a check."""
    with Azurite() as azurite:
        assert azurite.process is not None
        storage = Storage(Settings(connection_string=azurite.connection_string))
        storage.ensure_container(CONTAINER)
        profiler = cProfile.Profile() if profile else None
        azurite_cpu, cpu, wall = process_cpu_s(azurite.process.pid), time.process_time(), time.monotonic()
        if profiler:
            profiler.enable()
        report = METHODS[method](storage, CONTAINER, files)
        if profiler:
            profiler.disable()
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        azurite_cpu = process_cpu_s(azurite.process.pid) - azurite_cpu
        stored = {b.name: b.size for b in storage.container(CONTAINER).list_blobs()}
    expected = {f.name: f.size for f in files}
    assert stored == expected, f"{method}: {len(stored)} blobs stored, {len(expected)} expected"
    n = len(files)
    row = {"method": method, "files": n, "bytes": report.bytes, "seconds": round(wall, 2),
           "files_per_s": round(n / wall, 1), "bytes_per_s": round(report.bytes / wall),
           "client_cpu_ms_per_file": round(cpu / n * 1000, 3),
           "azurite_cpu_ms_per_file": round(azurite_cpu / n * 1000, 3),
           "azurite_cpu_share": round(azurite_cpu / wall, 2), "retries": report.retries}
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
        row["profile"] = out.getvalue()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", type=int, default=1000, help="bytes per file")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--profile", action="store_true", help="cProfile the plain-HTTP run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-uploads-") as tmp:
        files = write_files(Path(tmp), args.files, args.size)
        rows = [measure(m, files, args.profile and m == "http") for m in args.methods]
    rates = {r["method"]: r["files_per_s"] for r in rows}
    speedup = round(rates["http"] / rates["sdk"], 2) if {"http", "sdk"} <= rates.keys() else None
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"rows": rows, "speedup": speedup, "load_average_1m": load}))
        return
    print(f"{args.files:,} files of {args.size:,} bytes; 1-minute load average {load:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'method':8} {'s':>7} {'files/s':>9} {'MB/s':>7} {'client CPU ms/file':>19} "
          f"{'Azurite CPU ms/file':>20} {'Azurite CPU/wall':>17} {'retries':>8}")
    for r in rows:
        print(f"{r['method']:8} {r['seconds']:7.2f} {r['files_per_s']:9,.0f} "
              f"{r['bytes_per_s'] / 1e6:7.2f} {r['client_cpu_ms_per_file']:19.3f} "
              f"{r['azurite_cpu_ms_per_file']:20.3f} {r['azurite_cpu_share']:17.2f} {r['retries']:8}")
    if speedup is not None:
        print(f"plain HTTP / SDK: {speedup}x the files/s")
    for r in rows:
        if "profile" in r:
            print(r["profile"])


if __name__ == "__main__":
    main()
