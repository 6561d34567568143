"""A CLI that never leaves its user guessing: no storage is said in seconds, user errors are one
line, `submit --wait` names the job before its progress and Ctrl-C says how to go on, `cancel`
returns once the stop is recorded and the finished job's state, output and job_result.txt agree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.cli import main as cli
from shared.local.azurite import free_port
from shared.local.host import LocalHost
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.settings import Settings, azurite_connection_string
from shared.storage import Storage

from .conftest import put_files
from .test_cli import Cli, entry_point, env, json_out, run, submit, write_job  # noqa: F401 - fixtures
from .test_cli_logs import upload

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [["jobs"], ["status", "job-20250101-000000-abcdef"],
                                     ["submit", "job.yaml"], ["logs", "job-20250101-000000-abcdef"]],
                         ids=lambda c: c[0])
def test_without_storage_every_command_says_so_within_seconds(
        env: None, tmp_path: Path, command: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()    # nothing listens there
    monkeypatch.setenv("AzureWebJobsStorage", azurite_connection_string(port, port, port))
    write_job(tmp_path)
    monkeypatch.chdir(tmp_path / "job")
    started = time.monotonic()
    code, out, err = entry_point(monkeypatch, capsys, *command)
    assert time.monotonic() - started < 10
    assert code == 1, (out, err)
    assert (f"no storage at 127.0.0.1:{port}: start it with `parallelrun up`, or set "
            "AzureWebJobsStorage") in " ".join(err.split())
    assert "Traceback" not in out + err


@pytest.mark.parametrize("setting,field", [("mini_batch_size=[1", "mini_batch_size"),
                                           ("arguments={unclosed", "arguments")])
def test_a_bad_set_is_a_one_line_error_naming_the_field(
        env: None, tmp_path: Path, storage: Storage, setting: str, field: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = entry_point(monkeypatch, capsys, "submit", str(write_job(tmp_path)),
                                 "--set", setting)
    assert code == 2, (out, err)
    assert f"  {field}: --set '{setting}'" in err
    assert "Traceback" not in out + err


def test_a_set_without_a_value_is_a_usage_error(
        env: None, tmp_path: Path, storage: Storage, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = entry_point(monkeypatch, capsys, "submit", str(write_job(tmp_path)),
                                 "--set", "mini_batch_size")
    assert code == 2 and "--set takes FIELD=VALUE" in err and "Traceback" not in out + err


def slow_job(run: Cli, tmp_path: Path, files: int = 30) -> Path:
    upload(run, tmp_path, "cliguide/in", {f"s{i:02d}.txt": "x" for i in range(files)})
    return write_job(tmp_path, entry_script="slow.py", inputs=["cliguide/in/"], models=[],
                     arguments=[], process_count_per_node=1, mini_batch_size=1)


@pytest.mark.stops_jobs
def test_ctrl_c_during_submit_wait_leaves_the_job_running_and_says_how_to_go_on(
        run: Cli, host: LocalHost, settings: Settings, tmp_path: Path) -> None:
    spec = slow_job(run, tmp_path)
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", "from shared.cli.main import main; main()",
                             "submit", str(spec), "--wait"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            # as from a terminal: a test run started in the background (`cmd &` in
                            # a script) ignores SIGINT, and its children would inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stderr is not None
        first = ""
        while "submitted" not in first:     # the job id comes first, before any progress
            first = proc.stderr.readline()
            assert first or proc.poll() is None, "the CLI ended before naming the job"
        job_id = first.split("submitted ", 1)[1].split(":", 1)[0]
        assert f"parallelrun status {job_id} --watch" in first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    said = " ".join(err.split())
    assert f"job {job_id} keeps running" in said
    assert f"`parallelrun status {job_id} --watch`" in said and f"`parallelrun cancel {job_id}`" in said
    assert "Traceback" not in out + err
    assert json_out(run("status", job_id, "--json"))["state"] in ("queued", "running")
    run("cancel", job_id)
    host.drain()


@pytest.mark.stops_jobs
def test_cancel_returns_once_recorded_and_state_output_and_job_result_agree(
        run: Cli, host: LocalHost, tmp_path: Path, storage: Storage) -> None:
    job_id = submit(run, slow_job(run, tmp_path))
    said = run("cancel", job_id).stdout
    assert job_id in said and "cancelled by user" in said
    # it did not wait for the finalizer, which waits for the workers to learn of the stop
    assert json_out(run("status", job_id, "--json"))["state"] in ("queued", "running", "finalizing")
    host.drain()
    st = json_out(run("status", job_id, "--json"))
    assert st["state"] == "cancelled" and st["output"]["partial"] is True
    result = storage.container(st["output"]["container"]).download_blob(
        f"{st['output']['prefix']}/logs/job_result.txt").readall().decode()
    assert result.splitlines()[0].endswith(": cancelled")
    assert "(partial)" in result and "reason: cancelled by user" in result
    shown = run("status", job_id).stdout
    assert "cancelled" in shown and "(partial)" in shown
    again = run("cancel", job_id).stdout
    assert "not cancelled: it had already stopped or finished" in " ".join(again.split())


def test_the_job_list_shows_the_live_state_of_a_job_being_stopped(
        env: None, idle_host: LocalHost, storage: Storage, code: str) -> None:
    """The index moves only at planning, finalizing and the end; the list reads unfinished jobs'
    own rows, so a cancel shows at once (nothing runs here: the job stays stopping)."""
    ledger = Ledger(storage.ledger)
    put_files(storage, "listedin", {"a.txt": b"a"})
    job = jobs.submit(storage, ledger, {"name": "listed", "entry_script": "prs_style.py",
                                        "source_directory": code, "inputs": ["listedin/"]})
    # the installed command, as a user runs it: it says what happened once, in its own words
    said = subprocess.run([sys.executable, "-c", "from shared.cli.main import main; main()",
                           "cancel", job.job_id], env={**os.environ, **storage.settings.to_env()},
                          capture_output=True, text=True, timeout=60)
    assert said.returncode == 0 and "cancelled by user" in said.stdout, said
    assert "job stopped" not in said.stderr and "WARNING" not in said.stderr, said.stderr
    listed = next(j for j in jobs.list_jobs(storage, 10, ledger) if j["job_id"] == job.job_id)
    assert listed["stopping"] == "cancelled by user" and listed["progress"]["settled"] == 0, listed
    assert next(j for j in jobs.list_jobs(storage, 10) if j["job_id"] == job.job_id)["state"] == "queued"
    shown = CliRunner().invoke(cli.app, ["jobs"], env=storage.settings.to_env())
    assert "stopping" in next(line for line in shown.stdout.splitlines() if job.job_id in line)
    idle_host.drain()
    listed = next(j for j in jobs.list_jobs(storage, 10, ledger) if j["job_id"] == job.job_id)
    assert listed["state"] == "cancelled" and "stopping" not in listed
    shown = " ".join(CliRunner().invoke(cli.app, ["status", job.job_id],
                                        env=storage.settings.to_env()).stdout.split())
    assert "0 not run" in shown and "queued" not in shown and "so far" not in shown, shown
