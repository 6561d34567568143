"""Soak: back-to-back file and table jobs on a local cluster while every fault the failure suite
knows strikes at random. Every job must end either complete (one row per input, in input order,
exact counts) or, for the jobs built to fail, failed with a reason a user can act on; never a hang.

    .venv/bin/python -m bench.soak --minutes 30 --nodes 2 --json soak.json --write-docs

Faults, chosen at random every ~--interval seconds (``--faults`` picks a subset):

* ``scoring process``: a scoring process SIGKILLed (busy or idle);
* ``node``: a host node SIGKILLed and restarted (its messages come back after their lease);
* ``storage restart``: Azurite SIGKILLed and restarted on its disk, losing its last seconds of
  acknowledged writes (it saves its metadata every few seconds);
* ``lost block``: one staged output block of the running job discarded (as storage losing it);
* ``duplicate``: a mini-batch, planning step and finalize message of the running job sent again;
* ``finalizing``: a node SIGKILLed while the job is finalizing (watched continuously);
* ``conflicting output``: a second job naming the running job's output (must be refused).

Every scoring process starts a child and a ``setsid`` grandchild (``bench/soak_code``); none may
outlive the run. Jobs built to fail: a CSV with a broken piece under ``error_threshold: 0`` and a
job whose code snapshot was corrupted after submit. The figures (jobs, items, rows checked, faults
of each kind) are printed and, with ``--write-docs``, written into docs/failures.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlockState
from rich.console import Console
from rich.table import Table

from shared.errors import ParallelRunError
from shared.local.azurite import Azurite, free_port
from shared.local.chaos import Chaos, kill
from shared.local.cluster import LocalCluster
from shared.messages import BatchMessage, FinalizeMessage, PlanMessage
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import snapshots
from shared.service.working.jobcontext import output_target
from shared.settings import Settings
from shared.states import JobState
from shared.storage import Storage

ROOT = Path(__file__).resolve().parents[1]
CODE = ROOT / "bench" / "soak_code"
DOC = ROOT / "docs" / "failures.md"
START, END = "<!-- soak:start -->", "<!-- soak:end -->"
FAULTS = ("scoring process", "node", "storage restart", "lost block", "duplicate", "finalizing",
          "conflicting output")
WEIGHTS = {"scoring process": 4, "node": 2, "storage restart": 1, "lost block": 1, "duplicate": 2}
JOB_DEADLINE_S = 900.0
SAVE_S = 7.0   # Azurite saves its data every ~5 s


@dataclasses.dataclass
class Outcome:
    kind: str
    job_id: str
    state: str
    items: int
    rows_checked: int
    seconds: float
    ok: bool
    note: str = ""


class Storage_:
    """Azurite on fixed ports with its data on disk, so that a crash loses its last writes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports = (free_port(), free_port(), free_port())
        self.server = Azurite(*self.ports, location=folder).start()
        self.restarts = 0

    def crash(self) -> None:
        proc = self.server.process
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self.server.process = None
        time.sleep(0.5)
        self.server = Azurite(*self.ports, location=self.folder).start()
        self.restarts += 1

    def stop(self) -> None:
        self.server.stop()


class Soak:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.random = random.Random(args.seed)
        self.marker = f"parallelrun-soak-child-{os.getpid()}-{args.seed}"
        self.store = Storage_(tmp / "azurite")
        # the sweep every 10 s, for jobs unchanged for 30 s: a crash of storage that loses an
        # acknowledged write can leave work no message drives, and the soak should not wait the
        # default 5 minutes for each
        self.settings = Settings(connection_string=self.store.server.connection_string,
                                 scratch_dir=str(tmp / "scratch"), sweep_schedule="*/10 * * * * *",
                                 sweep_grace_s=30.0)
        self.storage = Storage(self.settings)
        self.storage.ensure()
        self.ledger = Ledger(self.storage.ledger)
        self.faults: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()    # faults drawn that found nothing to strike
        self.outcomes: list[Outcome] = []
        self.current: str | None = None
        self.lock = threading.Lock()
        self.enabled = set(args.faults.split(",")) if args.faults else set(FAULTS)
        self.tmp = tmp
        self.submitted_at = 0.0

    # -- workloads -------------------------------------------------------------------------
    def prepare(self) -> None:
        console.print("soak: uploading the workloads")
        self.file_names = [f"s{i:06d}.txt" for i in range(self.args.items)]
        files = self.storage.ensure_container("soak-files")
        for name in self.file_names:
            files.upload_blob(name, b"x", overwrite=True)
        tables = self.storage.ensure_container("soak-tables")
        self.storage.ensure_container("soak-out")     # every job's output (jobs do not create it)
        per_file = self.args.rows // 4
        for k in range(4):
            frame = pd.DataFrame({"id": range(k * per_file, (k + 1) * per_file),
                                  "x": [float(i % 97) for i in range(per_file)]})
            tables.upload_blob(f"csv/part-{k}.csv", frame.to_csv(index=False).encode(), overwrite=True)
            buf = io.BytesIO()
            frame.to_parquet(buf, index=False, row_group_size=max(1, per_file // 4))
            tables.upload_blob(f"parquet/part-{k}.parquet", buf.getvalue(), overwrite=True)
        bad = pd.DataFrame({"id": range(2000), "x": [1.0] * 2000}).to_csv(index=False)
        lines = bad.splitlines()
        lines[1500] = "1499,1.0,an,extra,field"     # a piece that cannot be parsed
        tables.upload_blob("bad/broken.csv", ("\n".join(lines) + "\n").encode(), overwrite=True)
        self.code = snapshots.upload(self.storage, CODE)
        time.sleep(6)   # let Azurite save what was uploaded before the first crash can strike

    def specs(self) -> list[tuple[str, dict[str, Any], Callable[[dict], tuple[bool, int, str]]]]:
        a = self.args
        base = {"source_directory": self.code, "node_count": a.nodes, "process_count_per_node": 2,
                "run_max_try": 1000, "error_threshold": 0, "allow_reuse": False}
        files = {**base, "name": "soak-files", "entry_script": "soak_files.py",
                 "inputs": ["soak-files/"], "mini_batch_size": "10", "run_invocation_timeout": 30,
                 "arguments": ["--delay", str(a.delay), "--marker", self.marker]}
        table = {**base, "name": "soak-tables", "entry_script": "soak_table.py",
                 "mini_batch_size": "64KB"}
        csv = {**table, "inputs": [{"path": "soak-tables/csv/", "type": "tabular"}]}
        parquet = {**table, "inputs": [{"path": "soak-tables/parquet/", "type": "tabular"}]}
        bad = {**table, "name": "soak-bad-csv", "run_max_try": 2,
               "inputs": [{"path": "soak-tables/bad/", "type": "tabular"}]}
        ids = [str(i) for i in range(a.rows // 4 * 4)]
        return [("files", files, self._expect_rows(self.file_names)),
                ("csv", csv, self._expect_rows(ids)),
                ("parquet", parquet, self._expect_rows(ids)),
                ("files", files, self._expect_rows(self.file_names)),
                ("bad csv", bad, self._expect_failure("broken.csv")),
                ("bad snapshot", {**files, "name": "soak-bad-snapshot"},
                 self._expect_failure("snapshot"))]

    def _expect_rows(self, expected: list[str]) -> Callable[[dict], tuple[bool, int, str]]:
        def check(status: dict) -> tuple[bool, int, str]:
            if status["state"] != "succeeded":
                return False, 0, f"state {status['state']}: {status.get('reason')}"
            out = status["output"]
            rows = self.storage.container(out["container"]).download_blob(out["blob"]).readall()
            lines = rows.decode().splitlines()
            items = status["items"]
            problems = []
            if lines != expected:
                missing = len(set(expected) - set(lines))
                problems.append(f"output has {len(lines)} rows ({len(lines) - len(set(lines))} "
                                f"duplicated, {missing} missing, in order: {lines == sorted(lines)})")
            if (items["succeeded"], items["failed"], status["rows"]) != (len(expected), 0, len(expected)):
                problems.append(f"counts {items} rows {status['rows']} != {len(expected)}")
            return not problems, len(lines), "; ".join(problems)
        return check

    def _expect_failure(self, hint: str) -> Callable[[dict], tuple[bool, int, str]]:
        def check(status: dict) -> tuple[bool, int, str]:
            reason = status.get("reason") or ""
            errors = " ".join(f"{e.get('message', '')} {e.get('file', '')}" for e in status["errors"])
            ok = status["state"] == "failed" and bool(reason) and hint in f"{reason} {errors}"
            return ok, 0, "" if ok else f"state {status['state']}, reason {reason!r}, errors {errors[:300]!r}"
        return check

    # -- faults ----------------------------------------------------------------------------
    def strike(self, cluster: LocalCluster, chaos: Chaos) -> None:
        kinds = [k for k in WEIGHTS if k in self.enabled]
        if not kinds:
            return
        kind = self.random.choices(kinds, [WEIGHTS[k] for k in kinds])[0]
        with self.lock:
            job_id = self.current
        try:
            done = {"scoring process": lambda: self._kill_process(chaos),
                    "node": lambda: self._kill_node(cluster),
                    "storage restart": self._restart_storage,
                    "lost block": lambda: self._lose_block(job_id),
                    "duplicate": lambda: self._duplicate(job_id)}[kind]()
        except (AzureError, OSError) as exc:   # storage down for a moment: the fault did not land
            console.print(f"soak: {kind} not injected: {type(exc).__name__}")
            done = False
        (self.faults if done else self.misses)[kind] += 1

    def _kill_process(self, chaos: Chaos) -> bool:
        from shared.local.chaos import scoring_processes
        nodes = [n.process.pid for n in chaos.cluster.nodes if n.process and n.process.poll() is None]
        victims = scoring_processes(nodes)
        return bool(victims) and kill(self.random.choice(victims))

    def _kill_node(self, cluster: LocalCluster) -> bool:
        index = self.random.randrange(len(cluster.nodes))
        with self.lock:
            cluster.kill(index)
            cluster.restart(index)
        return True

    def _restart_storage(self) -> bool:
        """Not within SAVE_S of a submission: Azurite would lose the job's very record (its index
        and job rows), which durable storage never does; every later write may be lost."""
        if time.monotonic() - self.submitted_at < SAVE_S:
            return False
        self.store.crash()
        return True

    def _lose_block(self, job_id: str | None) -> bool:
        """Discard one staged, not yet committed block of a mini-batch that has settled."""
        if job_id is None:
            return False
        job = self.ledger.get_job(job_id)
        if job.state != JobState.RUNNING or job.spec.output_action == "summary_only":
            return False
        target = output_target(self.settings, job)
        won = [b for b in self.ledger.batches(job_id) if b.state == "succeeded" and b.block_id]
        self.random.shuffle(won)
        for batch in won[:5]:
            blob = (target.part_blob(self.storage, batch.index) if target.parts else
                    target.staging_blob(self.storage, target.shard_of(batch.index)))
            try:
                props = blob.get_blob_properties()
                condition: dict[str, Any] = {"etag": props.etag,
                                             "match_condition": MatchConditions.IfNotModified}
            except ResourceNotFoundError:
                condition = {"match_condition": MatchConditions.IfMissing}
            committed, uncommitted = blob.get_block_list("all")
            if batch.block_id not in {b.id for b in uncommitted}:
                continue
            keep = [BlobBlock(b.id, BlockState.COMMITTED) for b in committed] + [
                BlobBlock(b.id, BlockState.UNCOMMITTED) for b in uncommitted
                if b.id != batch.block_id]
            if not keep:
                continue   # (an empty list would create an empty blob, not lose a block)
            try:
                blob.commit_block_list(keep, **condition)
            except AzureError:
                return False   # the blob moved (the finalizer committed): nothing was lost
            return True
        return False

    def _duplicate(self, job_id: str | None) -> bool:
        if job_id is None:
            return False
        job = self.ledger.get_job(job_id)
        s = self.settings
        if job.planned:
            index = self.random.randrange(job.planned)
            self.storage.queue(s.batch_queue).send_message(
                BatchMessage(job_id, index, ready_at=time.time()).to_json())
        self.storage.queue(s.plan_queue).send_message(PlanMessage(job_id, 0).to_json())
        self.storage.queue(s.finalize_queue).send_message(FinalizeMessage(job_id).to_json())
        return True

    def watch_finalizing(self, cluster: LocalCluster, stop: threading.Event) -> None:
        """Kill a node the moment the running job is seen finalizing (once per job at most)."""
        struck: set[str] = set()
        while not stop.wait(0.02):
            with self.lock:
                job_id = self.current
            if job_id is None or job_id in struck or "finalizing" not in self.enabled:
                continue
            try:
                state = self.ledger.get_job(job_id).state
            except (AzureError, ParallelRunError):
                continue
            if state == JobState.FINALIZING:
                struck.add(job_id)
                index = self.random.randrange(len(cluster.nodes))
                with self.lock:
                    cluster.kill(index)
                    cluster.restart(index)
                self.faults["finalizing"] += 1

    def conflicting_output(self, spec: dict[str, Any]) -> str:
        """Submit a second job naming the first one's output: it must be refused."""
        if "conflicting output" not in self.enabled:
            return ""
        try:
            other = jobs.submit(self.storage, self.ledger, {**spec, "name": "soak-intruder"})
        except ParallelRunError:
            self.faults["conflicting output"] += 1
            return ""
        jobs.cancel(self.storage, self.ledger, other.job_id)
        return f"a second job with the same output was accepted ({other.job_id})"

    # -- the run ---------------------------------------------------------------------------
    def run_job(self, n: int, kind: str, spec: dict[str, Any],
                check: Callable[[dict], tuple[bool, int, str]], cluster: LocalCluster,
                chaos: Chaos) -> Outcome:
        spec = {**spec, "output": f"soak-out/job{n:04d}"}
        if kind == "bad snapshot":   # code of its own, which no node has extracted yet
            spec["source_directory"] = self._fresh_code(n)
        started = time.monotonic()
        job = self._submit(spec)
        if kind == "bad snapshot":   # the code changes behind the job's back: it must fail, not hang
            self.storage.system.upload_blob(
                f"snapshots/{snapshots.sha_of(spec['source_directory'])}.zip", b"not a zip",
                overwrite=True)
        with self.lock:
            self.current = job.job_id
        note = self.conflicting_output(spec) if kind == "files" else ""
        try:
            while True:
                if self._terminal(job.job_id):
                    break
                if time.monotonic() - started > JOB_DEADLINE_S:
                    return Outcome(kind, job.job_id, "HANG", 0, 0, time.monotonic() - started,
                                   False, f"not finished after {JOB_DEADLINE_S:.0f} s")
                time.sleep(self.random.expovariate(1 / self.args.interval))
                self.strike(cluster, chaos)
        finally:
            with self.lock:
                self.current = None
        status = self._status(job.job_id)
        ok, rows, problem = check(status)
        if note:
            ok, problem = False, "; ".join(filter(None, [problem, note]))
        return Outcome(kind, job.job_id, status["state"], status["items"]["succeeded"]
                       + status["items"]["failed"], rows, time.monotonic() - started, ok, problem)

    def _fresh_code(self, n: int) -> str:
        folder = self.tmp / f"code{n}"
        shutil.copytree(CODE, folder, ignore=shutil.ignore_patterns("__pycache__"))
        (folder / "nonce.txt").write_text(f"{n}\n")
        return snapshots.upload(self.storage, folder)

    def _submit(self, spec: dict[str, Any]) -> Any:
        for _ in range(60):   # storage may be restarting
            try:
                job = jobs.submit(self.storage, self.ledger, spec)
                self.submitted_at = time.monotonic()
                return job
            except AzureError:
                time.sleep(1)
        raise RuntimeError("could not submit a job for a minute")

    def _terminal(self, job_id: str) -> bool:
        try:
            return JobState(self.ledger.get_job(job_id).state).terminal
        except AzureError:
            return False

    def _status(self, job_id: str) -> dict[str, Any]:
        for _ in range(60):
            try:
                return jobs.status(self.storage, self.ledger, job_id)
            except AzureError:
                time.sleep(1)
        raise RuntimeError(f"no status for {job_id} for a minute")

    def leftovers(self) -> list[int]:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if self.marker.encode() in cmdline.read_bytes():
                    found.append(int(cmdline.parent.name))
            except OSError:
                continue
        return [pid for pid in found if pid != os.getpid()]

    def main(self) -> int:
        self.prepare()
        config = json.loads((ROOT / "host.json").read_text())
        config["extensions"]["queues"].update({"maxDequeueCount": 1000,
                                               "visibilityTimeout": "00:00:01"})
        host_json = self.tmp / "host.json"
        host_json.write_text(json.dumps(config))
        end = time.monotonic() + self.args.minutes * 60
        stop = threading.Event()
        specs = self.specs()
        with LocalCluster(self.settings, nodes=self.args.nodes, log_dir=self.tmp / "logs",
                          host_json=host_json, env={"PARALLELRUN_LOCAL_LEASE_S": "3"}) as cluster:
            chaos = Chaos(cluster, seed=self.args.seed)
            watcher = threading.Thread(target=self.watch_finalizing, args=(cluster, stop), daemon=True)
            watcher.start()
            n = 0
            while time.monotonic() < end:
                kind, spec, check = specs[n % len(specs)]
                outcome = self.run_job(n, kind, spec, check, cluster, chaos)
                self.outcomes.append(outcome)
                console.print(f"soak: job {n} {kind} {outcome.job_id}: {outcome.state} "
                              f"{outcome.rows_checked} rows checked, {outcome.seconds:.0f} s "
                              f"{'ok' if outcome.ok else 'WRONG: ' + outcome.note}; faults {dict(self.faults)}")
                n += 1
                if not outcome.ok and self.args.stop_on_failure:
                    break
            stop.set()
            watcher.join()
        time.sleep(2)
        left = self.leftovers()
        for pid in left:
            kill(pid)
        return self.report(left)

    def report(self, left: list[int]) -> int:
        wrong = [o for o in self.outcomes if not o.ok]
        table = Table("job", "kind", "state", "items", "rows checked", "seconds", "result")
        for o in self.outcomes:
            table.add_row(o.job_id, o.kind, o.state, str(o.items), str(o.rows_checked),
                          f"{o.seconds:.0f}", "ok" if o.ok else f"WRONG: {o.note}")
        console.print(table)
        figures = {
            "minutes": self.args.minutes, "nodes": self.args.nodes, "seed": self.args.seed,
            "jobs": len(self.outcomes), "jobs_ok": len(self.outcomes) - len(wrong),
            "jobs_by_kind": dict(Counter(o.kind for o in self.outcomes)),
            "items": sum(o.items for o in self.outcomes),
            "rows_checked": sum(o.rows_checked for o in self.outcomes),
            "faults": dict(self.faults), "faults_that_found_nothing": dict(self.misses),
            "leftover_processes": len(left), "wrong": [dataclasses.asdict(o) for o in wrong],
        }
        console.print_json(data=figures)
        if self.args.json:
            Path(self.args.json).write_text(json.dumps(figures, indent=2))
        if self.args.write_docs:
            write_docs(figures, self.args)
        return 0 if not wrong and not left else 1


def write_docs(figures: dict[str, Any], args: argparse.Namespace) -> None:
    faults = ", ".join(f"{k} {v}" for k, v in sorted(figures["faults"].items()))
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(figures["jobs_by_kind"].items()))
    block = "\n".join([
        START,
        f"Last soak: `python -m bench.soak --minutes {args.minutes:g} --nodes {args.nodes} --seed "
        f"{args.seed}` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores).",
        "",
        "| figure | value |", "| --- | --- |",
        f"| jobs | {figures['jobs']} ({kinds}) |",
        f"| jobs ending as required | {figures['jobs_ok']} of {figures['jobs']} |",
        f"| items scored | {figures['items']:,} |",
        f"| output rows checked (value and order) | {figures['rows_checked']:,} |",
        f"| faults injected | {faults} |",
        f"| processes left behind | {figures['leftover_processes']} |",
        END])
    text = DOC.read_text()
    if START in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Soak\n\n" + block + "\n"
    DOC.write_text(text)


console = Console()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--items", type=int, default=2000, help="files per file job")
    parser.add_argument("--rows", type=int, default=200_000, help="rows per table job")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per file mini-batch")
    parser.add_argument("--interval", type=float, default=2.0, help="mean seconds between faults")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    parser.add_argument("--faults", default="", help=f"comma-separated subset of: {', '.join(FAULTS)}")
    parser.add_argument("--json", default="", help="write the figures here")
    parser.add_argument("--write-docs", action="store_true", help="write the figures into docs/failures.md")
    parser.add_argument("--stop-on-failure", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory(prefix="parallelrun-soak-") as tmp:
        soak = Soak(args, Path(tmp))
        try:
            return soak.main()
        finally:
            soak.store.stop()


if __name__ == "__main__":
    sys.exit(main())
