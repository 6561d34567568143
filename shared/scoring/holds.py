"""A scoring process's hold on the snapshot extraction it runs from, so the worker's eviction
(:func:`shared.service.working.snapshots.evict`) never removes code a live process still uses."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

USED = ".used"            # touched at every use; its mtime orders eviction


def mark(folder: Path) -> Path:
    return folder.parent / f".{folder.name}{USED}"


def hold(folder: Path) -> int | None:
    """A scoring process's shared lock on the extraction it runs from (kept open for its life):
    :func:`evict` skips an extraction whose mark someone holds. None if ``folder`` is no
    extraction."""
    try:
        fd = os.open(mark(folder), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd
