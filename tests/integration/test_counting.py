"""What the counters say agrees with the output and with what happened to the items."""

from __future__ import annotations

import httpx
from rich.console import Console

from shared.cli.console import status_table
from shared.local.host import LocalHost
from shared.storage import Storage

from .conftest import output_rows, put_files, submit


def read(storage: Storage, status: dict, name: str) -> str:
    out = status["output"]
    prefix = out["prefix"].strip("/")
    return storage.container(out["container"]).download_blob(f"{prefix}/{name}").readall().decode()


def test_the_rows_counter_counts_the_lines_written_when_a_result_holds_newlines(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "multiline", {f"{i}.txt": b"x" for i in range(5)})
    job_id = submit(api, {"name": "multiline", "entry_script": "multiline.py",
                          "source_directory": code, "inputs": ["multiline/"], "mini_batch_size": "2"})
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded" and status["reason"] == ""
    assert status["items"]["succeeded"] == 5          # min(len(result), len(mini_batch)) per batch
    lines = output_rows(storage, status)
    assert lines[:2] == ["0.txt", "  continued"]
    assert status["rows"] == len(lines) == 10
    assert "output: 10 rows" in read(storage, status, "logs/job_result.txt")


def test_a_job_whose_every_item_failed_succeeds_and_says_so_loudly(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "allfail", {f"{i}bad.txt": b"x" for i in range(4)})
    job_id = submit(api, {"name": "allfail", "entry_script": "misbehave.py", "source_directory": code,
                          "inputs": ["allfail/"], "mini_batch_size": "1",
                          "arguments": ["--mode", "raise"], "run_max_try": 1})
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded"                     # error_threshold -1, as in PRS
    assert status["reason"].startswith("succeeded with 0 of 4 items: 4 failed (error_threshold -1")
    result = read(storage, status, "logs/job_result.txt")
    assert "WARNING: succeeded with 0 of 4 items" in result
    screen = Console(record=True, width=300)
    screen.print(status_table(status))
    assert "succeeded — succeeded with 0 of 4 items" in screen.export_text()
