"""What an entry script sees of its models is Azure ML's layout, in real read-only files.

``AZUREML_MODEL_DIR`` is the model's own version folder (``azureml-models/<name>/<version>``) when
the job has one model, and the folder over all of them when it has several; a model registered
from a folder keeps that folder's name inside its version; ``Model.get_model_path`` returns the
version folder's one entry (the file, or the folder). Before, the variable always named the root,
a folder's files sat directly in the version folder, and every version was a symbolic link into
the node's cache (which libraries that resolve paths, like MLflow's loader, refuse)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.local.host import LocalHost
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import models
from shared.storage import Storage

from .conftest import put_files, register_text_model


@pytest.fixture
def folder_model(storage: Storage, tmp_path: Path) -> None:
    folder = tmp_path / "model"            # registered from a folder named "model", as v2 samples do
    (folder / "sub").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "sub" / "weights.bin").write_text("w")
    models.register(storage, "enc", folder)


def seen_by(storage: Storage, idle_host: LocalHost, code: str, container: str, **fields: object) -> dict:
    put_files(storage, container, {"x.txt": b"1"})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, {
        "name": "layout", "entry_script": "model_layout.py", "source_directory": code,
        "inputs": [f"{container}/"], "mini_batch_size": "1", "process_count_per_node": 1, **fields})
    with idle_host:
        idle_host.drain(timeout_s=60)
    final = ledger.get_job(job.job_id)
    assert final.state == "succeeded", final
    text = storage.container(final.output_container).download_blob(
        f"{final.output_prefix}/parallel_run_step.txt").readall().decode()
    return json.loads(text.splitlines()[0])


def test_one_folder_model_is_the_model_dir_and_keeps_its_folder_name(
        storage: Storage, idle_host: LocalHost, code: str, folder_model: None) -> None:
    seen = seen_by(storage, idle_host, code, "layoutone", models=["enc"],
                   environment_variables={"ASK_FOR": "enc", "JOIN": "model,model/MLmodel"})
    model_dir = seen["model_dir"]
    assert model_dir.endswith("/azureml-models/enc/1"), model_dir
    assert seen["files"] == ["model/MLmodel", "model/sub/weights.bin"]
    assert seen["joined"] == {"model": True, "model/MLmodel": True}     # os.path.join(MODEL_DIR, "model")
    assert seen["paths"]["enc"] == f"{model_dir}/model"                  # the folder, by its name
    assert seen["links"] == [] and seen["resolved"] is True              # real files all the way
    assert seen["writable"] == []


def test_several_models_share_the_root_and_a_file_model_is_its_file(
        storage: Storage, idle_host: LocalHost, code: str, folder_model: None, tmp_path: Path) -> None:
    register_text_model(storage, tmp_path, "clf", "weights of clf")
    seen = seen_by(storage, idle_host, code, "layoutmany", models=["clf", "enc:1"],
                   environment_variables={"ASK_FOR": "clf,enc"})
    model_dir = seen["model_dir"]
    assert model_dir.endswith("/azureml-models"), model_dir
    assert seen["files"] == ["clf/1/clf.txt", "enc/1/model/MLmodel", "enc/1/model/sub/weights.bin"]
    assert seen["paths"] == {"clf": f"{model_dir}/clf/1/clf.txt", "enc": f"{model_dir}/enc/1/model"}
    assert seen["contents"] == {"clf": "weights of clf"}
    assert seen["links"] == [] and seen["resolved"] is True and seen["writable"] == []
