"""The ``parallelrun`` CLI, in-process, against this test's namespace on Azurite.

Each command reads its storage settings from the environment, as a user's shell would give them;
the ``host`` fixture processes the queues in the background and ``host.drain()`` steps it between
commands. Errors go through the installed entry point (``shared.cli.main:main``), which maps them to
exit codes and messages.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from shared.cli import main as cli
from shared.local.host import LocalHost
from shared.service.working import snapshots
from shared.settings import Settings
from shared.storage import Storage

from .conftest import SCRIPTS

Cli = Callable[..., Result]
INPUTS = {f"f{i}.txt": str(i) for i in range(7)}


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This test's settings as environment variables; no local.settings.json in the working dir."""
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def run(env: None, host: LocalHost) -> Cli:
    """Run ``parallelrun ARGS...`` and return its result; asserts exit code 0 unless told."""
    runner = CliRunner()

    def invoke(*args: str, exit_code: int = 0) -> Result:
        result = runner.invoke(cli.app, list(args))
        assert result.exit_code == exit_code, (result.output, result.exception)
        return result
    return invoke


def entry_point(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                *args: str) -> tuple[int, str, str]:
    """Run the installed ``parallelrun`` command; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["parallelrun", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    out = capsys.readouterr()
    return exited.value.code, out.out, out.err


def json_out(result: Result) -> Any:
    return json.loads(result.stdout)


def write_job(tmp_path: Path, **fields: Any) -> Path:
    """``tmp_path/job/job.yaml`` whose source_directory ``code`` is a copy of the test scripts."""
    folder = tmp_path / "job"
    shutil.copytree(SCRIPTS, folder / "code", ignore=shutil.ignore_patterns("__pycache__"))
    spec = {"name": "cli-job", "entry_script": "prs_style.py", "source_directory": "code",
            "inputs": ["clidata/in/"], "models": ["echo"], "arguments": ["--suffix", "!"],
            "mini_batch_size": 10, **fields}
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def put_inputs_and_model(run: Cli, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name, body in INPUTS.items():
        (data / name).write_text(body)
    run("upload", str(data), "clidata/in")
    model = tmp_path / "echo.txt"
    model.write_text("m1")
    run("model", "register", "echo", str(model))


def expected_rows(model: str = "m1") -> list[str]:
    return [f"{name} {body} {model}! " for name, body in sorted(INPUTS.items())]


def submit(run: Cli, spec: Path, *args: str) -> str:
    result = run("submit", str(spec), *args, "--json")
    return str(json_out(result)["job_id"])


# -- storage commands ------------------------------------------------------------------------------
@pytest.mark.scores_nothing
def test_upload_puts_a_folder_and_a_file_under_the_prefix(run: Cli, storage: Storage,
                                                          tmp_path: Path) -> None:
    folder = tmp_path / "up"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("A")
    (folder / "sub" / "b.txt").write_text("B")
    result = run("upload", str(folder), "uploads/pre/fix")
    assert "uploaded 2 file(s) to uploads/pre/fix" in result.stdout
    run("upload", str(folder / "a.txt"), "uploads")
    container = storage.container("uploads")
    blobs = {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}
    assert blobs == {"pre/fix/a.txt": b"A", "pre/fix/sub/b.txt": b"B", "a.txt": b"A"}


@pytest.mark.scores_nothing
def test_registering_a_model_twice_gives_versions_1_and_2(run: Cli, tmp_path: Path) -> None:
    model = tmp_path / "weights.bin"
    model.write_bytes(b"v1")
    assert "model clf version 1 (1 file(s))" in run("model", "register", "clf", str(model)).stdout
    folder = tmp_path / "clf2"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"v2")
    (folder / "labels.txt").write_text("a b")
    assert "model clf version 2 (2 file(s))" in run("model", "register", "clf", str(folder)).stdout
    listed = json_out(run("model", "list", "--json"))
    assert listed == [{"name": "clf", "version": 1, "files": ["weights.bin"]},
                      {"name": "clf", "version": 2, "files": ["clf2/labels.txt", "clf2/w.bin"]}]  # keeps its folder


# -- a job from submit to results ------------------------------------------------------------------
def test_submit_status_and_results(run: Cli, host: LocalHost, tmp_path: Path) -> None:
    put_inputs_and_model(run, tmp_path)
    spec = write_job(tmp_path)
    job_id = submit(run, spec, "--set", "mini_batch_size=3")
    host.drain()

    status = json_out(run("status", job_id, "--json"))
    assert status["state"] == "succeeded", status
    assert status["mini_batches"]["total"] == 3 and status["mini_batches"]["succeeded"] == 3
    assert status["items"] == {"total": 7, "succeeded": 7, "failed": 0}
    assert status["rows"] == 7
    assert status["spec"]["mini_batch_size"] == 3
    # source_directory was read relative to the spec file (not the working directory) and uploaded
    assert status["spec"]["source_directory"] == "snapshot:" + snapshots.build_zip(spec.parent / "code")[1]

    head = run("results", job_id, "--head", "2").stdout
    rows = expected_rows()
    assert rows[0].strip() in head and rows[1].strip() in head
    assert rows[2].strip() not in head
    # where the rows are and the command for all of them, not a URL that needs credentials
    assert f"results {job_id} --download DIR" in " ".join(head.split()) and "http" not in head

    saved = run("results", job_id, "--download", str(tmp_path / "dl")).stdout
    path = tmp_path / "dl" / "parallel_run_step.txt"
    assert "saved" in saved and path.read_text().splitlines() == rows


def test_resubmit_replaces_fields_and_jobs_lists_both(run: Cli, host: LocalHost,
                                                      tmp_path: Path) -> None:
    put_inputs_and_model(run, tmp_path)
    first = submit(run, write_job(tmp_path))
    host.drain()
    second = str(json_out(run("resubmit", first, "--set", "mini_batch_size=2",
                              "--set", "arguments=[--suffix, '?']", "--json"))["job_id"])
    assert second != first
    host.drain()
    status = json_out(run("status", second, "--json"))
    assert status["state"] == "succeeded", status
    assert status["mini_batches"]["total"] == 4
    assert status["spec"]["arguments"] == ["--suffix", "?"]
    assert status["spec"]["name"] == "cli-job"
    saved = tmp_path / "dl2"
    run("results", second, "--download", str(saved))
    assert (saved / "parallel_run_step.txt").read_text().splitlines() == [
        row.replace("!", "?") for row in expected_rows()]

    listed = json_out(run("jobs", "--json"))
    assert [(j["job_id"], j["state"]) for j in listed] == [(second, "succeeded"), (first, "succeeded")]


def test_submit_wait_follows_the_job_to_its_end(run: Cli, tmp_path: Path) -> None:
    put_inputs_and_model(run, tmp_path)
    result = run("submit", str(write_job(tmp_path)), "--wait")
    assert "succeeded" in result.stdout
    assert "7 total: 7 succeeded, 0 failed" in result.stdout


@pytest.mark.stops_jobs
def test_cancel_stops_a_running_job(run: Cli, host: LocalHost, tmp_path: Path,
                                    storage: Storage) -> None:
    data = tmp_path / "slow"
    data.mkdir()
    for i in range(30):
        (data / f"s{i:02d}.txt").write_text("x")
    run("upload", str(data), "slowin")
    job_id = submit(run, write_job(tmp_path, entry_script="slow.py", inputs=["slowin/"],
                                   models=[], arguments=[], process_count_per_node=1),
                    "--set", "mini_batch_size=1")
    cancelled = run("cancel", job_id).stdout
    assert job_id in cancelled and "cancelled by user" in cancelled
    host.drain()
    status = json_out(run("status", job_id, "--json"))
    assert status["state"] == "cancelled" and status["reason"] == "cancelled by user"
    assert status["mini_batches"]["succeeded"] + status["mini_batches"]["failed"] < 30
    table = run("status", job_id).stdout
    assert "cancelled" in table and job_id in table


# -- errors, through the installed entry point -----------------------------------------------------
def test_an_invalid_spec_exits_2_naming_every_bad_field(
        env: None, tmp_path: Path, storage: Storage, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    storage.ensure_container("clidata").upload_blob("in/f0.txt", b"0", overwrite=True)   # the input is fine
    spec = write_job(tmp_path, name="Bad_Name", run_max_try=0, models=[])
    code, out, err = entry_point(monkeypatch, capsys, "submit", str(spec),
                                 "--set", "mini_batch_size=abc")
    assert code == 2, (out, err)
    assert "invalid job spec" in err
    named = {m.group(1) for m in re.finditer(r"^  (\S+): ", err, re.MULTILINE)}
    assert named == {"mini_batch_size", "name", "run_max_try"}, err
    assert "'abc' is not a number of files" in err
    assert list(storage.table(storage.settings.ledger_table).list_entities()) == []


@pytest.mark.parametrize("command", [["status"], ["cancel"], ["results"], ["resubmit"]],
                         ids=lambda c: c[0])
def test_an_unknown_job_exits_1_with_a_clear_message(
        env: None, storage: Storage, command: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    job_id = "nosuch-20250101-000000-abcdef"
    code, out, err = entry_point(monkeypatch, capsys, *command, job_id)
    assert code == 1, (out, err)
    assert f"error: no such job: {job_id}" in err
    assert "Traceback" not in out + err
