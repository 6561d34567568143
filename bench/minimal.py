"""The minimal client: the CPU a bare reader spends per image, beside ParallelRun's, in the same
harness run and on the same blobs.

One spawned process reads every image of the workload with io-http's asyncio HTTP/1.1 client
(:mod:`bench.limits.io_http`: a container SAS made once, no per-request signing, 8 keep-alive
connections x 8 pipelined GETs = 64 in flight, Content-Length framing, each body checked for its
length). Its own CPU is ``time.process_time()`` in that process around the reads (every thread:
the event loop is the only one), Azurite's is its process's (``/proc``), both per image; the
median of ``runs`` runs. No decoding, no scoring, no bookkeeping: what any reader must spend.

    .venv/bin/python -m bench.minimal --connection-string "$CS" --azurite-pid PID [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from bench.limits.io_http import HttpReader, http_target
from bench.limits.storage import Target, image_set
from bench.limits.timing import Workers

CONNECTIONS, DEPTH = 8, 8


def measure(connection_string: str, azurite_pid: int | None, runs: int = 3,
            connections: int = CONNECTIONS, depth: int = DEPTH) -> dict[str, Any]:
    target = Target(connection_string, azurite_pid)
    blobs = image_set(target)
    http = http_target(target, blobs.container)
    requests = [http.request(name) for name in blobs.names]
    n = len(requests)
    timed = []
    with Workers(HttpReader, [(http.host, http.port, requests)], azurite_pid) as workers:
        for _ in range(runs):
            t = workers.run("read", connections, depth)
            read, nbytes = t.results[0]
            if read != n or nbytes != blobs.total_bytes:
                raise RuntimeError(f"the minimal client read {read} blobs ({nbytes} bytes), "
                                   f"expected {n} ({blobs.total_bytes})")
            timed.append(t)
    client = statistics.median(t.client_cpu_s for t in timed)
    server = [t.server_cpu_s for t in timed if t.server_cpu_s is not None]
    seconds = statistics.median(t.seconds for t in timed)
    return {"name": "minimal client", "items": n, "items_per_s": round(n / seconds, 1),
            "seconds": round(seconds, 3), "runs": [round(t.seconds, 3) for t in timed],
            "cpu_ms_per_item": round(1000 * client / n, 4),
            "azurite_ms_per_item": round(1000 * statistics.median(server) / n, 4) if server else None,
            "notes": f"one process, asyncio HTTP/1.1 (bench/limits/io_http.py), container SAS made "
                     f"once, {connections} keep-alive connections x {depth} pipelined GETs "
                     f"({connections * depth} in flight), bodies read and length-checked, not decoded"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connection-string", required=True)
    parser.add_argument("--azurite-pid", type=int)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.connection_string, args.azurite_pid, args.runs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
