"""The request bodies the handlers read by hand (JSON or YAML, a zip), as OpenAPI ``requestBody``
objects whose schemas are generated from the models that take them.

* A job spec: :class:`~shared.spec.job.JobSpec` (the v1, ParallelRunStep form) or an Azure ML v2
  parallel job (or a pipeline around one). The v2 form has no model of its own in the service
  (:mod:`shared.v2job` translates the document field by field), so it is described by the models
  below, whose field names are the translator's (a unit test holds them equal).
* The overrides of a resubmission: any top-level fields of the spec, ``null`` restoring a default.
* A snapshot: a zip of the source directory.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from shared.spec.job import JobSpec

REF = "#/components/schemas/{model}"
SPEC_MEDIA_TYPES = ("application/json", "application/yaml", "text/yaml")


class V2Input(BaseModel):
    """An input of a v2 job: data (``uri_folder``/``uri_file`` at ``azureml://datastores/...``),
    a model (``custom_model``/``mlflow_model``, ``path: azureml:NAME[:VERSION]``) or a literal."""

    model_config = ConfigDict(extra="allow")
    type: Literal["uri_folder", "uri_file", "mltable", "custom_model", "mlflow_model", "triton_model",
                  "string", "integer", "number", "boolean"] = "uri_folder"
    path: str | None = None
    mode: str | None = None
    description: str | None = None
    default: str | int | float | bool | None = None


class V2Output(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["uri_folder", "uri_file"] = "uri_folder"
    path: str | None = None
    mode: str | None = None


class V2Task(BaseModel):
    """``task`` of a v2 parallel job."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["run_function"] = "run_function"
    code: str | None = Field(None, description="the source directory (a snapshot reference over HTTP)")
    entry_script: str
    program_arguments: str | list[str] | None = None
    append_row_to: str | None = Field(None, description="${{outputs.NAME}}: an append_row job")
    environment: Any = None


class V2Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instance_count: int | None = None


class V2Retry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_retries: int | None = None
    timeout: int | None = None


Scalar = str | int | float | bool   # a literal input or an environment variable's value


class V2ParallelJob(BaseModel):
    """An Azure ML v2 parallel job (``type: parallel``), taken as it is (docs/job-spec.md)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    schema_: str | None = Field(None, alias="$schema")
    type: Literal["parallel"]
    name: str | None = None
    display_name: str | None = None
    description: str | None = None
    tags: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    experiment_name: str | None = None
    compute: str | None = None
    inputs: dict[str, V2Input | Scalar]
    outputs: dict[str, V2Output | None] | None = None
    input_data: str = Field(description="${{inputs.NAME}}: the input cut into mini-batches")
    mini_batch_size: str | int | None = None
    partition_keys: list[str] | None = None
    resources: V2Resources | None = None
    max_concurrency_per_instance: int | None = None
    error_threshold: int | None = None
    mini_batch_error_threshold: int | None = None
    logging_level: str | None = None
    retry_settings: V2Retry | None = None
    environment_variables: dict[str, Scalar] | None = None
    task: V2Task
    identity: dict[str, Any] | None = None


class V2PipelineNode(V2ParallelJob):
    """A pipeline's one node: a parallel job whose inputs may be ``${{parent.inputs.NAME}}``."""

    inputs: dict[str, V2Input | Scalar] | None = None   # type: ignore[assignment]


class V2PipelineJob(BaseModel):
    """An Azure ML v2 pipeline job whose only node is a parallel job."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    schema_: str | None = Field(None, alias="$schema")
    type: Literal["pipeline"]
    name: str | None = None
    display_name: str | None = None
    description: str | None = None
    experiment_name: str | None = None
    tags: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    settings: dict[str, Any] | None = Field(None, description="force_rerun: true means allow_reuse: false")
    inputs: dict[str, V2Input | Scalar] | None = None
    outputs: dict[str, V2Output | None] | None = None
    jobs: Annotated[dict[str, V2PipelineNode], Field(min_length=1, max_length=1)]
    compute: str | None = None


def schemas() -> dict[str, Any]:
    """Every schema the bodies refer to, by name (for ``components.schemas``)."""
    _, top = models_json_schema([(m, "validation") for m in (JobSpec, V2ParallelJob, V2PipelineJob)],
                                ref_template=REF)
    named: dict[str, Any] = top["$defs"]
    named["JobSubmission"] = {
        "description": "A job spec: the v1 (ParallelRunStep) form, or an Azure ML v2 parallel job "
                       "or pipeline job taken as it is. JSON or YAML.",
        "oneOf": [{"$ref": REF.format(model=m)} for m in ("JobSpec", "V2ParallelJob", "V2PipelineJob")]}
    named["Overrides"] = overrides(named["JobSpec"])
    return named


def overrides(spec: dict[str, Any]) -> dict[str, Any]:
    """The resubmit overrides, from the spec's schema: any of its top-level fields, none required,
    each also ``null`` (which restores the field's default)."""
    props = {name: {"anyOf": [_without_default(prop), {"type": "null"}]}
             for name, prop in spec["properties"].items()}
    return {"type": "object", "additionalProperties": False, "properties": props,
            "description": "Top-level fields of the job spec to replace; null restores a default. "
                           "An explicit output is kept unless replaced."}


def _without_default(prop: dict[str, Any]) -> dict[str, Any]:
    prop = copy.deepcopy(prop)
    prop.pop("default", None)
    return prop


def _spec_content(schema: str) -> dict[str, Any]:
    return {media: {"schema": {"$ref": REF.format(model=schema)}} for media in SPEC_MEDIA_TYPES}


JOB_SPEC_BODY: dict[str, Any] = {
    "required": True, "content": _spec_content("JobSubmission"),
    "description": "The job spec as JSON or YAML (docs/job-spec.md); at most PARALLELRUN_MAX_BODY_BYTES"}
OVERRIDES_BODY: dict[str, Any] = {
    "required": False, "content": _spec_content("Overrides"),
    "description": "The fields to replace, as JSON or YAML (an empty body replaces none)"}
ZIP_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    "description": "A zip of the source directory; at most PARALLELRUN_MAX_SNAPSHOT_BYTES"}
