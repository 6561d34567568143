"""Killing a scoring process together with everything its script started (Linux ``/proc``).

A script may fork, start ``subprocess``es, or detach them with ``setsid`` / a double fork. Three
nets catch them:

* the scoring process is its own process group (``start_new_session``): ``killpg`` ends what
  stayed in it;
* the scoring process makes itself a *child subreaper* (:func:`become_subreaper`), so a detached
  grandchild whose parent exits is re-parented to it, not to init: its descendants can be found
  through the parent links of ``/proc/<pid>/stat`` for as long as it lives;
* every process it starts inherits its environment, which holds a token unique to it
  (``PARALLELRUN_PROCESS_TOKEN``): what left the tree before it was killed is found by that.

What the three miss is a descendant that clears its environment *and* outlives its scoring
process (which only the script's own code can arrange); docs/security.md says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterable

from shared.scoring.protocol import ENV_PROCESS_TOKEN

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_SET_CHILD_SUBREAPER = 36
ROUNDS = 5      # a process forking while we kill: its new children are found in the next round


def _prctl(option: int, arg: int) -> int | None:
    """``prctl(option, arg)``'s result, or None where there is no prctl (not Linux)."""
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0))
    except (OSError, AttributeError):
        return None


def become_subreaper() -> bool:
    """Make the calling process the subreaper of its descendants (True if the system allows it)."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1) == 0


def hide_from_children() -> bool:
    """Make the calling process (the worker, which holds the storage credentials in its
    environment) not dumpable: its ``/proc/<pid>/environ``, ``mem`` and ptrace are then closed to
    processes of the same user that are not root, such as a hostile script's scoring process.
    True if the system allows it. (Root, or CAP_SYS_PTRACE, can still read them: run the host as
    a user of its own.)"""
    return _prctl(PR_SET_DUMPABLE, 0) == 0


def dumpable() -> bool:
    """Whether the calling process is dumpable (see :func:`hide_from_children`)."""
    return _prctl(PR_GET_DUMPABLE, 0) != 0


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def descendants(root: int) -> set[int]:
    """Living descendants of ``root`` (not ``root`` itself)."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z":
            children.setdefault(stat[1], []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def marked(token: str) -> set[int]:
    """Living processes whose environment carries ``token`` (only ours are readable)."""
    needle = f"{ENV_PROCESS_TOKEN}={token}".encode()
    found = set()
    me = os.getpid()
    for pid in _pids():
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            stat = _stat(pid)
            if stat is not None and stat[0] != "Z":
                found.add(pid)
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def kill_tree(root: int, token: str, reaped: bool = False) -> list[int]:
    """SIGKILL ``root``'s descendants and the processes marked with ``token``, then ``root``'s
    process group (``root`` included). Returns the pids that had left the group (escapees).

    ``reaped``: ``root`` has been waited for, so its pid may belong to another process by now:
    its descendants are not looked up (they were re-parented when it died; the token finds them).
    Its group is still killed: a group id is not given to a new process while the group has
    members."""
    escaped: set[int] = set()
    for _ in range(ROUNDS):
        found = ((set() if reaped else descendants(root)) | marked(token)) - {root}
        if not found:
            break
        escaped |= {pid for pid in found if (_stat(pid) or ("", 0, root))[2] != root}
        _kill(found)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(root, signal.SIGKILL)
    return sorted(escaped)


def sweep(token: str) -> list[int]:
    """After the scoring process is gone: SIGKILL what still carries its token."""
    left: set[int] = set()
    for _ in range(ROUNDS):
        found = marked(token)
        if not found:
            break
        left |= found
        _kill(found)
    return sorted(left)


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)

