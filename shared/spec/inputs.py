"""A job's inputs, side inputs and output: their models, and the rules over their lists."""

from __future__ import annotations

import fnmatch
import functools
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, model_validator

from shared.spec.checks import (
    CONFIG,
    IDENTIFIER_RE,
    MODEL_RE,
    ContainerName,
    check_blob_path,
    check_files,
    check_shorthand,
    rule,
)

_GLOB_CHARS = re.compile(r"[*?\[]")


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


def name_inputs(v: Any) -> Any:
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


def check_inputs(v: list[InputSpec]) -> list[InputSpec]:
    names = [i.name for i in v]
    if len(set(names)) != len(names):
        raise ValueError(f"input names must be unique, got {names}")
    if len({i.type for i in v}) > 1:
        raise ValueError("all inputs must have the same type (PRS rule)")
    return v



class InputSpec(BaseModel):
    """One input: ``path: "container/prefix-or-glob"``, or ``container`` + ``prefix``/``glob``/``files``."""

    model_config = CONFIG
    name: Annotated[str, rule(lambda v: bool(IDENTIFIER_RE.match(v)),
                               "{v!r} is not an identifier (letters, digits, '_'; at most 64)")] | None = None
    type: Literal["file", "tabular"] = "file"
    # tabular only: "csv" | "tsv" | "parquet" | "jsonl", or the options of PRS's from_delimited_files
    # ({kind, separator, header, encoding, support_multi_line, ...}); None: from each file's extension
    format: Annotated[str | dict[str, Any] | None, AfterValidator(_check_format)] = None
    partition_format: str | None = None   # PRS's partition_format, e.g. "{user}/{season}/{file}.wav"
    path: Annotated[str, AfterValidator(check_shorthand)] | None = None
    container: ContainerName = ""          # set by path, or given (required either way)
    prefix: Annotated[str, AfterValidator(lambda v: _folder(check_blob_path(v, "prefix")))] = ""
    glob: Annotated[str, rule(bool, "glob must not be empty"),
                    AfterValidator(lambda v: check_blob_path(v, "glob"))] | None = None
    files: Annotated[list[str], AfterValidator(check_files)] | None = None

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

    model_config = CONFIG
    name: Annotated[str, rule(lambda v: bool(IDENTIFIER_RE.match(v)),
                               "{v!r} is not an identifier (letters, digits, '_'; at most 64)")]
    model: Annotated[str, rule(lambda v: bool(MODEL_RE.match(v)),
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


def check_side_inputs(v: list[SideInputSpec]) -> list[SideInputSpec]:
    names = [i.name for i in v]
    if len(set(names)) != len(names):
        raise ValueError(f"side input names must be unique, got {names}")
    return v


class OutputSpec(BaseModel):
    """Where results go: ``container`` + ``path`` (a folder), or the shorthand ``"container/path"``."""

    model_config = CONFIG
    container: ContainerName
    path: Annotated[str, AfterValidator(lambda v: check_blob_path(v, "path").rstrip("/"))] = ""

    def blob_name(self, file_name: str) -> str:
        """The name of ``file_name`` inside the output folder."""
        return f"{self.path}/{file_name}" if self.path else file_name


def output_shorthand(v: Any) -> Any:
    return dict(zip(("container", "path"), v.split("/", 1))) if isinstance(v, str) else v

