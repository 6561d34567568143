"""Ledger rows for tests that need one without submitting a job."""

from __future__ import annotations

from typing import Any

from shared.service.ledger.rows import JobRow, spec_json
from shared.spec import parse_spec

MINIMAL_SPEC = {"entry_script": "score.py", "inputs": [{"path": "inputs/"}]}


def job_row(job_id: str = "j", spec: dict[str, Any] | None = None, **fields: Any) -> JobRow:
    """A job row whose spec is a valid one: ``spec``'s fields over a minimal spec."""
    return JobRow(job_id=job_id, spec_json=spec_json(parse_spec({**MINIMAL_SPEC, **(spec or {})})),
                  **fields)
