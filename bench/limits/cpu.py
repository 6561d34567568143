"""CPU accounting from Linux's /proc: the machine's busy seconds, a process's CPU seconds, and
which process listens on a port (to find Azurite's pid when it is not given)."""

from __future__ import annotations

import os


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` of this machine (Linux /proc), or None if not found:
    lets ``--connection-string`` runs report Azurite's CPU without being told its pid."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:   # LISTEN
                        inodes.add(f"socket:[{cols[9]}]")
        except OSError:
            continue
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                return int(pid)
        except OSError:
            continue
    return None


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used so far (every core), from /proc/stat."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fh.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (all its threads) so far, from /proc."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            after_name = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 (utime) and 15 (stime) of proc(5); after_name starts at field 3.
    return (int(after_name[11]) + int(after_name[12])) / os.sysconf("SC_CLK_TCK")
