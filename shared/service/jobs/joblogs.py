"""A job's log files, for the HTTP API and the CLI: listed, and read a bounded range at a time.

Everything lives under ``<output container>/<output prefix>/logs/`` (see
:mod:`shared.service.jobs.summary`, :mod:`shared.service.working.userlogs` and
:mod:`shared.service.working.buildreport`)::

    job_result.txt, job_progress_overview.txt, processed_mini-batches.csv     kind "job"
    user/stdout|stderr|entry_script_log|error/<node>/<process>.txt            kind stdout|stderr|entry|error
    sys/...                                                                   kind "sys"

A path a caller names is relative to ``logs/`` and checked (:func:`check_path`) before it reaches
storage: no ``..``, no absolute path, no backslash, no empty or dot segment, no control character,
so a request never reads outside the job's logs folder. A listing holds at most ``MAX_FILES``
files (``truncated`` says so); a read returns at most ``MAX_READ_BYTES``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.errors import NotFoundError, SubmitterError
from shared.service.ledger.rows import JobRow
from shared.storage import Storage, blob_path

MAX_FILES = 1000               # files in one listing
MAX_READ_BYTES = 1 << 20       # bytes in one read (1 MiB)
MAX_PATH_CHARS = 1024
KINDS = ("stdout", "stderr", "entry", "error", "sys", "job")
_USER_KINDS = {"stdout": "stdout", "stderr": "stderr", "entry_script_log": "entry", "error": "error"}
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class LogFile:
    path: str          # relative to logs/
    kind: str          # one of KINDS
    node: str          # "" for job-level files
    process: str       # "" for job-level and sys files
    size: int


@dataclass(frozen=True)
class Listing:
    job_id: str
    location: str      # container/prefix/logs/
    files: list[LogFile]
    truncated: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"job_id": self.job_id, "location": self.location,
                                "files": [asdict(f) for f in self.files]}
        if self.truncated:
            data["truncated"] = True
            data["note"] = self.note
        return data


@dataclass(frozen=True)
class Chunk:
    """``data`` is bytes ``offset`` to ``offset + len(data)`` of a file of ``size`` bytes."""

    path: str
    offset: int
    size: int
    data: bytes = field(repr=False)


def check_path(path: str) -> str:
    """``path`` if it names a file inside ``logs/``; else SubmitterError (400) naming it (pure)."""
    shown = repr(path[:120])
    if not path or len(path) > MAX_PATH_CHARS:
        raise SubmitterError(f"log path {shown} must be 1 to {MAX_PATH_CHARS} characters")
    if _BAD_CHARS.search(path):
        raise SubmitterError(f"log path {shown} holds a backslash or a control character")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise SubmitterError(f"log path {shown} must be relative to the job's logs/ folder")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise SubmitterError(f"log path {shown} may not hold empty, '.' or '..' segments")
    return path


def classify(path: str) -> tuple[str, str, str]:
    """(kind, node, process) of a path relative to ``logs/`` (pure)."""
    parts = path.split("/")
    if len(parts) == 1:
        return "job", "", ""
    if parts[0] == "user" and len(parts) == 4 and parts[1] in _USER_KINDS:
        return _USER_KINDS[parts[1]], parts[2], parts[3].removesuffix(".txt")
    if parts[0] == "sys":
        node = parts[-1].removesuffix(".txt") if len(parts) == 3 else ""
        return "sys", node, ""
    return "job", "", ""


def logs_folder(job: JobRow) -> str:
    return blob_path(job.output_prefix, "logs/")


def location(job: JobRow) -> str:
    return f"{job.output_container}/{logs_folder(job)}"


def list_files(storage: Storage, job: JobRow, *, node: str = "", process: str = "", kind: str = "",
               limit: int = MAX_FILES) -> Listing:
    """The job's log files, filtered by node, process and kind, at most ``limit`` of them."""
    if kind and kind not in KINDS:
        raise SubmitterError(f"kind {kind[:40]!r} is not one of {', '.join(KINDS)}")
    folder = logs_folder(job)
    container = storage.container(job.output_container)
    files: list[LogFile] = []
    truncated = False
    try:
        for blob in container.list_blobs(name_starts_with=folder):
            rel = blob.name[len(folder):]
            found_kind, found_node, found_process = classify(rel)
            if ((kind and found_kind != kind) or (node and found_node != node)
                    or (process and found_process != process)):
                continue
            if len(files) >= limit:
                truncated = True
                break
            files.append(LogFile(rel, found_kind, found_node, found_process, blob.size or 0))
    except ResourceNotFoundError:
        pass    # no output container yet: no logs yet
    note = (f"only the first {limit} files are listed: filter by node, process or kind"
            if truncated else "")
    return Listing(job.job_id, location(job), files, truncated, note)


def read(storage: Storage, job: JobRow, path: str, *, offset: int = 0,
         max_bytes: int = MAX_READ_BYTES, tail: int | None = None) -> Chunk:
    """Bytes of one log file: from ``offset`` (at most ``max_bytes``), or its last ``tail``
    bytes; never more than ``MAX_READ_BYTES``. NotFoundError names the job and the file."""
    check_path(path)
    if offset < 0 or max_bytes < 0 or (tail is not None and tail < 0):
        raise SubmitterError("offset, max_bytes and tail must not be negative")
    blob = storage.container(job.output_container).get_blob_client(blob_path(logs_folder(job), path))
    try:
        size = blob.get_blob_properties().size
    except ResourceNotFoundError:
        raise NotFoundError(f"job {job.job_id} has no log file {path} (in {location(job)})") from None
    want = min(max_bytes, MAX_READ_BYTES)
    if tail is not None:
        want = min(tail, MAX_READ_BYTES)
        offset = max(0, size - want)
    start = min(offset, size)
    length = min(want, size - start)
    try:
        data = blob.download_blob(offset=start, length=length).readall() if length > 0 else b""
    except HttpResponseError as exc:
        if exc.status_code != 416:   # rewritten shorter since its size was read: nothing there
            raise
        data = b""
    return Chunk(path, start, size, data)
