"""The I/O limit's frame: how reads are spread over processes and connections (:class:`IoConfig`),
the sweep over those configurations, and the checked result of reading every blob of a workload."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.limits.results import add_projection, log, result
from bench.limits.storage import BlobSet
from bench.limits.timing import Timed, Workers


@dataclass(frozen=True)
class IoConfig:
    """How reads are spread: processes x connections (x pipelined requests per connection)."""

    processes: int
    concurrency: int          # concurrent downloads (SDK) or connections (HTTP) per process
    depth: int = 1            # HTTP only: requests in flight per connection

    @property
    def label(self) -> str:
        depth = f"x{self.depth}deep" if self.depth > 1 else ""
        return f"{self.processes}p x {self.concurrency}{depth}"


def sweep(configs: Sequence[IoConfig], once: Callable[[IoConfig], Timed], runs: int,
          check: Callable[[Timed], None]) -> tuple[IoConfig, list[Timed], dict[str, float]]:
    """Screen every configuration with one run, then run the fastest ``runs`` times."""
    screening: dict[IoConfig, float] = {}
    if len(configs) > 1:
        for config in configs:
            timed = once(config)
            check(timed)
            screening[config] = timed.seconds
            log(f"  {config.label}: {timed.seconds:.3f} s")
    best = min(screening, key=screening.__getitem__) if screening else configs[0]
    measured = []
    for _ in range(runs):
        timed = once(best)
        check(timed)
        measured.append(timed)
    log(f"  best {best.label}: runs {[round(t.seconds, 3) for t in measured]}")
    return best, measured, {c.label: round(s, 4) for c, s in screening.items()}


class Pools:
    """Worker pools keyed by process count, made on first use and kept for the sweep."""

    def __init__(self, make: Callable[[int], Workers]) -> None:
        self._make = make
        self._pools: dict[int, Workers] = {}

    def get(self, processes: int) -> Workers:
        if processes not in self._pools:
            self._pools[processes] = self._make(processes)
        return self._pools[processes]

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def check_read(blobs: BlobSet) -> Callable[[Timed], None]:
    def check(timed: Timed) -> None:
        count = sum(r[0] for r in timed.results)
        size = sum(r[1] for r in timed.results)
        if count != len(blobs.names) or size != blobs.total_bytes:
            raise RuntimeError(f"read {count} blobs / {size} bytes, expected {len(blobs.names)} / "
                               f"{blobs.total_bytes}")
    return check


def io_result(name: str, workload: str, blobs: BlobSet, measured: list[Timed], best: IoConfig,
               screening: dict[str, float], rows: int | None, notes: str) -> dict[str, Any]:
    items = rows if rows is not None else len(blobs.names)
    out = result(name, workload, items, measured, notes,
                 config={"processes": best.processes, "concurrency": best.concurrency,
                         "depth": best.depth},
                 blobs=len(blobs.names), bytes=blobs.total_bytes, items_read=len(blobs.names),
                 by_config=screening)
    median = out["seconds"]
    out["unit"] = "rows" if rows is not None else "blobs"
    out["blobs_per_s"] = round(len(blobs.names) / median, 1)
    out["mb_per_s"] = round(blobs.total_bytes / median / 1e6, 1)
    add_projection(out, best.processes)
    return out
