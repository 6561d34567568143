"""Ship what the entry script logs into the job's output folder, PRS-style.

A scoring process writes to its own working folder (``logs/user/<process>.log.txt`` from
``EntryScript().logger``, ``.stdout.txt``/``.stderr.txt`` from the script's prints, metrics from
``Run.log``). After a mini-batch, the worker appends what is new in those files to append blobs under
``<output>/logs/user/<kind>/<node>/<process>.txt``, at most every ``interval_s`` per process unless
told to flush, so logging costs no storage call per mini-batch.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

from .output import join
from .storage import Storage

log = logging.getLogger("parallelrun.userlogs")

KINDS = {".log.txt": "entry_script_log", ".stdout.txt": "stdout", ".stderr.txt": "stderr"}
MAX_APPEND = 4 * 1024 * 1024   # the append-block size limit


class LogShipper:
    def __init__(self, storage: Storage, node_id: str, interval_s: float = 5.0) -> None:
        self.storage = storage
        self.node_id = node_id
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._offsets: dict[str, int] = {}
        self._last: dict[str, float] = {}

    def ship(self, work_dir: str, container: str, prefix: str, force: bool = False) -> int:
        """Append new bytes of the process's log files; returns the bytes shipped."""
        folder = Path(work_dir) / "logs" / "user"
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last.get(work_dir, 0.0) < self.interval_s:
                return 0
            self._last[work_dir] = now
        if not folder.is_dir():
            return 0
        shipped = 0
        for path in sorted(folder.iterdir()):
            kind = next((k for suffix, k in KINDS.items() if path.name.endswith(suffix)), None)
            if kind is not None:
                process = path.name.split(".", 1)[0]
                shipped += self._append(path, container,
                                        join(prefix, f"logs/user/{kind}/{self.node_id}/{process}.txt"))
        return shipped

    def _append(self, path: Path, container: str, blob_name: str) -> int:
        key = str(path)
        with self._lock:
            offset = self._offsets.get(key, 0)
        size = path.stat().st_size
        if size <= offset:
            return 0
        blob = self.storage.container(container).get_blob_client(blob_name)
        if offset == 0:
            try:
                blob.create_append_blob(match_condition=MatchConditions.IfMissing)
            except (ResourceExistsError, ResourceModifiedError):
                pass
        with open(path, "rb") as fh:
            fh.seek(offset)
            while chunk := fh.read(MAX_APPEND):
                blob.append_block(chunk)
                offset += len(chunk)
        with self._lock:
            self._offsets[key] = offset
        return size
