"""Reading a finished job's results for the API and the CLI: the first rows, the whole blob, or
the files of a folder (a ``summary_only`` script's, or the job's logs)."""

from __future__ import annotations

import os
from pathlib import Path

from shared.errors import SubmitterError
from shared.storage import Storage


def read_head(storage: Storage, container: str, blob_name: str, n: int) -> list[str]:
    """The first ``n`` rows of an output blob (reads only as much as needed)."""
    blob = storage.container(container).get_blob_client(blob_name)
    rows: list[str] = []
    buf = b""
    for chunk in blob.download_blob().chunks():
        buf += chunk
        *lines, buf = buf.split(b"\n")
        rows.extend(line.decode("utf-8") for line in lines)
        if len(rows) >= n:
            return rows[:n]
    if buf:
        rows.append(buf.decode("utf-8"))
    return rows[:n]


def download_to(storage: Storage, container: str, blob_name: str, dest: str | os.PathLike[str]) -> Path:
    path = Path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        storage.container(container).get_blob_client(blob_name).download_blob().readinto(fh)
    return path


def folder_files(storage: Storage, container: str, folder: str, exclude: str = "",
                 limit: int | None = None) -> tuple[list[tuple[str, int]], bool]:
    """(path relative to ``folder``, size) of the blobs under ``folder`` except those under
    ``exclude`` (relative too), at most ``limit``; and whether more were left out."""
    folder = folder.strip("/") + "/" if folder.strip("/") else ""
    found: list[tuple[str, int]] = []
    for blob in storage.container(container).list_blobs(name_starts_with=folder or None):
        rel = blob.name[len(folder):]
        if exclude and rel.startswith(exclude):
            continue
        if limit is not None and len(found) >= limit:
            return found, True
        found.append((rel, blob.size or 0))
    return found, False


def download_folder(storage: Storage, container: str, folder: str, dest: str | os.PathLike[str],
                    exclude: str = "") -> list[Path]:
    """Download the blobs under ``folder`` (but not under ``exclude``) into ``dest``, keeping
    their relative paths; a name that would land outside ``dest`` is refused."""
    root = Path(dest).resolve()
    saved = []
    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    for rel, _ in folder_files(storage, container, folder, exclude)[0]:
        target = (root / rel).resolve()
        if not rel or rel.startswith("/") or "\\" in rel or not target.is_relative_to(root) \
                or target == root:
            raise SubmitterError(f"blob {container}/{prefix}{rel[:200]} cannot be saved under {root}")
        saved.append(download_to(storage, container, prefix + rel, target))
    return saved
