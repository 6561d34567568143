"""The one way the service sends its queue messages: plan a step, run a mini-batch, finalize a job.

Each message type goes to its own queue (``Settings.plan_queue``, ``batch_queue``,
``finalize_queue``); the queue is chosen by the type, so a message can never land on the wrong
one. Messages only name what to do (:mod:`shared.messages`): sending one twice is harmless, which
is why every caller may send again after a crash instead of remembering what it sent.
"""

from __future__ import annotations

import time

from shared.messages import BatchMessage, FinalizeMessage, PlanMessage
from shared.storage import Storage


def plan(storage: Storage, job_id: str, step: int) -> None:
    """Plan step ``step`` of the job (the next page of its inputs)."""
    storage.queue(storage.settings.plan_queue).send_message(PlanMessage(job_id, step).to_json())


def batch(storage: Storage, job_id: str, index: int, delay_s: float = 0) -> None:
    """Run mini-batch ``index``, visible after ``delay_s`` (whole seconds: the queue's resolution)."""
    delay = int(delay_s)
    storage.queue(storage.settings.batch_queue).send_message(
        BatchMessage(job_id, index, ready_at=time.time() + delay).to_json(),
        visibility_timeout=delay or None)


def finalize(storage: Storage, job_id: str, *, checkpoint: bool = False, delay_s: float = 0) -> None:
    """Finalize the job if it is complete or stopped (``checkpoint``: commit its staged rows so
    far instead), visible after ``delay_s``."""
    storage.queue(storage.settings.finalize_queue).send_message(
        FinalizeMessage(job_id, checkpoint=checkpoint).to_json(), visibility_timeout=int(delay_s) or None)
