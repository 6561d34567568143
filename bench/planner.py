"""Planner cost: time and memory to plan N input blobs into mini-batches (ledger rows written, the
first window enqueued), page by page as the planning function does it.

    .venv/bin/python bench/planner.py --blobs 10000 100000

Blobs are created with concurrent uploads into a private Azurite (in memory); the planner's steps
run in this process, one plan message at a time, as the queue trigger would run them. Peak memory
is measured with tracemalloc over the planning only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from shared import jobs, planner, snapshots  # noqa: E402
from shared.ledger import Ledger  # noqa: E402
from shared.local.azurite import Azurite  # noqa: E402
from shared.messages import PlanMessage  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.storage import Storage  # noqa: E402


def upload(storage: Storage, container: str, n: int) -> float:
    client = storage.ensure_container(container)
    started = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: client.upload_blob(f"in/{i:08d}.png", b"x", overwrite=True), range(n)))
    return time.monotonic() - started


def plan(storage: Storage, ledger: Ledger, job_id: str) -> tuple[float, int, float]:
    """(seconds, planner steps, peak MB) to plan the job completely."""
    queue = storage.queue(storage.settings.plan_queue)
    tracemalloc.start()
    started = time.monotonic()
    steps = 0
    while msgs := list(queue.receive_messages(max_messages=1)):
        planner.plan_step(storage, ledger, PlanMessage.from_json(msgs[0].content))
        queue.delete_message(msgs[0])
        steps += 1
    elapsed = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert ledger.get_job(job_id).planning_done
    return elapsed, steps, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blobs", type=int, nargs="+", default=[10_000])
    parser.add_argument("--batch", default="10")
    args = parser.parse_args()
    console = Console()
    table = Table("blobs", "mini-batches", "planner steps", "planning s", "blobs/s", "peak MB",
                  "upload s", title=f"planner, mini_batch_size {args.batch}")
    for n in args.blobs:
        with tempfile.TemporaryDirectory() as tmp, Azurite() as azurite:
            settings = Settings(connection_string=azurite.connection_string, scratch_dir=tmp)
            storage = Storage(settings)
            storage.ensure()
            upload_s = upload(storage, "bench", n)
            code = Path(tmp) / "code"
            code.mkdir()
            (code / "score.py").write_text("def init():\n    pass\n\ndef run(b):\n    return b\n")
            ledger = Ledger(storage.ledger)
            job = jobs.submit(storage, ledger, {
                "name": "plan-bench", "entry_script": "score.py",
                "source_directory": snapshots.upload(storage, code), "inputs": ["bench/in/"],
                "mini_batch_size": args.batch})
            seconds, steps, peak = plan(storage, ledger, job.job_id)
            planned = ledger.get_job(job.job_id).planned
            table.add_row(f"{n:,}", f"{planned:,}", str(steps), f"{seconds:.1f}",
                          f"{n / seconds:,.0f}", f"{peak:.1f}", f"{upload_s:.0f}")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
