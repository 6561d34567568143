"""CPU accounting of a local host process: the Functions host's share apart from our functions'.

On Azure the Functions host (.NET, its own process) polls the queues, receives and deletes
messages, renews their leases, scans for new blobs and keeps the timers; the Python worker only
runs the functions. The local host does that job in the same Python process as the functions,
partly on the same threads (a queue-triggered invocation's thread deletes its message after the
function returns). So the emulation counts its own CPU: each of its code paths runs inside
:func:`stage`, which adds the ``time.thread_time()`` spent inside to a process-wide book (about a
microsecond per use; exact to the nanosecond for the thread it runs on, whatever else runs).
Everything else the process spends is our code: the functions, their threads (downloads, the
scoring pool's warmer), the SDK calls they make, garbage collection.

Opt-in (``PARALLELRUN_LOCAL_CPU_DIR``): :func:`install` makes ``kill -USR2 <node pid>`` write a
:func:`snapshot` to ``<dir>/<node id>.json`` (written whole, then renamed into place), and, with
``PARALLELRUN_LOCAL_PROFILE=1``, profiles every thread (:mod:`shared.local.profiler`) and writes
the profile to ``<dir>/<node id>.folded`` and ``.calls`` at the same time. ``bench/hostcpu.py``
reads them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

CPU_DIR_ENV = "PARALLELRUN_LOCAL_CPU_DIR"
PROFILE_ENV = "PARALLELRUN_LOCAL_PROFILE"
REQUEST_SIGNAL = signal.SIGUSR2

_book: dict[str, float] = {}
_book_lock = threading.Lock()


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Count the calling thread's CPU inside the block as the emulation stage ``name``."""
    started = time.thread_time()
    try:
        yield
    finally:
        spent = time.thread_time() - started
        with _book_lock:
            _book[name] = _book.get(name, 0.0) + spent


def stages() -> dict[str, float]:
    """CPU seconds per emulation stage so far."""
    with _book_lock:
        return dict(_book)


def thread_group(name: str) -> str:
    """A thread's name without its pool index: ``fn-worker_3`` -> ``fn-worker``,
    ``Thread-12 (_renew)`` -> ``Thread (_renew)``."""
    return re.sub(r"[-_]\d+\b", "", name)


def thread_cpu_s(native_id: int) -> float | None:
    """CPU seconds of a thread of this process, by its kernel thread id (None once it is gone).

    Linux encodes a thread's CPU clock as ``(~tid << 3) | 6`` (CPUCLOCK_PERTHREAD | SCHED): unlike
    ``pthread_getcpuclockid``, asking about a thread that just exited is an error, not a crash."""
    try:
        return time.clock_gettime(((~native_id) << 3) | 6)
    except OSError:
        return None


def threads() -> dict[str, float]:
    """CPU seconds of the live threads, summed by :func:`thread_group` (threads that exited are
    only in the process total)."""
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        cpu = thread_cpu_s(thread.native_id) if thread.native_id is not None else None
        if cpu is not None:
            group = thread_group(thread.name)
            found[group] = found.get(group, 0.0) + cpu
    return found


def proc_cpu_s(stat: str) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds from the text of ``/proc/<pid>/stat``: utime + stime
    and cutime + cstime (fields 14-17 of proc(5); the name in parentheses may hold spaces)."""
    fields = stat.rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def children_cpu_s() -> tuple[float, dict[int, float]]:
    """CPU seconds of this process's children: those reaped (``RUSAGE_CHILDREN``, exact) and each
    live one's own and its reaped children's (``/proc``, in clock ticks). Read until the reaped
    total is the same before and after the live ones, so a child reaped meanwhile is counted once."""
    for _ in range(10):
        before = _rusage(resource.RUSAGE_CHILDREN)
        live = {}
        for pid in _children():
            with contextlib.suppress(OSError, ValueError, IndexError):
                own, reaped = proc_cpu_s(Path(f"/proc/{pid}/stat").read_text())
                live[pid] = own + reaped
        if _rusage(resource.RUSAGE_CHILDREN) == before:
            break
    return before, live


def snapshot(node_id: str = "") -> dict[str, Any]:
    """The process's CPU so far: in total, per emulation stage, per live thread group, and its
    children's (reaped and live)."""
    reaped, live = children_cpu_s()
    return {"node_id": node_id, "pid": os.getpid(), "monotonic": time.monotonic(),
            "process_s": _rusage(resource.RUSAGE_SELF), "emulation_s": stages(),
            "threads_s": threads(), "children_reaped_s": reaped,
            "children_live_s": {str(k): v for k, v in live.items()}}


def _rusage(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _children() -> list[int]:
    found = []
    for task in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in task.read_text().split()]
    return found


def install(node_id: str) -> None:
    """With ``PARALLELRUN_LOCAL_CPU_DIR`` set: write snapshots (and the profile) on SIGUSR2
    (main thread only; before the host starts its threads, so that all are profiled). Without
    it: nothing."""
    folder = os.environ.get(CPU_DIR_ENV)
    if not folder:
        return
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    profiles = None
    if os.environ.get(PROFILE_ENV) == "1":
        from shared.local.profiler import ThreadProfiles
        profiles = ThreadProfiles().install()

    def on_request(signum: int, frame: FrameType | None) -> None:
        data = snapshot(node_id)
        if profiles is not None:
            _write(out / f"{node_id}.folded", profiles.collapsed())
            _write(out / f"{node_id}.calls", profiles.calls())
        _write(out / f"{node_id}.json", json.dumps(data))

    signal.signal(REQUEST_SIGNAL, on_request)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
