"""The job spec: ParallelRunConfig + ParallelRunStep's vocabulary, validated with pydantic.

A job is submitted as JSON (or YAML) whose field names, defaults and rules are PRS's, so an existing
``ParallelRunConfig(...)`` / ``ParallelRunStep(...)`` translates field for field; ``docs/job-spec.md``
is the reference. :func:`parse_spec` reports *every* bad field at once, as one
:class:`~shared.errors.SpecError`. Fields that PRS has and this service does not honour yet are
refused by name (see :data:`NOT_SUPPORTED_YET`), never silently ignored. Blob paths taken from a
spec can never leave their container: no leading ``/``, no ``.``/``..`` segments, no backslashes.

By concept: :mod:`~shared.spec.checks` (the fields' rules, what is not supported yet, the
mini-batch size grammar), :mod:`~shared.spec.inputs` (inputs, side inputs, output),
:mod:`~shared.spec.job` (:class:`JobSpec`), :mod:`~shared.spec.parts` (what a submission's
reference checks read) and :mod:`~shared.spec.parsing` (:func:`parse_spec`, :func:`parse_submission`).
Importers use the names below, from ``shared.spec``.
"""

from shared.spec.checks import (
    BINDING_RE,
    DEFAULT_FILE_BATCH,
    DEFAULT_TABULAR_BATCH,
    NOT_SUPPORTED_YET,
    RESERVED_ARGUMENTS,
    RESERVED_ENV_VARS,
    ContainerName,
    parse_mini_batch_size,
)
from shared.spec.inputs import InputSpec, OutputSpec, SideInputSpec
from shared.spec.job import JobSpec
from shared.spec.parsing import Parsed, parse_spec, parse_submission
from shared.spec.parts import ModelRef, SpecParts

__all__ = [
    "BINDING_RE",
    "DEFAULT_FILE_BATCH",
    "DEFAULT_TABULAR_BATCH",
    "NOT_SUPPORTED_YET",
    "RESERVED_ARGUMENTS",
    "RESERVED_ENV_VARS",
    "ContainerName",
    "InputSpec",
    "JobSpec",
    "ModelRef",
    "OutputSpec",
    "Parsed",
    "SideInputSpec",
    "SpecParts",
    "parse_mini_batch_size",
    "parse_spec",
    "parse_submission",
]
