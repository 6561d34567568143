"""What `parallelrun results` shows and saves of a finished job: a summary_only job's files, the
output downloaded, with its logs folder if asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.cli.console import console, files_table
from shared.service.results import download_folder, download_to, folder_files
from shared.storage import Storage, blob_path

SCRIPT_FILES_SHOWN = 50    # files `results` lists of a summary_only job


def list_script_files(storage: Storage, job_id: str, out: Any, head: int) -> None:
    files, more = folder_files(storage, out.container, out.prefix, exclude="logs/",
                               limit=max(head, SCRIPT_FILES_SHOWN))
    folder = f"{out.container}/{blob_path(out.prefix, '')}"
    if not files:
        console.print(f"job {job_id} (summary_only) has no files from its script in {folder} yet",
                      soft_wrap=True, markup=False, highlight=False)
        return
    console.print(f"files the script wrote to {folder}" + (" (the first ones)" if more else ""),
                  soft_wrap=True, markup=False, highlight=False)
    console.print(files_table(files, ""))
    console.print(f"parallelrun results {job_id} --download DIR", soft_wrap=True, markup=False,
                  highlight=False)


def download_results(storage: Storage, job_id: str, out: Any, dest: Path, with_logs: bool) -> None:
    if out.blob is None:
        saved = download_folder(storage, out.container, out.prefix, dest, exclude="logs/")
        console.print(f"saved {len(saved)} file(s) the script wrote to {dest.resolve()}",
                      soft_wrap=True, markup=False, highlight=False)
    else:
        path = download_to(storage, out.container, out.blob, dest / Path(out.blob).name)
        console.print(f"saved {path.resolve()}", soft_wrap=True, markup=False, highlight=False)
    if with_logs:
        logs = download_folder(storage, out.container, blob_path(out.prefix, "logs"), dest / "logs")
        console.print(f"saved {len(logs)} log file(s) to {(dest / 'logs').resolve()}",
                      soft_wrap=True, markup=False, highlight=False)
