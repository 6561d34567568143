"""Azure ML v2 parallel jobs taken as they are: a pipeline YAML whose one node is a parallel job,
submitted with ``parallelrun submit`` and run end to end, its bindings resolved in each scoring
process and its PRS tuning arguments honoured.

Before, the YAML was refused field by field (``type``, ``jobs``, ...), ``${{inputs.NAME}}`` reached
the script as that literal string, and ``--error_threshold`` in program_arguments was refused as a
reserved name."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shared.cli import main as cli
from shared.errors import SpecError
from shared.local.host import LocalHost
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import models
from shared.settings import Settings
from shared.storage import Storage
from tests.unit.examples import load_module

from .conftest import EXAMPLES, SCRIPTS, put_files, register_text_model

PIPELINE = """
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: v2 batch scoring
inputs:
  threshold: 0.5
jobs:
  batch_scoring:
    type: parallel
    compute: azureml:cpu-cluster
    inputs:
      data:
        type: uri_folder
        path: azureml://datastores/v2data/paths/in/
        mode: ro_mount
      model:
        type: custom_model
        path: azureml:echo:1
      threshold: ${{parent.inputs.threshold}}
    outputs:
      predictions:
        type: uri_file
        path: azureml://datastores/v2out/paths/scored/predictions.txt
      extras:
        type: uri_folder
    input_data: ${{inputs.data}}
    mini_batch_size: "2"
    resources:
      instance_count: 1
    max_concurrency_per_instance: 2
    mini_batch_error_threshold: 1
    retry_settings:
      max_retries: 2
      timeout: 45
    logging_level: DEBUG
    task:
      type: run_function
      code: ./code
      entry_script: v2_style.py
      program_arguments: >-
        --model ${{inputs.model}}
        --threshold ${{inputs.threshold}}
        --extras ${{outputs.extras}}
        --error_threshold 3
        --allowed_failed_percent 30
        --task_overhead_timeout 1200
        --resource_monitor_interval 20
      append_row_to: ${{outputs.predictions}}
"""


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)


def test_a_v2_pipeline_job_runs_as_it_is(cli_env: None, host: LocalHost, storage: Storage,
                                         tmp_path: Path) -> None:
    put_files(storage, "v2data", {f"in/f{i}.txt": str(i).encode() for i in range(5)})
    storage.ensure_container("v2out")    # the output's datastore exists, as in Azure ML
    register_text_model(storage, tmp_path, "echo", "weights-1")
    folder = tmp_path / "job"
    shutil.copytree(SCRIPTS, folder / "code", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "pipeline.yml").write_text(PIPELINE)

    result = CliRunner().invoke(cli.app, ["submit", str(folder / "pipeline.yml"), "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    job_id = json.loads(result.stdout)["job_id"]
    host.drain()

    job = Ledger(storage.ledger).get_job(job_id)
    assert job.state == "succeeded", job
    spec = job.spec
    # the v2 fields, and the tuning arguments that are PRS's own fields, set the job's fields
    assert (spec.name, spec.process_count_per_node, spec.node_count) == ("batch-scoring", 2, 1)
    assert (spec.error_threshold, spec.allowed_failed_percent, spec.allowed_failed_count) == (3, 30, 1)
    assert (spec.run_max_try, spec.run_invocation_timeout, spec.logging_level) == (3, 45, "DEBUG")
    assert spec.models == ["echo:1"] and spec.output_action == "append_row"
    assert (job.output_container, job.output_prefix) == ("v2out", "scored")
    out = storage.container("v2out")
    rows = out.download_blob("scored/predictions.txt").readall().decode().splitlines()
    flags = "--model --threshold --extras --task_overhead_timeout --resource_monitor_interval"
    assert rows == [f"f{i}.txt {i} weights-1 0.5 | {flags}" for i in range(5)]
    # ${{outputs.extras}} was a folder of the script's own, uploaded with the job's output
    seen = sorted(b.name for b in out.list_blobs("scored/") if b.name.endswith(".seen"))
    assert seen == [f"scored/f{i}.txt.seen" for i in range(5)]


def test_a_v2_job_with_what_has_no_equivalent_is_refused_by_its_v2_field_names(
        cli_env: None, host: LocalHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    doc = yaml.safe_load(PIPELINE)
    node = doc["jobs"]["batch_scoring"]
    node["inputs"]["data"]["type"] = "mltable"
    folder = tmp_path / "job"
    (folder / "code").mkdir(parents=True)
    (folder / "pipeline.yml").write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(sys, "argv", ["parallelrun", "submit", str(folder / "pipeline.yml")])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert "jobs.batch_scoring.inputs.data.type" in err and "mltable" in err


def test_a_bad_v2_field_value_is_named_by_its_v2_name(storage: Storage) -> None:
    doc = yaml.safe_load(PIPELINE)
    doc["jobs"]["batch_scoring"]["max_concurrency_per_instance"] = 0
    put_files(storage, "v2data", {"in/f0.txt": b"0"})
    storage.ensure_container("v2out")
    with pytest.raises(SpecError) as refused:
        jobs.submit(storage, Ledger(storage.ledger), doc)
    # with the references the valid fields make that do not hold here, under their v2 names too:
    # the code is a local folder (the CLI would upload it) and model echo is not registered
    assert [e["field"] for e in refused.value.errors] == ["max_concurrency_per_instance", "task.code",
                                                          "models.0"]


def test_the_mnist_example_runs_as_a_v2_parallel_job(cli_env: None, host: LocalHost, storage: Storage,
                                                     tmp_path: Path) -> None:
    """examples/mnist/parallel-job.yml, submitted as it is, scores every image once."""
    digits = load_module("mnist_digits_v2", EXAMPLES / "mnist" / "digits.py")
    pngs = [(Path(path).name, label) for path, label in digits.write_digit_pngs(tmp_path / "pngs", limit=40)]
    put_files(storage, "mnist-images", {f"digits/{name}": (tmp_path / "pngs" / name).read_bytes()
                                        for name, _ in pngs})
    models.register(storage, "mnist", EXAMPLES / "mnist" / "model" / "mnist.onnx")
    result = CliRunner().invoke(cli.app, ["submit", str(EXAMPLES / "mnist" / "parallel-job.yml"), "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    host.drain()
    job = Ledger(storage.ledger).get_job(json.loads(result.stdout)["job_id"])
    assert job.state == "succeeded", job
    assert job.spec.error_threshold == 10 and job.spec.bindings == {"inputs.mnist_model": "model:mnist"}
    text = storage.container(job.output_container).download_blob(
        f"{job.output_prefix}/parallel_run_step.txt").readall().decode()
    scored = dict(line.split(": ") for line in text.splitlines())
    assert sorted(scored) == sorted(name for name, _ in pngs)
    right = sum(int(scored[name]) == label for name, label in pngs)
    assert right >= 36, f"{right} of 40 right"
