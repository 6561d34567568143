"""Timed runs: in spawned worker processes run in lock-step (:class:`Workers`), or in this process
(:class:`Stopwatch`); each gives a :class:`Timed` with the CPU seconds every side used."""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mpc
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.limits.cpu import cpu_seconds, machine_busy_seconds
from bench.limits.storage import Target


def _serve(conn: mpc.Connection, factory: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A worker process: build the state once, then run its methods on request until told to stop."""
    try:
        state = factory(*args)
        conn.send(("ok", None, 0.0))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", traceback.format_exc(), 0.0))
        return
    while True:
        try:
            message = conn.recv()
        except EOFError:        # the parent is gone
            return
        if message is None:
            return
        method, method_args = message
        cpu = time.process_time()
        try:
            result = getattr(state, method)(*method_args)
            conn.send(("ok", result, time.process_time() - cpu))
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc(), time.process_time() - cpu))


@dataclass
class Timed:
    """One timed run: wall seconds (parent's clock), each worker's result, CPU seconds used by the
    client (our processes), by Azurite (when its pid is known) and by the whole machine."""

    seconds: float
    results: list[Any]
    client_cpu_s: float
    server_cpu_s: float | None
    machine_cpu_s: float = 0.0

    @property
    def other_cpu_s(self) -> float:
        """CPU used by anything else (another benchmark, ...): should be near 0 for a clean run."""
        return max(0.0, self.machine_cpu_s - self.client_cpu_s - (self.server_cpu_s or 0.0))


class Workers:
    """Spawned processes, each set up once (untimed) with its own arguments, then run in lock-step.

    The wall time of a run is taken in the parent, from sending "go" to the last answer, so it covers
    the slowest worker (and a pipe round trip, well under a millisecond)."""

    def __init__(self, factory: Callable[..., Any], args_per_worker: Sequence[tuple[Any, ...]],
                 azurite_pid: int | None = None) -> None:
        context = mp.get_context("spawn")
        self.azurite_pid = azurite_pid
        self._conns: list[mpc.Connection] = []
        self._procs: list[Any] = []
        for args in args_per_worker:
            parent, child = context.Pipe()
            proc = context.Process(target=_serve, args=(child, factory, args), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self._collect()

    def __len__(self) -> int:
        return len(self._conns)

    def run(self, method: str, *args: Any) -> Timed:
        server = cpu_seconds(self.azurite_pid)
        machine = machine_busy_seconds()
        started = time.perf_counter()
        for conn in self._conns:
            conn.send((method, args))
        answers = self._collect()
        seconds = time.perf_counter() - started
        machine = machine_busy_seconds() - machine
        after = cpu_seconds(self.azurite_pid)
        return Timed(seconds, [result for result, _ in answers], sum(cpu for _, cpu in answers),
                     None if server is None or after is None else after - server, machine)

    def _collect(self) -> list[tuple[Any, float]]:
        answers = []
        errors = []
        for conn in self._conns:
            try:
                status, result, cpu = conn.recv()
            except EOFError:
                status, result, cpu = "error", "worker process died", 0.0
            if status != "ok":
                errors.append(result)
            answers.append((result, cpu))
        if errors:
            self.close()
            raise RuntimeError("worker failed:\n" + "\n".join(errors))
        return answers

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` in ``parts`` contiguous slices of (nearly) equal length."""
    bounds = [round(i * len(items) / parts) for i in range(parts + 1)]
    return [list(items[bounds[i]:bounds[i + 1]]) for i in range(parts)]


@dataclass
class Stopwatch:
    """Wall, own CPU, Azurite's CPU and the machine's CPU of a run made in this process."""

    target: Target
    started: float = 0.0
    cpu: float = 0.0
    server: float | None = None
    machine: float = 0.0

    def start(self) -> None:
        self.server = cpu_seconds(self.target.azurite_pid)
        self.machine = machine_busy_seconds()
        self.cpu = time.process_time()
        self.started = time.perf_counter()

    def stop(self) -> Timed:
        seconds = time.perf_counter() - self.started
        cpu = time.process_time() - self.cpu
        machine = machine_busy_seconds() - self.machine
        server = cpu_seconds(self.target.azurite_pid)
        return Timed(seconds, [], cpu, None if server is None or self.server is None
                     else server - self.server, machine)
