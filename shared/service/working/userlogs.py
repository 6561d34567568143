"""Ship what the entry script logs into the job's output folder, PRS-style.

A scoring process writes to its own working folder (``logs/user/<process>.log.txt`` from
``EntryScript().logger``, ``.stdout.txt``/``.stderr.txt`` from the script's prints, metrics from
``Run.log``). After a mini-batch, the worker appends what is new in those files to append blobs under
``<output>/logs/user/<kind>/<node>/<process>.txt``, at most every ``interval_s`` (10 s) per process unless
told to flush, so logging costs no storage call per mini-batch. Each byte is shipped exactly once,
also when several threads ship at once and when an append's answer is lost (:class:`LogShipper`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient

from shared.storage import Storage, blob_path

log = logging.getLogger("parallelrun.userlogs")

KINDS = {".log.txt": "entry_script_log", ".stdout.txt": "stdout", ".stderr.txt": "stderr"}
MAX_APPEND = 4 * 1024 * 1024   # the append-block size limit


@dataclass
class _Shipped:
    """How much of one log file is in its blob; the lock makes one shipper at a time per file."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    file_offset: int = 0
    blob_offset: int | None = None    # None: not looked at yet by this worker process


class LogShipper:
    """Ships each byte of a log file once: one shipper per file at a time, and every append is
    conditional on the blob's length (``appendpos_condition``), so an append the SDK retries after
    a lost answer cannot land twice. A worker restarted on the same node continues where the blob
    ends (the blob holds a prefix of the file)."""

    def __init__(self, storage: Storage, node_id: str, interval_s: float = 10.0) -> None:
        self.storage = storage
        self.node_id = node_id
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._files: dict[str, _Shipped] = {}
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
                                        blob_path(prefix, f"logs/user/{kind}/{self.node_id}/{process}.txt"))
        return shipped

    def _state(self, key: str) -> _Shipped:
        with self._lock:
            return self._files.setdefault(key, _Shipped())

    def _append(self, path: Path, container: str, blob_name: str) -> int:
        state = self._state(str(path))
        with state.lock:
            try:
                return self._append_locked(path, container, blob_name, state)
            except ResourceNotFoundError:
                # storage lost the blob (an emulator restarted without its last writes): the file
                # still holds every line, so the blob is written again from the start
                log.warning("log blob %s/%s is gone; shipping %s again from its start", container,
                            blob_name, path.name)
                state.blob_offset, state.file_offset = None, 0
                return self._append_locked(path, container, blob_name, state)

    def _append_locked(self, path: Path, container: str, blob_name: str, state: _Shipped) -> int:
        size = path.stat().st_size
        if size <= state.file_offset:
            return 0
        blob = self.storage.container(container).get_blob_client(blob_name)
        if state.blob_offset is None:
            self._start(blob, state, size)
        shipped = 0
        with open(path, "rb") as fh:
            fh.seek(state.file_offset)
            while state.file_offset < size and (
                    chunk := fh.read(min(MAX_APPEND, size - state.file_offset))):
                self._append_at(blob, chunk, state)
                state.file_offset += len(chunk)
                shipped += len(chunk)
        return shipped

    @staticmethod
    def _start(blob: BlobClient, state: _Shipped, file_size: int) -> None:
        """Where this file's bytes continue in its blob (created if missing)."""
        try:
            blob.create_append_blob(match_condition=MatchConditions.IfMissing)
            state.blob_offset = 0
            return
        except (ResourceExistsError, ResourceModifiedError):
            pass
        length = blob.get_blob_properties().size
        # the blob holds the start of this file (a worker before this one shipped it), unless the
        # file is shorter: then it is a new file (the scratch folder was wiped), appended after
        state.file_offset = length if length <= file_size else 0
        state.blob_offset = length

    @staticmethod
    def _append_at(blob: BlobClient, chunk: bytes, state: _Shipped) -> None:
        position = state.blob_offset or 0
        try:
            blob.append_block(chunk, appendpos_condition=position)
        except HttpResponseError as exc:
            if exc.status_code != 412:
                raise
            length = blob.get_blob_properties().size
            if length != position + len(chunk):     # not our append: another writer's
                log.warning("log blob %s changed under its shipper (%d bytes, expected %d); "
                            "appending at its end", blob.blob_name, length, position)
                blob.append_block(chunk, appendpos_condition=length)
                state.blob_offset = length + len(chunk)
                return
            # our append landed and its answer was lost; the SDK's retry was refused: done
        state.blob_offset = position + len(chunk)
