"""``parallelrun upload`` of many small files: the SDK path against the plain-HTTP path, same run.

    .venv/bin/python -m bench.uploads --files 5000 --size 1000
    .venv/bin/python -m bench.uploads --files 5000 --size 1000 --rounds 3  # alternating, medians
    .venv/bin/python -m bench.uploads --files 5000 --size 1000 --json      # one JSON object

Writes ``--files`` files of ``--size`` random bytes into a temporary folder (100 per subfolder),
then uploads them with each method into its own fresh in-memory Azurite on free ports (Azurite
3.35's Put Blob scans the account's blobs, so a second upload into the same Azurite would pay for
the first one's blobs): ``sdk``, one ``upload_blob`` per file on 16 threads (what ``upload`` did
before, :func:`shared.cli.uploads.upload_with_sdk`); ``http``, Put Blob over kept-alive
connections signed with the account key (:func:`shared.cli.uploads.upload`); and, when asked for
(``--methods sdk http http-sas``), ``http-sas``, the same with a create/write SAS instead. For
each: files/s and bytes/s (wall time of the upload alone), this process's CPU per file,
Azurite's CPU per file (from ``/proc/<pid>/stat``), and a check that every blob arrived.
``--profile`` adds a cProfile of the plain-HTTP runs' upload threads (top functions by own time,
summed over threads). With ``--rounds N`` the methods run N times each, in alternating order,
and the medians are reported too.

Other programs on the machine compete for the same cores, and on Azurite the server's CPU per Put
Blob (~1.3-2 ms, a LokiJS scan of the account's blobs among it) bounds both methods: the client's
CPU per file is the figure that carries over to Azure Storage, where the server is not on the same
cores.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import threading
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
    "sdk": uploads.upload_with_sdk, "http": uploads.upload,
    "http-sas": functools.partial(uploads.upload, sign_with_key=False)}


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
        profiles: list[cProfile.Profile] = []
        if profile:
            threading.setprofile(lambda *_: _profile_this_thread(profiles))
        azurite_cpu, cpu, wall = process_cpu_s(azurite.process.pid), time.process_time(), time.monotonic()
        try:
            report = METHODS[method](storage, CONTAINER, files)
        finally:
            threading.setprofile(None)
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
    if profiles:
        out = io.StringIO()
        pstats.Stats(*profiles, stream=out).sort_stats("tottime").print_stats(15)
        row["profile"] = out.getvalue()
    return row


def _profile_this_thread(profiles: list[cProfile.Profile]) -> None:
    """Run once in each thread started while profiling (the upload workers): a profiler of its own."""
    sys.setprofile(None)
    profiler = cProfile.Profile()
    profiles.append(profiler)
    profiler.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", type=int, default=1000, help="bytes per file")
    parser.add_argument("--methods", nargs="+", default=["sdk", "http"], choices=list(METHODS))
    parser.add_argument("--rounds", type=int, default=1, help="runs of each method, alternating")
    parser.add_argument("--profile", action="store_true", help="cProfile the plain-HTTP run's threads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-uploads-") as tmp:
        files = write_files(Path(tmp), args.files, args.size)
        for round_ in range(args.rounds):
            order = args.methods if round_ % 2 == 0 else args.methods[::-1]
            rows += [{"round": round_ + 1, **measure(m, files, args.profile and m.startswith("http"))}
                     for m in order]
    medians = {m: {k: statistics.median(r[k] for r in rows if r["method"] == m)
                   for k in ("files_per_s", "bytes_per_s", "client_cpu_ms_per_file",
                             "azurite_cpu_ms_per_file")} for m in args.methods}
    speedup = (round(medians["http"]["files_per_s"] / medians["sdk"]["files_per_s"], 2)
               if {"http", "sdk"} <= medians.keys() else None)
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"rows": rows, "medians": medians, "speedup": speedup,
                          "load_average_1m": load}))
        return
    print(f"{args.files:,} files of {args.size:,} bytes; 1-minute load average {load:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'round':5} {'method':8} {'s':>7} {'files/s':>8} {'MB/s':>6} {'client CPU ms/file':>19} "
          f"{'Azurite CPU ms/file':>20} {'Azurite CPU/wall':>17} {'retries':>8}")
    for r in rows:
        print(f"{r['round']:5} {r['method']:8} {r['seconds']:7.2f} {r['files_per_s']:8,.0f} "
              f"{r['bytes_per_s'] / 1e6:6.2f} {r['client_cpu_ms_per_file']:19.3f} "
              f"{r['azurite_cpu_ms_per_file']:20.3f} {r['azurite_cpu_share']:17.2f} {r['retries']:8}")
    if speedup is not None:
        http, sdk = medians["http"], medians["sdk"]
        print(f"plain HTTP / SDK (medians): {speedup}x the files/s; client CPU per file "
              f"{sdk['client_cpu_ms_per_file']:.2f} -> {http['client_cpu_ms_per_file']:.2f} ms "
              f"({sdk['client_cpu_ms_per_file'] / http['client_cpu_ms_per_file']:.1f}x less); "
              f"Azurite CPU per file {sdk['azurite_cpu_ms_per_file']:.2f} -> "
              f"{http['azurite_cpu_ms_per_file']:.2f} ms")
    for r in rows:
        if "profile" in r:
            print(r["profile"])


if __name__ == "__main__":
    main()
