"""CPU per item and per mini-batch by process kind, for the jobs of a local cluster.

What bounds an instance on Azure is our own CPU per item: storage runs elsewhere there, and the
Functions host's own work (polling, receiving and deleting messages, leases, timers) is the .NET
host's. On this machine all of it shares the cores, so the harness splits a job's CPU into:

* ``worker``: our code in the host processes (the worker, planner and finalizer functions, the
  threads they start, the SDK calls they make): the process's CPU (``getrusage``, every thread,
  also those that exited) less the emulation's and the profiler's;
* ``emulation``: the local host's stand-in for the Functions host, counted by its own code paths
  with ``time.thread_time()`` (:mod:`shared.local.cpustats`, exact per thread);
* ``scoring``: the scoring processes, live (``/proc/<pid>/stat``, their own and their reaped
  children's, in clock ticks: +-10 ms per process and reading) and exited (the host's
  ``RUSAGE_CHILDREN``, exact), warm spares started meanwhile included;
* ``azurite``: the storage emulator's process (``/proc``, clock ticks).

Each node writes its accounting on request (``kill -USR2``, :func:`request`); :func:`kinds` and
:func:`per_item` are pure, for the unit tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.local.cpustats import CPU_DIR_ENV, PROFILE_ENV, REQUEST_SIGNAL

KINDS = ("worker", "emulation", "scoring", "azurite")
LABELS = {"worker": "host process: our code (worker, planner, finalizer)",
          "emulation": "host process: the Functions host's job (local emulation)",
          "scoring": "scoring processes (all, exited ones too)",
          "azurite": "Azurite (storage)"}


def cluster_env(folder: Path, profile: bool = False) -> dict[str, str]:
    """The environment that makes a cluster's nodes keep their accounting (and a profile)."""
    env = {CPU_DIR_ENV: str(folder)}
    if profile:
        env[PROFILE_ENV] = "1"
    return env


def request(pid: int, folder: Path, node_id: str, timeout_s: float = 15.0) -> dict[str, Any]:
    """Ask node ``pid`` for its accounting and read it (``<folder>/<node id>.json``)."""
    import json

    path = folder / f"{node_id}.json"
    path.unlink(missing_ok=True)
    os.kill(pid, REQUEST_SIGNAL)
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{node_id} (pid {pid}) wrote no CPU accounting to {path}")
        time.sleep(0.01)
    return json.loads(path.read_text())


def proc_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    from bench.limits.cpu import cpu_seconds
    return (cpu_seconds(pid) or 0.0) if pid is not None else 0.0


def snapshot(cluster: Any, folder: Path, azurite_pid: int | None) -> dict[str, Any]:
    """Every live node's accounting and Azurite's CPU, now."""
    nodes = {n.node_id: request(n.process.pid, folder, n.node_id) for n in cluster.nodes
             if n.process is not None and n.process.poll() is None}
    return {"nodes": nodes, "azurite_s": proc_cpu_s(azurite_pid)}


def settle(cluster: Any, folder: Path, azurite_pid: int | None, window_s: float = 1.0,
           idle_share: float = 0.1, timeout_s: float = 60.0) -> float:
    """Wait until a fresh cluster has done its start-up work (warm scoring processes started, the
    scoring processes' import view built): its CPU (every kind but Azurite) grows by less than
    ``idle_share`` of a core over ``window_s``. Returns the seconds waited."""
    started = time.monotonic()
    last = sum(v for k, v in kinds(snapshot(cluster, folder, azurite_pid)).items() if k != "azurite")
    while time.monotonic() - started < timeout_s:
        time.sleep(window_s)
        now = sum(v for k, v in kinds(snapshot(cluster, folder, azurite_pid)).items() if k != "azurite")
        if now - last < idle_share * window_s:
            break
        last = now
    return time.monotonic() - started


def kinds(snap: Mapping[str, Any]) -> dict[str, float]:
    """CPU seconds so far by kind (:data:`KINDS`), summed over the nodes of a snapshot."""
    out = dict.fromkeys(KINDS, 0.0)
    for node in snap["nodes"].values():
        emulation = sum(node.get("emulation_s", {}).values())
        out["emulation"] += emulation
        out["worker"] += node["process_s"] - emulation - node.get("profiler_s", 0.0)
        out["scoring"] += node["children_reaped_s"] + sum(node.get("children_live_s", {}).values())
    out["azurite"] = snap.get("azurite_s", 0.0)
    return out


def per_item(before: Mapping[str, Any], after: Mapping[str, Any], items: int,
             batches: int) -> dict[str, dict[str, float]]:
    """Per kind: CPU seconds between two snapshots, and ms per item and per mini-batch."""
    a, b = kinds(before), kinds(after)
    out = {}
    for kind in KINDS:
        spent = b[kind] - a[kind]
        out[kind] = {"cpu_s": round(spent, 4), "ms_per_item": round(1000 * spent / max(1, items), 4),
                     "ms_per_batch": round(1000 * spent / max(1, batches), 3)}
    return out


def breakdown(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """CPU seconds between two snapshots per emulation stage and per live thread group (summed
    over the nodes; a group whose threads exited meanwhile can come out short)."""
    def summed(snap: Mapping[str, Any], key: str) -> dict[str, float]:
        total: dict[str, float] = {}
        for node in snap["nodes"].values():
            for name, seconds in node.get(key, {}).items():
                total[name] = total.get(name, 0.0) + seconds
        return total

    out = {}
    for key in ("emulation_s", "threads_s"):
        a, b = summed(before, key), summed(after, key)
        out[key.removesuffix("_s")] = {k: round(b[k] - a.get(k, 0.0), 4) for k in sorted(b)
                                       if b[k] - a.get(k, 0.0) > 0.0005}
    return out
