"""allow_reuse as PRS has it (its default): a job whose code, models, environment, side inputs,
parameters and inputs are unchanged takes the earlier job's output at once; any change makes it
run, and it says why."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shared.cli import main as cli
from shared.local.host import LocalHost
from shared.messages import PlanMessage
from shared.service.jobs import lifecycle as jobs
from shared.service.jobs import reuse
from shared.service.ledger.rows import JobRow
from shared.service.ledger.store import Ledger
from shared.service.planning import planner
from shared.settings import Settings
from shared.storage import Storage

from .conftest import put_files, register_text_model

CONTAINER = "reusein"


@pytest.fixture
def model(storage: Storage, tmp_path: Path) -> int:
    return register_text_model(storage, tmp_path, "echo", "m1")


@pytest.fixture
def folder(settings: Settings) -> str:
    """This test's input folder (the module's tests share the container, and change its blobs)."""
    return settings.plan_queue.removesuffix("-plan")


def spec(code: str, folder: str, **extra: Any) -> dict[str, Any]:
    return {"name": "reuse-job", "entry_script": "prs_style.py", "source_directory": code,
            "inputs": [f"{CONTAINER}/{folder}/"], "models": ["echo"], "mini_batch_size": "2",
            "arguments": ["--suffix", "_a"], "process_count_per_node": 1, **extra}


def run(storage: Storage, host: LocalHost, data: dict[str, Any]) -> tuple[JobRow, dict[str, Any]]:
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, data)
    host.drain(timeout_s=180)
    return ledger.get_job(job.job_id), jobs.status(storage, ledger, job.job_id)


def rows(storage: Storage, st: dict[str, Any]) -> list[str]:
    out = st["output"]
    return storage.container(out["container"]).download_blob(out["blob"]).readall().decode().splitlines()


def inputs(storage: Storage, folder: str, n: int = 5) -> None:
    put_files(storage, CONTAINER, {f"{folder}/{i:02d}.txt": str(i).encode() for i in range(n)})


def test_the_same_job_twice_is_reused_with_the_same_rows_and_no_mini_batch_run(
        storage: Storage, host: LocalHost, code: str, folder: str, model: int) -> None:
    inputs(storage, folder)
    first, st1 = run(storage, host, spec(code, folder))
    assert st1["state"] == "succeeded" and st1["reuse"]["reused_from"] is None
    assert st1["reuse"]["note"].startswith("not reused: no earlier succeeded job")
    second, st2 = run(storage, host, spec(code, folder))
    assert st2["state"] == "succeeded", st2
    assert st2["reuse"]["reused_from"] == first.job_id
    assert st2["reason"] == (f"reused job {first.job_id}: same code, models, environment, inputs "
                             "and parameters")
    assert st2["output"]["blob"] != st1["output"]["blob"]          # its own output location...
    assert rows(storage, st2) == rows(storage, st1) and len(rows(storage, st1)) == 5   # ...same rows
    assert st2["items"] == st1["items"] and st2["mini_batches"]["total"] == st1["mini_batches"]["total"]
    ledger = Ledger(storage.ledger)
    assert list(ledger.batches(second.job_id)) == [] and ledger.totals(second.job_id).tries == 0
    result = storage.container(second.output_container).download_blob(
        f"{second.output_prefix}/logs/job_result.txt").readall().decode()
    assert f"reused job {first.job_id}" in result


def test_a_third_identical_job_is_reused_too_from_the_job_that_ran(
        storage: Storage, host: LocalHost, code: str, folder: str, model: int) -> None:
    """A reused job never listed its inputs, so it cannot be the one compared against: the job
    that ran stays the candidate, however many identical jobs follow."""
    inputs(storage, folder)
    first, st1 = run(storage, host, spec(code, folder))
    for _ in range(2):
        reused, st = run(storage, host, spec(code, folder))
        assert st["reuse"]["reused_from"] == first.job_id, st["reuse"]
        assert rows(storage, st) == rows(storage, st1)
        reuse.record_success(storage, reused)    # as a take-over delivered twice records it again


@pytest.mark.parametrize(("change", "says"), [
    ("add a blob", "1 input blob changed since job {first} (1 added; e.g. reusein/{folder}/99.txt)"),
    ("rewrite a blob", "1 input blob changed since job {first} (1 rewritten; e.g. reusein/{folder}/02.txt)"),
    ("delete a blob", "1 input blob changed since job {first} (1 removed)"),
    ("register the model again", "model echo: version 1 → 2"),
    ("change an argument", "arguments differ (--suffix _a → --suffix _b)"),
    ("allow_reuse false", "not reused: allow_reuse is false"),
    ("change the mini-batch size", "mini_batch_size differs (2 → 3)"),
    ("change the environment", "environment differs ([] → six==1.17.0)"),
])
def test_a_change_makes_the_job_run_and_it_says_why(
        storage: Storage, host: LocalHost, code: str, folder: str, model: int, tmp_path: Path,
        change: str, says: str) -> None:
    inputs(storage, folder)
    first, _ = run(storage, host, spec(code, folder))
    data = spec(code, folder)
    container = storage.container(CONTAINER)
    if change == "add a blob":
        container.upload_blob(f"{folder}/99.txt", b"99", overwrite=True)
    elif change == "rewrite a blob":
        container.upload_blob(f"{folder}/02.txt", b"two", overwrite=True)
    elif change == "delete a blob":
        container.delete_blob(f"{folder}/04.txt")
    elif change == "register the model again":
        register_text_model(storage, tmp_path, "echo", "m1")       # same text, a new version
    elif change == "change an argument":
        data["arguments"] = ["--suffix", "_b"]
    elif change == "allow_reuse false":
        data["allow_reuse"] = False
    elif change == "change the mini-batch size":
        data["mini_batch_size"] = "3"
    elif change == "change the environment":
        data["environment"] = ["six==1.17.0"]
    second, st = run(storage, host, data)
    assert st["state"] == "succeeded" and st["reuse"]["reused_from"] is None, st
    assert says.format(first=first.job_id, folder=folder) in st["reuse"]["note"], st["reuse"]["note"]
    assert st["mini_batches"]["succeeded"] >= 1                      # it ran


def test_changing_only_node_count_or_processes_or_the_name_is_reused(
        storage: Storage, host: LocalHost, code: str, folder: str, model: int) -> None:
    inputs(storage, folder)
    first, _ = run(storage, host, spec(code, folder))
    _, st = run(storage, host, spec(code, folder, node_count=2, process_count_per_node=2, name="other-name",
                                   logging_level="DEBUG", run_invocation_timeout=120))
    assert st["reuse"]["reused_from"] == first.job_id, st["reuse"]


def test_two_identical_jobs_submitted_together_both_run_each_with_its_whole_output(
        storage: Storage, idle_host: LocalHost, code: str, folder: str, model: int) -> None:
    """As two Azure ML pipeline runs submitted at once: a candidate is a job that has succeeded."""
    inputs(storage, folder)
    ledger = Ledger(storage.ledger)
    a = jobs.submit(storage, ledger, spec(code, folder))
    b = jobs.submit(storage, ledger, spec(code, folder))
    with idle_host:
        idle_host.drain(timeout_s=180)
    sa, sb = (jobs.status(storage, ledger, j.job_id) for j in (a, b))
    assert sa["state"] == sb["state"] == "succeeded"
    assert rows(storage, sa) == rows(storage, sb) and len(rows(storage, sa)) == 5


def test_resubmit_keeps_allow_reuse_and_no_reuse_runs_afresh(
        storage: Storage, host: LocalHost, code: str, folder: str, model: int) -> None:
    inputs(storage, folder)
    first, _ = run(storage, host, spec(code, folder))
    ledger = Ledger(storage.ledger)
    again = jobs.resubmit(storage, ledger, first.job_id, {})
    host.drain(timeout_s=180)
    assert ledger.get_job(again.job_id).reused_from == first.job_id
    fresh = CliRunner().invoke(cli.app, ["resubmit", first.job_id, "--no-reuse", "--json"],
                               env=storage.settings.to_env())
    assert fresh.exit_code == 0, fresh.output
    host.drain(timeout_s=180)
    latest = jobs.list_jobs(storage, 1)[0]["job_id"]
    assert latest not in (first.job_id, again.job_id)
    job = ledger.get_job(latest)
    assert job.state == "succeeded" and not job.reused_from and "allow_reuse is false" in job.reuse_note


def test_a_planner_that_dies_while_taking_over_is_followed_by_one_that_finishes(
        storage: Storage, code: str, folder: str, model: int, idle_host: LocalHost,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy is made, then the process dies before the row says succeeded: the message comes
    again, and the next planner decides again and finishes (the copy overwrites itself)."""
    inputs(storage, folder)
    ledger = Ledger(storage.ledger)
    first = jobs.submit(storage, ledger, spec(code, folder))
    with idle_host:
        idle_host.drain(timeout_s=180)
    second = jobs.submit(storage, ledger, spec(code, folder))
    real = ledger.update_job
    died = []

    def dies_once(job: JobRow, **changes: Any) -> JobRow:
        if changes.get("reused_from") and not died:
            died.append(job.job_id)
            raise ConnectionError("the process died")
        return real(job, **changes)

    monkeypatch.setattr(ledger, "update_job", dies_once)
    msg = PlanMessage(second.job_id, 0)
    with pytest.raises(ConnectionError):
        planner.plan_step(storage, ledger, msg)
    assert ledger.get_job(second.job_id).state == "queued"
    planner.plan_step(storage, ledger, msg)     # delivered again
    planner.plan_step(storage, ledger, msg)     # and once more: nothing changes
    done = ledger.get_job(second.job_id)
    assert died and done.state == "succeeded" and done.reused_from == first.job_id
    st = jobs.status(storage, ledger, second.job_id)
    assert rows(storage, st) == rows(storage, jobs.status(storage, ledger, first.job_id))


def test_a_lost_listing_row_never_makes_a_job_reuse_what_it_cannot_compare(
        storage: Storage, host: LocalHost, code: str, folder: str, model: int) -> None:
    """Storage loses the earlier job's record of its inputs (an acknowledged write gone): the new
    job cannot show its inputs are unchanged, so it runs, saying so."""
    inputs(storage, folder)
    first, _ = run(storage, host, spec(code, folder))
    ledger = Ledger(storage.ledger)
    listing = list(ledger.table.query_entities("PartitionKey eq @pk and RowKey ge 'l-' and RowKey lt 'l.'",
                                               parameters={"pk": first.job_id}))
    assert listing and sum(int(e["count"]) for e in listing) == 5
    for entity in listing:
        ledger.table.delete_entity(entity["PartitionKey"], entity["RowKey"])
    _, st = run(storage, host, spec(code, folder))
    assert st["reuse"]["reused_from"] is None
    assert "5 input blobs changed since job" in st["reuse"]["note"] and "5 added" in st["reuse"]["note"]


def test_submit_no_reuse_runs_a_job_that_would_be_reused(
        storage: Storage, host: LocalHost, code: str, folder: str, model: int, tmp_path: Path) -> None:
    inputs(storage, folder)
    first, _ = run(storage, host, spec(code, folder))
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec(code, folder)))
    fresh = CliRunner().invoke(cli.app, ["submit", str(path), "--no-reuse", "--json"],
                               env=storage.settings.to_env())
    assert fresh.exit_code == 0, fresh.output
    host.drain(timeout_s=180)
    latest = jobs.list_jobs(storage, 1)[0]["job_id"]
    assert latest != first.job_id
    job, st = Ledger(storage.ledger).get_job(latest), jobs.status(storage, Ledger(storage.ledger), latest)
    assert job.state == "succeeded" and not job.reused_from and "allow_reuse is false" in job.reuse_note
    assert st["mini_batches"]["succeeded"] == 3 and len(rows(storage, st)) == 5


def test_a_summary_only_job_reused_into_another_folder_gets_the_files_the_script_wrote(
        storage: Storage, host: LocalHost, code: str, folder: str) -> None:
    inputs(storage, folder)
    storage.ensure_container("reuseout")      # an output container must exist at submit
    base = {"name": "reuse-summary", "entry_script": "summary_only.py", "source_directory": code,
            "inputs": [f"{CONTAINER}/{folder}/"], "mini_batch_size": "2",
            "output_action": "summary_only"}
    first, _ = run(storage, host, {**base, "output": {"container": "reuseout", "path": f"{folder}/a"}})
    second, st = run(storage, host, {**base, "output": {"container": "reuseout", "path": f"{folder}/b"}})
    assert second.reused_from == first.job_id and st["state"] == "succeeded"
    out = storage.container("reuseout")
    files = {prefix: {b.name.removeprefix(f"{folder}/{prefix}/"): out.download_blob(b.name).readall()
                      for b in out.list_blobs(name_starts_with=f"{folder}/{prefix}/batch_")}
             for prefix in ("a", "b")}
    assert files["a"] == files["b"] and sorted(files["b"]) == [
        "batch_0000.txt", "batch_0001.txt", "batch_0002.txt"]
    result = out.download_blob(f"{folder}/b/logs/job_result.txt").readall().decode()
    assert first.job_id in result


def test_a_parquet_job_is_reused_with_the_same_table(
        storage: Storage, host: LocalHost, code: str, folder: str, model: int) -> None:
    inputs(storage, folder)
    data = spec(code, folder, entry_script="frames.py", output_format="parquet")
    first, sa = run(storage, host, data)
    second, sb = run(storage, host, data)
    assert sa["state"] == "succeeded" and second.reused_from == first.job_id
    assert sa["output"]["blob"] != sb["output"]["blob"] or sa["output"]["container"] != sb["output"]["container"]


    def table(st: dict[str, Any]) -> Any:
        """The output dataset folder's parts, in order, as one table (_SUCCESS written last)."""
        out = storage.container(st["output"]["container"])
        names = sorted(out.list_blob_names(name_starts_with=st["output"]["blob"] + "/"))
        assert names[0].endswith("/_SUCCESS") and len(names) == 4, names
        return pa.concat_tables(pq.read_table(io.BytesIO(out.download_blob(n).readall()))
                                for n in names[1:])

    assert table(sa).equals(table(sb)) and table(sb).num_rows == 5
