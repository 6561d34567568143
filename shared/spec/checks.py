"""The rules of the spec's fields: what is not supported yet, reserved names, name and path
checks, the mini-batch size grammar, and the validators the models of :mod:`shared.spec` use.

Blob paths taken from a spec can never leave their container: no leading ``/``, no ``.``/``..``
segments, no backslashes (:func:`check_blob_path`). The names here are the package's own; what
importers use is re-exported by :mod:`shared.spec`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict

from shared import environment

# What PRS has and we do not honour yet: field -> reason. A milestone that honours one deletes its entry.
NOT_SUPPORTED_YET: dict[str, str] = {
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
ANY_BINDING_RE = re.compile(r"\$\{\{(.*?)\}\}")
_RESERVED_ARGUMENT_RE = re.compile(r"^(input|input_ds_|input_fds_|input_pipeline_param_)\d+$")
RESERVED_ENV_VARS = frozenset({"AZUREML_MODEL_DIR", "AZUREML_BI_OUTPUT_PATH"})  # the runtime sets these

DEFAULT_FILE_BATCH = 10               # PRS: 10 files per mini-batch for FileDataset
DEFAULT_TABULAR_BATCH = 1024 * 1024   # PRS: 1MB per mini-batch for TabularDataset
_UNITS = {"": 1, "kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3}
_SIZE_RE = re.compile(r"^(\d+)([kmg]b)?$", re.IGNORECASE)   # PRS: 1024, 1024KB, 10MB, 1GB
STEP_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # PRS step-name rule, plus 3-32 characters
_CONTAINER_RE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODEL_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,254})(?::([1-9]\d*))?$")
SNAPSHOT_RE = re.compile(r"^snapshot:([0-9a-fA-F]{64})$")
FILE_NAME_BAD = re.compile(r'[~"#%&*:<>?/\\{|}\x00-\x1f\x7f]')  # PRS's forbidden characters + controls
CONFIG = ConfigDict(extra="forbid", frozen=True)


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


def rule(check: Callable[[Any], bool], message: str) -> AfterValidator:
    """A validator that refuses a value for which ``check`` is false; ``message`` may use ``{v!r}``."""
    def validate(v: Any) -> Any:
        if not check(v):
            raise ValueError(message.format(v=v))
        return v
    return AfterValidator(validate)


def no_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"must be a number, not {str(v).lower()}")
    return v


Int = Annotated[int, BeforeValidator(no_bool)]


def _is_set(v: Any) -> bool:
    return v is not None and v is not False and v != [] and v != {}


def not_yet(key: str, when: Callable[[Any], bool] = _is_set) -> AfterValidator:
    """Refuse a value of field ``key`` for which ``when`` holds, while ``key`` is in NOT_SUPPORTED_YET."""
    def refuse(v: Any) -> Any:
        if key in NOT_SUPPORTED_YET and when(v):
            raise ValueError(NOT_SUPPORTED_YET[key])
        return v
    return AfterValidator(refuse)


def check_blob_path(value: str, what: str) -> str:
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


def _check_container(v: str) -> str:
    if not _CONTAINER_RE.match(v):
        raise ValueError(f"{v!r} is not a valid container name: 3-63 lowercase letters, digits and "
                         "single hyphens, starting and ending with a letter or digit")
    return v


def check_shorthand(v: str) -> str:
    container, _, rest = v.partition("/")
    _check_container(container)
    check_blob_path(rest, "path")
    return v


def check_files(files: list[str]) -> list[str]:
    if not files:
        raise ValueError("files must list at least one blob name")
    for name in files:
        if not name or name.endswith("/"):
            raise ValueError(f"files entry {name!r} is not a blob name")
        check_blob_path(name, "files entry")
    duplicates = sorted(n for n, count in Counter(files).items() if count > 1)   # linear
    if duplicates:
        raise ValueError(f"files lists {', '.join(map(repr, duplicates))} more than once")
    return files


def check_entry_script(v: str) -> str:
    v = v.strip()
    if not v or "\\" in v or v.startswith("/") or re.match(r"^[A-Za-z]:", v) or ".." in v.split("/"):
        raise ValueError(f"{v!r} must be a relative path inside source_directory, using '/', without '..'")
    if not v.endswith(".py"):
        raise ValueError(f"{v!r} must be a Python file (.py)")
    return str(PurePosixPath(v))


def check_source_directory(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty (omit it instead)")
    if v.startswith("snapshot:") and not SNAPSHOT_RE.match(v):
        raise ValueError('a snapshot reference is "snapshot:" followed by 64 hex digits (sha256)')
    return v.lower() if v.startswith("snapshot:") else v


def check_logging_level(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    v = v.strip().upper()
    if v not in logging.getLevelNamesMapping():
        raise ValueError(f"{v!r} is not a logging level name such as DEBUG, INFO, WARNING or ERROR")
    return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(v, v)


def stringify(v: Any) -> Any:
    """YAML/JSON scalars become strings in arguments and environment variable values."""
    def text(x: Any) -> Any:
        return str(x) if isinstance(x, (int, float, bool)) else x
    if isinstance(v, dict):
        return {k: text(x) for k, x in v.items()}
    return [text(x) for x in v] if isinstance(v, list) else [] if v is None else v


def check_environment_variables(v: dict[str, str]) -> dict[str, str]:
    for key, value in v.items():
        if not _ENV_NAME_RE.match(key):
            raise ValueError(f"{key!r} is not a variable name (letters, digits, '_'; no digit first)")
        if key in RESERVED_ENV_VARS:
            raise ValueError(f"{key} is set by the runtime and cannot be overridden")
        if "\x00" in value:
            raise ValueError(f"the value of {key} contains a NUL character")
    return v


def check_arguments(v: list[str]) -> list[str]:
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


def check_bindings(v: dict[str, str]) -> dict[str, str]:
    for key, target in v.items():
        if not re.fullmatch(r"(inputs|outputs)\.[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{key!r} is not inputs.NAME or outputs.NAME")
        kind, _, name = target.partition(":")
        if not ((key.startswith("inputs.") and kind in ("model", "side") and MODEL_RE.match(name)
                 and ":" not in name) or (key.startswith("outputs.") and target == "output")):
            raise ValueError(f"{key}: {target!r} must be model:NAME or side:NAME (an input) or "
                             "output (an output)")
    return v


def check_environment(v: Any) -> Any:
    """A file form names a file of the source directory (read at submission); the other forms
    are checked now."""
    path = v.get("conda_file") if isinstance(v, dict) else v
    if isinstance(path, str) and not path.startswith("azureml:"):
        if isinstance(v, dict):
            environment.check_image(v, "environment")
        check_blob_path(path.removeprefix("./"), "environment")
        return v
    try:
        environment.resolve(v, _no_file)
    except environment.BadEnvironment as exc:
        raise ValueError(str(exc).removeprefix("environment: ").removeprefix("environment")) from None
    return v


def _no_file(path: str) -> str:
    raise FileNotFoundError(path)


def check_models(v: list[str]) -> list[str]:
    for model in v:
        if not MODEL_RE.match(model):
            raise ValueError(f'{model!r} is not "name" or "name:version" with a positive integer version')
    names = [m.partition(":")[0] for m in v]
    if len(set(names)) != len(names):
        raise ValueError("each model may be listed once")
    return v


ContainerName = Annotated[str, AfterValidator(_check_container)]
