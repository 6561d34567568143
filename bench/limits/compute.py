"""What the compute limits share: the ways to use the cores (:class:`Parallel`), repeated runs and
the fastest way among them."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.limits.timing import Timed, Workers


@dataclass(frozen=True)
class Parallel:
    """How compute uses the cores: ``processes`` each with ``threads`` Python threads."""

    processes: int
    threads: int

    @property
    def label(self) -> str:
        return f"{self.processes} process(es) x {self.threads} thread(s)"

    @property
    def cores(self) -> int:
        return self.processes * self.threads


def compute_variants(cpus: int) -> list[Parallel]:
    return [Parallel(cpus, 1), Parallel(1, cpus)] if cpus > 1 else [Parallel(1, 1)]


def median_run(pool: Workers, method: str, args: tuple[Any, ...], runs: int,
                check: Callable[[Timed], None]) -> list[Timed]:
    out = []
    for _ in range(runs):
        timed = pool.run(method, *args)
        check(timed)
        out.append(timed)
    return out


def variant_named(variants: Sequence[Parallel], label: str) -> Parallel:
    return next(v for v in variants if v.label == label)


def rate(timed: Sequence[Timed], items: int) -> float:
    return round(items / statistics.median(t.seconds for t in timed), 1)


def fastest(by_variant: dict[str, list[Timed]]) -> str:
    return min(by_variant, key=lambda v: statistics.median(t.seconds for t in by_variant[v]))


def medians(by_variant: dict[str, list[Timed]], items: int) -> dict[str, float]:
    return {v: rate(t, items) for v, t in by_variant.items()}
