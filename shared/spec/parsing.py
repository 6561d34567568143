"""Parsing a spec: JSON/YAML text or a mapping, v1 (PRS's) or v2 (an Azure ML parallel job, taken
as it is), validated into a :class:`~shared.spec.job.JobSpec` or refused with one SpecError that
names every bad field; for a submission, with the parts that are still valid
(:mod:`shared.spec.parts`)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared import v2job
from shared.errors import SpecError
from shared.limits import Limits, check_spec_size, check_value, load_text
from shared.spec.inputs import InputSpec, OutputSpec
from shared.spec.job import JobSpec
from shared.spec.parts import SpecParts


def parse_spec(data: Mapping[str, Any] | str | bytes, limits: Limits | None = None) -> JobSpec:
    """Validate a spec given as a dict or as JSON/YAML text; raise one SpecError naming every bad field.

    An Azure ML v2 parallel job (``type: parallel``, or a pipeline around one) is taken as it is:
    :mod:`shared.v2job` translates it, and errors name its v2 fields.

    A submission passes ``limits`` (:mod:`shared.limits`): the text's size and depth, then every
    string, list and mapping are bounded before validation, and the normalised spec after it. A
    spec read back from the ledger was accepted under them and is trusted (``None``); text is
    always parsed within the default limits at least.
    """
    parsed = parse_submission(data, limits)
    if parsed.spec is None:
        raise SpecError(parsed.errors)
    return parsed.spec


@dataclass(frozen=True)
class Parsed:
    """A submission as parsed: the spec (None when a field is bad), the schema's errors, and
    the parts that name stored things, each valid by itself (for the reference checks)."""

    spec: JobSpec | None
    errors: list[dict[str, str]]
    parts: SpecParts


def parse_submission(data: Mapping[str, Any] | str | bytes, limits: Limits | None = None) -> Parsed:
    """:func:`parse_spec` for a submission that goes on to check references: bad fields do not
    raise, they come back with the parts that are still valid. What is over a limit, or not a
    mapping at all, still raises SpecError (then there is nothing to check)."""
    raw = _load(data, limits or Limits())
    if limits is not None:
        check_value(raw, limits)
    v2 = v2job.is_v2(raw)
    if v2:
        raw = v2job.translate(raw)
    rename = v2job.v2_field if v2 else str
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as exc:
        errors = [{**e, "field": rename(e["field"])} for e in _errors(exc)]
        return Parsed(None, errors, SpecParts.salvage(raw, rename))
    if limits is not None:
        check_spec_size(spec.to_dict(), limits)
    return Parsed(spec, [], SpecParts.of(spec, rename))


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
