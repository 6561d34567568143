"""Content-addressed code snapshots: a ``source_directory`` becomes ``snapshot:<sha256>``.

The folder is zipped deterministically (sorted names, fixed timestamps, no caches), uploaded once
to ``<system container>/snapshots/<sha256>.zip`` and extracted once per worker process. A snapshot
is bounded by :class:`~shared.limits.Limits` (zip size, files, expanded size): :func:`scan` checks
a folder before it is zipped, :func:`check_zip` a zip before it is accepted or expanded.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from .errors import NotFoundError, SubmitterError
from .limits import Limits
from .storage import Storage

PREFIX = "snapshot:"
SKIP_DIRS = {"__pycache__", ".git", ".venv", "node_modules", ".pytest_cache", ".mypy_cache"}
_CHUNK = 1024 * 1024


class SnapshotLimitError(SubmitterError):
    """A snapshot (or the folder it is made of) exceeds one of the limits; the message names it."""


@dataclass(frozen=True)
class SnapshotSize:
    """What a snapshot holds: files and their bytes uncompressed."""

    files: int
    expanded_bytes: int


def _files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        yield from (Path(dirpath) / n for n in sorted(filenames) if not n.endswith((".pyc", ".pyo")))


def _over(what: str, value: int, limits: Limits, field: str) -> SnapshotLimitError:
    return SnapshotLimitError(f"{what} {value:,}; at most {getattr(limits, field):,} "
                              f"({limits.setting(field)})")


def scan(folder: str | os.PathLike[str], limits: Limits) -> SnapshotSize:
    """Count the files and bytes a snapshot of ``folder`` would hold; refuse it over the limits."""
    root = Path(folder)
    if not root.is_dir():
        raise SubmitterError(f"source_directory {folder} is not a folder")
    files = size = 0
    inside = root.resolve()
    for path in _files(root):
        if path.is_symlink() and not path.resolve().is_relative_to(inside):
            raise SubmitterError(f"source_directory {folder}: {path.relative_to(root)} is a link to "
                                 "a file outside the folder; copy the file in instead")
        files += 1
        size += path.stat().st_size
        if files > limits.max_snapshot_members:
            raise _over(f"source_directory {folder}: files more than", files - 1, limits,
                        "max_snapshot_members")
        if size > limits.max_snapshot_expanded_bytes:
            raise _over(f"source_directory {folder}: bytes more than", size, limits,
                        "max_snapshot_expanded_bytes")
    return SnapshotSize(files, size)


def build_zip(folder: str | os.PathLike[str], limits: Limits | None = None) -> tuple[bytes, str]:
    """A deterministic zip of ``folder`` and its sha256."""
    limits = limits or Limits()
    root = Path(folder)
    scan(root, limits)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in _files(root):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
            if buf.tell() > limits.max_snapshot_bytes:
                raise _over(f"source_directory {folder}: zipped bytes more than", buf.tell(), limits,
                            "max_snapshot_bytes")
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def check_zip(source: bytes | BinaryIO, limits: Limits) -> SnapshotSize:
    """Refuse a zip that is not one, is too large, holds too many files or expands past the limit.

    The central directory's counts and sizes are checked first, before anything is expanded; then
    every member is read (and its CRC checked) while the bytes actually produced are counted, so a
    header that lies stops the reading at the limit. Extraction may call this first.
    """
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    if size > limits.max_snapshot_bytes:
        raise _over("a snapshot zip of bytes", size, limits, "max_snapshot_bytes")
    _check_entry_count(stream, limits)
    try:
        with zipfile.ZipFile(stream) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_snapshot_members:
                raise _over("a snapshot of files", len(infos), limits, "max_snapshot_members")
            declared = sum(i.file_size for i in infos)
            if declared > limits.max_snapshot_expanded_bytes:
                raise _over("a snapshot expanding to bytes", declared, limits,
                            "max_snapshot_expanded_bytes")
            actual = 0
            for info in infos:
                with zf.open(info) as fh:
                    while chunk := fh.read(_CHUNK):
                        actual += len(chunk)
                        if actual > limits.max_snapshot_expanded_bytes:
                            raise _over("a snapshot expanding to bytes more than", actual, limits,
                                        "max_snapshot_expanded_bytes")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError,
            ValueError, OSError) as exc:
        raise SubmitterError(f"the snapshot is not a valid zip: {exc}") from None
    return SnapshotSize(len(infos), actual)


def _check_entry_count(stream: BinaryIO, limits: Limits) -> None:
    """The end-of-central-directory record's entry count, read before the directory itself."""
    try:
        record = zipfile._EndRecData(stream)  # type: ignore[attr-defined]  # noqa: SLF001
    except OSError:
        record = None
    stream.seek(0)
    if not record:
        raise SubmitterError("the snapshot is not a valid zip: no end of central directory")
    entries = record[4]   # zipfile._ECD_ENTRIES_TOTAL (zip64 totals when present)
    if entries > limits.max_snapshot_members:
        raise _over("a snapshot of files", entries, limits, "max_snapshot_members")


def upload(storage: Storage, folder: str | os.PathLike[str]) -> str:
    """Upload ``folder`` as a snapshot (skipped if it exists); returns ``snapshot:<sha256>``."""
    data, sha = build_zip(folder, storage.settings.limits)
    try:
        storage.system.upload_blob(f"snapshots/{sha}.zip", data, overwrite=False)
    except ResourceExistsError:
        pass
    return PREFIX + sha


def sha_of(reference: str) -> str:
    if not reference.startswith(PREFIX):
        raise SubmitterError(f"source_directory must be a snapshot reference, got {reference!r}")
    return reference[len(PREFIX):]


def names(storage: Storage, reference: str) -> list[str]:
    """The file names inside a snapshot (raises NotFoundError if it does not exist)."""
    with zipfile.ZipFile(io.BytesIO(_download(storage, sha_of(reference)))) as zf:
        return zf.namelist()


def _download(storage: Storage, sha: str) -> bytes:
    try:
        return storage.system.download_blob(f"snapshots/{sha}.zip").readall()
    except ResourceNotFoundError:
        raise NotFoundError(f"code snapshot {sha} does not exist: submit with the CLI "
                            "(it uploads source_directory) or upload it first") from None


_lock = threading.Lock()


def extract(storage: Storage, reference: str, root: str | os.PathLike[str]) -> Path:
    """Extract the snapshot under ``root/<sha>/`` once per process; returns that folder."""
    sha = sha_of(reference)
    target = Path(root) / sha
    with _lock:
        if (target / ".complete").exists():
            return target
        tmp = Path(root) / f".{sha}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(io.BytesIO(_download(storage, sha))) as zf:
            for member in zf.namelist():
                dest = (tmp / member).resolve()
                if not dest.is_relative_to(tmp.resolve()):
                    raise SubmitterError(f"snapshot {sha} holds a path that escapes its folder: {member}")
            zf.extractall(tmp)
        (tmp / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        return target
