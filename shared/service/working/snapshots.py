"""Content-addressed code snapshots: a ``source_directory`` becomes ``snapshot:<sha256>``.

The folder is zipped deterministically (sorted names, fixed timestamps, no caches), uploaded once
to ``<system container>/snapshots/<sha256>.zip`` and extracted once per worker process. A snapshot
is bounded by :class:`~shared.limits.Limits` (zip size, files, expanded size): :func:`scan` checks
a folder before it is zipped, :func:`check_zip` a zip before it is accepted. Every download is
checked against the sha256 in its name (a replaced blob is refused with
:class:`~shared.errors.IntegrityError`); extraction refuses a zip with more members or expanded
bytes than the limits allow, checking the central directory first and the bytes really written
as it goes; extracted files are read-only, and the least recently used extractions are evicted.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.errors import IntegrityError, NotFoundError, SubmitterError
from shared.limits import Limits
from shared.scoring.holds import USED
from shared.service.working import scratch
from shared.storage import Storage

log = logging.getLogger("parallelrun.snapshots")

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


def relative_files(folder: str | os.PathLike[str], limit: int = 10_000) -> list[str]:
    """A folder's files as its snapshot names them (at most ``limit``), for messages."""
    root = Path(folder)
    return [p.relative_to(root).as_posix() for p, _ in zip(_files(root), range(limit), strict=False)]


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
    put(storage, data, sha)
    return PREFIX + sha


def put(storage: Storage, data: bytes, sha: str) -> None:
    """Store ``data`` as snapshot ``sha`` unless an intact copy is there; a blob of that name whose
    content does not match (it was replaced) is overwritten with the real one."""
    blob = f"snapshots/{sha}.zip"
    try:
        storage.system.upload_blob(blob, data, overwrite=False)
    except ResourceExistsError:
        stored = storage.system.download_blob(blob).readall()
        if hashlib.sha256(stored).hexdigest() != sha:
            log.warning("code snapshot %s did not match its content hash: stored again", sha)
            storage.system.upload_blob(blob, data, overwrite=True)


def sha_of(reference: str) -> str:
    if not reference.startswith(PREFIX):
        raise SubmitterError(f"source_directory must be a snapshot reference, got {reference!r}")
    return reference[len(PREFIX):]


MAX_TEXT_BYTES = 1 << 20   # a conda or requirements file read at submission


def names(storage: Storage, reference: str) -> list[str]:
    """The file names inside a snapshot (raises NotFoundError if it does not exist)."""
    with open_zip(storage, reference) as zf:
        return zf.namelist()


def open_zip(storage: Storage, reference: str) -> zipfile.ZipFile:
    """A snapshot, downloaded and verified (raises NotFoundError if it does not exist)."""
    sha = sha_of(reference)
    return zipfile.ZipFile(io.BytesIO(_verified(sha, _download(storage, sha))))


def read_text(zf: zipfile.ZipFile, name: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A small text file of a snapshot (KeyError if it is not there)."""
    info = zf.getinfo(name)
    if info.file_size > max_bytes:
        raise SubmitterError(f"{name} in the code snapshot is {info.file_size:,} bytes, more than "
                             f"the {max_bytes:,} a specification file may have")
    with zf.open(info) as fh:
        return fh.read(max_bytes + 1)[:max_bytes].decode("utf-8", errors="replace")


def _download(storage: Storage, sha: str) -> bytes:
    try:
        return storage.system.download_blob(f"snapshots/{sha}.zip").readall()
    except ResourceNotFoundError:
        raise NotFoundError(f"code snapshot {sha} does not exist: submit with the CLI "
                            "(it uploads source_directory) or upload it first") from None


_lock = threading.Lock()
RECENT_S = 600.0          # an extraction used this recently is never evicted (other processes)


def _verified(sha: str, data: bytes) -> bytes:
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha:
        raise IntegrityError(f"code snapshot {sha} does not match its content hash: expected sha256 "
                             f"{sha}, got {actual} (the snapshot blob was replaced; submit the "
                             "code again)")
    return data


def check_limits(zf: zipfile.ZipFile, sha: str, max_files: int, max_bytes: int) -> None:
    """Refuse a zip whose central directory declares too many members or too many bytes (pure)."""
    infos = zf.infolist()
    if len(infos) > max_files:
        raise SubmitterError(f"code snapshot {sha} has {len(infos)} members, more than the "
                             f"{max_files} allowed (PARALLELRUN_MAX_SNAPSHOT_MEMBERS)")
    declared = sum(i.file_size for i in infos)
    if declared > max_bytes:
        raise SubmitterError(f"code snapshot {sha} expands to {declared} bytes, more than the "
                             f"{max_bytes} allowed (PARALLELRUN_MAX_SNAPSHOT_EXPANDED_BYTES)")


def _extract_bounded(zf: zipfile.ZipFile, sha: str, tmp: Path, max_bytes: int) -> None:
    """Extract member by member, counting the bytes really written (headers can lie)."""
    base = tmp.resolve()
    written = 0
    for info in zf.infolist():
        dest = (tmp / info.filename).resolve()
        if not dest.is_relative_to(base):
            raise SubmitterError(f"snapshot {sha} holds a path that escapes its folder: {info.filename}")
        if info.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(dest, "wb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                written += len(chunk)
                if written > max_bytes:
                    raise SubmitterError(f"code snapshot {sha} expands to more than the {max_bytes} "
                                         "bytes allowed (PARALLELRUN_MAX_SNAPSHOT_EXPANDED_BYTES)")
                out.write(chunk)


def extract(storage: Storage, reference: str, root: str | os.PathLike[str],
            in_use: frozenset[str] = frozenset()) -> Path:
    """Extract the snapshot under ``root/<account>/<sha>/`` once, verified and read-only; returns
    that folder. Then evicts the least recently used extractions beyond the settings' count and
    size, never one in ``in_use`` (shas of live jobs) or used in the last ``RECENT_S``."""
    settings = storage.settings
    sha = sha_of(reference)
    base = Path(root) / scratch.account_key(storage)
    target = base / sha
    with _lock:
        if not (target / ".complete").exists():
            base.mkdir(parents=True, exist_ok=True)
            tmp = base / f".{sha}.{os.getpid()}.tmp"
            scratch.remove_tree(tmp)
            try:
                data = _verified(sha, _download(storage, sha))
                try:
                    with zipfile.ZipFile(io.BytesIO(data)) as zf:
                        check_limits(zf, sha, settings.limits.max_snapshot_members,
                                     settings.limits.max_snapshot_expanded_bytes)
                        _extract_bounded(zf, sha, tmp, settings.limits.max_snapshot_expanded_bytes)
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise SubmitterError(f"code snapshot {sha} is not a valid zip: {exc}") from None
                (tmp / ".complete").touch()
                scratch.make_read_only(tmp)
                scratch.remove_tree(target)
                tmp.rename(target)
            finally:
                scratch.remove_tree(tmp)
        _touch(base, sha)
        evict(base, settings.snapshot_cache_count, settings.snapshot_cache_bytes, in_use | {sha})
        return target


def _touch(base: Path, sha: str) -> None:
    (base / f".{sha}{USED}").touch()


def _remove_unless_held(base: Path, sha: str) -> bool:
    """Remove one extraction, unless a live process holds its mark."""
    mark = base / f".{sha}{USED}"
    try:
        fd = os.open(mark, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        scratch.remove_tree(base / sha)
        mark.unlink(missing_ok=True)
        return True
    finally:
        if fd is not None:
            os.close(fd)


def _size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*"))


def eviction_order(entries: list[tuple[str, float, int]], max_count: int, max_bytes: int,
                   keep: set[str]) -> list[str]:
    """Which extractions to remove: least recently used first, until at most ``max_count`` and
    ``max_bytes`` remain, never one in ``keep`` (pure). ``entries``: (sha, last used, bytes)."""
    count, total = len(entries), sum(e[2] for e in entries)
    doomed = []
    for sha, _, size in sorted(entries, key=lambda e: e[1]):
        if count <= max_count and total <= max_bytes:
            break
        if sha in keep:
            continue
        doomed.append(sha)
        count, total = count - 1, total - size
    return doomed


def evict(base: Path, max_count: int, max_bytes: int, in_use: set[str] | frozenset[str]) -> list[str]:
    """Remove least recently used extractions under ``base`` beyond the limits, never one a live
    scoring process holds (:func:`hold`); returns their shas."""
    now = time.time()
    entries, keep = [], set(in_use)
    for path in base.iterdir():
        if path.name.startswith(".") or not (path / ".complete").exists():
            continue
        mark = base / f".{path.name}{USED}"
        used = mark.stat().st_mtime if mark.exists() else (path / ".complete").stat().st_mtime
        if now - used < RECENT_S:      # maybe in use by another process sharing the folder
            keep.add(path.name)
        entries.append((path.name, used, _size(path)))
    evicted = [sha for sha in eviction_order(entries, max_count, max_bytes, keep)
               if _remove_unless_held(base, sha)]
    for sha in evicted:
        log.info("evicted code snapshot %s from %s", sha, base)
    return evicted
