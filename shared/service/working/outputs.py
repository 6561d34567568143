"""Files a script writes to ``EntryScript().output_dir`` / ``AZUREML_BI_OUTPUT_PATH`` (PRS's
``summary_only`` pattern) reach the job's output folder: uploaded when new or changed."""

from __future__ import annotations

from pathlib import Path

from shared.storage import Storage


def upload_folder_changes(storage: Storage, folder: Path, container: str, prefix: str,
                          seen: dict[str, tuple[float, int]]) -> int:
    """Upload files under ``folder`` that are new or changed since ``seen`` (updated in place).

    This is how files a script writes to ``EntryScript().output_dir`` / ``AZUREML_BI_OUTPUT_PATH``
    (PRS's ``summary_only`` pattern) reach the job's output folder."""
    uploaded = 0
    client = storage.container(container)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        rel = path.relative_to(folder).as_posix()
        if seen.get(rel) == (stat.st_mtime, stat.st_size):
            continue
        with open(path, "rb") as fh:
            client.upload_blob(f"{prefix}{rel}" if prefix else rel, fh, overwrite=True)
        seen[rel] = (stat.st_mtime, stat.st_size)
        uploaded += 1
    return uploaded
