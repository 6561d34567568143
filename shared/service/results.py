"""Reading a finished job's results for the API and the CLI: the first rows, or the whole blob."""

from __future__ import annotations

import os
from pathlib import Path

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
