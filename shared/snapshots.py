"""Content-addressed code snapshots: a ``source_directory`` becomes ``snapshot:<sha256>``.

The folder is zipped deterministically (sorted names, fixed timestamps, no caches), uploaded once
to ``<system container>/snapshots/<sha256>.zip`` and extracted once per worker process.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
import zipfile
from pathlib import Path

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from .errors import NotFoundError, SubmitterError
from .storage import Storage

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
