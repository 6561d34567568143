"""A job's logs and outputs, through the API and the CLI: listed, read in bounded ranges, followed,
downloaded; `status` says where they are and shows the first traceback, whole at 80 columns."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from shared.cli import logs as cli_logs
from shared.cli import main as cli
from shared.local.host import LocalHost
from shared.service.jobs import joblogs
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.settings import Settings
from shared.storage import Storage

from .conftest import code  # noqa: F401 - a fixture
from .test_cli import Cli, entry_point, env, json_out, run, submit, write_job  # noqa: F401 - fixtures

FILES = {f"ok{i}.txt": "x" for i in range(4)} | {"bad4.txt": "x"}


def upload(run: Cli, tmp_path: Path, target: str, files: dict[str, str]) -> None:
    data = tmp_path / target.replace("/", "_")
    data.mkdir()
    for name, body in files.items():
        (data / name).write_text(body)
    run("upload", str(data), target)


@pytest.fixture
def failing_job(run: Cli, host: LocalHost, tmp_path: Path) -> str:
    """A finished job of five mini-batches: four print and log, the fifth raises ValueError."""
    upload(run, tmp_path, "clilogs/in", FILES)
    job_id = submit(run, write_job(tmp_path, entry_script="misbehave.py", inputs=["clilogs/in/"],
                                   models=[], arguments=["--mode", "raise"], run_max_try=1,
                                   process_count_per_node=1), "--set", "mini_batch_size=1")
    host.drain()
    return job_id


def blob_text(storage: Storage, settings: Settings, job_id: str, rel: str) -> str:
    name = f"{job_id}/logs/{rel}"
    return storage.container(settings.output_container).download_blob(name).readall().decode()


# -- the API ---------------------------------------------------------------------------------------
def test_the_api_lists_a_jobs_log_files_by_kind_node_and_process(
        failing_job: str, api: httpx.Client, settings: Settings) -> None:
    body = api.get(f"/api/jobs/{failing_job}/logs").json()
    assert set(body) == {"job_id", "location", "files"}
    assert body["job_id"] == failing_job
    assert body["location"] == f"{settings.output_container}/{failing_job}/logs/"
    files = {f["path"]: f for f in body["files"]}
    assert all(set(f) == {"path", "kind", "node", "process", "size"} for f in files.values())
    assert files["job_result.txt"]["kind"] == "job"
    assert files["job_result.txt"]["node"] == files["job_result.txt"]["process"] == ""
    kinds = {f["kind"] for f in files.values()}
    assert {"job", "stdout", "entry", "error"} <= kinds, kinds
    stdout = [f for f in files.values() if f["kind"] == "stdout"]
    assert len(stdout) == 1 and stdout[0]["path"] == (
        f"user/stdout/{stdout[0]['node']}/{stdout[0]['process']}.txt") and stdout[0]["size"] > 0

    only = api.get(f"/api/jobs/{failing_job}/logs", params={"kind": "error"}).json()["files"]
    assert [f["kind"] for f in only] == ["error"]
    node = stdout[0]["node"]
    by_node = api.get(f"/api/jobs/{failing_job}/logs", params={"node": node}).json()["files"]
    assert by_node and all(f["node"] == node for f in by_node)
    assert api.get(f"/api/jobs/{failing_job}/logs", params={"node": "no-such-node"}).json()["files"] == []


def test_the_api_reads_a_log_file_as_text_in_bounded_ranges(
        failing_job: str, api: httpx.Client, storage: Storage, settings: Settings) -> None:
    text = blob_text(storage, settings, failing_job, "job_result.txt")
    whole = api.get(f"/api/jobs/{failing_job}/logs/job_result.txt")
    assert whole.status_code == 200 and whole.headers["content-type"].startswith("text/plain")
    assert whole.text == text and "Errors (distinct, with counts)" in text
    assert api.get(f"/api/jobs/{failing_job}/logs/job_result.txt", params={"tail": 20}).text == text[-20:]
    ranged = api.get(f"/api/jobs/{failing_job}/logs/job_result.txt",
                     params={"offset": 4, "max_bytes": 10})
    assert ranged.text == text[4:14] and ranged.headers["x-log-size"] == str(len(text.encode()))
    too_much = api.get(f"/api/jobs/{failing_job}/logs/job_result.txt",
                       params={"max_bytes": joblogs.MAX_READ_BYTES + 1})
    assert too_much.status_code == 422


def test_the_api_answers_404_naming_the_job_or_the_file(failing_job: str, api: httpx.Client) -> None:
    missing = api.get(f"/api/jobs/{failing_job}/logs/user/stdout/nobody/none.txt")
    assert missing.status_code == 404
    assert failing_job in missing.json()["error"] and "user/stdout/nobody/none.txt" in missing.json()["error"]
    unknown = "nosuch-20250101-000000-abcdef"
    for url in (f"/api/jobs/{unknown}/logs", f"/api/jobs/{unknown}/logs/job_result.txt"):
        answer = api.get(url)
        assert answer.status_code == 404 and unknown in answer.json()["error"]


@pytest.mark.parametrize("raw", ["..%2F..%2Fparallelrun%2Fsnapshots", "user/%2E%2E/%2E%2E/x",
                                 "user%5Cstdout", "%2Fetc%2Fpasswd", "user//stdout/x.txt"])
def test_a_log_path_that_leaves_logs_is_refused_with_400_naming_it(
        failing_job: str, api: httpx.Client, raw: str) -> None:
    answer = api.get(f"/api/jobs/{failing_job}/logs/{raw}")
    assert answer.status_code == 400, answer.text
    assert "log path" in answer.json()["error"]


# -- the CLI ---------------------------------------------------------------------------------------
def test_logs_prints_every_file_under_a_header_and_filters_by_kind(run: Cli, failing_job: str) -> None:
    out = run("logs", failing_job).stdout
    assert "==> job_result.txt <==" in out
    assert "scoring ['ok0.txt']" in out and "scoring ['ok3.txt']" in out
    assert "ValueError: cannot score ['bad4.txt']" in out
    errors = run("logs", failing_job, "--kind", "error").stdout
    assert "==> user/error/" in errors and "ValueError: cannot score" in errors
    assert "job_result.txt" not in errors and "scoring ['ok0.txt']" not in errors

    listed = json_out(run("logs", failing_job, "--list", "--json"))
    stdout = next(f["path"] for f in listed["files"] if f["kind"] == "stdout")
    assert stdout in run("logs", failing_job, "--list").stdout   # printed whole, as a PATH
    one = run("logs", failing_job, stdout).stdout                # ... which `logs` takes as printed
    assert one.count("==> ") == 1 and "scoring ['ok1.txt']" in one


def test_logs_refuses_a_path_outside_logs_in_one_line(
        failing_job: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = entry_point(monkeypatch, capsys, "logs", failing_job, "../../parallelrun/x")
    assert code == 1 and "log path '../../parallelrun/x'" in err and "Traceback" not in out + err


def test_following_prints_only_what_each_file_gains(
        idle_host: LocalHost, storage: Storage, code: str) -> None:  # noqa: F811 - the fixture
    """The follower reads the new byte range of each file once, whatever the polling finds."""
    storage.ensure_container("clilogs-follow").upload_blob("a.txt", b"a", overwrite=True)  # an input
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, {"name": "follow", "entry_script": "prs_style.py",
                                        "source_directory": code, "inputs": ["clilogs-follow/"]})
    blob = storage.container(job.output_container).get_blob_client(
        f"{job.output_prefix}/logs/user/stdout/node-0/worker-0.txt")
    blob.create_append_blob()
    out: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            out.append(text)

        def flush(self) -> None:
            pass

    follower = cli_logs.Follower(storage, job.job_id, cli_logs.Filters(kind="stdout"), Sink())  # type: ignore[arg-type]
    assert follower.step(job) is False and out == []      # empty so far
    blob.append_block(b"first\n")
    assert follower.step(job) is True
    blob.append_block(b"sec" + "ö".encode()[:1])   # a character cut between two appends
    assert follower.step(job) is True
    blob.append_block("ö".encode()[1:] + b"nd\n")
    assert follower.step(job) is True and follower.step(job) is False
    assert "".join(out) == "==> user/stdout/node-0/worker-0.txt <==\nfirst\nsecönd\n"


def test_follow_ends_with_the_job_having_printed_each_line_once(run: Cli, host: LocalHost,
                                                                tmp_path: Path) -> None:
    upload(run, tmp_path, "clilogs-slow/in", {f"s{i}.txt": "x" for i in range(6)})
    job_id = submit(run, write_job(tmp_path, entry_script="misbehave.py", inputs=["clilogs-slow/in/"],
                                   models=[], arguments=["--mode", "slow", "--delay", "0.2"],
                                   process_count_per_node=1), "--set", "mini_batch_size=1")
    out = run("logs", job_id, "--follow", "--kind", "stdout").stdout   # returns once the job ended
    assert json_out(run("status", job_id, "--json"))["state"] == "succeeded"
    for i in range(6):
        assert out.count(f"scoring ['s{i}.txt']") == 1, out


def test_results_downloads_the_output_and_the_logs(run: Cli, failing_job: str, tmp_path: Path,
                                                   storage: Storage, settings: Settings) -> None:
    dest = tmp_path / "dl"
    said = run("results", failing_job, "--download", str(dest), "--logs").stdout
    assert f"saved {(dest / 'parallel_run_step.txt').resolve()}" in said.replace("\n", "")
    assert (dest / "parallel_run_step.txt").read_text().splitlines() == [f"ok{i}.txt" for i in range(4)]
    assert (dest / "logs" / "job_result.txt").read_text() == blob_text(storage, settings, failing_job,
                                                                       "job_result.txt")
    assert any((dest / "logs" / "user" / "stdout").rglob("*.txt"))


def test_a_summary_only_job_lists_and_downloads_the_files_its_script_wrote(
        run: Cli, host: LocalHost, tmp_path: Path) -> None:
    upload(run, tmp_path, "clilogs-summary/in", {f"s{i}.txt": "x" for i in range(3)})
    job_id = submit(run, write_job(tmp_path, entry_script="summary_only.py", models=[], arguments=[],
                                   inputs=["clilogs-summary/in/"], output_action="summary_only"),
                    "--set", "mini_batch_size=1")
    host.drain()
    listed = run("results", job_id).stdout
    assert "no rows" not in listed
    assert all(f"batch_000{i}.txt" in listed for i in range(3)), listed
    assert "logs/" not in listed
    dest = tmp_path / "summary"
    run("results", job_id, "--download", str(dest))
    assert sorted(p.name for p in dest.iterdir()) == ["batch_0000.txt", "batch_0001.txt", "batch_0002.txt"]
    assert (dest / "batch_0001.txt").read_text() == "s1.txt\n"


def test_status_shows_stages_logs_and_the_first_traceback_whole_at_80_columns(
        run: Cli, failing_job: str, settings: Settings) -> None:
    st = json_out(run("status", failing_job, "--json"))
    where = f"{st['output']['container']}/{st['output']['blob']}"
    out = run("status", failing_job).stdout
    assert f"output: {where} (partial)" in out.splitlines()   # whole, on a line of its own
    assert f"  parallelrun results {failing_job} --download DIR" in out.splitlines()
    # not the blob's URL: its container is private, so it would not open as printed
    assert st["output"]["url"] not in out
    assert f"logs: {settings.output_container}/{failing_job}/logs/" in out.splitlines()
    assert f"  parallelrun logs {failing_job}" in out.splitlines()
    assert "stages" in out and "ms/try" in out
    assert "first error's traceback" in out and "ValueError: cannot score ['bad4.txt']" in out
    assert "Traceback (most recent call last)" in out


def test_status_watch_counts_from_the_jobs_start(run: Cli, failing_job: str) -> None:
    from shared.cli.console import clock
    st = json_out(run("status", failing_job, "--json"))
    watched = CliRunner().invoke(cli.app, ["status", failing_job, "--watch"])
    assert watched.exit_code == 0, watched.output
    assert f"{clock(st['timings']['elapsed_s'])} elapsed" in watched.stderr


def test_jobs_and_models_are_tables(run: Cli, failing_job: str, tmp_path: Path) -> None:
    model = tmp_path / "m.txt"
    model.write_text("m")
    run("model", "register", "tabled", str(model))
    models = run("model", "list").stdout
    assert "model" in models and "version" in models and "tabled" in models
    assert json_out(run("model", "list", "--json")) == [{"name": "tabled", "version": 1, "files": ["m.txt"]}]
    listed = run("jobs").stdout
    assert "state" in listed and failing_job in listed and "succeeded" in listed
    assert json.loads(run("jobs", "--json").stdout)[0]["job_id"] == failing_job

