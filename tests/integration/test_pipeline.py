"""Submit -> plan -> work -> finalize through the HTTP API, on a real Azurite."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from shared.local.host import LocalHost
from shared.storage import Storage

from .conftest import output_rows, put_files, register_text_model, submit


def test_file_job_writes_one_row_per_input_in_input_order(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, tmp_path: Path) -> None:
    names = {f"data/part{i // 10}/f{i:03d}.txt": str(i).encode() for i in range(47)}
    put_files(storage, "ordered", names)
    register_text_model(storage, tmp_path, "echo", "m1")
    job_id = submit(api, {
        "name": "order-test", "entry_script": "prs_style.py", "source_directory": code,
        "inputs": [{"container": "ordered", "prefix": "data/"}], "mini_batch_size": "4",
        "process_count_per_node": 2, "node_count": 2, "models": ["echo"],
        "arguments": ["--suffix", "!"], "environment_variables": {"GREETING": "hi"},
        "append_row_file_name": "rows.txt"})
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded", status
    assert status["mini_batches"]["total"] == 12 and status["mini_batches"]["succeeded"] == 12
    assert status["items"] == {"total": 47, "succeeded": 47, "failed": 0}
    assert status["output"]["blob"] == f"{job_id}/rows.txt"
    stages = status["stages"]
    assert stages["tries"] == 12
    assert set(stages["total_s"]) == {"queue", "download", "wait", "run", "write"}
    assert stages["total_s"]["queue"] > 0 and sum(stages["total_s"].values()) > 0
    # read row, mark running, stage rows, commit, enqueue successor (+ job row reads, log shipping)
    assert 5 <= stages["storage_calls_per_try"] < 12, stages
    rows = output_rows(storage, status)
    expected = [f"{Path(n).name} {int(n[-7:-4])} m1! hi" for n in sorted(names)]
    assert rows == expected
    head = api.get(f"/api/jobs/{job_id}/results", params={"head": 3}).json()
    assert head["rows"] == expected[:3]
    listed = api.get("/api/jobs").json()["jobs"]
    assert listed[0]["job_id"] == job_id and listed[0]["state"] == "succeeded"


def test_dataframe_results_are_space_separated_rows(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "frames", {f"x{i}.bin": b"a" * i for i in range(1, 8)})
    job_id = submit(api, {"name": "frames", "entry_script": "frames.py", "source_directory": code,
                          "inputs": ["frames/"], "mini_batch_size": "3"})
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert output_rows(storage, status) == [f"x{i}.bin {i}" for i in range(1, 8)]


def test_summary_only_keeps_files_the_script_writes_to_its_output_dir(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "sumin", {f"img{i}.png": b"x" for i in range(5)})
    storage.ensure_container("results")      # an output container must exist at submit
    job_id = submit(api, {"name": "summary", "entry_script": "summary_only.py",
                          "source_directory": code, "inputs": ["sumin/"], "mini_batch_size": "2",
                          "output_action": "summary_only",
                          "output": {"container": "results", "path": "run1"}})
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded" and status["items"]["succeeded"] == 5
    assert status["output"]["blob"] is None
    written = {b.name: storage.container("results").download_blob(b.name).readall().decode()
               for b in storage.container("results").list_blobs(name_starts_with="run1/batch_")}
    assert written == {"run1/batch_0000.txt": "img0.png\nimg1.png\n",
                       "run1/batch_0001.txt": "img2.png\nimg3.png\n",
                       "run1/batch_0002.txt": "img4.png\n"}
    assert "succeeded" in storage.container("results").download_blob(
        "run1/logs/job_result.txt").readall().decode()


def test_resubmit_replaces_data_and_parameters_without_redefining_the_job(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, tmp_path: Path) -> None:
    put_files(storage, "resub", {f"d/{i}.txt": str(i).encode() for i in range(6)})
    register_text_model(storage, tmp_path, "echo", "v1")
    first = submit(api, {"name": "resub", "entry_script": "prs_style.py", "source_directory": code,
                         "inputs": ["resub/d/"], "models": ["echo"], "mini_batch_size": "5"})
    host.drain()
    r = api.post(f"/api/jobs/{first}/resubmit", json={
        "inputs": [{"container": "resub", "files": ["d/3.txt"]}], "mini_batch_size": "1",
        "process_count_per_node": 1})
    assert r.status_code == 202, r.text
    second = r.json()["job_id"]
    host.drain()
    status = api.get(f"/api/jobs/{second}").json()
    assert status["state"] == "succeeded"
    assert status["spec"]["mini_batch_size"] in ("1", 1)
    assert output_rows(storage, status) == ["3.txt 3 v1 "]


def test_missing_input_file_is_a_failed_item_named_in_the_status(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, tmp_path: Path) -> None:
    put_files(storage, "miss", {"a.txt": b"1", "c.txt": b"3"})
    register_text_model(storage, tmp_path, "echo", "m")
    job_id = submit(api, {"name": "missing", "entry_script": "prs_style.py", "source_directory": code,
                          "models": ["echo"], "error_threshold": 5, "mini_batch_size": "2",
                          "inputs": [{"container": "miss", "files": ["a.txt", "b.txt", "c.txt"]}]})
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded"
    assert status["items"] == {"total": 3, "succeeded": 2, "failed": 1}
    [error] = status["errors"]
    assert error["example"]["file"] == "b.txt" and error["example"]["mini_batch"] == 0
    assert "miss/b.txt does not exist" in error["message"]
    assert api.get(f"/api/jobs/{job_id}/results").json()["rows"] == ["a.txt 1 m ", "c.txt 3 m "]


def test_all_inputs_missing_gives_an_empty_output_and_results_answer(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "gone", {"keep.txt": b"1"})
    job_id = submit(api, {"name": "gone", "entry_script": "frames.py", "source_directory": code,
                          "inputs": [{"container": "gone", "files": ["nope.txt"]}]})
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["items"]["failed"] == 1 and status["rows"] == 0
    assert api.get(f"/api/jobs/{job_id}/results").json()["rows"] == []


@pytest.mark.stops_jobs
def test_model_versions_latest_unless_pinned(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, tmp_path: Path) -> None:
    put_files(storage, "pin", {"x.txt": b"7"})
    assert register_text_model(storage, tmp_path, "echo", "first") == 1
    assert register_text_model(storage, tmp_path, "echo", "second") == 2
    # one process per node: the unlisted job's init() fails 3 times (not 3 per CPU) before it stops
    base = {"name": "pin", "entry_script": "prs_style.py", "source_directory": code, "inputs": ["pin/"],
            "process_count_per_node": 1}
    pinned = submit(api, {**base, "models": ["echo:1"]})
    latest = submit(api, {**base, "models": ["echo"]})
    unlisted = submit(api, base)
    assert register_text_model(storage, tmp_path, "echo", "third") == 3   # after submit: not used
    host.drain()
    rows = {j: output_rows(storage, api.get(f"/api/jobs/{j}").json()) for j in (pinned, latest)}
    assert rows[pinned] == ["x.txt 7 first "]
    assert rows[latest] == ["x.txt 7 second "]       # pinned to the latest at submit time
    # not listed in models: a scoring process cannot fetch it (it holds no storage credentials)
    status = api.get(f"/api/jobs/{unlisted}").json()
    assert status["state"] == "failed"
    assert "model 'echo' is not in the job's models (none); add it to `models`" in status["reason"]
