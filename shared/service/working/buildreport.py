"""What a user sees of a job's environment build on a node: its status row (progress while it
builds, throttled) and its installer's output in the job's ``logs/sys/environment/<node>.txt``.

Neither decides anything: a report that storage refuses is logged and the build goes on.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from azure.core.exceptions import AzureError

from shared.service.ledger import environment_rows
from shared.service.ledger.environment_rows import BuildState, EnvironmentRow
from shared.service.ledger.rows import JobRow
from shared.storage import Storage, blob_path

log = logging.getLogger("parallelrun.environments")

REPORT_EVERY_S = 5.0          # at most one status row write per build this often (plus its end)
LOG_BYTES = 1 << 20           # of the installer's output shipped to logs/ (its end)


def log_blob(job: JobRow, node: str) -> str:
    return blob_path(job.output_prefix, f"logs/sys/environment/{node}.txt")


def _tail(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_BYTES))
            return f.read()
    except OSError as exc:
        return f"(the installer's output cannot be read: {exc})".encode()


class BuildReport:
    """One node's build (or reuse) of one job's environment."""

    def __init__(self, storage: Storage, job: JobRow, node: str, key: str, requirements: tuple[str, ...]
                 ) -> None:
        self.storage = storage
        self.job = job
        self.node = node
        self.key = key
        self.requirements = requirements
        self.started_at = time.time()
        self._reported = 0.0

    def progress(self, line: str) -> None:
        log.info("job=%s environment %s: %s", self.job.job_id, self.key, line)
        now = time.time()
        if now - self._reported >= REPORT_EVERY_S:
            self._put(BuildState.BUILDING, line, now)

    def finish(self, state: BuildState, line: str, installer_log: Path | None = None) -> None:
        """The build's end: the status row, and the installer's output (or a note) in ``logs/``."""
        self._put(state, line, time.time())
        head = (f"environment {self.key} on node {self.node}: {state} - {line}\n"
                f"requirements: {', '.join(self.requirements)}\n")
        body = b"" if installer_log is None else b"\n--- installer output ---\n" + _tail(installer_log)
        try:
            self.storage.container(self.job.output_container).upload_blob(
                log_blob(self.job, self.node), head.encode() + body, overwrite=True)
        except AzureError as exc:
            log.warning("job=%s: the environment's build log could not be written: %s",
                        self.job.job_id, type(exc).__name__)

    def _put(self, state: BuildState, line: str, now: float) -> None:
        self._reported = now
        row = EnvironmentRow(self.job.job_id, self.node, state, self.key, self.started_at, now,
                             round(now - self.started_at, 1), line)
        try:
            environment_rows.put(self.storage.ledger, row)
        except AzureError as exc:
            log.warning("job=%s: the environment's build status could not be written: %s",
                        self.job.job_id, type(exc).__name__)
