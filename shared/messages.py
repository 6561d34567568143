"""Small frozen queue-message types with deterministic identity (job id + step or batch index).

Re-planning and re-delivery are harmless by construction: a message only names *what* to do; the
ledger says whether it still needs doing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TypeVar

from shared.errors import OperatorError

M = TypeVar("M", bound="_Message")


@dataclass(frozen=True)
class _Message:
    job_id: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls: type[M], text: str | bytes) -> M:
        try:
            data = json.loads(text)
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise OperatorError(f"malformed {cls.__name__}: {text[:200]!r}: {exc}") from exc


@dataclass(frozen=True)
class PlanMessage(_Message):
    """Plan the next page of the job's inputs; ``step`` guards against stale duplicates."""

    step: int = 0


@dataclass(frozen=True)
class BatchMessage(_Message):
    """Score mini-batch ``batch`` of the job (its items live in the ledger).

    ``ready_at``: when the sender made it visible (epoch seconds), for the try's queue time. The
    queue's own insertion time has a resolution of one second, which is most of a small
    mini-batch's time in the queue."""

    batch: int
    ready_at: float = 0.0


@dataclass(frozen=True)
class FinalizeMessage(_Message):
    """Assemble the job's output and write its final state, if it is complete or stopped.

    ``checkpoint``: instead, commit the rows staged so far (long jobs: staged blocks expire) and
    schedule the next checkpoint."""

    checkpoint: bool = False
