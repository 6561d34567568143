"""The v2 parallel-job translation (pure): defaults, bindings, tuning arguments, refusals by name."""

from __future__ import annotations

import pytest

from shared.errors import SpecError
from shared.scoring.child import bound_arguments
from shared.scoring.protocol import ScoringConfig
from shared.spec import parse_spec
from shared.v2job import translate

JOB = {
    "type": "parallel", "name": "score_v2",
    "inputs": {"data": {"type": "uri_folder", "path": "azureml://datastores/imgs/paths/digits"},
               "model": {"type": "mlflow_model", "path": "azureml:clf:4"}, "alpha": 2},
    "outputs": {"scores": {"type": "uri_folder", "path": "azureml://datastores/outs/paths/run1/"}},
    "input_data": "${{inputs.data}}",
    "task": {"type": "run_function", "code": "src", "entry_script": "score.py",
             "program_arguments": "--model ${{inputs.model}} --alpha ${{inputs.alpha}} "
                                  "--out=${{outputs.scores}} --progress_update_timeout 600",
             "append_row_to": "${{outputs.scores}}"},
}


def test_the_v2_defaults_apply_where_the_job_is_silent() -> None:
    spec = parse_spec({**JOB, "task": {**JOB["task"], "program_arguments": None}, "inputs": {
        "data": JOB["inputs"]["data"]}})
    assert (spec.mini_batch_size, spec.process_count_per_node, spec.node_count) == ("1", 1, 1)
    assert (spec.error_threshold, spec.allowed_failed_count, spec.run_max_try) == (-1, -1, 3)
    assert spec.run_invocation_timeout == 60 and spec.logging_level == "INFO"
    assert spec.inputs[0].container == "imgs" and spec.inputs[0].prefix == "digits/"
    assert spec.name == "score-v2" and spec.output_action == "append_row"


def test_bindings_literals_and_tuning_arguments() -> None:
    spec = parse_spec(JOB)
    assert spec.models == ["clf:4"]
    assert spec.arguments == ["--model", "${{inputs.model}}", "--alpha", "2", "--out=${{outputs.scores}}",
                              "--progress_update_timeout", "600"]
    assert spec.bindings == {"inputs.model": "model:clf", "outputs.scores": "output"}
    assert spec.output is not None and (spec.output.container, spec.output.path) == ("outs", "run1")
    with_fields = translate({**JOB, "task": {**JOB["task"], "program_arguments":
                                             "--error_threshold 7 --allowed_failed_percent=12.5"}})
    assert (with_fields["error_threshold"], with_fields["allowed_failed_percent"]) == (7, 12.5)
    assert with_fields["arguments"] == []


def test_each_process_resolves_the_bindings_to_its_own_paths() -> None:
    spec = parse_spec(JOB)
    config = ScoringConfig(job_id="j", entry_script="/s/score.py", source_dir="/s", work_dir="/w/p1",
                           arguments=tuple(spec.arguments), bindings=dict(spec.bindings or {}),
                           model_paths={"clf": "/m/clf/4/model"})
    assert bound_arguments(config) == ["--model", "/m/clf/4/model", "--alpha", "2", "--out=/w/p1/output",
                                       "--progress_update_timeout", "600"]


@pytest.mark.parametrize(("change", "field", "says"), [
    ({"inputs": {**JOB["inputs"], "data": {"type": "mltable", "path": "azureml://datastores/a/paths/b"}}},
     "inputs.data.type", "mltable"),
    ({"inputs": {**JOB["inputs"], "data": {"type": "uri_folder", "path": "./local"}}}, "inputs.data.path",
     "azureml://datastores/"),
    ({"task": {**JOB["task"], "program_arguments": "--x ${{inputs.nope}}"}}, "task.program_arguments",
     "no input nope"),
    ({"input_data": "${{inputs.missing}}"}, "input_data", "required"),
    ({"queue_settings": {}}, "queue_settings", "unknown field"),
])
def test_what_has_no_equivalent_is_refused_by_its_v2_name(change: dict, field: str, says: str) -> None:
    with pytest.raises(SpecError) as refused:
        translate({**JOB, **change})
    assert any(e["field"] == field and says in e["message"] for e in refused.value.errors), refused.value.errors


def test_v1_reserved_arguments_name_the_field_and_bindings_must_be_bound() -> None:
    base = {"entry_script": "a.py", "inputs": ["imgs/x/"]}
    with pytest.raises(SpecError) as refused:
        parse_spec({**base, "arguments": ["--error_threshold", "5"]})
    assert "set the spec field error_threshold instead" in str(refused.value)
    with pytest.raises(SpecError) as unbound:
        parse_spec({**base, "arguments": ["--model", "${{inputs.model}}"]})
    assert unbound.value.errors[0]["field"] == "arguments" and "not bound" in unbound.value.errors[0]["message"]


def test_a_v2_environment_is_the_job_s_environment_and_its_errors_name_the_v2_field() -> None:
    conda = {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest", "conda_file": "env/conda.yml"}
    assert parse_spec({**JOB, "task": {**JOB["task"], "environment": conda}}).environment == conda
    with pytest.raises(SpecError) as refused:
        parse_spec({**JOB, "task": {**JOB["task"], "environment": "azureml:env:1"}})
    assert any(e["field"] == "task.environment" and "registered environments (azureml:env:1) are not "
               "supported" in e["message"] for e in refused.value.errors), refused.value.errors



def test_a_pipeline_reuses_by_default_and_force_rerun_turns_it_off() -> None:
    pipeline = {"type": "pipeline", "jobs": {"score": JOB}}
    assert parse_spec(pipeline).allow_reuse is True
    assert parse_spec({**pipeline, "settings": {"force_rerun": True}}).allow_reuse is False
    assert parse_spec({**pipeline, "settings": {"force_rerun": False}}).allow_reuse is True
    with pytest.raises(SpecError) as info:
        parse_spec({**pipeline, "settings": {"force_rerun": "yes"}})
    assert info.value.errors[0]["field"] == "settings.force_rerun"
