"""The job spec: ParallelRunConfig + ParallelRunStep's vocabulary, validated with pydantic.

A job is submitted as JSON (or YAML) whose field names, defaults and rules are PRS's, so an existing
``ParallelRunConfig(...)`` / ``ParallelRunStep(...)`` translates field for field; ``docs/job-spec.md``
is the reference. :func:`parse_spec` reports *every* bad field at once, as one
:class:`~shared.errors.SpecError`. Fields that PRS has and this service does not honour yet are
refused by name (see :data:`NOT_SUPPORTED_YET`), never silently ignored. Blob paths taken from a
spec can never leave their container: no leading ``/``, no ``.``/``..`` segments, no backslashes.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared import environment, v2job
from shared.errors import SpecError
from shared.limits import Limits, check_spec_size, check_value, load_text

# What PRS has and we do not honour yet: field -> reason. A milestone that honours one deletes its entry.
NOT_SUPPORTED_YET: dict[str, str] = {
    "allow_reuse": "allow_reuse: true is not supported yet (every job runs afresh); omit it or set false",
    "compute_target": "compute_target is not supported yet: jobs run on the function app's instances "
                      "(see node_count and process_count_per_node)",
    "arguments:--rank_mini_batch_count": "--rank_mini_batch_count is not supported yet",
}

# Names PRS refuses in `arguments` (ParallelRunStep's own check) plus those its driver injects;
# `--input<N>`, `--input_ds_<N>`, `--input_fds_<N>` carry its inputs.
RESERVED_ARGUMENTS = frozenset({
    "mini_batch_size", "error_threshold", "allowed_failed_count", "allowed_failed_percent", "output",
    "output_action", "logging_level", "process_count_per_node", "run_invocation_timeout", "run_max_try",
    "append_row_file_name", "scoring_module_name", "client_sdk_version", "input_format", "inputs",
    "create_snapshot_at_runtime"})
# the reserved names that are fields of the spec: set the field instead
_ARGUMENT_FIELDS = frozenset({
    "mini_batch_size", "error_threshold", "allowed_failed_count", "allowed_failed_percent", "output",
    "output_action", "logging_level", "process_count_per_node", "run_invocation_timeout", "run_max_try",
    "append_row_file_name"})
# ${{inputs.NAME}} / ${{outputs.NAME}}: v2 bindings in arguments, resolved in each scoring process
BINDING_RE = re.compile(r"\$\{\{\s*((?:inputs|outputs)\.[A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ANY_BINDING_RE = re.compile(r"\$\{\{(.*?)\}\}")
_RESERVED_ARGUMENT_RE = re.compile(r"^(input|input_ds_|input_fds_|input_pipeline_param_)\d+$")
RESERVED_ENV_VARS = frozenset({"AZUREML_MODEL_DIR", "AZUREML_BI_OUTPUT_PATH"})  # the runtime sets these

DEFAULT_FILE_BATCH = 10               # PRS: 10 files per mini-batch for FileDataset
DEFAULT_TABULAR_BATCH = 1024 * 1024   # PRS: 1MB per mini-batch for TabularDataset
_UNITS = {"": 1, "kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3}
_SIZE_RE = re.compile(r"^(\d+)([kmg]b)?$", re.IGNORECASE)   # PRS: 1024, 1024KB, 10MB, 1GB
_STEP_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # PRS step-name rule, plus 3-32 characters
_CONTAINER_RE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODEL_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,254})(?::([1-9]\d*))?$")
_SNAPSHOT_RE = re.compile(r"^snapshot:([0-9a-fA-F]{64})$")
_FILE_NAME_BAD = re.compile(r'[~"#%&*:<>?/\\{|}\x00-\x1f\x7f]')  # PRS's forbidden characters + controls
_GLOB_CHARS = re.compile(r"[*?\[]")
_CONFIG = ConfigDict(extra="forbid", frozen=True)


def parse_mini_batch_size(value: str | int | None, kind: Literal["file", "tabular"]) -> int:
    """A mini-batch size as an int: a number of files, or bytes for tabular inputs ("10MB", "400Kb")."""
    if value is None:
        return DEFAULT_FILE_BATCH if kind == "file" else DEFAULT_TABULAR_BATCH
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError('must be a positive integer or a string such as "10" or "1MB"')
    match = _SIZE_RE.match(str(value).strip())
    if not match or (kind == "file" and match.group(2)):
        raise ValueError(f'{value!r} is not a number of files such as "10"' if kind == "file" else
                         f'{value!r} is not a size such as "1024", "1024KB", "10MB" or "1GB"')
    size = int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    if size < 1:
        raise ValueError("must be at least 1")
    return size


def _rule(check: Callable[[Any], bool], message: str) -> AfterValidator:
    """A validator that refuses a value for which ``check`` is false; ``message`` may use ``{v!r}``."""
    def validate(v: Any) -> Any:
        if not check(v):
            raise ValueError(message.format(v=v))
        return v
    return AfterValidator(validate)


def _no_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"must be a number, not {str(v).lower()}")
    return v


_Int = Annotated[int, BeforeValidator(_no_bool)]


def _is_set(v: Any) -> bool:
    return v is not None and v is not False and v != [] and v != {}


def _not_yet(key: str, when: Callable[[Any], bool] = _is_set) -> AfterValidator:
    """Refuse a value of field ``key`` for which ``when`` holds, while ``key`` is in NOT_SUPPORTED_YET."""
    def refuse(v: Any) -> Any:
        if key in NOT_SUPPORTED_YET and when(v):
            raise ValueError(NOT_SUPPORTED_YET[key])
        return v
    return AfterValidator(refuse)


def _check_blob_path(value: str, what: str) -> str:
    """Refuse any blob path that could leave its container or that storage would not accept."""
    if "\\" in value:
        raise ValueError(f"{what} {value!r} must use '/' as separator, not '\\'")
    if value.startswith("/"):
        raise ValueError(f"{what} {value!r} must be relative to its container (no leading '/')")
    if any(seg in (".", "..") for seg in value.split("/")):
        raise ValueError(f"{what} {value!r} must not contain '.' or '..' segments")
    if len(value) > 1024 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{what} must be at most 1024 printable characters")
    return value


def _folder(prefix: str) -> str:
    """A prefix in folder form: "" or "a/b/"."""
    return prefix.rstrip("/") + "/" if prefix.strip("/") else ""


def _split_shorthand(path: str) -> tuple[str, str, str | None]:
    """"container/data/**/*.jpg" -> ("container", "data/", "**/*.jpg")."""
    container, _, rest = path.partition("/")
    segments = rest.split("/") if rest else []
    for i, segment in enumerate(segments):
        if _GLOB_CHARS.search(segment):
            return container, _folder("/".join(segments[:i])), "/".join(segments[i:])
    return container, _folder(rest), None


def _check_container(v: str) -> str:
    if not _CONTAINER_RE.match(v):
        raise ValueError(f"{v!r} is not a valid container name: 3-63 lowercase letters, digits and "
                         "single hyphens, starting and ending with a letter or digit")
    return v


def _check_shorthand(v: str) -> str:
    container, _, rest = v.partition("/")
    _check_container(container)
    _check_blob_path(rest, "path")
    return v


def _check_files(files: list[str]) -> list[str]:
    if not files:
        raise ValueError("files must list at least one blob name")
    for name in files:
        if not name or name.endswith("/"):
            raise ValueError(f"files entry {name!r} is not a blob name")
        _check_blob_path(name, "files entry")
    duplicates = sorted(n for n, count in Counter(files).items() if count > 1)   # linear
    if duplicates:
        raise ValueError(f"files lists {', '.join(map(repr, duplicates))} more than once")
    return files


def _check_entry_script(v: str) -> str:
    v = v.strip()
    if not v or "\\" in v or v.startswith("/") or re.match(r"^[A-Za-z]:", v) or ".." in v.split("/"):
        raise ValueError(f"{v!r} must be a relative path inside source_directory, using '/', without '..'")
    if not v.endswith(".py"):
        raise ValueError(f"{v!r} must be a Python file (.py)")
    return str(PurePosixPath(v))


def _check_source_directory(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty (omit it instead)")
    if v.startswith("snapshot:") and not _SNAPSHOT_RE.match(v):
        raise ValueError('a snapshot reference is "snapshot:" followed by 64 hex digits (sha256)')
    return v.lower() if v.startswith("snapshot:") else v


def _check_logging_level(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    v = v.strip().upper()
    if v not in logging.getLevelNamesMapping():
        raise ValueError(f"{v!r} is not a logging level name such as DEBUG, INFO, WARNING or ERROR")
    return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(v, v)


def _stringify(v: Any) -> Any:
    """YAML/JSON scalars become strings in arguments and environment variable values."""
    def text(x: Any) -> Any:
        return str(x) if isinstance(x, (int, float, bool)) else x
    if isinstance(v, dict):
        return {k: text(x) for k, x in v.items()}
    return [text(x) for x in v] if isinstance(v, list) else [] if v is None else v


def _check_environment_variables(v: dict[str, str]) -> dict[str, str]:
    for key, value in v.items():
        if not _ENV_NAME_RE.match(key):
            raise ValueError(f"{key!r} is not a variable name (letters, digits, '_'; no digit first)")
        if key in RESERVED_ENV_VARS:
            raise ValueError(f"{key} is set by the runtime and cannot be overridden")
        if "\x00" in value:
            raise ValueError(f"the value of {key} contains a NUL character")
    return v


def _check_arguments(v: list[str]) -> list[str]:
    problems = []
    if v and not v[0].startswith("-"):
        problems.append(f"the first argument {v[0]!r} must be a keyword argument such as '--name' (PRS rule)")
    for name in (a[2:].split("=", 1)[0] for a in v if a.startswith("--")):
        if f"arguments:--{name}" in NOT_SUPPORTED_YET:
            problems.append(NOT_SUPPORTED_YET[f"arguments:--{name}"])
        elif name in _ARGUMENT_FIELDS:
            problems.append(f"'--{name}' is reserved by ParallelRunStep: set the spec field "
                            f"{name} instead")
        elif name in RESERVED_ARGUMENTS or _RESERVED_ARGUMENT_RE.match(name):
            problems.append(f"'--{name}' is reserved by ParallelRunStep; use another argument name")
    if problems:
        raise ValueError("; ".join(problems))
    return v


def _check_bindings(v: dict[str, str]) -> dict[str, str]:
    for key, target in v.items():
        if not re.fullmatch(r"(inputs|outputs)\.[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{key!r} is not inputs.NAME or outputs.NAME")
        kind, _, name = target.partition(":")
        if not ((key.startswith("inputs.") and kind in ("model", "side") and _MODEL_RE.match(name)
                 and ":" not in name) or (key.startswith("outputs.") and target == "output")):
            raise ValueError(f"{key}: {target!r} must be model:NAME or side:NAME (an input) or "
                             "output (an output)")
    return v


def _check_environment(v: Any) -> Any:
    """A file form names a file of the source directory (read at submission); the other forms
    are checked now."""
    path = v.get("conda_file") if isinstance(v, dict) else v
    if isinstance(path, str) and not path.startswith("azureml:"):
        if isinstance(v, dict):
            environment.check_image(v, "environment")
        _check_blob_path(path.removeprefix("./"), "environment")
        return v
    try:
        environment.resolve(v, _no_file)
    except environment.BadEnvironment as exc:
        raise ValueError(str(exc).removeprefix("environment: ").removeprefix("environment")) from None
    return v


def _no_file(path: str) -> str:
    raise FileNotFoundError(path)


def _check_models(v: list[str]) -> list[str]:
    for model in v:
        if not _MODEL_RE.match(model):
            raise ValueError(f'{model!r} is not "name" or "name:version" with a positive integer version')
    names = [m.partition(":")[0] for m in v]
    if len(set(names)) != len(names):
        raise ValueError("each model may be listed once")
    return v


def _name_inputs(v: Any) -> Any:
    """Shorthand strings become ``{"path": ...}``; unnamed inputs are named input_0, input_1, ..."""
    if not isinstance(v, list):
        return v
    named = []
    for i, item in enumerate(v):
        item = {"path": item} if isinstance(item, str) else item
        if isinstance(item, dict) and not item.get("name"):
            item = {**item, "name": f"input_{i}"}
        elif isinstance(item, InputSpec) and not item.name:
            item = item.model_copy(update={"name": f"input_{i}"})
        named.append(item)
    return named




def _check_format(v: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    from shared.scoring.tabular import FORMAT_NAMES, TabularDataError, TabularFormat
    if isinstance(v, str):
        if v.lower() not in FORMAT_NAMES:
            raise ValueError(f"{v!r} is not one of {', '.join(FORMAT_NAMES)} (or an options object)")
        return v.lower()
    if isinstance(v, dict):
        try:
            TabularFormat.from_dict(v)
        except (TabularDataError, TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
    return v


def _check_inputs(v: list[InputSpec]) -> list[InputSpec]:
    names = [i.name for i in v]
    if len(set(names)) != len(names):
        raise ValueError(f"input names must be unique, got {names}")
    if len({i.type for i in v}) > 1:
        raise ValueError("all inputs must have the same type (PRS rule)")
    return v


ContainerName = Annotated[str, AfterValidator(_check_container)]


class InputSpec(BaseModel):
    """One input: ``path: "container/prefix-or-glob"``, or ``container`` + ``prefix``/``glob``/``files``."""

    model_config = _CONFIG
    name: Annotated[str, _rule(lambda v: bool(_IDENTIFIER_RE.match(v)),
                               "{v!r} is not an identifier (letters, digits, '_'; at most 64)")] | None = None
    type: Literal["file", "tabular"] = "file"
    # tabular only: "csv" | "tsv" | "parquet" | "jsonl", or the options of PRS's from_delimited_files
    # ({kind, separator, header, encoding, support_multi_line, ...}); None: from each file's extension
    format: Annotated[str | dict[str, Any] | None, AfterValidator(_check_format)] = None
    partition_format: str | None = None   # PRS's partition_format, e.g. "{user}/{season}/{file}.wav"
    path: Annotated[str, AfterValidator(_check_shorthand)] | None = None
    container: ContainerName = ""          # set by path, or given (required either way)
    prefix: Annotated[str, AfterValidator(lambda v: _folder(_check_blob_path(v, "prefix")))] = ""
    glob: Annotated[str, _rule(bool, "glob must not be empty"),
                    AfterValidator(lambda v: _check_blob_path(v, "glob"))] | None = None
    files: Annotated[list[str], AfterValidator(_check_files)] | None = None

    @model_validator(mode="after")
    def _normalise(self) -> InputSpec:
        if self.path is not None:
            if self.container or self.prefix or self.glob or self.files:
                raise ValueError('give either path ("container/prefix") or container/prefix/glob/files')
            container, prefix, glob = _split_shorthand(self.path)
            for key, value in (("container", container), ("prefix", prefix), ("glob", glob), ("path", None)):
                object.__setattr__(self, key, value)  # normalising a frozen model in its own validator
        elif not self.container:
            raise ValueError('an input needs path ("container/prefix") or container')
        if self.files is not None and (self.prefix or self.glob):
            raise ValueError("give either files or prefix/glob, not both")
        return self

    @functools.cached_property
    def wire(self) -> dict[str, Any]:
        """This input as plain data, as stored in the job row and as the scoring processes get it
        (they import no pydantic)."""
        return self.model_dump(mode="json", exclude_none=True)

    def matches(self, blob_name: str) -> bool:
        """Whether a listed blob is one of this input's files (folders never are)."""
        if blob_name.endswith("/"):
            return False
        if not self.glob:
            return True
        rel = blob_name[len(self.prefix):] if blob_name.startswith(self.prefix) else blob_name
        return fnmatch.fnmatchcase(rel, self.glob)

    def describe(self) -> str:
        where = f"{self.container}/{self.prefix}"
        return f"{where} (glob {self.glob})" if self.glob else where


class SideInputSpec(BaseModel):
    """PRS's side input: files every scoring process reads whole, downloaded once per node.

    ``{name, path: "container/prefix"}`` (or ``container`` + ``prefix``/``glob``/``files``, as an
    input), or ``{name, model: "name[:version]"}`` for a registered model. ``${{inputs.NAME}}`` in
    ``arguments`` stands for its local path: the folder, the one file of a single-file ``files``
    list, or the model's path as ``Model.get_model_path`` gives it."""

    model_config = _CONFIG
    name: Annotated[str, _rule(lambda v: bool(_IDENTIFIER_RE.match(v)),
                               "{v!r} is not an identifier (letters, digits, '_'; at most 64)")]
    model: Annotated[str, _rule(lambda v: bool(_MODEL_RE.match(v)),
                                '{v!r} is not "name" or "name:version"')] | None = None
    path: str | None = None
    container: str = ""
    prefix: str = ""
    glob: str | None = None
    files: list[str] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SideInputSpec:
        given = self.path is not None or bool(self.container)
        if (self.model is None) == (not given):
            raise ValueError("a side input is a model (model: name[:version]) or files "
                             '(path: "container/prefix", or container with prefix/glob/files), not both')
        if self.model is None:
            self.source   # noqa: B018 - validates the files' source now
        return self

    @functools.cached_property
    def source(self) -> InputSpec:
        """The files of a file side input, as an input."""
        return InputSpec.model_validate(self.model_dump(
            include={"path", "container", "prefix", "glob", "files"}, exclude_none=True,
            exclude_defaults=True) | {"name": self.name})


def _check_side_inputs(v: list[SideInputSpec]) -> list[SideInputSpec]:
    names = [i.name for i in v]
    if len(set(names)) != len(names):
        raise ValueError(f"side input names must be unique, got {names}")
    return v


class OutputSpec(BaseModel):
    """Where results go: ``container`` + ``path`` (a folder), or the shorthand ``"container/path"``."""

    model_config = _CONFIG
    container: ContainerName
    path: Annotated[str, AfterValidator(lambda v: _check_blob_path(v, "path").rstrip("/"))] = ""

    def blob_name(self, file_name: str) -> str:
        """The name of ``file_name`` inside the output folder."""
        return f"{self.path}/{file_name}" if self.path else file_name


def _output_shorthand(v: Any) -> Any:
    return dict(zip(("container", "path"), v.split("/", 1))) if isinstance(v, str) else v


class JobSpec(BaseModel):
    """A validated job. Field names, defaults and rules are PRS's; docs/job-spec.md is the reference."""

    model_config = _CONFIG
    name: Annotated[str, _rule(lambda v: 3 <= len(v) <= 32 and bool(_STEP_NAME_RE.match(v)),
                               "{v!r} must be 3-32 lowercase letters, digits or '-', start with a letter "
                               "and not end with '-' (PRS step-name rule)")] | None = None
    description: str | None = None
    entry_script: Annotated[str, AfterValidator(_check_entry_script)]
    source_directory: Annotated[str, AfterValidator(_check_source_directory)] | None = None
    inputs: Annotated[list[InputSpec], Field(min_length=1), BeforeValidator(_name_inputs),
                      AfterValidator(_check_inputs)]
    output: Annotated[OutputSpec | None, BeforeValidator(_output_shorthand)] = None
    mini_batch_size: str | int = Field("10", validate_default=True)
    error_threshold: _Int = Field(-1, ge=-1)
    allowed_failed_count: _Int | None = Field(None, ge=-1)
    allowed_failed_percent: Annotated[float, BeforeValidator(_no_bool),
                                      _rule(lambda v: v == -1 or 0 <= v <= 100,
                                            "{v} must be between 0 and 100, or -1")] | None = None
    output_action: Annotated[Literal["append_row", "summary_only"],
                             BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)] = "append_row"
    append_row_file_name: Annotated[str, _rule(
        lambda v: v.strip() not in ("", ".", "..") and len(v) <= 255 and not _FILE_NAME_BAD.search(v),
        "{v!r} must be a file name of at most 255 characters, without path separators or any of "
        "~\"#%&*:<>?/\\{{|}} (PRS rule)")] = "parallel_run_step.txt"
    node_count: _Int = Field(1, ge=1)
    process_count_per_node: _Int | None = Field(None, ge=1)
    logging_level: Annotated[str, BeforeValidator(_check_logging_level)] = "INFO"
    run_invocation_timeout: _Int = Field(60, gt=0)
    run_max_try: _Int = Field(3, ge=1)
    environment_variables: Annotated[dict[str, str], BeforeValidator(_stringify),
                                     AfterValidator(_check_environment_variables)] | None = None
    arguments: Annotated[list[str], BeforeValidator(_stringify), AfterValidator(_check_arguments)] = []
    models: Annotated[list[str], BeforeValidator(lambda v: [] if v is None else v),
                      AfterValidator(_check_models)] = []
    # what ${{inputs.NAME}} / ${{outputs.NAME}} in arguments stand for: "model:NAME" (one of
    # `models`: its path, as Model.get_model_path gives it) or "output" (the output folder)
    bindings: Annotated[dict[str, str], AfterValidator(_check_bindings)] | None = None
    partition_keys: Annotated[list[str], Field(min_length=1)] | None = None
    # append_row output: text (PRS's), csv (one header line), jsonl, or parquet (ordered part files)
    output_format: Literal["text", "csv", "jsonl", "parquet"] = "text"
    side_inputs: Annotated[list[SideInputSpec], AfterValidator(_check_side_inputs)] | None = None
    allow_reuse: Annotated[bool | None, _not_yet("allow_reuse")] = None
    # the job's Python packages (shared.environment's forms); a file form is resolved at submission
    environment: Annotated[Any, AfterValidator(_check_environment)] = None
    compute_target: Annotated[Any, _not_yet("compute_target")] = None

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

    @field_validator("mini_batch_size", mode="plain")
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
            for expr in _ANY_BINDING_RE.findall(arg):
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
        match = _SNAPSHOT_RE.match(self.source_directory or "")
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

    def with_overrides(self, overrides: Mapping[str, Any], limits: Limits | None = None) -> JobSpec:
        """A re-validated copy with top-level fields replaced; a None value restores the default."""
        data = self.to_dict()
        for key, value in overrides.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        return parse_spec(data, limits)


def parse_spec(data: Mapping[str, Any] | str | bytes, limits: Limits | None = None) -> JobSpec:
    """Validate a spec given as a dict or as JSON/YAML text; raise one SpecError naming every bad field.

    An Azure ML v2 parallel job (``type: parallel``, or a pipeline around one) is taken as it is:
    :mod:`shared.v2job` translates it, and errors name its v2 fields.

    A submission passes ``limits`` (:mod:`shared.limits`): the text's size and depth, then every
    string, list and mapping are bounded before validation, and the normalised spec after it. A
    spec read back from the ledger was accepted under them and is trusted (``None``); text is
    always parsed within the default limits at least.
    """
    raw = _load(data, limits or Limits())
    if limits is not None:
        check_value(raw, limits)
    v2 = v2job.is_v2(raw)
    if v2:
        raw = v2job.translate(raw)
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as exc:
        errors = _errors(exc)
        if v2:
            errors = [{**e, "field": v2job.v2_field(e["field"])} for e in errors]
        raise SpecError(errors) from None
    if limits is not None:
        check_spec_size(spec.to_dict(), limits)
    return spec


def _load(data: Mapping[str, Any] | str | bytes, limits: Limits) -> dict[str, Any]:
    if isinstance(data, (str, bytes, bytearray)):
        data = load_text(data, limits)
    if not isinstance(data, Mapping):
        raise SpecError([{"field": "(spec)", "message": "a job spec must be a mapping of field "
                          f"names to values, not {type(data).__name__}"}])
    return dict(data)


def _errors(exc: ValidationError) -> list[dict[str, str]]:
    """One ``{"field", "message"}`` per bad field, in pydantic's order, with plainer wording."""
    merged: dict[str, list[str]] = {}
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "(spec)"
        message = _message(err)
        named, _, rest = message.partition(": ")
        if field == "(spec)" and named in JobSpec.model_fields and rest:   # a whole-spec rule on one field
            field, message = named, rest
        if message not in merged.setdefault(field, []):
            merged[field].append(message)
    return [{"field": field, "message": "; ".join(messages)} for field, messages in merged.items()]


def _message(err: Any) -> str:
    kind, loc, value = err["type"], err["loc"], err.get("input")
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        model = JobSpec if len(loc) == 1 else InputSpec if loc[0] == "inputs" else OutputSpec
        close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
        return "unknown field" + (f" (did you mean '{close[0]}'?)" if close else "")
    if kind == "too_short":
        return "must not be empty"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    message = str(err["msg"]).replace("Input should be", "must be").replace("List should have", "must have")
    if isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 40:
        message += f" (got {value!r})"
    return message
