"""The one way the service sends its queue messages: plan a step, run a mini-batch, finalize a job.

Each message type goes to its own queue (``Settings.plan_queue``, ``batch_queue``,
``finalize_queue``); the queue is chosen by the type, so a message can never land on the wrong
one. Messages only name what to do (:mod:`shared.messages`): sending one twice is harmless, which
is why every caller may send again after a crash instead of remembering what it sent.
"""

from __future__ import annotations

import logging
import time

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.queue import QueueMessage

from shared.messages import BatchMessage, FinalizeMessage, PlanMessage
from shared.storage import Storage

log = logging.getLogger("parallelrun.outbox")


def plan(storage: Storage, job_id: str, step: int, delay_s: float = 0) -> QueueMessage:
    """Plan step ``step`` of the job (the next page of its inputs), visible after ``delay_s``;
    returns the message as sent (its id and pop receipt: :func:`withdraw`, :func:`release`)."""
    return storage.queue(storage.settings.plan_queue).send_message(
        PlanMessage(job_id, step).to_json(), visibility_timeout=int(delay_s) or None)


def withdraw(storage: Storage, queue: str, message: QueueMessage) -> bool:
    """Delete a message this process sent and nobody has received yet (its pop receipt is the
    send's); False if it was received meanwhile (whoever holds it does its work again, which
    every message allows) or is gone."""
    try:
        storage.queue(queue).delete_message(message.id, message.pop_receipt)
        return True
    except (ResourceNotFoundError, HttpResponseError) as exc:
        log.info("message %s on %s not withdrawn: %s", message.id, queue, exc.message)
        return False


def release(storage: Storage, queue: str, message: QueueMessage) -> bool:
    """Make a message this process sent visible now instead of after its delay; False if it was
    received meanwhile or is gone (it then runs when its holder gets to it)."""
    try:
        storage.queue(queue).update_message(message.id, message.pop_receipt, visibility_timeout=0)
        return True
    except (ResourceNotFoundError, HttpResponseError) as exc:
        log.info("message %s on %s not released: %s", message.id, queue, exc.message)
        return False


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
