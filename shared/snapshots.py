"""Content-addressed code snapshots: a ``source_directory`` becomes ``snapshot:<sha256>``.

The folder is zipped deterministically (sorted names, fixed timestamps, no caches), uploaded once
to ``<system container>/snapshots/<sha256>.zip`` and extracted once per worker process. Every
download is checked against the sha256 in its name (a replaced blob is refused with
:class:`~shared.errors.IntegrityError`); extraction refuses a zip with more members or expanded
bytes than the settings allow, checking the central directory first and the bytes really written
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
from pathlib import Path

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from . import scratch
from .errors import IntegrityError, NotFoundError, SubmitterError
from .storage import Storage

log = logging.getLogger("parallelrun.snapshots")

PREFIX = "snapshot:"
SKIP_DIRS = {"__pycache__", ".git", ".venv", "node_modules", ".pytest_cache", ".mypy_cache"}
MAX_BYTES = 200 * 1024 * 1024


def build_zip(folder: str | os.PathLike[str]) -> tuple[bytes, str]:
    """A deterministic zip of ``folder`` and its sha256."""
    root = Path(folder)
    if not root.is_dir():
        raise SubmitterError(f"source_directory {folder} is not a folder")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = Path(dirpath) / name
                info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
                if buf.tell() > MAX_BYTES:
                    raise SubmitterError(f"source_directory {folder} is larger than {MAX_BYTES >> 20} MB")
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def upload(storage: Storage, folder: str | os.PathLike[str]) -> str:
    """Upload ``folder`` as a snapshot (skipped if it exists); returns ``snapshot:<sha256>``."""
    data, sha = build_zip(folder)
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


def names(storage: Storage, reference: str) -> list[str]:
    """The file names inside a snapshot (raises NotFoundError if it does not exist)."""
    sha = sha_of(reference)
    with zipfile.ZipFile(io.BytesIO(_verified(sha, _download(storage, sha)))) as zf:
        return zf.namelist()


def _download(storage: Storage, sha: str) -> bytes:
    try:
        return storage.system.download_blob(f"snapshots/{sha}.zip").readall()
    except ResourceNotFoundError:
        raise NotFoundError(f"code snapshot {sha} does not exist: submit with the CLI "
                            "(it uploads source_directory) or upload it first") from None


_lock = threading.Lock()
USED = ".used"            # touched at every use; its mtime orders eviction
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
                             f"{max_files} allowed (PARALLELRUN_SNAPSHOT_MAX_FILES)")
    declared = sum(i.file_size for i in infos)
    if declared > max_bytes:
        raise SubmitterError(f"code snapshot {sha} expands to {declared} bytes, more than the "
                             f"{max_bytes} allowed (PARALLELRUN_SNAPSHOT_MAX_BYTES)")


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
                                         "bytes allowed (PARALLELRUN_SNAPSHOT_MAX_BYTES)")
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
                        check_limits(zf, sha, settings.snapshot_max_files, settings.snapshot_max_bytes)
                        _extract_bounded(zf, sha, tmp, settings.snapshot_max_bytes)
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


def _mark(folder: Path) -> Path:
    return folder.parent / f".{folder.name}{USED}"


def hold(folder: Path) -> int | None:
    """A scoring process's shared lock on the extraction it runs from (kept open for its life):
    :func:`evict` skips an extraction whose mark someone holds. None if ``folder`` is no
    extraction."""
    try:
        fd = os.open(_mark(folder), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


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
