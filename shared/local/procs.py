"""Process plumbing of the local host: children that die with their parent, and a node's cleanup.

* :func:`die_with_parent`: a ``preexec_fn`` asking Linux to send the child a signal when the
  thread that started it exits (``PR_SET_PDEATHSIG``); used for Azurite, which ``parallelrun up``
  starts from its main thread. Elsewhere it does nothing.
* :func:`watch_parent`: a node's end of a pipe whose other end only its parent holds; when the
  parent dies (even by SIGKILL) the read sees end-of-file and the node stops.
* :func:`kill_children`: SIGKILL every child of this process with its process group (scoring
  processes run in sessions of their own), for a node on its way out.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("parallelrun.local.procs")

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when its parent goes (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:   # the parent died before the request took effect
            os._exit(1)
    return preexec


def watch_parent(fd: int, on_exit: Callable[[], None]) -> threading.Thread:
    """Call ``on_exit`` once the pipe ``fd`` reaches end-of-file (its writer, the parent, is gone)."""
    def wait() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 1024):
                pass
        on_exit()
    thread = threading.Thread(target=wait, name="parent-watch", daemon=True)
    thread.start()
    return thread


def children(pid: int) -> list[int]:
    """The live children of ``pid`` (from /proc; empty where there is none)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in task.read_text().split()]
    if found or not Path("/proc").is_dir():
        return found
    for stat in Path("/proc").glob("[0-9]*/stat"):   # kernels without task/*/children
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def kill_children(pid: int | None = None) -> list[int]:
    """SIGKILL the children of ``pid`` (default: this process), each with its process group when
    it leads one; returns the pids killed."""
    pid = os.getpid() if pid is None else pid
    killed = []
    for child in children(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(child) == child:
                os.killpg(child, signal.SIGKILL)
            else:
                os.kill(child, signal.SIGKILL)
            killed.append(child)
    if killed:
        log.warning("killed %d child process(es) of %d: %s", len(killed), pid, killed)
    return killed
