"""The job spec: :class:`JobSpec`, ParallelRunConfig + ParallelRunStep's fields, defaults and rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from shared.limits import Limits
from shared.spec.checks import (
    ANY_BINDING_RE,
    BINDING_RE,
    CONFIG,
    FILE_NAME_BAD,
    SNAPSHOT_RE,
    STEP_NAME_RE,
    Int,
    check_arguments,
    check_bindings,
    check_entry_script,
    check_environment,
    check_environment_variables,
    check_logging_level,
    check_models,
    check_source_directory,
    no_bool,
    not_yet,
    parse_mini_batch_size,
    rule,
    stringify,
)
from shared.spec.inputs import (
    InputSpec,
    OutputSpec,
    SideInputSpec,
    check_inputs,
    check_side_inputs,
    name_inputs,
    output_shorthand,
)


class JobSpec(BaseModel):
    """A validated job. Field names, defaults and rules are PRS's; docs/job-spec.md is the reference."""

    model_config = CONFIG
    name: Annotated[str, rule(lambda v: 3 <= len(v) <= 32 and bool(STEP_NAME_RE.match(v)),
                               "{v!r} must be 3-32 lowercase letters, digits or '-', start with a letter "
                               "and not end with '-' (PRS step-name rule)")] | None = None
    description: str | None = None
    entry_script: Annotated[str, AfterValidator(check_entry_script)]
    source_directory: Annotated[str, AfterValidator(check_source_directory)] | None = None
    inputs: Annotated[list[InputSpec], Field(min_length=1),
                      BeforeValidator(name_inputs, json_schema_input_type=Annotated[
                          list[str | InputSpec], Field(min_length=1)]),
                      AfterValidator(check_inputs)]
    output: Annotated[OutputSpec | None, BeforeValidator(
        output_shorthand, json_schema_input_type=str | OutputSpec | None)] = None
    mini_batch_size: str | int = Field("10", validate_default=True)
    error_threshold: Int = Field(-1, ge=-1)
    allowed_failed_count: Annotated[int, Field(ge=-1), BeforeValidator(no_bool)] | None = None
    allowed_failed_percent: Annotated[float, BeforeValidator(no_bool),
                                      rule(lambda v: v == -1 or 0 <= v <= 100,
                                            "{v} must be between 0 and 100, or -1")] | None = None
    output_action: Annotated[Literal["append_row", "summary_only"],
                             BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)] = "append_row"
    append_row_file_name: Annotated[str, rule(
        lambda v: v.strip() not in ("", ".", "..") and len(v) <= 255 and not FILE_NAME_BAD.search(v),
        "{v!r} must be a file name of at most 255 characters, without path separators or any of "
        "~\"#%&*:<>?/\\{{|}} (PRS rule)")] = "parallel_run_step.txt"
    node_count: Int = Field(1, ge=1)
    process_count_per_node: Annotated[int, Field(ge=1), BeforeValidator(no_bool)] | None = None
    logging_level: Annotated[str, BeforeValidator(check_logging_level)] = "INFO"
    run_invocation_timeout: Int = Field(60, gt=0)
    run_max_try: Int = Field(3, ge=1)
    environment_variables: Annotated[dict[str, str], BeforeValidator(stringify, json_schema_input_type=dict[
        str, str | int | float | bool]), AfterValidator(check_environment_variables)] | None = None
    arguments: Annotated[list[str], BeforeValidator(stringify, json_schema_input_type=list[str | int | float | bool]),
                         AfterValidator(check_arguments)] = []
    models: Annotated[list[str], BeforeValidator(lambda v: [] if v is None else v,
                                                 json_schema_input_type=list[str] | None),
                      AfterValidator(check_models)] = []
    # what ${{inputs.NAME}} / ${{outputs.NAME}} in arguments stand for: "model:NAME" (one of
    # `models`: its path, as Model.get_model_path gives it) or "output" (the output folder)
    bindings: Annotated[dict[str, str], AfterValidator(check_bindings)] | None = None
    partition_keys: Annotated[list[str], Field(min_length=1)] | None = None
    # append_row output: text (PRS's), csv (one header line), jsonl, or parquet (ordered part files)
    output_format: Literal["text", "csv", "jsonl", "parquet"] = "text"
    side_inputs: Annotated[list[SideInputSpec], AfterValidator(check_side_inputs)] | None = None
    allow_reuse: bool = True
    # the job's Python packages (shared.environment's forms); a file form is resolved at submission
    environment: Annotated[Any, AfterValidator(check_environment)] = None
    compute_target: Annotated[Any, not_yet("compute_target")] = None

    @model_validator(mode="before")
    @classmethod
    def _default_batch_size(cls, data: Any) -> Any:
        """PRS's default depends on the input type: 10 files, or 1MB of a table."""
        if isinstance(data, dict) and data.get("mini_batch_size") is None:
            inputs: list[Any] = data["inputs"] if isinstance(data.get("inputs"), list) else []
            tabular = any((i.get("type") if isinstance(i, dict) else getattr(i, "type", None)) == "tabular"
                          for i in inputs)
            data = {**data, "mini_batch_size": "1MB" if tabular else "10"}
        return data

    @field_validator("mini_batch_size", mode="plain", json_schema_input_type=str | int)
    @classmethod
    def _mini_batch_size(cls, v: Any, info: ValidationInfo) -> str | int:
        inputs = info.data.get("inputs")  # absent when invalid: then accept either grammar
        parse_mini_batch_size(v, "file" if inputs and inputs[0].type == "file" else "tabular")
        return v

    @property
    def all_bindings(self) -> dict[str, str]:
        """``bindings`` plus each side input's own: ``inputs.NAME`` -> ``side:NAME`` (files) or
        ``model:MODEL`` (a model side input)."""
        side = {f"inputs.{s.name}": (f"model:{s.model.partition(':')[0]}" if s.model else f"side:{s.name}")
                for s in self.side_inputs or []}
        return {**side, **(self.bindings or {})}

    @model_validator(mode="after")
    def _bound(self) -> JobSpec:
        """Every ${{...}} in arguments is a binding this spec defines, to a model it pins."""
        bindings = self.all_bindings
        problems = []
        clash = {f"inputs.{s.name}" for s in self.side_inputs or []} & set(self.bindings or {})
        if clash:
            problems.append(f"bindings {sorted(clash)} are side inputs' own names")
        for arg in self.arguments:
            for expr in ANY_BINDING_RE.findall(arg):
                key = expr.strip()
                if not BINDING_RE.fullmatch("${{" + expr + "}}"):
                    problems.append(f"${{{{{expr}}}}} is not ${{{{inputs.NAME}}}} or ${{{{outputs.NAME}}}}")
                elif key not in bindings:
                    problems.append(f"${{{{{key}}}}} is not bound (bindings: "
                                    f"{', '.join(sorted(bindings)) or 'none'})")
        pinned = [name for name, _ in self.effective_models()]
        if len(set(pinned)) != len(pinned):
            problems.append(f"a model is pinned twice with different versions (models and side_inputs: "
                            f"{', '.join(sorted(n for n in set(pinned) if pinned.count(n) > 1))})")
        for key, target in bindings.items():
            if target.startswith("model:") and target[6:] not in pinned:
                problems.append(f"bindings: {key} names model {target[6:]!r}, which is not in models")
        if problems:
            raise ValueError("arguments: " + "; ".join(problems))
        return self

    @property
    def input_type(self) -> Literal["file", "tabular"]:
        """The type shared by all inputs."""
        return self.inputs[0].type

    @property
    def file_batch_size(self) -> int:
        """``mini_batch_size`` as a number of files."""
        return parse_mini_batch_size(self.mini_batch_size, "file")

    @property
    def snapshot_sha256(self) -> str | None:
        """The code snapshot's sha256 if ``source_directory`` is ``snapshot:<sha256>``, else None."""
        match = SNAPSHOT_RE.match(self.source_directory or "")
        return match.group(1) if match else None

    def effective_models(self) -> list[tuple[str, int | None]]:
        """``models`` and the models of ``side_inputs`` as (name, version) pairs; version None
        means the latest."""
        refs = [*self.models, *(s.model for s in self.side_inputs or [] if s.model)]
        pairs = [(name, int(version) if version else None)
                 for name, _, version in (m.partition(":") for m in refs)]
        return list(dict.fromkeys(pairs))

    def to_dict(self) -> dict[str, Any]:
        """The normalised spec as JSON-able data, None fields left out; it parses back to an equal spec."""
        return self.model_dump(mode="json", exclude_none=True)

    def overridden(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """This spec's data with top-level fields replaced (a None value restores the default),
        to be validated again."""
        data = self.to_dict()
        for key, value in overrides.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        return data

    def with_overrides(self, overrides: Mapping[str, Any], limits: Limits | None = None) -> JobSpec:
        """A re-validated copy with top-level fields replaced; a None value restores the default."""
        # imported here, not at the top: shared.spec.parsing imports this module (for JobSpec)
        from shared.spec.parsing import parse_spec

        return parse_spec(self.overridden(overrides), limits)
