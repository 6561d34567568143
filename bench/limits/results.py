"""What a measurement reports: its JSON object (:func:`result`, printed by :func:`emit`), the rate
its CPU use allows (:func:`add_projection`), the checks that a run did the work, and progress."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.limits.timing import Timed

# The guard that a run really scored: the MNIST model gets ~0.91 of the shifted digits right and the
# breast-cancer model ~0.95 of the rows (chance: 0.1 and ~0.6); 0.85 catches a broken pipeline
# without flaking on a different sample.
MIN_ACCURACY = 0.85


def log(message: str) -> None:
    print(f"[limits {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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


def add_projection(out: dict[str, Any], client_parallelism: int | None,
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


def expect(got: int, want: int, what: str) -> None:
    if got != want:
        raise RuntimeError(f"processed {got} {what}, expected {want}")
