"""Peak memory of a worker scoring a large CSV: the host process and its scoring processes must stay
bounded by the mini-batch size, not the file size.

Writes a CSV of --gb gigabytes (an id and numeric and text columns), uploads it to a private
Azurite (on disk), runs one local host node with --processes scoring processes over it with
mini_batch_size --batch, and prints the peak RSS (VmHWM) of the host process and of each scoring
process, with the job's outcome. Numbers go to docs/performance.md.

    .venv/bin/python -m bench.tabular_memory --gb 2.1 --batch 10MB
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from shared.local.azurite import Azurite
from shared.local.chaos import scoring_processes
from shared.local.cluster import LocalCluster
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import snapshots
from shared.settings import Settings
from shared.states import JobState
from shared.storage import Storage

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = '''
def init():
    pass

def run(mini_batch):
    total = float(mini_batch["x"].sum())   # touch the data
    return [total] * len(mini_batch)
'''


def write_csv(path: Path, gigabytes: float) -> int:
    """A CSV of about ``gigabytes`` GB written in chunks; returns its row count."""
    rows, chunk = 0, 200_000
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        fh.write("id,x,y,label,text\n")
        while fh.tell() < gigabytes * 1e9:
            ids = np.arange(rows, rows + chunk)
            pd.DataFrame({"id": ids, "x": rng.normal(size=chunk).round(6),
                          "y": rng.normal(size=chunk).round(6), "label": ids % 7,
                          "text": [f"row number {i} of the benchmark" for i in ids]}
                         ).to_csv(fh, header=False, index=False)
            rows += chunk
    return rows


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.1)
    parser.add_argument("--batch", default="10MB")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(dir=ROOT / ".parallelrun" if (ROOT / ".parallelrun").exists()
                                     else None) as tmp:
        tmp_path = Path(tmp)
        started = time.monotonic()
        rows = write_csv(tmp_path / "big.csv", args.gb)
        size = (tmp_path / "big.csv").stat().st_size
        console.print(f"wrote {size / 1e9:.2f} GB, {rows:,} rows in {time.monotonic() - started:.0f} s")
        with Azurite(location=tmp_path / "azurite") as azurite:
            settings = Settings(connection_string=azurite.connection_string,
                                scratch_dir=str(tmp_path / "scratch"))
            storage = Storage(settings)
            storage.ensure()
            started = time.monotonic()
            with open(tmp_path / "big.csv", "rb") as fh:
                storage.ensure_container("bench").upload_blob("big/big.csv", fh, overwrite=True,
                                                              max_concurrency=4)
            (tmp_path / "big.csv").unlink()
            console.print(f"uploaded in {time.monotonic() - started:.0f} s")
            code = tmp_path / "code"
            code.mkdir()
            (code / "score.py").write_text(SCRIPT)
            ledger = Ledger(storage.ledger)
            with LocalCluster(settings, nodes=1, log_dir=tmp_path / "logs") as cluster:
                started = time.monotonic()
                job = jobs.submit(storage, ledger, {
                    "name": "memory", "entry_script": "score.py",
                    "source_directory": snapshots.upload(storage, code),
                    "inputs": [{"path": "bench/big/", "type": "tabular"}],
                    "mini_batch_size": args.batch, "process_count_per_node": args.processes,
                    "output_action": "summary_only", "error_threshold": 0})
                while not JobState(ledger.get_job(job.job_id).state).terminal:
                    time.sleep(1)
                elapsed = time.monotonic() - started
                host_pid = cluster.nodes[0].process.pid
                scorers = scoring_processes([host_pid])
                peaks = {"host process": peak_rss_mb(host_pid)}
                peaks.update({f"scoring process {pid}": peak_rss_mb(pid) for pid in scorers})
            status = jobs.status(storage, ledger, job.job_id)
    table = Table("process", "peak RSS (MB)",
                  title=f"{size / 1e9:.2f} GB CSV, mini_batch_size {args.batch}, "
                        f"{status['mini_batches']['total']} mini-batches, {args.processes} processes")
    for name, mb in peaks.items():
        table.add_row(name, f"{mb:,.0f}")
    console.print(table)
    console.print(f"job {status['state']}: {status['items']['succeeded']:,} of {rows:,} rows in "
                  f"{elapsed:.0f} s ({rows / elapsed:,.0f} rows/s)")
    ok = status["state"] == "succeeded" and status["items"]["succeeded"] == rows
    return 0 if ok and max(peaks.values()) < 1024 else 1


if __name__ == "__main__":
    sys.exit(main())
