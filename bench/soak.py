"""Soak: the chaos test for longer. Jobs of many items run back to back on a local cluster while
scoring processes and host nodes are SIGKILLed at random; every job must end with exactly one row
per input, in order. Prints a table; exits 1 on the first wrong job.

    .venv/bin/python bench/soak.py --minutes 10 --items 5000 --nodes 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from shared import jobs, snapshots  # noqa: E402
from shared.ledger import Ledger  # noqa: E402
from shared.local.azurite import Azurite  # noqa: E402
from shared.local.cluster import LocalCluster  # noqa: E402
from shared.local.faults import Chaos  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.states import JobState  # noqa: E402
from shared.storage import Storage  # noqa: E402

SCRIPTS = ROOT / "tests" / "integration" / "scripts"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--interval", type=float, default=2.0, help="mean seconds between kills")
    args = parser.parse_args()
    console = Console()
    table = Table("job", "items", "seconds", "kills (process/node)", "failed tries", "rows ok",
                  title=f"soak: {args.items} items per job, {args.nodes} nodes, kills every ~{args.interval}s")
    with tempfile.TemporaryDirectory() as tmp, Azurite() as azurite:
        settings = Settings(connection_string=azurite.connection_string,
                            scratch_dir=str(Path(tmp) / "scratch"))
        storage = Storage(settings)
        storage.ensure()
        names = [f"s{i:06d}.txt" for i in range(args.items)]
        container = storage.ensure_container("soak")
        for name in names:
            container.upload_blob(name, b"x", overwrite=True)
        code = snapshots.upload(storage, SCRIPTS)
        ledger = Ledger(storage.ledger)
        config = json.loads((ROOT / "host.json").read_text())
        config["extensions"]["queues"].update({"maxDequeueCount": 1000, "visibilityTimeout": "00:00:01"})
        host_json = Path(tmp) / "host.json"
        host_json.write_text(json.dumps(config))
        end = time.monotonic() + args.minutes * 60
        with LocalCluster(settings, nodes=args.nodes, log_dir=Path(tmp) / "logs", host_json=host_json,
                          env={"PARALLELRUN_LOCAL_LEASE_S": "3"}) as cluster:
            chaos = Chaos(cluster, seed=int(time.time()))
            while time.monotonic() < end:
                started = time.monotonic()
                before = dict(chaos.kills)
                job = jobs.submit(storage, ledger, {
                    "name": "soak", "entry_script": "misbehave.py", "source_directory": code,
                    "inputs": ["soak/"], "mini_batch_size": "10", "node_count": args.nodes,
                    "process_count_per_node": 2, "run_max_try": 1000, "error_threshold": 0,
                    "arguments": ["--mode", "slow", "--delay", "0.05"]})
                while not JobState(ledger.get_job(job.job_id).state).terminal:
                    time.sleep(chaos.random.expovariate(1 / args.interval))
                    chaos.strike()
                st = jobs.status(storage, ledger, job.job_id)
                out = st["output"]
                rows = storage.container(out["container"]).download_blob(out["blob"]).readall()
                ok = st["state"] == "succeeded" and rows.decode().splitlines() == names
                kills = {k: chaos.kills[k] - before[k] for k in before}
                table.add_row(job.job_id, str(st["items"]["succeeded"]),
                              f"{time.monotonic() - started:.0f}",
                              f"{kills['scoring process']}/{kills['node']}",
                              str(st["mini_batches"]["failed_tries"]), "yes" if ok else "NO")
                if not ok:
                    console.print(table)
                    return 1
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
