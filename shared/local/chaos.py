"""Process faults for local runs: find and SIGKILL scoring processes and host nodes of a
:class:`~shared.local.cluster.LocalCluster`. Used by the failure tests and ``bench/soak.py``."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.local.cluster import LocalCluster


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def scoring_processes(node_pids: list[int]) -> list[int]:
    """The scoring processes (``python -m shared.scoring``) started by the given host processes."""
    found = []
    for parent in node_pids:
        for child in children(parent):
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"shared.scoring" in cmd:
                found.append(child)
    return found


def kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


class Chaos:
    """Kills scoring processes and host nodes of a :class:`LocalCluster` at random (SIGKILL).

    Each :meth:`strike` kills either one scoring process of a live node, or a whole node, which
    is then restarted (its in-flight messages come back after the lease)."""

    def __init__(self, cluster: LocalCluster, seed: int = 0, node_share: float = 0.3) -> None:
        self.cluster = cluster
        self.random = random.Random(seed)
        self.node_share = node_share
        self.kills = {"scoring process": 0, "node": 0}

    def strike(self) -> str:
        nodes = [n.process.pid for n in self.cluster.nodes if n.process and n.process.poll() is None]
        victims = scoring_processes(nodes)
        if victims and self.random.random() >= self.node_share:
            pid = self.random.choice(victims)
            if kill(pid):
                self.kills["scoring process"] += 1
                return f"killed scoring process {pid}"
        index = self.random.randrange(len(self.cluster.nodes))
        self.cluster.kill(index)
        self.kills["node"] += 1
        self.cluster.restart(index)
        return f"killed and restarted node{index}"
