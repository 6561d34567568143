"""A tiny sampling profiler for a local host process, weighted by each thread's CPU time.

Every ``interval_s`` a daemon thread takes every thread's Python stack
(``sys._current_frames()``) and its CPU clock; the CPU a thread used since the last sample is
added to the stack it is in now. Threads that waited in between used no CPU and add nothing, so
the counts are CPU seconds per stack across all threads, unlike a wall-clock sampler (which counts
a thread blocked on a socket as busy) or ``cProfile`` (one thread, and several times slower).

Its error: a sample is taken when the sampler holds the GIL, so a thread that computes is seen
where it gave the GIL up: at the switch interval (lowered to half the sampling interval while the
sampler runs) or at a blocking call. CPU spent in a burst shorter than that lands on the frame the
thread blocks in next, usually the same call's socket read or lock (which also carries the
system CPU of the call itself), so per-module and per-category figures are sound and a leaf
function's own share less so. A thread inside a C call that keeps the GIL is seen at that call.
The sampler's own CPU (a few % of a core at 1 ms) is measured and reported apart
(:attr:`own_cpu_s`), and the faster GIL hand-offs cost the profiled process a little too: run
without the sampler for the CPU figures.

:meth:`collapsed` gives one line per (thread group, stack): ``thread;outer;...;leaf <ns>``, the
format flame-graph tools read; frames are ``path:function`` with ``path`` relative to the project
or to ``site-packages`` (``bench/profile.py`` turns it into tables).
"""

from __future__ import annotations

import sys
import sysconfig
import threading
import time
from collections import Counter
from pathlib import Path
from types import CodeType, FrameType

from shared.local.cpustats import thread_cpu_s, thread_group

_ROOTS = sorted({str(Path(p)) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"],
                                        str(Path(__file__).resolve().parents[2]))}, key=len, reverse=True)
MAX_DEPTH = 80


def frame_name(code: CodeType) -> str:
    """``path:function`` of a code object, the path relative to the project, site-packages or
    the standard library."""
    path = code.co_filename
    for root in _ROOTS:
        if path.startswith(root + "/"):
            path = path[len(root) + 1:]
            break
    return f"{path}:{code.co_name}"


class Sampler:
    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.counts: Counter[tuple[str, tuple[CodeType, ...]]] = Counter()   # -> CPU ns
        self.samples = 0
        self._last: dict[int, int] = {}          # native thread id -> CPU ns at the last sample
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._own = 0.0
        self._switch = sys.getswitchinterval()

    @property
    def own_cpu_s(self) -> float:
        return self._own

    def start(self) -> Sampler:
        # A thread that computes keeps the GIL for the switch interval (5 ms by default) unless it
        # blocks first: a shorter interval lets the sampler see bursts of CPU where they happen
        # instead of at the wait that ends them (at the price of more GIL hand-offs).
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(max(0.0002, min(self._switch, self.interval_s / 2)))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        sys.setswitchinterval(self._switch)

    def _loop(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval_s):
            self.sample(me)
            self._own = time.thread_time()

    def sample(self, skip: int | None = None) -> None:
        """Take one sample of every thread but ``skip`` (an ident)."""
        frames = sys._current_frames()
        by_ident = {t.ident: t for t in threading.enumerate()}
        seen = set()
        with self._lock:
            for ident, frame in frames.items():
                thread = by_ident.get(ident)
                if ident == skip or thread is None or thread.native_id is None:
                    continue
                cpu = thread_cpu_s(thread.native_id)
                if cpu is None:
                    continue
                ns = int(cpu * 1e9)
                seen.add(thread.native_id)
                last = self._last.get(thread.native_id)
                self._last[thread.native_id] = ns
                if last is None or ns <= last:
                    continue
                self.counts[(thread_group(thread.name), _stack(frame))] += ns - last
            for gone in set(self._last) - seen:
                del self._last[gone]
            self.samples += 1

    def collapsed(self) -> str:
        """The counts so far as collapsed stacks, one ``thread;outer;...;leaf <ns>`` per line."""
        with self._lock:
            items = list(self.counts.items())
        lines = [";".join([group, *(frame_name(c) for c in stack)]) + f" {ns}"
                 for (group, stack), ns in items]
        return "\n".join(sorted(lines)) + "\n"


def _stack(frame: FrameType | None) -> tuple[CodeType, ...]:
    codes: list[CodeType] = []
    while frame is not None and len(codes) < MAX_DEPTH:
        codes.append(frame.f_code)
        frame = frame.f_back
    return tuple(reversed(codes))
