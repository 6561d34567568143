"""Side inputs, as PRS has them: files (a folder, or explicit files) and registered models that
every scoring process reads whole, downloaded once per node, read-only, their paths given to the
script through its arguments, on both surfaces (v1 ``side_inputs`` + ``${{inputs.NAME}}`` in
``arguments``; v2 another ``uri_folder``/``uri_file`` input bound in ``program_arguments``).
Before, ``side_inputs`` was refused as not supported yet, and so was a v2 side input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shared.local.host import LocalHost
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.storage import Storage

from .conftest import put_files, register_text_model


@pytest.fixture
def side_files(storage: Storage) -> None:
    put_files(storage, "sidein", {"in/a.txt": b"1", "in/b.txt": b"2"})
    put_files(storage, "sidelabels", {"set/cats.txt": b"meow", "set/sub/dogs.txt": b"woof",
                                      "single.txt": b"only"})


def rows_of(storage: Storage, host: LocalHost, ledger: Ledger, job_id: str) -> list[str]:
    with host:
        host.drain(timeout_s=60)
    job = ledger.get_job(job_id)
    assert job.state == "succeeded", job
    return storage.container(job.output_container).download_blob(
        f"{job.output_prefix}/parallel_run_step.txt").readall().decode().splitlines()


def test_v1_side_inputs_folder_file_and_model(storage: Storage, idle_host: LocalHost, code: str,
                                              side_files: None, tmp_path: Path) -> None:
    register_text_model(storage, tmp_path, "lookup", "table-v1")
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, {
        "name": "side-v1", "entry_script": "side_style.py", "source_directory": code,
        "inputs": ["sidein/in/"], "mini_batch_size": "1", "process_count_per_node": 2,
        "side_inputs": [{"name": "labels", "path": "sidelabels/set/"},
                        {"name": "one", "container": "sidelabels", "files": ["single.txt"]},
                        {"name": "lk", "model": "lookup"}],
        "arguments": ["--labels", "${{inputs.labels}}", "--one", "${{inputs.one}}",
                      "--lookup", "${{inputs.lk}}"]})
    seen = "labels[cats.txt=meow,sub/dogs.txt=woof] one[single.txt=only] lookup[table-v1] read-only"
    assert rows_of(storage, idle_host, ledger, job.job_id) == [f"a.txt {seen}", f"b.txt {seen}"]


def test_v2_side_input_is_another_uri_folder_input(storage: Storage, idle_host: LocalHost, code: str,
                                                   side_files: None) -> None:
    doc = yaml.safe_load("""
type: parallel
name: side_v2
inputs:
  data: {type: uri_folder, path: "azureml://datastores/sidein/paths/in/"}
  labels: {type: uri_folder, path: "azureml://datastores/sidelabels/paths/set/", mode: ro_mount}
outputs:
  rows: {type: uri_file}
input_data: ${{inputs.data}}
task:
  type: run_function
  entry_script: side_style.py
  program_arguments: --labels ${{inputs.labels}}
  append_row_to: ${{outputs.rows}}
""")
    doc["task"]["code"] = code
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, doc)
    seen = "labels[cats.txt=meow,sub/dogs.txt=woof] read-only"
    assert rows_of(storage, idle_host, ledger, job.job_id) == [f"a.txt {seen}", f"b.txt {seen}"]


def test_a_side_input_that_cannot_be_read_fails_the_job_naming_it(
        storage: Storage, idle_host: LocalHost, code: str, side_files: None) -> None:
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, {
        "name": "side-gone", "entry_script": "side_style.py", "source_directory": code,
        "inputs": ["sidein/in/"], "side_inputs": [{"name": "labels", "container": "sidelabels",
                                                   "files": ["single.txt", "ghost.txt"]}],
        "arguments": ["--labels", "${{inputs.labels}}"]})
    with idle_host:
        idle_host.drain(timeout_s=60)
    final = ledger.get_job(job.job_id)
    assert final.state == "failed", final
    assert "side input labels" in final.error and "ghost.txt" in final.error, final.error
