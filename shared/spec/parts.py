"""The parts of a spec that name stored things (the code snapshot and its entry script, the
environment, models, input, side-input and output containers), each validated on its own.

Submission checks these references against storage. :class:`SpecParts` holds them for a valid
spec (:meth:`SpecParts.of`) and, for a spec with bad fields, those that are valid by themselves
(:meth:`SpecParts.salvage`), so that one answer names the bad fields *and* the references that do
not resolve, instead of one round of fixes revealing the next. Each part keeps the field an error
about it names (``inputs.1``, ``models.0``, ``side_inputs.2.model``). Pure: no storage here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.spec.checks import MODEL_RE, check_entry_script, check_environment, check_source_directory
from shared.spec.inputs import InputSpec, OutputSpec, SideInputSpec, name_inputs, output_shorthand
from shared.spec.job import JobSpec

_PROBLEMS = (ValueError, TypeError, ValidationError)   # ValidationError is a ValueError; explicit


@dataclass(frozen=True)
class ModelRef:
    """A model a spec pins: ``field`` names it in errors; ``version`` None is the latest."""

    field: str
    name: str
    version: int | None


@dataclass(frozen=True)
class SpecParts:
    """What the reference checks of a submission read, each part valid by itself (None or
    empty where the spec's own field was not)."""

    entry_script: str | None = None
    source_directory: str | None = None
    environment: Any = None
    models: tuple[ModelRef, ...] = ()
    inputs: tuple[tuple[str, InputSpec], ...] = ()          # ("inputs.N", input)
    side_inputs: tuple[tuple[str, InputSpec], ...] = ()     # ("side_inputs.N", its files)
    output: OutputSpec | None = None
    # the name an error gives a field (a v2 job's errors name its v2 fields)
    rename: Callable[[str], str] = str

    @classmethod
    def of(cls, spec: JobSpec, rename: Callable[[str], str] = str) -> SpecParts:
        """The parts of a valid spec."""
        side = list(enumerate(spec.side_inputs or []))
        return cls(
            entry_script=spec.entry_script, source_directory=spec.source_directory,
            environment=spec.environment,
            models=(*(_model_ref(f"models.{n}", m) for n, m in enumerate(spec.models)),
                    *(_model_ref(f"side_inputs.{n}.model", s.model) for n, s in side if s.model)),
            inputs=tuple((f"inputs.{n}", item) for n, item in enumerate(spec.inputs)),
            side_inputs=tuple((f"side_inputs.{n}", s.source) for n, s in side if s.model is None),
            output=spec.output, rename=rename)

    @classmethod
    def salvage(cls, raw: Mapping[str, Any], rename: Callable[[str], str] = str) -> SpecParts:
        """The parts of a spec that failed validation which are valid by themselves (``raw``:
        the mapping as validated, a v2 job already translated). A model listed twice, or
        inputs whose names clash, are the schema's errors; their references are still checked."""
        side = [(n, _valid(SideInputSpec.model_validate, s))
                for n, s in enumerate(_listed(raw.get("side_inputs")))]
        inputs = [(n, _valid(InputSpec.model_validate, i))
                  for n, i in enumerate(_listed(name_inputs(raw.get("inputs"))))]
        return cls(
            entry_script=_valid(check_entry_script, raw.get("entry_script"), str),
            source_directory=_valid(check_source_directory, raw.get("source_directory"), str),
            environment=_valid(check_environment, raw.get("environment")),
            models=(*(_model_ref(f"models.{n}", m) for n, m in enumerate(_listed(raw.get("models")))
                      if isinstance(m, str) and MODEL_RE.match(m)),
                    *(_model_ref(f"side_inputs.{n}.model", s.model) for n, s in side
                      if s is not None and s.model)),
            inputs=tuple((f"inputs.{n}", item) for n, item in inputs if item is not None),
            side_inputs=tuple((f"side_inputs.{n}", s.source) for n, s in side
                              if s is not None and s.model is None),
            output=_valid(OutputSpec.model_validate, output_shorthand(raw.get("output"))),
            rename=rename)


def _model_ref(field: str, ref: str) -> ModelRef:
    name, _, version = ref.partition(":")
    return ModelRef(field, name, int(version) if version else None)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _valid(check: Callable[[Any], Any], value: Any, kind: type | None = None) -> Any:
    """``check(value)``, or None when the value is missing, of the wrong kind or invalid."""
    if value is None or (kind is not None and not isinstance(value, kind)):
        return None
    try:
        return check(value)
    except _PROBLEMS:
        return None
