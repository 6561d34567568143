"""A CPU profile of every thread of a local host process: ``cProfile`` per thread, timed by that
thread's own CPU clock.

Once :func:`install` has run, every thread started afterwards (the queue consumers' pools, the
download pool, the scoring pool's warmer, ...) runs its ``run()`` under its own
``cProfile.Profile(time.thread_time)``, so a function's time is the CPU its thread spent in it:
a thread waiting on a socket or a lock adds nothing. The profiles of threads that exited are kept.
:meth:`ThreadProfiles.collapsed` sums them per thread group and function: one line
``thread;path:function <self ns>`` each (the collapsed-stack format, one frame deep) and
:meth:`ThreadProfiles.calls` one line ``path:function <calls> <self ns> <total ns>`` each, which
``bench/profile.py`` turns into tables. Paths are relative to the project, site-packages or the
standard library; built-in functions keep cProfile's name (``<method 'recv_into' of ...>``).

Why not a sampler: walking other threads' frames (``sys._current_frames()`` and ``f_back``) from
a sampling thread crashes CPython 3.11 now and then (a use-after-free of a frame its thread just
left; the host segfaulted after ~90,000 samples here, as reported for other in-process samplers).
cProfile stays within each thread. Its cost: every call and return is timed, so Python-heavy
code slows down more than C-heavy code (about 2x here) and the shares lean towards Python code;
use the harness's CPU figures, measured without the profiler, for the amounts.
"""

from __future__ import annotations

import cProfile
import sysconfig
import threading
import time
from pathlib import Path
from types import CodeType
from typing import Any

_ROOTS = sorted({str(Path(p)) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"],
                                        str(Path(__file__).resolve().parents[2]))}, key=len, reverse=True)


def function_name(code: CodeType | str) -> str:
    """``path:function`` of a code object (the path relative to the project, site-packages or the
    standard library); a built-in's cProfile name as it is."""
    if isinstance(code, str):
        return code.replace(";", ",")
    path = code.co_filename
    for root in _ROOTS:
        if path.startswith(root + "/"):
            path = path[len(root) + 1:]
            break
    return f"{path}:{code.co_name}"


class ThreadProfiles:
    """The profiles of the threads started since :meth:`install`, by thread group."""

    def __init__(self) -> None:
        self._profiles: list[tuple[str, cProfile.Profile]] = []
        self._lock = threading.Lock()

    def install(self) -> ThreadProfiles:
        from shared.local.cpustats import thread_group

        original = threading.Thread.run
        profiles = self

        def run(thread: threading.Thread) -> None:
            profile = cProfile.Profile(time.thread_time)
            with profiles._lock:
                profiles._profiles.append((thread_group(thread.name), profile))
            profile.enable()
            try:
                original(thread)
            finally:
                profile.disable()

        threading.Thread.run = run  # type: ignore[method-assign,assignment]
        return self

    def _entries(self) -> list[tuple[str, Any]]:
        with self._lock:
            found = list(self._profiles)
        return [(group, entry) for group, profile in found for entry in profile.getstats()]

    def collapsed(self) -> str:
        """Self CPU per (thread group, function): ``thread;path:function <ns>`` lines."""
        totals: dict[str, int] = {}
        for group, entry in self._entries():
            key = f"{group};{function_name(entry.code)}"
            totals[key] = totals.get(key, 0) + int(entry.inlinetime * 1e9)
        return "".join(f"{k} {v}\n" for k, v in sorted(totals.items()) if v > 0)

    def calls(self) -> str:
        """Calls, self and total CPU per function (all threads): ``path:function calls self total``
        lines (total counts a recursive function's time once per outermost call)."""
        totals: dict[str, list[int]] = {}
        for _, entry in self._entries():
            row = totals.setdefault(function_name(entry.code), [0, 0, 0])
            row[0] += entry.callcount
            row[1] += int(entry.inlinetime * 1e9)
            row[2] += int(entry.totaltime * 1e9)
        return "".join(f"{k} {c} {s} {t}\n" for k, (c, s, t) in sorted(totals.items()))
