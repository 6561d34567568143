"""Azure ML v2 parallel jobs, taken as they are: a ``type: parallel`` job YAML (or a pipeline YAML
whose one node is such a job) translated field by field onto the job spec (``shared.spec``).

The translation is pure: it reads the v2 document and returns the spec's fields, or raises one
:class:`~shared.errors.SpecError` naming every v2 field it cannot take (by its v2 path, e.g.
``task.environment.image``). What has no equivalent yet is refused by name, as the v1 surface does.
The v2 defaults differ from v1's and are applied here (see :data:`V2_DEFAULTS` and
docs/job-spec.md): one file per mini-batch, one process per node, no output file unless
``append_row_to`` is set, ``max_retries`` retries after the first try.

Bindings: ``${{inputs.NAME}}`` of a literal input is replaced at submission; of a model input
(``azureml:NAME:VERSION``) it pins the model and becomes the spec's ``bindings`` entry
``model:NAME``, resolved in each scoring process to the model's path; of any other ``uri_folder`` /
``uri_file`` input it is a side input (downloaded whole once per node, bound to its folder or
file); ``${{outputs.NAME}}`` becomes ``output``, the folder whose files are uploaded to the job's
output.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from shared.errors import SpecError

V2_DEFAULTS: dict[str, Any] = {
    "mini_batch_size": "1",          # v2 reference: 1 (v1: 10 files, 1MB of a table)
    "process_count_per_node": 1,     # max_concurrency_per_instance: 1 (v1: one per core)
    "node_count": 1,                 # resources.instance_count: 1
    "error_threshold": -1,
    "allowed_failed_count": -1,      # mini_batch_error_threshold: -1
    "logging_level": "INFO",
    "run_invocation_timeout": 60,    # retry_settings.timeout: 60
    "run_max_try": 3,                # retry_settings.max_retries: 2 retries after the first try
}

# program_arguments PRS's v2 driver reads: those that are fields of the spec set them; the others
# tune PRS's own agents and have no equivalent here (accepted, passed on, no effect)
_ARGUMENT_FIELDS = {"--error_threshold": "error_threshold",
                    "--allowed_failed_percent": "allowed_failed_percent",
                    "--allowed_failed_count": "allowed_failed_count"}
NO_EFFECT_ARGUMENTS = frozenset({
    "--task_overhead_timeout", "--progress_update_timeout", "--first_task_creation_timeout",
    "--copy_logs_to_parent", "--metrics_name_prefix", "--push_metrics_to_parent",
    "--resource_monitor_interval"})

# the fields of a parallel job, its task and a pipeline job around one that are taken (the API's
# document describes these: shared.service.apidocs.bodies)
PARALLEL_JOB_FIELDS = {"$schema", "type", "name", "display_name", "description", "tags", "properties",
          "experiment_name", "compute", "inputs", "outputs", "input_data", "mini_batch_size",
          "partition_keys", "resources", "max_concurrency_per_instance", "error_threshold",
          "mini_batch_error_threshold", "logging_level", "retry_settings", "environment_variables",
          "task", "identity"}
TASK_FIELDS = {"type", "code", "entry_script", "program_arguments", "append_row_to", "environment"}
PIPELINE_JOB_FIELDS = {"$schema", "type", "display_name", "description", "experiment_name", "tags",
                       "properties", "settings", "inputs", "outputs", "jobs", "compute", "name"}
_NO_EFFECT = {"$schema", "display_name", "tags", "properties", "experiment_name", "compute", "identity"}
_DATASTORE = re.compile(r"^azureml://datastores/([^/]+)/paths/(.*)$")
_MODEL_ASSET = re.compile(r"^azureml:([A-Za-z0-9][A-Za-z0-9._-]*)(?::([1-9]\d*)|@latest)?$")
_BIND = re.compile(r"\$\{\{\s*(parent\.)?(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_LITERAL_TYPES = ("string", "integer", "number", "boolean")
_STEP_NAME_BAD = re.compile(r"[^a-z0-9-]")


def is_v2(data: Mapping[str, Any]) -> bool:
    """A v2 parallel job, or a pipeline job around one."""
    return data.get("type") in ("parallel", "pipeline")


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})


def translate(data: Mapping[str, Any]) -> dict[str, Any]:
    """The job spec's fields for a v2 document; :class:`SpecError` names every v2 field it
    cannot take."""
    problems = _Problems()
    job, parent_inputs, where = _the_parallel_job(data, problems)
    if job is None:
        raise SpecError(problems.items)
    spec = _translate_job(job, parent_inputs, where, problems)
    settings = data.get("settings")
    if isinstance(settings, Mapping) and "force_rerun" in settings:
        if not isinstance(settings["force_rerun"], bool):
            problems.add("settings.force_rerun", "must be true or false")
        elif settings["force_rerun"]:    # a v2 pipeline's way of saying allow_reuse: false
            spec["allow_reuse"] = False
    if problems.items:
        raise SpecError(problems.items)
    return spec


def _the_parallel_job(data: Mapping[str, Any], problems: _Problems
                      ) -> tuple[Mapping[str, Any] | None, Mapping[str, Any], str]:
    if data.get("type") == "parallel":
        return data, {}, ""
    jobs = data.get("jobs")
    nodes = [(k, v) for k, v in jobs.items() if isinstance(v, Mapping)] if isinstance(jobs, Mapping) else []
    parallel = [(k, v) for k, v in nodes if v.get("type") == "parallel"]
    if len(nodes) != 1 or len(parallel) != 1:
        problems.add("jobs", f"a pipeline job is taken when its only node is a parallel job "
                     f"(found {len(nodes)} node(s), {len(parallel)} parallel)")
        return None, {}, ""
    for key in data:
        if key not in PIPELINE_JOB_FIELDS:
            problems.add(key, "unknown field of a pipeline job")
    name, node = parallel[0]
    given = data.get("inputs")
    inputs: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    merged = {"name": name, **({"description": data["description"]} if "description" in data else {}),
              **node}
    return merged, inputs, f"jobs.{name}."


def _translate_job(job: Mapping[str, Any], parent_inputs: Mapping[str, Any], where: str,
                   problems: _Problems) -> dict[str, Any]:
    for key in job:
        if key not in PARALLEL_JOB_FIELDS:
            problems.add(f"{where}{key}", "unknown field of a parallel job (or one with no "
                                          "equivalent here yet)")
    task = job.get("task")
    if not isinstance(task, Mapping):
        problems.add(f"{where}task", "required: {type: run_function, code, entry_script, ...}")
        return {}
    for key in task:
        if key not in TASK_FIELDS:
            problems.add(f"{where}task.{key}", "unknown field of a run_function task")
    if task.get("type", "run_function") != "run_function":
        problems.add(f"{where}task.type", f"must be run_function (got {task.get('type')!r})")
    inputs = {k: _resolve_parent(v, parent_inputs, f"{where}inputs.{k}", problems)
              for k, v in (job.get("inputs") or {}).items()}
    outputs = dict(job.get("outputs") or {})
    spec: dict[str, Any] = dict(V2_DEFAULTS)
    spec["name"] = _step_name(str(job.get("name") or "")) or None
    if job.get("description"):
        spec["description"] = str(job["description"])
    spec["entry_script"] = task.get("entry_script")
    if task.get("environment") is not None:
        spec["environment"] = task["environment"]
    if task.get("code") is not None:
        spec["source_directory"] = str(task["code"])
    data_name = _bound_name(job.get("input_data"), "inputs")
    if data_name is None or data_name not in inputs:
        problems.add(f"{where}input_data", "required: ${{inputs.NAME}} naming one of the job's inputs")
    else:
        data_input = _data_input(inputs[data_name], f"{where}inputs.{data_name}", problems)
        if data_input is not None:
            spec["inputs"] = [{"name": data_name, **data_input}]
    for v2, ours in (("mini_batch_size", "mini_batch_size"), ("partition_keys", "partition_keys"),
                     ("max_concurrency_per_instance", "process_count_per_node"),
                     ("error_threshold", "error_threshold"),
                     ("mini_batch_error_threshold", "allowed_failed_count"),
                     ("logging_level", "logging_level"),
                     ("environment_variables", "environment_variables")):
        if job.get(v2) is not None:
            spec[ours] = job[v2]
    resources = job.get("resources") or {}
    if isinstance(resources, Mapping):
        for key, value in resources.items():
            if key == "instance_count":
                spec["node_count"] = value
            else:
                problems.add(f"{where}resources.{key}", "has no equivalent here (only instance_count)")
    retry = job.get("retry_settings") or {}
    if isinstance(retry, Mapping):
        for key, value in retry.items():
            if key == "timeout":
                spec["run_invocation_timeout"] = value
            elif key == "max_retries":
                spec["run_max_try"] = value + 1 if isinstance(value, int) and not isinstance(value, bool) else value
            else:
                problems.add(f"{where}retry_settings.{key}", "unknown field (max_retries, timeout)")
    models, bindings = [], {}
    for name, value in inputs.items():
        model = _model_input(value)
        if model is not None:
            models.append(model)
            bindings[f"inputs.{name}"] = "model:" + model.partition(":")[0]
    spec["models"] = models
    side_inputs = []
    for name, value in inputs.items():   # the other file inputs: side inputs, whole on every node
        if name != data_name and isinstance(value, Mapping) and value.get("type") in ("uri_folder", "uri_file"):
            files = _data_input(value, f"{where}inputs.{name}", problems)
            if files is not None:
                side_inputs.append({"name": name, **files})
                bindings[f"inputs.{name}"] = f"side:{name}"
    if side_inputs:
        spec["side_inputs"] = side_inputs
    spec["arguments"] = _arguments(task.get("program_arguments"), inputs, outputs, bindings, spec,
                                   data_name, f"{where}task.program_arguments", problems)
    for name in (s["name"] for s in side_inputs):
        bindings.pop(f"inputs.{name}")      # a side input binds itself (shared.spec.JobSpec.all_bindings)
    if bindings:
        spec["bindings"] = bindings
    _output(task.get("append_row_to"), outputs, spec, f"{where}task.append_row_to", problems)
    return spec


def _resolve_parent(value: Any, parent: Mapping[str, Any], field: str, problems: _Problems) -> Any:
    """A node input bound to the pipeline's input (``${{parent.inputs.X}}``) is that input."""
    name = _bound_name(value, "inputs", parent=True)
    if name is None:
        return value
    if name not in parent:
        problems.add(field, f"${{{{parent.inputs.{name}}}}}: the pipeline has no input {name}")
        return None
    return parent[name]


def _bound_name(value: Any, kind: str, parent: bool = False) -> str | None:
    """NAME of a value that is exactly ``${{kind.NAME}}`` (``${{parent.kind.NAME}}`` if parent)."""
    if not isinstance(value, str):
        return None
    m = _BIND.fullmatch(value.strip())
    if m is None or m.group(2) != kind or bool(m.group(1)) != parent:
        return None
    return m.group(3)


def _data_input(value: Any, field: str, problems: _Problems) -> dict[str, Any] | None:
    """The input the mini-batches are cut from, as an input of the spec."""
    if not isinstance(value, Mapping):
        problems.add(field, "input_data must name an input with type and path (uri_folder or uri_file)")
        return None
    kind, path = value.get("type", "uri_folder"), str(value.get("path") or "")
    if kind == "mltable":
        problems.add(f"{field}.type", "mltable inputs are not supported yet: give the folder of the "
                     "files as a uri_folder (a table job: see docs/job-spec.md, inputs of type tabular)")
        return None
    if kind not in ("uri_folder", "uri_file"):
        problems.add(f"{field}.type", f"input_data must be uri_folder or uri_file (got {kind!r})")
        return None
    for key in value:
        if key not in ("type", "path", "mode", "description"):
            problems.add(f"{field}.{key}", "unknown field of an input")
    m = _DATASTORE.match(path)
    if m is None:
        problems.add(f"{field}.path", f"{path!r}: give azureml://datastores/CONTAINER/paths/PATH (a "
                     "datastore is a container of the service's storage account; upload local "
                     "files first with `parallelrun upload`)")
        return None
    container, rest = m.group(1), m.group(2)
    if kind == "uri_file":
        return {"container": container, "files": [rest]}
    return {"container": container, "prefix": rest if not rest or rest.endswith("/") else rest + "/"}


def _model_input(value: Any) -> str | None:
    """``name`` or ``name:version`` of a model input (``type: custom_model`` / ``mlflow_model``,
    ``path: azureml:NAME[:VERSION]``, or that string itself)."""
    if isinstance(value, Mapping) and value.get("type") in ("custom_model", "mlflow_model", "triton_model"):
        value = value.get("path")
    if isinstance(value, str) and (m := _MODEL_ASSET.match(value.strip())):
        return m.group(1) + (f":{m.group(2)}" if m.group(2) else "")
    return None


def _arguments(text: Any, inputs: Mapping[str, Any], outputs: Mapping[str, Any],
               bindings: dict[str, str], spec: dict[str, Any], data_name: str | None,
               field: str, problems: _Problems) -> list[str]:
    """``program_arguments`` as the script's argv: literal inputs substituted, model inputs and
    outputs bound, PRS's own tuning flags taken (those that are spec fields set them)."""
    if text is None:
        return []
    if isinstance(text, list):
        text = " ".join(str(a) for a in text)
    try:
        words = shlex.split(str(text))
    except ValueError as exc:
        problems.add(field, f"cannot be split into arguments: {exc}")
        return []

    def bind(match: re.Match[str]) -> str:
        parent, kind, name = match.groups()
        if parent:
            problems.add(field, f"{match.group(0)}: bind the pipeline's input to an input of the "
                         "parallel job, and use ${{inputs.NAME}}")
        elif kind == "outputs":
            if name not in outputs:
                problems.add(field, f"{match.group(0)}: the job has no output {name}")
            bindings[f"outputs.{name}"] = "output"
        elif name not in inputs:
            problems.add(field, f"{match.group(0)}: the job has no input {name}")
        elif f"inputs.{name}" in bindings:
            pass                                   # a model or side input: resolved in each process
        elif name == data_name:
            problems.add(field, f"{match.group(0)}: the input_data is split into mini-batches, "
                         "which run() receives; it has no folder of its own here")
        elif isinstance(inputs[name], (str, int, float, bool)) and not _model_input(inputs[name]):
            return str(inputs[name])
        elif isinstance(inputs[name], Mapping) and inputs[name].get("type") in _LITERAL_TYPES:
            return str(inputs[name].get("default", inputs[name].get("value", "")))
        else:
            problems.add(field, f"{match.group(0)}: only models, side inputs (uri_folder, uri_file) "
                         "and literal values can be bound")
        return match.group(0)

    out: list[str] = []
    i = 0
    while i < len(words):
        word = _BIND.sub(bind, words[i])
        flag, eq, inline = word.partition("=")
        if flag in _ARGUMENT_FIELDS:
            value = inline if eq else (words[i + 1] if i + 1 < len(words) else None)
            i += 1 if eq else 2
            if value is None:
                problems.add(field, f"{flag} needs a value")
                continue
            spec[_ARGUMENT_FIELDS[flag]] = _number(value)
            continue
        out.append(word)
        i += 1
    return out


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _output(append_row_to: Any, outputs: Mapping[str, Any], spec: dict[str, Any], field: str,
            problems: _Problems) -> None:
    """``append_row_to: ${{outputs.NAME}}`` makes an append_row job writing into that output's
    path (its file name, for a uri_file output); without it the job is summary_only."""
    if append_row_to is None:
        spec["output_action"] = "summary_only"
        return
    name = _bound_name(append_row_to, "outputs")
    if name is None or name not in outputs:
        problems.add(field, "must be ${{outputs.NAME}} naming one of the job's outputs")
        return
    spec["output_action"] = "append_row"
    value = outputs[name] or {}
    path = str(value.get("path") or "") if isinstance(value, Mapping) else ""
    if not path:
        return                                       # the service's default output location
    m = _DATASTORE.match(path)
    if m is None:
        problems.add(f"outputs.{name}.path", f"{path!r}: give azureml://datastores/CONTAINER/paths/PATH")
        return
    container, rest = m.group(1), m.group(2).rstrip("/")
    if isinstance(value, Mapping) and value.get("type") == "uri_file" and rest:
        folder, _, file_name = rest.rpartition("/")
        spec["append_row_file_name"] = file_name
        rest = folder
    spec["output"] = {"container": container, "path": rest}


def _step_name(name: str) -> str:
    """A v2 node name (``batch_prediction``) as a step name (``batch-prediction``)."""
    cleaned = _STEP_NAME_BAD.sub("-", name.lower()).strip("-")[:32].strip("-")
    return cleaned if len(cleaned) >= 3 and cleaned[0].isalpha() else ""


_FIELD_NAMES = {"process_count_per_node": "max_concurrency_per_instance",
                "node_count": "resources.instance_count",
                "allowed_failed_count": "mini_batch_error_threshold",
                "run_invocation_timeout": "retry_settings.timeout",
                "run_max_try": "retry_settings.max_retries",
                "entry_script": "task.entry_script", "source_directory": "task.code",
                "arguments": "task.program_arguments", "inputs": "input_data",
                "output": "task.append_row_to", "append_row_file_name": "task.append_row_to",
                "environment": "task.environment"}


def v2_field(field: str) -> str:
    """The v2 name of a spec field an error names (``process_count_per_node`` is
    ``max_concurrency_per_instance`` to a v2 user)."""
    head, dot, rest = field.partition(".")
    return _FIELD_NAMES.get(head, head) + (dot + rest if head != "inputs" else "")
