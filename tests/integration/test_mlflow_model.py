"""An MLflow-format model folder, registered as a folder, loaded with ``mlflow.pyfunc.load_model``
by an entry script written as the Azure ML samples write them: through ``Model.get_model_path``
(v1) and through ``${{inputs.model}}`` (v2). The model's files are real files in Azure ML's layout
(before, a version was a symbolic link into the node's cache, and ``${{inputs.model}}`` reached the
script as that literal string). mlflow comes from the job's environment (v1: a pip list; v2: a
conda file), as it would in Azure."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from shared.local.host import LocalHost
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import models
from shared.storage import Storage

from .conftest import put_files

LOADER = Path(__file__).parent / "assets" / "doubling_loader.py"
MLFLOW = "mlflow-skinny==3.18.0"      # the app does not ship mlflow: the job's environment does


@pytest.fixture
def mlflow_model(storage: Storage, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "factor.json").write_text(json.dumps({"factor": 2}))
    folder = tmp_path / "model"                      # v2 samples register the folder "model"
    mlflow.pyfunc.save_model(str(folder), loader_module="doubling_loader", data_path=str(data),
                             code_paths=[str(LOADER)])
    models.register(storage, "mlf", folder)
    put_files(storage, "mlflowin", {"in/a.txt": b"1.5", "in/b.txt": b"4"})


def rows(storage: Storage, host: LocalHost, spec: dict) -> list[str]:
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec)
    with host:
        host.drain(timeout_s=120)
    final = ledger.get_job(job.job_id)
    assert final.state == "succeeded", (final, final.error)
    return storage.container(final.output_container).download_blob(
        f"{final.output_prefix}/parallel_run_step.txt").readall().decode().splitlines()


def test_v1_get_model_path_gives_an_mlflow_folder_mlflow_loads(
        storage: Storage, idle_host: LocalHost, code: str, mlflow_model: None) -> None:
    assert rows(storage, idle_host, {
        "name": "mlflow-v1", "entry_script": "mlflow_style.py", "source_directory": code,
        "inputs": ["mlflowin/in/"], "models": ["mlf"], "process_count_per_node": 1,
        "environment": [MLFLOW]}) == [
        "a.txt 3.0 get_model_path", "b.txt 8.0 get_model_path"]


def test_v2_inputs_model_gives_the_same_folder(storage: Storage, idle_host: LocalHost, code: str,
                                               mlflow_model: None) -> None:
    assert rows(storage, idle_host, {
        "type": "parallel", "name": "mlflow_v2",
        "inputs": {"data": {"type": "uri_folder", "path": "azureml://datastores/mlflowin/paths/in/"},
                   "model": {"type": "mlflow_model", "path": "azureml:mlf:1"}},
        "outputs": {"scores": {"type": "uri_file"}},
        "input_data": "${{inputs.data}}", "mini_batch_size": "2",
        "task": {"type": "run_function", "code": code, "entry_script": "mlflow_style.py",
                 "environment": {"conda_file": "mlflow-conda.yml"},
                 "program_arguments": "--model ${{inputs.model}}",
                 "append_row_to": "${{outputs.scores}}"}}) == ["a.txt 3.0 argument", "b.txt 8.0 argument"]
